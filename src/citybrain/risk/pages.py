"""Staff pages of risk (/risk, 健康码风险管理), Chinese first, usable on a phone: the overview
of colours and compound tiers in one's jurisdiction, a person's colour with reasons and facts,
rule versions with their dry runs by district and approve buttons, the manual-colour queue
and the street office's appeals queue. Every action is a form post with the CSRF token; an
error comes back on the page that was submitted."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from citybrain.core.audit.service import record
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.service import actor_names
from citybrain.core.geo import repository as geo_repository
from citybrain.core.people import service as people_service
from citybrain.kit import clock
from citybrain.kit.db import rollback_keeping
from citybrain.kit.errors import CitybrainError, InvalidInput, NotFound
from citybrain.kit.export import XLSX_MEDIA_TYPE, xlsx_bytes
from citybrain.kit.web import DB, Action, Ref, RowId, china_time, download, language, render
from citybrain.risk import batches, repository, rulesets, service
from citybrain.risk.kinds import (
    CASE_KINDS,
    CLINICAL_KINDS,
    COLOUR_LABELS,
    KIND_LABELS,
    SETTING_LABELS,
    TIER_LABELS,
    FactKind,
)
from citybrain.risk.models import Fact
from citybrain.risk.routes import subject_for
from citybrain.risk.rules import packaged_rules_text
from citybrain.risk.schemas import ColouredPage, DecideIn, FactOut
from citybrain.risk.settings import risk_settings

router = APIRouter(include_in_schema=False)

# The pages' words, Chinese first: (zh-CN, en).
TEXT: dict[str, tuple[str, str]] = {
    "title": ("健康码风险管理", "Health-code risk"),
    "overview": ("概况", "Overview"),
    "persons": ("人员赋码", "Colours"),
    "compounds": ("小区分层", "Compound tiers"),
    "rules": ("赋码规则版本", "Rule versions"),
    "overrides": ("人工赋码", "Manual colours"),
    "appeals": ("申诉处理", "Appeals"),
    "lookup": ("身份证号码或人员编号", "ID number or person reference"),
    "lookup_none": (
        "辖区内未找到该身份证号码的登记人员；未登记的，请先在“人员查询”中登记",
        "nobody with this ID number is registered in your jurisdiction; register them first "
        "under “People”",
    ),
    "lookup_invalid": (
        "身份证号码有误（18位，末位为数字或X，校验位须正确），请核对",
        "the ID number is wrong (18 characters, the last a digit or X, with a valid check "
        "digit); check it",
    ),
    "ref": ("人员编号", "Person reference"),
    "show": ("查看", "Show"),
    "reasons": ("赋码原因", "Reasons"),
    "until": ("截止", "Until"),
    "facts": ("事实记录", "Facts"),
    "kind": ("类型", "Kind"),
    "source": ("来源", "Source"),
    "asserted_by": ("登记人", "Recorded by"),
    "since": ("起", "From"),
    "evidence": ("证据", "Evidence"),
    "retracted": ("已撤销", "withdrawn"),
    "retract": ("撤销", "Withdraw"),
    "retract_ask": ("申请撤销", "Ask to withdraw"),
    "retract_confirm": ("确认撤销", "Confirm the withdrawal"),
    "retract_two": (
        "确诊、无症状感染记录的撤销须两人办理：提交后由另一人在72小时内确认，确认前记录仍然有效。",
        "A confirmed case or an asymptomatic infection is withdrawn by two people: another "
        "confirms within 72 hours; until then the record counts.",
    ),
    "retract_pending": ("撤销申请", "Withdrawal asked"),
    "retract_waiting": ("待另一人确认", "awaiting another person"),
    "retractions": ("撤销确诊待确认", "Case withdrawals to confirm"),
    "retractions_note": (
        "撤销确诊、无症状感染记录须两人办理：另一人核实后确认，或说明理由驳回；申请72小时无人确认即失效，"
        "确认前记录仍然有效。申请人本人可撤回申请。",
        "Withdrawing a confirmed case or an asymptomatic infection takes two people: another "
        "checks and confirms, or turns it down with a reason; a request nobody confirms lapses "
        "after 72 hours, and until then the record counts. The one who asked may take it back.",
    ),
    "retractions_waiting": (
        "{n} 条撤销确诊申请待另一人确认",
        "{n} case withdrawals await a second person",
    ),
    "batches": ("批量登记", "Lists of people"),
    "batches_note": (
        "疾控移交的航班、场所密接等名单：上传 Excel 或 CSV"
        "（表头须有“身份证号码”，可有“接触日期”），逐行核对，有误的行列明行号和原因，"
        "其余保留并试算；须由另一人（指挥部）在72小时内批准后才登记为事实，"
        "不计入个人手工转码上限，在手工转码台账中可查。名单文件和身份证号码都不保存。",
        "A list handed over by the CDC — a flight's or a venue's close contacts: upload Excel or "
        "CSV (a header with “身份证号码”, optionally “接触日期”); every row is checked, wrong rows "
        "listed by row and reason, the rest kept with a dry run; facts are recorded only when "
        "another person (the command centre) approves within 72 hours; not counted against "
        "anyone's daily hand turns, listed in the register. Neither the file nor an ID number "
        "is kept.",
    ),
    "batch_list": ("名单", "List"),
    "batch_days": ("天数", "Days"),
    "batch_rows_total": ("总行数", "Rows"),
    "batch_rows_accepted": ("可登记", "To record"),
    "batch_rows_bad": ("有误行数", "Wrong rows"),
    "batch_dry_red": ("试算转红码", "Dry run: red"),
    "batch_dry_yellow": ("试算转黄码", "Dry run: yellow"),
    "batch_facts": ("已登记事实", "Facts recorded"),
    "batch_done_red": ("登记后转红码", "Turned red"),
    "batch_progress": ("正在登记：{done} / {total}", "Recording: {done} of {total}"),
    "batch_file": ("名单文件（.xlsx 或 .csv）", "List (.xlsx or .csv)"),
    "batch_upload": ("上传并试算", "Upload and dry-run"),
    "batch_rows": (
        "共 {total} 行：可登记 {accepted} 人，有误 {bad} 行",
        "{total} rows: {accepted} to record, {bad} wrong",
    ),
    "batch_dry": (
        "试算：转红码 {red} 人，转黄码 {yellow} 人，颜色不变 {same} 人；"
        "已登记 {registered} 人，未登记 {unregistered} 人",
        "Dry run: {red} to red, {yellow} to yellow, {same} unchanged; {registered} registered, "
        "{unregistered} not",
    ),
    "batch_streets": ("按街道", "By street"),
    "batch_unjudged": (
        "其中辖区外或未登记的 {n} 人，颜色在指挥部批准时判定",
        "the colours of {n} outside the jurisdiction or not registered are judged when the "
        "command centre approves",
    ),
    "batch_errors": ("有误的行（{n}）", "Wrong rows ({n})"),
    "batch_done": (
        "已登记事实 {n} 条：转红码 {red} 人，转黄码 {yellow} 人",
        "{n} facts recorded: {red} turned red, {yellow} yellow",
    ),
    "row": ("行", "Row"),
    "field": ("列", "Column"),
    "problem": ("问题", "Problem"),
    "decided_by": ("处理人", "Decided by"),
    "approve_batch": ("批准登记", "Approve"),
    "batches_waiting": ("{n} 份名单待批准登记", "{n} lists await approval"),
    "batches_none": ("还没有上传名单。", "No list uploaded yet."),
    "retractions_none": ("没有待确认的撤销申请", "No withdrawal is waiting"),
    "requested_reason": ("申请理由", "Why asked"),
    "lapses": ("失效时间", "Lapses at"),
    "confirm_reason": ("确认意见", "Confirmation"),
    "decline": ("驳回", "Turn down"),
    "take_back": ("撤回申请", "Take back"),
    "decline_reason": ("驳回或撤回理由", "Why turned down or taken back"),
    "your_request": ("您提交的申请，须由另一人确认", "Your request: another person confirms"),
    "reason": ("原因", "Reason"),
    "assert": ("登记事实", "Record a fact"),
    "setting": ("隔离方式", "Setting"),
    "valid_days": (
        "有效天数（1至60，可空；隔离不填为14天）",
        "Valid for, in days (1 to 60, optional; a quarantine 14 if empty)",
    ),
    "days_unit": ("天", "days"),
    "note": ("依据", "Basis"),
    "note_hint": (
        "使绿码转为红码或黄码的登记须写明依据：流调报告、检测报告或通报编号（不写个人信息）",
        "A record that turns a green code red or yellow needs its basis: the trace, test "
        "report or notice it rests on (no personal data)",
    ),
    "turned": ("手工转码", "Turned by hand"),
    "freed": ("撤销转绿", "Withdrawn, turned green"),
    "turns": ("手工转码台账", "Codes turned by hand"),
    "turns_note": (
        "登记事实使绿码转为红码或黄码的记录：谁、依据什么、何时；每个账号24小时内最多 {limit} 人，"
        "超过即被拒绝并在驾驶舱告警。",
        "Facts recorded by hand that turned a green code red or yellow: who, on what basis, "
        "when; an account may turn at most {limit} in 24 hours, past that it is refused and "
        "alerted on the cockpit.",
    ),
    "turns_window": ("时间范围", "Window"),
    "last_days": ("近{days}天", "last {days} days"),
    "account": ("账号", "Account"),
    "account_hint": ("登录账号，如 street", "a username, e.g. street"),
    "by_account": ("转码最多的账号", "Accounts that turned the most"),
    "recorded_at": ("登记时间", "Recorded at"),
    "way_red": ("登记事实转红黄", "Turned red or yellow"),
    "way_green": ("撤销事实转绿", "Turned green"),
    "turns_green_note": (
        "撤销事实使红码或黄码转为绿码的记录：谁撤销、原因、何时。日常核销不设上限，但每一条都在此可查；"
        "一个账号24小时内转绿达 {alert} 人即在驾驶舱告警。",
        "Facts withdrawn by hand that turned a red or yellow code green: who, why, when. "
        "Daily clearing has no limit, but each one is listed here, and an account that turns "
        "{alert} green in 24 hours is alerted on the cockpit.",
    ),
    "turns_none": ("这段时间没有手工转码。", "No codes turned by hand in this window."),
    "save": ("保存", "Save"),
    "request": ("申请人工赋码", "Request a manual colour"),
    "colour": ("颜色", "Colour"),
    "legal_basis": ("法律依据", "Legal basis"),
    "hours": ("小时（最多72）", "Hours (72 at most)"),
    "two_people": (
        "人工赋码须两人办理：一人申请，另一人批准；最长72小时，到期自动恢复，并告知本人。",
        "A manual colour takes two people: one requests, another approves; 72 hours at most, "
        "ending by itself; the person is told.",
    ),
    "version": ("版本", "Version"),
    "status": ("状态", "Status"),
    "approvals": ("批准", "Approvals"),
    "dry_run": ("试运行", "Dry run"),
    "changed": ("将变色人数", "Would change"),
    "district": ("区县", "District"),
    "to_red": ("转红", "to red"),
    "to_yellow": ("转黄", "to yellow"),
    "to_green": ("转绿", "to green"),
    "approve": ("批准", "Approve"),
    "reject": ("驳回", "Reject"),
    "revoke": ("撤销", "Revoke"),
    "propose": ("提出新版本", "Propose a version"),
    "yaml": ("规则（YAML）", "Rules (YAML)"),
    "policy": (
        "新版本须由提出者以外的两人批准后生效；试运行变色人数超过阈值时须三人批准。"
        "规则只能使用健康与出行事实。",
        "A version takes effect when two people other than its proposer approve it; three when "
        "its dry run changes more people than the threshold. Rules may use only health and "
        "travel facts.",
    ),
    "proposed_by": ("提出人", "Proposed by"),
    "requested_by": ("申请人", "Requested by"),
    "expires": ("到期", "Expires"),
    "filed": ("提交时间", "Filed"),
    "deadline": ("处理时限", "Deadline"),
    "overdue": ("已逾期", "overdue"),
    "text": ("申诉内容", "Appeal"),
    "decide": ("处理", "Decide"),
    "upheld": ("申诉成立", "Upheld"),
    "rejected": ("申诉不成立", "Rejected"),
    "action": ("处理方式", "Action"),
    "act_none": ("不作调整", "No action"),
    "act_retract": ("撤销所申诉的事实", "Withdraw the disputed fact"),
    "act_override": (
        "申请人工赋码（须另一人批准）",
        "Request a manual colour (second person approves)",
    ),
    "fact_id": ("事实编号", "Fact id"),
    "none": ("暂无", "None"),
    "done": ("已完成", "Done"),
    "red": ("红码", "Red"),
    "yellow": ("黄码", "Yellow"),
    "green": ("绿码", "Green"),
    "overridden": ("人工赋码中", "set by hand"),
    "in_scope": ("辖区内", "In your jurisdiction"),
    "decided": ("已处理", "Decided"),
    "st_open": ("待处理", "Open"),
    "text_purged": (
        "（申诉原文已按保存期限清除）",
        "(the text was cleared after its retention period)",
    ),
    "all_streets": ("全部街道", "All streets"),
    "street": ("街道", "Street"),
    "filter": ("筛选", "Filter"),
    "export": ("导出Excel", "Export to Excel"),
    "number": ("编号", "No."),
    "appellant": ("申诉人", "Appellant"),
    "compound": ("小区", "Compound"),
    "outcome": ("处理结果", "Outcome"),
    "decided_at": ("处理时间", "Decided at"),
    "yes": ("是", "yes"),
    "details": ("查看赋码详情", "Colour and facts"),
    "choose_fact": ("选择要撤销的事实", "Choose the fact to withdraw"),
    "page_of": ("第 {page} / {pages} 页，共 {total} 条", "Page {page} of {pages}, {total} in all"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "person": ("本人", "Person"),
    "requested_at": ("申请时间", "Requested at"),
    "approved_by": ("批准人", "Approved by"),
    "approved_at": ("批准时间", "Approved at"),
    "ended_by": ("结束人", "Ended by"),
    "ended_at": ("结束时间", "Ended at"),
    "appeal": ("申诉编号", "Appeal"),
    "all_tiers": ("红色与黄色", "Red and yellow"),
    "community": ("社区", "Community"),
    "history": ("人工赋码记录", "Manual colours"),
    "appeal_history": ("申诉记录", "Appeals"),
    "registry": ("人员档案", "Registry record"),
    "view_open": ("待批准与生效中", "Awaiting and in force"),
    "view_requested": ("待批准", "Awaiting approval"),
    "view_active": ("生效中", "In force"),
    "view_ended": ("已结束", "Ended"),
    "people": ("红黄码人员", "Red and yellow codes"),
    "people_hint": (
        "辖区内显示红码、黄码的人员，红码在前。未管控的，请核实去向并落实隔离或居家管控，在详情中登记“隔离中”。",
        "People in your jurisdiction showing red or yellow, red first. For those not under "
        "control, find them, arrange isolation or home control, and record “in quarantine” "
        "on their page.",
    ),
    "all_colours": ("红码与黄码", "Red and yellow"),
    "list": ("名单", "List"),
    "record_quarantine": ("登记已隔离", "Record in quarantine"),
    # Without an end an in_quarantine fact keeps the code red until someone records release.
    "quarantine_days": ("隔离天数", "Days"),
    "control": ("管控状态", "Control"),
    "control_all": ("全部", "All"),
    "control_uncontrolled": ("未管控", "Not under control"),
    "control_controlled": ("已管控", "Under control"),
    "area": ("区域", "Area"),
    "whole_jurisdiction": ("整个辖区", "The whole jurisdiction"),
    "unregistered": (
        "未登记人员（市级核查）",
        "not in the registry (checked at city level)",
    ),
    "people_export_note": (
        "导出内容中人员已脱敏；导出将记入审计日志。",
        "The export masks the persons; it is audited.",
    ),
    "phone": ("手机", "Phone"),
    "id_number": ("身份证号码", "ID number"),
    "override_export_note": (
        "导出内容中本人已脱敏；导出将记入审计日志。",
        "The export masks the persons; it is audited.",
    ),
    "export_note": (
        "导出内容不含申诉原文，申诉人已脱敏；导出将记入审计日志。",
        "The export leaves out the appeal texts and masks the appellants; it is audited.",
    ),
}


def _words(request: Request) -> dict[str, str]:
    index = 1 if language(request) == "en" else 0
    return {key: pair[index] for key, pair in TEXT.items()}


BATCH_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "requested": ("待批准", "awaiting approval"),
    "approving": ("已批准，正在登记", "approved, recording"),
    "approved": ("已批准", "approved"),
    "rejected": ("已驳回", "turned down"),
    "lapsed": ("已失效", "lapsed"),
}


OVERRIDE_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "requested": ("待批准", "awaiting approval"),
    "active": ("生效中", "in force"),
    "expired": ("已到期", "expired"),
    "revoked": ("已撤销", "revoked"),
    "rejected": ("已驳回", "rejected"),
}


RULE_SET_STATUS_LABELS: dict[str, tuple[str, str]] = {
    "proposed": ("待批准", "proposed"),
    "active": ("生效中", "active"),
    "superseded": ("已被取代", "superseded"),
    "rejected": ("已驳回", "rejected"),
}


# What a fact's evidence holds, in words (ids and the basis written by hand).
EVIDENCE_WORDS: dict[str, tuple[str, str]] = {
    "note": ("依据", "Basis"),
    "record_ids": ("湖中记录", "Lake records"),
    "household_id": ("同户编号", "Household"),
    "case_fact_id": ("病例事实", "Case fact"),
    "case_key": ("病例", "Case"),
    "contact_key": ("接触者", "Contact"),
    "person_key": ("人员", "Person"),
    "rules": ("碰撞规则", "Collision rules"),
    "rule": ("规则", "Rule"),
    "areas": ("地区", "Areas"),
    "analysis_run": ("分析结果", "Analysis result"),
    "appeal_id": ("申诉", "Appeal"),
    "batch_id": ("批量登记", "List"),
}


def _labels(request: Request) -> dict[str, dict[str, str]]:
    index = 1 if language(request) == "en" else 0
    return {
        "kinds": {k: v[index] for k, v in KIND_LABELS.items()},
        "colours": {k: v[index] for k, v in COLOUR_LABELS.items()},
        "tiers": {k: v[index] for k, v in TIER_LABELS.items()},
        "settings": {k: v[index] for k, v in SETTING_LABELS.items()},
        "override_status": {k: v[index] for k, v in OVERRIDE_STATUS_LABELS.items()},
        "batch_status": {k: v[index] for k, v in BATCH_STATUS_LABELS.items()},
        "rule_set_status": {k: v[index] for k, v in RULE_SET_STATUS_LABELS.items()},
        "evidence": {k: v[index] for k, v in EVIDENCE_WORDS.items()},
    }


def _page(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    full = {"x": _words(request), "labels": _labels(request), "now": clock.now(), **context}
    return render(request, name, full, status_code=status_code)


def _act(
    request: Request,
    session: Session,
    work: Callable[[], object],
    success: str,
    failure: Callable[[str, int], Response],
) -> Response:
    """Run a form's action; on success go to ``success`` (303), else show the page again
    with the error (the failed work rolled back, what it keeps kept)."""
    try:
        work()
    except CitybrainError as error:
        if error.status_code == 404:
            raise
        rollback_keeping(session, error)
        return failure(error.message(language(request)), error.status_code)
    return RedirectResponse(success, status_code=303)


# --- overview and persons --------------------------------------------------------------------


TIERS_PAGE_SIZE = 30
ID_NUMBER_LENGTH = 18


@router.get("/risk")
def overview(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
    tier: Annotated[str, Query(max_length=8)] = "all",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    lookup: Annotated[str, Query(max_length=8)] = "",
) -> Response:
    """Colours and compound tiers in the jurisdiction, the red and yellow compounds a page at
    a time (``tier``: all, red or yellow), and the way to everything else (``lookup``: why
    the last look-up found nobody, ``none`` or ``invalid``)."""
    tier = tier if tier in ("red", "yellow") else "all"
    counts = repository.tier_counts_scoped(session, who)
    shown = ("red", "yellow") if tier == "all" else (tier,)
    total = sum(counts.get(t, 0) for t in shown)
    return _page(
        request,
        "risk/index.html",
        {
            "colours": repository.colour_counts_scoped(session, who, clock.now()),
            "tiers": counts,
            "compounds": repository.tiers_scoped(
                session,
                who,
                shown,
                offset=(page - 1) * TIERS_PAGE_SIZE,
                limit=TIERS_PAGE_SIZE,
            ),
            "tier": tier,
            "page": page,
            "pages": max(1, -(-total // TIERS_PAGE_SIZE)),
            "total": total,
            "residents_staff": who.can(Permission.RESIDENTS_VIEW),
            "active": service.active_rule_set(session),
            "can": _can(who),
            "lookup_error": f"lookup_{lookup}" if lookup in ("none", "invalid") else None,
            "retractions_waiting": (
                service.retraction_requests_waiting(session, who)
                if who.can(Permission.RISK_ASSERT)
                else 0
            ),
            "batches_waiting": (
                batches.batches_waiting(session, who) if who.can(Permission.OVERRIDE_APPROVE) else 0
            ),
        },
    )


def _can(who: Principal) -> dict[str, bool]:
    return {
        "people": who.can(Permission.RISK_PEOPLE),
        "assert": who.can(Permission.RISK_ASSERT),
        "assert_clinical": who.can(Permission.RISK_ASSERT_CLINICAL),
        "rules": who.can(Permission.RULES_PROPOSE) or who.can(Permission.RULES_APPROVE),
        "propose": who.can(Permission.RULES_PROPOSE),
        "approve": who.can(Permission.RULES_APPROVE),
        "request": who.can(Permission.OVERRIDE_REQUEST),
        "approve_override": who.can(Permission.OVERRIDE_APPROVE),
        "appeals": who.can(Permission.APPEAL_DECIDE),
    }


PEOPLE_PAGE_SIZE = 30
QUARANTINE_DAYS = 14  # a quarantine recorded by hand without its days
# Where a form on the red and yellow list may send its answer back to: the list, filtered.
LIST_PATH = re.compile(r"/risk/people(\?[a-z0-9=&]{0,120})?")


@router.get("/risk/people")
def people(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_PEOPLE))],
    colour: Annotated[str, Query(max_length=8)] = "all",
    control: Annotated[str, Query(max_length=14)] = "all",
    area: Annotated[str, Query(max_length=15)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """红黄码人员: the people showing red or yellow in the jurisdiction, red first, with
    why, until when and whether they are under control (``control``: all, uncontrolled,
    controlled), in a part of it (``area``), a page at a time; each links to their page,
    where staff record them in quarantine."""
    error = None
    found = ColouredPage(total=0, items=[])
    try:
        found = service.coloured_people(
            session,
            who,
            colour=colour,
            control=control,
            area_code=area,
            offset=(page - 1) * PEOPLE_PAGE_SIZE,
            limit=PEOPLE_PAGE_SIZE,
        )
    except InvalidInput as exc:
        rollback_keeping(session, exc)
        error = exc.message(language(request))
    return _page(
        request,
        "risk/people.html",
        {
            "found": found,
            "colour": colour,
            "control": control,
            "area": area,
            "page": page,
            "pages": max(1, -(-found.total // PEOPLE_PAGE_SIZE)),
            "areas": _areas_under(session, who, area),
            "query": lambda **changes: _people_query(
                changes.get("colour", colour),
                changes.get("control", control),
                area,
                changes.get("page", 1),
            ),
            "can": _can(who),
            "error": error,
        },
        status_code=422 if error else 200,
    )


def _people_query(colour: str, control: str, area: str, page: int = 1) -> str:
    """The list's filters as a query string (its links, the export, a form's way back),
    leaving out what is the default."""
    values = {"colour": colour, "control": control, "area": area, "page": str(page)}
    defaults = {"colour": "all", "control": "all", "area": "", "page": "1"}
    return urlencode({k: v for k, v in values.items() if v != defaults[k]})


def _areas_under(session: Session, who: Principal, chosen: str) -> list[tuple[str, str]]:
    """The parts of ``who``'s jurisdiction to narrow the list to, by name: the areas directly
    under it (districts, streets, communities), or a community's compounds; and the area
    chosen, if it lies deeper."""
    under = [(a.code, a.name) for a in geo_repository.children(session, who.area_code)]
    if not under:
        under = [(c.code, c.name) for c in geo_repository.compounds_in(session, who.area_code)]
    if chosen and chosen not in dict(under):
        under.append((chosen, geo_repository.names_of(session, [chosen]).get(chosen, chosen)))
    return under


@router.get("/risk/people/export.xlsx")
def people_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_PEOPLE))],
    colour: Annotated[str, Query(max_length=8)] = "all",
    control: Annotated[str, Query(max_length=14)] = "all",
    area: Annotated[str, Query(max_length=15)] = "",
) -> Response:
    """The list as filtered, as an Excel workbook (at most ``EXPORT_LIMIT`` rows): persons
    masked, cells neutralised; the export is audited."""
    lang = language(request)
    x = _words(request)
    labels = _labels(request)
    found = service.coloured_people(
        session,
        who,
        colour=colour,
        control=control,
        area_code=area,
        limit=service.EXPORT_LIMIT,
        action="risk.people.export",
    )
    header = [
        x["person"], x["id_number"], x["phone"], x["compound"], x["colour"], x["reasons"],
        x["until"], x["control"], x["setting"],
    ]  # fmt: skip
    body = xlsx_bytes(
        x["people"],
        header,
        (
            [
                p.person.name if p.person else x["unregistered"],
                p.person.id_number if p.person else "",
                (p.person.phone or "") if p.person else "",
                (p.person.compound_name or "") if p.person else (p.place_name or p.area_code or ""),
                labels["colours"].get(p.colour, p.colour),
                "；".join(r.text_zh if lang == "zh-CN" else r.text_en for r in p.reasons),
                china_time(p.until, MINUTE) if p.until else "",
                x["control_controlled"] if p.controlled else x["control_uncontrolled"],
                labels["settings"].get(p.setting, p.setting) if p.setting else "",
            ]
            for p in found.items
        ),
    )
    name = (
        f"red-yellow-{colour}-{control}-{area or who.area_code}-{clock.today_local():%Y%m%d}.xlsx"
    )
    return download(body, name, XLSX_MEDIA_TYPE)


# --- the register of hand turns (手工转码台账) ----------------------------------------------

TURNS_PAGE_SIZE = 30


def _account_ref(session: Session, account: str) -> str | None:
    """A staff account named by its username (or as ``user:<id>``) as the actor it records."""
    account = account.strip().lower()
    if not account:
        return None
    if re.fullmatch(r"user:\d{1,12}", account):
        return account
    user = authz_repository.user_by_username(session, account)
    if user is None:
        raise InvalidInput("未找到该账号", "no such account", field="account")
    return f"user:{user.id}"


@router.get("/risk/turns")
def turns(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    days: Annotated[int, Query(ge=1, le=30)] = 7,
    way: Annotated[str, Query(max_length=8)] = "red",
    account: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The register of codes turned by hand (手工转码台账): green codes turned red or yellow
    by facts recorded, or turned green by facts withdrawn (``way`` green) — who turned whose
    code, on what basis, in the last 1, 7 or 30 days, by one account if asked, with the
    accounts that turned the most."""
    error = None
    way = way if way in service.TURN_WAYS else "red"
    try:
        actor_ref = _account_ref(session, account)
        found = service.hand_turns(
            session,
            who,
            days=days,
            way=way,
            actor_ref=actor_ref,
            offset=(page - 1) * TURNS_PAGE_SIZE,
            limit=TURNS_PAGE_SIZE,
        )
    except InvalidInput as problem:
        error = problem.message(language(request))
        found = service.hand_turns(session, who, days=7, way=way, limit=TURNS_PAGE_SIZE)
    query = {
        "days": str(found.days),
        "way": way,
        "account": "" if error else account.strip(),
    }
    return _page(
        request,
        "risk/turns.html",
        {
            "found": found,
            "form": query,
            "query": urlencode({k: v for k, v in query.items() if v}),
            "page": page,
            "pages": max(1, -(-found.total // TURNS_PAGE_SIZE)),
            "windows": service.TURN_WINDOWS,
            "limit": risk_settings().hand_turn_daily_limit,
            "free_alert": risk_settings().hand_free_daily_alert,
            "error": error,
            "can": _can(who),
        },
        status_code=422 if error else 200,
    )


@router.get("/risk/turns/export.xlsx")
def turns_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    days: Annotated[int, Query(ge=1, le=30)] = 7,
    way: Annotated[str, Query(max_length=8)] = "red",
    account: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The register as filtered, as an Excel workbook: persons masked, who recorded and who
    withdrew each by name, cells neutralised; the export is audited."""
    x = _words(request)
    labels = _labels(request)
    found = service.hand_turns(
        session,
        who,
        days=days,
        way=way,
        actor_ref=_account_ref(session, account),
        limit=service.EXPORT_LIMIT,
        action="risk.turns.export",
    )
    header = [
        x["number"], x["person"], x["compound"], x["kind"], x["turned"], x["note"],
        x["asserted_by"], x["recorded_at"], x["retracted"], x["reason"],
    ]  # fmt: skip

    def when(value: dt.datetime | None) -> str:
        return china_time(value, MINUTE) if value else ""

    body = xlsx_bytes(
        x["turns"],
        header,
        (
            [
                t.fact.id,
                t.person.name if t.person else x["unregistered"],
                (t.person.compound_name or "") if t.person else "",
                labels["kinds"].get(t.fact.kind, t.fact.kind),
                _turn_words(t.fact, way, labels["colours"]),
                str(t.fact.evidence.get("note") or t.fact.evidence.get("record_ids") or ""),
                t.recorded_by,
                when(t.fact.asserted_at),
                f"{t.retracted_by or ''} {when(t.fact.retracted_at)}".strip(),
                t.fact.retraction_reason or "",
            ]
            for t in found.items
        ),
    )
    name = f"hand-turns-{way}-{days}d-{clock.today_local():%Y%m%d}.xlsx"
    return download(body, name, XLSX_MEDIA_TYPE)


def _turn_words(fact: FactOut, way: str, colours: dict[str, str]) -> str:
    """A hand turn's colours in words: 绿码→红码, or 红码→绿码 for a withdrawal."""
    if way == "green" and fact.freed_colour:
        return f"{colours.get(fact.freed_colour, fact.freed_colour)}→{colours['green']}"
    turned = fact.turned_colour or ""
    return f"{colours['green']}→{colours.get(turned, turned)}"


@router.post("/risk/lookup")
def lookup(
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
    ref: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Go to a person's page by their ID number (身份证号码: what a clinic has in front of
    it, searched in the jurisdiction and audited as the people search is) or their reference
    (a form post, so neither stays in the address bar's history)."""
    text = ref.strip()
    if len(text) == ID_NUMBER_LENGTH:  # a reference is 32 characters
        try:
            found = people_service.search_people(session, who, id_number=text, limit=1)
        except InvalidInput:
            return RedirectResponse("/risk?lookup=invalid", status_code=303)
        if not found.items:
            return RedirectResponse("/risk?lookup=none", status_code=303)
        return RedirectResponse(f"/risk/persons/{found.items[0].ref}", status_code=303)
    ref = text.lower()
    if not ref.isalnum():
        return RedirectResponse("/risk", status_code=303)
    return RedirectResponse(f"/risk/persons/{ref}", status_code=303)


def _person_page(
    request: Request,
    session: Session,
    who: Principal,
    ref: str,
    *,
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> Response:
    """The person's page; ``typed``: the fact form as it was filled in, shown again with
    ``error``."""
    subject = subject_for(session, who, ref, None, "risk.view")
    record(
        session,
        who.actor,
        "risk.view",
        object_type="subject",
        object_id=subject,
        area_code=who.area_code,
    )
    can = _can(who)
    kinds = [k.value for k in FactKind] if can["assert"] else sorted(CLINICAL_KINDS)
    facts = service.facts_of_subject(session, subject)
    return _page(
        request,
        "risk/person.html",
        {
            "ref": ref,
            "subject": subject,
            "colour": service.colour_of(session, subject),
            "facts": facts,
            # Who recorded and who withdrew each fact (经办人), by name: the hotline's answer
            # to "who set my code".
            "actors": actor_names(
                session,
                [f.asserted_by for f in facts]
                + [f.retracted_by for f in facts]
                + [f.retraction_requested_by for f in facts],
            ),
            "me": who.actor.ref,
            "case_kinds": CASE_KINDS,
            "person": service.masked_person_of(session, subject),
            "overrides": service.overrides_of_subject(session, subject),
            "appeals": service.appeals_of(session, subject),
            "kinds": kinds if (can["assert"] or can["assert_clinical"]) else [],
            "can": can,
            "error": error,
            "typed": typed or {},
        },
        status_code=status_code,
    )


@router.get("/risk/persons/{ref}")
def person(
    request: Request,
    ref: Ref,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
) -> Response:
    """A person's colour with its reasons, their facts, and the forms to act on them."""
    return _person_page(request, session, who, ref)


@router.post("/risk/persons/{ref}/facts")
def person_assert(
    request: Request,
    ref: Ref,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
    kind: Annotated[str, Form(max_length=24)] = "",
    setting: Annotated[str, Form(max_length=16)] = "",
    days: Annotated[str, Form(max_length=3)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
    back: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Record a fact about the person from their page, or from the red and yellow list
    (``back``: the list as it was filtered, where the answer returns)."""

    def work() -> None:
        service.check_may_assert(who, kind)
        subject = subject_for(session, who, ref, None, "risk.fact.assert")
        now = clock.now()
        until = None
        if days.strip():
            if not days.strip().isdigit() or not 1 <= int(days) <= 60:
                raise InvalidInput("天数应为1至60", "days must be 1 to 60", field="days")
            until = now + dt.timedelta(days=int(days))
        elif kind == FactKind.IN_QUARANTINE:
            # Without an end a quarantine keeps the code red until someone remembers to
            # record the release: the list's form says 14 days, and so does this one.
            until = now + dt.timedelta(days=QUARANTINE_DAYS)
        service.record_fact_by_hand(
            session,
            who,
            subject=subject,
            kind=kind,
            note=note,
            valid_from=now,
            valid_until=until,
            setting=setting or None,
        )

    return _act(
        request,
        session,
        work,
        back if LIST_PATH.fullmatch(back) else f"/risk/persons/{ref}",
        lambda message, status: _person_page(
            request,
            session,
            who,
            ref,
            error=message,
            status_code=status,
            typed={"kind": kind, "setting": setting, "days": days, "note": note},
        ),
    )


@router.post("/risk/persons/{ref}/facts/{fact_id}/retract")
def person_retract(
    request: Request,
    ref: Ref,
    fact_id: RowId,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_ASSERT))],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Withdraw one of the person's facts."""

    def work() -> None:
        subject = subject_for(session, who, ref, None, "risk.fact.retract")
        fact = session.get(Fact, fact_id)
        if fact is None or fact.subject != subject:
            raise NotFound("事实不存在", "no such fact", code="fact_not_found")
        service.retract_fact_by_hand(session, who, fact_id, reason=reason)

    return _act(
        request,
        session,
        work,
        f"/risk/persons/{ref}",
        lambda message, status: _person_page(
            request, session, who, ref, error=message, status_code=status
        ),
    )


@router.post("/risk/persons/{ref}/override")
def person_override(
    request: Request,
    ref: Ref,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    colour: Annotated[str, Form(max_length=8)] = "",
    legal_basis: Annotated[str, Form(max_length=300)] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
    hours: Annotated[str, Form(max_length=3)] = "",
) -> Response:
    """Request a manual colour for the person; another person approves it in the queue."""

    def work() -> None:
        if not hours.strip().isdigit():
            raise InvalidInput("请填写小时数（1至72）", "give the hours (1 to 72)", field="hours")
        subject = subject_for(session, who, ref, None, "risk.override.request")
        service.request_override(
            session,
            who,
            subject=subject,
            colour=colour,
            legal_basis=legal_basis,
            reason=reason,
            hours=int(hours),
        )

    return _act(
        request,
        session,
        work,
        "/risk/overrides",
        lambda message, status: _person_page(
            request, session, who, ref, error=message, status_code=status
        ),
    )


# --- rule versions ---------------------------------------------------------------------------


def _rules_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    error: str | None = None,
    draft: str | None = None,
    status_code: int = 200,
) -> Response:
    versions = rulesets.list_rule_sets(session, who)
    active = next((v for v in versions if v.status == "active"), None)
    if draft is None:
        row = repository.active_rule_set(session)
        draft = row.yaml_text if row is not None else packaged_rules_text()
    return _page(
        request,
        "risk/rules.html",
        {
            "versions": versions,
            "names": actor_names(
                session,
                [v.proposed_by for v in versions]
                + [a.approver for v in versions for a in v.approvals],
            ),
            "active": active,
            "threshold": risk_settings().third_approval_threshold,
            "draft": draft,
            "error": error,
            "can": _can(who),
            "me": who.actor.ref,
        },
        status_code=status_code,
    )


@router.get("/risk/rules")
def rules(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
) -> Response:
    """Rule versions: status, approvals, the dry run by district, approve buttons."""
    return _rules_page(request, session, who)


@router.get("/risk/rules/{version}")
def rule_set(
    request: Request,
    version: RowId,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_VIEW))],
) -> Response:
    """One version's rules and YAML."""
    return _page(
        request,
        "risk/rule_set.html",
        {"rule_set": rulesets.get_rule_set(session, who, version), "can": _can(who)},
    )


@router.post("/risk/rules")
def rules_propose(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RULES_PROPOSE))],
    yaml_text: Annotated[str, Form(max_length=65536)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Propose a version (validated, dry-run)."""
    return _act(
        request,
        session,
        lambda: rulesets.propose_rule_set(session, who, yaml_text, note=note or None),
        "/risk/rules",
        lambda message, status: _rules_page(
            request, session, who, error=message, draft=yaml_text, status_code=status
        ),
    )


@router.post("/risk/rules/{version}/{decision}")
def rules_decide(
    request: Request,
    version: RowId,
    decision: Action,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RULES_APPROVE))],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Approve or reject a version."""

    def work() -> None:
        if decision == "approve":
            rulesets.approve_rule_set(session, who, version)
        elif decision == "reject":
            rulesets.reject_rule_set(session, who, version, reason or "驳回 rejected")
        else:
            raise NotFound("操作不存在", "no such action")

    return _act(
        request,
        session,
        work,
        "/risk/rules",
        lambda message, status: _rules_page(
            request, session, who, error=message, status_code=status
        ),
    )


# --- withdrawals of a diagnosis awaiting a second person --------------------------------------


RETRACTIONS_PAGE_SIZE = 30


def _retractions_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    page: int = 1,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    queue = service.retraction_requests(
        session, who, offset=(page - 1) * RETRACTIONS_PAGE_SIZE, limit=RETRACTIONS_PAGE_SIZE
    )
    return _page(
        request,
        "risk/retractions.html",
        {
            "queue": queue,
            "page": page,
            "pages": max(1, -(-queue.total // RETRACTIONS_PAGE_SIZE)),
            "error": error,
            "can": _can(who),
            "me": who.actor.ref,
        },
        status_code=status_code,
    )


@router.get("/risk/retractions")
def retractions(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_ASSERT))],
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The requests to withdraw a confirmed case or an asymptomatic infection waiting for a
    second person (撤销确诊待确认), the nearest to lapsing first: confirm, turn down, or take
    back one's own."""
    return _retractions_page(request, session, who, page=page)


@router.post("/risk/retractions/{fact_id}/{decision}")
def retractions_decide(
    request: Request,
    fact_id: RowId,
    decision: Action,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.RISK_ASSERT))],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Confirm a request to withdraw a case (the second person), or turn it down."""

    def work() -> None:
        if decision == "decline":
            service.decline_retraction_request(session, who, fact_id, reason=reason)
        elif decision == "confirm":
            service.confirm_retraction_request(session, who, fact_id, reason=reason)
        else:
            raise NotFound("操作不存在", "no such action")

    return _act(
        request,
        session,
        work,
        "/risk/retractions",
        lambda message, status: _retractions_page(
            request, session, who, error=message, status_code=status
        ),
    )


# --- lists of people at once (批量登记) --------------------------------------------------------


BATCHES_PAGE_SIZE = 20
BATCH_FILE_BYTES = 5 * 1024 * 1024
BATCH_ERRORS_SHOWN = 200


def _batches_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    page: int = 1,
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> Response:
    total, items = batches.batches_scoped(
        session, who, offset=(page - 1) * BATCHES_PAGE_SIZE, limit=BATCHES_PAGE_SIZE
    )
    streets = geo_repository.names_of(
        session, {code for b in items for code in b.dry_run.get("by_street", {})}
    )
    return _page(
        request,
        "risk/batches.html",
        {
            "batches": items,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // BATCHES_PAGE_SIZE)),
            "streets": streets,
            "kinds": batches.BATCH_KINDS,
            "errors_shown": BATCH_ERRORS_SHOWN,
            "typed": typed or {"kind": "close_contact", "note": "", "days": "14"},
            "error": error,
            "can": _can(who),
            "me": who.actor.ref,
        },
        status_code=status_code,
    )


@router.get("/risk/batches")
def batch_list(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """Lists of people handed over at once (批量登记): upload one with its basis, see each
    list's checked rows and dry run, approve (a second person) or turn down."""
    return _batches_page(request, session, who, page=page)


@router.post("/risk/batches")
async def batch_upload(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    file: Annotated[UploadFile | None, File()] = None,
    kind: Annotated[str, Form(max_length=24)] = "",
    note: Annotated[str, Form(max_length=200)] = "",
    days: Annotated[str, Form(max_length=3)] = "14",
) -> Response:
    """Upload a list: read, checked row by row, stored with its dry run for a second person
    to approve."""
    content = await file.read(BATCH_FILE_BYTES + 1) if file is not None else b""

    def work() -> None:
        if len(content) > BATCH_FILE_BYTES:
            raise InvalidInput("文件超过 5 MB，请分批上传", "the file exceeds 5 MB", field="file")
        if not days.strip().isdigit():
            raise InvalidInput("天数应为1至60", "days must be 1 to 60", field="days")
        rows = batches.read_list(content)
        batches.request_batch(session, who, kind=kind, note=note, days=int(days), rows=rows)

    return _act(
        request,
        session,
        work,
        "/risk/batches",
        lambda message, status: _batches_page(
            request,
            session,
            who,
            error=message,
            status_code=status,
            typed={"kind": kind, "note": note.replace("\x00", ""), "days": days},
        ),
    )


@router.get("/risk/batches/export.xlsx")
def batch_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
) -> Response:
    """Every list of the jurisdiction as an Excel workbook: kind, basis, status, counts, dry
    run and outcome, who asked and decided by name (no person in it); the export is
    audited."""
    x = _words(request)
    labels = _labels(request)
    _total, rows = batches.batches_scoped(
        session, who, limit=service.EXPORT_LIMIT, action="risk.batches.export"
    )
    header = [
        x["number"], x["kind"], x["note"], x["batch_days"], x["status"], x["batch_rows_total"],
        x["batch_rows_accepted"], x["batch_rows_bad"], x["batch_dry_red"], x["batch_dry_yellow"],
        x["batch_facts"], x["batch_done_red"], x["requested_by"], x["requested_at"],
        x["decided_by"], x["decided_at"], x["reason"],
    ]  # fmt: skip

    def when(value: dt.datetime | None) -> str:
        return china_time(value, MINUTE) if value else ""

    body = xlsx_bytes(
        x["batches"],
        header,
        (
            [
                b.id,
                labels["kinds"].get(b.kind, b.kind),
                b.note,
                b.days,
                labels["batch_status"].get(b.status, b.status),
                b.rows_total,
                b.rows_accepted,
                len(b.errors),
                b.dry_run.get("turns_red", 0),
                b.dry_run.get("turns_yellow", 0),
                b.facts_asserted,
                b.dry_run.get("approved_red", ""),
                b.requested_by_name,
                when(b.requested_at),
                b.decided_by_name or "",
                when(b.decided_at),
                b.decision_reason or "",
            ]
            for b in rows
        ),
    )
    return download(body, f"fact-lists-{clock.today_local():%Y%m%d}.xlsx", XLSX_MEDIA_TYPE)


@router.get("/risk/batches/{batch_id}/card")
def batch_card(
    request: Request,
    batch_id: RowId,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
) -> Response:
    """One list's card, which the page polls while the list's facts are being asserted."""
    card = batches.batch_card(session, who, batch_id)
    return _page(
        request,
        "risk/_batch_card.html",
        {
            "b": card,
            "streets": geo_repository.names_of(session, card.dry_run.get("by_street", {})),
            "errors_shown": BATCH_ERRORS_SHOWN,
            "can": _can(who),
            "me": who.actor.ref,
        },
    )


@router.post("/risk/batches/{batch_id}/{decision}")
def batch_decide(
    request: Request,
    batch_id: RowId,
    decision: Action,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Approve a list (the second person), or turn it down."""

    def work() -> None:
        if decision == "approve":
            batches.approve_batch(session, who, batch_id)
        elif decision == "reject":
            batches.reject_batch(session, who, batch_id, reason=reason)
        else:
            raise NotFound("操作不存在", "no such action")

    return _act(
        request,
        session,
        work,
        "/risk/batches",
        lambda message, status: _batches_page(
            request, session, who, error=message, status_code=status
        ),
    )


# --- manual colours --------------------------------------------------------------------------


OVERRIDES_PAGE_SIZE = 30


def _overrides_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    view: str = "open",
    page: int = 1,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    view = view if view in service.OVERRIDE_VIEWS else "open"
    summary = service.override_summary(session, who)
    return _page(
        request,
        "risk/overrides.html",
        {
            "overrides": service.override_register(
                session,
                who,
                view=view,
                offset=(page - 1) * OVERRIDES_PAGE_SIZE,
                limit=OVERRIDES_PAGE_SIZE,
            ),
            "summary": summary,
            "view": view,
            "page": page,
            "pages": max(1, -(-summary[view] // OVERRIDES_PAGE_SIZE)),
            "total": summary[view],
            "error": error,
            "can": _can(who),
            "me": who.actor.ref,
        },
        status_code=status_code,
    )


@router.get("/risk/overrides")
def overrides(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    view: Annotated[str, Query(max_length=10)] = "open",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The manual-colour register (人工赋码台账): requests awaiting a second person and
    overrides in force, or those that ended, a page at a time."""
    return _overrides_page(request, session, who, view=view, page=page)


@router.get("/risk/overrides/export.xlsx")
def overrides_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_REQUEST))],
    view: Annotated[str, Query(max_length=10)] = "open",
) -> Response:
    """The register as filtered, as an Excel workbook: persons masked, who requested,
    approved and ended each by name, cells neutralised; the export is audited."""
    x = _words(request)
    labels = _labels(request)
    rows = service.override_export(session, who, view=view)
    header = [
        x["number"], x["person"], x["compound"], x["colour"], x["status"], x["legal_basis"],
        x["reason"], x["requested_by"], x["requested_at"], x["approved_by"], x["approved_at"],
        x["expires"], x["ended_by"], x["ended_at"], x["appeal"],
    ]  # fmt: skip

    def when(value: dt.datetime | None) -> str:
        return china_time(value, MINUTE) if value else ""

    body = xlsx_bytes(
        x["overrides"],
        header,
        (
            [
                o.id,
                o.person.name if o.person else o.subject,
                (o.person.compound_name or "") if o.person else "",
                labels["colours"].get(o.colour, o.colour),
                labels["override_status"].get(o.status, o.status),
                o.legal_basis,
                o.reason,
                o.names.get(o.requested_by, o.requested_by),
                when(o.requested_at),
                o.names.get(o.approved_by, o.approved_by) if o.approved_by else "",
                when(o.approved_at),
                when(o.expires_at),
                o.names.get(o.ended_by, o.ended_by) if o.ended_by else "",
                when(o.ended_at),
                o.appeal_id or "",
            ]
            for o in rows
        ),
    )
    name = f"overrides-{view}-{who.area_code}-{clock.today_local():%Y%m%d}.xlsx"
    return download(body, name, XLSX_MEDIA_TYPE)


@router.post("/risk/overrides/{override_id}/{decision}")
def overrides_decide(
    request: Request,
    override_id: RowId,
    decision: Action,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.OVERRIDE_APPROVE))],
) -> Response:
    """Approve, reject or revoke a manual colour."""
    actions = {
        "approve": service.approve_override,
        "reject": service.reject_override,
        "revoke": service.revoke_override,
    }

    def work() -> None:
        if decision not in actions:
            raise NotFound("操作不存在", "no such action")
        actions[decision](session, who, override_id)

    return _act(
        request,
        session,
        work,
        "/risk/overrides",
        lambda message, status: _overrides_page(
            request, session, who, error=message, status_code=status
        ),
    )


# --- appeals ---------------------------------------------------------------------------------


APPEALS_PAGE_SIZE = 30
MINUTE = "%Y-%m-%d %H:%M"


def _appeals_query(status: str, street: str, page: int = 1) -> str:
    """The queue's filters as a query string (links to other pages and the export)."""
    values = {"status": status}
    if street:
        values["street"] = street
    if page > 1:
        values["page"] = str(page)
    return urlencode(values)


def _appeals_page(
    request: Request,
    session: Session,
    who: Principal,
    *,
    status: str = "open",
    street: str = "",
    page: int = 1,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    status = status if status in service.APPEAL_VIEWS else "open"
    try:
        summary = service.appeal_summary(session, who, street=street or None)
        appeals = service.appeal_queue(
            session,
            who,
            status=status,
            street=street or None,
            offset=(page - 1) * APPEALS_PAGE_SIZE,
            limit=APPEALS_PAGE_SIZE,
        )
    except InvalidInput as exc:
        # A street outside the jurisdiction: say so and show the whole queue instead.
        rollback_keeping(session, exc)
        error, status_code, street = exc.message(language(request)), 400, ""
        summary = service.appeal_summary(session, who)
        appeals = service.appeal_queue(session, who, status=status, limit=APPEALS_PAGE_SIZE)
        page = 1
    total = getattr(summary, status)
    # The appellant's standing facts, for choosing the one an upheld appeal withdraws.
    standing = service.standing_facts_of(
        session, [a.subject for a in appeals if a.status == "open"]
    )
    facts = {a.id: standing[a.subject] for a in appeals if a.subject in standing}
    return _page(
        request,
        "risk/appeals.html",
        {
            "appeals": appeals,
            "facts": facts,
            "summary": summary,
            "status": status,
            "street": street,
            "page": page,
            "pages": max(1, -(-total // APPEALS_PAGE_SIZE)),
            "total": total,
            "query": lambda **changes: _appeals_query(
                changes.get("status", status), changes.get("street", street), changes.get("page", 1)
            ),
            "error": error,
            "can": _can(who),
        },
        status_code=status_code,
    )


@router.get("/risk/appeals")
def appeals(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.APPEAL_DECIDE))],
    status: Annotated[str, Query(max_length=10)] = "open",
    street: Annotated[str, Query(max_length=9)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The street office's appeals, nearest deadline first: open, overdue or decided, for
    the jurisdiction or one street, a page at a time."""
    return _appeals_page(request, session, who, status=status, street=street, page=page)


@router.get("/risk/appeals/export.xlsx")
def appeals_export(
    request: Request,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.APPEAL_DECIDE))],
    status: Annotated[str, Query(max_length=10)] = "open",
    street: Annotated[str, Query(max_length=9)] = "",
) -> Response:
    """The queue as filtered, as an Excel workbook: appellants masked, the appeal texts left
    out (free text a person wrote stays on the page), cells neutralised; the export is
    audited."""
    lang = language(request)
    x = _words(request)
    labels = _labels(request)
    rows = service.appeal_export(session, who, status=status, street=street or None)
    statuses = {"open": x["st_open"], "upheld": x["upheld"], "rejected": x["rejected"]}
    header = [
        x["number"], x["street"], x["appellant"], x["compound"], x["colour"], x["filed"],
        x["deadline"], x["overdue"], x["status"], x["outcome"], x["decided_at"],
    ]  # fmt: skip
    body = xlsx_bytes(
        x["appeals"],
        header,
        (
            [
                a.id,
                a.street_code,
                a.appellant.name if a.appellant else a.subject,
                (a.appellant.compound_name or "") if a.appellant else "",
                labels["colours"].get(a.colour, a.colour),
                china_time(a.filed_at, MINUTE),
                china_time(a.deadline, MINUTE),
                x["yes"] if a.overdue else "",
                statuses.get(a.status, a.status),
                (a.outcome_zh if lang == "zh-CN" else a.outcome_en) or "",
                china_time(a.decided_at, MINUTE) if a.decided_at else "",
            ]
            for a in rows
        ),
    )
    name = f"appeals-{status}-{street or who.area_code}-{clock.today_local():%Y%m%d}.xlsx"
    return download(body, name, XLSX_MEDIA_TYPE)


@router.post("/risk/appeals/{appeal_id}/decide")
def appeals_decide(
    request: Request,
    appeal_id: RowId,
    session: DB,
    who: Annotated[Principal, Depends(require(Permission.APPEAL_DECIDE))],
    outcome: Annotated[str, Form(max_length=10)] = "",
    note: Annotated[str, Form(max_length=400)] = "",
    action: Annotated[str, Form(max_length=20)] = "none",
    fact_id: Annotated[str, Form(max_length=10)] = "",
    override_colour: Annotated[str, Form(max_length=8)] = "",
    legal_basis: Annotated[str, Form(max_length=300)] = "",
    hours: Annotated[str, Form(max_length=3)] = "",
    status: Annotated[str, Query(max_length=10)] = "open",
    street: Annotated[str, Query(max_length=9)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """Decide an appeal from the queue; back to the queue as it was filtered."""

    def work() -> None:
        try:
            data = DecideIn.model_validate(
                {
                    "outcome": outcome,
                    "note": note,
                    "action": action or "none",
                    "fact_id": int(fact_id) if fact_id.strip().isdigit() else None,
                    "override_colour": override_colour or None,
                    "legal_basis": legal_basis or None,
                    "hours": int(hours) if hours.strip().isdigit() else None,
                }
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = str(problem["loc"][0]) if problem.get("loc") else "note"
            raise InvalidInput(
                f"请检查“{field}”：处理意见至少4个字，小时数1至72",
                f"check '{field}': a note of 4 characters or more, hours 1 to 72",
                field=field,
            ) from exc
        service.decide_appeal(session, who, appeal_id, data)

    return _act(
        request,
        session,
        work,
        f"/risk/appeals?{_appeals_query(status, street, page)}",
        lambda message, code: _appeals_page(
            request,
            session,
            who,
            status=status,
            street=street,
            page=page,
            error=message,
            status_code=code,
        ),
    )

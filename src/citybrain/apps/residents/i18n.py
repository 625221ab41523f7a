"""The residents app's interface strings: Simplified Chinese first, English second.

They live beside the app rather than in the shared catalogue (kit/locales); a key not found
here falls back to the shared catalogue, so the shell's strings (nav, footer) still work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from citybrain.kit.i18n import translate

MESSAGES: dict[str, tuple[str, str]] = {
    # Resident pages
    "res.app": ("居民健康服务", "Resident health service"),
    "res.welcome": ("小区居民健康登记", "Compound resident health registration"),
    "res.intro": (
        "登记本人和家庭成员到所住小区，每日健康打卡，查看健康码及其原因，对赋码有异议可申诉。",
        "Register yourself and your household to your compound, report your health daily, "
        "see your health code and why it has its colour, and appeal if you disagree.",
    ),
    "res.privacy": (
        "您的姓名、身份证号码、手机号码加密保存，工作人员只能看到脱敏信息。",
        "Your name, ID number and phone are stored encrypted; staff see them masked.",
    ),
    "res.register": ("居民登记", "Register"),
    "res.register_intro": (
        "请如实填写。身份证号码、手机号码和姓名将用于再次登录。",
        "Fill in truthfully. Your ID number, phone and name are how you log in again.",
    ),
    "res.login": ("已登记居民登录", "Log in (registered residents)"),
    "res.login_submit": ("登录", "Log in"),
    "res.login_note": (
        "请使用登记时的身份证号码、手机号码和姓名。多次输错将暂时锁定。",
        "Use the ID number, phone and name you registered with. Repeated mistakes lock "
        "the login for a while.",
    ),
    "res.no_account": ("还没有登记？去登记", "Not registered yet? Register"),
    "res.have_account": ("已经登记过？直接登录", "Already registered? Log in"),
    "res.logout": ("退出", "Log out"),
    "res.nav_code": ("我的健康码", "My health code"),
    "res.nav_report": ("健康打卡", "Daily report"),
    "res.nav_household": ("我的家庭", "My household"),
    "res.fix_below": ("请修改以下内容：", "Please correct the following:"),
    "res.me": ("本人信息", "About you"),
    "res.name": ("姓名", "Name"),
    "res.id_number": ("身份证号码", "Resident ID number"),
    "res.phone": ("手机号码", "Mobile phone"),
    "res.phone_optional": ("手机号码（可选）", "Mobile phone (optional)"),
    "res.phone_hint": ("用于再次登录", "You log in with it"),
    "res.where": ("所在小区", "Your compound"),
    "res.district": ("区县", "District"),
    "res.street": ("街道（乡镇）", "Street (town)"),
    "res.community": ("社区（村）", "Community (village)"),
    "res.compound": ("小区", "Compound"),
    "res.choose": ("请选择", "Choose"),
    "res.choose_district_first": ("请先选择区县", "choose a district first"),
    "res.choose_street_first": ("请先选择街道", "choose a street first"),
    "res.choose_community_first": (
        "请先选择社区，或按名称搜索",
        "choose a community first, or search by name",
    ),
    "res.search_compound": ("按名称搜索小区（可选）", "Search compounds by name (optional)"),
    "res.search_hint": ("如：阳光", "e.g. 阳光"),
    "res.search_results": ("找到{n}个小区，请选择", "{n} compounds found: choose one"),
    "res.no_compound_match": (
        "没有找到名称包含该文字的小区，请换个写法或逐级选择",
        "no compound name contains that; try other words or choose level by level",
    ),
    "res.refresh_choices": ("更新选项", "Update the lists"),
    "res.address": ("门牌地址", "Address in the compound"),
    "res.building": ("楼栋", "Building"),
    "res.unit": ("单元", "Unit"),
    "res.room": ("门牌号", "Room"),
    "res.optional": ("可不填", "optional"),
    "res.members": ("家庭成员（同住）", "Household members (living with you)"),
    "res.members_hint": (
        "可登记同住的家人；没有手机号的老人和孩子可不填手机号。不需要的空白栏会被忽略。",
        "Add the family members who live with you; elders and children without a phone may "
        "leave it empty. Empty slots are ignored.",
    ),
    "res.member_n": ("家庭成员{n}", "Household member {n}"),
    "res.remove": ("删除", "Remove"),
    "res.add_member": ("添加家庭成员", "Add a household member"),
    "res.consent": (
        "提交即表示您同意将上述信息用于本市疫情防控，按规定期限保存。",
        "By submitting you agree that this information is used for the city's epidemic "
        "control and kept for the period the rules set.",
    ),
    "res.register_submit": ("提交登记", "Register"),
    "res.registered_notice": ("登记成功，已为您登录。", "Registered. You are logged in."),
    "res.existing_notice": (
        "您已登记过，已为您登录，登记信息未作更改。",
        "You were already registered: you are logged in and nothing was changed.",
    ),
    "res.appealed_notice": (
        "申诉已提交，街道办将在期限内处理，结果会显示在本页。",
        "Appeal filed. The street office will decide within the deadline; the outcome "
        "will show on this page.",
    ),
    "res.code_title": ("我的健康码", "My health code"),
    "res.member_code_title": ("{name}的健康码", "Health code of {name}"),
    "res.qr_label": ("健康码二维码", "health code QR"),
    "res.issued_at": ("生成于 {at}", "issued {at}"),
    "res.expires_at": ("有效至 {at}", "valid until {at}"),
    "res.refresh_code": ("刷新", "Refresh"),
    "res.overridden": (
        "当前颜色由人工赋码决定（经两名审批人批准，有法律依据，到期自动失效）。",
        "The current colour is a manual override (approved by two people on a legal basis; "
        "it expires on its own).",
    ),
    "res.why_colour": ("赋码原因", "Why this colour"),
    "res.no_risk": ("无风险记录。", "No risk on record."),
    "res.until": ("持续至 {at}", "until {at}"),
    "res.evidence": ("记录编号", "Record ids"),
    "res.rule": ("规则 {rule}（规则版本 {version}）", "rule {rule} (rule set version {version})"),
    "res.colour_until": ("预计于 {at} 恢复", "expected to end {at}"),
    "res.my_compound": ("我的小区", "My compound"),
    "res.household_colours": ("家庭成员健康码", "Household codes"),
    "res.self": ("本人", "you"),
    "res.show_code": ("查看", "show"),
    "res.appeal_title": ("申诉", "Appeal"),
    "res.appeal_text": ("申诉理由", "Why the colour is wrong"),
    "res.appeal_hint": (
        "请说明理由，如已做核酸检测、未去过相关地点等",
        "Explain why: a negative test, never at that place…",
    ),
    "res.appeal_submit": ("提交申诉", "File the appeal"),
    "res.appeal_green": ("绿码无需申诉。", "A green code needs no appeal."),
    "res.filed_at": ("提交于 {at}", "filed {at}"),
    "res.deadline": ("处理期限 {at}", "to be decided by {at}"),
    "res.report_title": ("每日健康打卡", "Daily health report"),
    "res.report_saved": ("已保存今日打卡。", "Today's report is saved."),
    "res.reported_today": (
        "今日已打卡（{at}），可在今天内修改。",
        "Reported today ({at}); you may correct it until midnight.",
    ),
    "res.flagged_note": (
        "您报告了发热或症状，社区工作人员会与您联系。如症状加重请及时到发热门诊就诊。",
        "You reported fever or symptoms: your community's staff will contact you. If it "
        "gets worse, go to a fever clinic.",
    ),
    "res.temperature": ("体温（℃）", "Temperature (℃)"),
    "res.temperature_hint": ("{fever}℃及以上为发热", "{fever} ℃ or above is a fever"),
    "res.symptoms": ("今日症状", "Symptoms today"),
    "res.symptoms_hint": ("没有症状请不勾选", "leave all unticked if you have none"),
    "res.whereabouts": ("今日在家还是外出", "At home or away today"),
    "res.report_submit": ("提交打卡", "Submit"),
    "res.report_correct": ("修改今日打卡", "Correct today's report"),
    "res.report_privacy": (
        "打卡信息仅供所在社区了解居民健康状况，不会自动改变健康码颜色。",
        "Reports let your community look after residents; they never change a code's colour "
        "by themselves.",
    ),
    "res.member_added": ("已添加家庭成员。", "Household member added."),
    "res.reported": ("今日已打卡", "reported today"),
    "res.report_now": ("去打卡", "report"),
    "res.passes": ("出入证", "Passes"),
    # Staff pages
    "res.staff_title": ("小区居民管理", "Compound residents"),
    "res.compound_name": ("小区名称", "Compound name"),
    "res.area_code": ("区域代码", "Area code"),
    "res.tier": ("小区分级", "Compound tier"),
    "res.residents": ("登记居民", "Residents"),
    "res.reports_today": ("今日打卡", "Reports today"),
    "res.reported_today_col": ("今日已打卡", "Reported today"),
    "res.flagged_today": ("今日异常", "Flagged today"),
    "res.no_compounds": ("辖区内没有符合条件的小区", "No compounds match in your jurisdiction"),
    "res.since": ("自 {at}", "since {at}"),
    "res.tab_reports": ("今日打卡", "Daily reports"),
    "res.tab_residents": ("居民", "Residents"),
    "res.tab_scans": ("出入记录", "Entries and exits"),
    "res.tab_passes": ("出入证", "Passes"),
    "res.day": ("日期", "Date"),
    "res.flagged_only": ("只看异常", "Flagged only"),
    "res.active_only": ("只看今日有效", "Valid today only"),
    "res.direction": ("方向", "Direction"),
    "res.all": ("全部", "All"),
    "res.export_xlsx": ("导出Excel", "Export to Excel"),
    "res.colour": ("健康码", "Code colour"),
    "res.household": ("户", "Household"),
    "res.none": ("暂无记录", "Nothing yet"),
    "res.yes": ("是", "yes"),
    "res.no": ("否", "no"),
    "res.updated_at": ("提交时间", "Submitted"),
    "res.flagged": ("异常", "Flagged"),
    "res.corrected_n": ("修改{n}次", "corrected {n}×"),
    "res.followed_up": ("已跟进", "followed up"),
    "res.needs_follow_up": ("待跟进", "to follow up"),
    "res.mark_followed_up": ("标记已跟进", "Mark followed up"),
    "res.flag_not_fact": (
        "居民自报的发热或症状只提示工作人员跟进，不作为风险事实：只有发热门诊登记的就诊记录才会影响健康码。",
        "Self-reported fever or symptoms only ask staff to follow up; they are not risk facts. "
        "Only a fever clinic's record of a visit affects a code.",
    ),
    "res.scanned_at": ("时间", "Time"),
    "res.gate": ("门岗", "Gate"),
    "res.decision": ("结果", "Decision"),
    "res.valid": ("有效期", "Valid"),
    "res.valid_from": ("起始日期", "From"),
    "res.valid_until": ("截止日期", "Until"),
    "res.pass_reason": ("事由", "Reason"),
    "res.pass_status": ("状态", "Status"),
    "res.pass_id": ("编号", "No."),
    "res.note": ("说明", "Note"),
    "res.active": ("有效", "valid"),
    "res.inactive": ("不在有效期", "not valid today"),
    "res.revoked": ("已作废", "revoked"),
    "res.revoke": ("作废", "Revoke"),
    "res.issue_pass": ("发放出入证", "Issue a pass"),
    "res.pass_green": (
        "出入证只发给封控（红）或管控（黄）小区的住户。",
        "Passes are for households of closed (red) or controlled (yellow) compounds only.",
    ),
    "res.n_members": ("{n}人", "{n} persons"),
    "res.members_count": ("人数", "Persons"),
    "res.sex": ("性别", "Sex"),
    "res.age": ("年龄", "Age"),
    "res.self_registered": ("本人登记", "Self-registered"),
    "res.report_date": ("日期", "Date"),
    "res.corrections": ("修改次数", "Corrections"),
    "res.reason": ("原因", "Reason"),
    # Vocabularies
    "colour.green": ("绿码", "green"),
    "colour.yellow": ("黄码", "yellow"),
    "colour.red": ("红码", "red"),
    "colour_code.green": ("绿码", "GREEN"),
    "colour_code.yellow": ("黄码", "YELLOW"),
    "colour_code.red": ("红码", "RED"),
    "tier.green": ("低风险（绿）", "normal (green)"),
    "tier.yellow": ("管控小区（黄）", "controlled (yellow)"),
    "tier.red": ("封控小区（红）", "closed (red)"),
    "where.home": ("在家", "at home"),
    "where.away": ("外出", "away"),
    "direction.entry": ("进", "in"),
    "direction.exit": ("出", "out"),
    "direction.visit": ("到访", "visit"),
    "decision.pass": ("通行", "pass"),
    "decision.deny": ("禁止", "denied"),
    "pass.supplies": ("采购生活物资", "buying supplies"),
    "pass.medical": ("就医", "medical care"),
    "pass.essential_work": ("保供保运等必要工作", "essential work"),
    "pass.other": ("其他", "other"),
    "appeal.open": ("处理中", "being handled"),
    "appeal.pending": ("处理中", "being handled"),
    "appeal.filed": ("已提交", "filed"),
    "appeal.in_review": ("审核中", "in review"),
    "appeal.upheld": ("申诉成立", "upheld"),
    "appeal.granted": ("申诉成立", "upheld"),
    "appeal.rejected": ("申诉不成立", "rejected"),
    "appeal.dismissed": ("申诉不成立", "rejected"),
    "appeal.decided": ("已处理", "decided"),
    "appeal.overdue": ("已超期", "overdue"),
}


def message(key: str, lang: str = "zh-CN", **params: Any) -> str:
    """The message ``key`` in ``lang`` (zh-CN or en), from this app or else the shared
    catalogue."""
    pair = MESSAGES.get(key)
    if pair is None:
        return translate(key, lang, **params)
    text = pair[1] if lang == "en" else pair[0]
    return text.format(**params) if params else text


def translator(lang: str) -> Callable[..., str]:
    """The template's ``t`` for ``lang``."""

    def t(key: str, **params: Any) -> str:
        return message(key, lang, **params)

    return t

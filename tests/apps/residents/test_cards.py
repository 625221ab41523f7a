"""Printed health cards (纸质健康卡) on the residents' pages: a household prints one for a member
without a phone and reports it lost; the community's staff issue, print again and end cards of
their jurisdiction only."""

from __future__ import annotations

import html
import io
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.apps.residents.tasks import on_card_issued, on_ended_card_presented
from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz import repository as authz_repository
from citybrain.core.authz.service import issue_token
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import Place
from citybrain.healthcode import cards as gate_cards
from citybrain.healthcode.cards import current_cards as cards_in_force
from citybrain.healthcode.codes import verify_card
from citybrain.healthcode.keys import trust_list
from citybrain.healthcode.models import SCAN_GATE, HealthCard
from citybrain.healthcode.service import ScanRequest, record_scans
from citybrain.kit import clock
from citybrain.kit.masking import mask_name
from citybrain.risk.models import RiskNotification
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import (
    OTHER_COMMUNITY,
    csrf,
    invitation_of,
    person_by_id,
    registered,
)
from tests.apps.residents.test_browser import segno_qr_text
from tests.factories import (
    TEST_ACTOR,
    make_user,
    next_synthetic,
    next_synthetic_adult,
    next_synthetic_child,
)
from tests.web.conftest import log_in


def _card_id(response: Any) -> int:
    assert response.status_code == 303, response.text
    found = re.search(r"/cards/(\d+)\?issued=1$", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


def _staff_issue(staff: TestClient, ref: str, token: str) -> Any:
    """Press 办理 on a resident's row (the answer, not followed)."""
    return staff.post(
        f"/residents/staff/persons/{ref}/card", data={"csrf_token": token}, follow_redirects=False
    )


def _grid_worker_at(session: Session, staff: TestClient, compound: str) -> tuple[Any, str]:
    """A grid worker of the compound's community logged in on ``staff``, and the compound's
    residents tab."""
    worker = make_user(session, "grid_worker", compound[:12])
    log_in(staff, worker.name)
    return worker, f"/residents/staff/compounds/{compound}?tab=residents"


def _svg(page: str) -> str:
    found = re.search(r'<div class="qr" data-testid="card-qr">(.*?)</div>', page, re.S)
    assert found, "no QR on the card"
    return found.group(1)


def test_a_household_prints_a_card_for_a_child_and_reports_it_lost(
    resident: TestClient, app: Any, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    registered(resident, compound, members=[child])
    member = person_by_id(session, child.id_number)
    assert member is not None
    household = resident.get("/residents/household").text
    assert 'data-testid="issue-member-card"' in household
    token = csrf(resident, "/residents/household")
    printed = resident.post(
        "/residents/household/cards",
        data={"csrf_token": token, "member": member.ref},
        follow_redirects=False,
    )
    card_id = _card_id(printed)
    page = html.unescape(resident.get(printed.headers["location"]).text)
    assert 'data-testid="card-issued"' in page
    assert mask_name(child.name) in page and child.name not in page
    assert child.id_number[-4:] in page and child.id_number not in page
    assert f"{card_id:06d}" in page
    # The QR on the page reads back (zxing-cpp) as a card of this child and this number.
    text = segno_qr_text(_svg(page))
    verified = verify_card(text, trust_list(session))
    assert (verified.person_ref, verified.card_no) == (member.ref, card_id)
    # The household's page now links to the card; printing it again is audited.
    assert f"/residents/household/cards/{card_id}" in resident.get("/residents/household").text
    resident.get(f"/residents/household/cards/{card_id}")
    prints = session.scalar(
        select(func.count()).where(
            AuditEntry.action == "healthcode.card_print", AuditEntry.object_id == str(card_id)
        )
    )
    assert prints == 2
    # Somebody else's household cannot open it.
    with TestClient(app, base_url="http://testserver") as stranger:
        registered(stranger, compound, next_synthetic())
        assert stranger.get(f"/residents/household/cards/{card_id}").status_code == 404
        foreign = stranger.post(
            "/residents/household/cards",
            data={"csrf_token": csrf(stranger, "/residents/household"), "member": member.ref},
            follow_redirects=False,
        )
        assert foreign.status_code == 404
    # Lost: reported from the card's page; the household page says so and offers a new one.
    ended = resident.post(
        f"/residents/household/cards/{card_id}/end",
        data={"csrf_token": token, "reason": "lost"},
        follow_redirects=False,
    )
    assert ended.status_code == 303 and ended.headers["location"].endswith("card_ended=1")
    session.expire_all()
    card = session.get(HealthCard, card_id)
    assert card is not None and card.end_reason == "lost" and card.ended_at is not None
    again = resident.get(ended.headers["location"]).text
    assert 'data-testid="card-ended"' in again and 'data-testid="issue-member-card"' in again
    # The card's page now says it ended, with no QR to print and nothing presented since.
    gone = resident.get(f"/residents/household/cards/{card_id}")
    assert gone.status_code == 200 and 'data-testid="card-qr"' not in gone.text
    assert (
        "此卡已挂失" in html.unescape(gone.text) and 'data-testid="no-presentations"' in gone.text
    )
    audit = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "healthcode.card_issue")
    ).one()
    assert audit.actor.startswith("resident:") and audit.detail["via"] == "household"


def test_staff_issue_cards_in_their_jurisdiction_only(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = person_by_id(session, person.id_number)
    assert me is not None
    worker, tab = _grid_worker_at(session, staff, compound)
    listed = staff.get(tab).text
    assert f"/residents/staff/persons/{me.ref}/card" in listed
    token = csrf(staff, tab)
    first = _card_id(_staff_issue(staff, me.ref, token))
    page = html.unescape(staff.get(f"/residents/staff/cards/{first}").text)
    assert mask_name(person.name) in page and person.id_number[-4:] in page
    assert person.id_number not in page
    # The residents tab shows the card; a second one ends the first.
    assert f"/residents/staff/cards/{first}" in staff.get(tab).text
    second = _card_id(_staff_issue(staff, me.ref, token))
    session.expire_all()
    old = session.get(HealthCard, first)
    assert old is not None and old.end_reason == "replaced"
    # The residents list's export names the card in force.
    exported = staff.get(f"/residents/staff/compounds/{compound}/export.xlsx?list=residents")
    sheet = load_workbook(io.BytesIO(exported.content)).active
    assert sheet is not None
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][-1] == "纸质健康卡" and rows[1][-1] == f"No.{second:06d}"
    # Outside the jurisdiction: not found, and the attempt is audited.
    elsewhere = make_user(session, "grid_worker", OTHER_COMMUNITY)
    log_in(staff, elsewhere.name)
    assert staff.get(f"/residents/staff/cards/{second}").status_code == 404
    far_token = csrf(staff, "/residents/staff")
    refused = _staff_issue(staff, me.ref, far_token)
    assert refused.status_code == 404
    ending = staff.post(
        f"/residents/staff/cards/{second}/end",
        data={"csrf_token": far_token, "reason": "lost"},
        follow_redirects=False,
    )
    assert ending.status_code == 404
    denied = session.scalar(
        select(func.count()).where(
            AuditEntry.action.in_(
                ["healthcode.card_issue", "healthcode.card_view", "healthcode.card_end"]
            ),
            AuditEntry.outcome == "denied",
        )
    )
    assert denied == 3
    # Back in the jurisdiction: reported lost, back to the residents tab.
    log_in(staff, worker.name)
    done = staff.post(
        f"/residents/staff/cards/{second}/end",
        data={"csrf_token": csrf(staff, tab), "reason": "lost"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("card_ended=1")
    assert 'data-testid="card-ended"' in staff.get(done.headers["location"]).text
    session.expire_all()
    assert session.get(HealthCard, second).end_reason == "lost"  # type: ignore[union-attr]


def test_the_staff_api_issues_lists_and_ends_cards(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = person_by_id(session, person.id_number)
    assert me is not None
    worker = make_user(session, "grid_worker", compound[:12])
    user = authz_repository.user_by_id(session, worker.id)
    assert user is not None
    _, secret = issue_token(session, TEST_ACTOR, name="community-app", user=user)
    headers = {"Authorization": f"Bearer {secret}"}
    issued = staff.post(f"/api/v1/residents/persons/{me.ref}/card", headers=headers)
    assert issued.status_code == 201, issued.text
    card = issued.json()
    assert card["code"].startswith("CBK1:") and card["in_force"] is True
    assert (
        card["holder_name"] == mask_name(person.name) and card["id_tail"] == person.id_number[-4:]
    )
    assert card["issued_via"] == "staff" and card["card_no"] == f"{card['id']:06d}"
    assert verify_card(card["code"], trust_list(session)).card_no == card["id"]
    listed = staff.get(f"/api/v1/residents/compounds/{compound}/cards", headers=headers).json()
    assert [c["id"] for c in listed] == [card["id"]] and "code" not in listed[0]
    ended = staff.post(
        f"/api/v1/residents/cards/{card['id']}/end", json={"reason": "lost"}, headers=headers
    )
    assert ended.status_code == 200 and ended.json()["end_reason"] == "lost"
    assert ended.json()["in_force"] is False
    # Shown at a gate after that: the card's detail lists where and when.
    gate = session.scalars(select(Place).where(Place.compound_code == compound)).first()
    assert gate is not None
    verified = verify_card(card["code"], trust_list(session))
    gate_cards.note_presentation(session, worker.actor, verified, gate.code, "entry")
    detail = staff.get(f"/api/v1/residents/cards/{card['id']}", headers=headers)
    assert detail.status_code == 200, detail.text
    shown = detail.json()["presentations"]
    assert [(p["place_code"], p["place_name"], p["direction"]) for p in shown] == [
        (gate.code, gate.name, "entry")
    ]
    assert detail.json()["end_reason"] == "lost" and "code" not in detail.json()
    active = f"/api/v1/residents/compounds/{compound}/cards?in_force_only=true"
    assert staff.get(active, headers=headers).json() == []
    # A reason the API does not take is refused by field.
    bad = staff.post(
        f"/api/v1/residents/cards/{card['id']}/end", json={"reason": "stolen"}, headers=headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"].endswith("reason")
    # Outside the jurisdiction: not found.
    far = make_user(session, "grid_worker", OTHER_COMMUNITY)
    far_user = authz_repository.user_by_id(session, far.id)
    assert far_user is not None
    _, far_secret = issue_token(session, TEST_ACTOR, name="far-app", user=far_user)
    far_headers = {"Authorization": f"Bearer {far_secret}"}
    assert (
        staff.get(f"/api/v1/residents/cards/{card['id']}", headers=far_headers).status_code == 404
    )
    assert (
        staff.post(f"/api/v1/residents/persons/{me.ref}/card", headers=far_headers).status_code
        == 404
    )
    assert (
        staff.get(f"/api/v1/residents/compounds/{compound}/cards", headers=far_headers).status_code
        == 404
    )


def test_an_adult_confirmed_in_person_gets_a_card_in_the_same_step(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    # An adult without a phone waits to be seen by the community; the grid worker who checks
    # them and their ID card ticks 同时办理纸质健康卡 and goes straight to the card to print.
    adult = next_synthetic_adult()
    registered(resident, compound, members=[adult])
    invitation = invitation_of(session, adult.id_number)
    assert invitation is not None
    log_in(staff, make_user(session, "grid_worker", compound[:12]).name)
    tab = f"/residents/staff/compounds/{compound}?tab=residents"
    assert 'data-testid="card-box"' in staff.get(tab).text
    done = staff.post(
        f"/residents/staff/invitations/{invitation.id}/confirm",
        data={"csrf_token": csrf(staff, tab), "compound": compound, "seen": "yes", "card": "yes"},
        follow_redirects=False,
    )
    card_id = _card_id(done)
    session.expire_all()
    member = person_by_id(session, adult.id_number)
    assert member is not None and member.household_id == invitation.household_id
    card = session.get(HealthCard, card_id)
    assert card is not None and card.person_ref == member.ref and card.ended_at is None
    page = html.unescape(staff.get(done.headers["location"]).text)
    assert mask_name(adult.name) in page and adult.id_number[-4:] in page


def test_a_holder_who_logs_in_is_told_of_a_card_someone_else_issued(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    person = registered(resident, compound, members=[child])
    me = person_by_id(session, person.id_number)
    kid = person_by_id(session, child.id_number)
    assert me is not None and kid is not None
    worker, tab = _grid_worker_at(session, staff, compound)
    token = csrf(staff, tab)
    by_staff = _card_id(_staff_issue(staff, me.ref, token))
    # The resident prints their own card, and the child's: nobody is told of those.
    household_token = csrf(resident, "/residents/household")
    for ref in (me.ref, kid.ref):
        _card_id(
            resident.post(
                "/residents/household/cards",
                data={"csrf_token": household_token, "member": ref},
                follow_redirects=False,
            )
        )
    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == "healthcode.card_issued")
        .order_by(OutboxEvent.id)
    ).all()
    assert len(events) == 3 and events[0].payload["card"] == by_staff
    assert events[0].payload["issued_by"] == worker.actor.ref
    for event in events:
        on_card_issued(session, event)
        on_card_issued(session, event)  # delivered twice: told once
    notices = session.scalars(
        select(RiskNotification).where(RiskNotification.kind.startswith("card_issued:"))
    ).all()
    assert [n.kind for n in notices] == [f"card_issued:{by_staff}"]
    assert notices[0].subject == subject_of(me)
    code_page = html.unescape(resident.get("/residents/code").text)
    assert f"已为您办理纸质健康卡（卡号 {by_staff:06d}），由社区工作人员办理" in code_page
    assert person.name not in notices[0].text_zh


def test_staff_issue_a_sheet_of_cards_for_those_who_never_log_in(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    children = [next_synthetic_child(), next_synthetic_child()]
    person = registered(resident, compound, members=children)
    me = person_by_id(session, person.id_number)
    assert me is not None
    log_in(staff, make_user(session, "grid_worker", compound[:12]).name)
    tab = f"/residents/staff/compounds/{compound}?tab=residents"
    listed = html.unescape(staff.get(tab).text)
    # The registrant logs in themselves; the two children never do, and hold no card.
    assert "为未自行登录且无卡的居民办理（2人）" in listed
    assert listed.count('data-testid="choose-resident"') == 3
    # Filtered to a building with nobody in it, the button still counts the whole compound.
    filtered = html.unescape(staff.get(f"{tab}&building=99号楼").text)
    assert filtered.count('data-testid="choose-resident"') == 0
    assert "为未自行登录且无卡的居民办理（2人）" in filtered
    token = csrf(staff, tab)
    url = f"/residents/staff/compounds/{compound}/cards"
    done = staff.post(url, data={"csrf_token": token, "scope": "needing"}, follow_redirects=False)
    assert done.status_code == 303 and "/cards/sheet?ids=" in done.headers["location"]
    sheet = html.unescape(staff.get(done.headers["location"]).text)
    assert sheet.count('data-testid="health-card"') == 2
    assert 'data-testid="cards-issued"' in sheet and "已办理 2 张" in sheet
    for child in children:
        assert mask_name(child.name) in sheet and child.id_number not in sheet
    session.expire_all()
    kids = [person_by_id(session, c.id_number) for c in children]
    held = cards_in_force(session, [k.ref for k in kids if k is not None])
    assert len(held) == 2
    # Now nobody needs one; the registrant can still be ticked.
    assert 'data-testid="issue-needing-cards"' not in staff.get(tab).text
    ticked = staff.post(
        url,
        data={"csrf_token": token, "scope": "selected", "refs": [me.ref]},
        follow_redirects=False,
    )
    assert ticked.status_code == 303
    assert (
        html.unescape(staff.get(ticked.headers["location"]).text).count('data-testid="health-card"')
        == 1
    )
    # Nothing ticked, or too many at once: refused, saying why.
    empty = staff.post(url, data={"csrf_token": token, "scope": "selected"})
    assert empty.status_code == 422 and "请先选择居民" in html.unescape(empty.text)
    many = staff.post(
        url,
        data={
            "csrf_token": token,
            "scope": "selected",
            "refs": [me.ref + str(i) for i in range(61)],
        },
    )
    assert many.status_code == 422 and "一次最多办理60张" in html.unescape(many.text)
    # Another community's grid worker: not found, and nothing issued.
    log_in(staff, make_user(session, "grid_worker", OTHER_COMMUNITY).name)
    far_token = csrf(staff, "/residents/staff")
    far = staff.post(url, data={"csrf_token": far_token, "scope": "selected", "refs": [me.ref]})
    assert far.status_code == 404


def test_more_needing_cards_than_a_sheet_holds_are_issued_a_sheet_at_a_time(
    resident: TestClient,
    staff: TestClient,
    session: Session,
    compound: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gate_cards, "MANY_AT_ONCE", 2)
    registered(resident, compound, members=[next_synthetic_child() for _ in range(3)])
    log_in(staff, make_user(session, "grid_worker", compound[:12]).name)
    tab = f"/residents/staff/compounds/{compound}?tab=residents"
    token = csrf(staff, tab)
    url = f"/residents/staff/compounds/{compound}/cards"
    first = staff.post(url, data={"csrf_token": token, "scope": "needing"})
    page = html.unescape(first.text)
    assert page.count('data-testid="health-card"') == 2 and "还有 1 人未办理" in page
    second = html.unescape(staff.post(url, data={"csrf_token": token, "scope": "needing"}).text)
    assert second.count('data-testid="health-card"') == 1 and "人未办理" not in second
    assert 'data-testid="issue-needing-cards"' not in staff.get(tab).text


def test_an_ended_card_presented_at_a_gate_is_told_to_the_household_and_the_community(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    child = next_synthetic_child()
    person = registered(resident, compound, members=[child])
    me, kid = person_by_id(session, person.id_number), person_by_id(session, child.id_number)
    assert me is not None and kid is not None
    worker, tab = _grid_worker_at(session, staff, compound)
    # The community printed the child's card; the household then reported it lost.
    card_id = _card_id(_staff_issue(staff, kid.ref, csrf(staff, tab)))
    text = segno_qr_text(_svg(staff.get(f"/residents/staff/cards/{card_id}").text))
    resident.post(
        f"/residents/household/cards/{card_id}/end",
        data={"csrf_token": csrf(resident, "/residents/household"), "reason": "lost"},
    )
    verified = verify_card(text, trust_list(session))
    gate = session.scalars(select(Place).where(Place.compound_code == compound)).first()
    assert gate is not None
    # Somebody shows it at the compound's gate (the gate's API is in healthcode's tests).
    assert gate_cards.note_presentation(session, worker.actor, verified, gate.code, "exit")
    event = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == gate_cards.TOPIC_ENDED_CARD_PRESENTED)
    ).one()
    on_ended_card_presented(session, event)
    on_ended_card_presented(session, event)  # delivered twice: told once
    notices = session.scalars(
        select(RiskNotification).where(RiskNotification.kind.startswith("card_presented:"))
    ).all()
    # The registrant is told (the child has no account of their own), once.
    assert [n.subject for n in notices] == [subject_of(me)]
    told = notices[0].text_zh
    assert f"卡号 {card_id:06d}" in told and "挂失" in told and gate.name in told
    assert child.name not in told and mask_name(child.name) in told
    assert "闸机未放行" in html.unescape(resident.get("/residents/code").text)
    # The household's page warns of it and links the card's page, which lists where and when.
    household = html.unescape(resident.get("/residents/household").text)
    assert 'data-testid="presented-cards"' in household and gate.name in household
    assert f"/residents/household/cards/{card_id}" in household
    page = html.unescape(resident.get(f"/residents/household/cards/{card_id}").text)
    assert page.count('data-testid="presentation-row"') == 1 and gate.name in page
    # So do the community's residents tab and the staff's card page.
    listed = html.unescape(staff.get(tab).text)
    assert 'data-testid="presented-card"' in listed
    assert f"/residents/staff/cards/{card_id}" in listed
    staff_page = html.unescape(staff.get(f"/residents/staff/cards/{card_id}").text)
    assert "此卡已挂失" in staff_page and staff_page.count('data-testid="presentation-row"') == 1
    assert child.name not in staff_page
    # From there, a new card for the child, by staff and by the household.
    assert f'action="/residents/staff/persons/{kid.ref}/card"' in staff_page
    assert f'name="member" value="{kid.ref}"' in page
    assert _card_id(_staff_issue(staff, kid.ref, csrf(staff, f"/residents/staff/cards/{card_id}")))
    anew = resident.post(
        "/residents/household/cards",
        data={
            "csrf_token": csrf(resident, f"/residents/household/cards/{card_id}"),
            "member": kid.ref,
        },
        follow_redirects=False,
    )
    assert _card_id(anew) > card_id


def test_a_card_scanned_at_the_gate_is_marked_in_the_entries_and_exits(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = person_by_id(session, person.id_number)
    assert me is not None
    _, tab = _grid_worker_at(session, staff, compound)
    card_id = _card_id(_staff_issue(staff, me.ref, csrf(staff, tab)))
    gate = session.scalars(select(Place).where(Place.compound_code == compound)).first()
    assert gate is not None
    for card_no in (card_id, None):  # the card, then the phone's code
        record_scans(
            session,
            [
                ScanRequest(
                    method=SCAN_GATE,
                    place_code=gate.code,
                    person_ref=me.ref,
                    code_colour="" if card_no else "green",
                    direction="exit",
                    device_token_id=None,
                    scanned_at=clock.now(),
                    card_no=card_no,
                )
            ],
        )
    scans = html.unescape(staff.get(f"/residents/staff/compounds/{compound}?tab=scans").text)
    assert scans.count('data-testid="scan-card"') == 1
    assert f"凭纸质卡 No.{card_id:06d}" in scans
    exported = staff.get(f"/residents/staff/compounds/{compound}/export.xlsx?list=scans")
    sheet = load_workbook(io.BytesIO(exported.content)).active
    assert sheet is not None
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][-1] == "纸质健康卡"
    assert sorted(str(r[-1] or "") for r in rows[1:]) == ["", f"No.{card_id:06d}"]

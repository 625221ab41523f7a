"""Exit passes (出入证) at the gate: the policy with a pass, the pass lookup by whole local days,
issuing and revoking (scoped, audited, announced), and scans at a closed compound's gate."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.principal import Principal
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.models import PLACE_CHECKPOINT, PLACE_COMPOUND_GATE, PLACE_VENUE
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import HouseholdIn, PersonIn
from citybrain.core.people.service import create_household, register_person
from citybrain.healthcode import passes
from citybrain.healthcode.codes import issue_code
from citybrain.healthcode.models import HouseholdPass, Scan
from citybrain.healthcode.policy import decide
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput, NotFound
from citybrain.kit.settings import get_settings
from citybrain.risk.service import assert_fact, tier_of
from tests.factories import TEST_ACTOR, first_compound, make_user, next_synthetic
from tests.healthcode.conftest import Gate, make_red, person_row

GATE, VENUE = PLACE_COMPOUND_GATE, PLACE_VENUE


@pytest.mark.parametrize(
    ("kind", "direction", "colour", "tier", "resident", "has_pass", "decision", "reason"),
    [
        # A closed (red) compound: a green resident with a pass goes out; nobody else does.
        (GATE, "exit", "green", "red", True, True, "pass", "pass_exit"),
        (GATE, "exit", "green", "red", True, False, "deny", "compound_closed_exit"),
        (GATE, "exit", "yellow", "red", True, True, "deny", "compound_closed_exit"),
        (GATE, "exit", "red", "red", True, True, "deny", "compound_closed_exit"),
        (GATE, "exit", "green", "red", False, True, "deny", "compound_closed_exit"),
        # ... and comes back in, as every resident does; outsiders stay out, pass or not.
        (GATE, "entry", "green", "red", True, True, "pass", "resident_home"),
        (GATE, "entry", "green", "red", False, True, "deny", "compound_closed_entry"),
        # A controlled (yellow) compound: residents pass per policy, a pass changes nothing.
        (GATE, "exit", "green", "yellow", True, True, "pass", "resident_controlled"),
        (GATE, "exit", "yellow", "yellow", True, True, "deny", "stay_home"),
        (GATE, "entry", "green", "yellow", False, True, "deny", "compound_controlled"),
        # A green compound: a pass does not let a red resident out.
        (GATE, "exit", "red", "green", True, True, "deny", "stay_home"),
        # Venues and checkpoints: a pass never overrides a yellow or red code.
        (VENUE, "entry", "yellow", None, True, True, "deny", "code_yellow"),
        (VENUE, "entry", "red", None, True, True, "deny", "code_red"),
        (VENUE, "exit", "green", None, True, True, "pass", "green_code"),
        (PLACE_CHECKPOINT, "exit", "red", "red", True, True, "deny", "code_red"),
    ],
)
def test_the_gate_policy_with_a_pass(
    kind: str,
    direction: str,
    colour: str,
    tier: str | None,
    resident: bool,
    has_pass: bool,
    decision: str,
    reason: str,
) -> None:
    got = decide(
        place_kind=kind,
        direction=direction,
        colour=colour,
        tier=tier,
        resident=resident,
        has_pass=has_pass,
    )
    assert (got.decision, got.reason.code) == (decision, reason)
    assert got.reason.zh and got.reason.en
    if reason == "pass_exit":
        assert "出入证" in got.reason.zh and "pass" in got.reason.en


def test_the_pass_is_asked_for_only_where_it_can_change_the_decision() -> None:
    asked: list[str] = []

    def lookup(name: str, answer: bool) -> Callable[[], bool]:
        def check() -> bool:
            asked.append(name)
            return answer

        return check

    cases = [
        ("venue", VENUE, "exit", "red", None, True),
        ("red code", GATE, "exit", "red", "red", True),
        ("entry", GATE, "entry", "green", "red", True),
        ("yellow compound", GATE, "exit", "green", "yellow", True),
        ("green compound", GATE, "exit", "green", "green", True),
        ("outsider", GATE, "exit", "green", "red", False),
    ]
    for name, kind, direction, colour, tier, resident in cases:
        decide(
            place_kind=kind,
            direction=direction,
            colour=colour,
            tier=tier,
            resident=resident,
            has_pass=lookup(name, True),
        )
    assert asked == []
    got = decide(
        place_kind=GATE,
        direction="exit",
        colour="green",
        tier="red",
        resident=True,
        has_pass=lookup("holder", False),
    )
    assert asked == ["holder"] and got.reason.code == "compound_closed_exit"


@dataclass
class Closed:
    """A closed (red) compound: the gate fixture's resident is the case; a green household of
    two lives beside them."""

    gate: Gate
    officer: Principal
    household_id: int
    holder: Person
    spouse: Person


def _member(session: Session, officer: Principal, compound: str, household_id: int) -> Person:
    synthetic = next_synthetic()
    masked, created = register_person(
        session,
        officer,
        PersonIn(
            name=synthetic.name,
            id_number=synthetic.id_number,
            phone=synthetic.phone,
            compound_code=compound,
            household_id=household_id,
        ),
    )
    assert created
    return person_row(session, masked.ref)


@pytest.fixture
def closed(session: Session, gate: Gate) -> Closed:
    household = create_household(
        session, gate.officer, HouseholdIn(compound_code=gate.compound, unit="1-1-101")
    )
    holder = _member(session, gate.officer, gate.compound, household.id)
    spouse = _member(session, gate.officer, gate.compound, household.id)
    make_red(session, gate.resident, gate.compound)
    assert tier_of(session, gate.compound).tier == "red"
    return Closed(gate, gate.officer, household.id, holder, spouse)


def _issue(closed: Closed, session: Session, start: int = 0, days: int = 2) -> HouseholdPass:
    today = clock.today_local()
    return passes.issue(
        session,
        closed.officer,
        closed.gate.compound,
        household_id=closed.household_id,
        valid_from=today + dt.timedelta(days=start),
        valid_until=today + dt.timedelta(days=start + days - 1),
        reason="medical",
    )


def _cst(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=clock.CHINA_TZ)


def test_a_pass_is_valid_for_whole_local_days_of_its_own_compound(
    session: Session, closed: Closed
) -> None:
    item = _issue(closed, session, start=1, days=2)
    first, last = item.valid_from, item.valid_until
    ref, code = closed.holder.ref, closed.gate.compound
    assert passes.valid_pass(session, ref, code, _cst(first, 0)) == item
    assert passes.valid_pass(session, ref, code, _cst(last, 23, 59, 59)) == item
    # Both members of the household hold it; by person ref or by risk subject.
    assert passes.valid_pass(session, closed.spouse.ref, code, _cst(first, 12)) == item
    subject = closed.spouse.id_number_bidx[:32]
    assert passes.valid_pass(session, None, code, _cst(first, 12), subject=subject) == item
    # Not before it starts, not after it ends (local days, China time: 23:59 UTC is the
    # next morning in Zhengzhou).
    assert passes.valid_pass(session, ref, code, _cst(first, 0) - dt.timedelta(seconds=1)) is None
    assert passes.valid_pass(session, ref, code, _cst(last + dt.timedelta(days=1), 0)) is None
    last_utc_evening = dt.datetime.combine(last, dt.time(23, 59), tzinfo=dt.UTC)
    assert passes.valid_pass(session, ref, code, last_utc_evening) is None
    # Not another compound's, not another household's.
    other = first_compound(session, "410105002")
    assert other != code
    assert passes.valid_pass(session, ref, other, _cst(first, 12)) is None
    case = closed.gate.resident
    assert passes.valid_pass(session, case.ref, code, _cst(first, 12)) is None
    # Not once revoked.
    passes.revoke(session, closed.officer, item.id)
    assert passes.valid_pass(session, ref, code, _cst(first, 12)) is None


def test_issuing_and_revoking_are_checked_audited_announced_and_scoped(
    session: Session, closed: Closed
) -> None:
    today = clock.today_local()
    with pytest.raises(passes.PassInvalid) as wrong:
        passes.issue(
            session,
            closed.officer,
            closed.gate.compound,
            household_id=closed.household_id,
            valid_from=today - dt.timedelta(days=1),
            valid_until=today + dt.timedelta(days=20),
            reason="other",
        )
    assert set(wrong.value.problems) == {"valid_from", "valid_until", "note"}
    item = _issue(closed, session)
    event = session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.topic == passes.TOPIC_PASS_ISSUED, OutboxEvent.key == str(item.id)
        )
    ).one()
    assert event.payload["household_id"] == closed.household_id
    assert sorted(event.payload["person_refs"]) == sorted([closed.holder.ref, closed.spouse.ref])
    audit = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.pass_issue", AuditEntry.object_id == str(item.id)
        )
    ).one()
    assert audit.area_code == closed.gate.compound and audit.detail["tier"] == "red"
    assert closed.holder.ref not in str(audit.detail)

    # Staff of another street neither see nor revoke it.
    outsider = make_user(session, "street_officer", "410105002")
    with pytest.raises(NotFound):
        passes.revoke(session, outsider, item.id)
    with pytest.raises(NotFound):
        passes.passes_of_compound(session, outsider, closed.gate.compound)
    assert passes.passes_of_compound(session, closed.officer, closed.gate.compound) == [item]

    passes.revoke(session, closed.officer, item.id)
    assert item.revoked_at is not None and item.revoked_by == closed.officer.actor.ref
    assert session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.topic == passes.TOPIC_PASS_REVOKED, OutboxEvent.key == str(item.id)
        )
    ).one()
    with pytest.raises(InvalidInput):
        passes.revoke(session, closed.officer, item.id)
    assert (
        passes.passes_of_compound(session, closed.officer, closed.gate.compound, valid_on=today)
        == []
    )


def test_a_green_compound_gets_no_pass(session: Session, gate: Gate) -> None:
    household = create_household(session, gate.officer, HouseholdIn(compound_code=gate.compound))
    assert tier_of(session, gate.compound).tier == "green"
    today = clock.today_local()
    with pytest.raises(passes.PassInvalid) as refused:
        passes.issue(
            session,
            gate.officer,
            gate.compound,
            household_id=household.id,
            valid_from=today,
            valid_until=today,
            reason="supplies",
        )
    assert set(refused.value.problems) == {"compound"}


def _scan(
    client: TestClient, token: str, ref: str, session: Session, direction: str
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/scans",
        json={"code": issue_code(session, ref, "green").text, "direction": direction},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_closed_compound_lets_out_a_resident_with_a_valid_pass(
    client: TestClient, session: Session, closed: Closed
) -> None:
    token, holder = closed.gate.gate_token, closed.holder
    before = _scan(client, token, holder.ref, session, "exit")
    assert (before["decision"], before["reason_code"]) == ("deny", "compound_closed_exit")
    item = _issue(closed, session)
    out = _scan(client, token, holder.ref, session, "exit")
    assert (out["decision"], out["reason_code"], out["colour"]) == ("pass", "pass_exit", "green")
    assert "出入证" in out["reason_zh"] and "pass" in out["reason_en"]
    scan = session.get(Scan, out["scan_id"])
    assert scan is not None and scan.reason == "pass_exit"
    # The household's other member holds it too; both come back in.
    assert _scan(client, token, closed.spouse.ref, session, "exit")["passed"] is True
    back = _scan(client, token, holder.ref, session, "entry")
    assert (back["decision"], back["reason_code"]) == ("pass", "resident_home")
    # The case (red code, no pass) stays in.
    case = _scan(client, token, closed.gate.resident.ref, session, "exit")
    assert case["decision"] == "deny"
    # Revoked: the next scan is refused.
    passes.revoke(session, closed.officer, item.id)
    after = _scan(client, token, holder.ref, session, "exit")
    assert (after["decision"], after["reason_code"]) == ("deny", "compound_closed_exit")


def test_an_expired_or_future_pass_does_not_open_the_gate(
    client: TestClient, session: Session, closed: Closed
) -> None:
    _issue(closed, session, start=1, days=1)  # tomorrow only
    today = _scan(client, closed.gate.gate_token, closed.holder.ref, session, "exit")
    assert today["reason_code"] == "compound_closed_exit"
    with clock.frozen(clock.now() + dt.timedelta(days=1)):
        tomorrow = _scan(client, closed.gate.gate_token, closed.holder.ref, session, "exit")
    assert tomorrow["reason_code"] == "pass_exit"
    with clock.frozen(clock.now() + dt.timedelta(days=2)):
        expired = _scan(client, closed.gate.gate_token, closed.holder.ref, session, "exit")
    assert (expired["decision"], expired["reason_code"]) == ("deny", "compound_closed_exit")


def test_venues_ignore_passes(client: TestClient, session: Session, closed: Closed) -> None:
    _issue(closed, session)
    assert_fact(
        session,
        TEST_ACTOR,
        subject=closed.holder.id_number_bidx[:32],
        kind="close_contact",
        source="test",
        evidence={"test": 1},
        valid_from=clock.now() - dt.timedelta(hours=1),
    )
    at_venue = _scan(client, closed.gate.venue_token, closed.holder.ref, session, "entry")
    assert at_venue["colour"] != "green"
    assert (at_venue["decision"], at_venue["reason_code"]) == ("deny", f"code_{at_venue['colour']}")
    # Nor does the pass let a yellow or red code out of the compound.
    at_gate = _scan(client, closed.gate.gate_token, closed.holder.ref, session, "exit")
    assert (at_gate["decision"], at_gate["reason_code"]) == ("deny", "compound_closed_exit")


def test_passes_are_purged_a_retention_period_after_they_ended(
    session: Session, closed: Closed
) -> None:
    days = get_settings().pass_retention_days
    running = _issue(closed, session, days=2)  # ends tomorrow
    revoked = _issue(closed, session, start=5, days=3)  # revoked today, would have run on
    passes.revoke(session, closed.officer, revoked.id)
    ids = {running.id, revoked.id}

    def kept() -> set[int]:
        rows = session.scalars(select(HouseholdPass.id).where(HouseholdPass.id.in_(ids)))
        return set(rows)

    # Within the period after either ended, both stay.
    with clock.frozen(clock.now() + dt.timedelta(days=days)):
        assert passes.purge_expired(session) == 0
    assert kept() == ids
    # A revoked pass goes a period after its revocation, however long it was to run.
    with clock.frozen(clock.now() + dt.timedelta(days=days + 1)):
        assert passes.purge_expired(session) == 1
    assert kept() == {running.id}
    # One that ran out goes a period after its last day.
    with clock.frozen(clock.now() + dt.timedelta(days=days + 2)):
        assert passes.purge_expired(session) == 1
    assert kept() == set()
    purges = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "healthcode.passes_purge")
    ).all()
    assert [p.detail["deleted"] for p in purges] == [1, 1]
    assert all(p.detail["retention_days"] == days for p in purges)

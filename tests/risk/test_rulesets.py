"""A new rule version shows its dry run by district and activates only with two different
approvers besides its proposer (three above the threshold); then every colour follows it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.factories import OTHER_DISTRICT_STREET, STREET_A, STREET_B, make_user
from tests.risk.conftest import T0, a_gate_writing, audits, events, resident

from citybrain.core.audit.service import Actor
from citybrain.core.authz.principal import Principal
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.jobs import get_queue, reset_queue
from citybrain.kit.db import Database, use_database
from citybrain.kit.errors import Conflict, PermissionDenied
from citybrain.risk import service
from citybrain.risk.models import PersonColour, RuleSet
from citybrain.risk.rules import packaged_rules_text
from citybrain.risk.rulesets import approve_rule_set, propose_rule_set, reject_rule_set
from citybrain.risk.settings import reset_risk_settings
from citybrain.risk.tasks import on_rules_activated, recompute_colours

STAFF = Actor("user:901", "street_officer", STREET_A)

# Version 2: secondary contacts turn red instead of yellow.
SECONDARY_RED = (
    packaged_rules_text()
    .replace("name: 郑州市健康码赋码规则 v1", "name: 郑州市健康码赋码规则 v2")
    .replace(
        "facts: [secondary_contact]\n    colour: yellow",
        "facts: [secondary_contact]\n    colour: red",
    )
)


def secondary(session: Session, subject: str) -> None:
    service.assert_fact(
        session,
        STAFF,
        subject=subject,
        kind="secondary_contact",
        source="analysis.contacts",
        evidence={"case_key": 1},
        valid_from=T0 - dt.timedelta(days=1),
    )


def city(session: Session) -> dict[str, Any]:
    """Three secondary contacts in two districts and one nobody has registered yet, and a
    close contact the new version leaves red."""
    district_a = make_user(session, "district_officer", "410105")
    district_b = make_user(session, "district_officer", "410102")
    people = [
        resident(session, district_a),
        resident(session, make_user(session, "street_officer", STREET_B)),
    ]
    elsewhere = resident(session, make_user(session, "street_officer", OTHER_DISTRICT_STREET))
    for person in (*people, elsewhere):
        secondary(session, person.subject)
    secondary(session, "c" * 32)
    close = resident(session, district_b)
    service.assert_fact(
        session,
        STAFF,
        subject=close.subject,
        kind="close_contact",
        source="staff",
        evidence={},
        valid_from=T0,
    )
    commanders = [make_user(session, "city_commander", "4101") for _ in range(4)]
    return {"people": people, "elsewhere": elsewhere, "close": close, "commanders": commanders}


def colour(session: Session, subject: str) -> str:
    return service.colour_of(session, subject).colour


def test_one_approver_does_not_activate_two_do_and_the_dry_run_counts_by_district(
    session: Session, at: Any
) -> None:
    at(T0)
    town = city(session)
    proposer, first, second, _ = town["commanders"]
    proposal = propose_rule_set(session, proposer, SECONDARY_RED, note="次密接改为红码")
    dry = proposal.dry_run
    assert dry["base_version"] == 1 and dry["changed"] == 4
    assert [(d["code"], d["name"], d["changed"], d["to_red"]) for d in dry["by_district"]] == [
        ("410102", "中原区", 1, 1),
        ("410105", "金水区", 2, 2),
        ("unplaced", "未定位", 1, 1),
    ]
    assert proposal.approvals_required == 2 and proposal.status == "proposed"
    assert audits(session, "risk.rules.propose")[-1].detail["changed"] == 4

    with pytest.raises(PermissionDenied) as own:
        approve_rule_set(session, proposer, proposal.version)
    assert own.value.code == "proposer_cannot_approve"
    approve_rule_set(session, first, proposal.version)
    # One approver: still proposed, nobody's colour moved.
    assert proposal.status == "proposed"
    assert service.active_rule_set(session).version == 1
    assert colour(session, town["people"][0].subject) == "yellow"
    with pytest.raises(Conflict) as twice:
        approve_rule_set(session, first, proposal.version)
    assert twice.value.code == "already_approved"

    approve_rule_set(session, second, proposal.version)
    assert proposal.status == "active" and service.active_rule_set(session).version == 2
    for person in (*town["people"], town["elsewhere"]):
        view = service.colour_of(session, person.subject)
        assert (view.colour, view.rule_set_version) == ("red", 2)
    assert colour(session, "c" * 32) == "red"
    assert colour(session, town["close"].subject) == "red"
    activation = audits(session, "risk.rules.activate")[-1]
    assert activation.detail["approvers"] == [first.actor.ref, second.actor.ref]
    assert activation.detail["recompute"] == "inline" and activation.detail["changed"] == 4
    assert events(session, "risk.rules_activated")[-1]["version"] == 2
    old = session.query(RuleSet).filter_by(version=1).one()
    assert old.status == "superseded"
    with pytest.raises(Conflict):
        approve_rule_set(session, town["commanders"][3], proposal.version)


def test_a_change_above_the_threshold_needs_a_third_approval(
    session: Session, at: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYBRAIN_RISK_THIRD_APPROVAL_THRESHOLD", "3")
    reset_risk_settings()
    at(T0)
    town = city(session)
    proposer, first, second, third = town["commanders"]
    proposal = propose_rule_set(session, proposer, SECONDARY_RED)
    assert proposal.dry_run["changed"] == 4 and proposal.approvals_required == 3
    approve_rule_set(session, first, proposal.version)
    approve_rule_set(session, second, proposal.version)
    assert proposal.status == "proposed"
    assert colour(session, town["people"][0].subject) == "yellow"
    approve_rule_set(session, third, proposal.version)
    assert proposal.status == "active"
    assert colour(session, town["people"][0].subject) == "red"


def test_officers_cannot_propose_and_a_rejected_version_cannot_be_approved(
    session: Session,
) -> None:
    officer: Principal = make_user(session, "district_officer", "410105")
    with pytest.raises(PermissionDenied):
        propose_rule_set(session, officer, SECONDARY_RED)
    proposer, approver = (make_user(session, "city_commander", "4101") for _ in range(2))
    proposal = propose_rule_set(session, proposer, SECONDARY_RED)
    reject_rule_set(session, approver, proposal.version, "不符合防控方案")
    with pytest.raises(Conflict):
        approve_rule_set(session, make_user(session, "city_commander", "4101"), proposal.version)


def test_a_big_city_recomputes_in_a_job_and_reads_never_show_the_old_version(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, at: Any
) -> None:
    monkeypatch.setenv("CITYBRAIN_RISK_INLINE_RECOMPUTE_LIMIT", "0")
    reset_risk_settings()
    at(T0)
    subjects = [f"{n:x}" * 32 for n in range(10, 13)]
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        proposer, first, second = (make_user(session, "city_commander", "4101") for _ in range(3))
        for subject in subjects:
            secondary(session, subject)
        version = propose_rule_set(session, proposer, SECONDARY_RED).version
        approve_rule_set(session, first, version)
        approve_rule_set(session, second, version)
        activated = events(session, "risk.rules_activated")[-1]
        assert activated == {"version": version, "sha256": activated["sha256"], "recompute": "job"}
    with fresh_database.unit_of_work() as session:
        stored = {r.subject: r.rule_set_version for r in session.scalars(select(PersonColour))}
        assert stored == dict.fromkeys(subjects, 1)
        # A read in between recomputes under the active version.
        assert service.colour_of(session, subjects[0]).colour == "red"
        event = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.topic == "risk.rules_activated")
            .order_by(OutboxEvent.id.desc())
        ).first()
    reset_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        assert event is not None
        on_rules_activated(session, event)
        assert get_queue().pending_count() == 1
        with use_database(fresh_database):
            counts = recompute_colours.call_local(version)
        assert counts["recomputed"] == 3 and counts["changed"] == 2
    finally:
        reset_queue()
    with fresh_database.unit_of_work() as session:
        rows = session.scalars(select(PersonColour)).all()
        assert {(r.colour, r.rule_set_version) for r in rows} == {("red", version)}


def test_gates_get_the_write_lock_while_a_city_is_recomputed(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch, at: Any
) -> None:
    # A rule change in a big city recomputes every colour in a job, a batch a transaction:
    # gates must find SQLite's write lock free between the batches, or wait for the city.
    if fresh_database.dialect != "sqlite":
        pytest.skip("SQLite's one write lock")
    monkeypatch.setenv("CITYBRAIN_RISK_INLINE_RECOMPUTE_LIMIT", "0")
    monkeypatch.setenv("CITYBRAIN_RISK_BATCH_SIZE", "10")
    reset_risk_settings()
    at(T0)
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        proposer, first, second = (make_user(session, "city_commander", "4101") for _ in range(3))
        for n in range(40):
            secondary(session, f"{n:032x}")
        version = propose_rule_set(session, proposer, SECONDARY_RED).version
        approve_rule_set(session, first, version)
        approve_rule_set(session, second, version)
    with use_database(fresh_database), a_gate_writing(fresh_database) as gate:
        counts = recompute_colours.call_local(version)
    assert counts["recomputed"] == 40 and counts["changed"] == 40
    assert gate.taken >= 3  # four batches of colours, then the compounds'

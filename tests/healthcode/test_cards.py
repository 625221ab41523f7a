"""Printed health cards (纸质健康卡): the card's code, scanning it at a gate (the holder's current
colour online, the holder shown masked for the ID check), cards lost or replaced refused,
jurisdiction, withdrawal and retention."""

from __future__ import annotations

import datetime as dt
import threading
import zlib

import base45  # type: ignore[import-untyped]
import cbor2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.people import service as people_service
from citybrain.core.people.service import withdraw_person
from citybrain.healthcode import cards
from citybrain.healthcode.codes import (
    CARD_PREFIX,
    CLAIM_CITYBRAIN,
    CodeRefused,
    card_claims,
    issue_code,
    sign,
    verify_card,
    verify_code,
)
from citybrain.healthcode.keys import current_signer, trust_list
from citybrain.healthcode.models import CardPresentation, HealthCard, Scan
from citybrain.healthcode.service import ScanRequest, record_scans
from citybrain.kit import clock
from citybrain.kit.crypto import field_cipher
from citybrain.kit.db import Database
from citybrain.kit.errors import InvalidInput, NotFound, PermissionDenied
from tests.factories import (
    STREET_A,
    STREET_B,
    TEST_ACTOR,
    first_compound,
    make_person,
    make_user,
)
from tests.healthcode.conftest import Gate, make_red


def _scan(client: TestClient, token: str, code: str, **body: object) -> tuple[int, dict]:
    response = client.post(
        "/api/v1/scans", json={"code": code, **body}, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json()


def _holder_name_and_tail(gate: Gate) -> tuple[str, str]:
    cipher = field_cipher()
    name = cipher.decrypt(gate.resident.name_enc, people_service.NAME_FIELD)
    number = cipher.decrypt(gate.resident.id_number_enc, people_service.ID_FIELD)
    return name, number[-4:]


def test_a_card_names_its_holder_and_number_never_a_colour(session: Session, gate: Gate) -> None:
    printable = cards.issue_by_staff(session, gate.officer, gate.resident.ref)
    text = printable.text
    assert text.startswith(CARD_PREFIX)
    # Decoded by hand: base45, zlib, COSE_Sign1, the claims.
    cose = cbor2.loads(zlib.decompress(base45.b45decode(text[len(CARD_PREFIX) :])))
    claims = cbor2.loads(cose.value[2])
    private = claims[CLAIM_CITYBRAIN]
    assert private == {"t": "hk", "ref": gate.resident.ref, "n": printable.card.id}
    assert "c" not in private
    verified = verify_card(text, trust_list(session))
    assert (verified.person_ref, verified.card_no) == (gate.resident.ref, printable.card.id)
    validity = verified.expires_at - verified.issued_at
    assert validity == dt.timedelta(days=180)
    # A card is not a health code, nor the reverse.
    with pytest.raises(CodeRefused) as refused:
        verify_code(text, trust_list(session))
    assert refused.value.reason_code == "bad_prefix"
    health = issue_code(session, gate.resident.ref, "green").text
    with pytest.raises(CodeRefused) as refused:
        verify_card(health, trust_list(session))
    assert refused.value.reason_code == "bad_prefix"
    # A card's claims under a health code's type: refused by type after the signature.
    claims = card_claims(
        gate.resident.ref, 1, issued_at=clock.now(), expires_at=clock.now() + dt.timedelta(days=1)
    )
    claims[CLAIM_CITYBRAIN]["t"] = "hc"
    with pytest.raises(CodeRefused) as refused:
        verify_card(sign(current_signer(session), claims, CARD_PREFIX), trust_list(session))
    assert refused.value.reason_code == "wrong_type"
    # One changed character: refused.
    tampered = text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]
    with pytest.raises(CodeRefused) as refused:
        verify_card(tampered, trust_list(session))
    assert refused.value.reason_code in {"bad_signature", "bad_encoding", "malformed"}
    # The row keeps only what is printed: the masked name and the ID's last four.
    name, tail = _holder_name_and_tail(gate)
    card = session.get(HealthCard, printable.card.id)
    assert card is not None and card.id_tail == tail and card.holder_name != name
    assert card.holder_name[0] == name[0] and "*" in card.holder_name
    audit = session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.card_issue",
            AuditEntry.object_id == gate.resident.ref,
        )
    )
    assert audit is not None and audit.detail["card"] == card.id
    assert name not in str(audit.detail) and tail not in str(audit.detail)


def test_a_card_scanned_at_a_gate_takes_the_current_colour_and_shows_the_holder(
    client: TestClient, session: Session, gate: Gate
) -> None:
    text = cards.issue_by_staff(session, gate.officer, gate.resident.ref).text
    name, tail = _holder_name_and_tail(gate)
    status, answer = _scan(client, gate.venue_token, text)
    assert status == 200, answer
    assert (answer["decision"], answer["colour"], answer["colour_source"]) == (
        "pass",
        "green",
        "online",
    )
    holder = answer["card"]
    assert holder["id_tail"] == tail and holder["check_identity"] is True
    assert holder["name"][0] == name[0] and holder["name"] != name
    assert holder["card_no"].lstrip("0") == str(session.scalars(select(HealthCard.id)).first())
    scan = session.get(Scan, answer["scan_id"])
    assert scan is not None and scan.person_ref == gate.resident.ref
    assert scan.card_id == session.scalars(select(HealthCard.id)).first()  # the ID was checked
    audit = session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.scans_record", AuditEntry.object_id == scan.batch
        )
    )
    assert audit is not None and audit.detail["cards"] == 1
    # The holder turns red: the same card now stops them, by their current colour.
    make_red(session, gate.resident, gate.compound)
    status, answer = _scan(client, gate.venue_token, text)
    assert status == 200
    assert (answer["decision"], answer["reason_code"], answer["colour"]) == (
        "deny",
        "code_red",
        "red",
    )
    # At their own closed compound's gate: home yes, out no — as with their phone's code.
    status, home = _scan(client, gate.gate_token, text, direction="entry")
    assert (home["decision"], home["reason_code"]) == ("pass", "resident_home")
    # A phone's code gets no card block in its answer.
    status, plain = _scan(
        client, gate.venue_token, issue_code(session, gate.resident.ref, "red").text
    )
    assert status == 200 and "card" not in plain
    phone_scan = session.get(Scan, plain["scan_id"])
    assert phone_scan is not None and phone_scan.card_id is None


def test_a_lost_or_replaced_card_is_refused_with_every_copy(
    client: TestClient, session: Session, gate: Gate
) -> None:
    first = cards.issue_by_staff(session, gate.officer, gate.resident.ref)
    copy = cards.printable_for_staff(session, gate.officer, first.card.id).text
    assert copy != first.text  # signed afresh, the same card
    assert verify_card(copy, trust_list(session)).card_no == first.card.id
    second = cards.issue_by_staff(session, gate.officer, gate.resident.ref)
    session.refresh(first.card)
    assert first.card.end_reason == "replaced" and first.card.ended_at is not None
    before = session.scalar(select(func.count()).select_from(Scan))
    for text in (first.text, copy):
        status, answer = _scan(client, gate.venue_token, text)
        assert status == 422 and answer["error"]["code"] == "card_revoked"
        assert "补办" in answer["error"]["message"]
    assert session.scalar(select(func.count()).select_from(Scan)) == before
    assert _scan(client, gate.venue_token, second.text)[0] == 200
    # Reported lost: refused from the next scan; a second report changes nothing.
    cards.end_by_staff(session, gate.officer, second.card.id, "lost")
    cards.end_by_staff(session, gate.officer, second.card.id, "lost")
    status, answer = _scan(client, gate.venue_token, second.text)
    assert status == 422 and answer["error"]["code"] == "card_revoked"
    ended = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == cards.TOPIC_CARD_ENDED)
    ).all()
    assert [e.payload["card"] for e in ended] == [second.card.id]
    # A card no longer in force is not printed again.
    with pytest.raises(InvalidInput) as not_in_force:
        cards.printable_for_staff(session, gate.officer, second.card.id)
    assert (
        not_in_force.value.code == "card_not_in_force" and "已失效" in not_in_force.value.message_zh
    )
    assert cards.current_cards(session, [gate.resident.ref]) == {}


def test_an_ended_card_presented_at_a_gate_is_noted_once_a_place_and_announced(
    client: TestClient, session: Session, gate: Gate
) -> None:
    lost = cards.issue_by_staff(session, gate.officer, gate.resident.ref)
    cards.end_by_staff(session, gate.officer, lost.card.id, "lost")
    name, tail = _holder_name_and_tail(gate)
    # Read twice at the venue (a scanner wedge, or the staff trying again): refused both
    # times, noted once; then at the compound's gate, noted there too.
    for token in (gate.venue_token, gate.venue_token, gate.gate_token):
        status, answer = _scan(client, token, lost.text, direction="exit")
        assert status == 422 and answer["error"]["code"] == "card_revoked"
        assert "核实持卡人身份" in answer["error"]["message"]
    noted = session.scalars(select(CardPresentation).order_by(CardPresentation.id)).all()
    assert [(p.card_id, p.place_code, p.direction) for p in noted] == [
        (lost.card.id, gate.venue.code, "exit"),
        (lost.card.id, gate.gate.code, "exit"),
    ]
    assert noted[0].presented_by.startswith("device:")
    audits = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "healthcode.ended_card_presented")
        .order_by(AuditEntry.seq)
    ).all()
    assert [(a.object_id, a.detail["place_code"], a.detail["reason"]) for a in audits] == [
        (str(lost.card.id), gate.venue.code, "lost"),
        (str(lost.card.id), gate.gate.code, "lost"),
    ]
    assert name not in str(audits[0].detail) and tail not in str(audits[0].detail)
    events = session.scalars(
        select(OutboxEvent).where(OutboxEvent.topic == cards.TOPIC_ENDED_CARD_PRESENTED)
    ).all()
    assert [(e.payload["person_ref"], e.payload["place_code"]) for e in events] == [
        (gate.resident.ref, gate.venue.code),
        (gate.resident.ref, gate.gate.code),
    ]
    # Five minutes on, the same place notes it again; no scan row was ever written.
    with clock.shifted(cards.PRESENTATION_REPEAT + dt.timedelta(seconds=1)):
        assert _scan(client, gate.venue_token, lost.text)[0] == 422
        listed = cards.presented_cards(session, [gate.resident.ref])
    assert session.scalar(select(func.count()).select_from(Scan)) == 0
    assert [(p.card.id, p.times, p.last.place_code) for p in listed] == [
        (lost.card.id, 3, gate.venue.code)
    ]
    assert listed[0].last.place_name == gate.venue.name
    history = cards.presentations_of(session, lost.card.id)
    assert [h.place_code for h in history] == [gate.venue.code, gate.gate.code, gate.venue.code]
    assert history[0].direction == "entry"
    # A card in force, or one merely expired, is never noted.
    current = cards.issue_by_staff(session, gate.officer, gate.resident.ref)
    assert _scan(client, gate.venue_token, current.text)[0] == 200
    verified = verify_card(current.text, trust_list(session))
    later = clock.now() + dt.timedelta(days=181)
    for at in (None, later):
        noted_now = cards.note_presentation(
            session, TEST_ACTOR, verified, gate.venue.code, "entry", now=at
        )
        assert noted_now is None
    assert session.scalar(select(func.count()).select_from(CardPresentation)) == 3
    # Nothing is listed a fortnight on; purged with its card.
    with clock.shifted(cards.PRESENTED_WITHIN + dt.timedelta(minutes=10)):
        assert cards.presented_cards(session, [gate.resident.ref]) == []
    lost.card.ended_at = clock.now() - dt.timedelta(days=cards.CARD_KEEP_DAYS + 1)
    session.flush()
    assert cards.purge_ended_cards(session) == 1
    assert session.scalar(select(func.count()).select_from(CardPresentation)) == 0


def test_only_staff_of_the_jurisdiction_issue_and_end_cards(session: Session, gate: Gate) -> None:
    elsewhere = make_user(session, "street_officer", STREET_B)
    with pytest.raises(NotFound):
        cards.issue_by_staff(session, elsewhere, gate.resident.ref)
    card = cards.issue_by_staff(session, gate.officer, gate.resident.ref).card
    for attempt in (
        lambda: cards.end_by_staff(session, elsewhere, card.id),
        lambda: cards.printable_for_staff(session, elsewhere, card.id),
    ):
        with pytest.raises(NotFound):
            attempt()
    checkpoint = make_user(session, "checkpoint_staff", gate.officer.area_code)
    with pytest.raises(PermissionDenied):
        cards.issue_by_staff(session, checkpoint, gate.resident.ref)


def test_a_card_follows_its_holder_to_their_new_community(session: Session, gate: Gate) -> None:
    card = cards.issue_by_staff(session, gate.officer, gate.resident.ref).card
    assert cards.holder_area(session, card) == gate.compound
    elsewhere = make_user(session, "street_officer", STREET_B)
    with pytest.raises(NotFound):
        cards.card_for_staff(session, elsewhere, card.id)
    # The holder moves to a compound of another street: its staff now look after the card,
    # and the street they left no longer prints or ends it.
    gate.resident.area_code = first_compound(session, STREET_B)
    session.flush()
    assert cards.holder_area(session, card) == gate.resident.area_code
    for attempt in (
        lambda: cards.card_for_staff(session, gate.officer, card.id),
        lambda: cards.printable_for_staff(session, gate.officer, card.id),
        lambda: cards.end_by_staff(session, gate.officer, card.id),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert cards.printable_for_staff(session, elsewhere, card.id).card.id == card.id
    cards.end_by_staff(session, elsewhere, card.id)
    ended = session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.card_end", AuditEntry.outcome == "ok"
        )
    )
    assert ended is not None and ended.area_code == gate.resident.area_code
    # The card still says where it was printed.
    assert card.area_code == gate.compound


def test_a_withdrawn_holder_takes_their_cards_along_and_ended_cards_are_purged(
    client: TestClient, session: Session, gate: Gate
) -> None:
    printable = cards.issue_by_staff(session, gate.officer, gate.resident.ref)
    withdraw_person(session, TEST_ACTOR, gate.resident, reason="test")
    session.flush()
    # The database cascades: no row of the card is left.
    assert session.scalar(select(func.count()).where(HealthCard.id == printable.card.id)) == 0
    session.expunge(printable.card)
    status, answer = _scan(client, gate.venue_token, printable.text)
    assert status == 422 and answer["error"]["code"] == "card_unknown"

    # Retention: a card ended 91 days ago goes; one in force stays.
    masked, _ = make_person(session, gate.officer)
    kept = cards.issue_by_staff(session, gate.officer, masked.ref).card
    old = cards.issue_by_staff(session, gate.officer, masked.ref).card  # ends `kept`
    kept.ended_at = clock.now() - dt.timedelta(days=cards.CARD_KEEP_DAYS + 1)
    session.flush()
    assert cards.purge_ended_cards(session) == 1
    assert session.get(HealthCard, old.id) is not None
    purge = session.scalar(select(AuditEntry).where(AuditEntry.action == "healthcode.cards_purge"))
    assert purge is not None and purge.detail["deleted"] == 1


def test_a_card_whose_holder_left_meanwhile_is_turned_back_without_a_colour(
    session: Session, gate: Gate
) -> None:
    # The gate checked the card a moment before the holder's registration was withdrawn: the
    # batch finds no person, and with no colour in a card there is nothing to pass them by.
    request = ScanRequest(
        method="gate",
        place_code=gate.venue.code,
        person_ref="9" * 32,
        code_colour="",
        direction="entry",
        device_token_id=None,
        scanned_at=clock.now(),
        card_no=7,
    )
    [outcome] = record_scans(session, [request])
    assert (outcome.decision, outcome.reason_code, outcome.colour, outcome.colour_source) == (
        "deny",
        "card_holder_unknown",
        "unknown",
        "unknown",
    )
    assert "联系社区" in outcome.reason_zh
    scan = session.get(Scan, outcome.scan_id)
    assert scan is not None and scan.colour == "unknown" and scan.subject is None


def test_two_cards_issued_at_once_leave_one_in_force(fresh_database: Database) -> None:
    # A double click on 办理: two requests issue at the same moment, each in its own
    # transaction. The second waits for the first and ends its card: one card in force.
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        ref = make_person(session, officer)[0].ref
    first_in = threading.Event()
    second_done = threading.Event()
    issued: list[int] = []

    def second() -> None:
        first_in.wait(5)
        with fresh_database.unit_of_work(immediate=True) as other:
            issued.append(cards.issue_by_staff(other, officer, ref).card.id)
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    with fresh_database.unit_of_work(immediate=True) as session:
        issued.append(cards.issue_by_staff(session, officer, ref).card.id)
        first_in.set()
        # The second issue cannot finish while this one holds the person (or the write lock).
        assert not second_done.wait(0.5)
    thread.join(10)
    assert second_done.is_set() and len(issued) == 2
    with fresh_database.sessions() as session:
        rows = session.scalars(select(HealthCard).where(HealthCard.person_ref == ref)).all()
        in_force = [c.id for c in rows if c.ended_at is None]
        assert in_force == [issued[1]]
        assert {c.end_reason for c in rows if c.ended_at is not None} == {"replaced"}


def test_a_card_uploaded_as_an_offline_scan_is_refused_with_its_reason(
    client: TestClient, session: Session, gate: Gate
) -> None:
    text = cards.issue_by_staff(session, gate.officer, gate.resident.ref).text
    item = {
        "client_id": "card-1",
        "code": text,
        "direction": "entry",
        "scanned_at": clock.now().replace(microsecond=0).isoformat(),
        "decision": "pass",
    }
    response = client.post(
        "/api/v1/scans/offline",
        json={"items": [item]},
        headers={"Authorization": f"Bearer {gate.gate_token}"},
    )
    assert response.status_code == 200, response.text
    [result] = response.json()["items"]
    assert (result["status"], result["reason_code"], result["field"]) == (
        "refused",
        "card_offline",
        "code",
    )
    assert "须联网核验" in result["reason_zh"]

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Event, record, record_many, verify_chain


def _write(session: Session, n: int) -> None:
    for i in range(n):
        record(session, SYSTEM, "test.act", object_type="thing", object_id=i, detail={"i": i})


def test_chain_verifies_and_links(session: Session) -> None:
    _write(session, 5)
    report = verify_chain(session)
    assert report.ok, report
    assert report.rows >= 5
    rows = session.execute(text("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq")).all()
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
        assert after.seq == before.seq + 1


def test_a_batch_extends_the_chain_like_rows_one_at_a_time(session: Session) -> None:
    _write(session, 2)
    entries = record_many(
        session,
        [
            Event(SYSTEM, "test.batch", object_type="thing", object_id=i, detail={"i": i})
            for i in range(4)
        ],
    )
    _write(session, 1)
    assert [e.object_id for e in entries] == ["0", "1", "2", "3"]
    assert [b.seq - a.seq for a, b in itertools.pairwise(entries)] == [1, 1, 1]
    assert verify_chain(session).ok
    with pytest.raises(ValueError, match="outcome"):
        record_many(session, [Event(SYSTEM, "test.batch", outcome="maybe")])
    assert record_many(session, []) == []


def test_an_over_long_object_id_is_cut_not_lost(session: Session) -> None:
    # A failed look-up of a made-up ref audits the ref it was given: a long one is cut to the
    # column's length and marked, and the row (one and many) is still written and chained.
    made_up = "Ω≈ç√∫" * 40
    one = record(session, SYSTEM, "test.lookup", object_id=made_up, outcome="failed")
    many = record_many(session, [Event(SYSTEM, "test.lookup", object_id=made_up + "x")])
    stored = (
        session.execute(
            text("SELECT object_id FROM audit_log WHERE seq IN (:a, :b) ORDER BY seq"),
            {"a": one.seq, "b": many[0].seq},
        )
        .scalars()
        .all()
    )
    assert stored == [made_up[:63] + "…"] * 2
    assert record(session, SYSTEM, "test.lookup", object_id="x" * 64).object_id == "x" * 64
    assert verify_chain(session).ok


def test_updates_and_deletes_are_refused_by_the_database(session: Session) -> None:
    _write(session, 1)
    with pytest.raises(DatabaseError, match="append-only"), session.begin_nested():
        session.execute(text("UPDATE audit_log SET outcome = 'denied'"))
    with pytest.raises(DatabaseError, match="append-only"), session.begin_nested():
        session.execute(text("DELETE FROM audit_log"))


def _drop_guard(session: Session) -> None:
    # An administrator with DDL rights can drop the guard; the chain must still tell.
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(text("DROP TRIGGER audit_log_no_delete"))
    else:
        session.execute(text("DROP TRIGGER audit_log_no_change ON audit_log"))


def test_altering_a_row_is_caught_and_named(session: Session) -> None:
    _write(session, 6)
    target = session.execute(text("SELECT max(seq) - 2 FROM audit_log")).scalar_one()
    _drop_guard(session)
    session.execute(text("UPDATE audit_log SET purpose = 'tampered' WHERE seq = :s"), {"s": target})
    report = verify_chain(session)
    assert not report.ok
    assert report.first_bad_seq == target
    assert report.reason == "content does not match its hash"


def test_deleting_the_last_rows_is_caught(session: Session) -> None:
    _write(session, 3)
    last = session.execute(text("SELECT max(seq) FROM audit_log")).scalar_one()
    _drop_guard(session)
    session.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": last})
    report = verify_chain(session)
    assert not report.ok
    assert report.first_bad_seq == last


def test_deleting_a_middle_row_is_caught(session: Session) -> None:
    _write(session, 4)
    middle = session.execute(text("SELECT max(seq) - 1 FROM audit_log")).scalar_one()
    _drop_guard(session)
    session.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": middle})
    report = verify_chain(session)
    assert not report.ok and report.first_bad_seq == middle

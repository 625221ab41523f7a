"""Two uploads of the same offline queue at once (a gate retrying while its first upload is
still running): each scan is recorded once, and the later upload answers "duplicate" with
the earlier one's scan id. On PostgreSQL the later upload's lookup misses the rows the
earlier one has not committed yet, its insert waits on the unique key and then fails, and
the savepoint path sorts its items out; on SQLite the later upload waits for the write lock
before it looks anything up."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import func, select, text

from citybrain.core.authz.models import User
from citybrain.core.authz.service import principal_for
from citybrain.healthcode.models import Scan
from citybrain.healthcode.service import (
    OFFLINE_STATUS_DUPLICATE,
    OFFLINE_STATUS_RECORDED,
    OfflineResult,
    OfflineScan,
    record_offline_scans,
)
from citybrain.kit import clock
from citybrain.kit.db import Database
from tests.healthcode.conftest import staffed_gate


def _scan(code: str, gate_code: str) -> OfflineScan:
    return OfflineScan(
        client_id=uuid.uuid4().hex,
        code=code,
        direction="entry",
        place_code=gate_code,
        scanned_at=clock.now().replace(microsecond=0).isoformat(),
        decision="pass",
    )


def _waiting_on_a_lock(database: Database) -> bool:
    """Whether another PostgreSQL backend is waiting for a lock (the later upload's insert)."""
    with database.engine.connect() as connection:
        waiting = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        )
    return bool(waiting)


def test_a_concurrent_re_upload_records_each_scan_once(fresh_database: Database) -> None:
    staffed = staffed_gate(fresh_database, "race-gate")
    with fresh_database.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == "race-gate"))
        assert user is not None
        staff = principal_for(user)
    first_scan = _scan(staffed.code, staffed.gate_code)
    second_scan = _scan(staffed.code, staffed.gate_code)
    earlier_recorded = threading.Event()
    may_commit = threading.Event()
    earlier: list[OfflineResult] = []
    later: list[OfflineResult] = []
    errors: list[BaseException] = []

    def upload_earlier() -> None:
        try:
            with fresh_database.unit_of_work(immediate=True) as session:
                earlier.extend(record_offline_scans(session, staff, [first_scan]))
                earlier_recorded.set()
                assert may_commit.wait(20)
        except BaseException as error:  # reported by the test thread
            errors.append(error)
            earlier_recorded.set()

    def upload_later() -> None:
        try:
            with fresh_database.unit_of_work(immediate=True) as session:
                later.extend(record_offline_scans(session, staff, [first_scan, second_scan]))
        except BaseException as error:
            errors.append(error)

    first = threading.Thread(target=upload_earlier)
    first.start()
    assert earlier_recorded.wait(20)
    second = threading.Thread(target=upload_later)
    second.start()
    # The later upload is under way and held: on PostgreSQL its insert waits on the earlier
    # one's uncommitted key, on SQLite its BEGIN IMMEDIATE waits for the write lock.
    deadline = time.monotonic() + 10
    if fresh_database.dialect == "postgresql":
        while not _waiting_on_a_lock(fresh_database):
            assert time.monotonic() < deadline, "the later upload never waited on a lock"
            time.sleep(0.02)
    else:
        time.sleep(0.3)
    assert second.is_alive()
    may_commit.set()
    first.join(20)
    second.join(20)
    assert not errors, errors

    assert [r.status for r in earlier] == [OFFLINE_STATUS_RECORDED]
    assert [r.status for r in later] == [OFFLINE_STATUS_DUPLICATE, OFFLINE_STATUS_RECORDED]
    assert later[0].scan_id == earlier[0].scan_id
    assert later[1].scan_id is not None and later[1].scan_id != earlier[0].scan_id
    with fresh_database.unit_of_work() as session:
        for item in (first_scan, second_scan):
            rows = session.scalar(
                select(func.count()).where(Scan.offline_key.like(f"%:{item.client_id}"))
            )
            assert rows == 1

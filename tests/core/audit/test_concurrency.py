"""Concurrent writers never fork the chain: the head row serialises them on both backends."""

from __future__ import annotations

import threading

from citybrain.core.audit.service import Actor, record, verify_chain
from citybrain.kit.db import Database

WRITERS, ROWS_EACH = 4, 25


def test_parallel_writers_keep_one_unbroken_chain(fresh_database: Database) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(WRITERS)

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(ROWS_EACH):
                with fresh_database.unit_of_work() as session:
                    record(session, Actor(f"writer:{n}"), "test.parallel", object_id=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with fresh_database.unit_of_work() as session:
        report = verify_chain(session)
    assert report.ok, report
    assert report.rows == WRITERS * ROWS_EACH

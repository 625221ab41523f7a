"""A request whose write SQLite turns away — another connection committed after the request
first read — runs again on a fresh snapshot instead of answering 500, and is done once.

The other connection's commit is made to happen at the worst moment through the city's
identity service (a real HTTP server at the wire), which a registration waits on between its
reads and its writes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from citybrain.apps.residents.models import ResidentSmsCode
from citybrain.apps.residents.sms_codes import phone_key
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.people.models import Person
from citybrain.kit.crypto import blind_index
from citybrain.kit.db import Database
from citybrain.web.app import create_app
from citybrain.web.retry import sqlite_busy, worth_retrying
from tests.factories import STREET_A, first_compound, make_user, next_synthetic
from tests.identity_service import FakeIdentityService
from tests.sms_gateway import FakeSmsGateway
from tests.web.test_browser import serving

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def test_a_write_turned_away_by_sqlite_runs_again_and_lands_once(
    fresh_database: Database,
    identity_service: FakeIdentityService,
    sms_gateway: FakeSmsGateway,
) -> None:
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
        compound = first_compound(session, STREET_A)
    person = next_synthetic()

    def commit_elsewhere() -> None:
        # The intake, a job or another request commits while this one waits.
        with fresh_database.unit_of_work() as other:
            make_user(other, "street_officer", STREET_A)

    with serving(create_app(fresh_database)) as base, httpx.Client(base_url=base) as client:

        def csrf() -> str:
            match = CSRF.search(client.get("/residents/register").text)
            assert match is not None
            return match.group(1)

        sent = client.post(
            "/residents/register",
            data={"action": "send_code", "phone": person.phone, "csrf_token": csrf()},
        )
        assert sent.status_code == 200
        before = len(identity_service.checks)
        identity_service.meanwhile = commit_elsewhere
        answer = client.post(
            "/residents/register",
            data={
                "action": "submit",
                "name": person.name,
                "id_number": person.id_number,
                "phone": person.phone,
                "sms_code": sms_gateway.code_for(person.phone),
                "compound_code": compound,
                "building": "1号楼",
                "room": "101",
                "csrf_token": csrf(),
            },
            follow_redirects=False,
        )
    assert answer.status_code == 303, answer.text
    asked = [c for c in identity_service.checks[before:] if c.id_number == person.id_number]
    bidx = blind_index().digest(person.id_number, "id_number")
    with fresh_database.unit_of_work() as session:
        persons = session.scalar(
            select(func.count()).select_from(Person).where(Person.id_number_bidx == bidx)
        )
    assert persons == 1
    if fresh_database.dialect == "sqlite":
        # The first run was turned away after the check and ran again from the start.
        assert len(asked) == 2
    else:
        # PostgreSQL reads the latest commit at each statement: one run is enough.
        assert len(asked) == 1


def test_only_a_lock_refused_at_once_is_retried(tmp_path: Path) -> None:
    """SQLite's own errors, as it raises them: a stale snapshot is run again however long the
    request took; a lock that was waited for until the timeout is not (it would wait as long
    again); anything else is never."""
    db = tmp_path / "locks.db"
    first = sqlite3.connect(db, isolation_level=None, timeout=0.05)
    second = sqlite3.connect(db, isolation_level=None, timeout=0.05)
    first.execute("PRAGMA journal_mode=WAL")
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN")
    first.execute("SELECT * FROM t").fetchall()
    second.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as stale:
        first.execute("INSERT INTO t VALUES (2)")
    first.execute("ROLLBACK")
    second.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as waited:
        first.execute("BEGIN IMMEDIATE")
    second.execute("ROLLBACK")
    with pytest.raises(sqlite3.OperationalError) as missing:
        first.execute("SELECT * FROM nowhere")
    wrapped = OperationalError("INSERT", {}, stale.value)
    assert worth_retrying(wrapped, 0.01) and worth_retrying(wrapped, 30.0)
    assert sqlite_busy(waited.value)
    assert worth_retrying(waited.value, 0.01) and not worth_retrying(waited.value, 10.0)
    assert not worth_retrying(missing.value, 0.01)
    assert not sqlite_busy(ValueError("database is locked"))


def test_a_code_asked_for_while_another_connection_commits_is_texted_once(
    fresh_database: Database, sms_gateway: FakeSmsGateway
) -> None:
    """The SMS platform is outside the database's transaction: a request that sent a code must
    not be turned away afterwards and run again, texting the phone a second code."""
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    phone = next_synthetic().phone

    def commit_elsewhere() -> None:
        with fresh_database.unit_of_work() as other:
            make_user(other, "street_officer", STREET_A)

    with serving(create_app(fresh_database)) as base, httpx.Client(base_url=base) as client:
        match = CSRF.search(client.get("/residents/login").text)
        assert match is not None
        sms_gateway.meanwhile = commit_elsewhere
        answer = client.post(
            "/residents/login",
            data={"action": "send_code", "phone": phone, "csrf_token": match.group(1)},
        )
    assert answer.status_code == 200, answer.text
    assert sms_gateway.meanwhile is None  # the other commit did happen while the code was sent
    assert len(sms_gateway.sent_to(phone)) == 1
    with fresh_database.unit_of_work() as session:
        kept = session.scalar(
            select(func.count())
            .select_from(ResidentSmsCode)
            .where(ResidentSmsCode.phone_key == phone_key(phone))
        )
    assert kept == 1

"""A request whose write SQLite turns away — another connection committed after the request
first read — runs again on a fresh snapshot, taking the write lock first, instead of answering
500, and is done once; a request the database stays busy for answers 503 with Retry-After.

The other connection's commit is made to happen at the worst moment through the city's
identity service (a real HTTP server at the wire), which a registration waits on between its
reads and its writes."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from citybrain.apps.residents.models import ResidentSmsCode
from citybrain.apps.residents.sms_codes import phone_key
from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.models import User
from citybrain.core.geo.service import load_hierarchy
from citybrain.core.people.models import Person
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.kit.db import Database
from citybrain.kit.logging import configure_logging
from citybrain.simulate.persons import SyntheticPerson
from citybrain.web.app import create_app
from citybrain.web.retry import sqlite_busy, worth_retrying
from tests.factories import PASSWORD, STREET_A, first_compound, make_user, next_synthetic
from tests.identity_service import FakeIdentityService
from tests.sms_gateway import FakeSmsGateway
from tests.web.test_browser import serving

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def registration(
    person: SyntheticPerson, compound: str, sms_gateway: FakeSmsGateway, csrf_token: str
) -> dict[str, str]:
    """The registration form of ``person`` in ``compound``, with the code texted to them."""
    return {
        "action": "submit",
        "name": person.name,
        "id_number": person.id_number,
        "phone": person.phone,
        "sms_code": sms_gateway.code_for(person.phone),
        "compound_code": compound,
        "building": "1号楼",
        "room": "101",
        "csrf_token": csrf_token,
    }


def test_a_write_turned_away_by_sqlite_runs_again_and_lands_once(
    fresh_database: Database,
    identity_service: FakeIdentityService,
    sms_gateway: FakeSmsGateway,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json_lines=True)
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
            data=registration(person, compound, sms_gateway, csrf()),
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
    # The service is asked once: on SQLite the first run was turned away after the check and
    # ran again from the start with the service's answer; PostgreSQL reads the latest commit
    # at each statement and needs one run.
    assert len(asked) == 1
    retried = capsys.readouterr().err.count('"request.retried"')
    assert retried == (1 if fresh_database.dialect == "sqlite" else 0)


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


@contextmanager
def committing_all_along(database: Database) -> Iterator[list[int]]:
    """Another connection commits every millisecond or two until exit, as a gate's scan
    batches do all day: the count of its commits."""
    with database.unit_of_work() as session:
        bystander = make_user(session, "street_officer", STREET_A).id
    commits = [0]
    stop = threading.Event()

    def commit_again_and_again() -> None:
        while not stop.is_set():
            with database.unit_of_work(immediate=True) as other:
                other.execute(
                    update(User).where(User.id == bystander).values(last_login_at=clock.now())
                )
            commits[0] += 1
            time.sleep(0.001)

    thread = threading.Thread(target=commit_again_and_again, daemon=True)
    thread.start()
    try:
        yield commits
    finally:
        stop.set()
        thread.join(timeout=10)


def test_logins_and_a_registration_land_while_another_connection_commits_all_along(
    fresh_database: Database,
    identity_service: FakeIdentityService,
    sms_gateway: FakeSmsGateway,
) -> None:
    """Each of these reads, waits on something slow (the password's hash, the city's identity
    service) and then writes. With commits arriving every few milliseconds no run of them can
    finish on its first snapshot; a run again takes SQLite's write lock first, and what the
    first run already asked outside is not asked again."""
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
        compound = first_compound(session, STREET_A)
        officer = make_user(session, "street_officer", STREET_A, "busyofficer")
        # Hashed as in production (the suite's own profile is the cheapest): checking it
        # takes tens of milliseconds between the login's reads and its writes.
        session.execute(
            update(User)
            .where(User.id == officer.id)
            .values(
                password_hash=PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash(PASSWORD)
            )
        )
    person = next_synthetic()
    with (
        serving(create_app(fresh_database)) as base,
        httpx.Client(base_url=base) as client,
        committing_all_along(fresh_database) as commits,
    ):
        token = client.post(
            "/api/v1/auth/token", json={"username": "busyofficer", "password": PASSWORD}
        )
        assert token.status_code == 200, token.text
        match = CSRF.search(client.get("/login").text)
        assert match is not None
        page = client.post(
            "/login",
            data={
                "username": "busyofficer",
                "password": PASSWORD,
                "csrf_token": match.group(1),
            },
            follow_redirects=False,
        )
        assert page.status_code == 303, page.text
        match = CSRF.search(client.get("/residents/register").text)
        assert match is not None
        sent = client.post(
            "/residents/register",
            data={"action": "send_code", "phone": person.phone, "csrf_token": match.group(1)},
        )
        assert sent.status_code == 200, sent.text
        before = len(identity_service.checks)
        match = CSRF.search(client.get("/residents/register").text)
        assert match is not None
        registered = client.post(
            "/residents/register",
            data=registration(person, compound, sms_gateway, match.group(1)),
            follow_redirects=False,
        )
        assert registered.status_code == 303, registered.text
        during = commits[0]
    assert during > 20  # the other connection did commit all along
    asked = [c for c in identity_service.checks[before:] if c.id_number == person.id_number]
    assert len(asked) == 1
    bidx = blind_index().digest(person.id_number, "id_number")
    with fresh_database.unit_of_work() as session:
        persons = session.scalar(
            select(func.count()).select_from(Person).where(Person.id_number_bidx == bidx)
        )
        logins = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "auth.login", AuditEntry.outcome == "ok")
        )
    assert persons == 1
    assert logins == 2


def test_a_request_the_database_stays_busy_for_answers_503_and_keeps_nothing(
    fresh_database: Database, settings_env: Callable[[str, str | None], None]
) -> None:
    """Another connection holds SQLite's write lock past every run's wait: the login answers
    503 with Retry-After and says nothing was saved (a page on the page, the API in JSON),
    never a 500; once the lock is free the same login lands."""
    if fresh_database.dialect != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL locks rows")
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
        user_id = make_user(session, "street_officer", STREET_A, "lockedout").id
    settings_env("CITYBRAIN_SQLITE_BUSY_TIMEOUT_SECONDS", "0.2")
    database = Database(fresh_database.url)  # its connections wait 0.2 s for the lock
    holder = sqlite3.connect(str(make_url(fresh_database.url).database), isolation_level=None)
    login = {"username": "lockedout", "password": PASSWORD}
    try:
        with serving(create_app(database)) as base, httpx.Client(base_url=base) as client:
            match = CSRF.search(client.get("/login").text)
            assert match is not None
            holder.execute("BEGIN IMMEDIATE")
            api = client.post("/api/v1/auth/token", json=login)
            page = client.post(
                "/login",
                data={**login, "csrf_token": match.group(1)},
                headers={"accept": "text/html"},
                follow_redirects=False,
            )
            holder.execute("ROLLBACK")
            after = client.post("/api/v1/auth/token", json=login)
    finally:
        holder.close()
        database.dispose()
    assert api.status_code == 503
    assert api.headers["retry-after"] == "2"
    assert api.json()["error"]["code"] == "busy"
    assert page.status_code == 503
    assert "系统繁忙，本次提交未保存，请稍后重试" in page.text
    assert after.status_code == 200, after.text
    with fresh_database.unit_of_work() as session:
        logins = session.scalars(
            select(AuditEntry.outcome).where(
                AuditEntry.action == "auth.login", AuditEntry.object_id == str(user_id)
            )
        ).all()
    assert logins == ["ok"]  # the two refused runs left nothing behind


def test_a_double_tap_on_register_registers_once_and_never_answers_500(
    fresh_database: Database,
    identity_service: FakeIdentityService,
    sms_gateway: FakeSmsGateway,
) -> None:
    """The same registration sent twice at once (a double tap on a slow phone): one lands,
    the other — which found the ID free, then lost the race to insert it — runs again and
    says the ID is registered, as it would have a moment later; on PostgreSQL it used to
    answer 500."""
    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
        compound = first_compound(session, STREET_A)
    person = next_synthetic()
    answers: list[httpx.Response] = []
    with serving(create_app(fresh_database)) as base, httpx.Client(base_url=base) as client:
        match = CSRF.search(client.get("/residents/register").text)
        assert match is not None
        sent = client.post(
            "/residents/register",
            data={"action": "send_code", "phone": person.phone, "csrf_token": match.group(1)},
        )
        assert sent.status_code == 200
        form = registration(person, compound, sms_gateway, match.group(1))
        together = threading.Barrier(2)

        def tap() -> None:
            with httpx.Client(base_url=base, cookies=client.cookies) as phone:
                together.wait()
                answers.append(phone.post("/residents/register", data=form, follow_redirects=False))

        taps = [threading.Thread(target=tap) for _ in range(2)]
        for thread in taps:
            thread.start()
        for thread in taps:
            thread.join()
    assert sorted(a.status_code for a in answers) == [303, 422], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 422)
    assert "该身份证号码已登记" in refused.text
    bidx = blind_index().digest(person.id_number, "id_number")
    with fresh_database.unit_of_work() as session:
        persons = session.scalar(
            select(func.count()).select_from(Person).where(Person.id_number_bidx == bidx)
        )
    assert persons == 1

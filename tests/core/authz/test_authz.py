import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz import repository
from citybrain.core.authz.models import LoginFailure
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission, Role, permissions_of
from citybrain.core.authz.scope import covers
from citybrain.core.authz.service import (
    authenticate,
    authenticate_token,
    create_user,
    issue_token,
    revoke_token,
    withdrawn_tokens,
)
from citybrain.core.geo.service import load_hierarchy
from citybrain.kit import clock
from citybrain.kit.db import Database, transaction
from citybrain.kit.errors import (
    Conflict,
    InvalidInput,
    NotAuthenticated,
    PermissionDenied,
    RateLimited,
)
from tests.conftest import BACKEND
from tests.factories import PASSWORD, STREET_A, TEST_ACTOR, make_user


def _last_audit(session: Session, action: str) -> AuditEntry:
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq.desc())
    ).first()
    assert entry is not None
    return entry


def test_passwords_are_hashed_with_argon2(session: Session) -> None:
    who = make_user(session, "street_officer", STREET_A, "hashme")
    user = repository.user_by_id(session, who.id)
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


def test_create_user_checks_role_area_strength_and_uniqueness(session: Session) -> None:
    with pytest.raises(InvalidInput, match="role"):
        create_user(
            session, TEST_ACTOR, username="x1a", password=PASSWORD, role="mayor", area_code=STREET_A
        )
    with pytest.raises(InvalidInput) as caught:
        create_user(
            session,
            TEST_ACTOR,
            username="x1b",
            password=PASSWORD,
            role="auditor",
            area_code="999999",
        )
    assert caught.value.field == "area_code"
    with pytest.raises(InvalidInput) as weak:
        create_user(
            session, TEST_ACTOR, username="x1c", password="short", role="auditor", area_code="4101"
        )
    assert weak.value.field == "password"
    make_user(session, "auditor", "4101", "taken")
    with pytest.raises(Conflict):
        create_user(
            session,
            TEST_ACTOR,
            username="Taken",
            password=PASSWORD,
            role="auditor",
            area_code="4101",
        )


def test_login_succeeds_and_is_audited(session: Session) -> None:
    make_user(session, "grid_worker", STREET_A + "003", "gridlogin")
    principal = authenticate(session, "GridLogin", PASSWORD, "10.0.0.1")
    assert principal.role == "grid_worker"
    assert Permission.PERSON_UNMASK in principal.permissions
    assert _last_audit(session, "auth.login").outcome == "ok"


def test_failed_logins_are_kept_audited_and_rate_limited(session: Session) -> None:
    make_user(session, "auditor", "4101", "victim")
    session.commit()
    for _ in range(5):
        with pytest.raises(NotAuthenticated), transaction(session):
            authenticate(session, "victim", "wrong-password-9", "10.0.0.2")
    # Each failure survived its transaction's rollback.
    failures = session.scalars(select(LoginFailure).where(LoginFailure.username == "victim"))
    assert len(list(failures)) == 5
    assert _last_audit(session, "auth.login").outcome == "denied"
    # Now even the right password is refused until the window passes.
    with pytest.raises(RateLimited), transaction(session):
        authenticate(session, "victim", PASSWORD, "10.0.0.3")
    later = clock.now() + dt.timedelta(minutes=16)
    with clock.frozen(later):
        assert authenticate(session, "victim", PASSWORD, "10.0.0.3").name == "victim"


def test_unknown_user_fails_like_a_wrong_password(session: Session) -> None:
    with pytest.raises(NotAuthenticated) as caught, transaction(session):
        authenticate(session, "nobody-here", "whatever-123", "10.0.0.4")
    assert caught.value.code == "login_failed"


def test_scope_is_a_prefix_of_the_hierarchy() -> None:
    street = Principal("user", 1, "s", "s", "street_officer", STREET_A, frozenset())
    assert covers(street, STREET_A + "003001")
    assert not covers(street, "410105002001")
    assert not covers(street, None)


def test_roles_deny_by_default() -> None:
    assert permissions_of("no_such_role") == frozenset()
    assert Permission.PERSON_VIEW not in permissions_of(Role.AUDITOR)
    assert Permission.PERSON_VIEW not in permissions_of(Role.SYSTEM_ADMIN)
    who = Principal("user", 1, "a", "a", "auditor", "4101", permissions_of("auditor"))
    with pytest.raises(PermissionDenied):
        who.require(Permission.PERSON_UNMASK)


def test_user_tokens_work_until_revoked_or_expired(session: Session) -> None:
    who = make_user(session, "district_officer", "410105", "tokenuser")
    user = repository.user_by_id(session, who.id)
    token, secret = issue_token(
        session, TEST_ACTOR, name="script", user=user, ttl=dt.timedelta(hours=1)
    )
    assert token.token_hash not in secret and secret not in token.token_hash
    assert authenticate_token(session, secret).id == who.id
    with clock.frozen(clock.now() + dt.timedelta(hours=2)), pytest.raises(NotAuthenticated):
        authenticate_token(session, secret)
    revoke_token(session, TEST_ACTOR, token.id)
    with pytest.raises(NotAuthenticated):
        authenticate_token(session, secret)
    with pytest.raises(NotAuthenticated):
        authenticate_token(session, "cbt_not-a-real-token")


def test_withdrawn_tokens_are_the_revoked_the_expired_and_the_unknown(session: Session) -> None:
    place = session.execute(
        text("SELECT code FROM places WHERE kind = 'checkpoint' ORDER BY code LIMIT 1")
    ).scalar_one()
    short = dt.timedelta(hours=1)
    valid, _ = issue_token(session, TEST_ACTOR, name="g1", device_place_code=place)
    revoked, _ = issue_token(session, TEST_ACTOR, name="g2", device_place_code=place)
    lapsing, _ = issue_token(session, TEST_ACTOR, name="g3", device_place_code=place, ttl=short)
    forever, _ = issue_token(session, TEST_ACTOR, name="g4", device_place_code=place, ttl=None)
    revoke_token(session, TEST_ACTOR, revoked.id)
    unknown = forever.id + 1000
    ids = {valid.id, revoked.id, lapsing.id, forever.id, unknown}
    assert withdrawn_tokens(session, ids) == {revoked.id, unknown}
    with clock.frozen(clock.now() + 2 * short):
        assert withdrawn_tokens(session, ids) == {revoked.id, lapsing.id, unknown}
    assert withdrawn_tokens(session, set()) == set()


def test_device_tokens_act_as_their_place_with_scan_rights_only(session: Session) -> None:
    place = session.execute(
        text("SELECT code, area_code FROM places WHERE kind = 'checkpoint' ORDER BY code LIMIT 1")
    ).one()
    _token, secret = issue_token(session, TEST_ACTOR, name="gate-1", device_place_code=place.code)
    device = authenticate_token(session, secret)
    assert device.kind == "device"
    assert device.area_code == place.area_code
    assert device.permissions == frozenset({Permission.DEVICE_SCAN})


def test_a_token_read_succeeds_while_another_writer_moved_the_database_on(
    fresh_database: Database,
) -> None:
    """On SQLite a read that turns into a write fails at once once another connection has
    committed since the read began; the token's use stamp must not turn that into an error."""
    from citybrain.core.authz.models import ApiToken, User
    from citybrain.core.authz.service import authenticate_token, issue_token

    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        principal = make_user(session, "street_officer", STREET_A, "stamp-user")
        user = session.get(User, principal.id)
        stored, secret = issue_token(session, TEST_ACTOR, name="stamp", user=user)
        token_id = stored.id
    with fresh_database.unit_of_work() as session:
        session.execute(select(User.id)).all()  # the read snapshot starts here
        with fresh_database.unit_of_work() as other:  # another writer commits meanwhile
            other.execute(
                text("UPDATE users SET display_name = 'x' WHERE id = :i"), {"i": principal.id}
            )
        found = authenticate_token(session, secret)
        assert found.id == principal.id
    with fresh_database.unit_of_work() as session:
        token = session.get(ApiToken, token_id)
        assert token is not None
        if BACKEND == "postgresql":
            assert token.last_used_at is not None  # no single writer there: stamped
        # A second use within the minute does not write at all.
        first = token.last_used_at
    with fresh_database.unit_of_work() as session:
        authenticate_token(session, secret)
    with fresh_database.unit_of_work() as session:
        token = session.get(ApiToken, token_id)
        assert token is not None
        if first is not None:
            assert token.last_used_at == first
        else:
            assert token.last_used_at is not None

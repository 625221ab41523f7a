"""Accounts, logins, tokens: every write here changes data and writes its audit row in the
caller's transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record
from citybrain.core.authz import repository
from citybrain.core.authz.models import ApiToken, LoginFailure, User
from citybrain.core.authz.passwords import (
    burn_time,
    check_strength,
    hash_password,
    verify_password,
)
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import (
    AGENCY_PERMISSIONS,
    DEVICE_PERMISSIONS,
    Role,
    permissions_of,
    role_label,
)
from citybrain.core.geo.models import CITY_CODE, Area, Place
from citybrain.core.geo.repository import ancestors
from citybrain.kit import clock
from citybrain.kit.attempts import ask_once
from citybrain.kit.errors import Conflict, InvalidInput, NotAuthenticated, RateLimited
from citybrain.kit.settings import get_settings

_USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{2,63}$")
_CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TOKEN_PREFIX = "cbt_"  # noqa: S105 — a visible prefix, not a secret
TOKEN_STAMP_EVERY = dt.timedelta(minutes=1)  # how fresh a token's last_used_at is kept


def principal_for(user: User) -> Principal:
    """The principal of an active user."""
    return Principal(
        kind="user",
        id=user.id,
        name=user.username,
        display_name=user.display_name,
        role=user.role,
        area_code=user.area_code,
        permissions=permissions_of(user.role),
    )


def create_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    password: str,
    role: str,
    area_code: str,
    display_name: str | None = None,
) -> User:
    """Create an account bound to one role and one area (辖区)."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise InvalidInput(
            "用户名须以字母开头，3–64位小写字母、数字或 _.-",
            "username must start with a letter: 3–64 lowercase letters, digits or _.-",
            field="username",
        )
    try:
        Role(role)
    except ValueError as exc:
        raise InvalidInput(
            f"未知角色 {role}", f"unknown role {role}; one of {', '.join(Role)}", field="role"
        ) from exc
    if session.get(Area, area_code) is None:
        raise InvalidInput(
            f"辖区代码 {area_code} 不存在",
            f"area code {area_code} does not exist",
            field="area_code",
        )
    check_strength(password)
    if repository.user_by_username(session, username) is not None:
        raise Conflict(f"用户名 {username} 已存在", f"username {username} exists", field="username")
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        area_code=area_code,
        is_active=True,
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    record(
        session,
        actor,
        "user.create",
        object_type="user",
        object_id=user.id,
        area_code=area_code,
        detail={"role": role},
    )
    return user


def _login_failed(username: str, client_ip: str, reason: str) -> NotAuthenticated:
    error = NotAuthenticated("用户名或密码错误", "wrong username or password", code="login_failed")

    def keep(session: Session) -> None:
        session.add(LoginFailure(username=username, client_ip=client_ip, at=clock.now()))
        record(
            session,
            SYSTEM,
            "auth.login",
            object_type="user",
            object_id=username,
            outcome="denied",
            detail={"reason": reason, "client_ip": client_ip},
        )

    return error.keep(keep)


def authenticate(session: Session, username: str, password: str, client_ip: str) -> Principal:
    """Check a login; rate-limited per username and per address.

    A failure raises NotAuthenticated whose record (the failure and its audit row) is kept by
    the unit of work even though the login itself is rolled back.
    """
    settings = get_settings()
    username = username.strip().lower()[:64]
    since = clock.now() - dt.timedelta(seconds=settings.login_window_seconds)
    if repository.recent_failures(session, username, client_ip, since) >= (
        settings.login_max_failures
    ):
        minutes = settings.login_window_seconds // 60
        error = RateLimited(
            f"登录失败次数过多，请{minutes}分钟后再试",
            f"too many failed logins; try again in {minutes} minutes",
            code="login_rate_limited",
        )
        raise error.keep(
            lambda s: record(
                s,
                SYSTEM,
                "auth.login",
                object_type="user",
                object_id=username,
                outcome="denied",
                detail={"reason": "rate_limited", "client_ip": client_ip},
            )
        )
    user = repository.user_by_username(session, username)
    if user is None:
        burn_time(password)
        raise _login_failed(username, client_ip, "unknown_user")
    # Argon2 is slow on purpose; a run of the request again (web.retry) reuses its verdict.
    if not ask_once(
        ("password", user.id, user.password_hash, password),
        lambda: verify_password(user.password_hash, password),
    ):
        raise _login_failed(username, client_ip, "wrong_password")
    if not user.is_active:
        raise _login_failed(username, client_ip, "inactive")
    user.last_login_at = clock.now()
    repository.clear_failures(session, username)
    principal = principal_for(user)
    record(
        session,
        principal.actor,
        "auth.login",
        object_type="user",
        object_id=user.id,
        area_code=user.area_code,
        detail={"client_ip": client_ip},
    )
    return principal


def load_principal(session: Session, user_id: int, issued_at: float) -> Principal | None:
    """The principal behind a session cookie issued at ``issued_at`` (epoch seconds), if the
    account is active and its sessions were not revoked since."""
    user = repository.user_by_id(session, user_id)
    if user is None or not user.is_active:
        return None
    if user.sessions_revoked_at is not None and issued_at < user.sessions_revoked_at.timestamp():
        return None
    return principal_for(user)


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> User:
    """Disable or re-enable an account; disabling also ends its sessions at once."""
    user = repository.user_by_id(session, user_id)
    if user is None:
        raise InvalidInput(f"用户 {user_id} 不存在", f"user {user_id} does not exist")
    user.is_active = active
    if not active:
        user.sessions_revoked_at = clock.now()
    record(
        session,
        actor,
        "user.enable" if active else "user.disable",
        object_type="user",
        object_id=user_id,
        area_code=user.area_code,
    )
    return user


def end_sessions(session: Session, actor: Actor, user_id: int) -> None:
    """Refuse every session cookie of ``user_id`` issued until now (logout everywhere)."""
    user = repository.user_by_id(session, user_id)
    if user is None:
        raise InvalidInput(f"用户 {user_id} 不存在", f"user {user_id} does not exist")
    user.sessions_revoked_at = clock.now()
    record(
        session,
        actor,
        "auth.sessions_revoked",
        object_type="user",
        object_id=user_id,
        area_code=user.area_code,
    )


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    session: Session,
    actor: Actor,
    *,
    name: str,
    user: User | None = None,
    device_place_code: str | None = None,
    ttl: dt.timedelta | None = dt.timedelta(days=90),
) -> tuple[ApiToken, str]:
    """Issue a bearer token for a user or for a device at a place; returns the row and the
    token text, which is shown once and never stored."""
    if (user is None) == (device_place_code is None):
        raise InvalidInput("令牌须属于一个用户或一个设备", "a token belongs to a user or a device")
    if device_place_code is not None:
        place = session.get(Place, device_place_code)
        if place is None:
            raise InvalidInput(
                f"场所 {device_place_code} 不存在",
                f"place {device_place_code} does not exist",
                field="device_place_code",
            )
        area_code = place.area_code
    else:
        assert user is not None
        area_code = user.area_code
    return _store_token(
        session,
        actor,
        ttl,
        {"device": device_place_code is not None},
        name=name,
        user_id=user.id if user else None,
        device_place_code=device_place_code,
        area_code=area_code,
    )


def _store_token(
    session: Session,
    actor: Actor,
    ttl: dt.timedelta | None,
    detail: dict[str, Any],
    **fields: Any,
) -> tuple[ApiToken, str]:
    """Make the secret, keep only its hash, and audit the issue. Returns the row and text."""
    text = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    token = ApiToken(
        token_hash=_hash_token(text),
        prefix=text[:10],
        created_at=now,
        expires_at=now + ttl if ttl else None,
        **fields,
    )
    session.add(token)
    session.flush()
    record(
        session,
        actor,
        "token.issue",
        object_type="api_token",
        object_id=token.id,
        area_code=token.area_code,
        detail=detail,
    )
    return token, text


def issue_agency_token(
    session: Session,
    actor: Actor,
    *,
    agency: str,
    categories: list[str],
    name: str,
    ttl: dt.timedelta | None = dt.timedelta(days=365),
) -> tuple[ApiToken, str]:
    """Issue a bearer token for an agency's system (机构推送令牌): it may push batches of
    ``categories`` only, and nothing else. Returns the row and the token text (shown once).

    Which categories an agency may have is the data centre's knowledge (its catalogue, a
    layer above); ``citybrain.datahub.push.issue_agency_token`` checks that and calls this.
    """
    agency = agency.strip()
    if not agency or len(agency) > 40:
        raise InvalidInput(
            "须写明机构（1–40字）", "name the agency (1–40 characters)", field="agency"
        )
    chosen = sorted(set(categories))
    if not chosen or any(not _CATEGORY.match(c) for c in chosen):
        raise InvalidInput(
            "须列出该机构可推送的数据类别", "list the categories it may push", field="categories"
        )
    return _store_token(
        session,
        actor,
        ttl,
        {"agency": agency, "categories": chosen},
        name=name[:64],
        agency=agency,
        categories=chosen,
        # An agency serves the whole city; its pushes carry no jurisdiction of their own.
        area_code=CITY_CODE,
    )


def _stamp_use(session: Session, token: ApiToken, now: dt.datetime) -> None:
    """Note when a token was last used, at most once a minute and never at the cost of the
    request: on SQLite a read (a GET, a stream) that turns into a write fails at once while a
    job holds the one write lock, so the stamp is tried in a savepoint and left for a later
    use if the database is busy."""
    last = token.last_used_at
    if last is not None and now - clock.as_utc(last) < TOKEN_STAMP_EVERY:
        return
    try:
        with session.begin_nested():
            token.last_used_at = now
    except OperationalError:
        pass  # busy: the next use stamps it


def authenticate_token(session: Session, text: str) -> Principal:
    """The principal of a bearer token; refuses unknown, revoked and expired tokens."""
    invalid = NotAuthenticated("令牌无效或已过期", "invalid or expired token", code="bad_token")
    if not text.startswith(TOKEN_PREFIX):
        raise invalid
    token = repository.token_by_hash(session, _hash_token(text))
    now = clock.now()
    if token is None or token.revoked_at is not None:
        raise invalid
    if token.expires_at is not None and token.expires_at <= now:
        raise invalid
    _stamp_use(session, token, now)
    if token.user_id is not None:
        user = repository.user_by_id(session, token.user_id)
        if user is None or not user.is_active:
            raise invalid
        return principal_for(user)
    if token.agency is not None:
        return Principal(
            kind="agency",
            id=token.id,
            name=token.agency,
            display_name=token.name,
            role="agency",
            area_code=token.area_code,
            permissions=AGENCY_PERMISSIONS,
            categories=frozenset(token.categories or ()),
        )
    return Principal(
        kind="device",
        id=token.id,
        name=token.device_place_code or "",
        display_name=token.name,
        role="device",
        area_code=token.area_code,
        permissions=DEVICE_PERMISSIONS,
    )


def withdrawn_tokens(session: Session, token_ids: Iterable[int]) -> set[int]:
    """Of ``token_ids``, the tokens that no longer authenticate: revoked, expired or deleted
    (one query, for callers that remember a token's principal for a while)."""
    return repository.withdrawn_token_ids(session, token_ids, clock.now())


def revoke_token(session: Session, actor: Actor, token_id: int) -> None:
    """Revoke a token at once."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise InvalidInput(f"令牌 {token_id} 不存在", f"token {token_id} does not exist")
    token.revoked_at = clock.now()
    record(
        session,
        actor,
        "token.revoke",
        object_type="api_token",
        object_id=token_id,
        area_code=token.area_code,
    )


def renew_token(session: Session, actor: Actor, token_id: int, ttl: dt.timedelta) -> ApiToken:
    """Let a token that is not revoked run ``ttl`` from now (a device's renewal, so that it
    keeps scanning without being set up again); audited with the new expiry."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise InvalidInput(f"令牌 {token_id} 不存在", f"token {token_id} does not exist")
    if token.revoked_at is not None:
        raise InvalidInput(
            "已停用的设备或令牌不能续期，请重新登记",
            "a withdrawn device or revoked token cannot be renewed; enrol a new one",
            field="token",
        )
    token.expires_at = clock.now() + ttl
    record(
        session,
        actor,
        "token.renew",
        object_type="api_token",
        object_id=token_id,
        area_code=token.area_code,
        detail={"expires_at": token.expires_at.isoformat()},
    )
    return token


def actor_names(session: Session, refs: Iterable[str | None]) -> dict[str, str]:
    """How to show who acted (经办人): ``user:<id>`` as the user's name with their username;
    any other actor (a device, ``system``, ``cli``) as its reference."""
    present = {r for r in refs if r}
    ids = {int(r[5:]) for r in present if r.startswith("user:") and r[5:].isdigit()}
    users = {
        f"user:{u.id}": f"{u.display_name}（{u.username}）"
        for u in repository.users_by_ids(session, ids)
    }
    return {r: users.get(r, r) for r in present}


def actor_titles(session: Session, refs: Iterable[str | None]) -> dict[str, tuple[str, str]]:
    """How to tell a resident who acted on them (经办单位与经办人), in Chinese and English:
    ``user:<id>`` as the user's unit, role and name (``金水区经八路街道 街道防控专员 张三``),
    without the account name; any other actor as its reference. A resident, or the hotline
    they call, can then say who set their code."""
    present = {r for r in refs if r}
    ids = {int(r[5:]) for r in present if r.startswith("user:") and r[5:].isdigit()}
    titles: dict[str, tuple[str, str]] = {}
    for user in repository.users_by_ids(session, ids):
        path = ancestors(session, user.area_code)
        # The city is implied unless the user works for the city itself.
        unit = path[1:] if len(path) > 1 else path
        unit_zh = "".join(a.name for a in unit)
        unit_en = ", ".join(a.name_en or a.name for a in reversed(unit))
        titles[f"user:{user.id}"] = (
            f"{unit_zh} {role_label(user.role)} {user.display_name}".strip(),
            f"{user.display_name}, {role_label(user.role, 'en')}, {unit_en}".rstrip(", "),
        )
    return {r: titles.get(r, (r, r)) for r in present}

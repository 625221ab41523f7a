"""SQL for users, tokens and failed logins."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.orm import Session

from citybrain.core.authz.models import ApiToken, LoginFailure, User
from citybrain.kit.db import rows_affected


def user_by_username(session: Session, username: str) -> User | None:
    """The user called ``username`` (case-insensitive), if any."""
    return session.scalars(select(User).where(User.username == username.lower())).first()


def user_by_id(session: Session, user_id: int) -> User | None:
    """The user with ``user_id``, if any."""
    return session.get(User, user_id)


def users_by_ids(session: Session, user_ids: Iterable[int]) -> list[User]:
    """The users with these ids (those that exist)."""
    wanted = sorted(set(user_ids))
    return list(session.scalars(select(User).where(User.id.in_(wanted)))) if wanted else []


def list_users(session: Session, area_prefix: str, limit: int = 200) -> list[User]:
    """Users whose area lies inside ``area_prefix``, by username."""
    return list(
        session.scalars(
            select(User)
            .where(User.area_code.startswith(area_prefix))
            .order_by(User.username)
            .limit(limit)
        )
    )


def recent_failures(session: Session, username: str, client_ip: str, since: dt.datetime) -> int:
    """The larger of the failures for this username and for this address since ``since``."""
    by_user = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.username == username, LoginFailure.at >= since)
    )
    # An address gets more room than one name: a command centre's staff share one NAT.
    by_ip = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.client_ip == client_ip, LoginFailure.at >= since)
    )
    return max(int(by_user or 0), int(by_ip or 0) // 4)


def clear_failures(session: Session, username: str) -> None:
    """Forget the failures of ``username`` after a successful login."""
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))


def purge_failures_before(session: Session, before: dt.datetime) -> int:
    """Delete failure records older than ``before``; returns how many."""
    result = session.execute(delete(LoginFailure).where(LoginFailure.at < before))
    return rows_affected(result)


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    """The token with this hash, if any."""
    return session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def active_tokens(session: Session, user_id: int | None, now: dt.datetime) -> list[ApiToken]:
    """Unrevoked, unexpired tokens (of one user, or device tokens when ``user_id`` is None)."""
    owner = ApiToken.user_id == user_id if user_id is not None else ApiToken.user_id.is_(None)
    return list(
        session.scalars(
            select(ApiToken)
            .where(owner, ApiToken.revoked_at.is_(None))
            .where(or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
            .order_by(ApiToken.id)
        )
    )


# Built once: the scan writer asks this in every batch, and building a statement and its cache
# key costs more than the database takes to answer it. Run on the connection (Core, no ORM).
_VALID_TOKENS = select(ApiToken.id).where(
    ApiToken.id.in_(bindparam("ids", expanding=True)),
    ApiToken.revoked_at.is_(None),
    or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > bindparam("now")),
)


def withdrawn_token_ids(session: Session, ids: Iterable[int], now: dt.datetime) -> set[int]:
    """Of the tokens ``ids``, those no longer valid at ``now``: revoked, expired or gone."""
    wanted = set(ids)
    if not wanted:
        return set()
    valid = session.connection().execute(_VALID_TOKENS, {"ids": sorted(wanted), "now": now})
    return wanted - set(valid.scalars())

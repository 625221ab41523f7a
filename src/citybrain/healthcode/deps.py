"""Who is scanning: a device token (a gate, checkpoint or venue acting as its place) or a
signed-in staff member with the scanning permission.

A gate sends thousands of scans an hour with the same token. Checking it in the database on
every scan (and writing its last-used time each time) would cost more than the scan, so a
device's principal is kept in memory for a few seconds (``device_token_cache_seconds``): a
revoked token stops working within that time, and its last-used time is refreshed once per
period.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from citybrain.core.authz.deps import GUARD_ATTRIBUTE, authenticated
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.service import authenticate_token
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.kit.db import Database, transaction
from citybrain.kit.web import request_database


class DeviceTokenCache:
    """Bearer token (by its SHA-256) -> principal, for a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[Principal, float]] = {}
        self._checking: dict[tuple[str, str], threading.Lock] = {}

    def clear(self) -> None:
        """Forget every cached token."""
        with self._lock:
            self._entries.clear()

    def cached(self, database: Database, token: str) -> Principal | None:
        """The principal of ``token`` if checked recently."""
        key = (database.url, hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def check(self, database: Database, token: str) -> Principal:
        """Check ``token`` in the database (raises NotAuthenticated) and remember it. One
        check per token at a time: a gate's burst at start-up reads (and stamps) it once."""
        key = (database.url, hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            single = self._checking.setdefault(key, threading.Lock())
        with single:
            cached = self.cached(database, token)
            if cached is not None:
                return cached
            # The check stamps the token's last use, a write: take SQLite's write lock up
            # front, or a read turned write fails at once when the scan writer commits.
            with database.unit_of_work(immediate=True) as session:
                principal = authenticate_token(session, token)
            ttl = get_healthcode_settings().device_token_cache_seconds
            with self._lock:
                self._checking.pop(key, None)
                if ttl > 0:
                    if len(self._entries) > 100_000:
                        self._entries.clear()
                    self._entries[key] = (principal, time.monotonic() + ttl)
        return principal


device_tokens = DeviceTokenCache()


async def scanner(request: Request) -> Principal:
    """Dependency: a device or staff member holding ``device.scan`` (401/403 otherwise)."""
    test_session = getattr(request.app.state, "test_session", None)
    header = request.headers.get("authorization", "")
    if test_session is None and header.lower().startswith("bearer "):
        token = header[7:].strip()
        database = request_database(request)
        principal = device_tokens.cached(database, token)
        if principal is None:
            try:
                principal = await run_in_threadpool(device_tokens.check, database, token)
            except OperationalError as exc:
                # The database is busy or restarting: the device retries, as when overloaded.
                raise HTTPException(
                    429, "数据库繁忙，请稍后重试 / database busy, retry", {"Retry-After": "1"}
                ) from exc
    elif test_session is not None:
        test_session.commit()
        with transaction(test_session):
            principal = await authenticated(request, test_session)
    else:
        database = request_database(request)
        with database.unit_of_work() as session:
            principal = await authenticated(request, session)
    principal.require(Permission.DEVICE_SCAN)
    request.state.principal = principal
    return principal


setattr(scanner, GUARD_ATTRIBUTE, str(Permission.DEVICE_SCAN))

Scanner = Annotated[Principal, Depends(scanner)]

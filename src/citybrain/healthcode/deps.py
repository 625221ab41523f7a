"""Who is scanning: a device token (a gate, checkpoint or venue acting as its place) or a
signed-in staff member with the scanning permission.

A gate sends thousands of scans an hour with the same token. Checking it in the database on
every scan (and writing its last-used time each time) would cost more than the scan, so a
device's principal is kept in memory for a few seconds (``device_token_cache_seconds``) and
its last-used time is refreshed once per period. Revocation still takes effect at once: the
transaction that records a batch of scans asks whether its devices' tokens still hold
(``service.check_devices``, one query per batch), refuses the scans of a withdrawn one with 401
and drops it from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from citybrain.core.authz.deps import GUARD_ATTRIBUTE, authenticated
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.authz.service import authenticate_token
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.kit.db import Database
from citybrain.kit.errors import NotAuthenticated
from citybrain.kit.logging import get_logger
from citybrain.kit.web import request_database, request_unit

log = get_logger(__name__)


class DeviceTokenCache:
    """Bearer token (by its SHA-256) -> principal, for a few seconds.

    A gate's token is checked again in the background once three quarters of its time in the
    cache have passed, while its scans go on with the cached principal: a busy gate's token
    never expires under it, so its scans never wait for a check (which, a write, may wait for
    the database's lock). A token revoked meanwhile is refused by that check, still within the
    cache's time."""

    REFRESH_AFTER = 0.75  # of the time in the cache

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (principal, expires, refresh after)
        self._entries: dict[tuple[str, str], tuple[Principal, float, float]] = {}
        self._checking: dict[tuple[str, str], threading.Lock] = {}
        self._refreshing: set[tuple[str, str]] = set()

    def clear(self) -> None:
        """Forget every cached token."""
        with self._lock:
            self._entries.clear()

    def forget(self, token_ids: frozenset[int] | set[int]) -> None:
        """Drop the devices of ``token_ids`` (withdrawn): their next scan is checked again."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry[0].kind == "device" and entry[0].id in token_ids:
                    del self._entries[key]

    @staticmethod
    def _key(database: Database, token: str) -> tuple[str, str]:
        return (database.url, hashlib.sha256(token.encode()).hexdigest())

    def lookup(self, database: Database, token: str) -> tuple[Principal | None, bool]:
        """The principal of ``token`` if checked recently, and whether it is time to check it
        again in the background (``refresh``; only one caller is told so at a time)."""
        key = self._key(database, token)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[1] <= now:
                return None, False
            if entry[2] <= now and key not in self._refreshing:
                self._refreshing.add(key)
                return entry[0], True
        return entry[0], False

    def cached(self, database: Database, token: str) -> Principal | None:
        """The principal of ``token`` if checked recently (no refresh is started)."""
        with self._lock:
            entry = self._entries.get(self._key(database, token))
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    def _load(self, database: Database, token: str) -> Principal:
        # The check stamps the token's last use, a write: take SQLite's write lock up front,
        # or a read turned write fails at once when a scan batch commits.
        with database.unit_of_work(immediate=True) as session:
            principal = authenticate_token(session, token)
        ttl = get_healthcode_settings().device_token_cache_seconds
        if ttl > 0:
            now = self._clock()
            with self._lock:
                if len(self._entries) > 100_000:
                    self._entries.clear()
                self._entries[self._key(database, token)] = (
                    principal,
                    now + ttl,
                    now + ttl * self.REFRESH_AFTER,
                )
        return principal

    def check(self, database: Database, token: str) -> Principal:
        """Check ``token`` in the database (raises NotAuthenticated) and remember it. One
        check per token at a time: a gate's burst at start-up reads (and stamps) it once."""
        key = self._key(database, token)
        with self._lock:
            single = self._checking.setdefault(key, threading.Lock())
        with single:
            cached = self.cached(database, token)
            if cached is not None:
                return cached
            try:
                return self._load(database, token)
            finally:
                with self._lock:
                    self._checking.pop(key, None)

    def refresh(self, database: Database, token: str) -> None:
        """Check ``token`` again (on a worker thread) and renew or drop its entry; the
        scans meanwhile use the cached principal."""
        key = self._key(database, token)
        try:
            self._load(database, token)
        except NotAuthenticated:
            with self._lock:
                self._entries.pop(key, None)  # revoked or expired: the next scan gets 401
        except Exception as exc:  # the database was busy: the entry lives to its expiry
            log.warning("healthcode.device_token_refresh_failed", error=type(exc).__name__)
        finally:
            with self._lock:
                self._refreshing.discard(key)


device_tokens = DeviceTokenCache()


async def scanner(request: Request) -> Principal:
    """Dependency: a device or staff member holding ``device.scan`` (401/403 otherwise)."""
    test_session = getattr(request.app.state, "test_session", None)
    header = request.headers.get("authorization", "")
    if test_session is None and header.lower().startswith("bearer "):
        token = header[7:].strip()
        database = request_database(request)
        principal, refresh = device_tokens.lookup(database, token)
        if refresh:
            asyncio.get_running_loop().run_in_executor(None, device_tokens.refresh, database, token)
        if principal is None:
            try:
                principal = await run_in_threadpool(device_tokens.check, database, token)
            except OperationalError as exc:
                # The database is busy or restarting: the device retries, as when overloaded.
                raise HTTPException(
                    429, "数据库繁忙，请稍后重试 / database busy, retry", {"Retry-After": "1"}
                ) from exc
    else:
        with request_unit(request) as session:
            principal = await authenticated(request, session)
    principal.require(Permission.DEVICE_SCAN)
    request.state.principal = principal
    return principal


setattr(scanner, GUARD_ATTRIBUTE, str(Permission.DEVICE_SCAN))

Scanner = Annotated[Principal, Depends(scanner)]

"""Signing keys (签名密钥): made on first use, rotated, published in the trust list.

One key is active and signs every new code. Rotation makes a new active key and retires the
old one, which stays in the trust list until every code it signed has expired (the grace
period: the longest validity of a code, place codes included, plus the clock skew), then is
removed. A key suspected compromised is removed at once instead. Private keys are stored only
encrypted with the platform's field cipher, under their own field name.

Servers keep the trust list in memory (``TrustListCache``): re-read every few seconds, at once
after a rotation in the same process, and when a code names a key the list does not hold
(a rotation made by another process), at most once a second.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record
from citybrain.core.events.service import publish
from citybrain.healthcode import repository
from citybrain.healthcode.codes import Signer
from citybrain.healthcode.models import KEY_ACTIVE, KEY_REMOVED, KEY_RETIRED, SigningKey
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.healthcode.trust import TrustedKey, TrustList, kid_of
from citybrain.kit import clock
from citybrain.kit.crypto import field_cipher
from citybrain.kit.db import Database

PRIVATE_KEY_FIELD = "signing_keys.private_key"
TOPIC_KEY_CREATED = "healthcode.key_created"
TOPIC_KEY_ROTATED = "healthcode.key_rotated"
TOPIC_KEYS_REMOVED = "healthcode.keys_removed"

_signers: dict[str, Signer] = {}
_signers_lock = threading.Lock()


def grace_period() -> dt.timedelta:
    """How long a retired key stays in the trust list: the longest a code it signed may
    still be valid, plus the clock skew gates allow."""
    settings = get_healthcode_settings()
    longest = max(
        dt.timedelta(seconds=settings.code_validity_seconds),
        dt.timedelta(days=settings.place_code_validity_days),
        dt.timedelta(days=settings.card_validity_days),
    )
    return longest + dt.timedelta(seconds=settings.clock_skew_seconds)


def _new_key(session: Session, at: dt.datetime) -> SigningKey:
    """Generate a P-256 key pair and store it active (the private half encrypted)."""
    private = ec.generate_private_key(ec.SECP256R1())
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    key = SigningKey(
        kid=kid_of(spki),
        public_key=spki,
        private_key_enc=field_cipher().encrypt(pem, PRIVATE_KEY_FIELD),
        status=KEY_ACTIVE,
        created_at=at,
        activated_at=at,
    )
    session.add(key)
    session.flush()
    with _signers_lock:
        _signers[key.kid] = Signer(key.kid, private)
    return key


def _signer_of(key: SigningKey) -> Signer:
    with _signers_lock:
        cached = _signers.get(key.kid)
    if cached is not None:
        return cached
    pem = field_cipher().decrypt(key.private_key_enc, PRIVATE_KEY_FIELD)
    private = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError("signing keys are EC keys")
    signer = Signer(key.kid, private)
    with _signers_lock:
        _signers[key.kid] = signer
    return signer


def current_signer(session: Session, *, now: dt.datetime | None = None) -> Signer:
    """The active key, made (with its audit row and event) if there is none yet, so a fresh
    install signs its first code without a setup step. Never commits."""
    key = repository.active_key(session)
    if key is None:
        at = now or clock.now()
        try:
            with session.begin_nested():
                key = _new_key(session, at)
                record(
                    session,
                    SYSTEM,
                    "healthcode.key_create",
                    object_type="signing_key",
                    object_id=key.kid,
                    detail={"reason": "first_use"},
                )
                publish(session, TOPIC_KEY_CREATED, {"kid": key.kid}, key=key.kid)
        except IntegrityError:
            # Another transaction made the first key at the same moment: use that one.
            key = repository.active_key(session)
            if key is None:
                raise
        trust_cache.invalidate()
    return _signer_of(key)


def rotate_key(
    session: Session,
    actor: Actor,
    *,
    now: dt.datetime | None = None,
    compromised: bool = False,
) -> SigningKey:
    """Make a new active key; the old one signs nothing more and stays in the trust list for
    the grace period (``compromised``: removed at once, so its codes are refused from now).
    Audited, with a ``healthcode.key_rotated`` event. Never commits."""
    at = now or clock.now()
    old = repository.active_key(session)
    if old is not None:
        old.status = KEY_RETIRED
        old.retired_at = at
        old.verify_until = at if compromised else at + grace_period()
        if compromised:
            old.status = KEY_REMOVED
            old.removed_at = at
        session.flush()  # the active slot is free before the new key takes it
    new = _new_key(session, at)
    removed = prune_keys(session, actor, now=at)
    detail: dict[str, object] = {
        "kid": new.kid,
        "retired_kid": old.kid if old else None,
        "compromised": compromised,
        "verify_until": old.verify_until.isoformat() if old and old.verify_until else None,
        "removed": removed,
    }
    record(
        session,
        actor,
        "healthcode.key_rotate",
        object_type="signing_key",
        object_id=new.kid,
        detail=detail,
    )
    publish(session, TOPIC_KEY_ROTATED, detail, key=new.kid)
    trust_cache.invalidate()
    return new


def prune_keys(
    session: Session, actor: Actor = SYSTEM, *, now: dt.datetime | None = None
) -> list[str]:
    """Remove from the trust list the retired keys whose grace period is over; their ids.
    Audited and announced when there are any. Never commits."""
    at = now or clock.now()
    gone = repository.expired_retired_keys(session, at)
    for key in gone:
        key.status = KEY_REMOVED
        key.removed_at = at
    kids = [key.kid for key in gone]
    if kids:
        record(
            session,
            actor,
            "healthcode.keys_remove",
            object_type="signing_key",
            object_id=",".join(kids)[:64],
            detail={"kids": kids},
        )
        publish(session, TOPIC_KEYS_REMOVED, {"kids": kids})
        trust_cache.invalidate()
    return kids


def trust_list(session: Session, *, now: dt.datetime | None = None) -> TrustList:
    """The keys whose codes are accepted now: kid -> public key with its validity."""
    at = now or clock.now()
    return trust_list_of(repository.trusted_keys(session, at), generated_at=at)


def trust_list_of(
    keys: Sequence[SigningKey], *, generated_at: dt.datetime | None = None
) -> TrustList:
    """A trust list of ``keys``, each valid from its activation to its ``verify_until``."""
    trusted = [
        TrustedKey.from_spki(
            key.public_key,
            status=key.status,
            not_before=key.activated_at,
            not_after=key.verify_until,
        )
        for key in keys
    ]
    return TrustList(trusted, issuer=get_healthcode_settings().issuer, generated_at=generated_at)


@dataclass
class _Cached:
    trust_list: TrustList
    loaded: float


class TrustListCache:
    """A server's trust list in memory, per database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_url: dict[str, _Cached] = {}
        self._generation = 0

    def invalidate(self) -> None:
        """Forget every cached list (a rotation happened in this process)."""
        with self._lock:
            self._by_url.clear()
            self._generation += 1

    def get(self, database: Database, *, unknown_kid: str | None = None) -> TrustList:
        """The trust list of ``database``; re-read when older than the configured seconds,
        or when ``unknown_kid`` is not in it and the last read is over a second old."""
        ttl = get_healthcode_settings().trust_list_ttl_seconds
        with self._lock:
            cached = self._by_url.get(database.url)
            generation = self._generation
        age = time.monotonic() - cached.loaded if cached else None
        fresh = cached is not None and age is not None and age < ttl
        if fresh and unknown_kid is not None and unknown_kid not in cached.trust_list:  # type: ignore[union-attr]
            fresh = age is not None and age < 1.0
        if fresh:
            return cached.trust_list  # type: ignore[union-attr]
        with database.sessions() as session:
            loaded = trust_list(session)
            session.rollback()
        with self._lock:
            if generation == self._generation:
                self._by_url[database.url] = _Cached(loaded, time.monotonic())
        return loaded


trust_cache = TrustListCache()

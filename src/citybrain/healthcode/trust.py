"""The trust list (信任列表): which public keys verify citybrain's codes, and until when.

Gates download it as JSON from ``GET /api/v1/healthcode/trust-list`` and verify codes offline
with it. A key id is derived from the key itself as the EU DCC does (the first 8 bytes of the
SHA-256 of the DER SubjectPublicKeyInfo), here written base64url without padding, so a list
whose ids do not match their keys is refused as a whole.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

ALG_ES256 = "ES256"
KID_BYTES = 8


def kid_of(spki_der: bytes) -> str:
    """The key id of a public key: base64url (no padding) of the first 8 bytes of the
    SHA-256 of its DER SubjectPublicKeyInfo."""
    return b64url(hashlib.sha256(spki_der).digest()[:KID_BYTES])


def b64url(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of ``b64url`` (raises ValueError on bad input)."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("trust list times must carry a zone")
    return parsed.astimezone(dt.UTC)


@dataclass(frozen=True)
class TrustedKey:
    """One public key of the list: ``kid``, the key, and the period in which codes it signed
    are accepted (``not_after`` None: no end yet, the key is active)."""

    kid: str
    spki_der: bytes
    public_key: ec.EllipticCurvePublicKey
    status: str
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    @classmethod
    def from_spki(
        cls,
        spki_der: bytes,
        *,
        status: str = "active",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> TrustedKey:
        """A trusted key from its DER SubjectPublicKeyInfo (must be a P-256 key)."""
        key = load_der_public_key(spki_der)
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ValueError("trust list keys must be P-256 (ES256) keys")
        return cls(kid_of(spki_der), spki_der, key, status, not_before, not_after)

    def valid_at(self, at: dt.datetime) -> bool:
        """Whether codes signed by this key are still accepted at ``at``."""
        return self.not_after is None or at <= self.not_after

    def as_json(self) -> dict[str, Any]:
        """The key's entry in the published list."""
        return {
            "kid": self.kid,
            "alg": ALG_ES256,
            "spki": base64.b64encode(self.spki_der).decode("ascii"),
            "status": self.status,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
        }


class TrustList:
    """Key id -> trusted key, as a gate holds it in memory."""

    def __init__(
        self,
        keys: Iterable[TrustedKey],
        *,
        issuer: str,
        generated_at: dt.datetime | None = None,
    ) -> None:
        self.issuer = issuer
        self.generated_at = generated_at
        self._keys = {key.kid: key for key in keys}

    def get(self, kid: str) -> TrustedKey | None:
        """The key with id ``kid``, if listed."""
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def kids(self) -> list[str]:
        """The listed key ids."""
        return list(self._keys)

    def as_json(self) -> dict[str, Any]:
        """The published form: issuer, when it was made, and the keys."""
        return {
            "issuer": self.issuer,
            "generated_at": self.generated_at.isoformat() if self.generated_at else None,
            "keys": [key.as_json() for key in self._keys.values()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrustList:
        """Build the list a gate downloaded. Refuses (ValueError) a key whose id is not the
        id of its key, a non-P-256 key, or a malformed entry."""
        keys = []
        try:
            for entry in data["keys"]:
                if entry.get("alg", ALG_ES256) != ALG_ES256:
                    raise ValueError(f"unsupported algorithm {entry.get('alg')!r}")
                spki = base64.b64decode(entry["spki"], validate=True)
                key = TrustedKey.from_spki(
                    spki,
                    status=str(entry.get("status", "active")),
                    not_before=_time(entry.get("not_before")),
                    not_after=_time(entry.get("not_after")),
                )
                if key.kid != entry["kid"]:
                    raise ValueError(f"key id {entry['kid']!r} does not match its key")
                keys.append(key)
            return cls(
                keys, issuer=str(data["issuer"]), generated_at=_time(data.get("generated_at"))
            )
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"malformed trust list: {type(exc).__name__}") from exc

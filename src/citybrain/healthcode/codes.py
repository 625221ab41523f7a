"""Signed codes in the EU Digital COVID Certificate wire format (健康码与场所码的签名编码).

A code is a CBOR Web Token (claims ``iss`` 1, ``exp`` 4, ``iat`` 6 and one private claim map)
in a COSE_Sign1 signed with ES256 (protected header: ``alg`` -7 and the 8-byte ``kid``),
zlib-compressed, base45-encoded and prefixed: ``CB1:`` for a person's health code, ``CBP1:``
for a place code (场所码), ``CBK1:`` for a printed health card (纸质健康卡: who holds it, never a
colour). base45 is within the QR alphanumeric set, so the QR stays small.

Signing and verification are short paths of our own over ``cbor2`` and ``cryptography``
(OpenSSL): the COSE_Sign1 structure is four CBOR items, and pycose, the reference COSE library,
signs through the pure-Python ``ecdsa`` package, about 1.7 ms a code where OpenSSL takes
0.05 ms — and a resident's code is signed afresh every time it is shown. The tests check both
directions against pycose. Verification's order matters: the prefix, base45 and
zlib (with a size cap, so a decompression bomb is refused) are undone, the COSE envelope and
its protected header are read, the key is looked up by ``kid`` and **the signature is checked
before the payload is parsed**; only then are the claims read and the times checked. Every
refusal is a ``CodeRefused`` with a stable reason code and a message in Chinese and English.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import base45  # type: ignore[import-untyped]
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.healthcode.trust import TrustList, b64url, b64url_decode
from citybrain.kit import clock
from citybrain.kit.errors import CitybrainError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

HEALTH_PREFIX = "CB1:"
PLACE_PREFIX = "CBP1:"
CARD_PREFIX = "CBK1:"
# A printed place code is a link to the residents' page that records the visit, so a phone's
# own camera opens it; the signed code travels in its ``c`` parameter.
PLACE_SCAN_PATH = "/residents/place"
COSE_SIGN1_TAG = 18
COSE_ALG_ES256 = -7
HEADER_ALG = 1
HEADER_KID = 4
CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
# CWT claim keys below -65536 are for private use (IANA CWT Claims registry).
CLAIM_CITYBRAIN = -65537
TYPE_HEALTH = "hc"
TYPE_PLACE = "pc"
TYPE_CARD = "hk"
COLOURS = ("green", "yellow", "red")
# A health code is about 250 characters; the caps leave room and refuse anything absurd.
MAX_TEXT = 4096
MAX_DECOMPRESSED = 4096
SIGNATURE_BYTES = 64

Colour = Literal["green", "yellow", "red"]

REASONS: dict[str, tuple[str, str]] = {
    "bad_prefix": ("不是本系统的码", "not a citybrain code (wrong prefix)"),
    "bad_encoding": ("码的编码无效或已损坏", "the code is not valid base45/zlib or is too large"),
    "malformed": ("码的内容格式错误", "the code's content is malformed"),
    "unknown_key": ("签发密钥不在信任列表中", "signed by a key not in the trust list"),
    "bad_signature": ("签名无效，码可能被篡改", "the signature does not verify (tampered?)"),
    "expired": ("码已过期，请刷新后重新出示", "the code has expired; refresh and show it again"),
    "not_yet_valid": ("码尚未生效（设备时间有误？）", "the code is not valid yet (clock wrong?)"),
    "wrong_type": ("码的类型不符", "the code is of another type"),
    "card_revoked": (
        "此健康卡已挂失、作废或已补办新卡，不能使用；请核实持卡人身份（本次出示已记录）",
        "this health card was reported lost, cancelled or replaced; check who holds it (this "
        "presentation is recorded)",
    ),
    "card_unknown": (
        "此健康卡无效（持卡人不在登记库或卡已清除）",
        "this health card is not valid (holder not registered, or the card was purged)",
    ),
}


class CodeRefused(CitybrainError):
    """A code that does not verify, with its reason: bad_prefix, bad_encoding, malformed,
    unknown_key, bad_signature, expired, not_yet_valid or wrong_type."""

    status_code = 422

    def __init__(
        self, reason_code: str, message_zh: str | None = None, message_en: str | None = None
    ):
        zh, en = REASONS.get(reason_code, (reason_code, reason_code))
        super().__init__(message_zh or zh, message_en or en, code=reason_code, field="code")
        self.reason_code = reason_code


@dataclass(frozen=True)
class IssuedCode:
    """A freshly signed health code: its text (what the QR holds), key id and validity."""

    text: str
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class VerifiedCode:
    """A health code that verified: whose (pseudonymous ref), which colour, under which rule
    set, signed by which key, valid from when to when."""

    person_ref: str
    colour: Colour
    rule_set_version: int | None
    issuer: str
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class VerifiedPlace:
    """A place code that verified."""

    place_code: str
    place_kind: str | None
    issuer: str
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class VerifiedCard:
    """A printed health card (纸质健康卡) that verified: whose (pseudonymous ref) and which card
    (its number, so a card reported lost or replaced is refused at the gate). It carries no
    colour: the gate takes the holder's current colour online."""

    person_ref: str
    card_no: int
    issuer: str
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class Signer:
    """The active signing key: its id and the private key."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey


def _epoch(at: dt.datetime) -> int:
    return int(at.timestamp())


def sign(signer: Signer, claims: dict[int, Any], prefix: str) -> str:
    """Sign ``claims`` as a CWT in a tagged COSE_Sign1 (ES256) and encode it (zlib, base45,
    ``prefix``).

    The text may spell "%00" (base45 uses ``%``; about one code in 600 does): it is text, not
    a percent-encoded NUL, and the input guard (``web.guards``) reads it as such in a JSON
    body; a form percent-encodes the ``%`` itself.
    """
    protected = cbor2.dumps({HEADER_ALG: COSE_ALG_ES256, HEADER_KID: b64url_decode(signer.kid)})
    payload = cbor2.dumps(claims)
    der = signer.private_key.sign(_to_be_signed(protected, payload), ec.ECDSA(hashes.SHA256()))
    # COSE carries the signature as r || s, 32 bytes each (RFC 9053 §2.1), not DER.
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    message = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    encoded: bytes = base45.b45encode(zlib.compress(message, 9))
    return prefix + encoded.decode("ascii")


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    """The Sig_structure of a COSE_Sign1 (RFC 9052 §4.4): what the signature covers."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def health_claims(
    person_ref: str,
    colour: str,
    *,
    issued_at: dt.datetime,
    expires_at: dt.datetime,
    rule_set_version: int | None = None,
) -> dict[int, Any]:
    """The CWT claims of a health code."""
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}")
    private: dict[str, Any] = {"t": TYPE_HEALTH, "ref": person_ref, "c": colour}
    if rule_set_version is not None:
        private["v"] = int(rule_set_version)
    return {
        CLAIM_ISS: get_healthcode_settings().issuer,
        CLAIM_IAT: _epoch(issued_at),
        CLAIM_EXP: _epoch(expires_at),
        CLAIM_CITYBRAIN: private,
    }


def issue_code(
    session: Session,
    person_ref: str,
    colour: str,
    *,
    now: dt.datetime | None = None,
    rule_set_version: int | None = None,
    validity: dt.timedelta | None = None,
) -> IssuedCode:
    """Sign a short-lived health code for ``person_ref`` with ``colour`` (valid for the
    configured minutes, default 5). The active key is made on first use. Never commits
    (making the first key writes it in the caller's transaction)."""
    from citybrain.healthcode.keys import current_signer

    issued = (now or clock.now()).replace(microsecond=0)
    lifetime = validity or dt.timedelta(seconds=get_healthcode_settings().code_validity_seconds)
    expires = issued + lifetime
    signer = current_signer(session, now=issued)
    claims = health_claims(
        person_ref, colour, issued_at=issued, expires_at=expires, rule_set_version=rule_set_version
    )
    return IssuedCode(sign(signer, claims, HEALTH_PREFIX), signer.kid, issued, expires)


def card_claims(
    person_ref: str, card_no: int, *, issued_at: dt.datetime, expires_at: dt.datetime
) -> dict[int, Any]:
    """The CWT claims of a printed health card: the holder's ref and the card's number, no
    colour (a card lives months; the colour is always taken online)."""
    return {
        CLAIM_ISS: get_healthcode_settings().issuer,
        CLAIM_IAT: _epoch(issued_at),
        CLAIM_EXP: _epoch(expires_at),
        CLAIM_CITYBRAIN: {"t": TYPE_CARD, "ref": person_ref, "n": int(card_no)},
    }


def sign_card(
    session: Session,
    person_ref: str,
    card_no: int,
    *,
    issued_at: dt.datetime,
    expires_at: dt.datetime,
) -> str:
    """The text of card ``card_no`` (what its QR holds), signed by the active key. Printing the
    same card again signs the same claims again: every copy is the same card, and reporting
    it lost refuses them all. Never commits."""
    from citybrain.healthcode.keys import current_signer

    signer = current_signer(session)
    claims = card_claims(person_ref, card_no, issued_at=issued_at, expires_at=expires_at)
    return sign(signer, claims, CARD_PREFIX)


def place_code_url(base_url: str, text: str) -> str:
    """The link a place code is printed as: ``<base>/residents/place?c=<code>``."""
    return f"{base_url.rstrip('/')}{PLACE_SCAN_PATH}?{urlencode({'c': text})}"


def place_text_from(scanned: str) -> str:
    """The place code in what a scanner read: the printed link's ``c`` parameter, or the
    code itself."""
    scanned = scanned.strip()
    if scanned.startswith(("https://", "http://")):
        values = parse_qs(urlsplit(scanned).query).get("c")
        return values[0].strip() if values else ""
    return scanned


def issue_place_code(
    session: Session,
    place_code: str,
    place_kind: str | None = None,
    *,
    now: dt.datetime | None = None,
) -> IssuedCode:
    """Sign a place code (场所码) for posting at ``place_code`` (valid for the configured
    days, default 30). Never commits."""
    from citybrain.healthcode.keys import current_signer

    issued = (now or clock.now()).replace(microsecond=0)
    expires = issued + dt.timedelta(days=get_healthcode_settings().place_code_validity_days)
    signer = current_signer(session, now=issued)
    private: dict[str, Any] = {"t": TYPE_PLACE, "p": place_code}
    if place_kind:
        private["k"] = place_kind
    claims = {
        CLAIM_ISS: get_healthcode_settings().issuer,
        CLAIM_IAT: _epoch(issued),
        CLAIM_EXP: _epoch(expires),
        CLAIM_CITYBRAIN: private,
    }
    return IssuedCode(sign(signer, claims, PLACE_PREFIX), signer.kid, issued, expires)


# -- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    kid: str
    claims: dict[Any, Any]
    issued_at: dt.datetime
    expires_at: dt.datetime


def _unwrap(text: str, prefix: str) -> bytes:
    """Prefix, base45 and zlib undone, with size caps."""
    if not isinstance(text, str) or not text.startswith(prefix):
        raise CodeRefused("bad_prefix")
    body = text[len(prefix) :].strip()
    if not body or len(body) > MAX_TEXT:
        raise CodeRefused("bad_encoding")
    try:
        compressed: bytes = base45.b45decode(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise CodeRefused("bad_encoding") from exc
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, MAX_DECOMPRESSED)
    except zlib.error as exc:
        raise CodeRefused("bad_encoding") from exc
    # More output than the cap, or a stream that does not end: refused, never inflated.
    if inflater.unconsumed_tail or not inflater.eof:
        raise CodeRefused("bad_encoding")
    return raw


def _envelope(raw: bytes) -> tuple[bytes, dict[Any, Any], bytes, bytes]:
    """The COSE_Sign1 parts: protected header bytes, the header map, payload, signature."""
    try:
        cose = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise CodeRefused("malformed") from exc
    if isinstance(cose, cbor2.CBORTag):
        if cose.tag != COSE_SIGN1_TAG:
            raise CodeRefused("malformed")
        cose = cose.value
    if not isinstance(cose, list) or len(cose) != 4:
        raise CodeRefused("malformed")
    protected, _unprotected, payload, signature = cose
    if not all(isinstance(part, bytes) for part in (protected, payload, signature)):
        raise CodeRefused("malformed")
    try:
        header = cbor2.loads(protected) if protected else {}
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise CodeRefused("malformed") from exc
    if not isinstance(header, dict):
        raise CodeRefused("malformed")
    return protected, header, payload, signature


def _time_claim(claims: dict[Any, Any], key: int) -> dt.datetime:
    value = claims.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodeRefused("malformed")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise CodeRefused("malformed") from exc


def _verify(text: str, prefix: str, trust_list: TrustList, now: dt.datetime | None) -> _Checked:
    raw = _unwrap(text, prefix)
    protected, header, payload, signature = _envelope(raw)
    if header.get(HEADER_ALG) != COSE_ALG_ES256:
        raise CodeRefused("malformed", "不支持的签名算法", "unsupported signature algorithm")
    kid_raw = header.get(HEADER_KID)
    if not isinstance(kid_raw, bytes) or not kid_raw:
        raise CodeRefused("malformed", "缺少密钥标识", "no key id in the protected header")
    kid = b64url(kid_raw)
    at = now or clock.now()
    key = trust_list.get(kid)
    if key is None or not key.valid_at(at):
        raise CodeRefused("unknown_key")
    # The signature first: nothing in the payload is read before it is known to be ours.
    if len(signature) != SIGNATURE_BYTES:
        raise CodeRefused("bad_signature")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.public_key.verify(der, _to_be_signed(protected, payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise CodeRefused("bad_signature") from exc
    try:
        claims = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise CodeRefused("malformed") from exc
    if not isinstance(claims, dict):
        raise CodeRefused("malformed")
    issued = _time_claim(claims, CLAIM_IAT)
    expires = _time_claim(claims, CLAIM_EXP)
    skew = dt.timedelta(seconds=get_healthcode_settings().clock_skew_seconds)
    if at > expires + skew:
        raise CodeRefused("expired")
    if issued > at + skew:
        raise CodeRefused("not_yet_valid")
    if not isinstance(claims.get(CLAIM_CITYBRAIN), dict):
        raise CodeRefused("malformed")
    return _Checked(kid, claims, issued, expires)


def _private(checked: _Checked, kind: str) -> dict[Any, Any]:
    """The code's own claims (the private claim map), refused unless of ``kind``."""
    private: dict[Any, Any] = checked.claims[CLAIM_CITYBRAIN]
    if private.get("t") != kind:
        raise CodeRefused("wrong_type")
    return private


def _issuer(checked: _Checked) -> str:
    issuer = checked.claims.get(CLAIM_ISS)
    return str(issuer) if issuer is not None else ""


def verify_code(
    text: str, trust_list: TrustList, *, now: dt.datetime | None = None
) -> VerifiedCode:
    """Verify a health code against ``trust_list`` (offline: no database); raises
    ``CodeRefused`` with the reason. The signature is checked before the payload is read."""
    checked = _verify(text, HEALTH_PREFIX, trust_list, now)
    private = _private(checked, TYPE_HEALTH)
    ref, colour, version = private.get("ref"), private.get("c"), private.get("v")
    if not isinstance(ref, str) or not ref or len(ref) > 32 or colour not in COLOURS:
        raise CodeRefused("malformed")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise CodeRefused("malformed")
    return VerifiedCode(
        person_ref=ref,
        colour=colour,
        rule_set_version=version,
        issuer=_issuer(checked),
        kid=checked.kid,
        issued_at=checked.issued_at,
        expires_at=checked.expires_at,
    )


def verify_card(
    text: str, trust_list: TrustList, *, now: dt.datetime | None = None
) -> VerifiedCard:
    """Verify a printed health card (纸质健康卡) against ``trust_list``; raises ``CodeRefused``.
    Whether the card is still in force (not lost, not replaced) is the database's to say
    (``healthcode.cards.card_holder``)."""
    checked = _verify(text, CARD_PREFIX, trust_list, now)
    private = _private(checked, TYPE_CARD)
    ref, number = private.get("ref"), private.get("n")
    if not isinstance(ref, str) or not ref or len(ref) > 32:
        raise CodeRefused("malformed")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**31:
        raise CodeRefused("malformed")
    return VerifiedCard(
        person_ref=ref,
        card_no=number,
        issuer=_issuer(checked),
        kid=checked.kid,
        issued_at=checked.issued_at,
        expires_at=checked.expires_at,
    )


def is_card(text: str) -> bool:
    """Whether ``text`` is a printed health card's (its prefix), not a phone's health code."""
    return text.lstrip().startswith(CARD_PREFIX)


def verify_place_code(
    text: str, trust_list: TrustList, *, now: dt.datetime | None = None
) -> VerifiedPlace:
    """Verify a place code (场所码) against ``trust_list``; raises ``CodeRefused``."""
    checked = _verify(text, PLACE_PREFIX, trust_list, now)
    private = _private(checked, TYPE_PLACE)
    place, kind = private.get("p"), private.get("k")
    if not isinstance(place, str) or not place or len(place) > 24:
        raise CodeRefused("malformed")
    if kind is not None and not isinstance(kind, str):
        raise CodeRefused("malformed")
    return VerifiedPlace(
        place_code=place,
        place_kind=kind,
        issuer=_issuer(checked),
        kid=checked.kid,
        issued_at=checked.issued_at,
        expires_at=checked.expires_at,
    )

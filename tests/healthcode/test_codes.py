"""Signed health codes: an independent decode path (base45, zlib, cbor2 and pycose directly,
not through citybrain), the trust list, refusals with their reasons, rotation, and the QR
image read back by zxing-cpp."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import struct
import zlib

import base45
import cbor2
import numpy as np
import pytest
import zxingcpp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key
from pycose.messages import Sign1Message
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.healthcode import codes, keys
from citybrain.healthcode.codes import (
    CLAIM_CITYBRAIN,
    CodeRefused,
    Signer,
    issue_code,
    issue_place_code,
    verify_code,
    verify_place_code,
)
from citybrain.healthcode.models import KEY_ACTIVE, KEY_REMOVED, KEY_RETIRED, SigningKey
from citybrain.healthcode.qr import qr, qr_png, qr_svg
from citybrain.healthcode.trust import TrustList, b64url
from citybrain.kit import clock
from tests.factories import TEST_ACTOR

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def _refused(reason: str, text: str, trust: TrustList, now: dt.datetime = T0) -> CodeRefused:
    with pytest.raises(CodeRefused) as caught:
        verify_code(text, trust, now=now)
    assert caught.value.reason_code == reason, caught.value.message_en
    assert caught.value.message_zh and caught.value.message_en
    return caught.value


def _reencode(cose: bytes, prefix: str = "CB1:") -> str:
    return prefix + base45.b45encode(zlib.compress(cose)).decode("ascii")


def test_a_code_decodes_and_verifies_by_an_independent_path(session: Session) -> None:
    issued = issue_code(
        session, "P0000000000000000000000000000001", "green", now=T0, rule_set_version=3
    )
    assert issued.text.startswith("CB1:")
    assert issued.expires_at - issued.issued_at == dt.timedelta(minutes=5)
    # Only the QR alphanumeric set: the symbol stays small.
    assert set(issued.text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")

    # The published trust list, as JSON, is all a gate has.
    published = keys.trust_list(session, now=T0).as_json()
    entry = next(k for k in published["keys"] if k["kid"] == issued.kid)
    spki = base64.b64decode(entry["spki"])
    # The key id is the DCC one: the first 8 bytes of SHA-256 over the SPKI.
    assert base64.urlsafe_b64encode(hashlib.sha256(spki).digest()[:8]).rstrip(b"=").decode() == (
        issued.kid
    )

    # base45 -> zlib -> COSE_Sign1 (tag 18) -> pycose signature check -> cbor2 claims.
    raw = zlib.decompress(base45.b45decode(issued.text[4:]))
    assert cbor2.loads(raw).tag == 18
    message = Sign1Message.decode(raw)
    assert message.phdr[Algorithm].identifier == -7  # ES256
    assert base64.urlsafe_b64encode(message.phdr[KID]).rstrip(b"=").decode() == issued.kid
    public = serialization.load_der_public_key(spki)
    message.key = EC2Key.from_pem_public_key(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )
    assert message.verify_signature()
    claims = cbor2.loads(message.payload)
    assert claims[1] == "CN-4101"
    assert claims[6] == int(T0.timestamp())
    assert claims[4] == int(T0.timestamp()) + 300
    assert claims[CLAIM_CITYBRAIN] == {
        "t": "hc",
        "ref": "P0000000000000000000000000000001",
        "c": "green",
        "v": 3,
    }

    # And citybrain's own verifier accepts it against a list rebuilt from that JSON.
    verified = verify_code(issued.text, TrustList.from_json(published), now=T0)
    assert (verified.person_ref, verified.colour, verified.rule_set_version) == (
        "P0000000000000000000000000000001",
        "green",
        3,
    )
    assert verified.kid == issued.kid and verified.expires_at == issued.expires_at


def test_a_code_signed_by_pycose_alone_verifies_with_citybrain(session: Session) -> None:
    # The other direction: a code made without citybrain's encoder is read by its verifier.
    private = ec.generate_private_key(ec.SECP256R1())
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = hashlib.sha256(spki).digest()[:8]
    message = Sign1Message(
        phdr={Algorithm: -7, KID: kid},
        payload=cbor2.dumps(
            {
                1: "CN-4101",
                6: int(T0.timestamp()),
                4: int(T0.timestamp()) + 60,
                CLAIM_CITYBRAIN: {"t": "hc", "ref": "R1", "c": "yellow"},
            }
        ),
    )
    message.key = EC2Key.from_pem_private_key(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )
    text = _reencode(message.encode())
    trust = TrustList.from_json(
        {
            "issuer": "CN-4101",
            "keys": [{"kid": b64url(kid), "spki": base64.b64encode(spki).decode()}],
        }
    )
    verified = verify_code(text, trust, now=T0)
    assert (verified.person_ref, verified.colour, verified.rule_set_version) == (
        "R1",
        "yellow",
        None,
    )


def test_one_changed_byte_an_expired_code_and_an_unknown_key_are_refused(
    session: Session,
) -> None:
    issued = issue_code(session, "P1", "green", now=T0)
    trust = keys.trust_list(session, now=T0)
    assert verify_code(issued.text, trust, now=T0).colour == "green"
    raw = bytearray(zlib.decompress(base45.b45decode(issued.text[4:])))

    # One byte of the payload changed (green -> greeo), everything re-encoded correctly.
    at = raw.index(b"green")
    tampered = bytearray(raw)
    tampered[at + 4] ^= 0x01
    error = _refused("bad_signature", _reencode(bytes(tampered)), trust)
    assert "签名" in error.message_zh
    # One byte of the signature changed.
    tampered = bytearray(raw)
    tampered[-1] ^= 0x80
    _refused("bad_signature", _reencode(bytes(tampered)), trust)
    # One character of the text changed: caught as bad encoding or bad signature, never passed.
    chars = list(issued.text)
    chars[40] = "0" if chars[40] != "0" else "1"
    with pytest.raises(CodeRefused) as caught:
        verify_code("".join(chars), trust, now=T0)
    assert caught.value.reason_code in {"bad_signature", "bad_encoding", "malformed"}

    # Expired: 5 minutes of validity plus 30 s of clock skew, then refused.
    assert verify_code(issued.text, trust, now=T0 + dt.timedelta(seconds=329)).colour == "green"
    error = _refused("expired", issued.text, trust, now=T0 + dt.timedelta(seconds=331))
    assert "过期" in error.message_zh and "expired" in error.message_en
    # Issued in the future (a gate's clock far behind).
    _refused("not_yet_valid", issued.text, trust, now=T0 - dt.timedelta(minutes=2))

    # Signed by a key the trust list does not hold.
    stranger = Signer("unused", ec.generate_private_key(ec.SECP256R1()))
    spki = stranger.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    from citybrain.healthcode.trust import kid_of

    stranger = Signer(kid_of(spki), stranger.private_key)
    claims = codes.health_claims(
        "P1", "green", issued_at=T0, expires_at=T0 + dt.timedelta(minutes=5)
    )
    forged = codes.sign(stranger, claims, codes.HEALTH_PREFIX)
    _refused("unknown_key", forged, trust)


def test_the_signature_is_checked_before_the_payload_is_read(session: Session) -> None:
    trust = keys.trust_list(session, now=T0)
    issue_code(session, "P1", "green", now=T0)
    trust = keys.trust_list(session, now=T0)
    kid = next(iter(trust)).kid
    protected = cbor2.dumps({1: -7, 4: base64.urlsafe_b64decode(kid + "=")})
    # A payload that is not CBOR at all: were it parsed first, this would be "malformed".
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, b"\xff\xff\xff", b"\x00" * 64]))
    _refused("bad_signature", _reencode(cose), trust)


def test_bad_prefix_bad_encoding_and_decompression_bombs_are_refused(session: Session) -> None:
    issued = issue_code(session, "P1", "red", now=T0)
    trust = keys.trust_list(session, now=T0)
    _refused("bad_prefix", "HC1:" + issued.text[4:], trust)
    _refused("bad_prefix", "", trust)
    _refused("bad_encoding", "CB1:not base45 at all!", trust)
    _refused("bad_encoding", "CB1:" + base45.b45encode(b"not zlib").decode(), trust)
    # 1 MB of zeros compresses to about 1 KB: refused without inflating it all.
    bomb = zlib.compress(b"\x00" * 1_000_000, 9)
    assert len(bomb) < 2000
    _refused("bad_encoding", "CB1:" + base45.b45encode(bomb).decode(), trust)
    _refused("malformed", _reencode(cbor2.dumps([1, 2, 3])), trust)
    # A place code is not a health code.
    place = issue_place_code(session, "G410105001001001", "compound_gate", now=T0)
    _refused("bad_prefix", place.text, trust)
    assert verify_place_code(place.text, trust, now=T0).place_code == "G410105001001001"
    with pytest.raises(CodeRefused) as caught:
        verify_place_code(issued.text, trust, now=T0)
    assert caught.value.reason_code == "bad_prefix"


def test_the_first_code_makes_the_key_with_audit_and_event(session: Session) -> None:
    from sqlalchemy import select

    before = session.scalar(select(SigningKey).where(SigningKey.status == KEY_ACTIVE))
    issued = issue_code(session, "P1", "green", now=T0)
    key = session.get(SigningKey, issued.kid)
    assert key is not None and key.status == KEY_ACTIVE
    if before is None:  # this test made it
        assert session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "healthcode.key_create", AuditEntry.object_id == key.kid
            )
        )
        assert session.scalar(
            select(OutboxEvent).where(
                OutboxEvent.topic == "healthcode.key_created", OutboxEvent.key == key.kid
            )
        )
    # The private key is stored only encrypted.
    assert b"PRIVATE KEY" not in key.private_key_enc
    # A second code uses the same key.
    assert issue_code(session, "P2", "green", now=T0).kid == issued.kid


def test_rotation_keeps_old_codes_verifiable_until_the_grace_period_ends(
    session: Session,
) -> None:
    from sqlalchemy import select

    old = issue_code(session, "P1", "green", now=T0)
    with clock.frozen(T0 + dt.timedelta(minutes=1)):
        new_key = keys.rotate_key(session, TEST_ACTOR)
    assert new_key.kid != old.kid
    retired = session.get(SigningKey, old.kid)
    assert retired is not None and retired.status == KEY_RETIRED
    assert retired.verify_until == T0 + dt.timedelta(minutes=1) + keys.grace_period()
    after = T0 + dt.timedelta(minutes=2)
    new = issue_code(session, "P1", "green", now=after)
    assert new.kid == new_key.kid
    trust = keys.trust_list(session, now=after)
    assert set(trust.kids) >= {old.kid, new.kid}
    assert verify_code(old.text, trust, now=after).kid == old.kid
    assert verify_code(new.text, trust, now=after).kid == new.kid
    audit = session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == "healthcode.key_rotate", AuditEntry.object_id == new_key.kid
        )
    )
    assert audit is not None and audit.detail["retired_kid"] == old.kid
    event = session.scalar(
        select(OutboxEvent).where(
            OutboxEvent.topic == "healthcode.key_rotated", OutboxEvent.key == new_key.kid
        )
    )
    assert event is not None and event.payload["retired_kid"] == old.kid

    # After the grace period the old key leaves the list: a (still unexpired, long-lived)
    # place code it signed is refused as signed by an unknown key.
    end = T0 + dt.timedelta(minutes=1) + keys.grace_period() + dt.timedelta(seconds=1)
    assert keys.prune_keys(session, TEST_ACTOR, now=end) == [old.kid]
    assert session.get(SigningKey, old.kid).status == KEY_REMOVED  # type: ignore[union-attr]
    assert old.kid not in keys.trust_list(session, now=end)


def test_a_compromised_key_is_removed_at_once(session: Session) -> None:
    old = issue_code(session, "P1", "green", now=T0)
    keys.rotate_key(session, TEST_ACTOR, now=T0, compromised=True)
    trust = keys.trust_list(session, now=T0)
    assert old.kid not in trust
    _refused("unknown_key", old.text, trust)


def test_a_trust_list_whose_ids_do_not_match_its_keys_is_refused(session: Session) -> None:
    issue_code(session, "P1", "green", now=T0)
    published = keys.trust_list(session, now=T0).as_json()
    published["keys"][0]["kid"] = "AAAAAAAAAAA"
    with pytest.raises(ValueError, match="does not match"):
        TrustList.from_json(published)


def _read_png(data: bytes) -> np.ndarray:
    """A grey-scale PNG (bit depth 1 or 8) as an 8-bit array, with only zlib and struct:
    the test's own reader, independent of segno."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert colour_type in (0, 3) and depth in (1, 8)
    stride = (width * depth + 7) // 8
    raw = zlib.decompress(idat)
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        bpp = max(1, depth // 8)
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    if depth == 8:
        return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width)
    bits = np.unpackbits(
        np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, stride), axis=1
    )
    # Segno writes a palette/grey image where 0 is dark and 1 is light.
    return (bits[:, :width] * 255).astype(np.uint8)


def test_the_qr_image_decodes_back_with_zxing(session: Session) -> None:
    issued = issue_code(session, "P0000000000000000000000000000042", "yellow", now=T0)
    png = qr_png(issued.text)
    # Only QR codes are looked for: a gate's scanner reads QR, and with every format on,
    # zxing now and then also reads a short 1D barcode out of the QR's modules.
    found = zxingcpp.read_barcodes(_read_png(png), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [b.text for b in found] == [issued.text]
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    assert qr(issued.text).mode == "alphanumeric" and qr(issued.text).error == "Q"
    # segno's own matrix, as a numpy image, reads back the same.
    matrix = np.array(
        [
            [0 if dark else 255 for dark in row]
            for row in qr(issued.text).matrix_iter(scale=4, border=4)
        ],
        dtype=np.uint8,
    )
    read_back = zxingcpp.read_barcodes(matrix, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [b.text for b in read_back] == [issued.text]
    svg = qr_svg(issued.text)
    assert svg.startswith("<svg") and "qr" in svg
    # The code still verifies after the round trip.
    assert verify_code(found[0].text, keys.trust_list(session, now=T0), now=T0).colour == "yellow"


def test_a_code_that_spells_percent_00_is_an_ordinary_code(session: Session) -> None:
    # base45 uses "%", so about one code in 600 spells "%00": text, not a NUL. It is signed
    # like any other (no padding, nothing unsigned added) and verifies independently.
    issue_code(session, "P0", "green", now=T0)
    trust = keys.trust_list(session, now=T0)
    for n in range(20_000):
        issued = issue_code(session, f"{n:032x}", "green", now=T0)
        if "%00" in issued.text:
            break
    else:
        pytest.fail("no code spelled %00")
    raw = zlib.decompress(base45.b45decode(issued.text[4:]))
    message = Sign1Message.decode(raw)
    assert not message.uhdr and message.payload is not None
    assert cbor2.loads(message.payload)[CLAIM_CITYBRAIN]["ref"] == f"{n:032x}"
    assert verify_code(issued.text, trust, now=T0).person_ref == f"{n:032x}"

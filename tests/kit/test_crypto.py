import base64
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.kit.crypto import BlindIndex, FieldCipher
from citybrain.kit.errors import ConfigurationError
from citybrain.kit.keys import build_keyring, parse_field_keys
from citybrain.kit.settings import Settings


def _key() -> bytes:
    return os.urandom(32)


def test_round_trip_and_column_binding() -> None:
    cipher = FieldCipher({"k1": _key()}, "k1")
    blob = cipher.encrypt("410105198503141234", "persons.id_number")
    assert b"410105198503141234" not in blob
    assert cipher.decrypt(blob, "persons.id_number") == "410105198503141234"
    # The same ciphertext pasted into another column does not decrypt.
    with pytest.raises(ValueError, match="authentication"):
        cipher.decrypt(blob, "persons.phone")


def test_tampering_is_detected() -> None:
    cipher = FieldCipher({"k1": _key()}, "k1")
    blob = bytearray(cipher.encrypt("13812345678", "persons.phone"))
    blob[-1] ^= 0x01
    with pytest.raises(ValueError):
        cipher.decrypt(bytes(blob), "persons.phone")


def test_rotation_reads_old_keys_and_writes_with_the_new_one() -> None:
    old, new = _key(), _key()
    before = FieldCipher({"k1": old}, "k1")
    blob = before.encrypt("张三", "persons.name")
    after = FieldCipher({"k2": new, "k1": old}, "k2")
    assert after.decrypt(blob, "persons.name") == "张三"
    assert after.needs_rotation(blob)
    fresh = after.encrypt("张三", "persons.name")
    assert after.key_id(fresh) == "k2"
    assert not after.needs_rotation(fresh)
    # Without the old key the old value cannot be read.
    with pytest.raises(ConfigurationError):
        FieldCipher({"k2": new}, "k2").decrypt(blob, "persons.name")


def test_blind_index_is_keyed_normalised_and_kind_separated() -> None:
    key = _key()
    index = BlindIndex(key)
    assert index.digest("11010519491231002x", "id_number") == index.digest(
        " 11010519491231002X ", "id_number"
    )
    assert index.digest("13812345678", "phone") != index.digest("13812345678", "id_number")
    assert index.digest("13812345678", "phone") != BlindIndex(_key()).digest("13812345678", "phone")


def test_dev_keys_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, env="dev")
    first = build_keyring(settings)
    path = tmp_path / "keys" / "dev-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = build_keyring(settings)
    assert first == second
    assert json.loads(path.read_text())["active_field_kid"] == "k1"


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CITYBRAIN_FIELD_KEYS"):
        build_keyring(Settings(data_dir=tmp_path, env="production"))
    assert not (tmp_path / "keys").exists()


def test_production_keys_come_from_the_environment(tmp_path: Path) -> None:
    k2, k1, blind = (base64.urlsafe_b64encode(_key()).decode() for _ in range(3))
    ring = build_keyring(
        Settings(
            data_dir=tmp_path,
            env="production",
            field_keys=f"k2:{k2},k1:{k1}",
            blind_index_key=blind,
            secret_key="s" * 40,
        )
    )
    assert ring.active_field_kid == "k2"
    assert set(ring.field_keys) == {"k1", "k2"}


def test_malformed_key_spec_is_explained() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        parse_field_keys("k1:" + base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(ConfigurationError, match="kid:key"):
        parse_field_keys("nokeyid")


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.text(max_size=20), max_size=20), kind=st.sampled_from(["id", "phone"]))
def test_digest_many_agrees_with_digest(values: list[str], kind: str) -> None:
    index = BlindIndex(b"k" * 32)
    assert index.digest_many(values, kind) == [index.digest(v, kind) for v in values]

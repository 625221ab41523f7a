"""Key material: field-encryption keys (with ids, for rotation), the blind-index key and the
session secret. Production takes them from the environment; dev and test generate them once
into ``<data_dir>/keys/dev-keys.json`` with mode 0600."""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from citybrain.kit.errors import ConfigurationError
from citybrain.kit.settings import Settings, get_settings

KEY_BYTES = 32


@dataclass(frozen=True)
class Keyring:
    """All key material of one process."""

    field_keys: dict[str, bytes]  # kid -> 256-bit AES key
    active_field_kid: str
    blind_index_key: bytes
    secret_key: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{what} 不是有效的 base64", f"{what} is not valid base64"
        ) from exc
    if len(raw) != KEY_BYTES:
        raise ConfigurationError(
            f"{what} 长度应为 32 字节", f"{what} must be 32 bytes, got {len(raw)}"
        )
    return raw


def parse_field_keys(spec: str) -> tuple[dict[str, bytes], str]:
    """Parse ``kid:key,kid:key`` (first is active) into keys and the active id."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for part in spec.split(","):
        if not part.strip():
            continue
        kid, sep, material = part.strip().partition(":")
        if not sep or not kid or len(kid) > 16:
            raise ConfigurationError(
                "CITYBRAIN_FIELD_KEYS 格式应为 kid:key,kid:key",
                "CITYBRAIN_FIELD_KEYS must look like kid:key,kid:key (kid at most 16 chars)",
            )
        keys[kid] = _unb64(material, f"field key {kid}")
        order.append(kid)
    if not order:
        raise ConfigurationError("未提供字段加密密钥", "no field encryption key given")
    return keys, order[0]


def generate_dev_keys() -> dict[str, object]:
    """Fresh random key material in the dev-keys file format."""
    return {
        "field_keys": {"k1": _b64(secrets.token_bytes(KEY_BYTES))},
        "active_field_kid": "k1",
        "blind_index_key": _b64(secrets.token_bytes(KEY_BYTES)),
        "secret_key": secrets.token_urlsafe(48),
    }


def dev_keys_path(settings: Settings) -> Path:
    """Where dev/test keys live."""
    return settings.data_dir / "keys" / "dev-keys.json"


def _load_or_create_dev_keys(path: Path) -> dict[str, object]:
    """The dev keys at ``path``, made on first use. Written aside and linked into place, so
    processes starting together (intake workers) all read the one complete file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd, aside = tempfile.mkstemp(dir=path.parent, prefix=".dev-keys-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(generate_dev_keys(), handle, indent=2)
            os.link(aside, path)  # fails if another process got there first: theirs stands
        except FileExistsError:
            pass
        finally:
            os.unlink(aside)
    return dict(json.loads(path.read_text("utf-8")))


def build_keyring(settings: Settings) -> Keyring:
    """Assemble the keyring from the environment, or from dev keys outside production."""
    if settings.field_keys and settings.blind_index_key and settings.secret_key:
        keys, active = parse_field_keys(settings.field_keys)
        return Keyring(
            keys, active, _unb64(settings.blind_index_key, "blind index key"), settings.secret_key
        )
    if settings.env == "production":
        raise ConfigurationError(
            "生产环境必须通过环境变量提供 CITYBRAIN_FIELD_KEYS、CITYBRAIN_BLIND_INDEX_KEY、"
            "CITYBRAIN_SECRET_KEY",
            "production needs CITYBRAIN_FIELD_KEYS, CITYBRAIN_BLIND_INDEX_KEY and "
            "CITYBRAIN_SECRET_KEY in the environment",
        )
    material = _load_or_create_dev_keys(dev_keys_path(settings))
    field = {
        str(kid): _unb64(str(v), f"field key {kid}")
        for kid, v in dict(material["field_keys"]).items()  # type: ignore[call-overload]
    }
    return Keyring(
        field,
        str(material["active_field_kid"]),
        _unb64(str(material["blind_index_key"]), "blind index key"),
        str(material["secret_key"]),
    )


@lru_cache(maxsize=1)
def get_keyring() -> Keyring:
    """The process's keyring (cached)."""
    return build_keyring(get_settings())


def reset_keyring() -> None:
    """Forget the cached keyring (tests, key rotation)."""
    get_keyring.cache_clear()

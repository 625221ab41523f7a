"""Password hashing with Argon2id (argon2-cffi)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from citybrain.kit.errors import InvalidInput
from citybrain.kit.settings import get_settings

MIN_LENGTH = 10


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # The test suite creates many accounts; it uses the cheapest profile, everything else
    # RFC 9106's low-memory profile.
    if get_settings().env == "test":
        return PasswordHasher.from_parameters(profiles.CHEAPEST)
    return PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)


def check_strength(password: str) -> None:
    """Refuse passwords that are short or lack letters or digits."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(
            f"密码至少{MIN_LENGTH}位",
            f"password must have at least {MIN_LENGTH} characters",
            field="password",
        )
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise InvalidInput(
            "密码须同时包含字母和数字", "password must contain letters and digits", field="password"
        )


def hash_password(password: str) -> str:
    """Argon2id hash of ``password``."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: list[str] = []


def burn_time(password: str) -> None:
    """Spend the time of one verification, so an unknown username answers as slowly as a
    known one."""
    if not _DUMMY:
        _DUMMY.append(hash_password("dummy-password-0"))
    verify_password(_DUMMY[0], password)

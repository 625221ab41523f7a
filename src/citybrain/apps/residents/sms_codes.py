"""One-time codes by text message (短信验证码): proof that a resident holds the phone they type.

ID number, phone and name are weak proof on their own: the three leak together. So registering
and logging in also take a six-digit code sent to the phone (``kit.sms``). Only the phone's
blind index and an HMAC of the code are kept (``ResidentSmsCode``); only the phone's latest code
counts; it lives ``sms_code_seconds``, is spent by one success, and dies after ``MAX_ATTEMPTS``
wrong tries. A phone gets a new code at most every ``sms_resend_seconds`` and
``sms_codes_per_phone_per_day`` a day, an address ``sms_codes_per_address_per_hour`` an hour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from citybrain.apps.residents import repository
from citybrain.apps.residents.models import FOR_LOGIN, ResidentSmsCode
from citybrain.core.audit.service import SYSTEM, record
from citybrain.kit import clock
from citybrain.kit.crypto import blind_index
from citybrain.kit.errors import InvalidInput, RateLimited
from citybrain.kit.keys import get_keyring
from citybrain.kit.masking import mask_phone
from citybrain.kit.settings import get_settings
from citybrain.kit.sms import send_sms

CODE_DIGITS = 6
MAX_ATTEMPTS = 5
FIELD = "sms_code"


@dataclass(frozen=True)
class CodeSent:
    """What the page tells the resident after sending: where to (masked), for how long."""

    masked_phone: str
    valid_minutes: int
    resend_seconds: int


def phone_key(phone: str) -> str:
    """The phone's blind index (the same as ``persons.phone_bidx``)."""
    return blind_index().digest(phone, "phone")


def _code_hash(key: str, code: str) -> str:
    secret = get_keyring().secret_key.encode()
    return hmac.new(secret, f"sms\x1f{key}\x1f{code}".encode(), hashlib.sha256).hexdigest()


def message_text(code: str, minutes: int) -> str:
    """The text message: the code, how long it lives, what it is for, not to share it."""
    return (
        f"【城市大脑】您的验证码为{code}，{minutes}分钟内有效，仅用于小区居民健康登记和登录。"
        "请勿告诉他人。"
    )


def consent_text(inviter: str, compound: str) -> Callable[[str, int], str]:
    """The text asking an adult's consent to be entered in a household: who asks (their name
    masked) and where, so that the holder of the phone knows what they agree to by passing the
    code on, and that they should not if they do not know the person."""

    def text(code: str, minutes: int) -> str:
        return (
            f"【城市大脑】{inviter}申请将您登记为其家庭成员（{compound}），登记后对方可查看您的"
            f"健康码。验证码为{code}，{minutes}分钟内有效。同意请将验证码告诉对方；如不认识对方，"
            "请勿告知。"
        )

    return text


def send_code(
    session: Session,
    phone: str,
    *,
    client_ip: str,
    purpose: str = FOR_LOGIN,
    message: Callable[[str, int], str] = message_text,
) -> CodeSent:
    """Send a fresh code to ``phone`` (a checked mobile number) and keep its hash; earlier codes
    of the phone for the same ``purpose`` stop counting. Raises RateLimited when asked too
    often (the limits count every purpose), SmsNotSent when the SMS platform does not take the
    message (nothing is kept then). It ends the session's reads before calling the platform,
    so call it before any write of the unit of work."""
    settings = get_settings()
    now = clock.now()
    key = phone_key(phone)
    latest = repository.latest_sms_code(session, key)
    if latest is not None:
        wait = settings.sms_resend_seconds - (now - clock.as_utc(latest.sent_at)).total_seconds()
        if wait > 0:
            seconds = math.ceil(wait)
            raise RateLimited(
                f"验证码已发送，请{seconds}秒后再重新获取",
                f"a code was just sent; ask again in {seconds} seconds",
                code="sms_code_too_soon",
                field=FIELD,
            )
    day_ago, hour_ago = now - dt.timedelta(days=1), now - dt.timedelta(hours=1)
    if repository.sms_codes_sent(session, since=day_ago, phone_key=key) >= (
        settings.sms_codes_per_phone_per_day
    ):
        raise RateLimited(
            "该手机号码今天获取验证码的次数已达上限，请明天再试",
            "this phone has been sent as many codes as allowed today; try again tomorrow",
            code="sms_codes_per_phone",
            field=FIELD,
        )
    if repository.sms_codes_sent(session, since=hour_ago, client_ip=client_ip) >= (
        settings.sms_codes_per_address_per_hour
    ):
        raise RateLimited(
            "获取验证码过于频繁，请稍后再试",
            "too many codes asked from this address; try again later",
            code="sms_codes_per_address",
            field=FIELD,
        )
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    minutes = max(1, settings.sms_code_seconds // 60)
    # Sent before anything is written: a slow gateway must not hold the database's write lock.
    # The reads above end first: on SQLite a snapshot held across the gateway is turned away
    # at the write below if anything else commits meanwhile, and the request, run again
    # (web.retry), would text the phone a second code.
    session.commit()
    send_sms(phone, message(code, minutes))
    session.add(
        ResidentSmsCode(
            phone_key=key,
            purpose=purpose,
            code_hash=_code_hash(key, code),
            client_ip=client_ip,
            sent_at=now,
            expires_at=now + dt.timedelta(seconds=settings.sms_code_seconds),
            attempts=0,
        )
    )
    record(
        session,
        SYSTEM,
        "residents.sms_code",
        object_type="resident",
        detail={"client_ip": client_ip},
    )
    return CodeSent(mask_phone(phone), minutes, settings.sms_resend_seconds)


def _count_wrong_try(code_id: int) -> Callable[[Session], None]:
    def keep(session: Session) -> None:
        session.execute(
            update(ResidentSmsCode)
            .where(ResidentSmsCode.id == code_id)
            .values(attempts=ResidentSmsCode.attempts + 1)
        )

    return keep


def check_code(
    session: Session, phone: str, code: str, *, purpose: str = FOR_LOGIN
) -> ResidentSmsCode:
    """The phone's live code for ``purpose``, if ``code`` is it. Otherwise raises InvalidInput
    on the ``sms_code`` field saying why; a wrong guess carries (``after_rollback``) the count
    of the try, kept although the attempt rolls back. A typo in the format is not a try."""
    typed = "".join(code.split())
    if not typed:
        raise InvalidInput(
            "请填写短信验证码（先点“获取验证码”）",
            "enter the code sent to your phone (tap “send code” first)",
            field=FIELD,
        )
    if not (typed.isascii() and typed.isdigit() and len(typed) == CODE_DIGITS):
        raise InvalidInput(
            f"验证码为{CODE_DIGITS}位数字",
            f"the code has {CODE_DIGITS} digits",
            field=FIELD,
        )
    key = phone_key(phone)
    latest = repository.latest_sms_code(session, key, purpose)
    now = clock.now()
    if latest is None or latest.used_at is not None or clock.as_utc(latest.expires_at) <= now:
        raise InvalidInput(
            "验证码已失效或尚未获取，请重新获取",
            "the code has expired or was never sent; ask for a new one",
            code="sms_code_expired",
            field=FIELD,
        )
    if latest.attempts >= MAX_ATTEMPTS:
        raise InvalidInput(
            "验证码输错次数过多，请重新获取",
            "too many wrong codes; ask for a new one",
            code="sms_code_spent",
            field=FIELD,
        )
    if not secrets.compare_digest(latest.code_hash, _code_hash(key, typed)):
        left = MAX_ATTEMPTS - latest.attempts - 1
        error = InvalidInput(
            f"验证码不正确，还可再试{left}次" if left else "验证码不正确，请重新获取",
            f"wrong code; {left} tries left" if left else "wrong code; ask for a new one",
            code="sms_code_wrong",
            field=FIELD,
        )
        raise error.keep(_count_wrong_try(latest.id))
    return latest


def spend(code: ResidentSmsCode) -> None:
    """Mark a code used (in the caller's transaction): it proves the phone once."""
    code.used_at = clock.now()

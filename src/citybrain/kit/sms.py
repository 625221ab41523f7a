"""Sending a text message (短信) through the city's SMS platform.

The platform is outside citybrain: the city's government SMS gateway or a carrier's. We speak
one plain wire format to it — ``POST`` to ``CITYBRAIN_SMS_GATEWAY_URL`` with the JSON body
``{"phone": "13812345678", "text": "…"}`` and ``Authorization: Bearer <token>`` when
``CITYBRAIN_SMS_GATEWAY_TOKEN`` is set; any 2xx answer means accepted — so a city puts its
provider's API behind that, or a small relay in front of it.

Without a gateway, development and test processes print the message to the console with the
phone masked (so ``citybrain demo`` can be tried on one machine); production refuses to send,
since a code that never arrives would lock residents out silently. The phone number and the
text are never logged: a failure is logged with its kind and HTTP status only.
"""

from __future__ import annotations

import sys

from citybrain.kit.errors import CitybrainError
from citybrain.kit.gateway import GatewayFailed, post_json
from citybrain.kit.logging import get_logger
from citybrain.kit.masking import mask_phone
from citybrain.kit.settings import get_settings

log = get_logger(__name__)


class SmsNotSent(CitybrainError):
    """The SMS platform did not accept the message (or none is configured)."""

    status_code = 503
    code = "sms_not_sent"


def _unavailable() -> SmsNotSent:
    return SmsNotSent(
        "短信发送失败，请稍后再试",
        "the text message could not be sent; try again later",
        field="phone",
    )


def send_sms(phone: str, text: str) -> None:
    """Send ``text`` to ``phone``; raises SmsNotSent when the platform does not accept it."""
    settings = get_settings()
    if not settings.sms_gateway_url:
        if settings.env == "production":
            log.error("sms.not_configured")
            raise SmsNotSent(
                "短信服务未配置，暂时无法发送验证码，请联系所在社区",
                "no SMS gateway is configured (CITYBRAIN_SMS_GATEWAY_URL); codes cannot be sent",
                code="sms_not_configured",
                field="phone",
            )
        # Development only, to the console of the process (not the log): the phone masked.
        print(f"[短信 SMS → {mask_phone(phone)}] {text}", file=sys.stderr, flush=True)
        return
    try:
        post_json(
            settings.sms_gateway_url,
            {"phone": phone, "text": text},
            token=settings.sms_gateway_token,
            timeout=settings.sms_timeout_seconds,
            setting="CITYBRAIN_SMS_GATEWAY_URL",
        )
    except GatewayFailed as failure:
        if failure.kind == "busy":
            log.warning("sms.busy")
            raise SmsNotSent(
                "短信服务繁忙，请稍后再试",
                "the SMS service is busy; try again in a moment",
                code="sms_busy",
                field="phone",
            ) from None
        if failure.status is not None:
            log.warning("sms.refused", status=failure.status)
        else:
            log.warning("sms.unreachable", error=failure.kind)
        raise _unavailable() from None

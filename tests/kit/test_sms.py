"""Sending a text message through the SMS platform: the wire format, a platform that refuses or
does not answer, production without a platform, and the phone never in the logs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from citybrain.kit.errors import ConfigurationError
from citybrain.kit.gateway import reset_slots
from citybrain.kit.logging import configure_logging
from citybrain.kit.sms import SmsNotSent, send_sms
from tests.sms_gateway import TOKEN, FakeSmsGateway

PHONE = "13812345678"
SetEnv = Callable[[str, str | None], None]


def test_the_message_goes_to_the_platform_with_its_token(sms_gateway: FakeSmsGateway) -> None:
    before = len(sms_gateway.messages)
    send_sms(PHONE, "【城市大脑】您的验证码为123456")
    [message] = sms_gateway.messages[before:]
    assert (message.phone, message.text) == (PHONE, "【城市大脑】您的验证码为123456")
    assert message.authorization == f"Bearer {TOKEN}"


def test_a_refusal_is_an_error_and_the_log_holds_no_phone(
    sms_gateway: FakeSmsGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json_lines=True)
    sms_gateway.refuse_with = 503
    try:
        with pytest.raises(SmsNotSent) as refused:
            send_sms(PHONE, "text")
    finally:
        sms_gateway.refuse_with = None
    assert refused.value.status_code == 503 and refused.value.field == "phone"
    assert refused.value.message_zh == "短信发送失败，请稍后再试"
    logged = capsys.readouterr()
    lines = [json.loads(line) for line in logged.err.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "sms.refused" and line.get("status") == 503 for line in lines)
    assert PHONE not in logged.err + logged.out


def test_a_platform_that_does_not_answer_is_an_error(settings_env: SetEnv) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings_env("CITYBRAIN_SMS_GATEWAY_URL", f"http://127.0.0.1:{port}/sms")
    with pytest.raises(SmsNotSent):
        send_sms(PHONE, "text")


def test_only_http_urls_are_opened(settings_env: SetEnv) -> None:
    settings_env("CITYBRAIN_SMS_GATEWAY_URL", "file:///etc/passwd")
    with pytest.raises(ConfigurationError):
        send_sms(PHONE, "text")


def test_production_without_a_platform_refuses_to_send(settings_env: SetEnv) -> None:
    settings_env("CITYBRAIN_SMS_GATEWAY_URL", None)
    settings_env("CITYBRAIN_ENV", "production")
    with pytest.raises(SmsNotSent) as refused:
        send_sms(PHONE, "text")
    assert refused.value.code == "sms_not_configured"


def test_development_without_a_platform_prints_with_the_phone_masked(
    settings_env: SetEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_env("CITYBRAIN_SMS_GATEWAY_URL", None)
    settings_env("CITYBRAIN_ENV", "dev")
    send_sms(PHONE, "【城市大脑】您的验证码为654321")
    printed = capsys.readouterr().err
    assert "138****5678" in printed and "654321" in printed
    assert PHONE not in printed


def test_a_slow_platform_holds_only_its_share_of_the_threads(
    sms_gateway: FakeSmsGateway, settings_env: SetEnv
) -> None:
    """One call more than CITYBRAIN_GATEWAY_CONCURRENCY is told "busy" at once instead of
    waiting on the platform with a thread of the server's pool."""
    settings_env("CITYBRAIN_GATEWAY_CONCURRENCY", "1")
    reset_slots()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(10)

    sms_gateway.meanwhile = hold
    first = threading.Thread(target=send_sms, args=(PHONE, "first"))
    first.start()
    try:
        assert inside.wait(10)
        started = time.monotonic()
        with pytest.raises(SmsNotSent) as busy:
            send_sms(PHONE, "second")
        assert time.monotonic() - started < 1
        assert busy.value.code == "sms_busy" and busy.value.status_code == 503
        assert busy.value.message_zh == "短信服务繁忙，请稍后再试"
    finally:
        release.set()
        first.join(10)
        reset_slots()
    # The slot is given back: the next message goes.
    send_sms(PHONE, "third")
    texts = [m.text for m in sms_gateway.sent_to(PHONE)]
    assert "first" in texts and "third" in texts and "second" not in texts

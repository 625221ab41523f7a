"""A stand-in for the city's SMS platform, at the wire: a real HTTP server on 127.0.0.1 that
takes what ``kit.sms`` posts and keeps the messages, so a test can read the code a resident's
phone would receive. Only the platform outside citybrain is replaced, never our code."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.wire import Answer, StandIn

TOKEN = "test-sms-token"
_CODE = re.compile(r"验证码为(\d{6})")


@dataclass
class Message:
    """One text message as the platform received it."""

    phone: str
    text: str
    authorization: str | None


@dataclass(eq=False)
class FakeSmsGateway(StandIn):
    """The platform: ``messages`` in arrival order (``refuse_with`` and ``meanwhile``: see
    ``StandIn``)."""

    PATH: ClassVar[str] = "/sms"
    RUNNING: ClassVar[list[Any]] = []

    messages: list[Message] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, body: dict[str, Any], authorization: str | None) -> Answer:
        with self._lock:
            self.messages.append(
                Message(str(body.get("phone")), str(body.get("text")), authorization)
            )
        return 200, {"accepted": True}

    def sent_to(self, phone: str) -> list[Message]:
        """The messages sent to ``phone``, oldest first."""
        with self._lock:
            return [m for m in self.messages if m.phone == phone]

    def code_for(self, phone: str) -> str:
        """The code in the latest message to ``phone`` (what the resident would type)."""
        sent = self.sent_to(phone)
        assert sent, "no text message reached this phone"
        match = _CODE.search(sent[-1].text)
        assert match, f"no code in the message: {sent[-1].text!r}"
        return match.group(1)


def running_gateway() -> FakeSmsGateway:
    """The gateway this test process started (the session's ``sms_gateway`` fixture)."""
    assert FakeSmsGateway.RUNNING, "the sms_gateway fixture is not running"
    return FakeSmsGateway.RUNNING[-1]

"""Input guards in front of every route: refuse NUL characters anywhere in a request, and
bodies larger than the configured limit, before any handler or database sees them.

PostgreSQL text cannot hold NUL, so without this a NUL in a path, a query, a form or a JSON
string would surface as a server error deep in a write (even in the audit row of a failed
login); no legitimate value in this system contains one.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NUL_MARKERS = (b"\x00", b"%00", b"\\u0000")
# Binary uploads that legitimately hold NUL bytes (an Excel workbook is a zip archive); their
# bytes are parsed by the intake, never stored as text. Only this path and this type.
BINARY_UPLOADS = {
    (
        "/api/v1/datahub/batches",
        b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
}


def has_nul(data: bytes) -> bool:
    """Whether ``data`` holds a NUL raw, percent-encoded or as a JSON escape."""
    lowered = data.lower()
    return any(marker in lowered for marker in _NUL_MARKERS)


def _error(status: int, code: str, zh: str, en: str, accept_en: bool) -> bytes:
    message = en if accept_en else zh
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False).encode()


class InputGuard:
    """Pure ASGI middleware: buffers the body (up to ``max_body_bytes``), checks it and the
    URL for NUL, then replays the body to the app."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        accept_en = headers.get(b"accept-language", b"").lower().startswith(b"en")
        url = bytes(scope.get("raw_path") or scope["path"].encode()) + b"?" + scope["query_string"]
        if has_nul(url):
            await self._refuse(
                send,
                422,
                "invalid_input",
                "地址中含有非法字符（NUL）",
                "the URL contains a NUL character",
                accept_en,
            )
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            if len(body) > self.max_body_bytes:
                await self._refuse(
                    send,
                    413,
                    "too_large",
                    f"请求体超过{self.max_body_bytes}字节",
                    f"the request body exceeds {self.max_body_bytes} bytes",
                    accept_en,
                )
                return
            if not message.get("more_body", False):
                break
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        binary = (scope["path"], content_type) in BINARY_UPLOADS
        if not binary and has_nul(bytes(body)):
            await self._refuse(
                send,
                422,
                "invalid_input",
                "提交的内容含有非法字符（NUL）",
                "the request body contains a NUL character",
                accept_en,
            )
            return

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(
        send: Send, status: int, code: str, zh: str, en: str, accept_en: bool
    ) -> None:
        payload = _error(status, code, zh, en, accept_en)
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

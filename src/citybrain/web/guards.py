"""Input guards in front of every route: refuse NUL characters anywhere in a request, and
bodies larger than the configured limit, before any handler or database sees them.

PostgreSQL text cannot hold NUL, so without this a NUL in a path, a query, a form or a JSON
string would surface as a server error deep in a write (even in the audit row of a failed
login); no legitimate value in this system contains one.

What spells a NUL depends on where it stands. A raw NUL byte is one everywhere. ``%00`` is one
only where percent-encoding is decoded: the URL's path and query, and a form body
(``application/x-www-form-urlencoded``). A JSON body decodes ``\u0000`` instead, and a
literal ``%00`` in a JSON string is three characters of text — a base45 health code (QR
alphanumeric: digits, capitals, space and ``$%*+-./:``) spells it in about one code in 600, and
refusing those would turn a gate's valid code away for nothing.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citybrain.web.retry import run_retrying

RAW_NUL = b"\x00"
PERCENT_NUL = b"%00"
JSON_NUL = b"\\u0000"
FORM_TYPE = b"application/x-www-form-urlencoded"
MULTIPART_TYPE = b"multipart/form-data"
# Binary uploads that legitimately hold NUL bytes (an Excel workbook is a zip archive); their
# bytes are parsed by the intake, never stored as text. Only these paths and types: the
# intake's workbooks, and the form that uploads a list of people (批量登记), whose text fields
# are refused there when they hold a NUL.
BINARY_UPLOADS = {
    (
        "/api/v1/datahub/batches",
        b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("/risk/batches", MULTIPART_TYPE),
}


def has_nul(data: bytes) -> bool:
    """Whether ``data`` holds a NUL raw, percent-encoded or as a JSON escape (any spelling:
    for text whose decoding is not known)."""
    return RAW_NUL in data or PERCENT_NUL in data or JSON_NUL in data.lower()


def url_has_nul(url: bytes) -> bool:
    """Whether a URL's raw path or query holds a NUL, raw or percent-encoded."""
    return RAW_NUL in url or PERCENT_NUL in url


def body_has_nul(body: bytes, content_type: bytes) -> bool:
    """Whether a request body holds a NUL as its content type would decode it: raw NUL in
    any body; ``%00`` in a form body (percent-decoded); ``\\u0000`` in anything else that
    may be read as JSON (a JSON body, or one without a type, which FastAPI reads as JSON).
    ``content_type`` is the media type alone, lower case."""
    if RAW_NUL in body:
        return True
    if content_type == FORM_TYPE:
        return PERCENT_NUL in body
    if content_type == MULTIPART_TYPE:
        # Part values arrive raw (checked above); headers of a part may percent-encode a file
        # name (RFC 7578/5987), so any spelling is refused here.
        return has_nul(body)
    # JSON spells NUL only as the escape \u0000 (its hex digits have no case). An escaped
    # backslash before "u0000" is refused too: rare, and harmless to refuse.
    return JSON_NUL in body


def _error(status: int, code: str, zh: str, en: str, accept_en: bool) -> bytes:
    message = en if accept_en else zh
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False).encode()


class InputGuard:
    """Pure ASGI middleware: buffers the body (up to ``max_body_bytes``), checks it and the
    URL for NUL, then replays the body to the app — again when SQLite turned the request's
    write away before it answered (``web.retry``)."""

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
        if url_has_nul(url):
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
        if not binary and body_has_nul(bytes(body), content_type):
            await self._refuse(
                send,
                422,
                "invalid_input",
                "提交的内容含有非法字符（NUL）",
                "the request body contains a NUL character",
                accept_en,
            )
            return

        await run_retrying(self.app, scope, messages, receive, send)

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

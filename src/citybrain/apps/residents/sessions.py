"""The resident session: a signed cookie bound to a person's ref (居民登录状态).

Residents are not staff users and do not share the staff session: their cookie is separate,
signed with the platform's secret under its own salt (so a staff cookie can never pass for a
resident's, nor the reverse), scoped to ``/residents``, HTTP-only, and carries only the
pseudonymous person ref and when it was issued. Logging out ends every copy of it
(``ResidentAccount.sessions_revoked_at``).
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from citybrain.kit import clock
from citybrain.kit.keys import get_keyring
from citybrain.kit.settings import get_settings

COOKIE = "citybrain_resident"
COOKIE_PATH = "/residents"
MAX_AGE_SECONDS = 30 * 86400  # a phone stays logged in for a month
_SALT = "citybrain.residents.session"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_keyring().secret_key, salt=_SALT)


def start(response: Response, person_ref: str) -> None:
    """Put a fresh resident session for ``person_ref`` on ``response``."""
    token = _serializer().dumps({"ref": person_ref, "iat": clock.now().timestamp()})
    response.set_cookie(
        COOKIE,
        token,
        max_age=MAX_AGE_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=get_settings().secure_cookies,
    )


def end(response: Response) -> None:
    """Remove the resident session cookie."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH)


def read(request: Request) -> tuple[str, float] | None:
    """The person ref and issue time of a valid, unexpired resident cookie, else None."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        data: Any = _serializer().loads(token, max_age=MAX_AGE_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    ref, issued = data.get("ref"), data.get("iat")
    if not isinstance(ref, str) or len(ref) != 32 or not isinstance(issued, int | float):
        return None
    return ref, float(issued)

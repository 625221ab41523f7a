"""Posting JSON to a service the city runs outside citybrain (its SMS platform, its real-name
verification service): one plain wire format, a bearer token, a timeout, and failures that
name their kind and HTTP status only, never what was sent.

Each service is called by at most ``CITYBRAIN_GATEWAY_CONCURRENCY`` requests of a process at
once. Requests that call it wait on a thread of the server's pool; a service that has become
slow would otherwise hold every thread for its timeout at the morning's registration rush, and
every page of the process with them. One more caller than that is answered "busy" (kind
``busy``) at once, and the page says to try again."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from citybrain.kit.errors import ConfigurationError
from citybrain.kit.logging import get_logger
from citybrain.kit.settings import get_settings

log = get_logger(__name__)


_slots: dict[str, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _slot(setting: str) -> threading.BoundedSemaphore:
    """The calls to the service of ``setting`` this process may have open at once."""
    with _slots_lock:
        slot = _slots.get(setting)
        if slot is None:
            slot = _slots[setting] = threading.BoundedSemaphore(get_settings().gateway_concurrency)
        return slot


def reset_slots() -> None:
    """Forget the limits (tests that change CITYBRAIN_GATEWAY_CONCURRENCY)."""
    with _slots_lock:
        _slots.clear()


class GatewayFailed(Exception):
    """The service refused (``status`` set) or did not answer (``status`` None)."""

    def __init__(self, kind: str, status: int | None = None) -> None:
        super().__init__(kind if status is None else f"{kind} {status}")
        self.kind = kind
        self.status = status


def post_json(
    url: str, payload: dict[str, Any], *, token: str | None, timeout: float, setting: str
) -> bytes:
    """POST ``payload`` as JSON to ``url`` (``Authorization: Bearer <token>`` when a token is
    set) and return the body of a 2xx answer; anything else raises GatewayFailed. ``setting``
    names the variable holding the URL, for the error when it is not an http(s) URL."""
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(
            f"{setting} 须以 https:// 或 http:// 开头",
            f"{setting} must be an https:// or http:// URL",
        )
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # The scheme is checked above: only http(s), never file: or a custom opener.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    slot = _slot(setting)
    if not slot.acquire(blocking=False):
        raise GatewayFailed("busy")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return bytes(answer.read())
    except urllib.error.HTTPError as error:
        raise GatewayFailed("refused", error.code) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise GatewayFailed(type(error).__name__) from None
    finally:
        slot.release()

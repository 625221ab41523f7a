"""Real-name verification (实名核验) through the city's identity service.

Anyone who knows a person's name and ID number could otherwise register as them, or add them
as a "household member", and read their health code and its reasons. The city's identity
service closes that: the population registry confirms that a name belongs to an ID number
(two factors), and the carriers that a mobile number is registered in that person's name
(three factors; every Chinese mobile number is registered to a real name). A registrant is
checked on all three, together with the code sent to the phone, which proves they hold it;
a household member on name and ID.

The service is outside citybrain. We speak one plain wire format to it — ``POST`` to
``CITYBRAIN_IDENTITY_GATEWAY_URL`` with ``{"name", "id_number"}`` (and ``"phone"`` for three
factors) and ``Authorization: Bearer <token>`` when ``CITYBRAIN_IDENTITY_GATEWAY_TOKEN`` is
set; the answer is ``{"match": true}`` or ``{"match": false}`` — so a city puts its
registry's API, or a small relay, behind it. Nothing sent or answered is ever logged.

Without a service, development and test processes do not check (``citybrain demo`` runs on one
machine); production refuses to register anyone, since unchecked registration is exactly the
hole this closes.
"""

from __future__ import annotations

import json

from citybrain.kit.attempts import ask_once
from citybrain.kit.errors import CitybrainError
from citybrain.kit.gateway import GatewayFailed, post_json
from citybrain.kit.logging import get_logger
from citybrain.kit.settings import get_settings

log = get_logger(__name__)


class IdentityUnavailable(CitybrainError):
    """The identity service did not answer (or none is configured in production)."""

    status_code = 503
    code = "identity_unavailable"


def identity_checks_configured() -> bool:
    """Whether registrations are checked against the city's identity service."""
    return bool(get_settings().identity_gateway_url)


def identity_matches(name: str, id_number: str, phone: str | None = None) -> bool:
    """Whether the city's identity service confirms that ``name`` is the holder of
    ``id_number`` (and, with ``phone``, that the number is registered in their name). True
    without a service outside production; raises IdentityUnavailable when the service fails
    or, in production, is not configured."""
    settings = get_settings()
    if not settings.identity_gateway_url:
        if settings.env == "production":
            log.error("identity.not_configured")
            raise IdentityUnavailable(
                "实名核验服务未配置，暂时无法登记，请到所在社区登记",
                "no identity service is configured (CITYBRAIN_IDENTITY_GATEWAY_URL); "
                "registration is closed",
                code="identity_not_configured",
            )
        return True
    # A request run again after SQLite turned its write away (web.retry) has its answer.
    url = settings.identity_gateway_url
    return ask_once(("identity", name, id_number, phone), lambda: _ask(url, name, id_number, phone))


def _ask(url: str, name: str, id_number: str, phone: str | None) -> bool:
    """The service's answer; raises IdentityUnavailable when it gives none."""
    settings = get_settings()
    payload = {"name": name, "id_number": id_number}
    if phone is not None:
        payload["phone"] = phone
    try:
        body = post_json(
            url,
            payload,
            token=settings.identity_gateway_token,
            timeout=settings.identity_timeout_seconds,
            setting="CITYBRAIN_IDENTITY_GATEWAY_URL",
        )
        match = json.loads(body)["match"]
        if not isinstance(match, bool):
            raise TypeError(type(match).__name__)
    except GatewayFailed as failure:
        log.warning("identity.failed", error=failure.kind, status=failure.status)
        if failure.kind == "busy":
            raise IdentityUnavailable(
                "实名核验服务繁忙，请稍后再试",
                "the identity check is busy; try again in a moment",
                code="identity_busy",
            ) from None
        raise _unavailable() from None
    except (ValueError, KeyError, TypeError) as error:
        log.warning("identity.bad_answer", error=type(error).__name__)
        raise _unavailable() from None
    return match


def _unavailable() -> IdentityUnavailable:
    return IdentityUnavailable(
        "实名核验服务暂时不可用，请稍后再试", "the identity check is unavailable; try again later"
    )

"""The leadership cockpit page (疫情态势领导驾驶舱, /cockpit).

A server-rendered shell for a 1920x1080 wall screen that also stacks on a laptop and a phone;
a small script (static/cockpit.js) fetches the cockpit's JSON API (overview, map, alerts,
freshness), draws the district map with ECharts (served from build/web-vendor, nothing from a
CDN) and listens to the live stream. The page carries no figures itself: everything it shows
comes through the same scoped API, so the page can never show more than the viewer may see.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from citybrain.core.authz.deps import require
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.core.geo import repository as geo
from citybrain.kit.i18n import translate
from citybrain.kit.web import DB, language, render

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(require(Permission.COCKPIT_VIEW))]

# The map measures of the API contract, in the order of the select.
MEASURES = ("confirmed", "contacts_managed", "red_yellow_compounds", "screening_backlog")
# Words the script needs at run time, looked up once here so the catalogue stays the one
# source of the page's language (the template key test checks every key exists).
SCRIPT_KEYS = (
    "not_built",
    "live",
    "offline",
    "updated",
    "no_alerts",
    "stale",
    "fresh",
    "never",
    "minutes",
    "cases",
    "controlled",
    "no_polygon",
    "sort_name",
    "sort_value",
    "city",
    "load_failed",
    "trend",
    "zones",
    "demo_day",
    "demo_pause",
    "demo_resume",
    "demo_paused",
    "demo_finished",
)


def _area_name(name: str, name_en: str | None, lang: str) -> str:
    return name_en if lang == "en" and name_en else name


@router.get("/cockpit")
def cockpit(request: Request, session: DB, who: Viewer) -> Response:
    """The cockpit of the viewer's jurisdiction (the city for the command centre, one
    district for a district officer)."""
    lang = language(request)
    root = geo.get_area(session, who.area_code)
    words = {key: translate(f"cockpit.{key}", lang) for key in SCRIPT_KEYS}
    config = {
        "root": {
            "code": who.area_code,
            "name": _area_name(root.name, root.name_en, lang) if root else who.area_code,
            "level": root.level if root is not None else "",
        },
        "lang": lang,
        "measures": list(MEASURES),
        "words": words,
    }
    response = render(
        request,
        "cockpit/cockpit.html",
        {
            "root": config["root"],
            "measures": MEASURES,
            "attribution": geo.MAP_ATTRIBUTION,
            # Embedded in a <script type="application/json">: "</" must not end the element.
            "config_json": json.dumps(config, ensure_ascii=False).replace("</", "<\\/"),
        },
    )
    # Figures of a jurisdiction: not to be kept by shared caches.
    response.headers["cache-control"] = "no-store"
    return response

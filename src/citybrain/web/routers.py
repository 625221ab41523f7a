"""The one list of routers. A package's routes reach the app only by being listed here."""

from __future__ import annotations

from fastapi import APIRouter

from citybrain.analysis import pages as analysis_pages
from citybrain.analysis import routes as analysis_routes
from citybrain.core.authz import pages as authz_pages
from citybrain.core.people import pages as people_pages
from citybrain.core.people import routes as people_routes
from citybrain.datahub import pages as datahub_pages
from citybrain.datahub import routes as datahub_routes
from citybrain.web import docs, geo, health, pages

ROUTERS: list[APIRouter] = [
    health.router,
    docs.router,
    authz_pages.router,
    pages.router,
    geo.router,
    people_routes.router,
    people_routes.households,
    people_pages.router,
    datahub_routes.router,
    datahub_pages.router,
    analysis_routes.router,
    analysis_pages.router,
]

"""The one list of routers. A package's routes reach the app only by being listed here."""

from __future__ import annotations

from fastapi import APIRouter

from citybrain.analysis import pages as analysis_pages
from citybrain.analysis import routes as analysis_routes
from citybrain.apps.cockpit import pages as cockpit_pages
from citybrain.apps.cockpit import routes as cockpit_routes
from citybrain.apps.residents import card_pages as residents_card_pages
from citybrain.apps.residents import pages as residents_pages
from citybrain.apps.residents import routes as residents_routes
from citybrain.core.authz import pages as authz_pages
from citybrain.core.people import pages as people_pages
from citybrain.core.people import routes as people_routes
from citybrain.datahub import pages as datahub_pages
from citybrain.datahub import routes as datahub_routes
from citybrain.healthcode import pages as healthcode_pages
from citybrain.healthcode import routes as healthcode_routes
from citybrain.risk import pages as risk_pages
from citybrain.risk import routes as risk_routes
from citybrain.web import demo, docs, geo, health, pages

ROUTERS: list[APIRouter] = [
    health.router,
    # Gate scans are the hottest path at the morning peak: matched right after the probes
    # (the router tries routes in order, and each miss costs a regex match).
    healthcode_routes.router,
    docs.router,
    authz_pages.router,
    pages.router,
    geo.router,
    demo.router,
    people_routes.router,
    people_routes.households,
    people_pages.router,
    datahub_routes.router,
    datahub_pages.router,
    analysis_routes.router,
    analysis_pages.router,
    risk_routes.router,
    risk_pages.router,
    healthcode_pages.router,
    residents_routes.router,
    residents_pages.router,
    residents_card_pages.router,
    cockpit_routes.router,
    cockpit_pages.router,
]

"""Imports every package's models so one metadata describes the whole database.

Alembic's env.py and the test suite import this; application code imports the models it uses.
"""

from citybrain.analysis import models as analysis_models
from citybrain.apps.cockpit import models as cockpit_models
from citybrain.apps.residents import models as residents_models
from citybrain.core.audit import models as audit_models
from citybrain.core.authz import models as authz_models
from citybrain.core.events import models as events_models
from citybrain.core.geo import models as geo_models
from citybrain.core.people import models as people_models
from citybrain.datahub import models as datahub_models
from citybrain.healthcode import models as healthcode_models
from citybrain.kit.db import Base
from citybrain.risk import models as risk_models

metadata = Base.metadata

__all__ = [
    "analysis_models",
    "audit_models",
    "authz_models",
    "cockpit_models",
    "datahub_models",
    "events_models",
    "geo_models",
    "healthcode_models",
    "metadata",
    "people_models",
    "residents_models",
    "risk_models",
]

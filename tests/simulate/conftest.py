"""Fixtures for the synthetic city: the platform's geography as the simulator's plain input."""

from __future__ import annotations

import pytest

from citybrain.core.geo.service import build_dataset
from citybrain.simulate.config import AreaInput, CompoundInput, GeoInput, PlaceInput


def geo_input() -> GeoInput:
    """The generated geography (15 districts, 208 streets, 10,806 compounds, 24,466 places) as
    the rows ``citybrain simulate`` hands to the model."""
    data = build_dataset()
    return GeoInput(
        areas=[AreaInput(a.code, a.level, a.name, a.parent_code) for a in data.areas],
        compounds=[
            CompoundInput(
                c.code, c.community_code, c.name, c.address, c.households_estimate, c.lon, c.lat
            )
            for c in data.compounds
        ],
        places=[
            PlaceInput(p.code, p.kind, p.subkind, p.name, p.area_code, p.compound_code)
            for p in data.places
        ],
    )


@pytest.fixture(scope="session")
def geo() -> GeoInput:
    """The city's geography, built once per test session."""
    return geo_input()

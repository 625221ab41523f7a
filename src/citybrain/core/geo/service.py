"""Loading the geography: the real hierarchy of Zhengzhou with its synthetic compounds and
places, idempotently, in the caller's transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, Actor, record
from citybrain.core.geo import repository
from citybrain.core.geo.compounds import (
    DEFAULT_SEED,
    CompoundRow,
    DistrictGeometry,
    generate_compounds,
    street_centres,
)
from citybrain.core.geo.models import (
    CITY_CODE,
    LEVEL_COMMUNITY,
    LEVEL_DISTRICT,
    LEVEL_STREET,
    PLACE_KINDS,
    Area,
    Compound,
    Place,
)
from citybrain.core.geo.places import PlaceRow, generate_places
from citybrain.core.geo.repository import AreaRow

Progress = Callable[[str, int, int], None]

# Rows per INSERT/UPDATE batch: keeps statements a sensible size on both backends and lets
# ``progress`` report as the load goes.
BATCH = 5000


@dataclass(frozen=True)
class GeoCounts:
    """What the geography holds (the loaded data set) and what a load changed.

    ``districts`` counts the 15 county-level units (区县, development zones included); the city
    row is not counted. ``inserted`` and ``updated`` are row totals over all three tables.
    """

    districts: int
    streets: int
    communities: int
    compounds: int
    places: int
    places_by_kind: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "districts": self.districts,
            "streets": self.streets,
            "communities": self.communities,
            "compounds": self.compounds,
            "places": self.places,
            "places_by_kind": dict(self.places_by_kind),
            "inserted": self.inserted,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class GeoDataset:
    """The full generated geography for one seed, parents before children."""

    areas: tuple[AreaRow, ...]
    compounds: tuple[CompoundRow, ...]
    places: tuple[PlaceRow, ...]


def build_dataset(seed: int = DEFAULT_SEED) -> GeoDataset:
    """Generate the hierarchy, compounds and places for ``seed`` (no database involved)."""
    areas = repository.hierarchy_rows()
    geometry = DistrictGeometry(repository.district_polygons())
    centres = street_centres((a for a in areas if a.level == LEVEL_STREET), geometry, seed)
    compounds = generate_compounds(areas, geometry, seed=seed, centres=centres)
    places = generate_places(areas, compounds, geometry, centres, seed=seed)
    return GeoDataset(areas=areas, compounds=tuple(compounds), places=tuple(places))


def _sync(
    session: Session,
    model: type[Area | Compound | Place],
    rows: Sequence[NamedTuple],
    stage: str,
    progress: Progress | None,
) -> tuple[int, int]:
    """Insert the rows that are missing and update those whose columns differ; returns
    (inserted, updated). Rows are compared as whole tuples in table column order."""
    column_names = tuple(c.name for c in model.__table__.columns)
    if rows and rows[0]._fields != column_names:
        # Comparing tuples needs the generated fields in the table's column order.
        raise RuntimeError(f"generated rows do not match the columns of {model.__tablename__}")
    existing = repository.existing_rows(session, model)
    missing: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for row in rows:
        stored = existing.get(row[0])
        if stored is None:
            missing.append(row._asdict())
        elif tuple(stored) != tuple(row):
            changed.append(row._asdict())
    total = len(missing) + len(changed)
    done = 0
    if progress is not None:
        progress(stage, done, total)
    # Parents come before children in ``rows``, so batches in order satisfy the foreign keys.
    for batch_start in range(0, len(missing), BATCH):
        batch = missing[batch_start : batch_start + BATCH]
        session.execute(insert(model), batch)
        done += len(batch)
        if progress is not None:
            progress(stage, done, total)
    for batch_start in range(0, len(changed), BATCH):
        batch = changed[batch_start : batch_start + BATCH]
        session.execute(update(model), batch)
        done += len(batch)
        if progress is not None:
            progress(stage, done, total)
    return len(missing), len(changed)


def load_hierarchy(
    session: Session,
    *,
    seed: int = DEFAULT_SEED,
    actor: Actor = SYSTEM,
    progress: Progress | None = None,
) -> GeoCounts:
    """Load the areas (区划), compounds (小区) and places (场所) for ``seed`` into the database.

    Idempotent: inserts what is missing, updates what differs, deletes nothing, so a second
    run changes nothing. Writes one audit row (``geo.load``) when it changed anything.
    ``progress(stage, done, total)`` is told about the work as it goes. Never commits: the
    caller's unit of work does.
    """
    dataset = build_dataset(seed)
    inserted: dict[str, int] = {}
    updated: dict[str, int] = {}
    for stage, model, rows in (
        ("areas", Area, dataset.areas),
        ("compounds", Compound, dataset.compounds),
        ("places", Place, dataset.places),
    ):
        inserted[stage], updated[stage] = _sync(session, model, rows, stage, progress)
    session.flush()
    # The ORM bulk statements bypass the identity map; drop any stale objects it holds.
    session.expire_all()

    by_level = Counter(a.level for a in dataset.areas)
    by_kind = Counter(p.kind for p in dataset.places)
    counts = GeoCounts(
        districts=by_level[LEVEL_DISTRICT],
        streets=by_level[LEVEL_STREET],
        communities=by_level[LEVEL_COMMUNITY],
        compounds=len(dataset.compounds),
        places=len(dataset.places),
        places_by_kind={kind: by_kind[kind] for kind in PLACE_KINDS if by_kind[kind]},
        inserted=sum(inserted.values()),
        updated=sum(updated.values()),
    )
    if counts.inserted or counts.updated:
        record(
            session,
            actor,
            "geo.load",
            object_type="geo",
            object_id=f"seed:{seed}",
            area_code=CITY_CODE,
            detail={"seed": seed, "inserted": inserted, "updated": updated},
        )
    return counts

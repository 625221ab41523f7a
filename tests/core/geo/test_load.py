"""Loading the hierarchy: counts, idempotence, updates, audit."""

from __future__ import annotations

import time

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor, verify_chain
from citybrain.core.geo import repository
from citybrain.core.geo.models import PLACE_KINDS, Area, Compound, Place
from citybrain.core.geo.service import GeoCounts, load_hierarchy
from citybrain.kit.db import Database


def _geo_audit_rows(session: Session) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.action == "geo.load").order_by(AuditEntry.seq)
        )
    )


def test_loaded_counts_match_the_nbs_list(session: Session) -> None:
    counts = repository.counts(session)
    assert counts["districts"] == 15
    assert counts["streets"] == 208
    assert counts["communities"] == 3306
    assert counts["compounds"] == 10806
    assert set(counts["places_by_kind"]) == set(PLACE_KINDS)
    assert counts["places"] == sum(counts["places_by_kind"].values())
    city = session.get(Area, "4101")
    assert city is not None and city.name == "郑州市" and city.parent_code is None


def test_second_load_changes_nothing_and_writes_no_audit_row(session: Session) -> None:
    before = len(_geo_audit_rows(session))
    counts = load_hierarchy(session)
    assert counts.inserted == 0
    assert counts.updated == 0
    assert len(_geo_audit_rows(session)) == before
    assert (counts.districts, counts.streets, counts.communities, counts.compounds) == (
        15,
        208,
        3306,
        10806,
    )
    assert counts.places == session.scalar(select(func.count()).select_from(Place))


def test_load_into_empty_database_inserts_everything_once(fresh_database: Database) -> None:
    stages: list[tuple[str, int, int]] = []
    started = time.perf_counter()
    with fresh_database.unit_of_work() as session:
        first = load_hierarchy(
            session,
            actor=Actor("cli", "admin", "4101"),
            progress=lambda stage, done, total: stages.append((stage, done, total)),
        )
    elapsed = time.perf_counter() - started
    # Generous bound: the load takes about 2 s here; this catches an accidental N+1.
    assert elapsed < 30
    assert first.inserted == 1 + 15 + 208 + 3306 + first.compounds + first.places
    assert first.updated == 0
    assert {stage for stage, _, _ in stages} == {"areas", "compounds", "places"}
    assert ("places", first.places, first.places) in stages

    with fresh_database.unit_of_work() as session:
        audit = _geo_audit_rows(session)
        assert len(audit) == 1
        assert audit[0].actor == "cli"
        assert audit[0].detail["inserted"] == {
            "areas": 3530,
            "compounds": 10806,
            "places": first.places,
        }
        assert repository.counts(session) == {
            key: value
            for key, value in first.as_dict().items()
            if key not in ("inserted", "updated")
        }

    with fresh_database.unit_of_work() as session:
        second = load_hierarchy(session)
    assert (second.inserted, second.updated) == (0, 0)
    assert second.as_dict() | {"inserted": first.inserted} == first.as_dict()
    with fresh_database.unit_of_work() as session:
        assert len(_geo_audit_rows(session)) == 1
        assert verify_chain(session).ok


def test_load_updates_changed_rows_and_deletes_nothing(session: Session) -> None:
    code = "410102001002001"
    original = session.get(Compound, code)
    assert original is not None
    original_name = original.name
    session.execute(update(Compound).where(Compound.code == code).values(name="改过的名字"))
    session.execute(update(Area).where(Area.code == "410102").values(name_en="changed"))
    session.add(
        Compound(
            code="410102001002999",
            community_code="410102001002",
            name="额外小区",
            address="测试路1号",
            households_estimate=10,
            gate_count=1,
        )
    )
    session.flush()
    before = len(_geo_audit_rows(session))

    counts = load_hierarchy(session)

    assert (counts.inserted, counts.updated) == (0, 2)
    restored = session.get(Compound, code)
    assert restored is not None and restored.name == original_name
    district = session.get(Area, "410102")
    assert district is not None and district.name_en == "Zhongyuan"
    assert session.get(Compound, "410102001002999") is not None  # nothing deleted
    audit = _geo_audit_rows(session)
    assert len(audit) == before + 1
    assert audit[-1].detail["updated"] == {"areas": 1, "compounds": 1, "places": 0}
    assert audit[-1].detail["inserted"] == {"areas": 0, "compounds": 0, "places": 0}


def test_geo_counts_as_dict_is_json_ready() -> None:
    counts = GeoCounts(1, 2, 3, 4, 5, {"venue": 5}, inserted=6, updated=7)
    assert counts.as_dict() == {
        "districts": 1,
        "streets": 2,
        "communities": 3,
        "compounds": 4,
        "places": 5,
        "places_by_kind": {"venue": 5},
        "inserted": 6,
        "updated": 7,
    }

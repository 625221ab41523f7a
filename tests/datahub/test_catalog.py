"""The source catalogue: all 42 categories as data, governed, with the agency feeds' contracts."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from citybrain.datahub.catalog import (
    FREQUENCY_LABELS,
    KINDS,
    SENSITIVITY_LABELS,
    catalog,
    feeds,
    get_source,
    identify,
)
from citybrain.kit.errors import NotFound

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "source_catalog.csv"


def test_the_catalogue_has_the_42_categories_of_the_shared_list_in_its_order() -> None:
    codes = list(catalog())
    assert len(codes) == 42
    if SHARED.exists():
        with SHARED.open(encoding="utf-8") as handle:
            assert codes == [row["code"] for row in csv.DictReader(handle)]
    assert len(feeds()) == 30
    assert sum(1 for s in catalog().values() if s.origin == "platform_app") == 12


def test_every_category_is_governed_and_every_feed_has_a_contract() -> None:
    for source in catalog().values():
        assert source.sensitivity in SENSITIVITY_LABELS
        assert source.frequency in FREQUENCY_LABELS
        assert source.retention_days > 0
        assert source.kinds and set(source.kinds) <= set(KINDS)
        assert source.agency and source.name and source.name_en
        if source.is_feed:
            assert source.file is not None
            assert source.fields, source.code
            assert source.identity_any, source.code
            required = [f for f in source.fields if f.required]
            assert required, source.code


def test_a_file_is_identified_by_its_name_and_unknown_names_are_not() -> None:
    found = identify(Path("rail_ticket_20200121.csv"))
    assert found is not None and found[0].code == "rail_ticket" and found[1] == "20200121"
    late = identify(Path("telecom_cell_20200125_supplement.csv"))
    assert late is not None and late[0].code == "telecom_cell"
    assert identify(Path("rail_ticket_20200121.xlsx")) is None  # not the agreed format
    assert identify(Path("gate_scan_20200121.csv")) is None  # arrives from an app, not a file
    assert identify(Path("notes.txt")) is None


def test_an_unknown_category_is_a_clear_error() -> None:
    with pytest.raises(NotFound) as caught:
        get_source("weather")
    assert caught.value.code == "unknown_category"
    assert "weather" in caught.value.message("en")

"""The data centre's API fuzzed as its real users: an agency token pushing batches (random
bodies, keys, categories and days, and sometimes a real railway file) and a data-centre
officer reading the ledger and the quarantine. tests/web/test_api_fuzz.py covers the same
operations as a city commander, who is refused the push and the quarantine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from citybrain.datahub import lake
from tests.datahub.webkit import (
    agency_headers,
    app_fixture,  # noqa: F401 - fixture
    ingest,
    paths_fixture,  # noqa: F401 - fixture
    rail_file,
    user_headers,
)
from tests.factories import make_user
from tests.web.test_api_fuzz import CHECKS, FUZZ_SETTINGS

CATEGORIES = ["rail_ticket", "rail_gate", "flight_manifest", "case_confirmed"]


@dataclass
class DatahubApi:
    """The schema and the two principals' bearer headers."""

    schema: Any
    agency: dict[str, str]
    officer: dict[str, str]


@pytest.fixture
def api(app: FastAPI, session: Session, paths: lake.LakePaths) -> DatahubApi:
    agency = agency_headers(session)
    officer = user_headers(session, make_user(session, "data_officer", "4101").id)
    ingest(session, paths, rail_file(5), "rail_ticket_20200121.csv")
    session.commit()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    real = rail_file(3, seed=99).decode("gbk")

    @schema.hook
    def flatmap_query(ctx: Any, query: dict[str, Any] | None) -> Any:
        # Half the time a category that exists, so the intake itself gets fuzzed.
        if not ctx.operation.path.startswith("/api/v1/datahub"):
            return st.just(query)
        days = st.dates(dt.date(2020, 1, 1), dt.date(2020, 12, 31)).map(dt.date.isoformat)
        known = st.builds(
            lambda category, day: {**(query or {}), "category": category, "day": day},
            st.sampled_from(CATEGORIES),
            days,
        )
        return st.just(query) | known

    @schema.hook
    def flatmap_body(ctx: Any, body: Any) -> Any:
        if ctx.operation.path != "/api/v1/datahub/batches" or not isinstance(body, str):
            return st.just(body)
        return st.just(body) | st.just(real) | st.just(real + body)

    return DatahubApi(schema, agency, officer)


OPERATIONS = [
    ("POST", "/api/v1/datahub/batches", "agency"),
    ("GET", "/api/v1/datahub/status", "officer"),
    ("GET", "/api/v1/datahub/files", "officer"),
    ("GET", "/api/v1/datahub/quarantine", "officer"),
]


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_datahub_operation_survives_fuzzing(api: DatahubApi, op: tuple[str, str, str]) -> None:
    method, path, who = op
    operation = api.schema[path][method]
    headers = api.agency if who == "agency" else api.officer

    @FUZZ_SETTINGS
    @given(
        case=st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_pushing_needs_a_token(api: DatahubApi) -> None:
    @settings(FUZZ_SETTINGS, max_examples=5)
    @given(case=api.schema["/api/v1/datahub/batches"]["POST"].as_strategy())
    def run(case: Any) -> None:
        response = case.call()
        assert response.status_code in (401, 422), response.text

    run()


def test_any_pushed_batch_reconciles_or_is_refused_cleanly(app: FastAPI, session: Session) -> None:
    """Random batches of the railway's categories: never a server error, and every batch
    taken in reconciles exactly (received = accepted + quarantined + duplicate)."""
    from fastapi.testclient import TestClient

    headers = agency_headers(session)
    real = rail_file(4, seed=5)
    lines = real.split(b"\n")
    bodies = st.one_of(
        st.binary(min_size=1, max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("gbk", errors="ignore") or b"x"),
        st.lists(st.sampled_from(lines), min_size=1, max_size=12).map(b"\n".join),
        st.binary(max_size=80).map(lambda tail: real + tail),
    )
    seen: set[int] = set()
    with TestClient(app) as client:

        @settings(FUZZ_SETTINGS, max_examples=40)
        @given(
            body=bodies,
            category=st.sampled_from(["rail_ticket", "rail_gate"]),
            key=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8),
        )
        def run(body: bytes, category: str, key: str) -> None:
            response = client.post(
                "/api/v1/datahub/batches",
                params={"category": category, "day": "2020-01-21"},
                headers={**headers, "Idempotency-Key": key, "content-type": "text/csv"},
                content=body,
            )
            seen.add(response.status_code)
            assert response.status_code in (200, 201, 409, 422), response.text
            if response.status_code in (200, 201):
                out = response.json()
                assert out["received"] == out["accepted"] + out["quarantined"] + out["duplicate"]

        run()
    assert 201 in seen

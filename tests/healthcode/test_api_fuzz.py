"""The health-code API fuzzed as its real callers: a gate device scanning (random bodies, and
sometimes a real code, a tampered one or a place code), anyone reading the trust list or
scanning a place code, and a street officer printing place codes. Never a server error,
always a documented status in the API's one error shape (tests/web/test_api_fuzz.py's
checks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from citybrain.core.authz.models import User
from citybrain.core.authz.service import issue_token
from citybrain.healthcode.codes import issue_code, issue_place_code
from tests.factories import TEST_ACTOR
from tests.healthcode.conftest import Gate
from tests.web.test_api_fuzz import CHECKS, FUZZ_SETTINGS, documented_error_shape


@dataclass
class HealthcodeApi:
    schema: Any
    device: dict[str, str]
    officer: dict[str, str]


@pytest.fixture
def api(app: FastAPI, session: Session, gate: Gate) -> HealthcodeApi:
    officer = session.get(User, gate.officer.id)
    _, officer_token = issue_token(session, TEST_ACTOR, name="officer", user=officer)
    health = issue_code(session, gate.resident.ref, "green").text
    place = issue_place_code(session, gate.venue.code, "venue").text
    tampered = health[:-3] + ("A" if health[-3] != "A" else "B") + health[-2:]
    session.commit()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    codes = st.sampled_from([health, tampered, place, "CB1:" + health[4:40]])

    @schema.hook
    def flatmap_body(ctx: Any, body: Any) -> Any:
        if not isinstance(body, dict):
            return st.just(body)
        if ctx.operation.path == "/api/v1/scans":
            return st.just(body) | codes.map(lambda c: {**body, "code": c})
        if ctx.operation.path == "/api/v1/scans/place":
            real = st.just({"place": place, "code": health})
            return st.just(body) | real | codes.map(lambda c: {**body, "code": c})
        if ctx.operation.path == "/api/v1/scans/offline":
            item = {"client_id": "fuzz-1", "direction": "entry", "decision": "pass"}
            real = codes.map(
                lambda c: {"items": [{**item, "code": c, "scanned_at": "2026-01-01T00:00:00Z"}]}
            )
            return st.just(body) | real
        return st.just(body)

    @schema.hook
    def flatmap_path_parameters(ctx: Any, params: dict[str, Any] | None) -> Any:
        if params and "place_code" in params:
            real = st.sampled_from([gate.venue.code, gate.gate.code, "X" * 24])
            return st.just(params) | real.map(lambda c: {**params, "place_code": c})
        return st.just(params)

    return HealthcodeApi(
        schema,
        {"Authorization": f"Bearer {gate.gate_token}"},
        {"Authorization": f"Bearer {officer_token}"},
    )


OPERATIONS = [
    ("GET", "/api/v1/healthcode/trust-list", None),
    ("POST", "/api/v1/scans", "device"),
    ("POST", "/api/v1/scans/place", None),
    ("POST", "/api/v1/scans/offline", "device"),
    ("GET", "/api/v1/healthcode/place-codes/{place_code}", "officer"),
]


def test_every_healthcode_operation_is_fuzzed(api: HealthcodeApi) -> None:
    documented = {
        (r.ok().method.upper(), r.ok().path)
        for r in api.schema.get_all_operations()
        if "healthcode" in r.ok().path or r.ok().path.startswith("/api/v1/scans")
    }
    assert documented == {(m, p) for m, p, _ in OPERATIONS}


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_healthcode_operation_survives_fuzzing(
    api: HealthcodeApi, op: tuple[str, str, str | None]
) -> None:
    method, path, who = op
    operation = api.schema[path][method]
    headers = {"device": api.device, "officer": api.officer}.get(who or "")

    @FUZZ_SETTINGS
    @given(
        case=st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[*CHECKS, documented_error_shape])

    run()

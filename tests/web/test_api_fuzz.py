"""Property-based fuzzing of the JSON API against the app's own OpenAPI document.

schemathesis reads ``/openapi.json`` from the app in-process (no network) and generates valid
and invalid requests for every operation; each runs as a city commander (area 4101, so
scoping never hides data) inside the test's rolled-back transaction. Every answer must be no
5xx, have a documented status and content type, match the documented schema, and, when it
is an error, come in the API's one error shape (checked even where a status is undocumented).

Not fuzzed: ``/metrics`` is left out of the OpenAPI document (``include_in_schema=False``,
Prometheus text), so schemathesis never sees it; ``/readyz`` takes no input and answers 503
here by design, because the test database is built with ``create_all`` rather than migrated
and so has no Alembic revision.

schemathesis's own pytest loader (``schemathesis.pytest.from_fixture``) is not used: in
schemathesis 4.32 it writes ``Node._nodeid``, which pytest 9.2 no longer has. Each operation
is a parametrized test instead, drawing cases from ``operation.as_strategy()``.

Besides the fuzzing: the inputs that broke the API are pinned as regression tests, personal
data without a token must be refused, and the common error answers (401, 404, 422) must be
documented, in the shape the API sends, not FastAPI's default ``{"detail": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session

from citybrain.core.authz import repository
from citybrain.core.authz.service import issue_token
from citybrain.simulate.persons import SyntheticPerson
from tests.factories import (
    STREET_A,
    TEST_ACTOR,
    first_compound,
    make_person,
    make_user,
    next_synthetic,
)

EXAMPLES = 25  # generated cases per operation; the whole file stays well under a minute

Operation = tuple[str, str]
OPERATIONS: list[Operation] = [
    ("GET", "/healthz"),
    # Random credentials answer 401, or 429 once one username has failed too often; each
    # failure writes its counter and audit row, all inside the rolled-back transaction.
    ("POST", "/api/v1/auth/token"),
    ("GET", "/api/v1/areas/{code}"),
    ("GET", "/api/v1/areas/{code}/compounds"),
    ("GET", "/api/v1/geo/districts"),
    ("GET", "/api/v1/people"),
    ("POST", "/api/v1/people"),
    ("GET", "/api/v1/people/{ref}"),
    ("POST", "/api/v1/people/{ref}/unmask"),
    ("POST", "/api/v1/households"),
    # The commander may read the data centre's board but not push (agency tokens only) nor
    # read raw quarantined rows: those answer 403; tests/datahub fuzzes them as their users.
    ("POST", "/api/v1/datahub/batches"),
    ("GET", "/api/v1/datahub/status"),
    ("GET", "/api/v1/datahub/files"),
    ("GET", "/api/v1/datahub/quarantine"),
    ("GET", "/api/v1/analysis/timeline"),
    # The residents app's staff API, as the commander (whose area covers every compound).
    ("GET", "/api/v1/residents/compounds/{code}/passes"),
    ("GET", "/api/v1/residents/compounds/{code}/residents"),
    ("GET", "/api/v1/residents/compounds/{code}/reports"),
    # The cockpit's aggregate figures, as the commander (the whole city).
    ("GET", "/api/v1/cockpit/overview"),
    ("GET", "/api/v1/cockpit/map"),
    ("GET", "/api/v1/cockpit/alerts"),
    ("GET", "/api/v1/cockpit/freshness"),
    # The demo's clock: 404 with no demo playing (tests/web/test_demo.py plays one).
    ("GET", "/api/v1/demo/clock"),
    ("POST", "/api/v1/demo/clock"),
    ("POST", "/api/v1/residents/compounds/{code}/passes"),
    ("POST", "/api/v1/residents/passes/{pass_id}/revoke"),
    ("GET", "/api/v1/residents/compounds/{code}/cards"),
    ("POST", "/api/v1/residents/persons/{ref}/card"),
    ("GET", "/api/v1/residents/cards/{card_id}"),
    ("POST", "/api/v1/residents/cards/{card_id}/end"),
]
NOT_FUZZED: set[Operation] = {
    ("GET", "/readyz"),  # see the module docstring
    # An endless event stream: tests/apps/cockpit/test_stream.py reads it from a real server.
    ("GET", "/api/v1/cockpit/stream"),
}
PERSONAL_DATA = [op for op in OPERATIONS if op[1].startswith(("/api/v1/people", "/api/v1/house"))]
REAL_AREAS = ["4101", "410105", STREET_A]


def label(op: Operation) -> str:
    return f"{op[0]} {op[1]}"


@dataclass
class Api:
    """The app's schema, a commander's bearer header and real data to mix into requests."""

    schema: Any
    auth: dict[str, str]
    refs: list[str]
    newcomers: list[SyntheticPerson]

    def newcomer(self, **extra: Any) -> dict[str, Any]:
        """A registration of someone not yet registered in this test."""
        person = self.newcomers[0]
        return {"name": person.name, "id_number": person.id_number, **extra}


@pytest.fixture
def api(app: FastAPI, session: Session) -> Api:
    commander = make_user(session, "city_commander", "4101")
    user = repository.user_by_id(session, commander.id)
    assert user is not None
    _, secret = issue_token(session, TEST_ACTOR, name="fuzz", user=user)
    refs = [make_person(session, commander, STREET_A)[0].ref for _ in range(3)]
    compound = first_compound(session, STREET_A)
    newcomers = [next_synthetic() for _ in range(5)]
    session.commit()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @schema.hook
    def flatmap_path_parameters(ctx: Any, params: dict[str, Any] | None) -> Any:
        # Half the time a person or an area that exists, so 2xx answers get checked too.
        if params and "ref" in params:
            return st.just(params) | st.sampled_from(refs).map(lambda r: {**params, "ref": r})
        if params and "code" in params:
            real = st.sampled_from(REAL_AREAS)
            return st.just(params) | real.map(lambda c: {**params, "code": c})
        return st.just(params)

    @schema.hook
    def flatmap_body(ctx: Any, body: Any) -> Any:
        # Generated ID numbers never pass the checksum: sometimes register a real newcomer,
        # keeping the generated household id so its lookup is fuzzed too.
        if not isinstance(body, dict):
            return st.just(body)
        if ctx.operation.path == "/api/v1/people":
            real = st.sampled_from(newcomers).map(
                lambda p: {
                    **body,
                    "name": p.name,
                    "id_number": p.id_number,
                    "phone": p.phone,
                    "compound_code": compound,
                }
            )
            return st.just(body) | real
        if ctx.operation.path == "/api/v1/households":
            return st.just(body) | st.just({**body, "compound_code": compound})
        return st.just(body)

    return Api(schema, {"Authorization": f"Bearer {secret}"}, refs, newcomers)


# Requests that got a 5xx or an error outside the API's shape: found by the fuzzer (huge
# offsets, undecodable JSON bodies) or next to what it found, in the same input classes
# (NUL characters, which PostgreSQL refuses in text; ids beyond the integer columns). Each
# is its own test so every backend meets every one on every run, not only when the dice say
# so; once fixed they stay as regression cases.
NUL = "\x00"
NOT_UTF8 = {"body": b"\xfb", "media_type": "application/json"}
REGRESSIONS: dict[str, tuple[Operation, Callable[[Api], dict[str, Any]]]] = {
    "people search offset past int64": (
        ("GET", "/api/v1/people"),
        lambda api: {"query": {"offset": 2**63}},
    ),
    "compounds offset past int64": (
        ("GET", "/api/v1/areas/{code}/compounds"),
        lambda api: {"path_parameters": {"code": "4101"}, "query": {"offset": 2**63}},
    ),
    "register household_id past int32": (
        ("POST", "/api/v1/people"),
        lambda api: {"body": api.newcomer(household_id=2**31)},
    ),
    "register household_id past int64": (
        ("POST", "/api/v1/people"),
        lambda api: {"body": api.newcomer(household_id=2**63)},
    ),
    "register NUL in compound_code": (
        ("POST", "/api/v1/people"),
        lambda api: {"body": api.newcomer(compound_code=f"41010500{NUL}")},
    ),
    "view NUL in ref": (
        ("GET", "/api/v1/people/{ref}"),
        lambda api: {"path_parameters": {"ref": f"a{NUL}b"}},
    ),
    "unmask NUL in purpose": (
        ("POST", "/api/v1/people/{ref}/unmask"),
        lambda api: {
            "path_parameters": {"ref": api.refs[0]},
            "body": {"purpose": f"核查{NUL}密接"},
        },
    ),
    "household NUL in compound_code": (
        ("POST", "/api/v1/households"),
        lambda api: {"body": {"compound_code": f"41010500100{NUL}001"}},
    ),
    "token NUL in username": (
        ("POST", "/api/v1/auth/token"),
        lambda api: {"body": {"username": f"a{NUL}b", "password": "x"}},
    ),
    "token body not UTF-8": (("POST", "/api/v1/auth/token"), lambda api: NOT_UTF8),
    "register body not UTF-8": (("POST", "/api/v1/people"), lambda api: NOT_UTF8),
    "unmask body not UTF-8": (
        ("POST", "/api/v1/people/{ref}/unmask"),
        lambda api: {"path_parameters": {"ref": api.refs[0]}, **NOT_UTF8},
    ),
    "household body not UTF-8": (("POST", "/api/v1/households"), lambda api: NOT_UTF8),
}


def error_shape(ctx: Any, response: Any, case: Any) -> None:
    """Every error answers ``{"error": {"code", "message", ...}}``, as the API promises."""
    if response.status_code < 400:
        return
    body = response.json()
    text = response.text[:200]
    assert isinstance(body, dict), f"error body is not an object: {text}"
    error = body.get("error")
    assert isinstance(error, dict), f"error body without 'error': {text}"
    assert isinstance(error.get("code"), str), f"error without a code: {text}"
    assert isinstance(error.get("message"), str), f"error without a message: {text}"


def documented_error_shape(ctx: Any, response: Any, case: Any) -> None:
    """The document describes an error's status with the shape the API really answers."""
    if response.status_code < 400:
        return
    raw = case.operation.schema.raw_schema
    responses = raw["paths"][case.operation.path][case.method.lower()]["responses"]
    documented = responses.get(str(response.status_code))
    assert documented is not None, f"status {response.status_code} is not documented"
    schema = documented["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert "error" in schema.get("properties", {}), (
        f"status {response.status_code} is documented as {sorted(schema.get('properties', {}))}"
        f", not as {{'error': ...}}"
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The app and its transaction are built once per test, on purpose, and serve every
    # example; patterned path parameters make schemathesis filter many drawn values.
    suppress_health_check=list(HealthCheck),
    database=None,
)


def test_every_documented_operation_is_fuzzed(api: Api) -> None:
    documented = {
        (result.ok().method.upper(), result.ok().path) for result in api.schema.get_all_operations()
    }
    # Fuzzed by their packages' own tests, as the users and devices that call them (imported
    # here, not at the top: those modules import this one's checks).
    from tests.healthcode.test_api_fuzz import OPERATIONS as HEALTHCODE
    from tests.risk.test_api_fuzz import OPERATIONS as RISK

    elsewhere = set(RISK) | {(method, path) for method, path, _ in HEALTHCODE}
    assert documented == set(OPERATIONS) | NOT_FUZZED | elsewhere


@pytest.mark.parametrize("op", OPERATIONS, ids=label)
def test_operation_survives_fuzzing(api: Api, op: Operation) -> None:
    method, path = op
    operation = api.schema[path][method]

    @FUZZ_SETTINGS
    @given(
        case=st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=api.auth, checks=CHECKS)

    run()


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression(api: Api, name: str) -> None:
    (method, path), build = REGRESSIONS[name]
    case = api.schema[path][method].Case(**build(api))
    case.call_and_validate(headers=api.auth, checks=CHECKS)


@pytest.mark.parametrize("op", PERSONAL_DATA, ids=label)
def test_personal_data_needs_a_token(api: Api, op: Operation) -> None:
    method, path = op

    @settings(FUZZ_SETTINGS, max_examples=5)
    @given(case=api.schema[path][method].as_strategy())
    def run(case: Any) -> None:
        response = case.call()  # no Authorization header
        # 401; a fix that refuses some input (NUL, say) before authenticating may say 422.
        assert response.status_code in (401, 422), response.text
        error_shape(None, response, case)

    run()


ERROR_PROBES: dict[str, Callable[[Api], Any]] = {
    "401 without a token": lambda api: api.schema["/api/v1/people"]["GET"].Case(),
    "401 wrong password": lambda api: api.schema["/api/v1/auth/token"]["POST"].Case(
        body={"username": "nobody", "password": "wrong-password"}
    ),
    "404 no such person": lambda api: api.schema["/api/v1/people/{ref}"]["GET"].Case(
        path_parameters={"ref": "0" * 32}
    ),
    "404 no such area": lambda api: api.schema["/api/v1/areas/{code}"]["GET"].Case(
        path_parameters={"code": "9999"}
    ),
    "422 invalid query": lambda api: api.schema["/api/v1/people"]["GET"].Case(query={"limit": 0}),
}


@pytest.mark.parametrize("probe", list(ERROR_PROBES))
def test_error_answers_are_documented(api: Api, probe: str) -> None:
    case = ERROR_PROBES[probe](api)
    headers = None if probe == "401 without a token" else api.auth
    case.call_and_validate(headers=headers, checks=[*CHECKS, documented_error_shape])

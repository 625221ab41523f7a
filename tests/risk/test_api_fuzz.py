"""The risk API fuzzed from its own OpenAPI document as a city commander (who may do
everything there, so the operations themselves run): no 5xx, documented statuses and shapes,
errors in the API's one shape. tests/web/test_api_fuzz.py holds the machinery."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.factories import STREET_A, make_user
from tests.risk.conftest import resident
from tests.risk.test_rulesets import SECONDARY_RED
from tests.risk.test_web import bearer
from tests.web.test_api_fuzz import CHECKS, FUZZ_SETTINGS

from citybrain.kit import clock
from citybrain.risk import batches, service

OPERATIONS = [
    ("GET", "/api/v1/risk/persons/{ref}"),
    ("GET", "/api/v1/risk/subjects/{subject}"),
    ("POST", "/api/v1/risk/facts"),
    ("POST", "/api/v1/risk/facts/{fact_id}/retract"),
    ("POST", "/api/v1/risk/facts/{fact_id}/retraction-request/decline"),
    ("GET", "/api/v1/risk/retraction-requests"),
    ("POST", "/api/v1/risk/batches"),
    ("GET", "/api/v1/risk/batches"),
    ("POST", "/api/v1/risk/batches/{batch_id}/approve"),
    ("POST", "/api/v1/risk/batches/{batch_id}/reject"),
    ("GET", "/api/v1/risk/compounds/{code}"),
    ("GET", "/api/v1/risk/rule-sets"),
    ("GET", "/api/v1/risk/rule-sets/{version}"),
    ("POST", "/api/v1/risk/rule-sets"),
    ("POST", "/api/v1/risk/rule-sets/{version}/approve"),
    ("POST", "/api/v1/risk/rule-sets/{version}/reject"),
    ("GET", "/api/v1/risk/overrides"),
    ("POST", "/api/v1/risk/overrides"),
    ("POST", "/api/v1/risk/overrides/{override_id}/{decision}"),
    ("GET", "/api/v1/risk/people"),
    ("GET", "/api/v1/risk/turns"),
    ("GET", "/api/v1/risk/appeals"),
    ("GET", "/api/v1/risk/appeals/summary"),
    ("POST", "/api/v1/risk/appeals/{appeal_id}/decide"),
]


@pytest.fixture
def api(app: FastAPI, session: Session) -> tuple[Any, dict[str, str]]:
    commander = make_user(session, "city_commander", "4101")
    officer = make_user(session, "street_officer", STREET_A)
    person = resident(session, officer)
    fact = service.assert_fact(
        session,
        officer.actor,
        subject=person.subject,
        kind="close_contact",
        source="staff",
        evidence={},
        valid_from=clock.now(),
    )
    appeal = service.file_appeal(
        session, officer.actor, subject=person.subject, text="申诉内容测试", street_code=STREET_A
    )
    override = service.request_override(
        session,
        officer,
        subject=person.subject,
        colour="green",
        legal_basis="测试依据条款",
        reason="测试理由说明",
        hours=2,
    )
    batch = batches.request_batch(
        session,
        officer,
        kind="close_contact",
        note="协查函 测试",
        days=14,
        rows=batches.rows_of([(person.id_number, "")]),
    )
    session.commit()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    real = {
        "ref": person.ref,
        "subject": person.subject,
        "fact_id": fact.id,
        "appeal_id": appeal.id,
        "override_id": override.id,
        "batch_id": batch.id,
        "version": 1,
        "code": person.area_code,
    }

    @schema.hook
    def flatmap_path_parameters(ctx: Any, params: dict[str, Any] | None) -> Any:
        # Half the time objects that exist, so the operations run, not only their refusals.
        if not params:
            return st.just(params)
        known = {k: real[k] for k in params if k in real}
        return st.just(params) | st.just({**params, **known})

    @schema.hook
    def flatmap_body(ctx: Any, body: Any) -> Any:
        if ctx.operation.path == "/api/v1/risk/rule-sets" and isinstance(body, dict):
            return st.just(body) | st.just({**body, "yaml_text": SECONDARY_RED})
        if ctx.operation.path in ("/api/v1/risk/facts", "/api/v1/risk/overrides") and isinstance(
            body, dict
        ):
            return st.just(body) | st.just({**body, "person_ref": person.ref, "subject": None})
        if ctx.operation.path == "/api/v1/risk/batches" and isinstance(body, dict):
            return st.just(body) | st.just({**body, "rows": [{"id_number": person.id_number}]})
        return st.just(body)

    return schema, bearer(session, commander.id)


def test_every_risk_operation_is_fuzzed(api: tuple[Any, dict[str, str]]) -> None:
    schema, _ = api
    documented = {
        (r.ok().method.upper(), r.ok().path)
        for r in schema.get_all_operations()
        if r.ok().path.startswith("/api/v1/risk")
    }
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_risk_operation_survives_fuzzing(
    api: tuple[Any, dict[str, str]], op: tuple[str, str]
) -> None:
    schema, auth = api
    operation = schema[op[1]][op[0]]

    @FUZZ_SETTINGS
    @given(
        case=st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    run()

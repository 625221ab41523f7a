"""The gate staff's scan page: a form, a big PASS or DENY with the reason in Chinese."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.healthcode.codes import issue_code
from citybrain.healthcode.models import Scan
from tests.factories import make_user
from tests.healthcode.conftest import Gate, make_red
from tests.web.conftest import log_in

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _form_token(page: str) -> str:
    match = CSRF.search(page)
    assert match
    return match.group(1)


def test_gate_staff_check_codes_on_the_page(
    client: TestClient, session: Session, gate: Gate
) -> None:
    staff = make_user(session, "checkpoint_staff", gate.gate.area_code, "gatekeeper")
    log_in(client, staff.name)
    page = client.get("/healthcode/gate")
    assert page.status_code == 200
    assert "门岗扫码" in page.text and gate.gate.code in page.text
    token = _form_token(page.text)

    green = issue_code(session, gate.resident.ref, "green").text
    passed = client.post(
        "/healthcode/gate",
        data={
            "csrf_token": token,
            "place_code": gate.gate.code,
            "direction": "entry",
            "code": green,
        },
    )
    assert passed.status_code == 200
    assert 'data-verdict="pass"' in passed.text and "绿码，请通行" in passed.text
    assert session.scalar(select(Scan).where(Scan.person_ref == gate.resident.ref)) is not None

    make_red(session, gate.resident, gate.compound)
    denied = client.post(
        "/healthcode/gate",
        data={
            "csrf_token": token,
            "place_code": gate.gate.code,
            "direction": "exit",
            "code": green,
        },
    )
    assert 'data-verdict="deny"' in denied.text
    assert "小区封闭管理（红色），禁止外出" in denied.text

    refused = client.post(
        "/healthcode/gate",
        data={
            "csrf_token": token,
            "place_code": gate.gate.code,
            "direction": "entry",
            "code": "CB1:XYZ",
        },
    )
    assert refused.status_code == 422
    assert 'data-verdict="deny"' in refused.text and "码无效" in refused.text

    # Without the form token the post is refused.
    forged = client.post(
        "/healthcode/gate",
        data={"place_code": gate.gate.code, "direction": "entry", "code": green},
    )
    assert forged.status_code == 403


def test_the_page_needs_the_scanning_permission(
    client: TestClient, session: Session, gate: Gate
) -> None:
    assert client.get("/healthcode/gate", follow_redirects=False).status_code == 303
    log_in(client, gate.officer.name)
    assert client.get("/healthcode/gate").status_code == 403

"""The auditors' trail (/audit): narrowed by account, object and days as well as action and
outcome, actors shown by name, the export filtered the same way."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from citybrain.kit import clock
from citybrain.risk import service as risk
from tests.factories import STREET_A, make_user
from tests.risk.conftest import resident
from tests.web.conftest import log_in


def _rows(text: str) -> int:
    return text.count('data-testid="audit-row"')


def test_an_auditor_finds_everything_one_account_did_to_one_object_on_given_days(
    client: TestClient, session: Session
) -> None:
    officer = make_user(session, "street_officer", STREET_A, "suspectwu")
    other = make_user(session, "street_officer", STREET_A, "bystanderqian")
    make_user(session, "auditor", "4101", "auditorsun")
    person = resident(session, other)
    facts = [
        risk.assert_fact(
            session,
            officer.actor,
            subject=person.subject,
            kind="risk_area_travel",
            source="staff",
            evidence={"note": str(n)},
            valid_from=clock.now(),
        )
        for n in range(3)
    ]
    risk.retract_fact(session, other.actor, facts[0].id, reason="核实后撤销")
    session.commit()
    log_in(client, "auditorsun")

    mine = client.get("/audit", params={"actor": "suspectwu", "action": "risk."})
    assert mine.status_code == 200 and _rows(mine.text) == 3
    assert "（suspectwu）" in mine.text and "bystanderqian" not in mine.text
    # The same by reference; and the export narrows alike, naming the actor.
    assert _rows(client.get("/audit", params={"actor": officer.actor.ref}).text) == 3
    export = client.get("/audit/export.csv", params={"actor": "suspectwu", "action": "risk."})
    lines = export.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("seq,at,actor,actor_name") and len(lines) == 4
    assert all("（suspectwu）" in line and ",risk.fact.assert," in line for line in lines[1:])

    # One fact's whole story: recorded by one account, withdrawn by another.
    story = client.get("/audit", params={"object": str(facts[0].id), "action": "risk.fact"})
    assert _rows(story.text) == 2
    assert "（suspectwu）" in story.text and "（bystanderqian）" in story.text
    # Rows link to the same filter for their actor and object.
    assert re.search(r'href="/audit\?[^"]*actor=user%3A\d+', story.text)

    today = clock.today_local()
    on_the_day = {"actor": "suspectwu", "from": today.isoformat(), "to": today.isoformat()}
    assert _rows(client.get("/audit", params=on_the_day).text) == 3
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    assert _rows(client.get("/audit", params=on_the_day | {"from": tomorrow}).text) == 0

    unknown = client.get("/audit", params={"actor": "nobodyhere"})
    assert (
        unknown.status_code == 422 and "未找到该账号" in unknown.text and _rows(unknown.text) == 0
    )
    bad_day = client.get("/audit", params={"from": "25/11/2026"})
    assert bad_day.status_code == 422 and "日期格式" in bad_day.text
    assert client.get("/audit/export.csv", params={"actor": "nobodyhere"}).status_code == 422

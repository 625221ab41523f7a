"""Staff withdraw a registration that should not stand (撤销登记): in their jurisdiction only,
with a reason kept in the audit log, never for a code that is not green; the holder of the ID
can then register."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.apps.residents.models import ResidentAccount
from citybrain.core.audit.models import AuditEntry
from citybrain.core.audit.service import Actor
from citybrain.core.people.models import Household
from citybrain.kit import clock
from citybrain.risk import service as risk
from citybrain.risk.subjects import subject_of
from tests.apps.residents.conftest import OTHER_COMMUNITY, csrf, person_by_id, registered
from tests.factories import (
    STREET_A,
    first_compound,
    make_user,
    next_synthetic_child,
)
from tests.web.conftest import log_in

REASON = "本人持身份证到社区核实，该号码被他人冒用登记"


def _withdraw(client: TestClient, ref: str, compound: str, reason: str = REASON) -> Any:
    page = f"/residents/staff/compounds/{compound}?tab=residents&withdraw={ref}"
    data = {"csrf_token": csrf(client, page), "compound": compound, "reason": reason}
    return client.post(
        f"/residents/staff/persons/{ref}/withdraw", data=data, follow_redirects=False
    )


def test_a_grid_worker_withdraws_a_registration_and_its_holder_registers(
    resident: TestClient, staff: TestClient, app: Any, session: Session, compound: str
) -> None:
    holder = next_synthetic_child()
    registered(resident, compound, members=[holder])
    entered = person_by_id(session, holder.id_number)
    assert entered is not None
    worker = make_user(session, "grid_worker", compound[:12])
    log_in(staff, worker.name)
    listed = staff.get(f"/residents/staff/compounds/{compound}?tab=residents").text
    assert f"withdraw={entered.ref}" in listed and 'data-testid="withdraw-link"' in listed
    asked = html.unescape(
        staff.get(
            f"/residents/staff/compounds/{compound}?tab=residents&withdraw={entered.ref}"
        ).text
    )
    assert 'data-testid="confirm-withdraw"' in asked and holder.id_number not in asked
    # The reason is required.
    bare = _withdraw(staff, entered.ref, compound, reason=" ")
    assert bare.status_code == 422 and 'data-testid="error-reason"' in bare.text
    done = _withdraw(staff, entered.ref, compound)
    assert done.status_code == 303
    assert done.headers["location"].endswith("tab=residents&withdrawn=1")
    session.expire_all()
    assert person_by_id(session, holder.id_number) is None
    audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "person.withdraw")).one()
    assert audit.actor == worker.actor.ref and audit.detail["reason"] == REASON
    with TestClient(app, base_url="http://testserver") as own_phone:
        registered(own_phone, compound, holder)


def test_a_registrant_withdrawn_loses_their_account(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = person_by_id(session, person.id_number)
    assert me is not None and session.get(ResidentAccount, me.ref) is not None
    household_id = me.household_id
    log_in(staff, make_user(session, "street_officer", STREET_A).name)
    assert _withdraw(staff, me.ref, compound).status_code == 303
    session.expire_all()
    assert session.get(ResidentAccount, me.ref) is None
    # Nobody lives in the household any more: it keeps no flat.
    emptied = session.get(Household, household_id)
    assert emptied is not None and emptied.unit_enc is None
    # Their cookie now finds nobody: the login page, not the code page.
    code_page = resident.get("/residents/code", follow_redirects=False)
    assert code_page.status_code in (302, 303)


def test_not_outside_the_jurisdiction_nor_for_a_code_that_is_not_green(
    resident: TestClient, staff: TestClient, session: Session, compound: str
) -> None:
    person = registered(resident, compound)
    me = person_by_id(session, person.id_number)
    assert me is not None
    elsewhere = make_user(session, "grid_worker", OTHER_COMMUNITY)
    log_in(staff, elsewhere.name)
    far = first_compound(session, OTHER_COMMUNITY)
    assert _withdraw(staff, me.ref, far).status_code == 404
    log_in(staff, make_user(session, "grid_worker", compound[:12]).name)
    risk.assert_fact(
        session,
        Actor("system:analysis", "system", None),
        subject=subject_of(me),
        kind="close_contact",
        source="analysis.contacts",
        evidence={"record_ids": [5]},
        valid_from=clock.now() - dt.timedelta(days=1),
    )
    refused = _withdraw(staff, me.ref, compound)
    assert refused.status_code == 409 and "不是绿码" in html.unescape(refused.text)
    session.expire_all()
    assert person_by_id(session, person.id_number) is not None

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.events.models import OutboxEvent
from citybrain.core.people.models import Person
from citybrain.core.people.schemas import PersonIn
from citybrain.core.people.service import (
    register_person,
    search_people,
    unmask_person,
    view_person,
)
from citybrain.kit.db import Database, transaction
from citybrain.kit.errors import InvalidInput, NotFound, PermissionDenied
from tests.factories import (
    OTHER_DISTRICT_STREET,
    STREET_A,
    STREET_B,
    first_compound,
    make_person,
    make_user,
    next_synthetic,
)


def _audit(session: Session, action: str) -> AuditEntry:
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq.desc())
    ).first()
    assert entry is not None
    return entry


def test_register_derives_birth_and_sex_masks_and_publishes(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    person, synthetic = make_person(session, officer)
    assert person.id_number == synthetic.id_number[:4] + "*" * 10 + synthetic.id_number[-4:]
    assert person.phone == synthetic.phone[:3] + "****" + synthetic.phone[-4:]
    assert person.sex == synthetic.sex
    assert person.birth_year == synthetic.birth_date.year
    assert person.compound_name
    event = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.topic == "person.registered")
        .order_by(OutboxEvent.id.desc())
    ).first()
    assert event is not None and event.payload["person_ref"] == person.ref
    assert synthetic.id_number not in str(event.payload)


def test_same_id_number_finds_the_existing_person(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    person, synthetic = make_person(session, officer)
    again, created = register_person(
        session,
        officer,
        PersonIn(
            name=synthetic.name,
            id_number=synthetic.id_number.lower(),
            compound_code=first_compound(session, STREET_A),
        ),
    )
    assert not created and again.ref == person.ref
    assert session.query(Person).filter(Person.ref == person.ref).count() == 1


def test_bad_id_is_refused_naming_the_checksum_and_nothing_is_written(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    synthetic = next_synthetic()
    bad = synthetic.id_number[:17] + ("0" if synthetic.id_number[17] != "0" else "1")
    before = session.query(Person).count()
    with pytest.raises(InvalidInput) as caught:
        register_person(
            session,
            officer,
            PersonIn(
                name=synthetic.name, id_number=bad, compound_code=first_compound(session, STREET_A)
            ),
        )
    assert caught.value.code == "id_checksum" and caught.value.field == "id_number"
    assert session.query(Person).count() == before


def test_cannot_register_outside_jurisdiction(session: Session) -> None:
    officer = make_user(session, "street_officer", STREET_A)
    synthetic = next_synthetic()
    with pytest.raises(InvalidInput) as caught:
        register_person(
            session,
            officer,
            PersonIn(
                name=synthetic.name,
                id_number=synthetic.id_number,
                compound_code=first_compound(session, STREET_B),
            ),
        )
    assert caught.value.field == "compound_code"


def test_street_officer_cannot_see_another_street_and_the_denial_is_audited(
    session: Session,
) -> None:
    district = make_user(session, "district_officer", "410105")
    other = make_user(session, "street_officer", STREET_B)
    person, _ = make_person(session, district, STREET_A)
    session.commit()
    with pytest.raises(NotFound), transaction(session):
        view_person(session, other, person.ref)
    denial = _audit(session, "person.view")
    assert denial.outcome == "denied" and denial.object_id == person.ref
    assert denial.actor == f"user:{other.id}"
    # A person that does not exist at all gets the same answer, logged as a miss.
    with pytest.raises(NotFound), transaction(session):
        view_person(session, other, "0" * 32)
    assert _audit(session, "person.view").outcome == "failed"
    # The district officer above both streets sees the person.
    assert view_person(session, district, person.ref).ref == person.ref


def test_search_is_scoped_and_masked(session: Session) -> None:
    district = make_user(session, "district_officer", "410105")
    in_a, synthetic_a = make_person(session, district, STREET_A)
    in_b, _ = make_person(session, district, STREET_B)
    street_a = make_user(session, "street_officer", STREET_A)
    found = search_people(session, street_a, id_number=synthetic_a.id_number)
    assert [p.ref for p in found.items] == [in_a.ref]
    assert found.items[0].id_number != synthetic_a.id_number
    refs = {p.ref for p in search_people(session, street_a, limit=500).items}
    assert in_a.ref in refs and in_b.ref not in refs
    other_district = make_user(session, "street_officer", OTHER_DISTRICT_STREET)
    assert search_people(session, other_district, phone=synthetic_a.phone).total == 0
    entry = _audit(session, "person.search")
    assert synthetic_a.phone not in str(entry.detail)


def test_unmask_needs_a_purpose_and_writes_it_to_the_audit_log(session: Session) -> None:
    grid = make_user(session, "grid_worker", STREET_A + "003")
    person, synthetic = make_person(session, grid)
    with pytest.raises(InvalidInput) as caught:
        unmask_person(session, grid, person.ref, "  ")
    assert caught.value.field == "purpose"
    plain = unmask_person(session, grid, person.ref, "流调核实联系方式")
    assert plain.id_number == synthetic.id_number and plain.phone == synthetic.phone
    assert plain.name == synthetic.name
    entry = _audit(session, "person.unmask")
    assert entry.purpose == "流调核实联系方式" and entry.object_id == person.ref


def test_roles_without_unmask_cannot_unmask(session: Session) -> None:
    clinic = make_user(session, "clinic_staff", "410105")
    person, _ = make_person(session, clinic, STREET_A)
    with pytest.raises(PermissionDenied):
        unmask_person(session, clinic, person.ref, "想看看明文")


def test_plain_id_and_phone_never_reach_the_sqlite_file(
    fresh_database: Database, tmp_path: Path
) -> None:
    if fresh_database.dialect != "sqlite":
        pytest.skip("searches the bytes of the SQLite file")
    from citybrain.core.geo.service import load_hierarchy

    with fresh_database.unit_of_work() as session:
        load_hierarchy(session)
    with fresh_database.unit_of_work() as session:
        officer = make_user(session, "street_officer", STREET_A)
        registered = [make_person(session, officer)[1] for _ in range(5)]
    with fresh_database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    fresh_database.dispose()
    path = Path(str(fresh_database.engine.url.database))
    blobs = path.read_bytes() + b"".join(
        p.read_bytes() for p in path.parent.glob(path.name + "-*") if p.is_file()
    )
    assert len(blobs) > 100_000
    for synthetic in registered:
        for value in (synthetic.id_number, synthetic.phone, synthetic.name):
            assert value.encode("utf-8") not in blobs
            assert value.encode("utf-16-le") not in blobs


def test_household_members_live_where_the_household_lives(session: Session) -> None:
    from citybrain.core.people.models import Household
    from citybrain.core.people.schemas import HouseholdIn
    from citybrain.core.people.service import create_household

    grid = make_user(session, "grid_worker", STREET_A + "003")
    compound = first_compound(session, grid.area_code)
    household = create_household(
        session, grid, HouseholdIn(compound_code=compound, unit="3号楼2单元501")
    )
    stored = session.get(Household, household.id)
    assert stored is not None and stored.unit_enc is not None
    assert b"501" not in stored.unit_enc
    members = []
    for _ in range(3):
        synthetic = next_synthetic()
        person, created = register_person(
            session,
            grid,
            PersonIn(name=synthetic.name, id_number=synthetic.id_number, household_id=household.id),
        )
        assert created
        members.append(person)
    assert {m.compound_code for m in members} == {compound}
    assert {m.household_id for m in members} == {household.id}
    # Outside the jurisdiction neither the household nor its compound may be used.
    other = make_user(session, "grid_worker", STREET_B + "001")
    stranger = next_synthetic()
    with pytest.raises(InvalidInput) as caught:
        register_person(
            session,
            other,
            PersonIn(name=stranger.name, id_number=stranger.id_number, household_id=household.id),
        )
    assert caught.value.field == "household_id"
    with pytest.raises(InvalidInput):
        create_household(session, other, HouseholdIn(compound_code=compound))

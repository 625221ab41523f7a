"""Foundation benchmark: hierarchy load, person registration, scoped lookup, login, audit
verification. Prints one JSON line of figures.

    .venv/bin/python bench/bench_foundation.py [--persons 2000] [--database-url URL]

Without --database-url it uses a fresh SQLite file in a temporary data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from benchdb import empty_database

    database = empty_database(args.database_url, prefix="citybrain-bench-")
    from sqlalchemy import select

    from citybrain.core.audit.service import SYSTEM, verify_chain
    from citybrain.core.authz.service import authenticate, create_user, principal_for
    from citybrain.core.geo.models import Compound
    from citybrain.core.geo.service import load_hierarchy
    from citybrain.core.people.schemas import PersonIn
    from citybrain.core.people.service import register_person, search_people
    from citybrain.kit.db import set_database
    from citybrain.simulate.persons import generate_persons

    set_database(database)

    started = time.perf_counter()
    with database.unit_of_work() as session:
        load_hierarchy(session)
    geo_seconds = time.perf_counter() - started

    with database.unit_of_work() as session:
        user = create_user(
            session,
            SYSTEM,
            username="bench",
            password="bench-password-1",
            role="district_officer",
            area_code="410105",
        )
        officer = principal_for(user)
        compounds = list(
            session.scalars(
                select(Compound.code)
                .where(Compound.code.startswith("410105"))
                .order_by(Compound.code)
            )
        )
    people = list(generate_persons(args.persons, seed=99))
    started = time.perf_counter()
    for start in range(0, len(people), 100):
        with database.unit_of_work() as session:
            for i, person in enumerate(people[start : start + 100], start=start):
                register_person(
                    session,
                    officer,
                    PersonIn(
                        name=person.name,
                        id_number=person.id_number,
                        phone=person.phone,
                        compound_code=compounds[i % len(compounds)],
                    ),
                )
    register_seconds = time.perf_counter() - started

    lookups = []
    with database.unit_of_work() as session:
        for person in people[:200]:
            t0 = time.perf_counter()
            found = search_people(session, officer, id_number=person.id_number)
            lookups.append(time.perf_counter() - t0)
            assert found.total == 1

    logins = []
    for _ in range(5):
        with database.unit_of_work() as session:
            t0 = time.perf_counter()
            authenticate(session, "bench", "bench-password-1", "127.0.0.1")
            logins.append(time.perf_counter() - t0)

    with database.unit_of_work() as session:
        t0 = time.perf_counter()
        report = verify_chain(session)
        verify_seconds = time.perf_counter() - t0
    assert report.ok

    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(
        json.dumps(
            {
                "bench": "foundation",
                "backend": database.dialect,
                "machine": machine,
                "geo_load_seconds": round(geo_seconds, 2),
                "persons": args.persons,
                "register_persons_per_second": round(args.persons / register_seconds, 1),
                "lookup_by_id_ms_median": round(statistics.median(lookups) * 1000, 2),
                "lookup_by_id_ms_p95": round(sorted(lookups)[int(len(lookups) * 0.95)] * 1000, 2),
                "login_ms_median": round(statistics.median(logins) * 1000, 1),
                "audit_rows": report.rows,
                "audit_verify_rows_per_second": round(report.rows / verify_seconds),
            }
        )
    )
    database.dispose()


if __name__ == "__main__":
    main()

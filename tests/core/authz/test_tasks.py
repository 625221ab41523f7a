import datetime as dt

from sqlalchemy import func, select

from citybrain.core.authz.models import LoginFailure
from citybrain.core.authz.tasks import purge_expired_failures, purge_login_failures
from citybrain.core.jobs.worker import TASK_MODULES, import_task_modules
from citybrain.kit import clock
from citybrain.kit.db import Database, use_database


def test_old_login_failures_are_purged_by_the_scheduled_job(fresh_database: Database) -> None:
    now = clock.now()
    with fresh_database.unit_of_work() as session:
        session.add_all(
            [
                LoginFailure(username="old", client_ip="1.1.1.1", at=now - dt.timedelta(hours=2)),
                LoginFailure(username="new", client_ip="1.1.1.1", at=now - dt.timedelta(minutes=1)),
            ]
        )
    with use_database(fresh_database):
        assert purge_expired_failures() == 1
    with fresh_database.unit_of_work() as session:
        left = session.scalars(select(LoginFailure.username)).all()
        assert left == ["new"]
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1
    # The schedule is declared where workers find it.
    assert "citybrain.core.authz.tasks" in TASK_MODULES
    import_task_modules()
    assert purge_login_failures.name.endswith("purge_login_failures")

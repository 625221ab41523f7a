"""The ``citybrain`` command (Typer + Rich)."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from citybrain.kit.settings import get_settings, reset_settings

app = typer.Typer(
    help="城市大脑 citybrain — epidemic command centre platform", no_args_is_help=True
)
db_app = typer.Typer(help="Operational database 业务数据库", no_args_is_help=True)
geo_app = typer.Typer(help="Hierarchy, compounds and places 区划与小区", no_args_is_help=True)
users_app = typer.Typer(help="Accounts 账号", no_args_is_help=True)
audit_app = typer.Typer(help="Audit log 审计日志", no_args_is_help=True)
keys_app = typer.Typer(help="Key material 密钥", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for scripts and devices 接口令牌", no_args_is_help=True)
datahub_app = typer.Typer(
    help="The data centre: intake, status, quarantine 大数据中心", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(geo_app, name="geo")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.add_typer(datahub_app, name="datahub")
analysis_app = typer.Typer(
    help="Collision analysis: linkage, contacts, screening 碰撞分析", no_args_is_help=True
)
app.add_typer(analysis_app, name="analysis")

console = Console()
err = Console(stderr=True)

CLI_ACTOR_REF = "cli"


def _actor() -> Any:
    from citybrain.core.audit.service import Actor

    return Actor(f"{CLI_ACTOR_REF}:{os.environ.get('USER', 'unknown')}", "operator", None)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database to the newest schema (Alembic)."""
    from citybrain.kit.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url, revision)
    console.print(f"database at {revision}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _load_geo(show_progress: bool) -> dict[str, Any]:
    from citybrain.core.geo.service import load_hierarchy
    from citybrain.kit.db import get_database

    database = get_database()
    if not show_progress:
        with database.unit_of_work() as session:
            return load_hierarchy(session, actor=_actor()).as_dict()
    with _progress() as progress:
        tasks: dict[str, Any] = {}

        def step(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        with database.unit_of_work() as session:
            return load_hierarchy(session, actor=_actor(), progress=step).as_dict()


@geo_app.command("load")
def geo_load(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Load Zhengzhou's hierarchy, compounds and places (idempotent); print the counts."""
    counts = _load_geo(show_progress=not as_json)
    # The JSON line is the state of the hierarchy, the same on every run; what this run
    # changed goes to stderr.
    err.print(f"inserted {counts['inserted']}, updated {counts['updated']}")
    if as_json:
        state = {k: v for k, v in counts.items() if k not in ("inserted", "updated")}
        print(json.dumps(state, ensure_ascii=False, sort_keys=True))
        return
    table = Table("level 层级", "count 数量")
    for key in ("districts", "streets", "communities", "compounds", "places"):
        table.add_row(key, str(counts[key]))
    console.print(table)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="login name")],
    role: Annotated[str, typer.Option(help="role, e.g. street_officer")],
    area: Annotated[str, typer.Option(help="area code of the jurisdiction, e.g. 410105001")],
    display_name: Annotated[str | None, typer.Option(help="name shown on pages")] = None,
    password: Annotated[
        str | None, typer.Option(help="password (asked for when not given)", hide_input=True)
    ] = None,
) -> None:
    """Create an account with a role and a jurisdiction."""
    from citybrain.core.authz.service import create_user
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError

    if password is None:
        password = typer.prompt("password 密码", hide_input=True, confirmation_prompt=True)
    try:
        with get_database().unit_of_work() as session:
            user = create_user(
                session,
                _actor(),
                username=username,
                password=password,
                role=role,
                area_code=area,
                display_name=display_name,
            )
            user_id = user.id
    except CitybrainError as error:
        raise _fail(f"{error.message_zh} / {error.message_en}") from error
    console.print(f"created user {username} (id {user_id}, {role}, {area})")


@tokens_app.command("issue")
def tokens_issue(
    name: Annotated[str, typer.Option(help="what the token is for, e.g. gate-3")],
    user: Annotated[str | None, typer.Option(help="username the token acts as")] = None,
    place: Annotated[
        str | None, typer.Option(help="place code of a device (gate, checkpoint, venue)")
    ] = None,
    days: Annotated[int, typer.Option(help="days until it expires")] = 90,
) -> None:
    """Issue a bearer token for a user's scripts or for a device at a place; shown once."""
    import datetime as dt

    from citybrain.core.authz import repository
    from citybrain.core.authz.service import issue_token
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError

    try:
        with get_database().unit_of_work() as session:
            account = None
            if user is not None:
                account = repository.user_by_username(session, user)
                if account is None:
                    raise _fail(f"no user {user} / 用户 {user} 不存在")
            token, secret = issue_token(
                session,
                _actor(),
                name=name,
                user=account,
                device_place_code=place,
                ttl=dt.timedelta(days=days),
            )
            token_id = token.id
    except CitybrainError as error:
        raise _fail(f"{error.message_zh} / {error.message_en}") from error
    console.print(f"token {token_id} (shown once, keep it safe 仅显示一次):")
    print(secret)


@tokens_app.command("agency")
def tokens_agency(
    agency: Annotated[str, typer.Option(help="the agency as the catalogue names it, e.g. 铁路")],
    category: Annotated[
        list[str] | None, typer.Option(help="a category it may push (repeat; default: all)")
    ] = None,
    days: Annotated[int, typer.Option(help="days until it expires")] = 365,
) -> None:
    """Issue a push token for an agency's feeds (POST /api/v1/datahub/batches); shown once."""
    import datetime as dt

    from citybrain.core.geo.models import CITY_CODE, Area
    from citybrain.datahub.push import issue_agency_token
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError

    _ensure_schema()
    try:
        with get_database().unit_of_work() as session:
            if session.get(Area, CITY_CODE) is None:
                raise _fail("先加载区划 load the hierarchy first: citybrain geo load")
            token, secret = issue_agency_token(
                session,
                _actor(),
                agency=agency,
                categories=category or None,
                ttl=dt.timedelta(days=days),
            )
            token_id, allowed = token.id, token.categories
    except CitybrainError as error:
        raise _fail(f"{error.message_zh} / {error.message_en}") from error
    console.print(f"token {token_id} for {agency} {allowed} (shown once 仅显示一次):")
    print(secret)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="token id")]) -> None:
    """Revoke a token at once."""
    from citybrain.core.authz.service import revoke_token
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError

    try:
        with get_database().unit_of_work() as session:
            revoke_token(session, _actor(), token_id)
    except CitybrainError as error:
        raise _fail(f"{error.message_zh} / {error.message_en}") from error
    console.print(f"token {token_id} revoked 已吊销")


@keys_app.command("reseal")
def keys_reseal(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Re-encrypt personal data sealed with older field keys under the active key: the
    registry's persons and households, and the adults' invitations awaiting consent."""
    from citybrain.apps.residents.service import reseal_invitations
    from citybrain.core.people.service import reseal_personal_data
    from citybrain.kit.db import get_database

    with _progress() as progress, get_database().unit_of_work() as session:
        task = progress.add_task("resealing 重新加密", total=None)
        counts = reseal_personal_data(
            session,
            _actor(),
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
        counts["invitations_resealed"] = reseal_invitations(session, _actor())
    if as_json:
        print(json.dumps(counts))
    else:
        console.print(
            f"{counts['persons_resealed']} of {counts['persons']} persons, "
            f"{counts['households_resealed']} households and "
            f"{counts['invitations_resealed']} invitations resealed under the active key"
        )


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Walk the hash chain; exit 0 when intact, 1 naming the first broken row."""
    from citybrain.core.audit.service import verify_chain
    from citybrain.kit.db import get_database

    with get_database().unit_of_work() as session:
        report = verify_chain(session)
    if as_json:
        print(json.dumps(report.__dict__, ensure_ascii=False))
    elif report.ok:
        console.print(f"audit chain intact: {report.rows} rows 审计链完整")
    else:
        err.print(
            f"[red]audit chain broken at row {report.first_bad_seq}: {report.reason} "
            f"审计链在第{report.first_bad_seq}条断裂[/red]"
        )
    if not report.ok:
        raise typer.Exit(1)


def _ensure_schema() -> None:
    """Bring the operational database to the newest schema (idempotent, quick when current)."""
    from citybrain.kit.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)


def _bar_progress(progress: Progress) -> Any:
    tasks: dict[str, Any] = {}

    def step(stage: str, done: int, total: int) -> None:
        if "bar" not in tasks:
            tasks["bar"] = progress.add_task(stage, total=total)
        progress.update(tasks["bar"], description=stage, completed=done, total=total)

    return step


def geo_input() -> Any:
    """The platform's geography as plain rows for the simulator (which imports no core)."""
    from citybrain.core.geo.service import build_dataset
    from citybrain.simulate.config import AreaInput, CompoundInput, GeoInput, PlaceInput

    dataset = build_dataset()
    return GeoInput(
        areas=[AreaInput(a.code, a.level, a.name, a.parent_code) for a in dataset.areas],
        compounds=[
            CompoundInput(
                c.code,
                c.community_code,
                c.name,
                c.address,
                c.households_estimate,
                c.lon,
                c.lat,
            )
            for c in dataset.compounds
        ],
        places=[
            PlaceInput(p.code, p.kind, p.subkind, p.name, p.area_code, p.compound_code)
            for p in dataset.places
        ],
    )


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="feeds folder (one drop folder per source)")] = Path(
        "var/feeds"
    ),
    people: Annotated[int, typer.Option(help="population (full city: 12600000)", min=100)] = 20_000,
    days: Annotated[int, typer.Option(help="days to simulate", min=1, max=366)] = 30,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same bytes")] = 7,
    start: Annotated[
        str | None, typer.Option(help="first simulated day, YYYY-MM-DD (default 2020-01-10)")
    ] = None,
    truth_out: Annotated[
        Path | None,
        typer.Option(help="ground truth folder (default: 'truth' beside the feeds folder)"),
    ] = None,
    clean_feeds: Annotated[
        bool, typer.Option("--clean-feeds", help="write feeds without any faults")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace feeds and truth already in the folders")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Simulate a synthetic Zhengzhou with an outbreak; write every agency's feed files and,
    separately, the ground truth. 模拟城市并生成各部门数据"""
    import datetime as dt

    from citybrain.kit.errors import CitybrainError
    from citybrain.simulate.config import DEFAULT_START, FaultRates, SimulationConfig
    from citybrain.simulate.run import run_simulation

    try:
        first = dt.date.fromisoformat(start) if start else DEFAULT_START
    except ValueError as exc:
        raise _fail(f"--start 日期格式应为 YYYY-MM-DD: {start!r}") from exc
    config = SimulationConfig(
        people=people,
        days=days,
        seed=seed,
        start=first,
        faults=FaultRates.none() if clean_feeds else FaultRates(),
    )
    truth = truth_out or out.parent / "truth"
    try:
        with _progress() as progress:
            summary = run_simulation(
                config,
                geo_input(),
                out,
                truth,
                progress=_bar_progress(progress),
                overwrite=overwrite,
            )
    except CitybrainError as exc:
        raise _fail(exc.message()) from exc
    result = summary.as_dict()
    if as_json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=True, default=str))
        return
    console.print(
        f"模拟完成 simulated {result['people']:,} people × {result['days']} days: "
        f"{result['records']:,} records in {result['files']:,} files → {out} "
        f"(truth → {truth}) in {result['seconds']:.1f}s"
    )


@datahub_app.command("ingest")
def datahub_ingest(
    folder: Annotated[Path, typer.Argument(help="folder of feed files (drop folders)")],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
    per_file: Annotated[
        bool, typer.Option(help="include every file's counts in the JSON (--no-per-file: totals)")
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            help="worker processes that stage files (default: one per core for a big folder, "
            "none for a small one)"
        ),
    ] = None,
    trace: Annotated[
        bool,
        typer.Option(
            help="trace the contacts of new cases when case reports or tests came in "
            "(--no-trace: intake only; a running worker traces them on the intake's events)"
        ),
    ] = True,
) -> None:
    """Take every feed file under FOLDER into the lake: validate, quarantine bad rows,
    pseudonymise, recognise duplicates, reconcile; then trace the contacts of new cases.
    数据汇聚入湖"""
    from citybrain.datahub.service import Intake
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError

    if not folder.is_dir():
        raise _fail(f"不是文件夹 / not a folder: {folder}")
    _ensure_schema()
    intake = Intake()
    try:
        with _progress() as progress:
            summary = intake.ingest_folder(
                get_database(),
                folder,
                progress=_bar_progress(progress),
                actor=_actor(),
                workers=workers,
            )
    except CitybrainError as exc:
        raise _fail(exc.message()) from exc
    finally:
        intake.close()
    for name in summary.unrecognised:
        err.print(
            f"[yellow]未识别的文件（未入湖） unrecognised file, not taken in: {name}[/yellow]"
        )
    for result in summary.per_file:
        if result.status == "rejected":
            err.print(f"[red]文件被拒 rejected: {result.name}: {result.error}[/red]")
    traced = _trace_after_intake(summary.per_file) if trace else []
    if as_json:
        data = summary.as_dict(per_file=per_file)
        data["traced_cases"] = len(traced)
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
    else:
        data = summary.as_dict()
        console.print(
            f"{data['new_files']} new files ({data['already_ingested']} already in), "
            f"received {data['received']:,} = accepted {data['accepted']:,} + quarantined "
            f"{data['quarantined']:,} + duplicate {data['duplicate']:,}; "
            f"{data['records_per_second']:,} records/s"
        )
        if traced:
            console.print(
                f"密接追踪 traced {len(traced)} new cases: "
                f"{sum(t.close_contacts for t in traced):,} close and "
                f"{sum(t.secondary_contacts for t in traced):,} secondary contacts listed"
            )
    if not summary.reconciles:
        raise _fail("counts do not reconcile 计数不平")


def _trace_after_intake(results: list[Any]) -> list[Any]:
    """Trace new cases when this intake took in case reports or lab tests (the same service
    the worker's job runs on the intake's events)."""
    from citybrain.analysis.tasks import TRIGGER_CATEGORIES
    from citybrain.analysis.tracing import trace_new_cases
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database

    if not any(
        r.status == "ingested" and r.category in TRIGGER_CATEGORIES and r.accepted > 0
        for r in results
    ):
        return []
    with _progress() as progress:
        progress.add_task("密接追踪 tracing new cases", total=None)
        return trace_new_cases(LakePaths.default(), get_database(), _actor())


@datahub_app.command("status")
def datahub_status(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Every source category: files, records, quarantine, freshness; stale sources flagged."""
    from citybrain.datahub.status import category_status
    from citybrain.kit.db import get_database

    _ensure_schema()
    with get_database().unit_of_work() as session:
        rows = category_status(session)
    if as_json:
        body = {
            "categories": [r.as_dict() for r in rows],
            "stale": [r.code for r in rows if r.stale],
            "records": sum(r.records for r in rows),
        }
        print(json.dumps(body, ensure_ascii=False, sort_keys=True))
        return
    table = Table("类别 category", "名称", "文件", "入湖记录", "隔离", "重复", "最新数据日", "状态")
    for r in rows:
        colour = {"ok": "green", "stale": "red", "no_data": "red"}.get(r.state, "dim")
        table.add_row(
            r.code,
            r.name,
            str(r.files),
            f"{r.records:,}",
            f"{r.quarantined:,}",
            f"{r.duplicate:,}",
            r.last_day or "—",
            f"[{colour}]{r.state}[/{colour}]",
        )
    console.print(table)


@datahub_app.command("reconcile")
def datahub_reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Count what every file left in the lake, the linkage store and the quarantine, and
    compare with the ledger; exit 1 on any difference. 对账"""
    from citybrain.datahub.reconcile import reconcile
    from citybrain.kit.db import get_database

    _ensure_schema()
    with get_database().unit_of_work() as session:
        report = reconcile(session)
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, sort_keys=True))
    else:
        console.print(
            f"{report.files} files: received {report.received:,} = accepted "
            f"{report.accepted:,} + quarantined {report.quarantined:,} + duplicate "
            f"{report.duplicate:,}; lake {report.lake_rows}, linkage {report.linkage_rows:,}, "
            f"quarantine {report.quarantine_rows:,}; {report.purged_files} files purged at the "
            "end of their retention"
        )
        for m in report.mismatches[:20]:
            err.print(f"[red]{m.name}: {m.what} expected {m.expected}, found {m.found}[/red]")
        if report.orphan_files:
            err.print(f"[red]{report.orphan_files} file ids have parts but no ledger row[/red]")
    if not report.ok:
        raise typer.Exit(1)


@analysis_app.command("link")
def analysis_link(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Give every record in the lake a person key (身份关联): resident IDs and passports, then
    phones, transit cards and plates under guards for shared ones; written to
    analysis/person_keys.parquet under the data directory; the run is audited."""
    from citybrain.analysis.tracing import link_for_tracing
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database

    _ensure_schema()
    # Noted as tracing's own linkage: the next trace links again only if files came or went.
    summary = link_for_tracing(LakePaths.default(), get_database(), _actor())
    if as_json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False, sort_keys=True))
    else:
        console.print(
            f"{summary.records:,} records → {summary.persons:,} person keys in "
            f"{summary.seconds:.1f}s ({summary.path})"
        )
        for rule, count in sorted(summary.rules.items(), key=lambda kv: -kv[1]):
            console.print(f"  {rule}: {count:,}")


def _engine(name: str) -> Any:
    from citybrain.analysis.engine import engine_named

    try:
        return engine_named(name)
    except ValueError as exc:
        raise _fail(f"未知的计算引擎 / {exc}") from exc


def _table_json(table: Any) -> list[dict[str, Any]]:
    """Rows of an Arrow table as JSON-ready dicts (times as ISO text)."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, dt.datetime | dt.date):
                row[key] = value.isoformat()
    return rows


def _audit_query(action: str, detail: dict[str, Any]) -> None:
    """An audit row for a query over person keys (pseudonymous, but about people)."""
    from citybrain.core.audit.service import record
    from citybrain.kit.db import get_database

    with get_database().unit_of_work() as session:
        record(session, _actor(), action, object_type="person_keys", detail=detail)


@analysis_app.command("contacts")
def analysis_contacts(
    case: Annotated[list[int], typer.Option("--case", help="a case's person key (repeatable)")],
    hops: Annotated[int, typer.Option(min=1, max=2, help="1: close contacts; 2: and theirs")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
    engine: Annotated[
        str,
        typer.Option(help="duckdb (one machine) or spark (PySpark; a cluster's or local)"),
    ] = "duckdb",
) -> None:
    """Close contacts (密接) and, with --hops 2, secondary contacts (次密接) of cases, by the
    co-presence rules, each with its evidence (rule, place, overlap, record ids)."""
    from citybrain.analysis.contacts import close_contacts
    from citybrain.analysis.linkage import OUTPUT
    from citybrain.analysis.presence_index import current_lake_index
    from citybrain.analysis.tracing import link_for_tracing
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database

    _ensure_schema()
    paths, database = LakePaths.default(), get_database()
    if not (paths.root / OUTPUT).exists():
        link_for_tracing(paths, database, _actor())
    if engine == "duckdb":
        table = close_contacts(paths, database, case, hops=hops, index=current_lake_index(paths))
    else:
        # The cluster reads the lake itself: the contact index is this machine's cache.
        table = close_contacts(paths, database, case, hops=hops, engine=_engine(engine))
    _audit_query("analysis.contacts", {"cases": case, "hops": hops, "rows": table.num_rows})
    rows = _table_json(table)
    if as_json:
        contacts = {(r["hop"], r["contact"]) for r in rows}
        summary = {
            "cases": case,
            "hops": hops,
            "close_contacts": len({c for h, c in contacts if h == 1}),
            "secondary_contacts": len({c for h, c in contacts if h == 2}),
            "contacts": rows,
        }
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
        return
    for r in rows:
        console.print(
            f"hop {r['hop']} case {r['case']} → {r['contact']}: {r['rule_zh']} ({r['strength']}) "
            f"{r['place']} {r['start']}–{r['end']}"
        )
    console.print(f"{len(rows)} rows")


@analysis_app.command("screen")
def analysis_screen(
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="screening day (default: the lake's last day)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
    engine: Annotated[
        str,
        typer.Option(help="duckdb (one machine) or spark (PySpark; a cluster's or local)"),
    ] = "duckdb",
) -> None:
    """Key persons (重点人员) over the 14 days up to --as-of, by the screening rules, listed by
    community and compound with the evidence."""
    from citybrain.analysis.screening import by_compound, screen
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database

    _ensure_schema()
    paths = LakePaths.default()
    day = as_of.date() if as_of else _last_lake_day(paths)
    table = screen(paths, get_database(), as_of=day, engine=_engine(engine))
    grouped = by_compound(table)
    _audit_query("analysis.screen", {"as_of": day.isoformat(), "rows": table.num_rows})
    if as_json:
        summary = {
            "as_of": day.isoformat(),
            "persons": len(set(table.column("person_key").to_pylist())),
            "by_compound": _table_json(grouped),
            "key_persons": _table_json(table),
        }
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
        return
    for g in _table_json(grouped):
        console.print(
            f"{g['community_name'] or '未定位 unplaced'} {g['compound_name'] or ''}: "
            f"{g['persons']} persons ({', '.join(g['rules'])})"
        )


@analysis_app.command("timeline")
def analysis_timeline(
    person: Annotated[int | None, typer.Argument(help="person key 人员编号")] = None,
    record: Annotated[
        int | None, typer.Option("--record", help="or: the person holding this record id")
    ] = None,
    since: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="from this day")
    ] = None,
    until: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="up to this day")
    ] = None,
    purpose: Annotated[str, typer.Option(help="why (流调, 密接排查…), audited")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """A person's trajectory (个人轨迹): every lake record linked to PERSON (or to the holder
    of --record) across every source, in time order, with place, source, record id and the
    linkage rule; audited (analysis.timeline) with the stated --purpose."""
    from citybrain.analysis.timeline import audited_read
    from citybrain.datahub.catalog import catalog
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError

    _ensure_schema()
    try:
        with get_database().unit_of_work() as session:
            read = audited_read(
                session,
                _actor(),
                LakePaths.default(),
                person_key=person,
                record_id=record,
                since=since.date() if since else None,
                until=until.date() if until else None,
                purpose=purpose,
            )
    except CitybrainError as error:
        raise _fail(f"{error.message('zh-CN')} / {error.message('en')}") from None
    rows = _table_json(read.table)
    if as_json:
        summary = {
            "person_key": read.person_key,
            "record_id": read.record_id,
            "since": read.since.isoformat() if read.since else None,
            "until": read.until.isoformat() if read.until else None,
            "rows": len(rows),
            "timeline": rows,
        }
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
        return
    sources = catalog()
    table = Table(title=f"个人轨迹 trajectory · {read.person_key}")
    table.add_column("日期 day", no_wrap=True)
    table.add_column("时间 time", no_wrap=True)
    for heading in ("来源 source", "地点 place", "详情 detail", "记录 record", "关联 rule"):
        table.add_column(heading, overflow="fold")
    shown = read.table.to_pylist()
    for i, r in enumerate(shown):
        last = i + 1 == len(shown) or shown[i + 1]["day"] != r["day"]
        first = i == 0 or shown[i - 1]["day"] != r["day"]
        source = sources.get(r["category"])
        until_text = ""
        if r["end"] is not None:
            same_day = r["time"] is not None and r["end"].date() == r["time"].date()
            until_text = "–" + r["end"].strftime("%H:%M" if same_day else "%m-%d %H:%M")
        table.add_row(
            r["day"].isoformat() if first else "",
            (r["time"].strftime("%H:%M") + until_text) if r["time"] else "全天 all day",
            source.name if source else r["category"],
            r["place"] or "",
            r["detail"] or "",
            str(r["record_id"]),
            r["rule"],
            end_section=last,
        )
    console.print(table)
    console.print(f"{len(rows)} records / 条记录")


def _last_lake_day(paths: Any) -> dt.date:
    """The latest day any lake part holds (the default screening day)."""
    days = [p.name.removeprefix("day=") for p in paths.lake.glob("*/*/day=*")]
    if not days:
        raise _fail("湖中没有数据 / the lake is empty: take feeds in first")
    return dt.date.fromisoformat(max(days))


@app.command("evaluate")
def evaluate(
    truth: Annotated[Path, typer.Option("--truth", help="the simulator's truth folder")],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Score linkage, contacts and screening against a synthetic city's ground truth (only
    evaluation reads it). Runs linkage first if the lake has no person keys."""
    from citybrain.analysis.contacts import contact_quality
    from citybrain.analysis.linkage import OUTPUT
    from citybrain.analysis.quality import linkage_quality
    from citybrain.analysis.screening import screening_quality
    from citybrain.analysis.tracing import link_for_tracing, trace_new_cases, trace_seconds
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database

    if not (truth / "record_owner").is_dir():
        raise _fail(f"不是模拟真值目录 / not a truth folder: {truth}")
    _ensure_schema()
    paths, database = LakePaths.default(), get_database()
    keys = paths.root / OUTPUT
    if not keys.exists():
        link_for_tracing(paths, database, _actor())
    day = _last_lake_day(paths)
    # Cases the intake did not trace on arrival (taken in with --no-trace and no worker
    # running) are traced now: their time counts from their arrival all the same.
    trace_new_cases(paths, database, _actor())
    seconds = sorted(trace_seconds(database))
    linkage = linkage_quality(paths, database, truth, keys)
    contacts = contact_quality(paths, database, truth, keys)
    screening = screening_quality(paths, database, truth, keys, day)
    result = {
        "linkage": {k: linkage[k] for k in ("precision", "recall", "f1", "records", "keys")},
        "contacts": {
            "cases": contacts["cases"],
            "recall_infectees": contacts["infectee_recall"],
            "recall_infectees_any_setting": contacts["infectee_recall_all"],
            "recall_exposures": contacts["exposure_recall"],
            "precision": contacts["precision"],
            "first_hop_mean": contacts["first_hop_mean"],
        },
        "screening": {k: v for k, v in screening.items() if isinstance(v, int | float)},
        "second_hop_share": contacts["second_hop_share_max"],
        # The slowest case: from the ledger's commit of its report to its contacts' listing.
        "seconds_case_to_contacts": seconds[-1] if seconds else None,
        "seconds_case_to_contacts_median": seconds[len(seconds) // 2] if seconds else None,
        "cases_traced": len(seconds),
    }
    if as_json:
        print(json.dumps(result, ensure_ascii=False, sort_keys=True))
        return
    console.print_json(json.dumps(result, ensure_ascii=False))


@datahub_app.command("purge")
def datahub_purge(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Take the files past their retention period out of the lake, the linkage store and the
    quarantine (their ledger rows stay, marked purged); also runs every night. 数据到期清除"""
    from citybrain.datahub.retention import purge_expired
    from citybrain.kit.db import get_database

    _ensure_schema()
    summary = purge_expired(get_database())
    if as_json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False, sort_keys=True))
    else:
        console.print(
            f"purged {summary.files} files and the old days of {summary.trimmed_files} more "
            f"({summary.accepted:,} rows, {summary.quarantined:,} quarantined); "
            f"{summary.parts_removed} part files removed"
        )


@datahub_app.command("quarantine")
def datahub_quarantine(
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
    file_id: Annotated[str | None, typer.Option(help="only this file (its id)")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    export: Annotated[
        Path | None, typer.Option(help="write the rows to this CSV for the agency")
    ] = None,
    limit: Annotated[int, typer.Option(help="rows to show", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """List or export quarantined rows (line, column, reason, the row as sent). 隔离数据"""
    from itertools import islice

    from citybrain.datahub.catalog import get_source
    from citybrain.datahub.status import (
        QUARANTINE_HEADER,
        quarantine_csv_rows,
        quarantined_rows,
    )
    from citybrain.kit.errors import CitybrainError
    from citybrain.kit.export import csv_bytes

    if category:
        try:
            get_source(category)
        except CitybrainError as exc:
            raise _fail(exc.message()) from exc
    rows = quarantined_rows(category=category, file_id=file_id, reason=reason)
    if export is not None:
        listed = list(rows)
        export.write_bytes(csv_bytes(QUARANTINE_HEADER, quarantine_csv_rows(iter(listed))))
        err.print(f"{len(listed)} rows → {export}")
        if as_json:
            print(json.dumps({"rows": len(listed), "export": str(export)}, ensure_ascii=False))
        return
    shown = list(islice(rows, limit))
    if as_json:
        print(json.dumps({"rows": [r.as_dict() for r in shown]}, ensure_ascii=False))
        return
    table = Table("类别", "文件", "行", "列", "原因", "原始内容")
    for r in shown:
        table.add_row(r.category, r.file_name, str(r.line), r.column or "—", r.message, r.raw[:80])
    console.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    background: Annotated[
        bool, typer.Option(help="run jobs and event delivery in this process")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="server processes on the one port (one per core; background work runs in "
            "one of them)",
        ),
    ] = 1,
    certfile: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain) to serve HTTPS with (CITYBRAIN_TLS_CERTFILE)"),
    ] = None,
    keyfile: Annotated[
        Path | None,
        typer.Option(help="its PEM private key (CITYBRAIN_TLS_KEYFILE)"),
    ] = None,
) -> None:
    """Serve the web app (with jobs and event delivery inside, the embedded default); over
    HTTPS with a certificate and key, which gate phones need for their camera."""
    from citybrain.kit.errors import CitybrainError
    from citybrain.web.serve import serve as serve_app
    from citybrain.web.serve import tls_from

    # The command line's files become the process's settings (and its server processes'), so
    # the app knows it is served over HTTPS (Secure cookies).
    for name, given in (("CITYBRAIN_TLS_CERTFILE", certfile), ("CITYBRAIN_TLS_KEYFILE", keyfile)):
        if given is not None:
            os.environ[name] = str(given)
    reset_settings()
    settings = get_settings()
    try:
        tls = tls_from(settings.tls_certfile, settings.tls_keyfile)
    except CitybrainError as error:
        raise _fail(f"{error.message_zh} / {error.message_en}") from error
    serve_app(
        host or settings.host,
        port or settings.port,
        workers=workers,
        background=background,
        tls=tls,
    )


@app.command()
def worker(workers: Annotated[int, typer.Option(help="worker threads")] = 2) -> None:
    """Run background jobs and event delivery in their own process (production)."""
    from citybrain.core.jobs.worker import run_worker
    from citybrain.kit.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    run_worker(workers)


DEMO_ACCOUNTS: list[tuple[str, str, str, str]] = [
    # username, role, area code, display name
    ("commander", "city_commander", "4101", "市指挥部 王指挥"),
    ("jinshui", "district_officer", "410105", "金水区防控办 李专员"),
    ("street", "street_officer", "410105001", "经八路街道 张专员"),
    ("grid", "grid_worker", "410105001003", "体育社区网格员 刘网格"),
    ("clinic", "clinic_staff", "410105", "发热门诊 陈医生"),
    ("checkpoint", "checkpoint_staff", "410122", "中牟卡口 杨执勤"),
    ("auditor", "auditor", "4101", "审计员 赵审计"),
    ("dataofficer", "data_officer", "4101", "数据中心 孙专员"),
    ("admin", "system_admin", "4101", "系统管理员 周管理"),
]
DEMO_SEED = 20200125


def _demo_passwords(data_dir: Path) -> dict[str, str]:
    """Demo passwords, made once and kept (mode 0600) so every run prints the same."""
    path = data_dir / "demo-accounts.json"
    if path.exists():
        return dict(json.loads(path.read_text("utf-8")))
    passwords = {
        name: f"demo-{secrets.token_hex(4)}-{i}"
        for i, (name, *_r) in enumerate(DEMO_ACCOUNTS, start=1)
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(passwords, handle)
    return passwords


def seed_demo(persons: int = 300) -> dict[str, str]:
    """Create the demo accounts and register synthetic residents in the demo street;
    idempotent. Returns username → password."""
    from sqlalchemy import select

    from citybrain.core.authz import repository as authz_repository
    from citybrain.core.authz.service import create_user, principal_for
    from citybrain.core.geo.models import Compound
    from citybrain.core.people.schemas import PersonIn
    from citybrain.core.people.service import register_person
    from citybrain.kit.db import get_database
    from citybrain.simulate.persons import generate_persons

    settings = get_settings()
    passwords = _demo_passwords(settings.data_dir)
    database = get_database()
    with database.unit_of_work() as session:
        for username, role, area, display in DEMO_ACCOUNTS:
            if authz_repository.user_by_username(session, username) is None:
                create_user(
                    session,
                    _actor(),
                    username=username,
                    password=passwords[username],
                    role=role,
                    area_code=area,
                    display_name=display,
                )
    with database.unit_of_work() as session:
        street_user = authz_repository.user_by_username(session, "street")
        assert street_user is not None
        registrar = principal_for(street_user)
        compounds = list(
            session.scalars(
                select(Compound.code)
                .where(Compound.code.startswith(registrar.area_code))
                .order_by(Compound.code)
            )
        )
        with _progress() as progress:
            task = progress.add_task("registering synthetic residents 登记合成居民", total=persons)
            for i, person in enumerate(generate_persons(persons, DEMO_SEED)):
                register_person(
                    session,
                    registrar,
                    PersonIn(
                        name=person.name,
                        id_number=person.id_number,
                        phone=person.phone,
                        compound_code=compounds[i % len(compounds)],
                    ),
                )
                progress.update(task, advance=1)
    return passwords


def _demo_city(data_dir: Path, people: int, days: int, first_days: int, day_seconds: float) -> Any:
    """Simulate a small city whose last day is today (the same feeds all day: same seed, same
    start), take its first ``first_days`` days in, and return the player of the rest."""
    from citybrain.kit import clock
    from citybrain.kit.db import get_database
    from citybrain.simulate.config import SimulationConfig
    from citybrain.simulate.run import run_simulation
    from citybrain.web.demo import DemoPlayer

    start = clock.today_local() - dt.timedelta(days=days - 1)
    city = data_dir / "demo-city" / f"{start:%Y%m%d}-{people}x{days}"
    earlier = sorted(p.name for p in city.parent.glob("*") if p.is_dir() and p.name != city.name)
    if earlier:
        # Same seed, other dates: the same synthetic people again, their records beside the
        # earlier city's in one lake and one database.
        err.print(
            f"[yellow]注意：数据目录中已有其他演示城市（{', '.join(earlier)}），其数据会与本次"
            f"的城市混在一起；如需从头开始，请删除数据目录 {data_dir} 后重新运行。 "
            f"Another demo city is in the data directory ({', '.join(earlier)}): its data mixes "
            f"with this one's; for a clean start remove {data_dir} and run the demo again."
            "[/yellow]"
        )
    feeds = city / "feeds"
    if not feeds.exists():
        with _progress() as progress:
            summary = run_simulation(
                SimulationConfig(people=people, days=days, seed=DEMO_SEED, start=start),
                geo_input(),
                feeds,
                city / "truth",
                progress=_bar_progress(progress),
            )
        console.print(
            f"synthetic city 模拟城市: {summary.people:,} people, {summary.days} days from "
            f"{start}, {summary.records:,} records in {summary.files} feed files"
        )
    player = DemoPlayer(
        get_database(), feeds, city / "delivered", day_seconds=day_seconds, actor=_actor()
    )
    taken_in = [0, 0]  # new files, records accepted

    with _progress() as progress:
        task = progress.add_task(
            "first days into the data centre 前几天的数据汇聚",
            total=min(first_days, len(player.order)),
        )

        def count(_day: dt.date, taken: Any) -> None:
            taken_in[0] += taken.new_files
            taken_in[1] += taken.accepted
            progress.update(task, advance=1)

        player.on_day = count
        player.release_until(first_days)
        player.on_day = None
    new_files, accepted = taken_in
    console.print(
        f"data centre 数据汇聚: {player.released} of {len(player.order)} days, {new_files} new "
        f"files, {accepted:,} records taken into the lake"
    )
    return player


@app.command()
def demo(
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="serve afterwards")
    ] = True,
    persons: Annotated[int, typer.Option(help="synthetic residents to register")] = 300,
    city_people: Annotated[
        int, typer.Option(help="people of the synthetic city whose feeds are taken in (0: none)")
    ] = 20000,
    city_days: Annotated[int, typer.Option(help="days of the synthetic city", min=2)] = 21,
    first_days: Annotated[
        int, typer.Option(help="simulated days taken in before serving", min=1)
    ] = 10,
    day_seconds: Annotated[
        float, typer.Option(help="real seconds per simulated day while serving", min=1.0)
    ] = 20.0,
) -> None:
    """Prepare ./var, migrate, load the hierarchy, create demo accounts, simulate a small
    city with an outbreak, take its first days in, print where to look, and serve while the
    rest of its days arrive one by one (the outbreak unfolding on the cockpit)."""
    from citybrain.web import demo as demo_player

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    console.rule("城市大脑 citybrain demo")
    db_upgrade("head")
    counts = _load_geo(show_progress=True)
    console.print(
        f"hierarchy 区划: {counts['districts']} districts, {counts['streets']} streets, "
        f"{counts['communities']} communities, {counts['compounds']} compounds, "
        f"{counts['places']} places"
    )
    passwords = seed_demo(persons)
    player = None
    if city_people:
        player = _demo_city(settings.data_dir, city_people, city_days, first_days, day_seconds)
    table = Table(
        "username 用户名", "password 密码", "role 角色", "area 辖区", title="demo accounts 演示账号"
    )
    for username, role, area, display in DEMO_ACCOUNTS:
        table.add_row(username, passwords[username], f"{role} ({display})", area)
    console.print(table)
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"open {url} and log in with an account above · 在浏览器打开 {url} 并登录")
    console.print(
        f"leadership cockpit 领导驾驶舱: {url}/cockpit — account commander (the whole city) or "
        "jinshui (金水区 only)"
    )
    if player is not None:
        state = player.state()
        console.print(
            f"the outbreak unfolds 疫情回放: day {state.released} of {state.total} taken in; the "
            f"next arrives every {day_seconds:g} s (faster: POST {url}/api/v1/demo/clock "
            '{"speed": 4} with a bearer token from /api/v1/auth/token, or --day-seconds)'
        )
    console.print(f"API docs 接口文档: {url}/docs · health: {url}/healthz")
    console.print(f"data centre 大数据中心: {url}/datahub (account dataofficer)")
    sms = (
        "through the SMS platform"
        if settings.sms_gateway_url
        else "printed here, since no SMS platform is set (CITYBRAIN_SMS_GATEWAY_URL) "
        "演示环境未接短信平台，验证码显示在本终端"
    )
    identity = (
        "checked by the city's identity service"
        if settings.identity_gateway_url
        else "not checked, since no identity service is set (CITYBRAIN_IDENTITY_GATEWAY_URL) "
        "演示环境未接实名核验服务"
    )
    console.print(
        f"residents 居民健康登记: {url}/residents (phone-sized pages); one-time codes are {sms}; "
        f"names and ID numbers are {identity}"
    )
    console.print(
        f"place codes 场所码: {url}/healthcode/place-codes (account street) prints a venue's code; "
        "a resident's phone opens it to check in · gate scanning 门岗扫码: "
        f"{url}/healthcode/gate (account checkpoint) · scanning devices 场所设备: "
        f"{url}/healthcode/devices (account street) enrols a gate's device, withdraws a lost one"
    )
    console.print(
        f"health-code risk 健康码风险: {url}/risk — appeals queue 申诉处理 (account street), "
        "manual colours 人工赋码 (two people: street requests, commander approves)"
    )
    if serve_after:
        if "CITYBRAIN_LOG_LEVEL" not in os.environ:
            # The tour's terminal shows a line per simulated day, not every job's log line.
            os.environ["CITYBRAIN_LOG_LEVEL"] = "WARNING"
            reset_settings()
        if player is not None:

            def tell(day: dt.date, taken: Any) -> None:
                console.print(
                    f"[{day}] day {player.released} of {len(player.order)} arrives 数据到达: "
                    f"{taken.new_files} files, {taken.accepted:,} records"
                )

            player.on_day = tell
            demo_player.install(player)
            player.start()
        serve(None, None, True)


# --- health codes (健康码): signing keys, the trust list, verification, scans to the lake ---

healthcode_app = typer.Typer(
    help="Health codes: signing keys, trust list, verification 健康码", no_args_is_help=True
)
healthcode_keys_app = typer.Typer(help="Code-signing keys 签名密钥", no_args_is_help=True)
healthcode_app.add_typer(healthcode_keys_app, name="keys")
app.add_typer(healthcode_app, name="healthcode")


@healthcode_keys_app.command("rotate")
def healthcode_keys_rotate(
    compromised: Annotated[
        bool, typer.Option(help="the old key leaked: remove it from the trust list at once")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Make a new signing key; the old one verifies its codes until they expire."""
    from citybrain.healthcode import repository
    from citybrain.healthcode.keys import rotate_key
    from citybrain.kit.db import get_database

    _ensure_schema()
    with get_database().unit_of_work() as session:
        old = repository.active_key(session)
        old_kid = old.kid if old else None
        new = rotate_key(session, _actor(), compromised=compromised)
        summary = {
            "kid": new.kid,
            "retired_kid": old_kid,
            "compromised": compromised,
            "verify_until": old.verify_until.isoformat() if old and old.verify_until else None,
        }
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(f"new signing key 新签名密钥 {summary['kid']} (retired 已停用: {old_kid})")


@healthcode_keys_app.command("list")
def healthcode_keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every signing key with its status and validity."""
    from citybrain.healthcode import repository
    from citybrain.kit.db import get_database

    with get_database().unit_of_work() as session:
        rows = [
            {
                "kid": k.kid,
                "status": k.status,
                "created_at": k.created_at.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                "verify_until": k.verify_until.isoformat() if k.verify_until else None,
            }
            for k in repository.all_keys(session)
        ]
    if as_json:
        print(json.dumps({"keys": rows}))
        return
    table = Table("kid", "status 状态", "created 创建", "verify until 验证截止")
    for row in rows:
        table.add_row(row["kid"], row["status"], row["created_at"], row["verify_until"] or "—")
    console.print(table)


@healthcode_app.command("trust-list")
def healthcode_trust_list(
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
) -> None:
    """The trust list gates verify codes with (the same JSON the API publishes)."""
    from citybrain.healthcode.keys import trust_list
    from citybrain.kit.db import get_database

    with get_database().unit_of_work() as session:
        published = trust_list(session).as_json()
    if as_json:
        print(json.dumps(published))
        return
    for key in published["keys"]:
        console.print(f"{key['kid']}  {key['status']}  until 截止 {key['not_after'] or '—'}")


@healthcode_app.command("verify")
def healthcode_verify(
    text: Annotated[str, typer.Argument(help="the code's text (CB1:…)")],
    trust: Annotated[
        Path | None, typer.Option(help="a downloaded trust list (JSON) instead of the database")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Verify a health code; exit 0 when valid, 1 with the reason when refused."""
    from citybrain.healthcode.codes import CodeRefused, verify_code
    from citybrain.healthcode.keys import trust_list
    from citybrain.healthcode.trust import TrustList
    from citybrain.kit.db import get_database

    if trust is not None:
        trusted = TrustList.from_json(json.loads(trust.read_text(encoding="utf-8")))
    else:
        with get_database().unit_of_work() as session:
            trusted = trust_list(session)
    try:
        code = verify_code(text, trusted)
    except CodeRefused as refused:
        result: dict[str, Any] = {
            "valid": False,
            "reason": refused.reason_code,
            "message_zh": refused.message_zh,
            "message_en": refused.message_en,
        }
        if as_json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            err.print(f"[red]refused 拒绝: {refused.message_zh} / {refused.message_en}[/red]")
        raise typer.Exit(1) from None
    result = {
        "valid": True,
        "person_ref": code.person_ref,
        "colour": code.colour,
        "rule_set_version": code.rule_set_version,
        "kid": code.kid,
        "issued_at": code.issued_at.isoformat(),
        "expires_at": code.expires_at.isoformat(),
    }
    if as_json:
        print(json.dumps(result))
    else:
        console.print(f"valid 有效: {code.colour}, expires 过期 {result['expires_at']}")


@healthcode_app.command("export")
def healthcode_export(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Take every scan not yet in the lake to the data centre's intake now."""
    from citybrain.healthcode.export import export_scans
    from citybrain.kit.db import get_database

    result = export_scans(get_database(), actor=_actor())
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        console.print(
            f"{result.scans} scans in {result.batches} batches to the lake 扫码记录入湖 "
            f"(reconciled 对账: {result.reconciles})"
        )


# --- risk (赋码): replay, rule versions, facts from the analysis, sweep ----------------------

risk_app = typer.Typer(
    help="Health-code risk: facts, rule versions, colours, replay 风险赋码", no_args_is_help=True
)
risk_rules_app = typer.Typer(help="Rule-set versions 赋码规则版本", no_args_is_help=True)
risk_app.add_typer(risk_rules_app, name="rules")
app.add_typer(risk_app, name="risk")


cockpit_app = typer.Typer(help="Leadership cockpit 领导驾驶舱", no_args_is_help=True)
app.add_typer(cockpit_app, name="cockpit")


@cockpit_app.command("rebuild")
def cockpit_rebuild() -> None:
    """Recount the cockpit's figures from the source tables; prints the counts as JSON."""
    from citybrain.apps.cockpit.service import rebuild
    from citybrain.kit.db import get_database

    with _progress() as progress:
        task = progress.add_task("cockpit", total=3)

        def step(name: str, done: int, total: int) -> None:
            progress.update(task, description=f"cockpit: {name}", completed=done, total=total)

        with get_database().unit_of_work(immediate=True) as session:
            counts = rebuild(session, progress=step)
    print(json.dumps(counts, sort_keys=True))


@risk_app.command("replay")
def risk_replay(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="rewrite stored colours that differ (audited)")
    ] = False,
) -> None:
    """Recompute every stored colour and compound tier from the facts with the active rule
    set and compare; the last line (--json) has persons and differences (0 when every stored
    colour follows from its facts). Exits 1 when differences remain."""
    from citybrain.kit.db import get_database
    from citybrain.risk.rulesets import replay

    _ensure_schema()
    with get_database().unit_of_work() as session:
        report = replay(session, actor=_actor(), repair=repair)
    summary = report.model_dump()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    else:
        console.print(
            f"replay 重放: {report.persons} persons, {report.differences} differences, "
            f"{report.stale} stale, {report.compounds} compounds, "
            f"{report.compound_differences} compound differences (rules v{report.rule_set_version})"
        )
    if report.differences - report.repaired > 0:
        raise typer.Exit(1)


@risk_app.command("colour")
def risk_colour(
    subject: Annotated[str, typer.Argument(help="a risk subject (32 hex characters)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A subject's colour with its reasons (as gates and the person see it)."""
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError
    from citybrain.risk.service import colour_of

    _ensure_schema()
    try:
        with get_database().unit_of_work() as session:
            view = colour_of(session, subject)
    except CitybrainError as error:
        raise _fail(error.message("en")) from None
    if as_json:
        print(view.model_dump_json())
        return
    console.print(f"{view.colour} (rules v{view.rule_set_version})")
    for reason in view.reasons:
        console.print(f"- {reason.text_zh}")


@risk_rules_app.command("list")
def risk_rules_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every rule-set version with its status, approvals and dry run."""
    from citybrain.kit.db import get_database
    from citybrain.risk import repository
    from citybrain.risk.rulesets import rule_set_out
    from citybrain.risk.service import active_rule_set

    _ensure_schema()
    with get_database().unit_of_work() as session:
        active_rule_set(session)
        rows = rule_set_out(session, repository.rule_sets(session))
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], ensure_ascii=False))
        return
    for row in rows:
        console.print(
            f"v{row.version} {row.status:10} {len(row.approvals)}/{row.approvals_required} "
            f"approvals · {row.name} · {row.sha256[:12]}"
        )


@risk_rules_app.command("dry-run")
def risk_rules_dry_run(
    path: Annotated[Path, typer.Argument(help="a rule set (YAML)", exists=True, dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Validate a rule set and show what activating it would change, by district (nothing is
    stored; propose it on /risk/rules for approval)."""
    from citybrain.kit import clock
    from citybrain.kit.db import get_database
    from citybrain.kit.errors import CitybrainError
    from citybrain.risk.rules import compiled
    from citybrain.risk.rulesets import dry_run
    from citybrain.risk.service import active_rule_set

    _ensure_schema()
    text = path.read_text("utf-8")
    try:
        with get_database().unit_of_work() as session:
            base = active_rule_set(session)
            result = dry_run(session, compiled(text, base.version + 1), base, clock.now())
            session.rollback()
    except CitybrainError as error:
        raise _fail(error.message("en")) from None
    if as_json:
        print(result.model_dump_json())
        return
    console.print(f"{result.changed} of {result.subjects} would change colour 将变色")
    for district in result.by_district:
        console.print(
            f"  {district.name} {district.code}: {district.changed} "
            f"(red {district.to_red}, yellow {district.to_yellow}, green {district.to_green})"
        )


@risk_app.command("travel-facts")
def risk_travel_facts(
    screening: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="the output of `citybrain analysis screen --json` (default: screen now)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="screening day (default: the lake's last day)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Assert risk-area travel facts (中高风险地区旅居史) for the travellers a screening run
    found, by person key; those whose resident ID the lake never saw are counted only."""
    from citybrain.analysis.linkage import OUTPUT
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database
    from citybrain.risk.findings import facts_from_screening

    _ensure_schema()
    paths = LakePaths.default()
    if screening is not None:
        lines = [line for line in screening.read_text("utf-8").splitlines() if line.strip()]
        rows = list(json.loads(lines[-1])["key_persons"])
    else:
        from citybrain.analysis.screening import screen

        day = as_of.date() if as_of else _last_lake_day(paths)
        rows = screen(paths, get_database(), as_of=day).to_pylist()
    with get_database().unit_of_work() as session:
        summary = facts_from_screening(session, _actor(), rows, paths.root / OUTPUT)
    if as_json:
        print(json.dumps(summary.as_dict(), ensure_ascii=False, sort_keys=True))
    else:
        console.print(
            f"travel facts 行程事实: {summary.asserted}, {summary.already_known} known, "
            f"{summary.without_identity} without a resident ID"
        )


@risk_app.command("contact-facts")
def risk_contact_facts(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Assert the facts of every traced case (close and secondary contacts, the case); what
    the worker does on each analysis.contacts_listed event, idempotent."""
    from sqlalchemy import select

    from citybrain.analysis.models import ContactTrace
    from citybrain.datahub.lake import LakePaths
    from citybrain.kit.db import get_database
    from citybrain.risk.findings import facts_from_trace

    _ensure_schema()
    paths = LakePaths.default()
    database = get_database()
    with database.unit_of_work() as session:
        traces = [(t.case_key, t.result_path) for t in session.scalars(select(ContactTrace))]
    totals: dict[str, Any] = {"cases": len(traces), "asserted": {}, "already_known": 0}
    totals["lists_purged"] = 0
    for case_key, result_path in traces:
        if not (paths.root / result_path).exists():
            # Deleted at the end of its retention period; its facts were asserted long before.
            totals["lists_purged"] += 1
            continue
        with database.unit_of_work() as session:
            summary = facts_from_trace(
                session, _actor(), paths, case_key=case_key, result_path=result_path
            )
        for kind, n in summary.asserted.items():
            totals["asserted"][kind] = totals["asserted"].get(kind, 0) + n
        totals["already_known"] += summary.already_known
    if as_json:
        print(json.dumps(totals, ensure_ascii=False, sort_keys=True))
    else:
        console.print(f"{totals['cases']} traced cases: {totals['asserted']}")


@risk_app.command("sweep")
def risk_sweep(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary last")] = False,
) -> None:
    """Recompute colours and tiers whose time ran out and end expired overrides now (the
    worker does this every five minutes)."""
    from citybrain.risk.tasks import sweep_once

    _ensure_schema()
    counts = sweep_once()
    if as_json:
        print(json.dumps(counts, sort_keys=True))
    else:
        console.print(counts)


if __name__ == "__main__":
    app()

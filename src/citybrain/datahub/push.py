"""Agencies pushing their feeds over the API (接口推送), and the tokens they push with.

A pushed batch is the agency's file exactly as it would drop it in its folder: the same bytes,
encoding and columns the catalogue's contract says. It goes through the one intake path
(``Intake.ingest_bytes`` with ``channel=push``), so a push and a dropped file are validated,
pseudonymised, quarantined and counted the same way, and the same bytes are the same file
whichever way they came.

Every push names an idempotency key, scoped to the agency. The key and the batch are recorded
(``PushBatch``) in the transaction that records the file, so a retry after a lost answer gets
the first answer again and nothing is taken in twice; the same key with a different body is
refused (409), because it would otherwise be silently ignored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from citybrain.core.audit.service import Actor, record
from citybrain.core.authz import service as authz_service
from citybrain.core.authz.models import ApiToken
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Permission
from citybrain.datahub import lake
from citybrain.datahub.catalog import Source, catalog, get_source
from citybrain.datahub.models import CHANNEL_PUSH, IntakeFile, PushBatch
from citybrain.datahub.schemas import PushResult
from citybrain.datahub.service import Intake, intake_lock
from citybrain.kit import clock
from citybrain.kit.errors import CitybrainError, Conflict, InvalidInput, PermissionDenied

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The one media type a pushed batch of each file format carries.
MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "xlsx": XLSX}
KEY_PATTERN = r"^[!-~]{1,100}$"  # visible ASCII: keys end up in names and the audit log
_KEY = re.compile(KEY_PATTERN)
EARLIEST_DAY = dt.date(2000, 1, 1)
LATEST_DAY = dt.date(2099, 12, 31)
LOCK_WAIT_SECONDS = 10.0


class UnsupportedMediaType(CitybrainError):
    """The body's media type is not the file format agreed for the category."""

    status_code = 415
    code = "unsupported_media_type"


def media_type_of(source: Source) -> str:
    """The media type a batch of ``source`` must be pushed with."""
    assert source.file is not None
    return MEDIA_TYPES[source.file.format]


def agency_feeds(agency: str) -> list[Source]:
    """The feed categories the catalogue lists for ``agency`` (as it names it, e.g. 铁路)."""
    return [s for s in catalog().values() if s.is_feed and s.agency == agency]


def issue_agency_token(
    session: Session,
    actor: Actor,
    *,
    agency: str,
    categories: list[str] | None = None,
    name: str | None = None,
    ttl: dt.timedelta | None = dt.timedelta(days=365),
) -> tuple[ApiToken, str]:
    """Issue a push token for an agency (机构推送令牌), limited to ``categories`` (default: all
    the catalogue's feeds of that agency); audited. Returns the row and the token text, which
    is shown once."""
    feeds = {s.code for s in agency_feeds(agency)}
    if not feeds:
        known = sorted({s.agency for s in catalog().values() if s.is_feed})
        raise InvalidInput(
            f"数据目录中没有报送数据的机构“{agency}”，可选：{'、'.join(known)}",
            f"no agency {agency!r} feeds the catalogue; one of: {', '.join(known)}",
            field="agency",
        )
    chosen = sorted(set(categories)) if categories else sorted(feeds)
    foreign = [c for c in chosen if c not in feeds]
    if foreign:
        raise InvalidInput(
            f"{'、'.join(foreign)} 不是{agency}报送的数据类别",
            f"{', '.join(foreign)}: not categories {agency} feeds",
            field="categories",
        )
    return authz_service.issue_agency_token(
        session,
        actor,
        agency=agency,
        categories=chosen,
        name=name or f"push-{chosen[0]}",
        ttl=ttl,
    )


@contextmanager
def intake_turn(paths: lake.LakePaths, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the data directory's intake lock, waiting up to ``wait_seconds`` for a folder run
    or another push to finish (then 409 ``intake_busy``; a retry with the same key is safe).

    The caller commits inside the block: a folder run starting in between would otherwise
    take the parts this push published, but not yet committed, for a crash's orphans."""
    deadline = time.monotonic() + wait_seconds
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(intake_lock(paths))
                break
            except Conflict as busy:
                if busy.code != "intake_busy" or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
        yield


def _scope(who: Principal) -> str:
    # Keys are the agency's, not one token's: a retry still matches after a token rotation.
    return f"agency:{who.name}"[:80]


def _answer(session: Session, batch: PushBatch, row: IntakeFile) -> PushResult:
    """The answer to ``batch``, rebuilt from the ledger, so a replay answers exactly as the
    first time did."""
    first = session.scalar(select(func.min(PushBatch.id)).where(PushBatch.intake_file_id == row.id))
    if row.channel == CHANNEL_PUSH and first == batch.id:
        return PushResult(
            idempotency_key=batch.idempotency_key,
            category=batch.category,
            file_id=row.file_id,
            status=row.status,
            received=row.received,
            accepted=row.accepted,
            quarantined=row.quarantined,
            duplicate=row.duplicate,
            late=row.late,
            reasons=dict(sorted((row.reasons or {}).items())),
            error=row.error,
        )
    # The same bytes came before (dropped, or pushed under another key): nothing new.
    return PushResult(
        idempotency_key=batch.idempotency_key,
        category=batch.category,
        file_id=row.file_id,
        status="already_ingested",
        received=0,
        accepted=0,
        quarantined=0,
        duplicate=0,
        late=0,
        reasons={},
    )


def _refuse(error: CitybrainError, who: Principal, category: str, reason: str) -> CitybrainError:
    """``error``, keeping an audit row of the refused push after the rollback."""
    outcome = "denied" if isinstance(error, PermissionDenied) else "failed"
    return error.keep(
        lambda s: record(
            s,
            who.actor,
            "datahub.push",
            object_type="source_category",
            object_id=category,
            area_code=who.area_code,
            outcome=outcome,
            detail={"reason": reason},
        )
    )


def push_batch(
    session: Session,
    intake: Intake,
    who: Principal,
    *,
    category: str,
    key: str,
    body: bytes,
    media_type: str,
    day: dt.date | None = None,
) -> tuple[PushResult, bool]:
    """Take in one pushed batch within the caller's transaction (never commits); returns the
    answer and whether it is a replay of an earlier push with the same key.

    Refuses: an unknown category (404), one the token may not push (403, audited), a media
    type other than the category's format (415), an empty body or a day outside 2000–2099
    (422), and a key already used for a different batch (409, audited)."""
    who.require(Permission.DATAHUB_PUSH)
    source = get_source(category)
    if category not in who.categories or not source.is_feed or source.file is None:
        raise _refuse(
            PermissionDenied(
                f"本令牌无权推送“{source.name}”（{category}）",
                f"this token may not push {category}",
                code="category_not_allowed",
                field="category",
            ),
            who,
            category,
            "category_not_allowed",
        )
    if not _KEY.match(key):
        raise InvalidInput(
            "Idempotency-Key 须为1–100个可见ASCII字符",
            "Idempotency-Key must be 1–100 visible ASCII characters",
            field="Idempotency-Key",
        )
    expected = media_type_of(source)
    given = media_type.split(";", 1)[0].strip().lower()
    if given != expected:
        raise UnsupportedMediaType(
            f"“{source.name}”须以 {expected} 推送（收到 {given or '无'}）",
            f"{category} is pushed as {expected}, not {given or 'nothing'}",
            field="content-type",
        )
    if not body:
        raise InvalidInput("推送内容为空", "the batch is empty", field="body")
    delivered = day or clock.today_local()
    if not EARLIEST_DAY <= delivered <= LATEST_DAY:
        raise InvalidInput(
            "交付日须在2000年至2099年之间",
            "the delivery day must lie in 2000–2099",
            field="day",
        )
    scope = _scope(who)
    sha = hashlib.sha256(body).hexdigest()
    earlier = session.scalar(
        select(PushBatch).where(PushBatch.actor == scope, PushBatch.idempotency_key == key)
    )
    if earlier is not None:
        if earlier.body_sha256 != sha or earlier.category != category:
            raise _refuse(
                Conflict(
                    "该 Idempotency-Key 已用于另一批数据；新批次请换用新的键",
                    "this Idempotency-Key was used for a different batch; use a new key",
                    code="idempotency_key_reused",
                    field="Idempotency-Key",
                ),
                who,
                category,
                "idempotency_key_reused",
            )
        row = session.get(IntakeFile, earlier.intake_file_id)
        assert row is not None  # a foreign key
        answer = _answer(session, earlier, row)
        record(
            session,
            who.actor,
            "datahub.push",
            object_type="intake_file",
            object_id=row.file_id,
            area_code=who.area_code,
            detail={"category": category, "key": key, "replay": True},
        )
        return answer, True
    safe_key = re.sub(r"[^\w.-]", "_", key, flags=re.ASCII)[:60]
    name = f"push/{category}_{delivered:%Y%m%d}_{safe_key}{source.file.extension}"
    _result, row = intake.ingest_bytes(
        session, body, name, source, delivered=delivered, channel=CHANNEL_PUSH, actor=who.actor
    )
    if row is None:  # pragma: no cover - ingest_bytes records every batch it is given
        raise RuntimeError(f"intake recorded no ledger row for {name}")
    batch = PushBatch(
        actor=scope,
        idempotency_key=key,
        category=category,
        body_sha256=sha,
        intake_file_id=row.id,
        created_at=clock.now(),
    )
    session.add(batch)
    session.flush()
    answer = _answer(session, batch, row)
    record(
        session,
        who.actor,
        "datahub.push",
        object_type="intake_file",
        object_id=row.file_id,
        area_code=who.area_code,
        detail={"category": category, "key": key, "status": answer.status, "replay": False},
    )
    return answer, False

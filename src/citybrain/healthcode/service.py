"""Recording scans (扫码通行): the decision for each scan and the rows, in one transaction.

``record_scans`` takes a batch of verified scans (the codes' signatures were checked by the
caller, offline-capable, against the trust list), looks up each person's *current* colour
online through the risk engine (the colour inside the code is the fallback, for a person the
registry does not know), the compound's tier at compound gates, decides per the gate policy,
writes the scan rows, one ``scan_batches`` row, one audit row and one outbox event
(``healthcode.scans_recorded``) for the whole batch. Never commits: the scan writer
(``healthcode.writer``) or the caller's unit of work does, so every scan is answered only
after its row is committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, record, record_purge
from citybrain.core.authz.principal import Principal
from citybrain.core.authz.roles import Role
from citybrain.core.authz.scope import covers
from citybrain.core.authz.service import withdrawn_tokens
from citybrain.core.events.service import publish
from citybrain.core.geo.models import (
    PLACE_COMPOUND_GATE,
    PLACE_VENUE,
    VENUE_FEVER_CLINIC,
    VENUE_HOSPITAL,
    VENUE_SCHOOL,
    VENUE_SUBKINDS,
    Place,
)
from citybrain.healthcode import repository
from citybrain.healthcode.cards import CardHolder
from citybrain.healthcode.codes import CodeRefused, is_card, verify_code
from citybrain.healthcode.keys import trust_list_of
from citybrain.healthcode.models import (
    DECISION_DENY,
    DECISION_PASS,
    DIRECTION_ENTRY,
    DIRECTION_EXIT,
    DIRECTION_VISIT,
    SCAN_GATE,
    SCAN_PLACE,
)
from citybrain.healthcode.passes import pass_check
from citybrain.healthcode.policy import REASONS, Decision, decide
from citybrain.healthcode.settings import get_healthcode_settings
from citybrain.healthcode.trust import TrustList
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput, NotAuthenticated
from citybrain.risk import service as risk

TOPIC_SCANS_RECORDED = "healthcode.scans_recorded"
COLOUR_ONLINE = "online"  # the risk engine's current colour
COLOUR_CODE = "code"  # only the colour inside the code (person not in the registry)
COLOUR_UNKNOWN = "unknown"  # a printed card whose holder left the registry meanwhile


@dataclass(frozen=True)
class ScanRequest:
    """One verified scan waiting to be decided and recorded."""

    method: str  # gate: a device scanned a person's code; place: a person scanned a place code
    place_code: str
    person_ref: str
    code_colour: str
    direction: str
    device_token_id: int | None
    scanned_at: dt.datetime
    # A printed health card's number (纸质健康卡): no colour inside, only the online one counts.
    card_no: int | None = None


@dataclass(frozen=True)
class ScanOutcome:
    """A recorded scan and its decision."""

    scan_id: int
    place_code: str
    place_name: str
    person_ref: str
    direction: str
    colour: str
    colour_source: str
    decision: str
    reason_code: str
    reason_zh: str
    reason_en: str
    scanned_at: dt.datetime
    # A printed card's holder as the gate staff check them against the ID card (card scans).
    card: CardHolder | None = None

    @property
    def passed(self) -> bool:
        """Whether the person may pass."""
        return self.decision == DECISION_PASS


_WITHDRAWN = ("设备令牌已撤销或过期", "the device's token was revoked or expired")


class DeviceWithdrawn(NotAuthenticated):
    """Scans made with device tokens revoked or expired since the device's principal was
    remembered (``deps.DeviceTokenCache``): nothing of the batch was written. The scan writer
    answers these scans 401 and records the rest."""

    def __init__(self, token_ids: set[int]) -> None:
        super().__init__(*_WITHDRAWN, code="bad_token")
        self.token_ids = frozenset(token_ids)

    @staticmethod
    def refusal() -> NotAuthenticated:
        """The answer to one scan of a withdrawn token (a fresh error per waiting request)."""
        return NotAuthenticated(*_WITHDRAWN, code="bad_token")


def check_devices(session: Session, token_ids: set[int]) -> None:
    """Raise ``DeviceWithdrawn`` if any of ``token_ids`` no longer authenticates. Asked in the
    transaction that records scans, so a scan whose batch commits after a token's revocation
    is refused however recently its device was checked (one query per batch)."""
    withdrawn = withdrawn_tokens(session, token_ids)
    if withdrawn:
        raise DeviceWithdrawn(withdrawn)


class PlaceDirectory(Protocol):
    """Where ``record_scans`` finds places: the database, or a cache in front of it."""

    def places(self, session: Session, codes: set[str]) -> dict[str, repository.PlaceAtGate]:
        """The places of ``codes`` that exist, by code."""
        ...


class _PlacesFromDatabase:
    def places(self, session: Session, codes: set[str]) -> dict[str, repository.PlaceAtGate]:
        return repository.places_at_gate(session, codes)


FROM_DATABASE: PlaceDirectory = _PlacesFromDatabase()


def _current_colour(
    person: repository.PersonAtGate, version: int | None, now: dt.datetime
) -> str | None:
    """The person's colour from its stored row, when the row is current; None when only the
    risk engine can say (it recomputes a row due for a recheck or computed by another rule
    set, and ends an override that ran out: both writes). The same test as
    ``risk.service.colours_of`` makes, on a few columns instead of the whole row and its
    reasons, because a gate needs the colour alone."""
    if person.colour is None:
        return "green"  # no row: no facts
    if version is None or person.rule_set_version != version:
        return None
    if person.recheck_at is not None and clock.as_utc(person.recheck_at) <= now:
        return None
    if person.override_until is not None:
        if clock.as_utc(person.override_until) <= now:
            return None
        if person.override_colour:
            return person.override_colour
    return person.colour


def _colours(
    session: Session,
    persons: dict[str, repository.PersonAtGate],
    version: int | None,
    now: dt.datetime,
) -> dict[str, str]:
    """Person ref -> current colour (online), the stale ones through the risk engine."""
    colours: dict[str, str] = {}
    stale: dict[str, list[str]] = {}
    for ref, person in persons.items():
        colour = _current_colour(person, version, now)
        if colour is None:
            stale.setdefault(person.subject, []).append(ref)
        else:
            colours[ref] = colour
    if stale:
        for subject, view in risk.colours_of(session, list(stale), now=now).items():
            for ref in stale.get(subject, ()):
                colours[ref] = view.colour
    return colours


def _tiers(session: Session, codes: set[str], version: int | None) -> dict[str, str]:
    """The current tier of each compound. One read for all of them; a stored tier that is
    due for a recheck or was computed by another rule set goes through ``risk.tier_of``,
    which recomputes it, exactly as a lone ``tier_of`` would (a batch of scans touches many
    compounds, and one ``tier_of`` each cost more than the rest of the batch)."""
    if not codes:
        return {}
    if version is None:
        version = risk.active_rule_set(session).version
    stored = repository.stored_tiers(session, codes)
    now = clock.now()
    out: dict[str, str] = {}
    for code in codes:
        row = stored.get(code)
        if row is None:
            out[code] = "green"
        elif row.rule_set_version == version and (
            row.recheck_at is None or clock.as_utc(row.recheck_at) > now
        ):
            out[code] = row.tier
        else:
            out[code] = risk.tier_of(session, code, now=now).tier
    return out


def record_scans(
    session: Session,
    requests: Sequence[ScanRequest],
    *,
    places: PlaceDirectory = FROM_DATABASE,
) -> list[ScanOutcome]:
    """Decide and record ``requests`` (one batch); outcomes in the same order. Never commits.

    Per batch, not per scan: one read for the persons, their stored colours and the active
    rule-set version; one for the compounds' tiers (gates of compounds only); one insert for
    the rows; one batch row, one audit row, one outbox event. ``places``: where the places are
    looked up (the scan writer keeps them in memory; the rows' foreign key still refuses a
    place deleted meanwhile).

    Raises InvalidInput when a request names a place that does not exist (the caller checks
    places before queueing, so this means the place was deleted meanwhile), and
    ``DeviceWithdrawn`` when a request's device token was revoked or expired meanwhile
    (its device was authenticated from memory)."""
    if not requests:
        return []
    now = clock.now()
    check_devices(session, {r.device_token_id for r in requests if r.device_token_id is not None})
    wanted = {r.place_code for r in requests}
    found = places.places(session, wanted)
    missing = sorted(wanted - set(found))
    if missing:
        raise InvalidInput(
            f"场所 {missing[0]} 不存在", f"place {missing[0]} does not exist", field="place_code"
        )
    version, persons = repository.persons_at_gate(session, [r.person_ref for r in requests])
    colours = _colours(session, persons, version, now)
    tiers = _tiers(
        session,
        {
            code
            for r in requests
            if r.method == SCAN_GATE and found[r.place_code].kind == PLACE_COMPOUND_GATE
            for code in (found[r.place_code].compound_code,)
            if code
        },
        version,
    )
    rows = []
    decided: list[tuple[Decision, str, str]] = []
    batch = uuid.uuid4().hex
    for request in requests:
        place = found[request.place_code]
        person = persons.get(request.person_ref)
        online = colours.get(request.person_ref) if person else None
        colour = online if online is not None else request.code_colour
        source = COLOUR_ONLINE if online is not None else COLOUR_CODE
        if request.method == SCAN_PLACE:
            decision = Decision(DECISION_PASS, REASONS["checked_in"])
        elif request.card_no is not None and online is None:
            # The card was checked a moment ago, its holder withdrawn since: no colour to go by.
            colour, source = COLOUR_UNKNOWN, COLOUR_UNKNOWN
            decision = Decision(DECISION_DENY, REASONS["card_holder_unknown"])
        else:
            decision = decide(
                place_kind=place.kind,
                direction=request.direction,
                colour=colour,
                tier=tiers.get(place.compound_code or ""),
                resident=bool(
                    person and place.compound_code and person.area_code == place.compound_code
                ),
                # Asked only where a pass can change the answer (a green resident leaving a
                # closed compound): no query for any other scan.
                has_pass=pass_check(
                    session, request.person_ref, place.compound_code, request.scanned_at
                )
                if place.kind == PLACE_COMPOUND_GATE
                else False,
            )
        decided.append((decision, colour, source))
        rows.append(
            {
                "method": request.method,
                "place_code": request.place_code,
                "person_ref": request.person_ref,
                "subject": person.subject if person else None,
                "direction": request.direction,
                "colour": colour,
                "colour_source": source,
                "decision": decision.decision,
                "reason": decision.reason.code,
                "device_token_id": request.device_token_id,
                "scanned_at": request.scanned_at,
                "batch": batch,
                "card_id": request.card_no,
            }
        )
    ids = repository.insert_scans(session, rows)
    repository.insert_batch(session, batch=batch, ids=ids, recorded_at=clock.now())
    methods = Counter(r.method for r in requests)
    denied = sum(1 for d, _, _ in decided if d.decision == DECISION_DENY)
    counts = {
        "batch": batch,
        "first_id": min(ids),
        "last_id": max(ids),
        "count": len(ids),
        "gate": methods.get(SCAN_GATE, 0),
        "place": methods.get(SCAN_PLACE, 0),
        "denied": denied,
        # Printed health cards among the gate scans (纸质健康卡): how often gates checked an ID.
        "cards": sum(1 for r in requests if r.card_no is not None),
    }
    record(
        session,
        SYSTEM,
        "healthcode.scans_record",
        object_type="scan_batch",
        object_id=batch,
        detail=counts,
    )
    publish(session, TOPIC_SCANS_RECORDED, counts, key=batch)
    return [
        ScanOutcome(
            scan_id=scan_id,
            place_code=request.place_code,
            place_name=found[request.place_code].name,
            person_ref=request.person_ref,
            direction=request.direction,
            colour=colour,
            colour_source=source,
            decision=decision.decision,
            reason_code=decision.reason.code,
            reason_zh=decision.reason.zh,
            reason_en=decision.reason.en,
            scanned_at=request.scanned_at,
        )
        for scan_id, request, (decision, colour, source) in zip(ids, requests, decided, strict=True)
    ]


def place_scan_request(
    place_code: str, person_ref: str, colour: str, *, at: dt.datetime | None = None
) -> ScanRequest:
    """A resident's "I was here" at a place whose code they scanned (场所码)."""
    return ScanRequest(
        method=SCAN_PLACE,
        place_code=place_code,
        person_ref=person_ref,
        code_colour=colour,
        direction=DIRECTION_VISIT,
        device_token_id=None,
        scanned_at=at or clock.now(),
    )


# A second check-in at the same place within this time shows the visit just recorded
# instead of recording another (a double tap, a phone that sends twice).
REPEAT_CHECK_IN = dt.timedelta(minutes=5)


def recent_visit(
    session: Session, person_ref: str, place_code: str, *, within: dt.timedelta
) -> ScanOutcome | None:
    """The person's latest check-in at the place (场所码) within ``within`` of now, if any: a
    second tap on the button shows it again instead of recording the visit twice."""
    row = repository.latest_place_scan(session, person_ref, place_code, clock.now() - within)
    if row is None:
        return None
    place = session.get(Place, row.place_code)
    reason = REASONS[row.reason]
    return ScanOutcome(
        scan_id=row.id,
        place_code=row.place_code,
        place_name=place.name if place is not None else row.place_code,
        person_ref=row.person_ref,
        direction=row.direction,
        colour=row.colour,
        colour_source=row.colour_source,
        decision=row.decision,
        reason_code=reason.code,
        reason_zh=reason.zh,
        reason_en=reason.en,
        scanned_at=row.scanned_at,
    )


def purge_expired_scans(session: Session, *, now: dt.datetime | None = None) -> int:
    """Delete the scans older than their retention period (the catalogue's ``gate_scan``
    retention, 30 days) that are already in the lake; audited when any went. Never commits."""
    from citybrain.datahub.catalog import get_source

    days = get_source("gate_scan").retention_days
    before = (now or clock.now()) - dt.timedelta(days=days)
    gone = repository.purge_scans_before(session, before)
    record_purge(
        session,
        "healthcode.scans_purge",
        object_type="scan",
        deleted=gone,
        before=before,
        retention_days=days,
    )
    return gone


# -- offline scans ------------------------------------------------------------------------

COLOUR_OFFLINE = "offline"  # the colour inside the code, decided by a gate without network
OFFLINE_STATUS_RECORDED = "recorded"
OFFLINE_STATUS_DUPLICATE = "duplicate"
OFFLINE_STATUS_REFUSED = "refused"
# The reasons stored with an offline scan: the gate decided by the code's own colour.
OFFLINE_REASONS = {DECISION_PASS: "offline_pass", DECISION_DENY: "offline_deny"}
_CLIENT_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
MAX_CLIENT_ID = 64

OFFLINE_REFUSALS: dict[str, tuple[str, str]] = {
    "bad_client_id": (
        "离线记录编号无效（1–64位字母、数字、-、_）",
        "client_id must be 1-64 letters, digits, - or _",
    ),
    "bad_direction": ("方向无效（entry 或 exit）", "direction must be entry or exit"),
    "bad_decision": ("判断结果无效（pass 或 deny）", "decision must be pass or deny"),
    "bad_time": (
        "扫码时间无效（须为带时区的 ISO 8601 时间）",
        "scanned_at must be ISO 8601 with a zone",
    ),
    "too_old": (
        "扫码时间过早，超出离线上传期限",
        "scanned_at is older than offline uploads may be",
    ),
    "in_future": ("扫码时间晚于当前时间（设备时间有误？）", "scanned_at is in the future (clock?)"),
    "wrong_place": ("设备只能上传其所属场所的扫码", "a device uploads scans of its own place only"),
    "no_place": ("请填写扫码场所", "name the place of the scan"),
    "place_not_found": (
        "场所不存在或不在辖区内",
        "the place does not exist or lies outside your area",
    ),
    "card_offline": (
        "纸质健康卡不含颜色，须联网核验，离线扫卡不予记录",
        "a printed health card holds no colour: it is checked online only, never offline",
    ),
}


@dataclass(frozen=True)
class OfflineScan:
    """One scan a gate made offline, as uploaded (unchecked)."""

    client_id: str
    code: str
    direction: str
    place_code: str | None
    scanned_at: str
    decision: str


@dataclass(frozen=True)
class OfflineResult:
    """What became of one uploaded offline scan: recorded, duplicate or refused (with the
    reason and the item's field), the colours, and whether the gate must follow up
    (``flagged``: passed offline, but the person's colour now is not green)."""

    client_id: str
    status: str
    scan_id: int | None = None
    reason_code: str | None = None
    reason_zh: str | None = None
    reason_en: str | None = None
    field: str | None = None
    code_colour: str | None = None
    current_colour: str | None = None
    flagged: bool = False


@dataclass
class _Accepted:
    index: int
    item: OfflineScan
    key: str
    place_code: str
    scanned_at: dt.datetime
    person_ref: str
    code_colour: str


def _refused(item: OfflineScan, reason: str, field: str) -> OfflineResult:
    zh, en = OFFLINE_REFUSALS[reason]
    return OfflineResult(item.client_id, OFFLINE_STATUS_REFUSED, None, reason, zh, en, field)


def _offline_time(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.UTC)


def _trust_as_of_scans(session: Session) -> TrustList:
    """The keys that verify offline scans, each until its ``verify_until``: checked with the
    scan's own time, a code is judged by the trust list as it was when it was scanned."""
    return trust_list_of(repository.keys_for_offline_scans(session))


def record_offline_scans(
    session: Session,
    who: Principal,
    items: Sequence[OfflineScan],
    *,
    now: dt.datetime | None = None,
) -> list[OfflineResult]:
    """Record the scans a gate made offline (离线扫码), uploaded by ``who`` (a device, or a
    staff member with ``device.scan``); results in the order given. Never commits.

    Each item is checked on its own, and a bad one never blocks the others: its client id,
    direction and decision; its time (``offline_max_age_hours``, default 72 h, at most; not
    in the future beyond the clock skew); its place (a device's own, or one in the staff
    member's area); its code's signature against the trust list as of the scan's time, and
    its expiry relative to that time. An item whose (scanner, client id) is recorded already
    is a duplicate, not recorded again. The accepted ones are written as scans with
    ``colour_source`` "offline" (the colour inside the code) and the gate's own decision, with
    one scan batch row, one audit row and the writer's outbox event, so the lake export and
    the cockpit take them like any scan. Each result carries the person's current colour;
    ``flagged`` when the gate let them through offline but they are not green now."""
    settings = get_healthcode_settings()
    if who.kind == "device":
        check_devices(session, {who.id})
    at = now or clock.now()
    skew = dt.timedelta(seconds=settings.clock_skew_seconds)
    oldest = at - dt.timedelta(hours=settings.offline_max_age_hours)
    results: list[OfflineResult | None] = [None] * len(items)
    prefix = f"{who.kind}:{who.id}:"
    keys = {
        i: prefix + item.client_id
        for i, item in enumerate(items)
        if 0 < len(item.client_id) <= MAX_CLIENT_ID and set(item.client_id) <= _CLIENT_ID_CHARS
    }
    recorded = repository.offline_scans_by_key(session, keys.values())
    wanted_places = {
        (item.place_code or "").strip() for item in items if (item.place_code or "").strip()
    }
    if who.kind == "device":
        wanted_places.add(who.name)
    places = repository.places_at_gate(session, wanted_places)
    trust = _trust_as_of_scans(session)
    accepted: list[_Accepted] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = keys.get(i)
        if key is None:
            results[i] = _refused(item, "bad_client_id", "client_id")
            continue
        if key in recorded or key in seen:
            scan_id = recorded.get(key)
            results[i] = OfflineResult(item.client_id, OFFLINE_STATUS_DUPLICATE, scan_id)
            continue
        if item.direction not in (DIRECTION_ENTRY, DIRECTION_EXIT):
            results[i] = _refused(item, "bad_direction", "direction")
            continue
        if item.decision not in OFFLINE_REASONS:
            results[i] = _refused(item, "bad_decision", "decision")
            continue
        scanned_at = _offline_time(item.scanned_at)
        if scanned_at is None:
            results[i] = _refused(item, "bad_time", "scanned_at")
            continue
        if scanned_at < oldest:
            results[i] = _refused(item, "too_old", "scanned_at")
            continue
        if scanned_at > at + skew:
            results[i] = _refused(item, "in_future", "scanned_at")
            continue
        place_code = (item.place_code or "").strip()
        if who.kind == "device":
            if place_code and place_code != who.name:
                results[i] = _refused(item, "wrong_place", "place_code")
                continue
            place_code = who.name
        elif not place_code:
            results[i] = _refused(item, "no_place", "place_code")
            continue
        place = places.get(place_code)
        if place is None or not place.area_code.startswith(who.area_code):
            results[i] = _refused(item, "place_not_found", "place_code")
            continue
        if is_card(item.code):
            results[i] = _refused(item, "card_offline", "code")
            continue
        try:
            verified = verify_code(item.code.strip(), trust, now=scanned_at)
        except CodeRefused as refused:
            results[i] = OfflineResult(
                item.client_id,
                OFFLINE_STATUS_REFUSED,
                None,
                refused.reason_code,
                refused.message_zh,
                refused.message_en,
                "code",
            )
            continue
        seen[key] = i
        accepted.append(
            _Accepted(i, item, key, place_code, scanned_at, verified.person_ref, verified.colour)
        )
    _write_offline(session, who, accepted, results, at)
    return [result for result in results if result is not None]


def _write_offline(
    session: Session,
    who: Principal,
    accepted: list[_Accepted],
    results: list[OfflineResult | None],
    at: dt.datetime,
) -> None:
    """Write the accepted offline scans (one batch, audit row and event) and fill in their
    results, with the persons' current colours."""
    if not accepted:
        return
    version, persons = repository.persons_at_gate(session, [a.person_ref for a in accepted])
    colours = _colours(session, persons, version, at)
    batch = uuid.uuid4().hex
    rows = [
        {
            "method": SCAN_GATE,
            "place_code": a.place_code,
            "person_ref": a.person_ref,
            "subject": persons[a.person_ref].subject if a.person_ref in persons else None,
            "direction": a.item.direction,
            "colour": a.code_colour,
            "colour_source": COLOUR_OFFLINE,
            "decision": a.item.decision,
            "reason": OFFLINE_REASONS[a.item.decision],
            "device_token_id": who.id if who.kind == "device" else None,
            "scanned_at": a.scanned_at,
            "batch": batch,
            "offline_key": a.key,
        }
        for a in accepted
    ]
    try:
        # A savepoint: a concurrent upload of the same queue may have recorded some of these
        # since they were looked up; then they are duplicates and the rest go in again.
        with session.begin_nested():
            ids = repository.insert_offline_scans(session, rows)
    except IntegrityError:
        taken = repository.offline_scans_by_key(session, [a.key for a in accepted])
        for a in accepted:
            if a.key in taken:
                results[a.index] = OfflineResult(
                    a.item.client_id, OFFLINE_STATUS_DUPLICATE, taken[a.key]
                )
        kept = [(a, row) for a, row in zip(accepted, rows, strict=True) if a.key not in taken]
        if not kept:
            return
        accepted = [a for a, _ in kept]
        ids = repository.insert_offline_scans(session, [row for _, row in kept])
    repository.insert_batch(session, batch=batch, ids=ids, recorded_at=clock.now())
    flagged = 0
    for a, scan_id in zip(accepted, ids, strict=True):
        current = colours.get(a.person_ref) if a.person_ref in persons else None
        flag = a.item.decision == DECISION_PASS and current is not None and current != "green"
        flagged += flag
        results[a.index] = OfflineResult(
            a.item.client_id,
            OFFLINE_STATUS_RECORDED,
            scan_id,
            code_colour=a.code_colour,
            current_colour=current,
            flagged=flag,
        )
    counts = {
        "batch": batch,
        "first_id": min(ids),
        "last_id": max(ids),
        "count": len(ids),
        "gate": len(ids),
        "place": 0,
        "denied": sum(1 for a in accepted if a.item.decision == DECISION_DENY),
        "offline": len(ids),
        "flagged": flagged,
    }
    record(
        session,
        who.actor,
        "healthcode.offline_scans_record",
        object_type="scan_batch",
        object_id=batch,
        detail=counts,
    )
    publish(session, TOPIC_SCANS_RECORDED, counts, key=batch)


# Whose place codes an enterprise's or a school's admin prints (场所码): their area's venues of
# their own sort. Compound gates, checkpoints, stations and airports, hospitals and fever
# clinics are the command's and the health commission's: a code posted there records who
# passed, and a wrong one would put people where they never were.
_PRINTABLE_VENUES: dict[str, tuple[str, ...]] = {
    Role.ENTERPRISE_ADMIN: tuple(
        s for s in VENUE_SUBKINDS if s not in (VENUE_SCHOOL, VENUE_HOSPITAL, VENUE_FEVER_CLINIC)
    ),
    Role.SCHOOL_ADMIN: (VENUE_SCHOOL,),
}


def printable_subkinds(who: Principal) -> tuple[str, ...] | None:
    """The venue subkinds whose codes ``who`` may print, or None for every place of their
    area (the compounds' hierarchy of staff)."""
    return _PRINTABLE_VENUES.get(who.role)


def may_print(who: Principal, place: Place) -> bool:
    """Whether ``who`` may print ``place``'s code: in their area, and of their sort."""
    if not covers(who, place.area_code):
        return False
    subkinds = printable_subkinds(who)
    return subkinds is None or (place.kind == PLACE_VENUE and place.subkind in subkinds)

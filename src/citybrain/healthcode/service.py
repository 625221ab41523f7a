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

from sqlalchemy.orm import Session

from citybrain.core.audit.service import SYSTEM, record
from citybrain.core.events.service import publish
from citybrain.core.geo.models import PLACE_COMPOUND_GATE
from citybrain.healthcode import repository
from citybrain.healthcode.models import (
    DECISION_DENY,
    DECISION_PASS,
    DIRECTION_VISIT,
    SCAN_GATE,
    SCAN_PLACE,
)
from citybrain.healthcode.passes import pass_check
from citybrain.healthcode.policy import REASONS, Decision, decide
from citybrain.kit import clock
from citybrain.kit.errors import InvalidInput
from citybrain.risk import service as risk

TOPIC_SCANS_RECORDED = "healthcode.scans_recorded"
COLOUR_ONLINE = "online"  # the risk engine's current colour
COLOUR_CODE = "code"  # only the colour inside the code (person not in the registry)


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

    @property
    def passed(self) -> bool:
        """Whether the person may pass."""
        return self.decision == DECISION_PASS


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
    places before queueing, so this means the place was deleted meanwhile)."""
    if not requests:
        return []
    now = clock.now()
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
            }
        )
    ids = repository.insert_scans(session, rows)
    repository.insert_batch(
        session,
        batch=batch,
        first_id=min(ids),
        last_id=max(ids),
        count=len(ids),
        recorded_at=clock.now(),
    )
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


def purge_expired_scans(session: Session, *, now: dt.datetime | None = None) -> int:
    """Delete the scans older than their retention period (the catalogue's ``gate_scan``
    retention, 30 days) that are already in the lake; audited when any went. Never commits."""
    from citybrain.datahub.catalog import get_source

    days = get_source("gate_scan").retention_days
    before = (now or clock.now()) - dt.timedelta(days=days)
    gone = repository.purge_scans_before(session, before)
    if gone:
        record(
            session,
            SYSTEM,
            "healthcode.scans_purge",
            object_type="scan",
            detail={"deleted": gone, "before": before.isoformat(), "retention_days": days},
        )
    return gone

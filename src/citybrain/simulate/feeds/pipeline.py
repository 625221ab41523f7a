"""A day of agency files: build each feed's rows, inject the faults, lay out and write files.

Per feed and day: the builder's rows get field faults (typos, bad check characters, missing
phones) and malformed rows, are rendered in the agency's formats, then duplicated (in the same
file or the next day's), held back (delivered in a later day's ``_supplement`` file) and put in
time order, except in the files chosen to be out of order. Every random choice comes from a
generator seeded by (run seed, feed, day, purpose), so a run is reproducible byte for byte and
a feed's faults do not depend on which other feeds exist.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.config import FaultRates
from citybrain.simulate.feeds.agencies import BUILDERS, DayLike, Lookups, Rows, note_health
from citybrain.simulate.feeds.faults import (
    FAULT_NAMES,
    OUT_OF_ORDER,
    Fault,
    break_checksums,
    draw,
    present,
    replace_rows,
    typo_names,
)
from citybrain.simulate.feeds.render import (
    enum_raw,
    format_seconds,
    format_times,
    one_chunk,
    seconds,
)
from citybrain.simulate.feeds.shapes import SHAPES, Col, FeedShape
from citybrain.simulate.feeds.writers import Written, write_text, write_xlsx

Int32s = npt.NDArray[np.int32]
Int64s = npt.NDArray[np.int64]
Bits = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

SNAPSHOT_EVERY_DAYS = 7  # rosters and the registry: sent on the first day and weekly after
SURNAME_TYPO_SHARE = 0.3
# A date in a format no parser of the contract accepts: what a clerk types into a free field.
WRONG_DATETIME = "%Y年%m月%d日 %H时%M分"
WRONG_DATE = "%Y年%m月%d日"
FEED_INDEX = {shape.category: i for i, shape in enumerate(SHAPES)}


class RecordSink(Protocol):
    """Where the truth about each written row goes (``truth.TruthWriter``)."""

    def add_records(
        self,
        category: str,
        file: str,
        written: Written,
        person: Int32s,
        bits: Bits,
    ) -> None:
        """Record the owner and faults of every row of a written file."""


@dataclass
class Batch:
    """Rendered rows with what the truth needs: owner, time, faults, broken-line marks."""

    table: pa.Table
    person: Int32s
    t: Int64s
    bits: Bits
    cut: Bools

    def take(self, idx: npt.NDArray[np.integer]) -> Batch:
        """The rows at ``idx``."""
        return Batch(
            _take(self.table, idx),
            self.person[idx],
            self.t[idx],
            self.bits[idx],
            self.cut[idx],
        )

    def __len__(self) -> int:
        return len(self.person)


def _take(table: pa.Table, idx: npt.NDArray[np.integer]) -> pa.Table:
    # Arrow gathers from one contiguous chunk several times faster than across chunks, and a
    # gather beats a boolean filter: combine first, then take by index.
    if any(column.num_chunks > 1 for column in table.columns):
        table = table.combine_chunks()
    return table.take(pa.array(idx, pa.int64()))


@dataclass
class Part:
    """Rows of a batch bound for a file, with fault bits they gain on the way (a resent row is
    a duplicate); kept as indices so that a file costs one gather, not one per step."""

    batch: Batch
    idx: npt.NDArray[np.int64]
    extra: int = 0

    @staticmethod
    def whole(batch: Batch) -> Part:
        """All rows of a batch."""
        return Part(batch, np.arange(len(batch), dtype=np.int64))

    def materialise(self) -> Batch:
        """The rows as a batch of their own (for rows queued for a later day)."""
        out = self.batch.take(self.idx)
        out.bits = out.bits | np.uint8(self.extra)
        return out


@dataclass
class FeedStats:
    """What was written for one feed over the run."""

    files: int = 0
    records: int = 0
    faults: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    out_of_order_files: list[str] = field(default_factory=list)


def _rng(seed: int, category: str, day: int, purpose: int) -> np.random.Generator:
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, FEED_INDEX[category], day, purpose]))
    )


def render(shape: FeedShape, values: Mapping[str, pa.Array], n: int) -> pa.Table:
    """The agency's columns, formatted: strings, or integers where the format has numbers."""
    columns: dict[str, pa.Array] = {}
    for col in shape.columns:
        arr = values.get(col.field)
        if arr is None:
            arr = pa.nulls(n, pa.string())
        arr = one_chunk(arr)
        columns[col.column] = _render_column(shape, col, arr)
    return pa.table(columns)


def _render_column(shape: FeedShape, col: Col, arr: pa.Array) -> pa.Array:
    if col.type in ("datetime", "date") and (
        pa.types.is_timestamp(arr.type) or pa.types.is_date32(arr.type)
    ):
        assert col.fmt is not None
        return format_times(arr, col.fmt)
    if col.type == "enum" and col.values is not None:
        return enum_raw(arr, col.values)
    numeric = (shape.format == "xlsx" and col.type == "int") or col.json_number
    if numeric:
        # Digits only: int64 holds them; a phone's leading 1 keeps its width.
        return pc.cast(arr, pa.int64())
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _bad_date_column(shape: FeedShape, values: Mapping[str, pa.Array]) -> Col | None:
    """The date column whose value a malformed row gets wrong: a fully present one first."""
    candidates = [c for c in shape.columns if c.type in ("datetime", "date")]
    for col in candidates:
        arr = values.get(col.field)
        if arr is not None and arr.null_count == 0:
            return col
    return candidates[0] if candidates else None


def _block_shuffle(n: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """A permutation that keeps runs of rows in order but puts the runs out of order.

    That is how an agency's out-of-order file looks: uploads from several collectors (or hours
    re-sent after a failure) concatenated as they arrived, each run itself in time order.
    """
    if n < 2:
        return np.arange(n)
    blocks = int(rng.integers(2, min(8, n) + 1))
    cuts = np.sort(rng.choice(np.arange(1, n), blocks - 1, replace=False))
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [n]])
    shuffled = rng.permutation(blocks)
    if np.all(shuffled == np.arange(blocks)):
        shuffled = np.roll(shuffled, 1)
    return np.concatenate([np.arange(starts[b], ends[b]) for b in shuffled])


# The time column each model table is kept in order by (see ``time_ordered``).
TIME_COLUMNS = {
    "cell": "start",
    "transit": "ts",
    "vehicle": "ts",
    "rides": "start",
    "travel": "depart",
    "roaming": "ts",
    "hotel": "checkin",
    "health": "ts",
}


@dataclass
class _OrderedDay:
    date: dt.date
    tables: dict[str, pa.Table]


def time_ordered(day: DayLike) -> DayLike:
    """The day with its event tables sorted by time (stable).

    Sorting the model's tables once, before any look-up or formatting, keeps every later
    gather near-sequential; a random gather over millions of strings costs ten times more.
    """
    tables = dict(day.tables)
    for name, column in TIME_COLUMNS.items():
        table = tables.get(name)
        if table is None or table.num_rows < 2:
            continue
        secs, _ = seconds(table.column(column))
        if np.all(secs[1:] >= secs[:-1]):
            continue
        tables[name] = _take(table, np.argsort(secs, kind="stable"))
    return _OrderedDay(day.date, tables)


class FeedPipeline:
    """Writes every agency's files for each day of a run and reports the truth of each row."""

    def __init__(
        self,
        lookups: Lookups,
        out: Path,
        *,
        seed: int,
        rates: FaultRates,
        days: int,
        sink: RecordSink | None = None,
        categories: tuple[str, ...] | None = None,
    ) -> None:
        self.lk = lookups
        self.out = out
        self.seed = seed
        self.rates = rates
        self.days = days
        self.sink = sink
        self.shapes = [s for s in SHAPES if categories is None or s.category in categories]
        self.stats: dict[str, FeedStats] = {s.category: FeedStats() for s in self.shapes}
        # Rows waiting for a later file: late rows by delivery day, duplicates for tomorrow.
        self._late: dict[str, dict[int, list[Batch]]] = defaultdict(lambda: defaultdict(list))
        self._carry: dict[str, list[Batch]] = defaultdict(list)

    # --- the day -----------------------------------------------------------------------------

    def write_day(self, index: int, day: DayLike) -> None:
        """Write all feeds' files of day ``index`` (0-based) of the run."""
        note_health(self.lk, day)
        day = time_ordered(day)
        for shape in self.shapes:
            self._feed_day(shape, index, day)

    def _feed_day(self, shape: FeedShape, index: int, day: DayLike) -> None:
        category = shape.category
        last = index >= self.days - 1
        main: list[Part] = [Part.whole(b) for b in self._carry.pop(category, [])]
        if not shape.snapshot or index % SNAPSHOT_EVERY_DAYS == 0:
            rows = BUILDERS[category](self.lk, day, _rng(self.seed, category, index, 0))
            if rows is not None and len(rows):
                batch = self._faulty_batch(shape, rows, index)
                main.extend(self._spread(shape, batch, index, last))
        stamp = f"{day.date:%Y%m%d}"
        # A file only for a day with rows (all of a day's rows may have been held back).
        main = [p for p in main if len(p.idx)]
        if main:
            self._write(shape, main, f"{category}_{stamp}", index, day.date, 1)
        late = [Part.whole(b) for b in self._late[category].pop(index, []) if len(b)]
        if late:
            self._write(shape, late, f"{category}_{stamp}_supplement", index, day.date, 2)

    def _faulty_batch(self, shape: FeedShape, rows: Rows, index: int) -> Batch:
        """Field faults and malformed rows, then rendering."""
        rng = _rng(self.seed, shape.category, index, 1)
        rates = self.rates
        n = len(rows)
        values = dict(rows.values)
        bits = np.zeros(n, dtype=np.uint8)

        name = shape.first_of_type("name")
        if name is not None and name.field in values:
            arr = values[name.field]
            mask = draw(rates.name_typo, present(arr), rng)
            if mask.any():
                changed = typo_names(arr.filter(pa.array(mask)), SURNAME_TYPO_SHARE, rng)
                values[name.field] = replace_rows(arr, mask, changed)
                bits[mask] |= np.uint8(Fault.NAME_TYPO)

        ident = shape.first_of_type("id_number")
        if ident is not None and ident.field in values:
            arr = values[ident.field]
            # Only resident IDs have a check character (a passport in the same column has none).
            eligible = present(arr) & np.asarray(
                pc.fill_null(pc.equal(pc.utf8_length(arr), 18), False).to_numpy(
                    zero_copy_only=False
                )
            )
            mask = draw(rates.bad_checksum, eligible, rng)
            if mask.any():
                values[ident.field] = replace_rows(
                    arr, mask, break_checksums(arr.filter(pa.array(mask)), rng)
                )
                bits[mask] |= np.uint8(Fault.BAD_CHECKSUM)

        phone = shape.first_of_type("phone")
        if phone is not None and phone.field in values:
            arr = values[phone.field]
            mask = draw(rates.missing_phone, present(arr), rng)
            if mask.any():
                values[phone.field] = replace_rows(arr, mask, None)
                bits[mask] |= np.uint8(Fault.MISSING_PHONE)

        table = render(shape, values, n)
        cut = np.zeros(n, dtype=np.bool_)
        malformed = draw(rates.malformed, np.ones(n, dtype=np.bool_), rng)
        if malformed.any():
            bits[malformed] |= np.uint8(Fault.MALFORMED)
            table, cut = self._malform(shape, values, table, malformed, rng)
        return Batch(table, rows.person.astype(np.int32), rows.t.astype(np.int64), bits, cut)

    def _malform(
        self,
        shape: FeedShape,
        values: Mapping[str, pa.Array],
        table: pa.Table,
        malformed: Bools,
        rng: np.random.Generator,
    ) -> tuple[pa.Table, Bools]:
        """Unparseable rows: half get a date in a wrong format, half are cut off (a CSV line
        with missing columns, a JSON line broken off, an XLSX row with its later cells empty)."""
        date_col = _bad_date_column(shape, values)
        bad_date = malformed & (rng.random(len(malformed)) < 0.5)
        if date_col is None:
            bad_date[:] = False
        cut = malformed & ~bad_date
        if bad_date.any() and date_col is not None:
            src = values[date_col.field]
            secs, _ = seconds(src.filter(pa.array(bad_date)))
            wrong = format_seconds(secs, WRONG_DATE if date_col.type == "date" else WRONG_DATETIME)
            i = table.column_names.index(date_col.column)
            column = one_chunk(table.column(i))
            if not pa.types.is_string(column.type):
                column = column.cast(pa.string())
            table = table.set_column(i, date_col.column, replace_rows(column, bad_date, wrong))
        if shape.format == "xlsx" and cut.any():
            keep = max(1, len(shape.columns) // 2)
            for col in shape.columns[keep:]:
                i = table.column_names.index(col.column)
                column = one_chunk(table.column(i))
                table = table.set_column(i, col.column, replace_rows(column, cut, None))
            cut = np.zeros(len(cut), dtype=np.bool_)
        return table, cut

    def _spread(self, shape: FeedShape, batch: Batch, index: int, last: bool) -> list[Part]:
        """Duplicates and late rows: what goes into today's file; the rest is queued."""
        rng = _rng(self.seed, shape.category, index, 2)
        n = len(batch)
        category = shape.category
        dup_flag = int(Fault.DUPLICATE)
        dup = np.flatnonzero(draw(self.rates.duplicate, np.ones(n, dtype=np.bool_), rng))
        today: list[Part] = []
        if len(dup):
            # Resent in the same file or with the next day's (the last day has no next day).
            # A roster is resent whole, so its duplicates stay in the same file.
            tomorrow = (rng.random(len(dup)) < 0.5) & (not last) & (not shape.snapshot)
            if tomorrow.any():
                self._carry[category].append(Part(batch, dup[tomorrow], dup_flag).materialise())
            if (~tomorrow).any():
                today.append(Part(batch, dup[~tomorrow], dup_flag))
        late = np.zeros(n, dtype=np.bool_)
        if not shape.snapshot:
            late = draw(self.rates.late_file, np.ones(n, dtype=np.bool_), rng)
        if late.any():
            held = np.flatnonzero(late)
            delay = rng.integers(1, 3, len(held))
            when = np.minimum(index + delay, self.days - 1)
            for d in np.unique(when):
                part = Part(batch, held[when == d], int(Fault.LATE))
                self._late[category][int(d)].append(part.materialise())
            today.insert(0, Part(batch, np.flatnonzero(~late)))
        else:
            today.insert(0, Part.whole(batch))
        return today

    def _write(
        self, shape: FeedShape, parts: list[Part], stem: str, index: int, day: dt.date, purpose: int
    ) -> None:
        category = shape.category
        stats = self.stats[category]
        rng = _rng(self.seed, category, index, 2 + purpose)
        # The parts' rows as indices into one table of their distinct batches.
        batches: list[Batch] = []
        offset: dict[int, int] = {}
        for part in parts:
            if id(part.batch) not in offset:
                offset[id(part.batch)] = sum(len(b) for b in batches)
                batches.append(part.batch)
        rows = np.concatenate([offset[id(p.batch)] + p.idx for p in parts])
        t = np.concatenate([p.batch.t[p.idx] for p in parts])
        order = np.argsort(t, kind="stable")
        shuffled = False
        if not shape.snapshot and rng.random() < self.rates.out_of_order:
            order = order[_block_shuffle(len(order), rng)]
            # Counted only when it shows: times as the file resolves them go backwards.
            visible = np.floor_divide(t[order], max(shape.time_resolution, 1))
            shuffled = bool(np.any(np.diff(visible) < 0))
        pick = rows[order]
        table = (
            batches[0].table if len(batches) == 1 else pa.concat_tables([b.table for b in batches])
        )
        total = sum(len(b) for b in batches)
        if len(pick) != total or np.any(pick != np.arange(total)):
            table = _take(table, pick)
        person = np.concatenate([p.batch.person[p.idx] for p in parts])[order]
        bits = np.concatenate([p.batch.bits[p.idx] | np.uint8(p.extra) for p in parts])[order]
        cut = np.concatenate([p.batch.cut[p.idx] for p in parts])[order]
        batch = Batch(table, person, t[order], bits, cut)
        name = f"{stem}.{shape.ext}"
        path = self.out / category / name
        if shape.format == "xlsx":
            written = write_xlsx(path, batch.table, shape, day)
        else:
            written = write_text(path, batch.table, shape, batch.cut, header=shape.format == "csv")
        rel = f"{category}/{name}"
        stats.files += 1
        stats.records += len(batch)
        if shuffled:
            stats.faults[OUT_OF_ORDER] += 1
            stats.out_of_order_files.append(rel)
        for flag, label in FAULT_NAMES.items():
            count = int(np.count_nonzero(batch.bits & np.uint8(flag)))
            if count:
                stats.faults[label] += count
        if self.sink is not None:
            self.sink.add_records(category, rel, written, batch.person, batch.bits)

"""The ground truth of a run, kept apart from the feeds: only evaluation ever reads it.

Layout (``truth_out``, by default ``OUT/../truth``)::

    record_owner/<category>.parquet   file, line, sheet, person_id, fault  (one row per record)
    persons.parquet                   every person with their true identifiers
    infections.parquet                the infection tree (infectee, infector, where, when)
    exposures.parquet                 every true co-presence with an infectious person
    travel.parquet                    true journeys into, out of and beyond the city
    risk_areas.parquet                the risk areas and when they were listed
    faults.json                       faults injected per feed (rows; files out of order)
    summary.json                      what the run produced

``line`` is the physical line for CSV (header = line 1, so the first record is line 2), the line
for JSON lines (first record = line 1), and the sheet row for XLSX (header = row 1; ``sheet``
names the sheet). ``fault`` is null or the faults joined by ``+`` (e.g. ``name_typo+duplicate``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from citybrain.simulate.feeds.faults import fault_labels
from citybrain.simulate.feeds.render import one_chunk, zero_pad
from citybrain.simulate.feeds.writers import Written

RECORD_OWNER = pa.schema(
    [
        (
            "file",
            pa.string(),
        ),  # relative to the feeds folder, e.g. "lab_test/lab_test_20200110.csv"
        ("line", pa.int32()),
        ("sheet", pa.string()),  # XLSX only
        ("person_id", pa.string()),
        ("fault", pa.string()),
    ]
)
FLUSH_ROWS = 1_000_000  # record_owner rows buffered per category before a row group is written


class TruthWriter:
    """Streams the truth to Parquet as the run goes, and writes the rest at the end."""

    def __init__(self, root: Path, persons: pa.Table) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "record_owner").mkdir(exist_ok=True)
        column = persons.column("person_id")
        self._person_ids = one_chunk(column)
        self._labels = pa.array(fault_labels(), pa.string())
        # The model numbers its people "P00000000", "P00000001", ...: then an id is formatted
        # from the index far faster than gathered from millions of strings at random.
        n = len(self._person_ids)
        self._numbered = n > 0 and bool(
            pc.all(pc.equal(self._person_ids, zero_pad(np.arange(n), 8, "P"))).as_py()
        )
        self._owners: dict[str, pq.ParquetWriter] = {}
        self._buffers: dict[str, list[pa.Table]] = {}
        self._buffered: dict[str, int] = {}
        self._streams: dict[str, pq.ParquetWriter] = {}

    # --- record owners -------------------------------------------------------------------

    def add_records(
        self,
        category: str,
        file: str,
        written: Written,
        person: npt.NDArray[np.int32],
        bits: npt.NDArray[np.uint8],
    ) -> None:
        """Record who owns each row of a written feed file and which faults it carries."""
        n = len(person)
        if written.sheets is not None and written.sheet_of_row is not None:
            sheet = pc.take(pa.array(written.sheets, pa.string()), pa.array(written.sheet_of_row))
        else:
            sheet = pa.nulls(n, pa.string())
        table = pa.table(
            {
                "file": pc.take(pa.array([file], pa.string()), pa.array(np.zeros(n, np.int32))),
                "line": pa.array(written.line, pa.int32()),
                "sheet": sheet,
                "person_id": self._ids_of(person),
                "fault": pc.take(self._labels, pa.array(bits.astype(np.int32))),
            },
            schema=RECORD_OWNER,
        )
        self._buffers.setdefault(category, []).append(table)
        self._buffered[category] = self._buffered.get(category, 0) + n
        if self._buffered[category] >= FLUSH_ROWS:
            self._flush(category)

    def _ids_of(self, person: npt.NDArray[np.int32]) -> pa.Array:
        if self._numbered:
            return zero_pad(person, 8, "P")
        return pc.take(self._person_ids, pa.array(person, pa.int32()))

    def _flush(self, category: str) -> None:
        tables = self._buffers.pop(category, [])
        self._buffered[category] = 0
        if not tables:
            return
        writer = self._owners.get(category)
        if writer is None:
            path = self.root / "record_owner" / f"{category}.parquet"
            # Dictionary pages only where values repeat: person ids rarely do within a file.
            writer = pq.ParquetWriter(
                path,
                RECORD_OWNER,
                compression="zstd",
                use_dictionary=["file", "sheet", "fault"],
            )
            self._owners[category] = writer
        writer.write_table(pa.concat_tables(tables))

    # --- the model's truth, day by day -------------------------------------------------------

    def add_day(self, tables: Mapping[str, pa.Table]) -> None:
        """Append a day's infections, exposures and journeys, with persons' truth ids."""
        if "travel" in tables:
            t = tables["travel"]
            self._stream("travel", t.append_column("person_id", self._ids(t, "person")))
        if "infections" in tables:
            t = tables["infections"]
            t = t.append_column("infectee_id", self._ids(t, "infectee"))
            self._stream("infections", t.append_column("infector_id", self._ids(t, "infector")))
        if "exposures" in tables:
            t = tables["exposures"]
            t = t.append_column("case_id", self._ids(t, "case"))
            self._stream("exposures", t.append_column("contact_id", self._ids(t, "contact")))

    def _ids(self, table: pa.Table, column: str) -> pa.Array:
        """Truth person ids of an index column (-1, someone outside the model: null)."""
        idx = one_chunk(table.column(column)).cast(pa.int32())
        known = pc.greater_equal(idx, 0)
        safe = pc.if_else(known, idx, 0)
        return pc.if_else(known, pc.take(self._person_ids, safe), None)

    def _stream(self, name: str, table: pa.Table) -> None:
        writer = self._streams.get(name)
        if writer is None:
            writer = pq.ParquetWriter(
                self.root / f"{name}.parquet", table.schema, compression="zstd"
            )
            self._streams[name] = writer
        if table.num_rows:
            writer.write_table(table)

    # --- the end -----------------------------------------------------------------------------

    def finish(
        self,
        persons: pa.Table,
        risk_areas: pa.Table,
        faults: Mapping[str, Any],
        summary: Mapping[str, Any],
    ) -> None:
        """Write the static truth and the run's reports, and close every file."""
        for category in list(self._buffers):
            self._flush(category)
        for writer in (*self._owners.values(), *self._streams.values()):
            writer.close()
        pq.write_table(persons, self.root / "persons.parquet", compression="zstd")
        pq.write_table(risk_areas, self.root / "risk_areas.parquet", compression="zstd")
        self.write_json("faults.json", faults)
        self.write_json("summary.json", summary)

    def write_json(self, name: str, payload: Mapping[str, Any]) -> None:
        """A JSON report, UTF-8, keys sorted (stable across runs)."""
        text = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str)
        (self.root / name).write_text(text + "\n", encoding="utf-8")

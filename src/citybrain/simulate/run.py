"""One simulation run: build the city, live its days, write the agencies' feeds and the truth.

The command line calls :func:`run_simulation` and shows its progress reports as a bar.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from citybrain.kit.errors import InvalidInput
from citybrain.simulate.config import GeoInput, SimulationConfig
from citybrain.simulate.feeds.agencies import CityLike, DayLike, Lookups
from citybrain.simulate.feeds.pipeline import FeedPipeline
from citybrain.simulate.feeds.shapes import SHAPES
from citybrain.simulate.truth import TruthWriter

Progress = Callable[[str, int, int], None]
STAGE_CITY = "城市建模"
STAGE_TRUTH = "写入真值"


class Model(Protocol):
    """The city model's two entry points (``citybrain.simulate.model``)."""

    def build_city(self, config: SimulationConfig, geo: GeoInput) -> CityLike:
        """Build the static city."""

    def simulate_days(self, city: Any) -> Iterator[DayLike]:  # the model's own City
        """Live the city's days."""


@dataclass(frozen=True)
class SimulationSummary:
    """What a run produced."""

    people: int
    days: int
    people_days: int
    files: int
    records: int  # rows written to the feeds, duplicates included
    records_by_category: dict[str, int]
    seconds: float
    out: Path
    truth: Path
    faults_by_category: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (paths as strings)."""
        return {
            "people": self.people,
            "days": self.days,
            "people_days": self.people_days,
            "files": self.files,
            "records": self.records,
            "records_by_category": dict(self.records_by_category),
            "seconds": round(self.seconds, 3),
            "out": str(self.out),
            "truth": str(self.truth),
            "faults_by_category": {k: dict(v) for k, v in self.faults_by_category.items()},
        }


def default_truth_dir(out: Path) -> Path:
    """Where the truth goes unless told: a ``truth`` folder beside the feeds folder."""
    return out.resolve().parent / "truth"


def check_truth_dir(out: Path, truth_out: Path) -> None:
    """Refuse a truth folder inside (or equal to) the feeds folder.

    The platform takes in everything under the feeds folder; truth there would leak the
    answers into what is being evaluated.
    """
    feeds = out.resolve()
    truth = truth_out.resolve()
    if truth == feeds or truth.is_relative_to(feeds):
        raise InvalidInput(
            f"真值目录 {truth} 不能位于数据输出目录 {feeds} 之内",
            f"the truth folder {truth} must not be inside the feeds folder {feeds}: "
            "the data centre would take it in as a feed",
            code="truth_inside_out",
            field="truth_out",
        )


def _prepare(out: Path, truth: Path, overwrite: bool) -> None:
    """Start from empty folders: a leftover file from another run would break reproducibility."""
    for folder in (out, truth):
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise InvalidInput(
                    f"目录 {folder} 不为空",
                    f"folder {folder} is not empty (pass overwrite=True to replace a "
                    "previous run's output)",
                    code="folder_not_empty",
                )
            # Only what a run writes is removed; anything else there stays.
            names = {s.category for s in SHAPES} | {"record_owner"}
            for child in folder.iterdir():
                if child.is_dir() and child.name in names:
                    shutil.rmtree(child)
                elif child.is_file() and child.suffix in (".parquet", ".json"):
                    child.unlink()
        folder.mkdir(parents=True, exist_ok=True)


def geo_names(geo: GeoInput) -> tuple[dict[str, str], dict[str, str]]:
    """Area code -> name, and community code -> street code, from the platform's hierarchy."""
    names = {a.code: a.name for a in geo.areas}
    street_of = {
        a.code: a.parent_code for a in geo.areas if a.level == "community" and a.parent_code
    }
    return names, street_of


def _load_model() -> Model:
    # Imported when a run starts, so the feed writers and their tests do not depend on the
    # model module.
    return cast(Model, importlib.import_module("citybrain.simulate.model"))


def run_simulation(
    config: SimulationConfig,
    geo: GeoInput,
    out: Path,
    truth_out: Path | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
    model: Model | None = None,
) -> SimulationSummary:
    """Simulate the city and write the agencies' feeds under ``out`` and the truth apart.

    ``progress(stage, done, total)`` is called as the run goes: ``("城市建模", 0, 1)`` and
    ``(…, 1, 1)`` around building the city, ``("模拟第 3/30 天", 3, 30)`` after each day and
    ``("写入真值", 0|1, 1)`` around the final truth files. Raises ``InvalidInput`` when the
    truth folder lies inside ``out`` or a folder holds files (unless ``overwrite``).
    """
    started = time.perf_counter()
    out = Path(out)
    truth_dir = Path(truth_out) if truth_out is not None else default_truth_dir(out)
    check_truth_dir(out, truth_dir)
    _prepare(out, truth_dir, overwrite)
    report: Progress = progress or (lambda stage, done, total: None)
    model = model or _load_model()

    report(STAGE_CITY, 0, 1)
    city = model.build_city(config, geo)
    report(STAGE_CITY, 1, 1)

    names, street_of = geo_names(geo)
    lookups = Lookups(city, names, street_of)
    truth = TruthWriter(truth_dir, city.persons)
    pipeline = FeedPipeline(
        lookups, out, seed=config.seed, rates=config.faults, days=config.days, sink=truth
    )
    days = 0
    for index, day in enumerate(model.simulate_days(city)):
        pipeline.write_day(index, day)
        truth.add_day(day.tables)
        days = index + 1
        report(f"模拟第 {days}/{config.days} 天", days, config.days)

    report(STAGE_TRUTH, 0, 1)
    stats = pipeline.stats
    people = city.persons.num_rows
    summary = SimulationSummary(
        people=people,
        days=days,
        people_days=people * days,
        files=sum(s.files for s in stats.values()),
        records=sum(s.records for s in stats.values()),
        records_by_category={k: s.records for k, s in stats.items()},
        seconds=time.perf_counter() - started,
        out=out.resolve(),
        truth=truth_dir.resolve(),
        faults_by_category={k: dict(sorted(s.faults.items())) for k, s in stats.items()},
    )
    faults = {
        "rates": {k: getattr(config.faults, k) for k in config.faults.__dataclass_fields__},
        "seed": config.seed,
        "by_category": {
            k: {
                "records": s.records,
                "files": s.files,
                "faults": dict(sorted(s.faults.items())),
                "out_of_order_files": list(s.out_of_order_files),
            }
            for k, s in stats.items()
        },
    }
    truth.finish(
        city.persons,
        city.risk_areas,
        faults,
        {
            **summary.as_dict(),
            "seed": config.seed,
            "start": config.start.isoformat(),
        },
    )
    summary = dataclasses.replace(summary, seconds=time.perf_counter() - started)
    report(STAGE_TRUTH, 1, 1)
    return summary

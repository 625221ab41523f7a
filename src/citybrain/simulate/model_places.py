"""Every place the model uses, with the codes the agencies know it by: the platform's venues,
stations, checkpoints and compound gates (as test sites), and the model's own cell towers,
metro stations and bus stops, hotels, cold stores, enterprises, care homes and classes.

Place ids: geo places keep their geo code (``V410105001001``, ``S41010300401``,
``K41010810001``, ``G4101020010020011``); the model's own are ``cell:<lac>-<ci>``,
``metro_station:M0105``, ``bus_stop:B0032-07``, ``hotel:H00012``, ``cold_store:L0003``,
``enterprise:E000123``, ``care_home:Y0012``, ``class:C00042``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from citybrain.simulate.model_data import HOTEL_BRANDS, HOTEL_WORDS
from citybrain.simulate.model_geo import Geo, street_root
from citybrain.simulate.model_util import (
    I32,
    I64,
    STREAM_PLACES,
    constant,
    digits,
    fixed_strings,
    integers,
    join,
    numbered,
    rng_for,
    take,
    weighted_choice,
)
from citybrain.simulate.population import Population
from citybrain.simulate.schema import PLACES

# The kind of a geo venue as the agencies see it (hospitals, pharmacies, clinics and schools are
# places of their own kind; markets, supermarkets, malls and restaurants are venues).
_VENUE_KIND = {"hospital": "hospital", "pharmacy": "pharmacy", "fever_clinic": "fever_clinic",
               "school": "school"}  # fmt: skip
_RAIL_CODES = {"郑州站": "ZZF", "郑州东站": "ZAF", "郑州西站": "XPF", "郑州航空港站": "ZIF"}
_CITY_CENTRE = np.array([113.665, 34.753])
# Metro lines: name, how its streets are picked (axis, band), as seen on a map of the city.
METRO_LINES = (
    ("地铁1号线", "x", (34.725, 34.790)),
    ("地铁2号线", "y", (113.630, 113.700)),
    ("地铁3号线", "d", (-0.03, 0.03)),
    ("地铁4号线", "y", (113.700, 113.790)),
    ("地铁5号线", "r", (3.0, 7.5)),
    ("地铁6号线", "x", (34.680, 34.725)),
    ("地铁城郊线", "s", (0.0, 0.0)),
)
_ROADS = ("建设路", "中原路", "桐柏路", "嵩山路", "大学路", "花园路", "文化路", "农业路",
          "黄河路", "金水路", "东风路", "航海路", "陇海路", "商都路", "未来路", "紫荆山路",
          "人民路", "长江路", "秦岭路", "工人路")  # fmt: skip


@dataclass
class Places:
    """The place registry: ``table`` (schema.PLACES) and where each kind of entity starts in it."""

    table: pa.Table
    ids: pa.StringArray
    venue: I64  # geo venue number -> place index
    station: I64  # geo station/airport number -> place index
    checkpoint: I64
    test_site: I64  # per geo compound: place index of its first gate, else its street's hospital
    cell: I64  # cell number -> place index
    cell_street: I32
    street_cells: I64  # (streets + 1) first cell of each street
    metro_station: I64  # metro station number -> place index
    metro_line: I32  # per metro station: line number
    metro_street: I32
    metro_names: pa.StringArray
    line_names: pa.StringArray  # metro lines then bus lines
    street_metro: I64  # per street: a metro station number, -1 without metro
    bus_stop: I64
    bus_line: I32  # per bus stop: index into line_names
    bus_street: I32
    street_bus: I64  # per street: a bus stop number
    bus_names: pa.StringArray
    hotel: I64
    hotel_street: I32
    cold_store: I64
    cold_store_enterprise: I64
    cold_store_street: I32
    enterprise: I64
    care_home: I64
    school_class: I64


def _spread_cell(entity: I64, street: I32, places: Places) -> I64:
    """The cell an entity in ``street`` is served by: fixed, spread over the street's cells."""
    first = places.street_cells[street]
    count = np.maximum(places.street_cells[street + 1] - first, 1)
    return np.asarray(first + (entity * 7919 + 13) % count, dtype=np.int64)


def home_cell(places: Places, entity: I64, street: I32) -> I64:
    """Cell numbers serving entities (compounds, enterprises, hotels...) in their streets."""
    return _spread_cell(entity.astype(np.int64), street, places)


def _metro_lines(geo: Geo, rng: np.random.Generator) -> list[list[int]]:
    """Streets along each metro line, in travel order (urban streets only, plus the airport)."""
    urban = np.flatnonzero(geo.street_urban & ~geo.district_county[geo.street_district])
    ll = geo.street_lonlat[urban]
    lines: list[list[int]] = []
    for _, axis, band in METRO_LINES:
        if axis == "x":
            sel = (ll[:, 1] >= band[0]) & (ll[:, 1] < band[1])
            order = np.argsort(ll[sel, 0], kind="stable")
        elif axis == "y":
            sel = (ll[:, 0] >= band[0]) & (ll[:, 0] < band[1])
            order = np.argsort(-ll[sel, 1], kind="stable")
        elif axis == "d":
            off = (ll[:, 1] - _CITY_CENTRE[1]) + (ll[:, 0] - _CITY_CENTRE[0])
            sel = (off >= band[0]) & (off < band[1])
            order = np.argsort(ll[sel, 0], kind="stable")
        elif axis == "r":
            dx = (ll[:, 0] - _CITY_CENTRE[0]) * 91.5
            dy = (ll[:, 1] - _CITY_CENTRE[1]) * 111.0
            r = np.hypot(dx, dy)
            sel = (r >= band[0]) & (r < band[1])
            order = np.argsort(np.arctan2(dy[sel], dx[sel]), kind="stable")
        else:
            # 城郊线: south from the centre to the airport zone.
            south = np.flatnonzero(
                (geo.street_lonlat[:, 1] < _CITY_CENTRE[1])
                & (np.abs(geo.street_lonlat[:, 0] - 113.75) < 0.12)
                & np.isin(
                    np.array(geo.district_codes)[geo.street_district],
                    ["410103", "410104", "410184", "410173"],
                )
            )
            order = south[np.argsort(-geo.street_lonlat[south, 1], kind="stable")]
            lines.append([int(s) for s in order[:22]])
            continue
        streets = urban[sel][order]
        if streets.shape[0] > 24:
            keep = np.sort(rng.choice(streets.shape[0], size=24, replace=False))
            streets = streets[keep]
        lines.append([int(s) for s in streets])
    return lines


def build_places(geo: Geo, pop: Population, seed: int) -> Places:
    """Register every place for ``geo`` and ``pop``."""
    rng = rng_for(seed, STREAM_PLACES)
    n_streets = len(geo.street_codes)
    street_codes = pa.array(geo.street_codes)
    chunks: list[pa.Table] = []
    count = 0

    def add(
        ids: pa.Array,
        kind: str | pa.Array,
        subkind: str | pa.Array | None,
        name: pa.Array,
        street: pa.Array,
        agency: pa.Array,
    ) -> I64:
        nonlocal count
        n = len(ids)
        chunks.append(
            pa.table(
                {
                    "place": ids,
                    "kind": constant(kind, n) if isinstance(kind, str) else kind,
                    "subkind": (
                        pa.nulls(n, pa.string())
                        if subkind is None
                        else constant(subkind, n)
                        if isinstance(subkind, str)
                        else subkind
                    ),
                    "name": name,
                    "street_code": street,
                    "agency_code": agency,
                },
                schema=PLACES,
            )
        )
        first = count
        count += n
        return np.arange(first, count, dtype=np.int64)

    # Geo venues (markets ... schools), with pharmacy licence numbers.
    venues = geo.venues
    v_kind = [_VENUE_KIND.get(s, "venue") for s in geo.venue_subkind]
    pharmacy_no: list[str] = []
    seq: dict[str, int] = {}
    for p in venues:
        district = p.area_code[:6]
        if p.subkind == "pharmacy":
            seq[district] = seq.get(district, 0) + 1
            pharmacy_no.append(f"豫AA371{district[2:6]}{seq[district]:03d}")
        else:
            pharmacy_no.append(p.code)
    venue_idx = add(
        pa.array([p.code for p in venues], pa.string()),
        pa.array(v_kind, pa.string()),
        pa.array(geo.venue_subkind, pa.string()),
        pa.array([p.name for p in venues], pa.string()),
        take(street_codes, geo.venue_street),
        pa.array(pharmacy_no, pa.string()),
    )
    stations = geo.stations
    station_idx = add(
        pa.array([p.code for p in stations], pa.string()),
        pa.array([p.kind for p in stations], pa.string()),
        pa.array([p.subkind for p in stations], pa.string()),
        pa.array([p.name for p in stations], pa.string()),
        pa.array([p.area_code[:9] for p in stations], pa.string()),
        pa.array(
            ["CGO" if p.kind == "airport" else _RAIL_CODES.get(p.name, p.code) for p in stations],
            pa.string(),
        ),
    )
    checkpoints = geo.checkpoints
    checkpoint_idx = add(
        pa.array([p.code for p in checkpoints], pa.string()),
        "checkpoint",
        pa.array([p.subkind for p in checkpoints], pa.string()),
        pa.array([p.name for p in checkpoints], pa.string()),
        pa.array([p.area_code[:9] for p in checkpoints], pa.string()),
        pa.array([p.code for p in checkpoints], pa.string()),
    )
    # Test sites: the first gate of each compound lived in (核酸采样点 at the gate).
    used = pop.used_compounds
    gate_codes = [geo.compound_gate[int(c)] for c in used]
    has_gate = np.array([g is not None for g in gate_codes], dtype=bool)
    gated = used[has_gate]
    gate_idx = add(
        pa.array([g for g in gate_codes if g is not None], pa.string()),
        "test_site",
        "compound_gate",
        pa.array([f"{geo.compound_names[int(c)]}核酸采样点" for c in gated], pa.string()),
        take(street_codes, geo.compound_street[gated]),
        pa.array([g for g in gate_codes if g is not None], pa.string()),
    )
    district_hospital = np.array(geo.hospital, dtype=np.int64)
    test_site = venue_idx[
        np.maximum(district_hospital[geo.street_district[geo.compound_street]], 0)
    ].copy()
    test_site[gated] = gate_idx

    # Cells: more in the built-up streets. LAC per street, CI distinct in the city.
    n_cells = np.where(
        geo.street_urban, 6 + integers(rng, 0, 9, n_streets), 2 + integers(rng, 0, 4, n_streets)
    )
    street_cells = np.concatenate([[0], np.cumsum(n_cells)]).astype(np.int64)
    total_cells = int(street_cells[-1])
    cell_street = np.repeat(np.arange(n_streets, dtype=np.int32), n_cells)
    lac = 41001 + cell_street.astype(np.int64)
    ci = rng.choice(np.arange(10_000, 65_536), size=total_cells, replace=False)
    lac_ci = np.hstack(
        [digits(lac, 5), np.full((total_cells, 1), ord("-"), np.uint8), digits(ci, 5)]
    )
    lac_ci_str = fixed_strings(lac_ci)
    within = np.arange(total_cells) - street_cells[cell_street] + 1
    street_names = pa.array(geo.street_names)
    cell_idx = add(
        join("cell:", lac_ci_str),
        "cell",
        "lte",
        join(take(street_names, cell_street), pa.array([f"{k}号基站" for k in within])),
        take(street_codes, cell_street),
        lac_ci_str,
    )

    # Metro: seven lines on the built-up streets; a street's station carries its short name, so
    # lines crossing the same street meet at a transfer station of the same name.
    lines = _metro_lines(geo, rng)
    m_line: list[int] = []
    m_street: list[int] = []
    for li, streets in enumerate(lines):
        for st in streets:
            m_line.append(li)
            m_street.append(st)
    roots = [street_root(n) for n in geo.street_names]
    metro_street = np.array(m_street, dtype=np.int32)
    metro_line = np.array(m_line, dtype=np.int32)
    metro_names = pa.array([f"{roots[s]}站" for s in m_street], pa.string())
    line_names = [name for name, _, _ in METRO_LINES]
    metro_no = np.array([i - m_line.index(li) + 1 for i, li in enumerate(m_line)], dtype=np.int64)
    metro_codes = (
        fixed_strings(np.hstack([digits(metro_line.astype(np.int64) + 1, 2), digits(metro_no, 2)]))
        if m_line
        else pa.array([], pa.string())
    )
    metro_idx = add(
        join("metro_station:M", metro_codes),
        "metro_station",
        take(pa.array(line_names), metro_line),
        metro_names,
        take(street_codes, metro_street),
        metro_codes,
    )
    street_metro = np.full(n_streets, -1, dtype=np.int64)
    for i in range(len(m_street) - 1, -1, -1):
        street_metro[m_street[i]] = i

    # Buses: every street on one to three lines of its district; 2-digit lines in the city,
    # 3-digit in the counties, B-lines (快速公交) on some urban routes.
    b_line: list[int] = []
    b_street: list[int] = []
    bus_line_names: list[str] = []
    next_no = 1
    for d in range(len(geo.district_codes)):
        in_district = np.flatnonzero(geo.street_district == d)
        if in_district.shape[0] == 0:
            continue
        order = in_district[np.argsort(geo.street_lonlat[in_district, 0], kind="stable")]
        n_lines = max(1, in_district.shape[0] // 2)
        for k in range(n_lines):
            width = min(order.shape[0], 4 + int(rng.integers(0, 5)))
            begin = int(rng.integers(0, max(1, order.shape[0] - width + 1)))
            route = order[begin : begin + width]
            if k < order.shape[0]:
                # Every street gets at least one line passing through it.
                route = np.unique(np.concatenate([route, order[[k % order.shape[0]]]]))
            county = bool(geo.district_county[d])
            brt = not county and rng.random() < 0.15
            label = f"B{next_no}路" if brt else f"{next_no + (100 if county else 0)}路"
            next_no += 1
            line_no = len(METRO_LINES) + len(bus_line_names)
            bus_line_names.append(label)
            for st in route:
                b_line.append(line_no)
                b_street.append(int(st))
    bus_line = np.array(b_line, dtype=np.int32)
    bus_street = np.array(b_street, dtype=np.int32)
    all_line_names = pa.array(line_names + bus_line_names, pa.string())
    stop_no = np.zeros(len(b_line), dtype=np.int64)
    for i in range(1, len(b_line)):
        stop_no[i] = stop_no[i - 1] + 1 if b_line[i] == b_line[i - 1] else 0
    bus_codes = fixed_strings(
        np.hstack(
            [
                digits(bus_line.astype(np.int64) - len(METRO_LINES) + 1, 4),
                np.full((len(b_line), 1), ord("-"), np.uint8),
                digits(stop_no + 1, 2),
            ]
        )
    )
    bus_names = pa.array([f"{roots[s]}站" for s in b_street], pa.string())
    bus_idx = add(
        join("bus_stop:B", bus_codes),
        "bus_stop",
        take(all_line_names, bus_line),
        bus_names,
        take(street_codes, bus_street),
        bus_codes,
    )
    street_bus = np.full(n_streets, -1, dtype=np.int64)
    for i in range(len(b_street) - 1, -1, -1):
        street_bus[b_street[i]] = i

    # Hotels: near the stations and in the built-up streets.
    n_vis = pop.n - pop.n_resident
    n_hotels = int(min(3000, max(12, n_vis // 12 + 10)))
    station_streets = np.array(
        [
            geo.street_codes.index(p.area_code[:9])
            for p in stations
            if p.area_code[:9] in geo.street_codes
        ],
        dtype=np.int64,
    )
    hw = np.where(geo.street_urban, 3.0, 0.3)
    hw[station_streets] += 12.0
    hotel_street = weighted_choice(rng, hw, n_hotels).astype(np.int32)
    brand = integers(rng, 0, len(HOTEL_BRANDS) + len(HOTEL_WORDS), n_hotels)
    hotel_names = [
        f"{HOTEL_BRANDS[b]}（{roots[s]}店）"
        if b < len(HOTEL_BRANDS)
        else f"{HOTEL_WORDS[b - len(HOTEL_BRANDS)]}{('宾馆', '大酒店', '酒店')[int(s) % 3]}"
        for b, s in zip(brand.tolist(), hotel_street.tolist(), strict=True)
    ]
    hotel_district = np.array([int(c) for c in geo.district_codes], dtype=np.int64)[
        geo.street_district[hotel_street]
    ]
    hotel_idx = add(
        numbered("hotel:H", np.arange(n_hotels), 5),
        "hotel",
        None,
        pa.array(hotel_names, pa.string()),
        take(street_codes, hotel_street),
        fixed_strings(
            np.hstack([digits(hotel_district, 6), digits(np.arange(n_hotels) % 10_000, 4)])
        ),
    )

    # Cold stores of the cold-chain enterprises.
    cold_ent = np.flatnonzero(pop.enterprise_cold)
    cold_street = pop.enterprise_street[cold_ent]
    ent_names = pop.enterprises.column("name")
    cold_idx = add(
        numbered("cold_store:L", np.arange(cold_ent.shape[0]), 4),
        "cold_store",
        "imported_food",
        join(take(ent_names, cold_ent), take(pa.array([f"{r}冷库" for r in roots]), cold_street)),
        take(street_codes, cold_street),
        join("豫冷备", numbered("", np.arange(cold_ent.shape[0]) + 1, 5)),
    )
    ent_idx = add(
        pop.enterprises.column("place").combine_chunks(),
        "enterprise",
        None,
        pop.enterprises.column("name").combine_chunks(),
        pop.enterprises.column("street_code").combine_chunks(),
        pop.enterprises.column("credit_code").combine_chunks(),
    )
    n_homes = pop.care_homes.num_rows
    care_idx = add(
        pop.care_homes.column("place").combine_chunks(),
        "care_home",
        None,
        pop.care_homes.column("name").combine_chunks(),
        pop.care_homes.column("street_code").combine_chunks(),
        numbered("民政备", np.arange(n_homes) + 1, 5),
    )
    cls = pop.classes
    school_names = pop.schools.column("name").combine_chunks()
    school_codes = pop.schools.column("school_code").combine_chunks()
    cs = pop.class_school.astype(np.int64)
    grade = cls.column("grade").to_numpy().astype(np.int64)
    number = cls.column("class_no").to_numpy().astype(np.int64)
    class_idx = add(
        pop.class_place,
        "class",
        None,
        join(
            take(school_names, cs),
            pa.array(
                [f"{g}年级{c}班" for g, c in zip(grade.tolist(), number.tolist(), strict=True)],
                pa.string(),
            ),
        ),
        take(street_codes, pop.school_street[cs]) if cs.shape[0] else pa.array([], pa.string()),
        join(
            take(school_codes, cs),
            "-",
            fixed_strings(np.hstack([digits(grade, 2), digits(number, 2)])),
        ),
    )
    table = pa.concat_tables(chunks)
    return Places(
        table=table,
        ids=table.column("place").combine_chunks(),
        venue=venue_idx,
        station=station_idx,
        checkpoint=checkpoint_idx,
        test_site=test_site,
        cell=cell_idx,
        cell_street=cell_street,
        street_cells=street_cells,
        metro_station=metro_idx,
        metro_line=metro_line,
        metro_street=metro_street,
        metro_names=metro_names,
        line_names=all_line_names,
        street_metro=street_metro,
        bus_stop=bus_idx,
        bus_line=bus_line,
        bus_street=bus_street,
        street_bus=street_bus,
        bus_names=bus_names,
        hotel=hotel_idx,
        hotel_street=hotel_street,
        cold_store=cold_idx,
        cold_store_enterprise=cold_ent.astype(np.int64),
        cold_store_street=cold_street,
        enterprise=ent_idx,
        care_home=care_idx,
        school_class=class_idx,
    )

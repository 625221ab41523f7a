"""The simulator's own contract between the city model and the feed writers.

The model (population, movement, travel, outbreak) produces column tables of *true* events;
the feed writers turn them into each agency's files, with that agency's faults. Everything is
an Arrow table so both sides stay vectorised at the full city's 12.6 million people.

Persons are referred to by ``person`` (int32, row index of the persons table). Times are
``timestamp[s]`` in China Standard Time, naive (the agencies' own convention: local wall time).
A ``place`` is a string id in the model's own terms (a geo place code like ``V410105001M01``,
``cell:41001-23015``, ``hotel:H0012``, ``enterprise:E000123``, ``class:C00042``,
``household:H...``, ``train:G1234:2020-01-21:05`` for a carriage); feed writers render it the
way each agency names it.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("s")

# --- static tables --------------------------------------------------------------------------

PERSONS = pa.schema(
    [
        ("person", pa.int32()),
        ("person_id", pa.string()),  # stable truth id, e.g. "P00012345"
        ("name", pa.string()),
        ("sex", pa.string()),  # "M" / "F"
        ("birth_date", pa.date32()),
        ("id_number", pa.string()),  # valid GB 11643, birthplace area code
        ("phone", pa.string()),  # 11-digit mobile; family members may share one
        ("phone2", pa.string()),  # nullable: a second phone
        ("passport", pa.string()),  # nullable: holders who travel abroad
        ("household", pa.int32()),  # -1 for visitors without a household in the city
        ("compound_code", pa.string()),  # home compound (nullable for visitors)
        ("community_code", pa.string()),
        ("address", pa.string()),  # "<compound address><building>号楼<unit>单元<room>"
        ("resident", pa.bool_()),  # False: a visitor who arrives during the run
        ("home_city", pa.string()),  # 郑州市 for residents, else the city they come from
        ("occupation", pa.string()),  # worker|student|teacher|retired|child|care_resident|none
        ("workplace", pa.int32()),  # enterprise index or -1
        ("school_class", pa.int32()),  # class index or -1 (students)
        ("school", pa.int32()),  # school index or -1 (students and teachers)
        ("care_home", pa.int32()),  # elderly-care institution index or -1 (residents, staff)
        ("plate", pa.string()),  # nullable: car owners, e.g. "豫A12345"
        ("transit_card", pa.string()),  # nullable: metro/bus card number
    ]
)

ENTERPRISES = pa.schema(
    [
        ("enterprise", pa.int32()),
        ("credit_code", pa.string()),  # 统一社会信用代码, 18 characters
        ("name", pa.string()),
        ("street_code", pa.string()),
        ("place", pa.string()),  # "enterprise:E000123"
    ]
)

SCHOOLS = pa.schema(
    [
        ("school", pa.int32()),
        ("name", pa.string()),
        ("school_code", pa.string()),  # 学校标识码, 10 digits
        ("street_code", pa.string()),
        ("place", pa.string()),  # the geo school venue code
    ]
)

CLASSES = pa.schema(
    [
        ("school_class", pa.int32()),
        ("school", pa.int32()),
        ("grade", pa.int8()),  # 1..9 (小学一年级 .. 初三), 10..12 高中
        ("class_no", pa.int8()),
        ("place", pa.string()),  # "class:C00042"
    ]
)

CARE_HOMES = pa.schema(
    [
        ("care_home", pa.int32()),
        ("name", pa.string()),
        ("street_code", pa.string()),
        ("place", pa.string()),
    ]
)

# Venues, hotels, cold stores, cells, transit stations: every place the model uses, with how
# the agencies know it.
PLACES = pa.schema(
    [
        ("place", pa.string()),
        ("kind", pa.string()),  # venue|hotel|cold_store|cell|metro_station|bus_stop|station|
        # airport|checkpoint|hospital|pharmacy|fever_clinic|school|enterprise|care_home
        ("subkind", pa.string()),  # nullable: market, mall, restaurant, railway, coach, ...
        ("name", pa.string()),
        ("street_code", pa.string()),  # nullable for places outside the city
        ("agency_code", pa.string()),  # the code the agency uses (license no, LAC-CI, 卡口编号)
    ]
)

# --- per-day tables (one set per simulated day) ------------------------------------------

PRESENCE = pa.schema(  # true co-presence intervals, including those no agency records
    [
        ("person", pa.int32()),
        ("place", pa.string()),
        ("setting", pa.string()),  # household|workplace|class|school|venue|transit|hotel|
        # train|flight|coach|care_home|hospital|clinic|pharmacy|cold_store
        ("start", TS),
        ("end", TS),
    ]
)

CELL = pa.schema(  # phone attached to a cell for a while (telecom_cell)
    [
        ("person", pa.int32()),
        ("phone", pa.string()),
        ("cell", pa.string()),  # place id "cell:<lac>-<ci>"
        ("start", TS),
        ("end", TS),
    ]
)

TRANSIT = pa.schema(  # metro/bus taps (transit_card)
    [
        ("person", pa.int32()),
        ("card", pa.string()),
        ("line", pa.string()),  # "地铁1号线", "B32路"
        ("station", pa.string()),  # station name
        ("ts", TS),
        ("tap", pa.string()),  # "in" / "out"
    ]
)

VEHICLE = pa.schema(  # checkpoint crossings (vehicle_checkpoint) and toll trips (highway_toll)
    [
        ("person", pa.int32()),  # the driver
        ("plate", pa.string()),
        ("checkpoint", pa.string()),  # geo place code of the checkpoint
        ("ts", TS),
        ("direction", pa.string()),  # "in" (进城) / "out" (出城)
        ("toll_entry", pa.string()),  # nullable: for expressway trips, the entry toll station
        ("toll_entry_ts", TS),  # nullable
    ]
)

RIDES = pa.schema(  # ride-hailing and taxi trips (ride_hailing)
    [
        ("order_id", pa.string()),
        ("person", pa.int32()),
        ("phone", pa.string()),
        ("driver", pa.int32()),  # person index of the driver, -1 for taxis without record
        ("plate", pa.string()),
        ("start", TS),
        ("end", TS),
        ("from_street", pa.string()),
        ("to_street", pa.string()),
    ]
)

TRAVEL = pa.schema(  # journeys into or out of the city, and abroad
    [
        ("person", pa.int32()),
        ("mode", pa.string()),  # rail|air|coach|car|overseas
        ("number", pa.string()),  # G1234, CZ3456, coach service no, plate for car
        ("carriage", pa.int8()),  # nullable: rail carriage
        ("row", pa.int16()),  # nullable: flight row / coach row
        ("seat", pa.string()),  # nullable: "05F", "23A", "12"
        ("origin", pa.string()),  # city (or country for overseas legs)
        ("destination", pa.string()),
        ("depart", TS),
        ("arrive", TS),
        ("direction", pa.string()),  # in|out
        ("station", pa.string()),  # geo place code at the Zhengzhou end (station/airport)
        ("port", pa.string()),  # nullable: border port for overseas legs
        ("country", pa.string()),  # nullable: country for overseas legs
    ]
)

ROAMING = pa.schema(  # phones of other cities arriving (telecom_roaming)
    [
        ("person", pa.int32()),
        ("phone", pa.string()),
        ("home_city", pa.string()),
        ("ts", TS),
        ("cell", pa.string()),
    ]
)

ITINERARY = pa.schema(  # 14-day visited cities per phone, as telecom reports it
    [
        ("person", pa.int32()),
        ("phone", pa.string()),
        ("cities", pa.string()),  # comma-separated
        ("query_date", pa.date32()),
    ]
)

HOTEL = pa.schema(
    [
        ("person", pa.int32()),
        ("hotel", pa.string()),  # place id
        ("room", pa.string()),
        ("checkin", TS),
        ("checkout", TS),
        ("from_city", pa.string()),
    ]
)

HEALTH = pa.schema(  # health events as the health system sees them
    [
        ("person", pa.int32()),
        ("event", pa.string()),  # onset|pharmacy|test|suspected|confirmed|asymptomatic|
        # admission|discharge|vaccination|coop_contact|tipoff|coldchain
        ("ts", TS),
        ("place", pa.string()),  # nullable: hospital, pharmacy, test site, cold store
        ("result", pa.string()),  # nullable: positive|negative, close|secondary, drug name
        ("detail", pa.string()),  # nullable: case number, vaccine, origin city, ...
    ]
)

# --- ground truth only ---------------------------------------------------------------------

INFECTIONS = pa.schema(
    [
        ("infectee", pa.int32()),
        ("infector", pa.int32()),  # -1: imported from a risk area
        ("setting", pa.string()),
        ("place", pa.string()),
        ("ts", TS),
        ("symptomatic", pa.bool_()),
        ("onset", TS),  # nullable for asymptomatic
    ]
)

EXPOSURES = pa.schema(  # every true co-presence of an infectious person with another person
    [
        ("case", pa.int32()),  # the infectious person
        ("contact", pa.int32()),
        ("setting", pa.string()),
        ("place", pa.string()),
        ("start", TS),  # overlap start
        ("end", TS),  # overlap end
    ]
)

RISK_AREAS = pa.schema(
    [
        ("area", pa.string()),  # city or district name, e.g. 武汉市
        ("level", pa.string()),  # high|medium
        ("start", pa.date32()),
        ("end", pa.date32()),  # nullable: still listed
    ]
)

DAY_TABLES: dict[str, pa.Schema] = {
    "presence": PRESENCE,
    "cell": CELL,
    "transit": TRANSIT,
    "vehicle": VEHICLE,
    "rides": RIDES,
    "travel": TRAVEL,
    "roaming": ROAMING,
    "itinerary": ITINERARY,
    "hotel": HOTEL,
    "health": HEALTH,
    "infections": INFECTIONS,
    "exposures": EXPOSURES,
}

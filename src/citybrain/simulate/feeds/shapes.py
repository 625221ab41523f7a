"""Each agency's file shape, declared once: format, encoding, columns, formats and enum values.

This is the simulator's side of the feed contract (the data centre's side is
``datahub/data/sources.yaml``). The simulator plays the agencies, who never read the platform's
configuration, so the shapes are written out here; ``tests/simulate/test_feeds.py`` checks them
against ``sources.yaml`` so that the two cannot drift apart.

A column names the data centre's field key it carries (``field``) so that the builders can
produce values by field and the renderer can place them under the agency's own header. Where
one physical column feeds two fields (a flight seat ``23A`` is both the seat and, by a regex,
the row), the column is declared once and the second field listed in ``also``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

FileFormat = Literal["csv", "jsonl", "xlsx"]
Encoding = Literal["utf-8", "gbk"]
FieldType = Literal[
    "name",
    "id_number",
    "phone",
    "passport",
    "plate",
    "card",
    "text",
    "int",
    "datetime",
    "date",
    "enum",
]

# Formats other than strftime patterns: Unix seconds / milliseconds of the China Standard Time
# wall clock.
EPOCH = "epoch"
EPOCH_MS = "epoch_ms"

# Types whose values come from a fixed alphabet of digits, letters and the odd province
# character: never a comma, quote or newline, so CSV quoting and JSON escaping can be skipped.
_PLAIN_TYPES = frozenset(
    {"id_number", "phone", "passport", "plate", "card", "int", "datetime", "date", "enum"}
)


@dataclass(frozen=True)
class Col:
    """One column of an agency's file."""

    column: str  # the header (CSV/XLSX) or key (JSON lines), exactly as the agency writes it
    field: str  # the data centre's field key it carries
    type: FieldType
    fmt: str | None = None  # strftime pattern, EPOCH or EPOCH_MS for datetime/date columns
    values: Mapping[str, str] | None = None  # enum: raw value in the file -> canonical value
    plain: bool = False  # a text column of codes that never needs quoting or escaping
    json_number: bool = False  # JSON lines: written as a number, not a string
    also: tuple[str, ...] = ()  # further field keys read from this same column

    @property
    def needs_escaping(self) -> bool:
        """Whether values may contain characters that CSV must quote or JSON must escape."""
        return not (self.plain or self.type in _PLAIN_TYPES)

    def raw_value(self, canonical: str) -> str:
        """The agency's raw value for a canonical enum value ("in" -> "进站")."""
        assert self.values is not None, self.column
        for raw, canon in self.values.items():
            if canon == canonical:
                return raw
        raise KeyError(f"{self.column}: no raw value for {canonical!r}")


@dataclass(frozen=True)
class FeedShape:
    """One agency feed: how its files are laid out."""

    category: str
    format: FileFormat
    columns: tuple[Col, ...]
    encoding: Encoding = "utf-8"
    # Snapshots (rosters, the household registry) are whole lists sent on a schedule rather
    # than a day's events; they have no time order.
    snapshot: bool = False
    sheet_title: str = "Sheet1"
    fields: Mapping[str, Col] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_field: dict[str, Col] = {}
        for col in self.columns:
            for key in (col.field, *col.also):
                by_field[key] = col
        object.__setattr__(self, "fields", by_field)

    @property
    def ext(self) -> str:
        """File name extension."""
        return self.format

    @property
    def time_resolution(self) -> int:
        """Seconds the file's time column resolves: its rows can only *look* out of order
        when their times differ by at least this much (a date column hides the hour)."""
        col = self.first_of_type("datetime") or self.first_of_type("date")
        if col is None or col.fmt is None:
            return 0
        if col.type == "date":
            return 86400
        if col.fmt in (EPOCH, EPOCH_MS) or "%S" in col.fmt:
            return 1
        return 60 if "%M" in col.fmt else 3600

    def first_of_type(self, *types: FieldType) -> Col | None:
        """The first column of one of ``types`` (where faults of that kind land)."""
        for col in self.columns:
            if col.type in types:
                return col
        return None


SEX = {"男": "M", "女": "F"}
YMD = "%Y-%m-%d"
YMD_HM = "%Y-%m-%d %H:%M"
YMD_HMS = "%Y-%m-%d %H:%M:%S"


def _c(
    column: str,
    field_key: str,
    type_: FieldType,
    fmt: str | None = None,
    *,
    values: Mapping[str, str] | None = None,
    plain: bool = False,
    json_number: bool = False,
    also: tuple[str, ...] = (),
) -> Col:
    return Col(column, field_key, type_, fmt, values, plain, json_number, also)


SHAPES: tuple[FeedShape, ...] = (
    FeedShape(
        "rail_ticket",
        "csv",
        (
            _c("乘车人姓名", "name", "name"),
            _c("证件类型", "id_type", "text", plain=True),
            _c("证件号码", "id_number", "id_number"),
            _c("手机号", "phone", "phone"),
            _c("车次", "vehicle", "text", plain=True),
            _c("出发站", "origin", "text"),
            _c("到达站", "destination", "text"),
            _c("发车时间", "depart", "datetime", YMD_HM),
            _c("到达时间", "arrive", "datetime", YMD_HM),
            _c("车厢号", "carriage", "int"),
            _c("座位号", "seat", "text", plain=True),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "rail_gate",
        "csv",
        (
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("车站", "place", "text"),
            _c("检票口", "gate", "text", plain=True),
            _c("进出站", "direction", "enum", values={"进站": "out", "出站": "in"}),
            _c("检票时间", "start", "datetime", "%Y/%m/%d %H:%M:%S"),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "flight_manifest",
        "jsonl",
        (
            _c("passenger_name", "name", "name"),
            _c("id_type", "id_type", "text", plain=True),
            _c("id_no", "id_number", "id_number"),
            _c("passport_no", "passport", "passport"),
            _c("mobile", "phone", "phone"),
            _c("flight_no", "vehicle", "text", plain=True),
            _c("dep", "origin", "text"),
            _c("arr", "destination", "text"),
            _c("std", "depart", "datetime", "%Y-%m-%dT%H:%M:%S"),
            _c("sta", "arrive", "datetime", "%Y-%m-%dT%H:%M:%S"),
            _c("seat", "seat", "text", plain=True, also=("row",)),
        ),
    ),
    FeedShape(
        "airport_security",
        "csv",
        (
            _c("name", "name", "name"),
            _c("id_no", "id_number", "id_number"),
            _c("passport_no", "passport", "passport"),
            _c("flight_no", "vehicle", "text", plain=True),
            _c("check_time", "start", "datetime", YMD_HMS),
            _c("channel", "gate", "text", plain=True),
        ),
    ),
    FeedShape(
        "coach_ticket",
        "csv",
        (
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("联系电话", "phone", "phone"),
            _c("班次", "vehicle", "text", plain=True),
            _c("发车站", "origin", "text"),
            _c("到达站", "destination", "text"),
            _c("发车时间", "depart", "datetime", YMD_HM),
            _c("预计到达时间", "arrive", "datetime", YMD_HM),
            _c("座位号", "seat", "text", plain=True, also=("row",)),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "coach_station",
        "csv",
        (
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("客运站", "place", "text"),
            _c("进站时间", "start", "datetime", YMD_HMS),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "border_entry",
        "xlsx",
        (
            _c("姓名", "name", "name"),
            _c("性别", "sex", "enum", values=SEX),
            _c("出生日期", "birth_date", "date", YMD),
            _c("国籍", "nationality", "text"),
            _c("证件号码", "passport", "passport"),
            _c("身份证号", "id_number", "id_number"),
            _c("入境口岸", "port", "text"),
            _c("入境时间", "arrive", "datetime", YMD_HM),
            _c("来自国家或地区", "country", "text"),
            _c("航班号", "vehicle", "text", plain=True),
        ),
        sheet_title="入境记录",
    ),
    FeedShape(
        "border_exit",
        "xlsx",
        (
            _c("姓名", "name", "name"),
            _c("性别", "sex", "enum", values=SEX),
            _c("出生日期", "birth_date", "date", YMD),
            _c("国籍", "nationality", "text"),
            _c("证件号码", "passport", "passport"),
            _c("身份证号", "id_number", "id_number"),
            _c("出境口岸", "port", "text"),
            _c("出境时间", "depart", "datetime", YMD_HM),
            _c("前往国家或地区", "country", "text"),
            _c("航班号", "vehicle", "text", plain=True),
        ),
        sheet_title="出境记录",
    ),
    FeedShape(
        "telecom_roaming",
        "csv",
        (
            _c("msisdn", "phone", "phone"),
            _c("home_city", "origin", "text"),
            _c("arrive_time", "arrive", "datetime", EPOCH),
            _c("first_cell", "place", "text", plain=True),
        ),
    ),
    FeedShape(
        "telecom_cell",
        "csv",
        (
            _c("msisdn", "phone", "phone"),
            _c("lac", "lac", "text", plain=True),
            _c("ci", "ci", "text", plain=True),
            _c("start_time", "start", "datetime", "%Y%m%d%H%M%S"),
            _c("end_time", "end", "datetime", "%Y%m%d%H%M%S"),
        ),
    ),
    FeedShape(
        "telecom_itinerary",
        "jsonl",
        (
            # Operators' systems keep the MSISDN as a 64-bit integer and export it so.
            _c("msisdn", "phone", "phone", json_number=True),
            _c("cities", "origin", "text"),
            _c("query_date", "arrive", "date", YMD),
        ),
    ),
    FeedShape(
        "case_confirmed",
        "xlsx",
        (
            _c("病例编号", "detail", "text", plain=True),
            _c("姓名", "name", "name"),
            _c("性别", "sex", "enum", values=SEX),
            _c("年龄", "age", "int"),
            _c("身份证号", "id_number", "id_number"),
            _c("联系电话", "phone", "phone"),
            _c("现住址", "address", "text"),
            _c("发病日期", "onset", "date", YMD),
            _c("确诊日期", "at", "date", YMD),
            _c("确诊医院", "place", "text"),
            _c("临床分型", "result", "text"),
        ),
        sheet_title="确诊病例",
    ),
    FeedShape(
        "case_asymptomatic",
        "xlsx",
        (
            _c("编号", "detail", "text", plain=True),
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("联系电话", "phone", "phone"),
            _c("现住址", "address", "text"),
            _c("检出日期", "at", "date", YMD),
            _c("报告单位", "place", "text"),
        ),
        sheet_title="无症状感染者",
    ),
    FeedShape(
        "case_suspected",
        "csv",
        (
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("联系电话", "phone", "phone"),
            _c("就诊医院", "place", "text"),
            _c("报告时间", "at", "datetime", YMD_HM),
        ),
    ),
    FeedShape(
        "lab_test",
        "csv",
        (
            _c("sample_id", "detail", "text", plain=True),
            _c("name", "name", "name"),
            _c("id_number", "id_number", "id_number"),
            _c("phone", "phone", "phone"),
            _c("sampling_time", "at", "datetime", YMD_HMS),
            _c("sampling_site", "place", "text"),
            _c("result", "result", "enum", values={"阴性": "negative", "阳性": "positive"}),
            _c("report_time", "reported", "datetime", YMD_HMS),
        ),
    ),
    FeedShape(
        "hospital_admission",
        "csv",
        (
            _c("住院号", "detail", "text", plain=True),
            _c("患者姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("联系电话", "phone", "phone"),
            _c("医院名称", "place", "text"),
            _c("入院时间", "at", "datetime", YMD_HM),
            _c("出院时间", "end", "datetime", YMD_HM),
            _c("入院诊断", "result", "text"),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "vaccination",
        "csv",
        (
            _c("受种者姓名", "name", "name"),
            _c("身份证号码", "id_number", "id_number"),
            _c("接种时间", "at", "datetime", YMD_HM),
            _c("疫苗名称", "result", "text"),
            _c("剂次", "dose", "int"),
            _c("接种单位", "place", "text"),
        ),
    ),
    FeedShape(
        "coop_investigation",
        "xlsx",
        (
            _c("协查函编号", "detail", "text", plain=True),
            _c("来函城市", "origin", "text"),
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("手机号", "phone", "phone"),
            _c("关系", "result", "enum", values={"密接": "close", "次密接": "secondary"}),
            _c("暴露时间", "at", "datetime", YMD_HM),
            _c("暴露地点", "place", "text"),
        ),
        sheet_title="协查人员",
    ),
    FeedShape(
        "pharmacy_purchase",
        "csv",
        (
            _c("药店名称", "place_name", "text"),
            _c("药店编码", "place", "text", plain=True),
            _c("购药人姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("联系电话", "phone", "phone"),
            _c("购药时间", "at", "datetime", YMD_HMS),
            _c("药品名称", "result", "text"),
            _c("数量", "quantity", "int"),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "coldchain_goods",
        "csv",
        (
            _c("batch_no", "detail", "text", plain=True),
            _c("product", "product", "text"),
            _c("origin_country", "country", "text"),
            _c("cold_store", "place", "text"),
            _c("handler_name", "name", "name"),
            _c("handler_id", "id_number", "id_number"),
            _c("handler_phone", "phone", "phone"),
            _c("in_time", "start", "datetime", YMD_HM),
        ),
    ),
    FeedShape(
        "student_roster",
        "xlsx",
        (
            _c("学校名称", "setting_name", "text"),
            _c("学校标识码", "setting", "text", plain=True),
            _c("年级", "grade", "text"),
            _c("班级", "unit", "text"),
            _c("学生姓名", "name", "name"),
            _c("性别", "sex", "enum", values=SEX),
            _c("身份证号", "id_number", "id_number"),
            _c("家长电话", "phone", "phone"),
            _c("家庭住址", "address", "text"),
        ),
        snapshot=True,
        sheet_title="学生花名册",
    ),
    FeedShape(
        "staff_roster",
        "xlsx",
        (
            _c("学校名称", "setting_name", "text"),
            _c("学校标识码", "setting", "text", plain=True),
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("手机号", "phone", "phone"),
            _c("岗位", "role", "text"),
        ),
        snapshot=True,
        sheet_title="教职工花名册",
    ),
    FeedShape(
        "hotel_checkin",
        "csv",
        (
            _c("旅馆名称", "place_name", "text"),
            _c("旅馆编码", "place", "text", plain=True),
            _c("姓名", "name", "name"),
            _c("证件类型", "id_type", "text", plain=True),
            _c("证件号码", "id_number", "id_number"),
            _c("入住时间", "start", "datetime", "%Y%m%d%H%M"),
            _c("退房时间", "end", "datetime", "%Y%m%d%H%M"),
            _c("房间号", "unit", "text", plain=True),
            _c("来自", "origin", "text"),
        ),
        encoding="gbk",
    ),
    FeedShape(
        "household_registry",
        "csv",
        (
            _c("户号", "setting", "text", plain=True),
            _c("姓名", "name", "name"),
            _c("性别", "sex", "enum", values=SEX),
            _c("民族", "ethnicity", "text"),
            _c("出生日期", "birth_date", "date", "%Y%m%d"),
            _c("公民身份号码", "id_number", "id_number"),
            _c("住址", "address", "text"),
            _c("派出所", "police_station", "text"),
            _c("与户主关系", "role", "text"),
        ),
        encoding="gbk",
        snapshot=True,
    ),
    FeedShape(
        "vehicle_checkpoint",
        "csv",
        (
            _c("hphm", "plate", "plate"),
            _c("kkbh", "place", "text", plain=True),
            _c("kkmc", "place_name", "text"),
            _c("gcsj", "start", "datetime", YMD_HMS),
            _c("fxmc", "direction", "enum", values={"进城": "in", "出城": "out"}),
            _c("cllx", "vehicle_type", "text"),
        ),
    ),
    FeedShape(
        "highway_toll",
        "csv",
        (
            _c("车牌号", "plate", "plate"),
            _c("入口站", "origin", "text"),
            _c("入口时间", "depart", "datetime", YMD_HMS),
            _c("出口站", "destination", "text"),
            _c("出口时间", "arrive", "datetime", YMD_HMS),
            _c("车型", "vehicle_type", "text"),
        ),
    ),
    FeedShape(
        "ride_hailing",
        "jsonl",
        (
            _c("order_id", "detail", "text", plain=True),
            _c("passenger_phone", "phone", "phone"),
            _c("driver_plate", "place", "text", plain=True),
            _c("pickup_time", "start", "datetime", YMD_HMS),
            _c("dropoff_time", "end", "datetime", YMD_HMS),
            _c("pickup_area", "origin", "text"),
            _c("dropoff_area", "destination", "text"),
        ),
    ),
    FeedShape(
        "transit_card",
        "csv",
        (
            _c("card_no", "card", "card"),
            _c("bind_phone", "phone", "phone"),
            _c("line_name", "line", "text"),
            _c("station_name", "station", "text"),
            _c("tap_time", "start", "datetime", EPOCH_MS),
            _c("tap_type", "direction", "enum", values={"1": "in", "2": "out"}),
        ),
    ),
    FeedShape(
        "elderly_care",
        "xlsx",
        (
            _c("机构名称", "setting_name", "text"),
            _c("姓名", "name", "name"),
            _c("身份证号", "id_number", "id_number"),
            _c("类别", "role", "enum", values={"老人": "resident", "员工": "staff"}),
            _c("联系电话", "phone", "phone"),
            _c("入住日期", "since", "date", YMD),
        ),
        snapshot=True,
        sheet_title="机构人员",
    ),
    FeedShape(
        "hotline_tipoff",
        "csv",
        (
            _c("工单编号", "detail", "text", plain=True),
            _c("来电时间", "at", "datetime", YMD_HMS),
            _c("反映人电话", "caller_phone", "text", plain=True),
            _c("被反映人姓名", "name", "name"),
            _c("被反映人电话", "phone", "phone"),
            _c("地址", "address", "text"),
            _c("内容摘要", "result", "text"),
        ),
    ),
)

SHAPES_BY_CATEGORY: dict[str, FeedShape] = {shape.category: shape for shape in SHAPES}

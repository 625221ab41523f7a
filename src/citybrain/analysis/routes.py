"""JSON API of collision analysis (/api/v1/analysis): a person's trajectory for the city
command centre, read with a stated purpose and audited."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from citybrain.analysis import timeline
from citybrain.core.authz.deps import authenticated
from citybrain.core.authz.principal import Principal
from citybrain.datahub.catalog import catalog
from citybrain.datahub.lake import LakePaths
from citybrain.datahub.routes import lake_paths
from citybrain.kit.errors import error_responses
from citybrain.kit.web import DB, language

router = APIRouter(prefix="/api/v1/analysis", tags=["analysis 碰撞分析"])
# The lake of this process: the data centre's dependency, so a test's lake serves both.
Paths = Annotated[LakePaths, Depends(lake_paths)]
MAX_KEY = 2**63 - 1  # record ids and person keys are int64


async def trajectory_reader(
    who: Annotated[Principal, Depends(authenticated)],
) -> Principal:
    """Dependency: a principal who may read trajectories, else 403 (the refusal audited)."""
    timeline.check_access(who)
    return who


Reader = Annotated[Principal, Depends(trajectory_reader)]


class TimelineEntryOut(BaseModel):
    """One record of a person's timeline."""

    time: dt.datetime | None = Field(description="开始时间（城市本地时间，无时区）；名册类为空")
    end: dt.datetime | None = Field(description="结束时间（停留、到达），没有则为空")
    day: dt.date = Field(description="所属日期；无时间的记录为其数据分区日")
    kind: str = Field(description="湖中记录类型，如 travel、presence、health（两类以+连接）")
    category: str = Field(description="数据类别代码")
    category_name: str = Field(description="数据类别名称")
    place: str | None = Field(description="地点；出行为出发地 → 目的地；名册为所在单位")
    detail: str | None = Field(description="车次座位、进出方向、检测结果等")
    record_id: int = Field(description="湖中记录编号")
    rule: str = Field(description="将该记录关联到此人的身份关联规则")


class TimelineOut(BaseModel):
    """A person's timeline, in time order."""

    person_key: int
    record_id: int | None = Field(description="按记录编号查询时的记录编号")
    since: dt.date | None
    until: dt.date | None
    count: int
    more: bool = Field(description="是否还有更多记录（超出 limit）")
    items: list[TimelineEntryOut]


TIMELINE_DESCRIPTION = """
Every lake record linked to one person (个人轨迹), across every source, in time order: when,
where, which source, the record id, and the identity-linkage rule that placed the record with
this person. Ask by `person_key`, or by `record_id` for the person holding that record (one of
the two). `since` / `until` keep records overlapping those days (whole days, city time).

The lake holds no names or ID numbers, but a trajectory is personal data: only city command
centre accounts at city level may read one (else 403), a `purpose` is required (422 without),
and every read, refusal and failed lookup is written to the audit log (`analysis.timeline`).
An unknown person key or record id is 404; before identity linkage has run, 409.
"""


@router.get(
    "/timeline",
    response_model=TimelineOut,
    summary="A person's trajectory across every source (audited, purpose required)",
    description=TIMELINE_DESCRIPTION,
    responses=error_responses(401, 403, 404, 409, 422),
)
def person_timeline(
    request: Request,
    session: DB,
    who: Reader,
    paths: Paths,
    purpose: Annotated[
        str, Query(min_length=2, max_length=200, description="查询事由，如：流调、密接排查")
    ],
    person_key: Annotated[int | None, Query(ge=1, le=MAX_KEY, description="人员编号")] = None,
    record_id: Annotated[
        int | None, Query(ge=0, le=MAX_KEY, description="记录编号（查持有该记录的人）")
    ] = None,
    since: Annotated[dt.date | None, Query(description="起始日期（含）")] = None,
    until: Annotated[dt.date | None, Query(description="截止日期（含）")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> TimelineOut:
    """The audited read of one person's timeline."""
    read = timeline.read_timeline(
        session,
        who,
        paths,
        person_key=person_key,
        record_id=record_id,
        since=since,
        until=until,
        purpose=purpose,
        limit=limit,
    )
    lang = language(request)
    sources = catalog()
    items = [
        TimelineEntryOut(
            **row,
            category_name=sources[row["category"]].label(lang)
            if row["category"] in sources
            else row["category"],
        )
        for row in read.rows
    ]
    return TimelineOut(
        person_key=read.person_key,
        record_id=read.record_id,
        since=read.since,
        until=read.until,
        count=len(items),
        more=read.more,
        items=items,
    )

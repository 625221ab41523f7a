"""Pydantic I/O of the data centre's API: what a push answers, the status board, the file
ledger and the quarantine."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class PushResult(BaseModel):
    """What became of a pushed batch (推送结果); ``received = accepted + quarantined +
    duplicate``, exactly. The same Idempotency-Key with the same body answers this again."""

    idempotency_key: str
    category: str = Field(description="数据类别")
    file_id: str = Field(description="批次内容的标识（SHA-256 前20位）")
    status: str = Field(
        description="ingested 已汇聚 | rejected 整批无法读取 | already_ingested 相同内容此前已汇聚"
    )
    received: int = Field(description="收到的行数")
    accepted: int = Field(description="入湖的行数")
    quarantined: int = Field(description="隔离的问题行数")
    duplicate: int = Field(description="重复的行数")
    late: int = Field(description="迟报的行数（早于交付日前一天）")
    reasons: dict[str, int] = Field(description="问题原因代码 → 行数")
    error: str | None = Field(default=None, description="整批被拒时的原因")


class CategoryStatusOut(BaseModel):
    """One category's line on the status board (数据汇聚状态)."""

    code: str
    name: str
    name_en: str
    agency: str
    origin: str = Field(description="agency_feed 机构报送 | platform_app 本平台应用")
    kinds: list[str]
    sensitivity: str
    retention_days: int
    frequency: str
    files: int
    rejected_files: int
    received: int
    records: int
    quarantined: int
    duplicate: int
    late: int
    first_day: str | None
    last_day: str | None
    last_file: str | None
    last_ingested_at: str | None
    hours_since_last_file: float | None
    stale: bool
    state: str = Field(
        description="ok 正常 | stale 逾期未报 | no_data 无数据 | awaiting_app 待应用上线"
    )


class StatusOut(BaseModel):
    """All 42 categories in catalogue order."""

    generated_at: dt.datetime
    categories: list[CategoryStatusOut]


class IntakeFileOut(BaseModel):
    """One file (or pushed batch) in the ledger (汇聚台账)."""

    file_id: str
    category: str
    name: str
    channel: str = Field(description="drop 文件投递 | push 接口推送")
    status: str
    error: str | None
    size_bytes: int
    delivered_day: dt.date | None
    first_day: dt.date | None
    last_day: dt.date | None
    received: int
    accepted: int
    quarantined: int
    duplicate: int
    late: int
    reasons: dict[str, int]
    ingested_at: dt.datetime


class FilePage(BaseModel):
    """One page of the ledger, newest first."""

    total: int
    limit: int
    offset: int
    items: list[IntakeFileOut]


class QuarantineRowOut(BaseModel):
    """A quarantined row: where it is, what is wrong, and the row itself."""

    category: str
    file_name: str
    line: int = Field(description="文件中的行号")
    column: str | None = Field(description="出错的列")
    reason: str = Field(description="原因代码")
    message: str = Field(description="原因说明")
    errors: str | None = Field(description="该行所有出错的列")
    raw: str = Field(description="原始内容：默认脱敏；说明事由时为报送原文")


class QuarantinePage(BaseModel):
    """Quarantined rows in category, file and line order."""

    plain: bool = Field(description="是否为原文（已说明事由并记入审计）")
    limit: int
    offset: int
    more: bool = Field(description="之后是否还有问题行")
    items: list[QuarantineRowOut]

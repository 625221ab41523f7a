"""Pydantic I/O of the health-code API: the trust list, scans and place codes."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

MAX_CODE_TEXT = 4096


class TrustedKeyOut(BaseModel):
    """One key of the trust list."""

    kid: str = Field(description="密钥标识：SPKI 的 SHA-256 前8字节（base64url） key id")
    alg: Literal["ES256"] = "ES256"
    spki: str = Field(description="公钥（DER SubjectPublicKeyInfo，base64） public key")
    status: Literal["active", "retired"]
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = Field(
        default=None, description="此后该密钥签发的码不再有效 codes refused after this"
    )


class TrustListOut(BaseModel):
    """The trust list (信任列表) gates download to verify codes offline."""

    issuer: str
    generated_at: dt.datetime | None
    keys: list[TrustedKeyOut]


class ScanIn(BaseModel):
    """A gate's scan of a person's health code, or of their printed health card (扫码)."""

    code: str = Field(
        min_length=1,
        max_length=MAX_CODE_TEXT,
        description="码的文本：健康码 CB1:…，或纸质健康卡 CBK1:… "
        "a health code (CB1:) or a printed health card (CBK1:)",
    )
    direction: Literal["entry", "exit"] = Field(default="entry", description="进 entry / 出 exit")
    place_code: str | None = Field(
        default=None,
        max_length=24,
        description="场所代码：设备令牌不需填写（设备即场所）；工作人员须填写 place (staff only)",
    )


class CardHolderOut(BaseModel):
    """A printed health card's holder (纸质健康卡), for the gate staff to check against the ID
    card the holder shows: the card has no photograph."""

    card_no: str = Field(description="卡号 the card's number as printed")
    name: str = Field(description="姓名（脱敏） the holder's name, masked")
    id_tail: str = Field(description="身份证号后四位 the ID number's last four characters")
    check_identity: bool = Field(True, description="须核对身份证 the ID card must be checked")


class ScanOut(BaseModel):
    """The decision at the gate, with its reason, after the scan is recorded."""

    scan_id: int
    passed: bool
    decision: Literal["pass", "deny"]
    reason_code: str
    reason: str = Field(description="原因（按请求语言） reason in the request's language")
    reason_zh: str
    reason_en: str
    colour: Literal["green", "yellow", "red", "unknown"]
    colour_source: Literal["online", "code", "unknown"] = Field(
        description="online: 当前颜色（风险引擎） current; "
        "code: 码内颜色（登记库无此人） the colour in the code; "
        "unknown: 健康卡持卡人已不在登记库 a card whose holder is no longer registered"
    )
    place_code: str
    place_name: str
    direction: str
    scanned_at: dt.datetime
    repeat: bool = Field(
        False,
        description="同一场所5分钟内重复扫码：返回已记录的那次，不再记录 "
        "a repeat place-code scan within five minutes: the visit already recorded",
    )
    card: CardHolderOut | None = Field(
        None,
        description="扫的是纸质健康卡时：持卡人（脱敏），请核对身份证 "
        "a printed health card: its holder, masked, to check against the ID card",
    )


class PlaceScanIn(BaseModel):
    """A resident scanning a place code (场所码) with their own health code."""

    place: str = Field(min_length=1, max_length=MAX_CODE_TEXT, description="场所码文本（CBP1:…）")
    code: str = Field(min_length=1, max_length=MAX_CODE_TEXT, description="本人健康码文本（CB1:…）")


class PlaceCodeOut(BaseModel):
    """A signed place code (场所码) to print and post."""

    place_code: str
    place_name: str
    text: str
    url: str = Field(description="打印的链接：手机相机扫码即打开居民登记页")
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    svg: str


MAX_OFFLINE_ITEMS = 500


class OfflineScanIn(BaseModel):
    """One scan a gate made while offline (离线扫码), as it queued it.

    Every field is checked per item by the server (a bad item is refused with its reason and
    field, the others are still recorded), so the types here are loose on purpose."""

    client_id: str = Field(max_length=200, description="设备生成的随机编号 the gate's own id")
    code: str = Field(max_length=2 * MAX_CODE_TEXT, description="码的文本（CB1:…）")
    direction: str = Field(default="entry", max_length=32, description="进 entry / 出 exit")
    place_code: str | None = Field(
        default=None, max_length=64, description="场所代码（工作人员须填写） place (staff only)"
    )
    scanned_at: str = Field(
        max_length=64, description="扫码时间（ISO 8601，带时区） when it was scanned"
    )
    decision: str = Field(
        max_length=32, description="门岗当时的判断 pass / deny (the gate's decision offline)"
    )


class OfflineScansIn(BaseModel):
    """A gate's queue of offline scans, uploaded when back online (at most 500 per request)."""

    items: list[OfflineScanIn] = Field(min_length=1, max_length=MAX_OFFLINE_ITEMS)


class OfflineScanResultOut(BaseModel):
    """What became of one uploaded offline scan."""

    client_id: str
    status: Literal["recorded", "duplicate", "refused"]
    scan_id: int | None = None
    reason_code: str | None = Field(default=None, description="拒收原因代码 why refused")
    reason: str | None = Field(default=None, description="原因（按请求语言）")
    reason_zh: str | None = None
    reason_en: str | None = None
    field: str | None = Field(default=None, description="出错的字段 the item's field at fault")
    code_colour: Literal["green", "yellow", "red"] | None = Field(
        default=None, description="码内颜色 the colour inside the code"
    )
    current_colour: Literal["green", "yellow", "red"] | None = Field(
        default=None, description="当前（联网）颜色；登记库无此人时为空 the colour now"
    )
    flagged: bool = Field(
        default=False,
        description="离线放行但当前非绿码，需跟进 passed offline but not green now: follow up",
    )


class OfflineScansOut(BaseModel):
    """The answer to an upload: per item in the order sent, and the counts."""

    recorded: int
    duplicate: int
    refused: int
    flagged: int
    items: list[OfflineScanResultOut]

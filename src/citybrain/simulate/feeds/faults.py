"""The agencies' mistakes, injected at configured rates with numpy masks.

Each row carries a bit set of the faults it has (``Fault``), which goes into the ground truth
(``record_owner``) and the per-feed counts (``faults.json``). Field faults change values before
rendering: a look-alike or sound-alike character in a name, a wrong check character in a
resident ID, an empty phone. Row faults (duplicates, late delivery, malformed rows) and file
faults (rows out of time order) are applied by the pipeline.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from citybrain.simulate.feeds.render import choose, map_strings

Bools = npt.NDArray[np.bool_]
Bits = npt.NDArray[np.uint8]


class Fault(enum.IntFlag):
    """What went wrong with one row (several may apply)."""

    NAME_TYPO = 1
    BAD_CHECKSUM = 2
    MISSING_PHONE = 4
    MALFORMED = 8
    DUPLICATE = 16
    LATE = 32


FAULT_NAMES: dict[Fault, str] = {
    Fault.NAME_TYPO: "name_typo",
    Fault.BAD_CHECKSUM: "bad_checksum",
    Fault.MISSING_PHONE: "missing_phone",
    Fault.MALFORMED: "malformed",
    Fault.DUPLICATE: "duplicate",
    Fault.LATE: "late",
}
# Files, not rows: counted per feed in faults.json, not marked in record_owner.
OUT_OF_ORDER = "out_of_order"


def fault_labels() -> list[str | None]:
    """The truth label of every bit combination: ``None`` or names joined by ``+``."""
    labels: list[str | None] = []
    for bits in range(64):
        names = [name for flag, name in FAULT_NAMES.items() if bits & flag]
        labels.append("+".join(names) if names else None)
    return labels


# Characters of Chinese names and a character that looks or sounds like each: what a clerk
# keying a name from a form or from speech gets wrong. Every character is in GBK.
SIMILAR: dict[str, str] = {
    # surnames
    "王": "汪", "李": "季", "张": "章", "刘": "留", "陈": "程", "杨": "扬", "赵": "肖",
    "黄": "王", "周": "州", "吴": "武", "徐": "许", "孙": "荪", "胡": "湖", "朱": "珠",
    "高": "郜", "林": "琳", "何": "河", "郭": "国", "马": "玛", "罗": "逻", "梁": "粱",
    "宋": "送", "郑": "正", "谢": "榭", "韩": "寒", "唐": "塘", "冯": "逢", "于": "余",
    "董": "懂", "萧": "肖", "程": "成", "曹": "漕", "袁": "元", "邓": "登", "许": "徐",
    "傅": "付", "沈": "审", "曾": "增", "彭": "澎", "吕": "侣", "苏": "酥", "卢": "芦",
    "蒋": "奖", "蔡": "菜", "贾": "价", "丁": "叮", "魏": "巍", "薛": "雪", "叶": "页",
    "阎": "闫", "余": "于", "潘": "番", "杜": "肚", "戴": "代", "夏": "厦", "钟": "仲",
    "汪": "王", "田": "由", "任": "仁", "姜": "江", "范": "饭", "方": "芳", "石": "时",
    "姚": "尧", "谭": "谈", "廖": "寥", "邹": "周", "熊": "雄", "金": "全", "陆": "路",
    "欧": "鸥", "阳": "杨", "司": "思", "诸": "朱", "葛": "戈",
    # given names
    "伟": "玮", "强": "墙", "磊": "垒", "军": "君", "勇": "永", "杰": "洁", "涛": "滔",
    "斌": "彬", "超": "起", "明": "鸣", "刚": "钢", "平": "苹", "辉": "晖", "鹏": "朋",
    "华": "化", "飞": "菲", "鑫": "新", "波": "坡", "宇": "雨", "浩": "皓", "凯": "恺",
    "健": "建", "俊": "骏", "帆": "凡", "帅": "师", "旭": "绪", "宁": "柠", "龙": "隆",
    "峰": "锋", "建": "健", "国": "郭", "庆": "青", "志": "智", "文": "纹", "博": "搏",
    "芳": "方", "娜": "那", "敏": "民", "静": "净", "丽": "莉", "艳": "燕", "娟": "绢",
    "霞": "侠", "秀": "绣", "玲": "铃", "桂": "贵", "英": "瑛", "红": "虹", "梅": "媒",
    "琳": "林", "洁": "杰", "雪": "薛", "燕": "艳", "婷": "亭", "颖": "影", "慧": "惠",
    "倩": "茜", "晶": "品", "欣": "新", "怡": "恰", "佳": "住", "雨": "宇", "涵": "含",
    "萱": "宣", "琪": "棋", "璐": "路", "瑶": "遥", "德": "得", "荣": "容", "秋": "球",
    "春": "椿", "海": "每", "兰": "蓝", "玉": "王", "珍": "真", "凤": "风",
    "云": "芸", "东": "冬", "亮": "量", "成": "城", "振": "震", "家": "佳", "子": "孑",
}  # fmt: skip
# For a character outside the table: one of these (a clerk's guess at an unclear character).
FALLBACK = "玮琳婷浩杰"


def _similar(char: str) -> str:
    replacement = SIMILAR.get(char)
    if replacement and replacement != char:
        return replacement
    for candidate in FALLBACK:
        if candidate != char:
            return candidate
    raise AssertionError("unreachable")


def typo_names(names: pa.Array, surname_share: float, rng: np.random.Generator) -> pa.Array:
    """Each name with one character replaced by a similar one.

    Mostly a character of the given name (the last one), sometimes the surname. Names must be
    non-empty; a one-character name just gets its only character replaced.
    """
    n = len(names)
    lengths = pc.utf8_length(names).to_numpy(zero_copy_only=False)
    first = rng.random(n) < surname_share
    pos = np.where(first | (lengths <= 1), 0, lengths - 1)
    # Slice by row-varying positions: Arrow slices take scalars, so split the rows by position.
    out: list[pa.Array] = []
    order: list[npt.NDArray[np.int64]] = []
    for p in np.unique(pos):
        rows = np.flatnonzero(pos == p)
        sub = pc.take(names, pa.array(rows))
        before = pc.utf8_slice_codeunits(sub, 0, int(p))
        char = pc.utf8_slice_codeunits(sub, int(p), int(p) + 1)
        after = pc.utf8_slice_codeunits(sub, int(p) + 1)
        out.append(pc.binary_join_element_wise(before, map_strings(char, _similar), after, ""))
        order.append(rows)
    if not out:
        return names
    combined = pa.concat_arrays(out)
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(n)
    return pc.take(combined, pa.array(inverse))


_CHECK_CHARS = "0123456789X"


def break_checksums(ids: pa.Array, rng: np.random.Generator) -> pa.Array:
    """Each 18-character resident ID with its check character changed to a wrong one."""
    head = pc.utf8_slice_codeunits(ids, 0, 17)
    last = pc.utf8_slice_codeunits(ids, 17, 18)
    codes = pc.fill_null(pc.index_in(last, value_set=pa.array(list(_CHECK_CHARS))), 0)
    shifted = (codes.to_numpy(zero_copy_only=False) + rng.integers(1, 11, len(ids))) % 11
    return pc.binary_join_element_wise(head, choose(shifted, list(_CHECK_CHARS)), "")


def draw(rate: float, eligible: Bools, rng: np.random.Generator) -> Bools:
    """A Bernoulli mask at ``rate`` among the eligible rows (nothing drawn at rate 0)."""
    if rate <= 0 or not eligible.any():
        return np.zeros(len(eligible), dtype=np.bool_)
    return eligible & (rng.random(len(eligible)) < rate)


def present(arr: pa.Array) -> Bools:
    """Rows with a non-empty value."""
    if len(arr) == 0:
        return np.zeros(0, dtype=np.bool_)
    ok = pc.and_(pc.is_valid(arr), pc.greater(pc.utf8_length(pc.fill_null(arr, "")), 0))
    return np.asarray(ok.to_numpy(zero_copy_only=False), dtype=np.bool_)


def replace_rows(arr: pa.Array, mask: Bools, values: pa.Array | None) -> pa.Array:
    """``arr`` with the masked rows replaced by ``values`` (in order), or nulled if None."""
    if not mask.any():
        return arr
    if values is None:
        return pc.if_else(pa.array(mask), pa.nulls(len(arr), arr.type), arr)
    return pc.replace_with_mask(arr, pa.array(mask), values.cast(arr.type))

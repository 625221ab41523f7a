"""QR rendering of codes with segno: alphanumeric mode (base45 and the prefixes are within
its character set, about 5.5 bits a character instead of 8) and error correction Q, as the
EU DCC recommends: a code on a cracked or glaring phone screen still reads.

A resident's code is signed afresh at every view, so its QR is drawn at every view too. The
QR standard asks the encoder to try the eight data masks and keep the one with the lowest
penalty (7.8.3); segno scores them in pure Python, about 80% of a symbol's cost. Here the
symbol is encoded once, the eight masked symbols are scored together with numpy by segno's
own rules, and the chosen one is finished by segno: the same symbol as ``segno.make_qr``
with its own mask choice (a test compares them), in about a third of the time. That uses
segno's encoder module, not only its public API, so segno is pinned to its minor version.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import segno
from segno import encoder

ERROR_CORRECTION = "q"
# Quiet zone of four modules, as the QR standard asks; scanners fail more often without it.
BORDER = 4
# Dark-light-dark-dark-dark-light-dark: the finder-like pattern the third penalty rule counts.
_FINDER_LIKE_BITS = 0b1011101

# segno's encoder module and QRCode's constructor are not in its type stubs.
segno_encoder: Any = encoder
_QRCode: Any = segno.QRCode

Grid = npt.NDArray[np.uint8]
Flags = npt.NDArray[np.bool_]


def qr(text: str) -> segno.QRCode:
    """The QR symbol of ``text`` (alphanumeric when the text allows, bytes otherwise)."""
    try:
        unmasked = segno_encoder.encode(
            text,
            error=ERROR_CORRECTION,
            mode="alphanumeric",
            mask=0,
            micro=False,
            boost_error=False,
        )
    except ValueError:
        unmasked = segno_encoder.encode(
            text, error=ERROR_CORRECTION, mask=0, micro=False, boost_error=False
        )
    symbol = np.array(unmasked.matrix, dtype=np.uint8)
    region, outside = _layout(unmasked.version)
    masks = _masks(len(symbol))
    # The data modules as they were before segno applied mask 0.
    data = symbol ^ (masks[0] & region)
    candidates = np.where(region, data ^ masks, outside)
    best = int(np.argmin(penalties(candidates)))  # the first of equals, as segno keeps
    chosen = np.where(region, data ^ masks[best], symbol)
    matrix = tuple(bytearray(row.tobytes()) for row in chosen)
    segno_encoder.add_format_info(matrix, unmasked.version, unmasked.error, best)
    qr_code: segno.QRCode = _QRCode(unmasked._replace(matrix=matrix, mask=best))
    return qr_code


@lru_cache(maxsize=8)
def _layout(version: int) -> tuple[Flags, Grid]:
    """For a QR version: which modules carry data (masks apply to them only), and the symbol
    outside them as segno scores it (finder, timing and alignment patterns; the format and
    version areas still light, as they are filled only after the mask is chosen)."""
    width = segno_encoder.calc_matrix_size(version)
    function = segno_encoder.make_matrix(width, width)
    segno_encoder.add_finder_patterns(function, width, width)
    segno_encoder.add_alignment_patterns(function, width, width)
    grid = np.array(function, dtype=np.uint8)
    # make_matrix marks the modules no pattern took with 2; those carry the data.
    region = grid > 1
    return region, np.where(region, 0, grid).astype(np.uint8)


@lru_cache(maxsize=8)
def _masks(width: int) -> Grid:
    """The eight data masks of a ``width``-module symbol (1 where a module is inverted), from
    segno's own mask conditions (ISO/IEC 18004 table 10)."""
    i, j = np.indices((width, width))
    functions = segno_encoder.get_data_mask_functions(is_micro=False)
    return np.stack([np.asarray(f(i, j), dtype=np.uint8) for f in functions])


def penalties(symbols: Grid) -> list[int]:
    """The penalty score of each of ``symbols`` (shape masks × width × width), by the four
    rules of ISO/IEC 18004 7.8.3.1 as segno counts them."""
    lines = np.concatenate([symbols, symbols.transpose(0, 2, 1)], axis=1)  # rows, then columns
    return [
        int(n1) + int(n2) + n3 + n4
        for n1, n2, n3, n4 in zip(
            _same_colour_runs(lines),
            _same_colour_blocks(symbols),
            _finder_like_patterns(lines),
            _dark_proportion(symbols),
            strict=True,
        )
    ]


def _same_colour_runs(lines: Grid) -> npt.NDArray[np.int64]:
    """N1: a run of 5 + i modules of one colour in a row or column costs 3 + i."""
    count, per_symbol, width = lines.shape
    flat = lines.reshape(-1, width)
    # A sentinel at each end of a line makes every line start and end a run.
    padded = np.pad(flat, ((0, 0), (1, 1)), constant_values=2)
    line_of, edge = np.nonzero(padded[:, 1:] != padded[:, :-1])
    same_line = line_of[1:] == line_of[:-1]
    lengths = np.diff(edge)[same_line]
    symbol_of = line_of[1:][same_line] // per_symbol
    cost = np.where(lengths >= 5, lengths - 2, 0)
    return np.asarray(np.bincount(symbol_of, weights=cost, minlength=count), dtype=np.int64)


def _same_colour_blocks(symbols: Grid) -> npt.NDArray[np.int64]:
    """N2: each 2 × 2 block of one colour costs 3 (overlapping blocks each count)."""
    top_left = symbols[:, :-1, :-1]
    same = (
        (top_left == symbols[:, 1:, :-1])
        & (top_left == symbols[:, :-1, 1:])
        & (top_left == symbols[:, 1:, 1:])
    )
    return np.asarray(same.sum(axis=(1, 2)) * 3, dtype=np.int64)


def _finder_like_patterns(lines: Grid) -> list[int]:
    """N3: 1:1:3:1:1 dark-light-dark with four light modules before or after costs 40; a
    line is searched left to right, resuming after a counted pattern (segno's reading)."""
    count, per_symbol, width = lines.shape
    # Each run of seven modules read as a 7-bit number, compared with the pattern's.
    windows = np.zeros((count, per_symbol, width - 6), dtype=np.int16)
    for k in range(7):
        windows = (windows << 1) | lines[:, :, k : width - 6 + k]
    symbol_of, line_of, starts = np.nonzero(windows == _FINDER_LIKE_BITS)
    # Dark modules before each position, in the lines where the pattern was found.
    at_line = np.cumsum(np.pad(lines[symbol_of, line_of], ((0, 0), (1, 0))), axis=1, dtype=np.int64)
    rows = np.arange(len(starts))

    def dark(first: npt.NDArray[np.intp], end: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        return at_line[rows, end] - at_line[rows, first]

    # Up to four modules each side; at a line's end the missing side counts as light.
    light_before = dark(np.maximum(starts - 4, 0), starts) == 0
    light_after = dark(starts + 7, np.minimum(starts + 11, width)) == 0
    counts = light_before | light_after
    scores = [0] * count
    resume_at: dict[tuple[int, int], int] = {}
    for s, line, at, counted in zip(
        symbol_of.tolist(), line_of.tolist(), starts.tolist(), counts.tolist(), strict=True
    ):
        # A pattern overlapping one just counted is not searched for again.
        if counted and at >= resume_at.get((s, line), 0):
            scores[s] += 40
            resume_at[(s, line)] = at + 7
    return scores


def _dark_proportion(symbols: Grid) -> list[int]:
    """N4: 10 for every 5% the share of dark modules is away from half."""
    width = symbols.shape[1]
    return [
        10 * int(abs(float(dark) / (width**2) * 100 - 50) / 5)
        for dark in symbols.sum(axis=(1, 2)).tolist()
    ]


def qr_svg(text: str, *, scale: int = 4, title: str | None = None) -> str:
    """The QR of ``text`` as an SVG document (for pages: sharp at any size)."""
    buffer = io.BytesIO()
    qr(text).save(
        buffer,
        kind="svg",
        scale=scale,
        border=BORDER,
        xmldecl=False,
        svgns=True,
        title=title,
        svgclass="qr",
        lineclass=None,
    )
    svg = buffer.getvalue().decode("utf-8")
    # segno writes width and height but no viewBox, so a page that sizes the image with CSS (a
    # poster or a card on a phone, in print) cut the drawing off instead of scaling it.
    size = re.search(r'width="(\d+)" height="(\d+)"', svg)
    if size is not None:
        width, height = size.groups()
        svg = svg.replace(size.group(0), f'{size.group(0)} viewBox="0 0 {width} {height}"', 1)
    return svg


def qr_png(text: str, *, scale: int = 6) -> bytes:
    """The QR of ``text`` as a PNG image (black on white)."""
    buffer = io.BytesIO()
    qr(text).save(buffer, kind="png", scale=scale, border=BORDER)
    return buffer.getvalue()

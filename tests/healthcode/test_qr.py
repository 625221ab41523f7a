"""The QR symbols citybrain draws are the ones segno draws on its own: the mask is chosen by
numpy over the same penalty rules, so every symbol and its mask must match segno's choice."""

from __future__ import annotations

import numpy as np
import segno
from hypothesis import given, settings
from hypothesis import strategies as st
from segno import encoder as segno_encoder

from citybrain.healthcode.codes import HEALTH_PREFIX
from citybrain.healthcode.qr import penalties, qr

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def segno_on_its_own(text: str) -> segno.QRCode:
    try:
        return segno.make_qr(text, error="q", mode="alphanumeric", boost_error=False)
    except ValueError:
        return segno.make_qr(text, error="q", boost_error=False)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=ALPHANUMERIC, min_size=1, max_size=600))
def test_a_code_text_gives_segnos_own_symbol_and_mask(text: str) -> None:
    ours, theirs = qr(HEALTH_PREFIX + text), segno_on_its_own(HEALTH_PREFIX + text)
    assert (ours.version, ours.error, ours.mode) == (theirs.version, theirs.error, theirs.mode)
    assert ours.mask == theirs.mask
    assert ours.matrix == theirs.matrix


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=120))
def test_any_other_text_in_byte_mode_gives_segnos_own_symbol(text: str) -> None:
    ours, theirs = qr(text), segno_on_its_own(text)
    assert ours.mask == theirs.mask and ours.matrix == theirs.matrix


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=21, max_value=61), st.integers(min_value=0, max_value=2**32 - 1))
def test_penalties_score_as_segno_scores_any_symbol(width: int, seed: int) -> None:
    # Random modules, some rows and columns forced into long runs and finder-like patterns,
    # reach the rules' corners (patterns at a line's ends, overlapping ones) more than codes do.
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, 2, size=(8, width, width), dtype=np.uint8)
    for symbol in symbols:
        for line in rng.integers(0, width, size=3):
            at = int(rng.integers(0, width - 10))
            symbol[line, at : at + 11] = [1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1][: width - at]
            symbol[at : at + 9, line] = int(rng.integers(0, 2))
    expected = [
        segno_encoder.evaluate_mask(tuple(bytearray(row.tobytes()) for row in s), width, width)
        for s in symbols
    ]
    assert penalties(symbols) == expected

"""Gate policy (通行规则): pass or deny, with the reason, from the kind of place, the direction,
the person's colour and, at a compound gate, the compound's tier (三色分层), whether the person
lives there and whether their household holds a valid exit pass (出入证).

- A venue, checkpoint, station or airport lets green codes through; any yellow or red code is
  turned back (the person is sent to verification, not into a crowd). Passes count for
  nothing there: a pass opens a compound's gate, it never overrides a person's code.
- A compound gate follows the compound's tier:
  red (closed 封闭): nobody leaves, except a resident with a green code whose household holds
  a pass valid today (``healthcode.passes``); only residents come in (so a pass holder comes
  back). yellow (controlled 管控): only residents pass, and a resident with a yellow or red
  code does not go out (a pass changes nothing: green residents already go out).
  green (normal): green codes pass; a resident with a yellow or red code may come home (to
  isolate) but not go out; anyone else needs green.
A pure function of its inputs (the pass is asked for lazily, and only where it can change the
answer), so it is tested table by table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from citybrain.core.geo.models import PLACE_COMPOUND_GATE
from citybrain.healthcode.models import DECISION_DENY, DECISION_PASS, DIRECTION_EXIT


@dataclass(frozen=True)
class Reason:
    """Why a scan passed or was turned back, in Chinese and English."""

    code: str
    zh: str
    en: str


REASONS: dict[str, Reason] = {
    r.code: r
    for r in (
        Reason("green_code", "绿码，请通行", "green code: pass"),
        Reason("code_yellow", "黄码，禁止通行，请配合核验", "yellow code: no entry, please verify"),
        Reason("code_red", "红码，禁止通行，请配合核验", "red code: no entry, please verify"),
        Reason("resident_home", "本小区居民返家，请居家", "resident coming home: stay home"),
        Reason("resident_controlled", "管控小区，本小区居民通行", "controlled compound: resident"),
        Reason(
            "compound_closed_exit",
            "小区封闭管理（红色），禁止外出",
            "compound closed (red): nobody leaves",
        ),
        Reason(
            "pass_exit",
            "小区封闭管理（红色），持有效出入证，准予外出",
            "compound closed (red): valid exit pass, may go out",
        ),
        Reason(
            "compound_closed_entry",
            "小区封闭管理（红色），非本小区居民禁止进入",
            "compound closed (red): residents only",
        ),
        Reason(
            "compound_controlled",
            "小区管控（黄色），非本小区居民禁止通行",
            "compound controlled (yellow): residents only",
        ),
        Reason(
            "stay_home",
            "红码或黄码居民须居家，禁止外出",
            "resident with a red or yellow code must stay home",
        ),
        Reason("checked_in", "已登记到访", "visit recorded"),
        Reason(
            "card_holder_unknown",
            "健康卡持卡人不在登记库，禁止通行，请联系社区",
            "the card's holder is not registered: no entry, contact the community",
        ),
    )
}


@dataclass(frozen=True)
class Decision:
    """Pass or deny, and why."""

    decision: str
    reason: Reason

    @property
    def passed(self) -> bool:
        """Whether the person may pass."""
        return self.decision == DECISION_PASS


def _pass(code: str) -> Decision:
    return Decision(DECISION_PASS, REASONS[code])


def _deny(code: str) -> Decision:
    return Decision(DECISION_DENY, REASONS[code])


def _by_colour(colour: str) -> Decision:
    if colour == "green":
        return _pass("green_code")
    return _deny("code_red" if colour == "red" else "code_yellow")


def decide(
    *,
    place_kind: str,
    direction: str,
    colour: str,
    tier: str | None = None,
    resident: bool = False,
    has_pass: bool | Callable[[], bool] = False,
) -> Decision:
    """The decision at a place of ``place_kind`` for someone going ``direction`` (entry or
    exit) with ``colour``; ``tier``, ``resident`` and ``has_pass`` matter at compound gates
    only (no tier known: treated as green).

    ``has_pass``: whether the person's household holds an exit pass (出入证) of this compound
    valid now; or a function that looks it up (``healthcode.passes.pass_check``), called only
    when the answer matters — a green-coded resident leaving a closed compound — so the scan
    path queries nothing for everyone else."""
    if place_kind != PLACE_COMPOUND_GATE:
        return _by_colour(colour)
    leaving = direction == DIRECTION_EXIT
    if tier == "red":
        if leaving:
            # A pass opens the compound's gate; it never lets a yellow or red code out.
            if resident and colour == "green" and (has_pass() if callable(has_pass) else has_pass):
                return _pass("pass_exit")
            return _deny("compound_closed_exit")
        return _pass("resident_home") if resident else _deny("compound_closed_entry")
    if tier == "yellow":
        if not resident:
            return _deny("compound_controlled")
        if leaving and colour != "green":
            return _deny("stay_home")
        return _pass("resident_controlled") if colour == "green" else _pass("resident_home")
    # A green (normal) compound.
    if colour == "green":
        return _pass("green_code")
    if resident:
        return _deny("stay_home") if leaving else _pass("resident_home")
    return _by_colour(colour)

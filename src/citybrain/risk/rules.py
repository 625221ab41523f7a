"""Rule sets as data (赋码规则): YAML, validated before anything may use them.

A rule set has ``person_rules`` (a person's colour) and ``compound_rules`` (a compound's tier,
over its residents' facts). Each rule::

    - id: close_contact                 # [a-z][a-z0-9_]*, unique in the set
      description: {zh: 密切接触者…, en: Close contact…}
      facts: [close_contact]            # the kinds of fact that start it (its anchors)
      condition: "true"                 # CEL: must hold for the anchor to count
      colour: red                       # yellow or red (a tier for compound rules)
      duration: 14d                     # from the anchor's valid_from; null: while it lasts
      release: 'released.exists(r, r.valid_from >= fact.valid_from)'   # CEL: ends it early

Conditions and releases are CEL (cel-python) over the subject's facts only: one list per fact
kind (``close_contact``, ``negative_test``…, each element a map of the attributes in
``kinds.FACT_ATTRIBUTES``), ``fact`` (the anchor) and ``now``. Before a rule set is stored
its CEL is parsed and its syntax tree walked: any name that is not a fact kind, ``fact`` or
``now``, any field that is not a fact attribute, any function outside a short list, any
object construction or lookup by key is refused, with the rule and the name in the error. A
rule about a bank deposit, an occupation, a petition or an address cannot be written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import celpy
import lark
import yaml
from celpy.celparser import CELParseError

from citybrain.kit.errors import InvalidInput
from citybrain.risk.kinds import COLOURS, FACT_ATTRIBUTES, FACT_KINDS

RULE_ID = re.compile(r"[a-z][a-z0-9_]{1,47}")
# Variables bound by a macro (exists, all, filter…): one letter and an optional digit, so a
# rule cannot dress up a name like ``deposit`` as a loop variable.
BOUND_VARIABLE = re.compile(r"[a-z][0-9]?")
DURATION = re.compile(r"(\d{1,4})([dh])")
MAX_DURATION = dt.timedelta(days=60)
ROOT_NAMES = frozenset({"fact", "now"})
FUNCTIONS = frozenset({"size", "has", "duration", "timestamp", "int", "string", "double"})
METHODS = frozenset(
    {"exists", "all", "exists_one", "filter", "map", "size", "contains", "startsWith", "endsWith"}
)
MACROS = frozenset({"exists", "all", "exists_one", "filter", "map"})
RULE_KEYS = frozenset({"id", "description", "facts", "condition", "colour", "duration", "release"})
SET_KEYS = frozenset({"name", "description", "person_rules", "compound_rules"})
MAX_YAML_BYTES = 64 * 1024
PACKAGED_VERSION = 1


def _refuse(message_zh: str, message_en: str, field: str) -> InvalidInput:
    return InvalidInput(message_zh, message_en, code="rule_refused", field=field)


def _not_health(rule_id: str, name: str, where: str) -> InvalidInput:
    return _refuse(
        f"规则 {rule_id} 引用了“{name}”，它不是健康或出行事实及其属性；"
        "赋码规则只能使用健康与出行证据",
        f"rule {rule_id} refers to '{name}', which is not a health or travel fact or a fact "
        "attribute; rules may use only health and travel evidence",
        f"rules.{rule_id}.{where}",
    )


class _Checker:
    """Walks a CEL syntax tree and refuses what a rule may not say."""

    def __init__(self, rule_id: str, where: str) -> None:
        self.rule_id = rule_id
        self.where = where

    def fail(self, name: str) -> InvalidInput:
        return _not_health(self.rule_id, name, self.where)

    def forbid(self, what_zh: str, what_en: str) -> InvalidInput:
        return _refuse(
            f"规则 {self.rule_id} 使用了不允许的写法：{what_zh}",
            f"rule {self.rule_id} uses something rules may not: {what_en}",
            f"rules.{self.rule_id}.{self.where}",
        )

    def visit(self, node: lark.Tree[Any] | lark.Token, bound: frozenset[str]) -> None:
        if isinstance(node, lark.Token):
            return
        kind = node.data
        if kind == "ident":
            name = str(node.children[0])
            if name not in FACT_KINDS and name not in ROOT_NAMES and name not in bound:
                raise self.fail(name)
            return
        if kind == "member_dot":
            target, field = node.children
            self.visit(target, bound)
            if str(field) not in FACT_ATTRIBUTES:
                raise self.fail(str(field))
            return
        if kind == "member_dot_arg":
            target, method, *rest = node.children
            name = str(method)
            if name not in METHODS:
                raise self.fail(name)
            self.visit(target, bound)
            args = _args(rest)
            if name in MACROS:
                if len(args) != 2:
                    raise self.forbid(f"{name} 需要两个参数", f"{name} takes two arguments")
                variable = _bound_name(args[0])
                if variable is None or not BOUND_VARIABLE.fullmatch(variable):
                    raise self.forbid(
                        f"{name} 的变量名应为一个字母（可加一位数字）",
                        f"the variable of {name} must be one letter (and a digit)",
                    )
                self.visit(args[1], bound | {variable})
                return
            for arg in args:
                self.visit(arg, bound)
            return
        if kind == "ident_arg":
            function, *rest = node.children
            if str(function) not in FUNCTIONS:
                raise self.fail(str(function))
            for arg in _args(rest):
                self.visit(arg, bound)
            return
        if kind in ("member_index", "member_object", "dot_ident", "dot_ident_arg", "map_lit"):
            raise self.forbid(
                "按键取值、构造对象或限定名", "indexing, object construction or qualified names"
            )
        for child in node.children:
            if child is not None:
                self.visit(child, bound)


def _args(rest: list[Any]) -> list[lark.Tree[Any]]:
    """The expressions of an (optional) exprlist."""
    for item in rest:
        if isinstance(item, lark.Tree) and item.data == "exprlist":
            return [c for c in item.children if isinstance(c, lark.Tree)]
    return []


def _bound_name(expr: lark.Tree[Any]) -> str | None:
    """The plain identifier an expression is, if it is one (a macro's variable)."""
    node: lark.Tree[Any] | lark.Token = expr
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if node.data == "ident":
            return str(node.children[0])
        node = node.children[0]
    return None


_environment = celpy.Environment()
_environment_lock = threading.Lock()


def compile_cel(text: str, rule_id: str, where: str) -> Any:
    """Parse and check one CEL expression of a rule; return its runnable program."""
    if not isinstance(text, str) or not text.strip():
        raise _refuse(
            f"规则 {rule_id} 的 {where} 不能为空",
            f"rule {rule_id}: {where} must not be empty",
            f"rules.{rule_id}.{where}",
        )
    with _environment_lock:  # the lark parser is shared
        try:
            tree = _environment.compile(text)
        except CELParseError as exc:
            raise _refuse(
                f"规则 {rule_id} 的 {where} 不是有效的 CEL 表达式",
                f"rule {rule_id}: {where} is not a valid CEL expression ({exc.args[0]})"[:300],
                f"rules.{rule_id}.{where}",
            ) from exc
        _Checker(rule_id, where).visit(tree, frozenset())
        return _environment.program(tree)


@dataclass(frozen=True)
class Rule:
    """One checked rule, its CEL compiled (``None``: the constant ``true``/``false``)."""

    id: str
    scope: str  # person or compound
    description_zh: str
    description_en: str
    facts: tuple[str, ...]
    colour: str
    duration: dt.timedelta | None
    condition_text: str
    release_text: str
    condition: Any
    release: Any

    def as_dict(self) -> dict[str, Any]:
        """The rule as shown on pages and in the API."""
        return {
            "id": self.id,
            "scope": self.scope,
            "description_zh": self.description_zh,
            "description_en": self.description_en,
            "facts": list(self.facts),
            "colour": self.colour,
            "duration": _duration_text(self.duration),
            "condition": self.condition_text,
            "release": self.release_text,
        }


@dataclass(frozen=True)
class CompiledRuleSet:
    """A validated rule set ready to evaluate; ``version`` is its number in the database."""

    version: int
    name: str
    sha256: str
    person_rules: tuple[Rule, ...]
    compound_rules: tuple[Rule, ...]


def _duration_text(value: dt.timedelta | None) -> str | None:
    if value is None:
        return None
    if value.seconds == 0:
        return f"{value.days}d"
    return f"{int(value.total_seconds() // 3600)}h"


def _parse_duration(raw: Any, rule_id: str) -> dt.timedelta | None:
    if raw is None:
        return None
    match = DURATION.fullmatch(str(raw).strip())
    if not match:
        raise _refuse(
            f"规则 {rule_id} 的持续时间应写作如 14d 或 72h",
            f"rule {rule_id}: duration must look like 14d or 72h",
            f"rules.{rule_id}.duration",
        )
    amount, unit = int(match.group(1)), match.group(2)
    value = dt.timedelta(days=amount) if unit == "d" else dt.timedelta(hours=amount)
    if value <= dt.timedelta(0) or value > MAX_DURATION:
        raise _refuse(
            f"规则 {rule_id} 的持续时间应在 1 小时到 60 天之间",
            f"rule {rule_id}: duration must be between 1 hour and 60 days",
            f"rules.{rule_id}.duration",
        )
    return value


def _constant(text: str) -> bool | None:
    stripped = text.strip()
    return {"true": True, "false": False}.get(stripped)


def _rule(raw: Any, scope: str, seen: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise _refuse("每条规则应为一个映射", "each rule must be a mapping", f"{scope}_rules")
    rule_id = str(raw.get("id", ""))
    if not RULE_ID.fullmatch(rule_id):
        raise _refuse(
            f"规则编号“{rule_id}”无效（小写字母、数字、下划线）",
            f"rule id '{rule_id}' is invalid (lowercase letters, digits, underscores)",
            f"{scope}_rules",
        )
    if rule_id in seen:
        raise _refuse(
            f"规则编号 {rule_id} 重复", f"rule id {rule_id} appears twice", f"rules.{rule_id}"
        )
    seen.add(rule_id)
    for key in raw:
        if key not in RULE_KEYS:
            raise _not_health(rule_id, str(key), str(key))
    description = raw.get("description")
    if (
        not isinstance(description, dict)
        or not str(description.get("zh") or "").strip()
        or not str(description.get("en") or "").strip()
        or set(description) - {"zh", "en"}
    ):
        raise _refuse(
            f"规则 {rule_id} 须有中文和英文说明（description: zh, en）",
            f"rule {rule_id} needs a description in Chinese and English (zh, en)",
            f"rules.{rule_id}.description",
        )
    facts = raw.get("facts")
    if not isinstance(facts, list) or not facts:
        raise _refuse(
            f"规则 {rule_id} 须列出触发它的事实类型（facts）",
            f"rule {rule_id} must list the fact kinds that start it (facts)",
            f"rules.{rule_id}.facts",
        )
    for kind in facts:
        if str(kind) not in FACT_KINDS:
            raise _not_health(rule_id, str(kind), "facts")
    colour = str(raw.get("colour", ""))
    if colour not in COLOURS or colour == "green":
        raise _refuse(
            f"规则 {rule_id} 的颜色应为 yellow 或 red",
            f"rule {rule_id}: colour must be yellow or red",
            f"rules.{rule_id}.colour",
        )
    condition_text = str(raw.get("condition", "true"))
    release_text = str(raw.get("release", "false"))
    condition = compile_cel(condition_text, rule_id, "condition")
    release = compile_cel(release_text, rule_id, "release")
    return Rule(
        id=rule_id,
        scope=scope,
        description_zh=str(description["zh"]).strip(),
        description_en=str(description["en"]).strip(),
        facts=tuple(str(k) for k in facts),
        colour=colour,
        duration=_parse_duration(raw.get("duration"), rule_id),
        condition_text=condition_text,
        release_text=release_text,
        condition=None if _constant(condition_text) is True else condition,
        release=None if _constant(release_text) is False else release,
    )


def rule_set_hash(text: str) -> str:
    """SHA-256 of the YAML text, as stored and shown to approvers."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_rule_set(text: str, version: int = 0) -> CompiledRuleSet:
    """Validate a rule set's YAML and compile it; raises InvalidInput naming the rule and the
    offending name or field."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise _refuse("规则集过大", "the rule set is too large (64 KB at most)", "yaml")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _refuse("规则集不是有效的 YAML", "the rule set is not valid YAML", "yaml") from exc
    if not isinstance(data, dict):
        raise _refuse("规则集应为一个 YAML 映射", "the rule set must be a YAML mapping", "yaml")
    for key in data:
        if key not in SET_KEYS:
            raise _refuse(
                f"规则集含有未知的键“{key}”",
                f"the rule set has an unknown key '{key}'",
                "yaml",
            )
    name = str(data.get("name") or "").strip()
    if not name:
        raise _refuse("规则集须有名称（name）", "the rule set needs a name", "name")
    seen: set[str] = set()
    person = data.get("person_rules") or []
    compound = data.get("compound_rules") or []
    if not isinstance(person, list) or not isinstance(compound, list) or not person:
        raise _refuse(
            "规则集须有人员规则（person_rules）列表",
            "the rule set needs a list of person_rules",
            "person_rules",
        )
    return CompiledRuleSet(
        version=version,
        name=name[:128],
        sha256=rule_set_hash(text),
        person_rules=tuple(_rule(r, "person", seen) for r in person),
        compound_rules=tuple(_rule(r, "compound", seen) for r in compound),
    )


def packaged_rules_text(version: int = PACKAGED_VERSION) -> str:
    """The YAML of a rule set shipped with citybrain (``data/rules/v<n>.yaml``)."""
    return (
        resources.files("citybrain.risk")
        .joinpath("data", "rules", f"v{version}.yaml")
        .read_text("utf-8")
    )


_compiled: dict[tuple[str, int], CompiledRuleSet] = {}
_compiled_lock = threading.Lock()


def compiled(text: str, version: int) -> CompiledRuleSet:
    """The compiled rule set of ``text`` as ``version``, parsed once per process (keyed by
    content hash, so a stored set is never compiled twice)."""
    key = (rule_set_hash(text), version)
    with _compiled_lock:
        found = _compiled.get(key)
    if found is not None:
        return found
    built = parse_rule_set(text, version)
    with _compiled_lock:
        _compiled[key] = built
    return built


def compiled_by_hash(sha256: str, version: int) -> CompiledRuleSet | None:
    """The compiled rule set already known by its stored hash and version, if any (so the
    hot path reads two short columns instead of the YAML)."""
    with _compiled_lock:
        return _compiled.get((sha256, version))

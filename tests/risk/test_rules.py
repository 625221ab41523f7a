"""Rule sets are data, and only health and travel evidence may appear in them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from tests.factories import make_user

from citybrain.kit.errors import Conflict, InvalidInput
from citybrain.risk import rules, service
from citybrain.risk.kinds import FACT_KINDS
from citybrain.risk.models import RuleSet
from citybrain.risk.rules import packaged_rules_text, parse_rule_set
from citybrain.risk.rulesets import propose_rule_set

RULE = """
name: test rules
person_rules:
  - id: {rule_id}
    description: {{zh: 测试规则, en: test rule}}
    facts: [{facts}]
    condition: '{condition}'
    colour: red
    duration: 14d
{extra}
"""


def rules_text(
    condition: str = "true",
    *,
    facts: str = "close_contact",
    rule_id: str = "probe",
    extra: str = "",
) -> str:
    return RULE.format(rule_id=rule_id, facts=facts, condition=condition, extra=extra)


def test_the_packaged_rule_set_validates_and_covers_every_kind() -> None:
    rule_set = parse_rule_set(packaged_rules_text(), 1)
    anchored = {k for r in rule_set.person_rules for k in r.facts}
    assert anchored == FACT_KINDS - {"negative_test", "released"}
    assert {r.colour for r in rule_set.compound_rules} == {"red", "yellow"}
    for rule in (*rule_set.person_rules, *rule_set.compound_rules):
        assert rule.description_zh and rule.description_en


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        ("bank.deposit > 0", "bank"),
        ("fact.deposit > 0", "deposit"),
        ('fact.occupation == "教师"', "occupation"),
        ("size(petition) > 0", "petition"),
        ('fact.address.startsWith("郑州")', "address"),
        ("close_contact.exists(c, c.deposit > 100000)", "deposit"),
        ("fact.source == account.bank", "account"),
        ("lookup_bank(fact) > 0", "lookup_bank"),
    ],
)
def test_a_rule_naming_anything_but_health_or_travel_is_refused(condition: str, named: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_rule_set(rules_text(condition))
    error = refused.value
    assert error.code == "rule_refused"
    assert "probe" in error.message_zh and named in error.message_zh
    assert f"'{named}'" in error.message_en and "health or travel" in error.message_en
    assert error.field == "rules.probe.condition"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (rules_text(facts="bank_deposit"), "bank_deposit"),
        (rules_text(extra="    occupation: teacher"), "occupation"),
    ],
)
def test_facts_and_keys_of_a_rule_are_checked_too(text: str, named: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_rule_set(text)
    assert named in refused.value.message_zh and "probe" in refused.value.message_en


@pytest.mark.parametrize(
    "condition",
    [
        'fact["deposit"] == 1',  # lookup by key
        "close_contact.exists(deposit, true)",  # a loop variable dressed up as a name
        ".bank.deposit > 0",  # a qualified name
        "fact.valid_from +",  # not CEL at all
    ],
)
def test_other_ways_round_the_check_are_refused(condition: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_rule_set(rules_text(condition))
    assert refused.value.code == "rule_refused"


def test_health_conditions_pass() -> None:
    rule_set = parse_rule_set(
        rules_text(
            'fact.setting == "home" && negative_test.all(t, t.valid_from < fact.valid_from)'
            ' && fact.valid_from + duration("24h") > now'
        )
    )
    assert rule_set.person_rules[0].id == "probe"


def test_proposing_a_refused_rule_stores_nothing(session: Session) -> None:
    commander = make_user(session, "city_commander", "4101")
    before = session.scalar(select(func.count()).select_from(RuleSet))
    with pytest.raises(InvalidInput, match="deposit"):
        propose_rule_set(session, commander, rules_text("fact.deposit > 0"))
    assert session.scalar(select(func.count()).select_from(RuleSet)) == before


def test_a_rule_that_fails_when_run_is_refused_before_anyone_signs(session: Session) -> None:
    commander = make_user(session, "city_commander", "4101")
    with pytest.raises(InvalidInput) as refused:
        propose_rule_set(session, commander, rules_text("fact.valid_from > 3"))
    assert "probe" in refused.value.message_en


def test_a_stored_rule_set_edited_behind_its_hash_is_refused(session: Session) -> None:
    service.active_rule_set(session)
    session.execute(
        update(RuleSet)
        .where(RuleSet.status == "active")
        .values(yaml_text=packaged_rules_text().replace("colour: red", "colour: yellow"))
    )
    session.expire_all()
    rules._compiled.clear()  # a process starting afresh
    with pytest.raises(Conflict) as refused:
        service.active_rule_set(session)
    assert refused.value.code == "rule_set_tampered"

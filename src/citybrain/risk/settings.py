"""Settings of the risk engine, from the environment (prefix ``CITYBRAIN_RISK_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The longest a manual colour may last: policy, not a setting.
OVERRIDE_MAX_HOURS = 72


class RiskSettings(BaseSettings):
    """Thresholds and deadlines of rule changes, appeals and recomputation."""

    model_config = SettingsConfigDict(env_prefix="CITYBRAIN_RISK_", extra="ignore")

    third_approval_threshold: int = Field(
        default=1000,
        ge=0,
        description="a rule set whose dry run changes more subjects than this needs 3 approvals",
    )
    appeal_deadline_hours: int = Field(
        default=24, ge=1, le=24 * 14, description="hours a street office has to decide an appeal"
    )
    inline_recompute_limit: int = Field(
        default=20_000,
        ge=0,
        description="activating a rule set recomputes up to this many subjects at once; more "
        "go to a background job (reads recompute a stale colour meanwhile)",
    )
    control_deadline_hours: int = Field(
        default=12,
        ge=1,
        le=24 * 7,
        description="hours after a close contact is found by which they should be under "
        "control (an in_quarantine fact); streets with contacts past it are alerted",
    )
    batch_size: int = Field(default=1000, ge=10, le=50_000, description="rows per batch")
    notification_retention_days: int = Field(
        default=90,
        ge=1,
        description="days a person's notifications (an override applied, an appeal decided) "
        "are kept; the overrides and appeals themselves, and their audit rows, stay",
    )
    fact_retention_days: int = Field(
        default=180,
        ge=30,
        description="days the facts about a person are kept once all of them lie that far in "
        "the past and their code is green; a case's facts stay as the epidemic's record",
    )
    appeal_text_retention_days: int = Field(
        default=180,
        ge=1,
        description="days the text a person wrote in an appeal is kept after the decision; "
        "the appeal, its outcome and its audit rows stay",
    )
    override_daily_limit: int = Field(
        default=30,
        ge=1,
        le=10_000,
        description="manual colours one person may request, and may approve, in 24 hours; "
        "a change for many people belongs in a rule version (dry run, two approvers)",
    )
    hand_turn_daily_limit: int = Field(
        default=30,
        ge=1,
        le=10_000,
        description="green codes one person may turn red or yellow in 24 hours by recording "
        "facts by hand (clinics' fever visits aside); many contacts at once belong to the "
        "collision analysis, whose findings carry their records",
    )
    hand_free_daily_alert: int = Field(
        default=30,
        ge=1,
        le=10_000,
        description="red or yellow codes one person may turn green in 24 hours by withdrawing "
        "facts by hand before the command centre is alerted (no refusal: streets clear the "
        "analysis's contacts every day)",
    )
    text_notifications: bool = Field(
        default=True,
        description="also send each notification to the person's registered phone by text "
        "message (through CITYBRAIN_SMS_GATEWAY_URL)",
    )


@lru_cache(maxsize=1)
def risk_settings() -> RiskSettings:
    """The process's risk settings (read once)."""
    return RiskSettings()


def reset_risk_settings() -> None:
    """Forget cached settings (tests)."""
    risk_settings.cache_clear()

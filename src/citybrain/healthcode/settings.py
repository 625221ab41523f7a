"""Health-code settings from the environment (prefix ``CITYBRAIN_HEALTHCODE_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class HealthcodeSettings(BaseSettings):
    """How long codes live, how much clock skew a gate tolerates, and how the scan writer
    batches. Every field can be set as ``CITYBRAIN_HEALTHCODE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CITYBRAIN_HEALTHCODE_", extra="ignore")

    issuer: str = Field(default="CN-4101", description="the iss claim: the issuing city")
    # Short-lived: a screenshot of yesterday's green code is worth nothing at a gate.
    code_validity_seconds: int = Field(default=300, ge=30, le=86_400)
    # A place code (场所码) is printed and posted: it lives for weeks.
    place_code_validity_days: int = Field(default=30, ge=1, le=366)
    # A printed health card (纸质健康卡) for someone without a smartphone: it names its holder,
    # never a colour, so it may live for months; a lost card is cancelled at once.
    card_validity_days: int = Field(default=180, ge=1, le=366)
    # Gates' clocks drift; a code is not refused for a few seconds of disagreement.
    clock_skew_seconds: int = Field(default=30, ge=0, le=600)
    # The in-memory trust list of a server is re-read this often (and at once after a
    # rotation in this process, or when a code names a key it does not know).
    trust_list_ttl_seconds: float = Field(default=30.0, ge=0.0)
    # The scan writer: at most this many scans per commit; a batch closes this long after its
    # oldest scan was queued (or when full), so the writer commits about once per this long
    # under load and every scan waits at most this long for its batch to start. 5 ms: at 2 ms
    # a batch's fixed cost (reads, batch, audit and outbox rows, commit) was paid twice as
    # often for a few milliseconds less latency; at 10 ms the cores idled between batches.
    batch_max: int = Field(default=500, ge=1)
    batch_wait_ms: float = Field(default=5.0, ge=0.0)
    # Scans waiting for the writer beyond this many are answered 429 at once (back-pressure
    # instead of a queue that grows until every answer is late).
    queue_capacity: int = Field(default=2_000, ge=1)
    # When the event loop runs this late, the server is past capacity on CPU: new scans are
    # answered 429 at once (0: never).
    max_loop_lag_ms: float = Field(default=250.0, ge=0.0)
    # How long a request waits for its scan to be committed before the server gives up with
    # 503-free back-pressure (429): the writer is stuck or far behind.
    commit_timeout_seconds: float = Field(default=5.0, gt=0.0)
    # A gate that scanned offline uploads its queue when back online; a scan older than this
    # is refused on upload (a queue found days later is not evidence of today's crossings).
    offline_max_age_hours: int = Field(default=72, ge=1, le=24 * 30)
    # A device's principal is remembered this long (its token's last use stamped once per
    # period); revocation is checked anyway in every batch's transaction.
    device_token_cache_seconds: float = Field(default=30.0, ge=0.0)


@lru_cache(maxsize=1)
def get_healthcode_settings() -> HealthcodeSettings:
    """The process's health-code settings, read from the environment on first call."""
    return HealthcodeSettings()


def reset_healthcode_settings() -> None:
    """Forget cached settings (tests change the environment)."""
    get_healthcode_settings.cache_clear()

"""Settings from the environment (prefix ``CITYBRAIN_``), read once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process settings. Every field can be set as ``CITYBRAIN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CITYBRAIN_", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data dir"
    )
    jobs_url: str | None = Field(
        default=None,
        description="job queue: sqlite:///path (embedded default, in the data dir) or redis://",
    )
    # Key material. In production all three are required from the environment; in dev and
    # test they are generated into <data_dir>/keys/ with mode 0600 on first use.
    field_keys: str | None = Field(
        default=None, description="'kid:base64key,kid:base64key' — the first is active"
    )
    blind_index_key: str | None = None
    secret_key: str | None = None

    # How long a SQLite connection waits for another's write lock before giving up (the
    # request then answers 503 with Retry-After).
    sqlite_busy_timeout_seconds: float = Field(default=10.0, gt=0)

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True
    # The address residents reach the site at (printed in place codes); default: the address
    # the staff member's own request came to.
    public_url: str | None = None
    # HTTPS served by citybrain itself (PEM files); gate phones need a secure context for the
    # camera and for verifying codes in the browser. Behind a TLS proxy, leave both unset.
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    cookie_secure: bool | None = None  # default: True in production or when serving HTTPS
    session_max_age_seconds: int = 8 * 3600
    login_max_failures: int = 5
    login_window_seconds: int = 15 * 60
    default_language: Literal["zh-CN", "en"] = "zh-CN"
    max_request_bytes: int = 16 * 1024 * 1024
    # Delivered outbox events are kept this long (for tracing a delivery), then purged nightly:
    # at a peak the gate scans alone add a few hundred a second.
    event_retention_days: int = Field(default=7, ge=1)
    # Residents' daily health reports (temperatures, symptoms, whereabouts) are kept this many
    # days, as the gate scans are; a flagged report nobody has followed up yet stays.
    health_report_retention_days: int = Field(default=30, ge=1)
    # A household's exit pass (出入证) is kept this many days after it ran out or was revoked,
    # as the gate scans it let through are, then deleted with its note.
    pass_retention_days: int = Field(default=30, ge=1)
    # A traced case's contact list (analysis/contacts/case_<key>.parquet) is kept as long as the
    # presence records it was drawn from (60 days), then deleted; the trace's counts stay.
    contact_list_retention_days: int = Field(default=60, ge=1)
    lake_compression: Literal["zstd", "snappy", "none"] = Field(
        default="zstd", description="Parquet compression of lake parts"
    )
    # Fault injection for the crash test: pause after a file's lake parts are published and
    # before its ledger row commits. Honoured only when env is "test".
    intake_stall_seconds: float = 0.0
    # The city's SMS platform (短信平台), for residents' one-time codes: an HTTP endpoint that
    # takes {"phone", "text"} as JSON with the token as a bearer credential. Unset in dev and
    # test, messages go to the console with the phone masked; production refuses to send.
    sms_gateway_url: str | None = None
    sms_gateway_token: str | None = None
    sms_timeout_seconds: float = 5.0
    sms_code_seconds: int = 5 * 60
    sms_resend_seconds: int = 60
    sms_codes_per_phone_per_day: int = 10
    sms_codes_per_address_per_hour: int = 30
    # The city's real-name verification service (实名核验: the population registry's name and ID
    # check, the carriers' check that a phone is registered in that name): an HTTP endpoint
    # that takes {"name", "id_number"[, "phone"]} as JSON and answers {"match": true|false}.
    # Unset in dev and test, registrations are not checked; production refuses to register.
    identity_gateway_url: str | None = None
    identity_gateway_token: str | None = None
    identity_timeout_seconds: float = 5.0
    # Calls a process may have open at once to each of those services: the rest of the
    # server's threads stay free for everything else when one of them turns slow.
    gateway_concurrency: int = Field(default=8, ge=1, le=64)
    vendor_dir: Path | None = Field(
        default=None,
        description="front-end packages copied from npm at setup (default: build/web-vendor)",
    )

    @property
    def resolved_database_url(self) -> str:
        """The operational database URL (SQLite in the data dir unless set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'citybrain.db').resolve()}"

    @property
    def resolved_jobs_url(self) -> str:
        """Where the durable job queue lives (SQLite file in the data dir unless set)."""
        if self.jobs_url:
            return self.jobs_url
        return f"sqlite:///{(self.data_dir / 'jobs.db').resolve()}"

    @property
    def secure_cookies(self) -> bool:
        """Whether session cookies carry the Secure flag."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.env == "production" or self.tls_certfile is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first call."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()

"""The real-name verification client: what the city's identity service answers, a service
that fails, and production without one. The service is a real HTTP server at the wire
(tests/identity_service.py) that knows the synthetic population."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from citybrain.kit.identity import IdentityUnavailable, identity_matches
from citybrain.kit.logging import configure_logging
from tests.factories import next_synthetic
from tests.identity_service import FakeIdentityService

SetEnv = Callable[[str, str | None], None]


@pytest.fixture
def down(identity_service: FakeIdentityService) -> Iterator[FakeIdentityService]:
    identity_service.refuse_with = 503
    yield identity_service
    identity_service.refuse_with = None


def test_the_client_answers_with_the_registry(identity_service: FakeIdentityService) -> None:
    person, other = next_synthetic(), next_synthetic()
    assert identity_matches(person.name, person.id_number, person.phone)
    assert identity_matches(person.name, person.id_number)
    assert not identity_matches(other.name, person.id_number)
    assert not identity_matches(person.name, person.id_number, other.phone)


def test_a_service_that_fails_is_unavailable_and_the_log_holds_nothing_sent(
    down: FakeIdentityService, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json_lines=True)
    person = next_synthetic()
    with pytest.raises(IdentityUnavailable) as failed:
        identity_matches(person.name, person.id_number, person.phone)
    assert failed.value.status_code == 503
    logged = capsys.readouterr()
    assert '"identity.failed"' in logged.err and '"status": 503' in logged.err
    for secret in (person.name, person.id_number, person.phone):
        assert secret not in logged.err + logged.out


def test_without_a_service_production_refuses_and_development_does_not_check(
    settings_env: SetEnv,
) -> None:
    settings_env("CITYBRAIN_IDENTITY_GATEWAY_URL", None)
    settings_env("CITYBRAIN_ENV", "production")
    with pytest.raises(IdentityUnavailable) as refused:
        identity_matches("张三", "410105198503141234")
    assert refused.value.code == "identity_not_configured"
    settings_env("CITYBRAIN_ENV", "dev")
    assert identity_matches("张三", "410105198503141234")

"""A stand-in for the city's real-name verification service (实名核验), at the wire: a real
HTTP server on 127.0.0.1 that answers what ``kit.identity`` asks from a population registry of
its own — the synthetic people the tests draw from (``tests.factories``), each holding the ID
number, name and phone the simulator gave them. Only the service outside citybrain is
replaced, never our code."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from citybrain.simulate.persons import generate_persons
from tests.factories import POPULATION_SEED, POPULATION_SIZE
from tests.wire import Answer, StandIn

TOKEN = "test-identity-token"


@dataclass
class Check:
    """One question as the service received it."""

    name: str
    id_number: str
    phone: str | None
    authorization: str | None


@dataclass(eq=False)
class FakeIdentityService(StandIn):
    """The service: ``checks`` in arrival order (``refuse_with`` and ``meanwhile``: see
    ``StandIn``). The registry is built on the first question."""

    PATH: ClassVar[str] = "/identity"
    RUNNING: ClassVar[list[Any]] = []

    checks: list[Check] = field(default_factory=list)
    _registry: dict[str, tuple[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _known(self, id_number: str) -> tuple[str, str] | None:
        with self._lock:
            if not self._registry:
                self._registry.update(
                    (p.id_number, (p.name, p.phone))
                    for p in generate_persons(POPULATION_SIZE, seed=POPULATION_SEED)
                )
            return self._registry.get(id_number)

    def number_changed(self, id_number: str, phone: str) -> None:
        """The carriers now have ``phone`` in the name of the holder of ``id_number`` (they
        changed numbers)."""
        self._known(id_number)
        with self._lock:
            name, _ = self._registry[id_number]
            self._registry[id_number] = (name, phone)

    def answer(self, name: str, id_number: str, phone: str | None) -> bool:
        """What the registry says: the ID is held by ``name`` (and ``phone`` is theirs)."""
        known = self._known(id_number)
        if known is None:
            return False
        return known[0] == name and (phone is None or known[1] == phone)

    def _answer(self, body: dict[str, Any], authorization: str | None) -> Answer:
        check = Check(
            str(body.get("name")), str(body.get("id_number")), body.get("phone"), authorization
        )
        self.checks.append(check)
        return 200, {"match": self.answer(check.name, check.id_number, check.phone)}


def running_identity_service() -> FakeIdentityService:
    """The service this test process started (the session's ``identity_service`` fixture)."""
    assert FakeIdentityService.RUNNING, "the identity_service fixture is not running"
    return FakeIdentityService.RUNNING[-1]

"""Fixtures for the reliability suite: a fake Vinci server with a distinctive key."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import requests

from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import mount

T = TypeVar("T")

#: A key distinctive enough that any 8-character piece of it in output is a leak.
KEY = "sk-rel-Q7zX9vK2mP4wB8nT6yL1cR5hJ3dG0fA"
#: The fake clock's wall time: an integer, so HTTP-dates land on it exactly.
WALL = 1_750_000_000.0
#: The fake clock's constant draw: full jitter then waits half of each backoff step.
DRAW = 0.5
#: How long any one logical call may take in real time before the suite calls it a hang.
HANG = 10.0


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the VINCI_API_KEY of the machine that runs it."""
    monkeypatch.delenv("VINCI_API_KEY", raising=False)


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    """A started fake Vinci server that accepts only `KEY`, stopped after the test."""
    with FakeVinciServer(api_keys=(KEY,), balance_usd=1_000_000.0) as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock whose jitter draw is always `DRAW`."""
    return FakeClock(wall=WALL, random_value=DRAW)


@pytest.fixture
def vinci_session(server: FakeVinciServer, clock: FakeClock) -> Iterator[requests.Session]:
    """A session with the full Vinci preset mounted on the fake server, on `clock`."""
    with requests.Session() as session:
        yield mount(session, api_key=KEY, base_url=server.base_url, clock=clock)


def within(seconds: float, func: Callable[[], T]) -> T:
    """Run `func` in a thread; fail the test if it has not returned after `seconds`.

    Exceptions raised by `func` are re-raised here, so `pytest.raises` works around it.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(func())
        except BaseException as exc:  # re-raised in the test's thread
            error.append(exc)

    worker = threading.Thread(target=target, name="reliability-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"the call did not return within {seconds}s: a hang")
    if error:
        raise error[0]
    return result[0]


@pytest.fixture(autouse=True)
def _soak_only_with_the_option(request: pytest.FixtureRequest) -> None:
    """Tests marked ``soak`` run only with ``--soak``."""
    if request.node.get_closest_marker("soak") and not request.config.getoption("--soak"):
        pytest.skip("long soak: run it with ./dev soak (pytest tests/reliability --soak)")

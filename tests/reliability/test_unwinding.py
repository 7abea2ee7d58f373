"""An interrupt (KeyboardInterrupt, SystemExit) never leaks a rate-limit slot or a probe.

Against a loopback server, on the fake clock: a caller interrupted while it waits for
its rate-limit slot gives the slot back, so the next caller waits one interval, not
two; the same holds for a bucket shared through a real redis-server. A half-open
breaker's probe interrupted on the wire is released, so the next call is admitted as
the new probe instead of being refused for the rest of the break.

Measured before the change (commit a1dc275): after an interrupted wait the next call
waited 2.105 s (two slots at 0.95/s) instead of 1.053 s. The breaker already released
an interrupted probe (the next call was admitted as the probe); its rows guard that.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from requests_resilience import Call, CircuitBreaker, Next, Pipeline, RateLimit, mount
from requests_resilience.testing import FakeClock
from tests.reliability.test_hostile_text import Server

INTERVAL = 1 / 0.95  # RateLimit(1): 0.95 requests a second with the default headroom


class InterruptedClock(FakeClock):
    """A fake clock whose next sleep raises `interrupt` instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupt: BaseException | None = None

    def sleep(self, seconds: float) -> None:
        raising, self.interrupt = self.interrupt, None
        if raising is not None:
            raise raising
        super().sleep(seconds)


@pytest.fixture
def backend() -> Iterator[Server]:
    """A loopback server that answers 200 to everything."""
    s = Server(lambda path: (200, "OK", {}, b"ok")).start()
    yield s
    s.stop()


def _wait_after_an_interrupt(
    backend: Server, interrupt: BaseException, redis_url: str | None = None
) -> float:
    """Send, be interrupted waiting for the second slot, then time the third call's wait."""
    clock = InterruptedClock()
    limit = RateLimit(1, key="k", redis_url=redis_url)
    url = f"http://127.0.0.1:{backend.port}/x"
    with requests.Session() as session:
        mount(session, "http://", Pipeline(limit, clock=clock))
        session.get(url)  # takes the first slot at once
        clock.interrupt = interrupt
        with pytest.raises(type(interrupt)):
            session.get(url)  # reserved the second slot, interrupted while waiting for it
        before = clock.monotonic()
        session.get(url)
        waited = clock.monotonic() - before
    assert len(backend.received) == 2  # the interrupted call never went out
    return waited


@pytest.mark.parametrize(
    "interrupt", [KeyboardInterrupt(), SystemExit(1)], ids=["KeyboardInterrupt", "SystemExit"]
)
def test_an_interrupted_wait_gives_its_slot_back(
    backend: Server, interrupt: BaseException
) -> None:
    """The call after an interrupted one waits one interval (1.053 s), not two."""
    assert _wait_after_an_interrupt(backend, interrupt) == pytest.approx(INTERVAL)


def test_an_interrupted_wait_gives_its_shared_slot_back(backend: Server, redis_url: str) -> None:
    """The same through Redis: the slot goes back to the shared bucket."""
    assert _wait_after_an_interrupt(
        backend, KeyboardInterrupt(), redis_url=redis_url
    ) == pytest.approx(INTERVAL)


def test_an_interrupted_probe_is_released(backend: Server) -> None:
    """Ctrl-C during the half-open probe: the next call is the new probe, and it closes."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, break_duration=10)
    state = {"fail": True, "interrupt": False}

    def wire(call: Call, next: Next) -> requests.Response:
        if state["interrupt"]:
            state["interrupt"] = False
            raise KeyboardInterrupt
        response = next(call)
        if state["fail"]:
            response.status_code = 500
        return response

    url = f"http://127.0.0.1:{backend.port}/x"
    key = f"http://127.0.0.1:{backend.port}"
    with requests.Session() as session:
        mount(session, "http://", Pipeline(breaker, wire, clock=clock))
        assert session.get(url).status_code == 500
        assert breaker.state(key) == "open"
        clock.sleep(10)
        state.update(fail=False, interrupt=True)
        with pytest.raises(KeyboardInterrupt):
            session.get(url)
        assert breaker.status(key).probes_in_flight == 0
        assert session.get(url).status_code == 200  # admitted as the new probe
    assert breaker.state(key) == "closed"
    assert len(backend.received) == 2


def test_an_interrupted_shared_probe_is_released(backend: Server, redis_url: str) -> None:
    """Through Redis: the probe permit goes back, another process's next call is the probe."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, break_duration=10, redis_url=redis_url)
    other = CircuitBreaker(minimum_calls=1, break_duration=10, redis_url=redis_url)
    failing = [True]

    def wire(call: Call, next: Next) -> requests.Response:
        response = next(call)
        if failing[0]:
            response.status_code = 500
        return response

    def interrupted(call: Call, next: Next) -> requests.Response:
        raise KeyboardInterrupt

    url = f"http://127.0.0.1:{backend.port}/x"
    key = f"http://127.0.0.1:{backend.port}"
    with requests.Session() as session:
        mount(session, "http://", Pipeline(breaker, wire, clock=clock))
        session.get(url)
        clock.sleep(10)
        mount(session, "http://", Pipeline(breaker, interrupted, clock=clock))
        with pytest.raises(KeyboardInterrupt):
            session.get(url)
        failing[0] = False
        mount(session, "http://", Pipeline(other, wire, clock=clock))
        assert session.get(url).status_code == 200
    assert other.state(key) == "closed"
    assert len(backend.received) == 2

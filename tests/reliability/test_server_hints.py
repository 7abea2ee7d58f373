"""A wait learnt from a server is bounded by an option, in this process and across a fleet.

A hand-written loopback server answers ``429 Retry-After: 99999999`` (or an
``X-RateLimit-Reset`` ten days away) once; the `RateLimit` policy must then hold the
next call for `max_pause` (60 s by default) and no longer, on the fake clock. Shared
through a real redis-server, a second policy (another process, as far as Redis can
tell: its own client, its own memory) is held for at most its own `max_pause` too,
even when the pause in Redis was written by a policy allowed a day. A breaker whose
shared open state says "a day" announces at most its own `break_duration`.

Measured before the change (commit a1dc275): the next call was refused locally with
``retry_after`` 86,400 s, in memory and for the other process through Redis, and the
breaker announced 86,400 s. After: every row below, exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from requests_resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Pipeline,
    RateLimit,
    RateLimitError,
    mount,
)
from requests_resilience.testing import FakeClock
from tests.reliability.test_hostile_text import Answer, Server

HUGE = "99999999"  # about 3.2 years: a valid delta-seconds, parsed as such
HOUR = 3600.0


class Hinting:
    """Answers the first request with `first` (a 429 and its hint), then 200s."""

    def __init__(self, first: Answer) -> None:
        self.first: Answer | None = first
        self.server = Server(self.route).start()

    def route(self, path: str) -> Answer:
        answer, self.first = self.first, None
        return answer if answer is not None else (200, "OK", {}, b"ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/x"


@pytest.fixture
def throttling() -> Iterator[Hinting]:
    """A server whose first answer is ``429 Retry-After: 99999999``."""
    h = Hinting((429, "Too Many Requests", {"Retry-After": HUGE}, b""))
    yield h
    h.server.stop()


def session_with(*policies: object, clock: FakeClock) -> requests.Session:
    session = requests.Session()
    return mount(session, "http://", Pipeline(*policies, clock=clock))  # type: ignore[arg-type]


def test_one_huge_retry_after_pauses_for_max_pause(throttling: Hinting) -> None:
    """After ``Retry-After: 99999999`` the next call waits exactly max_pause (60 s), then goes."""
    clock = FakeClock()
    limit = RateLimit(10, key="k")
    with session_with(limit, clock=clock) as session:
        assert session.get(throttling.url).status_code == 429
        assert limit.status("k").paused_for == 60.0
        assert session.get(throttling.url).status_code == 200
    assert clock.sleeps == [pytest.approx(60.0)]
    assert len(throttling.server.received) == 2


def test_max_pause_is_an_option(throttling: Hinting) -> None:
    """max_pause=5: the same hint holds the next call 5 s."""
    clock = FakeClock()
    with session_with(RateLimit(10, key="k", max_pause=5), clock=clock) as session:
        session.get(throttling.url)
        assert session.get(throttling.url).status_code == 200
    assert clock.sleeps == [pytest.approx(5.0)]


def test_a_reset_ten_days_away_pauses_for_max_pause() -> None:
    """``X-RateLimit-Remaining: 0`` with a Reset ten days away: 60 s, even for an hourly limit."""
    clock = FakeClock()
    reset = str(int(clock.time() + 10 * 86_400))
    hint = Hinting((200, "OK", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, b""))
    try:
        limit = RateLimit(1000, period=HOUR, key="k")
        with session_with(limit, clock=clock) as session:
            session.get(hint.url)
            assert limit.status("k").paused_for == 60.0
            session.get(hint.url)
    finally:
        hint.server.stop()
    assert clock.sleeps == [pytest.approx(60.0)]


def test_a_shared_bucket_holds_another_process_for_its_own_max_pause(
    throttling: Hinting, redis_url: str
) -> None:
    """Through Redis: the policy that was throttled and another one both wait 60 s, not a day."""
    clock = FakeClock()
    first = RateLimit(10, key="k", redis_url=redis_url)
    other = RateLimit(10, key="k", redis_url=redis_url)  # its own client and memory
    with session_with(first, clock=clock) as session:
        assert session.get(throttling.url).status_code == 429
    with session_with(other, clock=clock) as session:
        assert session.get(throttling.url).status_code == 200
    assert clock.sleeps == [pytest.approx(60.0)]
    assert len(throttling.server.received) == 2


def test_a_pause_written_by_a_laxer_process_is_cut_to_this_ones_bound(
    throttling: Hinting, redis_url: str
) -> None:
    """A policy allowed a day writes a day-long pause; one with max_pause=10 waits 10 s."""
    clock = FakeClock()
    lax = RateLimit(10, key="k", redis_url=redis_url, max_pause=86_400)
    strict = RateLimit(10, key="k", redis_url=redis_url, max_pause=10, max_wait=30)
    with session_with(lax, clock=clock) as session:
        session.get(throttling.url)
    assert lax.status("k").paused_for == 86_400.0
    with session_with(strict, clock=clock) as session:
        assert session.get(throttling.url).status_code == 200
    assert clock.sleeps == [pytest.approx(10.0)]


def test_the_lax_process_refuses_locally_past_its_max_wait(throttling: Hinting) -> None:
    """max_pause above max_wait: the call is refused at once, retry_after = the bounded pause."""
    clock = FakeClock()
    limit = RateLimit(10, key="k", max_pause=600, max_wait=60)
    with session_with(limit, clock=clock) as session:
        session.get(throttling.url)
        with pytest.raises(RateLimitError) as caught:
            session.get(throttling.url)
    assert caught.value.retry_after == pytest.approx(600.0)
    assert clock.sleeps == []
    assert len(throttling.server.received) == 1


def test_a_shared_open_breaker_announces_at_most_its_own_break(redis_url: str) -> None:
    """A day-long open state in Redis: this breaker's CircuitOpenError says 30 s, not 86,400."""
    clock = FakeClock()
    failing = Hinting((500, "Internal Server Error", {}, b""))
    try:
        long_break = CircuitBreaker(
            minimum_calls=1, break_duration=86_400, redis_url=redis_url, name="b"
        )
        short_break = CircuitBreaker(
            minimum_calls=1, break_duration=30, redis_url=redis_url, name="b"
        )
        with session_with(long_break, clock=clock) as session:
            assert session.get(failing.url).status_code == 500
        key = f"http://127.0.0.1:{failing.server.port}"
        assert long_break.status(key).retry_after == 86_400.0
        with (
            session_with(short_break, clock=clock) as session,
            pytest.raises(CircuitOpenError) as caught,
        ):
            session.get(failing.url)
    finally:
        failing.server.stop()
    assert caught.value.retry_after == 30.0
    assert short_break.status(key).retry_after == 30.0
    assert len(failing.server.received) == 1

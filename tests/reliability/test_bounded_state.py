"""Per-key state stays bounded, Redis keys expire, and a frozen Redis costs one timeout.

- 100,000 distinct endpoints through a `CircuitBreaker` and a `RateLimit` keyed by
  endpoint: before the change (commit a1dc275) each kept 100,000 cells (157 MB traced
  for the pair); after, at most `max_keys` (10,000) each, and memory stops growing.
- With a real redis-server: before, 5 of the 7 keys a tripped breaker leaves had no
  expiry (state, opened_at, open_until, fail_counter, success_counter); after, none.
- A redis-server stopped with SIGSTOP (it accepts connections, never answers): before,
  the first call through both policies took 2.0 s (a 0.5 s timeout, retried, per
  policy); after, 1.0 s (one `redis_timeout` per policy), then the policies use local
  state as with a dead Redis.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import MutableMapping
from typing import Any

import redis
import requests

from requests_resilience import (
    Call,
    CircuitBreaker,
    CircuitOpenError,
    Pipeline,
    RateLimit,
    breaker_key_by_endpoint,
    mount,
)
from requests_resilience.testing import FakeClock
from tests.helpers import prepared, response
from tests.integration.conftest import RedisServer
from tests.reliability.test_hostile_text import Server

KEYS = 100_000
MAX_KEYS = 10_000


_OK = response(200)
_FAIL = response(500)


def ok(call: Call) -> requests.Response:
    """A canned 200 (the policies only read its status and headers)."""
    return _OK


def fail(call: Call) -> requests.Response:
    """A canned 500."""
    return _FAIL


class Calls:
    """Calls to many URLs without preparing a request each time (prepare() is slow)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.request = prepared("GET", "https://api.example.com/")

    def to(self, url: str) -> Call:
        request = self.request.copy()
        request.url = url
        return Call(request=request, clock=self.clock)


def test_100k_endpoints_keep_at_most_max_keys_cells() -> None:
    """100k distinct endpoints: each policy holds at most 10,000 cells, never more."""
    calls = Calls(FakeClock())
    breaker = CircuitBreaker(key=breaker_key_by_endpoint)
    limit = RateLimit(1_000_000, burst=1000, key=breaker_key_by_endpoint)
    most = 0
    for i in range(KEYS):
        breaker.send(calls.to(f"https://api.example.com/items/{i}"), lambda c: limit.send(c, ok))
        if i % 1000 == 999:
            most = max(most, len(breaker._cells), len(limit._cells))
    assert breaker.max_keys == limit.max_keys == MAX_KEYS
    assert most == MAX_KEYS
    assert MAX_KEYS * 9 // 10 < len(breaker.snapshot()) <= MAX_KEYS
    assert MAX_KEYS * 9 // 10 < len(limit.snapshot()) <= MAX_KEYS


def test_a_key_in_use_is_never_the_one_evicted() -> None:
    """An open breaker on a key used every 500 calls stays open through 100k other keys."""
    calls = Calls(FakeClock())
    breaker = CircuitBreaker(key=breaker_key_by_endpoint, minimum_calls=1, max_keys=1000)
    hot = "https://api.example.com/hot"
    breaker.send(calls.to(hot), fail)  # opens it
    refused = 0
    for i in range(KEYS):
        breaker.send(calls.to(f"https://api.example.com/{i}"), ok)
        if i % 500 == 0:
            try:
                breaker.send(calls.to(hot), ok)
            except CircuitOpenError:
                refused += 1
    assert breaker.state("https://api.example.com:443/hot") == "open"
    assert refused == KEYS // 500
    assert len(breaker.snapshot()) <= 1000


def test_a_dropped_key_starts_afresh() -> None:
    """max_keys=1: a second key drops the first; the first comes back closed, not open."""
    clock = FakeClock()
    breaker = CircuitBreaker(key=breaker_key_by_endpoint, minimum_calls=1, max_keys=1)
    first, second = "https://api.example.com/a", "https://api.example.com/b"
    breaker.send(Call(request=prepared("GET", first), clock=clock), fail)
    assert list(breaker.snapshot()) == ["https://api.example.com:443/a"]
    assert breaker.snapshot()["https://api.example.com:443/a"].state == "open"
    breaker.send(Call(request=prepared("GET", second), clock=clock), ok)
    assert list(breaker.snapshot()) == ["https://api.example.com:443/b"]
    breaker.send(Call(request=prepared("GET", first), clock=clock), ok)  # admitted: closed
    assert list(breaker.snapshot()) == ["https://api.example.com:443/a"]
    assert breaker.snapshot()["https://api.example.com:443/a"].state == "closed"


def test_every_redis_key_of_a_tripped_breaker_and_a_bucket_expires(
    redis_server: RedisServer,
) -> None:
    """After a trip (and a rate-limit step): every Redis key has a TTL, bounded by the option."""
    redis_url = redis_server.url
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, break_duration=30, window=10, redis_url=redis_url)
    limit = RateLimit(10, redis_url=redis_url)
    call = Call(request=prepared("GET", "https://api.example.com/x"), clock=clock)
    breaker.send(call, lambda c: limit.send(c, fail))
    assert breaker.status("https://api.example.com:443").state == "open"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    ttls: dict[str, int] = {str(key): client.pttl(key) for key in client.keys("*")}
    client.close()
    names = sorted(
        key.split(":pybreaker:")[1] if ":pybreaker:" in key else "bucket" for key in ttls
    )
    assert names == [
        "bucket",
        "fail_counter",
        "open_until",
        "opened_at",
        "state",
        "success_counter",
    ]
    no_expiry = sorted(key for key, ttl in ttls.items() if ttl < 0)
    assert no_expiry == []
    assert all(0 < ttl <= 120_000 for ttl in ttls.values()), ttls


def test_a_frozen_redis_costs_one_timeout_per_policy_then_local_state(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """SIGSTOP'd Redis: the first call < 1.5 s (2 x 0.5 s), the next ten < 0.5 s, all 200."""
    backend = Server(lambda path: (200, "OK", {}, b"ok")).start()
    try:
        policies = Pipeline(
            CircuitBreaker(redis_url=redis_server.url),
            RateLimit(1000, redis_url=redis_server.url),
            clock=FakeClock(wall=time.time()),
        )
        with requests.Session() as session:
            mount(session, "http://", policies)
            url = f"http://127.0.0.1:{backend.port}/x"
            assert session.get(url).status_code == 200  # warm: Redis answers
            assert redis_server.process is not None
            os.kill(redis_server.process.pid, signal.SIGSTOP)
            assert session.get(url).status_code == 200
            statuses = [session.get(url).status_code for _ in range(10)]
    finally:
        backend.stop()
    assert statuses == [200] * 10
    lost = sorted(e["event"] for e in logs if e["event"].endswith("_redis_unavailable"))
    assert lost == ["circuit_breaker_redis_unavailable", "rate_limit_redis_unavailable"]
    assert all("TimeoutError" in e["error"] for e in logs if e["event"] in lost)

"""A rate-limit bucket shared across processes through a real redis-server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from requests_resilience import Call, Pipeline
from requests_resilience._ratelimit import RateLimit, rate_limit_key_for
from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import VinciClient, build_pipeline
from tests.helpers import ScriptedTransport, response, run
from tests.integration.conftest import RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
RATE = 40  # requests per second, shared by the two processes
PER_PROCESS = 12

# Run in a separate interpreter: take PER_PROCESS tokens from the shared bucket, on the
# real clock, and print when each was granted.
DRAW = r"""
import json, sys, time
import requests
from requests_resilience import Pipeline
from requests_resilience._ratelimit import RateLimit
from tests.helpers import response, prepared, run

redis_url, start, count, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rate = float(rate)
limit = RateLimit.per_second(rate, key="shared", redis_url=redis_url)
pipeline = Pipeline(limit)
stamps = []

def transport(call):
    stamps.append(time.time())
    return response(200, request=call.request)

time.sleep(max(0.0, start - time.time()))
for _ in range(count):
    run(pipeline, transport)
print(json.dumps({"stamps": stamps, "shared": limit.status("shared").shared}))
"""


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def test_two_processes_share_one_bucket(redis_url: str) -> None:
    """Two interpreters on one key: together they go at the bucket's rate, not twice it."""
    start = time.time() + 1.5  # both are up by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", DRAW, redis_url, repr(start), str(PER_PROCESS), str(RATE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    stamps: list[float] = []
    for process in processes:
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["shared"] is True
        stamps.extend(result["stamps"])
    stamps.sort()
    rate = RATE * 0.95
    span = stamps[-1] - stamps[0]
    expected = (2 * PER_PROCESS - 1) / rate  # one bucket for both
    assert span >= expected * 0.9
    assert span < expected * 2
    # Alone, each process would have finished in half the time: they did not.
    assert (2 * PER_PROCESS - 1) / span <= rate * 1.1


def test_a_429_seen_by_one_process_slows_the_others(redis_url: str) -> None:
    """The adaptation lives in Redis: a throttle through one policy lowers the rate of all."""
    clock = FakeClock()
    first = RateLimit.per_second(10, key="k", recovery=100, redis_url=redis_url)
    second = RateLimit.per_second(10, key="k", recovery=100, redis_url=redis_url)
    run(Pipeline(first, clock=clock), ScriptedTransport(response(429)))
    run(Pipeline(second, clock=clock), ScriptedTransport(response(200)))
    status = second.status("k")
    assert status.shared
    assert status.rate == pytest.approx(9.5 * 0.7, rel=0.01)


def test_a_pause_seen_by_one_process_holds_the_others(redis_url: str) -> None:
    """Retry-After through one policy: another policy on the key waits for it too."""
    clock = FakeClock()
    first = RateLimit.per_second(10, key="k", redis_url=redis_url)
    second = RateLimit.per_second(10, key="k", redis_url=redis_url)
    run(
        Pipeline(first, clock=clock),
        ScriptedTransport(response(429, headers={"Retry-After": "3"})),
    )
    run(Pipeline(second, clock=clock), ScriptedTransport(response(200)))
    assert clock.sleeps == pytest.approx([3.0])


def test_unreachable_redis_falls_back_to_a_local_bucket_and_logs_once(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """Redis on a closed port: calls still go through, paced locally; one warning."""
    clock = FakeClock()
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    limit = RateLimit.per_second(10, key="k", redis_url=url)
    pipeline = Pipeline(limit, clock=clock)
    transport = ScriptedTransport(response(200))
    for _ in range(4):
        assert run(pipeline, transport).status_code == 200
    assert len(transport.calls) == 4
    assert clock.sleeps == pytest.approx([1 / 9.5] * 3)
    events = [e for e in logs if e["event"] == "rate_limit_redis_unavailable"]
    assert len(events) == 1
    assert events[0]["log_level"] == "warning"
    assert "hunter2" not in repr(events)
    assert "***" in events[0]["redis"]


def test_redis_is_tried_again_after_it_comes_back(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """Redis down: the local bucket, logged once; back up: the shared bucket, logged once."""
    clock = FakeClock()
    limit = RateLimit.per_second(10, key="k", redis_url=redis_server.url)
    pipeline = Pipeline(limit, clock=clock)
    transport = ScriptedTransport(response(200))
    redis_server.stop()
    run(pipeline, transport)
    run(pipeline, transport)
    redis_server.start()
    clock.advance(10)
    run(pipeline, transport)
    assert len(transport.calls) == 3
    assert [e["event"] for e in logs if e["event"].startswith("rate_limit_redis")] == [
        "rate_limit_redis_unavailable",
        "rate_limit_redis_recovered",
    ]
    assert redis.Redis.from_url(redis_server.url).keys("requests_resilience:rate_limit:*")


def test_the_redis_key_is_a_hash_of_the_api_key(
    redis_url: str, fake_vinci: FakeVinciServer
) -> None:
    """The Vinci preset with redis_url: the bucket is in Redis under the key's hash only."""
    pipeline = build_pipeline(api_key=fake_vinci.api_key, redis_url=redis_url, retry=None)
    with VinciClient(base_url=fake_vinci.base_url, pipeline=pipeline) as client:
        client.balance()
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*")]  # type: ignore[union-attr]
    bucket_keys = [k for k in keys if k.startswith("requests_resilience:rate_limit:")]
    assert bucket_keys == [
        f"requests_resilience:rate_limit:rate_limit:{{{rate_limit_key_for(fake_vinci.api_key)}}}"
    ]
    secret_parts = {fake_vinci.api_key, fake_vinci.api_key[3:], fake_vinci.api_key[-12:]}
    for key in keys:
        for part in secret_parts:
            assert part not in key


def test_a_real_session_is_paced_through_redis(redis_url: str) -> None:
    """Over loopback HTTP: the shared bucket paces a plain requests.Session."""
    clock = FakeClock()
    limit = RateLimit.per_second(5, key="k", burst=2, redis_url=redis_url)
    with FakeVinciServer() as server:
        pipeline = Pipeline(limit, clock=clock)

        def send(call: Call) -> requests.Response:
            return requests.get(server.url("/billing/balance"), timeout=5)

        for _ in range(4):
            run(pipeline, send)
    assert clock.sleeps == pytest.approx([1 / 4.75, 1 / 4.75])

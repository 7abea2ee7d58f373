"""Circuit-breaker state shared across processes through a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pybreaker
import pytest
import redis
import requests
import structlog.testing

from requests_resilience import (
    APIKeyAuth,
    Call,
    CircuitOpenError,
    Pipeline,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience._breaker import CircuitBreaker
from requests_resilience.testing import FakeClock, FakeVinciServer
from tests.helpers import ScriptedTransport, prepared, response, run
from tests.integration.conftest import RedisServer

pytestmark = pytest.mark.redis

BALANCE = "/billing/balance"

# Run in a separate interpreter: trip the shared breaker against the outage.
TRIP = r"""
import json, sys
import requests
from requests_resilience import (
    APIKeyAuth, CircuitOpenError, Pipeline, ServerError, StatusErrors, mount,
)
from requests_resilience._breaker import CircuitBreaker

redis_url, base_url, api_key, key, minimum_calls = sys.argv[1:6]
breaker = CircuitBreaker(
    redis_url=redis_url, minimum_calls=int(minimum_calls), break_duration=30
)
pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(api_key))
outcomes = []
with requests.Session() as session:
    mount(session, base_url + "/", pipeline)
    for _ in range(4):
        try:
            session.get(base_url + "/billing/balance", timeout=5)
            outcomes.append(200)
        except ServerError as exc:
            outcomes.append(exc.status_code)
        except CircuitOpenError:
            outcomes.append("open")
status = breaker.status(key)
print(json.dumps({"outcomes": outcomes, "state": status.state, "opened": status.opened}))
"""


def key_of(server: FakeVinciServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def run_in_another_process(
    redis_url: str, server: FakeVinciServer, minimum_calls: int
) -> dict[str, object]:
    """Send 4 calls from a fresh interpreter; the fake server serves from this process."""
    args = [redis_url, server.base_url, server.api_key, key_of(server), str(minimum_calls)]
    done = subprocess.run(
        [sys.executable, "-c", TRIP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_trip_in_one_process_makes_another_fail_fast(
    redis_url: str, fake_vinci: FakeVinciServer
) -> None:
    """Another process opens the shared breaker; this one then fails fast, sending nothing."""
    fake_vinci.outage(30.0)
    other = run_in_another_process(redis_url, fake_vinci, minimum_calls=4)
    assert other == {"outcomes": [503, 503, 503, 503], "state": "open", "opened": 1}
    reached = fake_vinci.request_count
    assert reached == 4

    breaker = CircuitBreaker(redis_url=redis_url, minimum_calls=4, break_duration=30)
    pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(fake_vinci.api_key))
    with requests.Session() as session:
        mount(session, fake_vinci.base_url + "/", pipeline)
        for _ in range(20):
            with pytest.raises(CircuitOpenError) as info:
                session.get(fake_vinci.url(BALANCE), timeout=5)
    assert fake_vinci.request_count == reached
    assert 25 < info.value.retry_after <= 30
    status = breaker.status(key_of(fake_vinci))
    assert (status.state, status.shared, status.rejected, status.sent) == ("open", True, 20, 0)


def test_the_shared_window_adds_up_calls_from_several_processes(
    redis_url: str, fake_vinci: FakeVinciServer
) -> None:
    """Two failures here and two in another process make the four that open the breaker."""
    fake_vinci.outage(30.0)
    here = CircuitBreaker(redis_url=redis_url, minimum_calls=6, break_duration=30)
    pipeline = Pipeline(StatusErrors(), here, APIKeyAuth(fake_vinci.api_key))
    with requests.Session() as session:
        mount(session, fake_vinci.base_url + "/", pipeline)
        for _ in range(2):
            with pytest.raises(ServerError):
                session.get(fake_vinci.url(BALANCE), timeout=5)
        other = run_in_another_process(redis_url, fake_vinci, minimum_calls=6)
        assert other["outcomes"] == [503, 503, 503, 503]  # 2 + 4 = 6 calls: it trips
        assert other["opened"] == 1
        with pytest.raises(CircuitOpenError):
            session.get(fake_vinci.url(BALANCE), timeout=5)
    assert fake_vinci.request_count == 6
    assert here.state(key_of(fake_vinci)) == "open"


def test_plain_pybreaker_sees_the_shared_state(
    redis_url: str, fake_vinci: FakeVinciServer
) -> None:
    """The state lives in pybreaker's CircuitRedisStorage keys: pybreaker itself reads it."""
    clock = FakeClock(wall=1_750_000_000.0)
    breaker = CircuitBreaker(redis_url=redis_url, minimum_calls=2, break_duration=60)
    pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(fake_vinci.api_key), clock=clock)
    fake_vinci.outage(30.0)
    with requests.Session() as session:
        mount(session, fake_vinci.base_url + "/", pipeline)
        for _ in range(2):
            with pytest.raises(ServerError):
                session.get(fake_vinci.url(BALANCE), timeout=5)
    client = redis.Redis.from_url(redis_url)
    namespace = f"requests_resilience:breaker:circuit_breaker:{{{key_of(fake_vinci)}}}"
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace)
    assert storage.state == pybreaker.STATE_OPEN
    assert storage.opened_at is not None
    assert storage.opened_at.timestamp() == 1_750_000_000
    assert storage.counter == 2  # pybreaker's consecutive-failure counter
    client.close()


def test_redis_going_away_degrades_to_local_state_and_comes_back(
    redis_server: RedisServer, fake_vinci: FakeVinciServer
) -> None:
    """Redis stops: calls go on (logged once) with local state; Redis returns: shared again."""
    clock = FakeClock()
    breaker = CircuitBreaker(redis_url=redis_server.url, minimum_calls=3, break_duration=30)
    pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(fake_vinci.api_key), clock=clock)
    url = fake_vinci.url(BALANCE)
    with requests.Session() as session, structlog.testing.capture_logs() as logs:
        mount(session, fake_vinci.base_url + "/", pipeline)
        assert session.get(url, timeout=5).status_code == 200
        redis_server.stop()
        for _ in range(3):
            assert session.get(url, timeout=5).status_code == 200  # no Redis error surfaces
        fake_vinci.outage(30.0)
        for _ in range(3):
            with pytest.raises(ServerError):
                session.get(url, timeout=5)
        with pytest.raises(CircuitOpenError):  # the local fallback tripped
            session.get(url, timeout=5)
        assert breaker.state(key_of(fake_vinci)) == "open"

        redis_server.start()
        clock.advance(6.0)  # past the interval after which Redis is tried again
        fake_vinci.clear_faults()
        assert session.get(url, timeout=5).status_code == 200  # Redis's state: closed
        assert breaker.state(key_of(fake_vinci)) == "closed"
    events = [entry["event"] for entry in logs]
    assert events.count("circuit_breaker_redis_unavailable") == 1
    assert events.count("circuit_breaker_redis_recovered") == 1
    warning = next(e for e in logs if e["event"] == "circuit_breaker_redis_unavailable")
    assert warning["redis"] == redis_server.url
    assert warning["policy"] == "circuit_breaker"


def test_threads_sharing_a_redis_breaker_lose_no_counts(redis_url: str) -> None:
    """16 threads x 50 calls through Redis: the shared window counts every one exactly."""
    clock = FakeClock()
    breaker = CircuitBreaker(redis_url=redis_url, minimum_calls=10)
    step = Pipeline(breaker, clock=clock).wrap(
        lambda call: response(503 if call.request.headers["X-Index"].endswith("3") else 200)
    )
    barrier = threading.Barrier(16, timeout=10)

    def worker() -> None:
        barrier.wait()
        for index in range(50):
            request = prepared(headers={"X-Index": str(index % 4)})
            step(Call(request=request, clock=clock))

    pool = [threading.Thread(target=worker) for _ in range(16)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    status = breaker.status("https://api.example.com:443")
    assert (status.state, status.sent, status.rejected) == ("closed", 800, 0)
    assert (status.window_calls, status.window_failures) == (800, 16 * 12)


def test_half_open_probe_permits_are_shared_between_processes(redis_url: str) -> None:
    """While one process's probe is in flight, another process's call is refused."""
    clock = FakeClock()
    first = Pipeline(
        CircuitBreaker(redis_url=redis_url, minimum_calls=2, break_duration=5), clock=clock
    )
    second = Pipeline(
        CircuitBreaker(redis_url=redis_url, minimum_calls=2, break_duration=5), clock=clock
    )
    for _ in range(2):
        run(first, ScriptedTransport(response(503)))
    with pytest.raises(CircuitOpenError):
        run(second, ScriptedTransport(response(200)))
    clock.advance(5)
    refused: list[CircuitOpenError] = []

    def probe(call: Call) -> requests.Response:
        with pytest.raises(CircuitOpenError) as info:
            run(second, ScriptedTransport(response(200)))
        refused.append(info.value)
        return response(200)

    run(first, ScriptedTransport(probe))
    assert refused[0].retry_after == pytest.approx(0.5)  # min(1 s, break_duration / 10)
    assert run(second, ScriptedTransport(response(200))).status_code == 200  # closed now

"""ConcurrencyLimit permits shared through a real redis-server: leases, deaths, fallback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from requests_resilience import (
    Call,
    ConcurrencyLimit,
    ConcurrencyLimitError,
    Pipeline,
    SystemClock,
)
from requests_resilience._concurrency_storage import RedisPermits
from requests_resilience.testing import FakeClock
from tests.helpers import prepared, response

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
KEY = "vinci"
REDIS_KEY = "requests_resilience:concurrency:concurrency_limit:{vinci}"
WAIT = 30.0

# Run in a separate interpreter: take a permit and hold it until killed.
HOLD = r"""
import sys, threading
from requests_resilience import Call, ConcurrencyLimit, Pipeline
from tests.helpers import prepared

limit = ConcurrencyLimit(1, key="vinci", redis_url=sys.argv[1], lease=float(sys.argv[2]))

def transport(call):
    print("holding", flush=True)
    threading.Event().wait()

Pipeline(limit).wrap(transport)(Call(request=prepared()))
"""


def ok(call: Call) -> requests.Response:
    return response(200, request=call.request)


def send(limit: ConcurrencyLimit, clock: Any, transport: Any = ok) -> requests.Response:
    call = Call(request=prepared(), clock=clock)
    result: requests.Response = Pipeline(limit, clock=clock).wrap(transport)(call)
    return result


class Holder:
    """A thread whose call holds a permit of `limit` until `release()`."""

    def __init__(self, limit: ConcurrencyLimit) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()

        def transport(call: Call) -> requests.Response:
            self.inside.set()
            assert self.go.wait(WAIT)
            return ok(call)

        self.thread = threading.Thread(target=lambda: send(limit, SystemClock(), transport))
        self.thread.start()
        assert self.inside.wait(WAIT)

    def release(self) -> None:
        self.go.set()
        self.thread.join(WAIT)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_two_policies_share_the_permits_through_redis(redis_url: str) -> None:
    """Two processes' policies (one URL, name, key): 2 permits for both together."""
    first = ConcurrencyLimit(2, key=KEY, redis_url=redis_url, max_queue=0)
    second = ConcurrencyLimit(2, key=KEY, redis_url=redis_url, max_queue=0)
    holders = [Holder(first), Holder(first)]
    try:
        assert second.status(KEY).in_flight == 2
        assert second.status(KEY).held_here == 0
        with pytest.raises(ConcurrencyLimitError, match="queue is full"):
            send(second, SystemClock())
    finally:
        holders.pop().release()
    assert send(second, SystemClock()).status_code == 200
    holders.pop().release()
    assert redis.Redis.from_url(redis_url).zcard(REDIS_KEY) == 0
    assert first.status(KEY).in_flight == 0


def test_a_waiter_in_one_process_gets_the_permit_another_releases(redis_url: str) -> None:
    """The head of a queue asks Redis again until a permit freed elsewhere is its own."""
    first = ConcurrencyLimit(1, key=KEY, redis_url=redis_url)
    second = ConcurrencyLimit(1, key=KEY, redis_url=redis_url, max_wait=WAIT)
    holder = Holder(first)
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(send(second, SystemClock()).status_code)
    )
    thread.start()
    event = threading.Event()
    while second.status(KEY).queued != 1:
        event.wait(0.001)
    holder.release()
    thread.join(WAIT)
    assert result == [200]
    assert second.status(KEY).waited == 1


def test_a_holder_that_died_gives_its_permit_back_when_its_lease_runs_out(
    redis_url: str,
) -> None:
    """A lease never released (its holder died): the next caller gets it at its expiry."""
    clock = FakeClock()
    client = redis.Redis.from_url(redis_url)
    RedisPermits(client, REDIS_KEY).acquire(clock.time(), 5.0, 1, "dead-holder")
    limit = ConcurrencyLimit(1, key=KEY, redis_url=redis_url, lease=5.0, max_wait=60.0)
    assert send(limit, clock).status_code == 200
    assert 5.0 <= clock.slept <= 5.0 + 0.05  # waited for the lease, polling on the clock
    assert limit.status(KEY).waited == 1
    assert client.zcard(REDIS_KEY) == 0


def test_a_process_killed_holding_a_permit_loses_it_within_its_lease(redis_url: str) -> None:
    """SIGKILL a process inside its call: its lease stays until expiry, and no longer."""
    lease = 3.0
    client = redis.Redis.from_url(redis_url)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, redis_url, str(lease)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"holding"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        if child.stdout is not None:
            child.stdout.close()
    held: Any = client.zrange(REDIS_KEY, 0, -1, withscores=True)
    [(holder, expiry)] = held
    assert holder.decode().startswith(f"{child.pid}-")
    limit = ConcurrencyLimit(1, key=KEY, redis_url=redis_url, max_queue=0)
    before = FakeClock(start=0.0, wall=expiry - 0.01)
    with pytest.raises(ConcurrencyLimitError):
        send(limit, before)
    after = FakeClock(start=0.0, wall=expiry + 0.01)
    assert send(limit, after).status_code == 200
    now: Any = client.time()
    assert expiry - now[0] <= lease + 1  # the expiry is within one lease


def test_a_live_holder_renews_its_lease(
    redis_url: str, logs: list[MutableMapping[str, Any]]
) -> None:
    """renew_once() moves a held lease to now + lease; a lease already gone is logged."""
    clock = FakeClock()
    client = redis.Redis.from_url(redis_url)
    limit = ConcurrencyLimit(2, key=KEY, redis_url=redis_url, lease=10.0)
    renewer = limit._renewer
    assert renewer is not None
    scores: list[float] = []

    def transport(call: Call) -> requests.Response:
        clock.advance(6.0)
        assert renewer.renew_once() == 1
        held: Any = client.zrange(REDIS_KEY, 0, -1, withscores=True)
        [(_, score)] = held
        scores.append(score)
        client.delete(REDIS_KEY)  # as if the lease had run out and been taken
        assert renewer.renew_once() == 0
        return ok(call)

    start = clock.time()
    send(limit, clock, transport)
    assert scores == [pytest.approx(start + 6.0 + 10.0)]
    assert [e["event"] for e in logs if e["event"].startswith("concurrency_limit_lease")] == [
        "concurrency_limit_lease_lost"
    ]
    assert renewer.holders == 0


def test_unreachable_redis_falls_back_to_local_permits_and_logs_once(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """Redis on a closed port: each process keeps max_concurrent of its own; one warning."""
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    limit = ConcurrencyLimit(1, key=KEY, redis_url=url, max_queue=0)
    holder = Holder(limit)
    try:
        with pytest.raises(ConcurrencyLimitError):
            send(limit, SystemClock())
    finally:
        holder.release()
    assert send(limit, SystemClock()).status_code == 200
    events = [e for e in logs if e["event"] == "concurrency_limit_redis_unavailable"]
    assert len(events) == 1
    assert "hunter2" not in repr(logs)


@pytest.mark.anyio
async def test_async_callers_share_the_same_permits(redis_url: str) -> None:
    """An async holder's lease (redis.asyncio) is a permit the sync face sees taken."""
    limit = ConcurrencyLimit(1, key=KEY, redis_url=redis_url, max_queue=0)
    inside = asyncio.Event()
    go = asyncio.Event()

    async def hold(call: Call) -> requests.Response:
        inside.set()
        await go.wait()
        return ok(call)

    pipeline = Pipeline(limit)

    async def call() -> requests.Response:
        return await pipeline.wrap_async(hold)(Call(request=prepared()))

    task = asyncio.create_task(call())
    await inside.wait()
    other = ConcurrencyLimit(1, key=KEY, redis_url=redis_url, max_queue=0)
    with pytest.raises(ConcurrencyLimitError):
        await asyncio.to_thread(send, other, SystemClock())
    go.set()
    await task
    assert (await asyncio.to_thread(send, other, SystemClock())).status_code == 200
    assert redis.Redis.from_url(redis_url).zcard(REDIS_KEY) == 0

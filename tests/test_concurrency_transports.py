"""ConcurrencyLimit on all three transports (requests, httpx, httpx async), real loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
import redis
import requests

from requests_resilience import (
    APIKeyAuth,
    Call,
    CircuitBreaker,
    ConcurrencyLimit,
    ConcurrencyLimitError,
    Next,
    Pipeline,
    Retry,
    StatusErrors,
    SystemClock,
    mount,
)
from requests_resilience._concurrency_storage import RedisPermits
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from tests.test_transports import Transport

BALANCE = "/billing/balance"
KINDS = ["requests", "httpx", "httpx-async"]


@pytest.fixture(params=KINDS)
def transport(request: pytest.FixtureRequest) -> Transport:
    return Transport(str(request.param))


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


class InFlight:
    """A policy inside the limit that counts the attempts under way at once."""

    name = "in_flight"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def _enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def _leave(self) -> None:
        with self.lock:
            self.now -= 1

    def send(self, call: Call, next: Next) -> requests.Response:
        self._enter()
        try:
            return next(call)
        finally:
            self._leave()

    async def asend(
        self, call: Call, next: Callable[[Call], Awaitable[requests.Response]]
    ) -> requests.Response:
        self._enter()
        try:
            return await next(call)
        finally:
            self._leave()


def call_many(kind: str, pipeline: Pipeline, url: str, count: int) -> list[int | str]:
    """`count` calls at once (threads, or tasks in one loop); statuses or error names."""

    def outcome(send: Callable[[], int]) -> int | str:
        try:
            return send()
        except ConcurrencyLimitError as exc:
            return type(exc).__name__

    if kind == "httpx-async":

        async def main() -> list[int | str]:
            async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:

                async def one() -> int | str:
                    try:
                        return (await client.get(url)).status_code
                    except ConcurrencyLimitError as exc:
                        return type(exc).__name__

                return list(await asyncio.gather(*(one() for _ in range(count))))

        return asyncio.run(main())
    results: list[int | str] = []
    lock = threading.Lock()

    def worker() -> None:
        if kind == "requests":
            with requests.Session() as session:
                mount(session, "http://", pipeline)
                result = outcome(lambda: session.get(url).status_code)
        else:
            with httpx.Client(transport=ResilientTransport(pipeline)) as client:
                result = outcome(lambda: client.get(url).status_code)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_a_full_limit_refuses_locally_and_sends_nothing(
    transport: Transport, server: FakeVinciServer
) -> None:
    """Every permit taken and no queue: ConcurrencyLimitError, and the server sees nothing."""
    limit = ConcurrencyLimit(1, key="vinci", max_queue=0)
    pipeline = Pipeline(StatusErrors(), limit, APIKeyAuth(server.api_key), clock=FakeClock())
    gate = limit._cells.get("vinci").gate
    assert gate.enter() is True  # another caller holds the only permit
    with pytest.raises(ConcurrencyLimitError) as caught:
        transport.call(pipeline, "GET", server.url(BALANCE))
    assert caught.value.reason == "queue full"
    assert server.request_count == 0
    gate.release(held_for=0.0)
    assert transport.call(pipeline, "GET", server.url(BALANCE)) == 200
    assert limit.status("vinci").in_flight == 0


def test_calls_beyond_the_limit_wait_their_turn(server: FakeVinciServer, kind: str) -> None:
    """8 calls at once through a limit of 2: never more than 2 at the server, all served."""
    server.set_latency(0.02)
    limit = ConcurrencyLimit(2, key="vinci", max_wait=60)
    inside = InFlight()
    pipeline = Pipeline(
        StatusErrors(), limit, inside, APIKeyAuth(server.api_key), clock=SystemClock()
    )
    assert call_many(kind, pipeline, server.url(BALANCE), 8) == [200] * 8
    assert inside.most == 2
    assert server.request_count == 8
    status = limit.status("vinci")
    assert (status.admitted, status.in_flight, status.refused) == (8, 0, 0)
    assert status.waited >= 1


def test_retries_and_breaker_inside_the_limit_hold_one_permit(
    server: FakeVinciServer, kind: str
) -> None:
    """Two 503s then 200 under Retry and a breaker: three attempts on one permit."""
    server.script(Fault.status(503), Fault.status(503), path=BALANCE)
    limit = ConcurrencyLimit(1, key="vinci", max_queue=0)
    inside = InFlight()
    pipeline = Pipeline(
        StatusErrors(),
        limit,
        Retry(max_attempts=3),
        CircuitBreaker(minimum_calls=10),
        inside,
        APIKeyAuth(server.api_key),
        clock=FakeClock(),
    )
    assert call_many(kind, pipeline, server.url(BALANCE), 1) == [200]
    assert server.request_count == 3
    assert inside.most == 1
    assert limit.status("vinci").admitted == 1


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_shared_limit_counts_the_permits_of_other_processes(
    transport: Transport, server: FakeVinciServer, redis_url: str
) -> None:
    """Through Redis: a permit leased elsewhere is taken here too, on every transport."""
    limit = ConcurrencyLimit(1, key="vinci", max_queue=0, redis_url=redis_url)
    pipeline = Pipeline(StatusErrors(), limit, APIKeyAuth(server.api_key))
    client = redis.Redis.from_url(redis_url)
    elsewhere = RedisPermits(client, limit._redis_key("vinci"))
    assert elsewhere.acquire(SystemClock.time(), 60.0, 1, "another-process")[0]
    with pytest.raises(ConcurrencyLimitError):
        transport.call(pipeline, "GET", server.url(BALANCE))
    assert server.request_count == 0
    elsewhere.release("another-process")
    assert transport.call(pipeline, "GET", server.url(BALANCE)) == 200
    assert client.zcard(limit._redis_key("vinci")) == 0

"""The policies' behaviour, the same on all three transports: requests, httpx, httpx async.

Each test builds one pipeline and makes its calls through `Transport.call`, which sends
them with a requests.Session (the adapter), an httpx.Client (ResilientTransport) or an
httpx.AsyncClient (AsyncResilientTransport) against the real loopback fake server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    CircuitOpenError,
    InsufficientBalanceError,
    Pipeline,
    RateLimit,
    RateLimitError,
    Retry,
    RetryBudget,
    RetryBudgetExhaustedError,
    ServerError,
    StatusErrors,
    Tracing,
    mount,
)
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault

BALANCE = "/billing/balance"
GENERATE = "/generate/text-to-video"


class Transport:
    """One of the three ways to send a call through a pipeline."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def call(
        self, pipeline: Pipeline, method: str, url: str, json: dict[str, Any] | None = None
    ) -> int:
        """Send one call; its status (an error raises the library's exception)."""
        if self.kind == "requests":
            with requests.Session() as session:
                mount(session, "http://", pipeline)
                return session.request(method, url, json=json).status_code
        if self.kind == "httpx":
            with httpx.Client(transport=ResilientTransport(pipeline)) as client:
                return client.request(method, url, json=json).status_code

        async def main() -> int:
            async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
                return (await client.request(method, url, json=json)).status_code

        return asyncio.run(main())


@pytest.fixture(params=["requests", "httpx", "httpx-async"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return Transport(str(request.param))


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


def test_retry_honours_retry_after_then_succeeds(
    transport: Transport, server: FakeVinciServer
) -> None:
    """503 then 429 (Retry-After: 2) then 200: three requests, the server's wait exact."""
    clock = FakeClock(random_value=0.5)
    server.script(Fault.status(503), Fault.status(429, retry_after="2"), path=BALANCE)
    pipeline = Pipeline(
        StatusErrors(), Retry(initial_delay=1.0), APIKeyAuth(server.api_key), clock=clock
    )
    assert transport.call(pipeline, "GET", server.url(BALANCE)) == 200
    assert len(server.requests) == 3
    assert clock.sleeps == [0.5, 2.0]  # a jittered backoff, then the server's wait


def test_a_post_with_an_unknown_outcome_is_sent_once(
    transport: Transport, server: FakeVinciServer
) -> None:
    """A paid POST that got a 500 may have been acted on: never re-sent."""
    server.script(Fault.status(500), path=GENERATE)
    pipeline = Pipeline(StatusErrors(), Retry(), APIKeyAuth(server.api_key), clock=FakeClock())
    with pytest.raises(ServerError) as caught:
        transport.call(pipeline, "POST", server.url(GENERATE), json={"prompt": "a fox"})
    assert len(server.requests) == 1
    assert caught.value.history[-1].reason.startswith("not retried: outcome unknown")


def test_a_failing_budget_refuses_the_retry(transport: Transport, server: FakeVinciServer) -> None:
    """With the budget in a failing spell and no token, the call ends after one request."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    for _ in range(30):
        budget._record(clock.monotonic(), failed=True)
    server.script(Fault.status(503), path=BALANCE)
    retry = Retry(budget=budget, fail_fast_on_budget=True)
    pipeline = Pipeline(StatusErrors(), retry, APIKeyAuth(server.api_key), clock=clock)
    with pytest.raises(RetryBudgetExhaustedError):
        transport.call(pipeline, "GET", server.url(BALANCE))
    assert len(server.requests) == 1


def test_an_open_breaker_sends_nothing(transport: Transport, server: FakeVinciServer) -> None:
    """Three 500s open the breaker; the fourth call is refused locally."""
    breaker = CircuitBreaker(minimum_calls=3, failure_ratio=0.5, break_duration=30.0)
    pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(server.api_key), clock=FakeClock())
    server.script(*[Fault.status(500)] * 3, path=BALANCE)
    for _ in range(3):
        with pytest.raises(ServerError):
            transport.call(pipeline, "GET", server.url(BALANCE))
    with pytest.raises(CircuitOpenError) as caught:
        transport.call(pipeline, "GET", server.url(BALANCE))
    assert caught.value.retry_after == pytest.approx(30.0)
    assert len(server.requests) == 3


def test_a_rate_limit_refuses_locally(transport: Transport, server: FakeVinciServer) -> None:
    """Two tokens a minute and no waiting: the third call is refused without sending."""
    limit = RateLimit(2, period=60.0, burst=2, max_wait=0.0, key="vinci")
    pipeline = Pipeline(StatusErrors(), limit, APIKeyAuth(server.api_key), clock=FakeClock())
    assert transport.call(pipeline, "GET", server.url(BALANCE)) == 200
    assert transport.call(pipeline, "GET", server.url(BALANCE)) == 200
    with pytest.raises(RateLimitError) as caught:
        transport.call(pipeline, "GET", server.url(BALANCE))
    # The next token: a minute per two, at the default headroom (95 % of the limit).
    assert caught.value.retry_after == pytest.approx(60.0 / 2 / 0.95)
    assert len(server.requests) == 2


def test_status_errors_are_typed_with_their_detail(
    transport: Transport, server: FakeVinciServer
) -> None:
    """A 402 becomes InsufficientBalanceError with the server's detail."""
    server.script(Fault.insufficient_balance(), path=BALANCE)
    pipeline = Pipeline(StatusErrors(), APIKeyAuth(server.api_key), clock=FakeClock())
    with pytest.raises(InsufficientBalanceError) as caught:
        transport.call(pipeline, "GET", server.url(BALANCE))
    assert caught.value.status_code == 402
    assert "balance" in (caught.value.detail or "").lower()


def test_the_key_goes_to_its_own_origin_only(
    transport: Transport, server: FakeVinciServer
) -> None:
    """Bound to the API's origin, the key is not sent to another one."""
    with FakeVinciServer() as other:
        auth = APIKeyAuth(server.api_key, origin=server.base_url)
        pipeline = Pipeline(auth, clock=FakeClock())
        transport.call(pipeline, "GET", server.url(BALANCE))
        transport.call(pipeline, "GET", other.url(BALANCE))
        assert other.requests[0].headers.get("Authorization") is None
    assert server.requests[0].headers["Authorization"] == f"Bearer {server.api_key}"


def test_every_attempt_is_a_client_span(transport: Transport, server: FakeVinciServer) -> None:
    """A retried call: two CLIENT spans, the traceparent of each on its request."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.script(Fault.status(503), path=BALANCE)
    pipeline = Pipeline(
        StatusErrors(),
        Retry(initial_delay=0.01),
        APIKeyAuth(server.api_key),
        Tracing(tracer_provider=provider),
        clock=FakeClock(),
    )
    assert transport.call(pipeline, "GET", server.url(BALANCE)) == 200
    provider.shutdown()
    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [(s.attributes or {}).get("http.response.status_code") for s in spans] == [503, 200]
    # The HTTP version the transport spoke (urllib3's, or httpx's extensions).
    assert [(s.attributes or {}).get("network.protocol.version") for s in spans] == ["1.1"] * 2
    sent = [r.headers["traceparent"].split("-")[2] for r in server.requests]
    assert sent == [format(s.context.span_id, "016x") for s in spans if s.context]

"""The same pipeline under httpx.Client and httpx.AsyncClient, against a real loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from requests_resilience import (
    APIConnectionError,
    APIKeyAuth,
    AsyncNext,
    Call,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Next,
    Pipeline,
    RateLimit,
    RateLimitError,
    Retry,
    RetryBudget,
    RetryBudgetExhaustedError,
    ServerError,
    StatusErrors,
    Tracing,
    attempts_of,
    mount,
)
from requests_resilience._headers import copy_headers, header
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault

KEY = "sk-httpx-test-0123456789"

BALANCE = "/billing/balance"


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


def preset(server: FakeVinciServer, clock: FakeClock) -> Pipeline:
    return Pipeline(
        StatusErrors(),
        Retry(initial_delay=0.5, max_attempts=4),
        CircuitBreaker(minimum_calls=100),
        RateLimit(50),
        APIKeyAuth(server.api_key),
        Tracing(),
        clock=clock,
    )


def test_sync_client_retries_and_honours_retry_after(server: FakeVinciServer) -> None:
    """A 503 and a 429 with Retry-After, then 200: three requests, the server's wait kept."""
    clock = FakeClock()
    server.script(Fault.status(503), Fault.status(429, retry_after="2"), path=BALANCE)
    with httpx.Client(transport=ResilientTransport(preset(server, clock))) as client:
        response = client.get(server.url(BALANCE))
    assert response.status_code == 200
    assert response.json()["balance_usd"] == 100.0
    assert [r.path for r in server.requests] == [BALANCE] * 3
    assert clock.sleeps[1] == 2.0  # the Retry-After, exactly
    assert all(r.headers["Authorization"] == f"Bearer {server.api_key}" for r in server.requests)


def test_sync_client_raises_the_library_errors_with_history(server: FakeVinciServer) -> None:
    """Four 500s: a ServerError (also requests.HTTPError) carrying the four attempts."""
    server.script(*[Fault.status(500)] * 4, path=BALANCE)
    transport = ResilientTransport(preset(server, FakeClock()))
    with httpx.Client(transport=transport) as client, pytest.raises(ServerError) as caught:
        client.get(server.url(BALANCE))
    assert isinstance(caught.value, requests.HTTPError)
    assert [a.outcome for a in caught.value.history] == ["500"] * 4
    assert caught.value.status_code == 500


def test_sync_connection_failure_is_typed_and_not_sent() -> None:
    """A refused connection: APIConnectionError, request_sent False, httpx's error as cause."""
    pipeline = Pipeline(StatusErrors(), Retry(max_attempts=2), clock=FakeClock())
    with (
        httpx.Client(transport=ResilientTransport(pipeline)) as client,
        pytest.raises(APIConnectionError) as caught,
    ):
        client.get("http://127.0.0.1:9/nothing")
    assert caught.value.request_sent is False
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert [a.outcome for a in caught.value.history] == ["APIConnectionError"] * 2


def test_mounted_on_a_prefix(server: FakeVinciServer) -> None:
    """httpx's mounts= routes only the API's prefix through the pipeline."""
    clock = FakeClock()
    server.script(Fault.status(503), path=BALANCE)
    mounts = {server.base_url + "/": ResilientTransport(preset(server, clock))}
    with httpx.Client(mounts=mounts) as client:
        assert client.get(server.url(BALANCE)).status_code == 200
    assert len(server.requests) == 2


def test_header_names_go_out_as_the_caller_spelled_them(server: FakeVinciServer) -> None:
    """Every attempt, sync and async, keeps the names' spelling, as plain httpx does."""
    server.script(Fault.status(503), path=BALANCE)
    headers = {"X-Call-Id": "c-1"}
    with httpx.Client(transport=ResilientTransport(preset(server, FakeClock()))) as client:
        client.get(server.url(BALANCE), headers=headers)

    async def main() -> None:
        transport = AsyncResilientTransport(preset(server, FakeClock()))
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(server.url(BALANCE), headers=headers)

    asyncio.run(main())
    httpx.get(server.url(BALANCE), headers=headers)  # plain httpx: the reference
    assert len(server.requests) == 4  # the sync call was retried once
    spellings = [
        [n for n in r.headers if n.lower() in {"x-call-id", "user-agent"}] for r in server.requests
    ]
    assert spellings == [["User-Agent", "X-Call-Id"]] * 4


def test_repeated_headers_no_policy_changed_go_out_as_given() -> None:
    """Two X-Tag headers and a pipeline that changes none: both reach the transport."""
    seen: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get_list("x-tag"))
        return httpx.Response(200)

    transport = ResilientTransport(Pipeline(StatusErrors()), httpx.MockTransport(answer))
    with httpx.Client(transport=transport) as client:
        client.get("https://api.example.com/v1/x", headers=[("X-Tag", "a"), ("X-Tag", "b")])
    assert seen == [["a", "b"]]


class Recording(httpx.BaseTransport):
    """The wrapped transport: keeps every request it is given, answers 200."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, headers={"X-RateLimit-Limit": "100"}, content=b"{}")


def test_a_request_no_policy_changed_is_sent_as_the_client_made_it() -> None:
    """Retry, breaker and rate limit change nothing of a GET: the very object goes out."""
    inner = Recording()
    pipeline = Pipeline(StatusErrors(), Retry(), CircuitBreaker(), RateLimit(100, period=1.0))
    request = httpx.Client(timeout=10.0).build_request("GET", "https://api.example.com/v1/x")
    response = ResilientTransport(pipeline, inner).handle_request(request)
    assert response.status_code == 200
    assert inner.requests == [request]
    assert inner.requests[0] is request


def test_each_retry_starts_from_the_callers_headers() -> None:
    """Headers an inner policy sets on one attempt do not carry into the next."""
    answers = iter([503, 200])
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers))

    def stamp(call: Call, next: Next) -> requests.Response:
        assert "X-Attempt" not in call.request.headers
        call.request.headers["X-Attempt"] = str(call.attempt)
        return next(call)

    clock = FakeClock()
    pipeline = Pipeline(Retry(budget=None), stamp, clock=clock)
    transport = ResilientTransport(pipeline, httpx.MockTransport(answer))
    with httpx.Client(transport=transport) as client:
        response = client.get("https://api.example.com/v1/x", headers={"X-Tag": "a"})
    assert response.status_code == 200
    assert [r.headers["x-attempt"] for r in seen] == ["1", "2"]
    assert [r.headers["x-tag"] for r in seen] == ["a", "a"]
    assert "x-attempt" not in response.request.headers  # the caller's request is untouched


def test_changed_headers_are_applied_to_the_callers_others_untouched() -> None:
    """An added Authorization goes out beside the caller's repeated X-Tag headers."""
    inner = Recording()
    transport = ResilientTransport(Pipeline(APIKeyAuth(KEY)), inner)
    with httpx.Client(transport=transport) as client:
        client.get("https://api.example.com/v1/x", headers=[("X-Tag", "a"), ("X-Tag", "b")])
    (wire,) = inner.requests
    assert wire.headers.get_list("x-tag") == ["a", "b"]
    assert wire.headers["authorization"] == f"Bearer {KEY}"
    assert [name for name, _ in wire.headers.raw][-1] == b"Authorization"


def test_a_header_a_policy_sets_outside_ascii_goes_out_as_latin1() -> None:
    """As on the requests path (http.client encodes Latin-1): the byte 0xE9 for 'é'."""
    inner = Recording()

    def tag(call: Call, next: Next) -> requests.Response:
        call.request.headers["X-Name"] = "café"
        return next(call)

    ResilientTransport(Pipeline(tag), inner).handle_request(
        httpx.Request("GET", "https://api.example.com/v1/x")
    )
    assert dict(inner.requests[0].headers.raw)[b"X-Name"] == b"caf\xe9"


def test_a_removed_header_does_not_go_out() -> None:
    """A policy that deletes one of the caller's headers: the wire request lacks it."""
    inner = Recording()

    def strip(call: Call, next: Next) -> requests.Response:
        del call.request.headers["X-Secret"]
        return next(call)

    ResilientTransport(Pipeline(strip), inner).handle_request(
        httpx.Request("GET", "https://api.example.com/v1/x", headers={"X-Secret": "s", "A": "1"})
    )
    assert [name for name, _ in inner.requests[0].headers.raw] == [b"Host", b"A"]


def test_response_headers_read_one_by_one_or_as_a_map_agree() -> None:
    """`header()` (undecoded lookups) and the map give the same values: last repeat, Latin-1."""
    seen: dict[str, object] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        headers = [(b"X-Rep", b"1"), (b"x-rep", b"2"), (b"X-Name", b"caf\xe9")]
        return httpx.Response(200, headers=headers)

    def read(call: Call, next: Next) -> requests.Response:
        response = next(call)
        seen["one by one"] = [header(response.headers, n) for n in ("x-rep", "x-name", "x-no")]
        seen["as a map"] = [response.headers.get(n) for n in ("X-Rep", "X-Name", "X-No")]
        seen["after"] = [header(response.headers, n) for n in ("x-rep", "x-name", "x-no")]
        return response

    ResilientTransport(Pipeline(read), httpx.MockTransport(answer)).handle_request(
        httpx.Request("GET", "https://api.example.com/v1/x")
    )
    expected = ["2", "caf\xe9", None]
    assert seen == {"one by one": expected, "as a map": expected, "after": expected}


def test_header_changes_before_and_after_a_read_reach_the_wire_once() -> None:
    """Set before the map is read, read, copied, set again: each copy sends its own."""
    inner = Recording()
    seen: dict[str, object] = {}

    def policy(call: Call, next: Next) -> requests.Response:
        headers = call.request.headers
        headers["X-Early"] = "1"  # kept aside: nothing decoded yet
        seen["early"] = header(headers, "x-early")
        seen["tag"] = headers.get("X-Tag")  # the first read as a map decodes the source's
        copied = copy_headers(headers)
        headers["X-Late"] = "2"
        seen["copy has late"] = "X-Late" in copied
        del headers["X-Tag"]
        return next(call)

    ResilientTransport(Pipeline(policy), inner).handle_request(
        httpx.Request("GET", "https://api.example.com/v1/x", headers={"X-Tag": "a"})
    )
    assert seen == {"early": "1", "tag": "a", "copy has late": False}
    assert [(n, v) for n, v in inner.requests[0].headers.raw if n != b"Host"] == [
        (b"X-Early", b"1"),
        (b"X-Late", b"2"),
    ]


def test_async_client_runs_concurrent_calls(server: FakeVinciServer) -> None:
    """Twenty concurrent calls in one event loop, each retried through the same policies."""
    clock = FakeClock()
    server.script(*[Fault.status(503)] * 5, path=BALANCE)

    async def main() -> list[int]:
        transport = AsyncResilientTransport(preset(server, clock))
        async with httpx.AsyncClient(transport=transport) as client:
            responses = await asyncio.gather(*(client.get(server.url(BALANCE)) for _ in range(20)))
        return [r.status_code for r in responses]

    assert asyncio.run(main()) == [200] * 20
    assert len(server.requests) == 25  # 20 calls, 5 of them retried once


def test_async_client_raises_with_a_bounded_error_body(server: FakeVinciServer) -> None:
    """An async 500 becomes a ServerError whose detail was read from the body."""
    server.script(*[Fault.status(500)] * 4, path=BALANCE)

    async def main() -> ServerError:
        transport = AsyncResilientTransport(preset(server, FakeClock()))
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(ServerError) as caught:
                await client.get(server.url(BALANCE))
        return caught.value

    error = asyncio.run(main())
    assert error.detail == "Internal Server Error"
    assert len(error.history) == 4


def test_one_pipeline_serves_requests_and_httpx_with_shared_state(
    server: FakeVinciServer,
) -> None:
    """The breaker opened by a requests session refuses the httpx clients' calls too."""
    clock = FakeClock()
    pipeline = Pipeline(
        StatusErrors(),
        CircuitBreaker(minimum_calls=3, failure_ratio=0.5, window=60.0, break_duration=30.0),
        APIKeyAuth(server.api_key),
        clock=clock,
    )
    server.script(*[Fault.status(500)] * 3, path=BALANCE)
    with requests.Session() as session:
        mount(session, server.base_url + "/", pipeline)
        for _ in range(3):
            with pytest.raises(ServerError):
                session.get(server.url(BALANCE))
    with (
        httpx.Client(transport=ResilientTransport(pipeline)) as client,
        pytest.raises(CircuitOpenError),
    ):
        client.get(server.url(BALANCE))

    async def main() -> None:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
            await client.get(server.url(BALANCE))

    with pytest.raises(CircuitOpenError):
        asyncio.run(main())
    assert len(server.requests) == 3  # the refusals sent nothing


def test_an_async_pipeline_refuses_a_sync_only_custom_policy() -> None:
    """A policy with only a synchronous send() cannot run async: said when it is built."""

    def tag(call: Call, next: Next) -> requests.Response:
        return next(call)

    with pytest.raises(ConfigurationError, match="'tag' has only a synchronous send"):
        AsyncResilientTransport(Pipeline(tag))


def test_an_async_function_policy_runs_in_async_pipelines_only(server: FakeVinciServer) -> None:
    """`async def (call, next)` works under AsyncClient; a sync pipeline refuses it."""
    seen: list[int] = []

    async def tag(call: Call, next: AsyncNext) -> requests.Response:
        call.request.headers["X-Tag"] = "async"
        response: requests.Response = await next(call)
        seen.append(response.status_code)
        return response

    pipeline = Pipeline(tag, APIKeyAuth(server.api_key))

    async def main() -> int:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
            return (await client.get(server.url(BALANCE))).status_code

    assert asyncio.run(main()) == 200
    assert seen == [200]
    assert server.requests[-1].headers["X-Tag"] == "async"
    with pytest.raises(ConfigurationError, match="'tag' is async"):
        ResilientTransport(pipeline)


def test_attempts_are_recorded_on_the_view_not_the_httpx_response(
    server: FakeVinciServer,
) -> None:
    """attempts_of() reads a requests response; for httpx the errors carry the history."""
    server.script(Fault.status(503), path=BALANCE)
    with httpx.Client(transport=ResilientTransport(preset(server, FakeClock()))) as client:
        response = client.get(server.url(BALANCE))
    assert isinstance(response, httpx.Response)
    assert attempts_of(response) == ()  # type: ignore[arg-type]


def test_async_attempts_are_spans_under_the_callers_span(server: FakeVinciServer) -> None:
    """Each async attempt is a CLIENT span, child of the task's current span, injected."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = Pipeline(
        StatusErrors(),
        Retry(initial_delay=0.01),
        APIKeyAuth(server.api_key),
        Tracing(tracer_provider=provider),
        clock=FakeClock(),
    )
    server.script(Fault.status(503), path=BALANCE)

    async def main() -> str:
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("generate videos") as parent:
            async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as c:
                await c.get(server.url(BALANCE))
            return format(parent.get_span_context().span_id, "016x")

    parent_id = asyncio.run(main())
    provider.shutdown()
    attempts = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 2
    assert all(s.parent is not None for s in attempts)
    assert all(format(s.parent.span_id, "016x") == parent_id for s in attempts if s.parent)
    sent = [r.headers["traceparent"].split("-")[2] for r in server.requests]
    assert sent == [format(s.context.span_id, "016x") for s in attempts]


def _failing_budget(clock: FakeClock, max_tokens: float) -> RetryBudget:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, max_tokens=max_tokens)
    for _ in range(30):
        budget._record(clock.monotonic(), failed=True)
    return budget


def test_one_budget_serves_sync_and_async_callers(server: FakeVinciServer) -> None:
    """A failing spell seen by a requests session rations the async client's retries too."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    pipeline = Pipeline(
        StatusErrors(),
        Retry(budget=budget, max_attempts=2, fail_fast_on_budget=True),
        APIKeyAuth(server.api_key),
        clock=clock,
    )
    server.outage(60.0)
    with requests.Session() as session:
        mount(session, server.base_url + "/", pipeline)
        for _ in range(10):  # the last calls are already refused their retry
            with pytest.raises((ServerError, RetryBudgetExhaustedError)):
                session.get(server.url(BALANCE))
    assert budget.failing  # twenty attempts, all failed: a sustained failure

    async def main() -> None:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
            await client.get(server.url(BALANCE))

    with pytest.raises(RetryBudgetExhaustedError):
        asyncio.run(main())


def test_a_cancelled_async_retry_gives_its_token_back() -> None:
    """Cancelling the task while its retry is on the wire returns the retry's token."""
    clock = FakeClock()
    budget = _failing_budget(clock, max_tokens=1.0)
    budget._refund(1.0)  # one token in the bucket
    hanging = asyncio.Event()
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) > 1:  # the retry: it hangs until cancelled
            hanging.set()
            await asyncio.sleep(3600)
        return httpx.Response(503, request=request)

    retry = Retry(budget=budget, jitter="none", initial_delay=0.1)
    pipeline = Pipeline(StatusErrors(), retry, clock=clock)
    transport = AsyncResilientTransport(pipeline, transport=httpx.MockTransport(handler))

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.create_task(client.get("http://api.example.com/x"))
            await asyncio.wait_for(hanging.wait(), timeout=30)
            assert budget.snapshot()["tokens"] == 0.0  # the retry took it
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert budget.snapshot()["tokens"] == 1.0


@pytest.mark.parametrize("factory", [ResilientTransport, AsyncResilientTransport])
def test_wrong_arguments_are_configuration_errors(factory: type) -> None:
    """A pipeline that is not one, or a transport of the wrong kind, fails when built."""
    with pytest.raises(ConfigurationError, match="pipeline must be a Pipeline"):
        factory(object())
    with pytest.raises(ConfigurationError, match="transport must be an httpx"):
        factory(Pipeline(), transport=object())


def test_redis_state_is_shared_by_sync_and_async_callers(
    server: FakeVinciServer, redis_url: str
) -> None:
    """Through Redis: sync callers open the breaker and spend the tokens; async ones see it."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        minimum_calls=3, failure_ratio=0.5, break_duration=30.0, redis_url=redis_url
    )
    limit = RateLimit(2, period=60.0, burst=2, max_wait=0.0, redis_url=redis_url, key="vinci")
    pipeline = Pipeline(StatusErrors(), breaker, limit, APIKeyAuth(server.api_key), clock=clock)

    async def one_call() -> int:
        async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
            return (await client.get(server.url(BALANCE))).status_code

    with requests.Session() as session:
        mount(session, server.base_url + "/", pipeline)
        assert session.get(server.url(BALANCE)).status_code == 200  # token 1 of 2
    assert asyncio.run(one_call()) == 200  # token 2, taken through redis.asyncio
    with pytest.raises(RateLimitError):  # none left for anyone: refused locally
        asyncio.run(one_call())
    assert len(server.requests) == 2
    key = next(iter(breaker.snapshot()))
    assert breaker._cells.get(key).async_storage is not None  # the async face was used

"""The chaos policies: off unless enabled, reproducible on a fake clock, seen as real attempts."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from requests_resilience import (
    APIConnectionError,
    APIKeyAuth,
    APIReadTimeoutError,
    APITimeoutError,
    Call,
    ChaosBehaviour,
    ChaosFault,
    ChaosLatency,
    ChaosOutcome,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Fallback,
    Pipeline,
    Retry,
    RetryBudget,
    RetryBudgetExhaustedError,
    ServerError,
    StatusErrors,
    Tracing,
    _telemetry,
    attempts_of,
    fallback_of,
    make_response,
    service_unavailable,
)
from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import build_pipeline
from tests.helpers import ScriptedTransport, points, prepared, response, run
from tests.three_transports import KINDS, Transport


def ok() -> ScriptedTransport:
    return ScriptedTransport(response(200, {"balance_usd": 25.5}))


def first_attempt(call: Call) -> bool:
    """An `enabled` switch: chaos on the first attempt of each call only."""
    return call.attempt == 1


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_the_rate_must_be_a_share(rate: Any) -> None:
    """injection_rate is a number from 0 to 1; the message names the policy and option."""
    with pytest.raises(ConfigurationError, match="ChaosFault injection_rate must be a number"):
        ChaosFault(injection_rate=rate)


def test_each_policy_checks_its_own_options() -> None:
    """enabled, fault, latency, outcome, behaviour and name are checked when built."""
    with pytest.raises(ConfigurationError, match="enabled must be True, False or a function"):
        ChaosFault(injection_rate=0.1, enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fresh exception for each injection"):
        ChaosFault(injection_rate=0.1, fault=APIConnectionError("x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="latency must be a number of seconds"):
        ChaosLatency(latency=-1.0, injection_rate=0.1)
    with pytest.raises(ConfigurationError, match="outcome must be a function"):
        ChaosOutcome(injection_rate=0.1, outcome=503)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="behaviour must be a function"):
        ChaosBehaviour(behaviour=None, injection_rate=0.1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="name must be a non-empty string"):
        ChaosOutcome(injection_rate=0.1, name="")


def test_reprs_show_the_rate_the_switch_and_what_is_injected() -> None:
    """Pipeline.describe() shows each chaos policy's settings."""
    assert repr(ChaosFault(injection_rate=0.25, enabled=first_attempt)) == (
        "ChaosFault(injection_rate=0.25, enabled=first_attempt, fault=connection_failure)"
    )
    assert repr(ChaosLatency(latency=2, injection_rate=1)) == (
        "ChaosLatency(latency=2, injection_rate=1, enabled=False)"
    )
    assert Pipeline(
        ChaosOutcome(injection_rate=0.5), ChaosBehaviour(behaviour=print, injection_rate=0.5)
    ).names == ("chaos_outcome", "chaos_behaviour")


def test_copies_share_the_policy_and_pickles_keep_the_options() -> None:
    """Immutable: a deep copy is the policy itself; a pickle has the same options."""
    policy = ChaosLatency(latency=1.5, injection_rate=0.5, enabled=True)
    assert copy.deepcopy(policy) is policy
    assert pickle.loads(pickle.dumps(policy)) == policy


# -- the switch and the draw --------------------------------------------------------------


def test_chaos_is_off_unless_enabled_and_then_draws_nothing() -> None:
    """A rate of 1 injects nothing while disabled, and leaves the clock's sequence alone."""
    clock, untouched = FakeClock(seed=7), FakeClock(seed=7)
    transport = ok()
    pipeline = Pipeline(
        ChaosFault(injection_rate=1.0), ChaosOutcome(injection_rate=1.0), clock=clock
    )
    for _ in range(10):
        assert run(pipeline, transport).status_code == 200
    assert len(transport.calls) == 10
    assert clock.random() == untouched.random()


def test_the_switch_is_asked_on_each_attempt() -> None:
    """enabled=function: it gets the attempt's call, and only its True attempts are touched."""
    asked: list[int] = []

    def switch(call: Call) -> bool:
        asked.append(call.attempt)
        return call.attempt == 1

    transport = ok()
    pipeline = Pipeline(Retry(), ChaosFault(injection_rate=1.0, enabled=switch), clock=FakeClock())
    assert run(pipeline, transport).status_code == 200
    assert asked == [1, 2]
    assert len(transport.calls) == 1


def test_the_rate_is_the_share_of_attempts_and_a_seed_repeats_them() -> None:
    """On a seeded FakeClock, the same attempts are hit every run, about rate x N of them."""

    def hits(seed: int) -> list[int]:
        policy = ChaosFault(injection_rate=0.3, enabled=True)
        pipeline = Pipeline(policy, clock=FakeClock(seed=seed))
        hit = []
        for index in range(200):
            try:
                run(pipeline, ok())
            except APIConnectionError:
                hit.append(index)
        return hit

    first = hits(seed=1)
    assert hits(seed=1) == first
    assert hits(seed=2) != first
    assert 40 <= len(first) <= 80


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 20)])
def test_the_ends_of_the_range_are_never_and_always(rate: float, expected: int) -> None:
    """A rate of 0 never injects, 1 always does."""
    pipeline = Pipeline(ChaosOutcome(injection_rate=rate, enabled=True), clock=FakeClock())
    statuses = [run(pipeline, ok()).status_code for _ in range(20)]
    assert statuses.count(503) == expected


# -- the four strategies --------------------------------------------------------------------


def test_a_fault_is_a_connection_failure_before_sending() -> None:
    """The default fault: APIConnectionError, request_sent False, naming method and URL."""
    transport = ok()
    pipeline = Pipeline(ChaosFault(injection_rate=1.0, enabled=True), clock=FakeClock())
    with pytest.raises(APIConnectionError) as caught:
        run(pipeline, transport, request=prepared("POST", "https://api.example.com/v1/jobs?a=1"))
    assert caught.value.request_sent is False
    assert str(caught.value) == (
        "chaos: injected connection failure for POST https://api.example.com/v1/jobs "
        "(nothing was sent)"
    )
    assert transport.calls == []


def test_a_fault_function_builds_each_exception() -> None:
    """fault=(call) -> exception: a fresh one per injection."""
    made: list[BaseException] = []

    def read_timeout(call: Call) -> BaseException:
        made.append(APIReadTimeoutError("chaos: read timeout", request=call.request))
        return made[-1]

    pipeline = Pipeline(ChaosFault(injection_rate=1.0, enabled=True, fault=read_timeout))
    for _ in range(2):
        with pytest.raises(APIReadTimeoutError) as caught:
            run(pipeline, ok())
        assert caught.value is made[-1]
    assert made[0] is not made[1]


def test_a_fault_function_must_return_an_exception() -> None:
    """Returning something else is a TypeError that says so."""
    policy = ChaosFault(injection_rate=1.0, enabled=True, fault=lambda call: "boom")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not an exception"):
        run(Pipeline(policy), ok())


def test_latency_waits_on_the_clock_then_sends() -> None:
    """The wait is the clock's (a FakeClock records it); the attempt is then sent."""
    clock = FakeClock()
    transport = ok()
    pipeline = Pipeline(ChaosLatency(latency=2.5, injection_rate=1.0, enabled=True), clock=clock)
    assert run(pipeline, transport).status_code == 200
    assert clock.sleeps == [2.5]
    assert len(transport.calls) == 1


def test_latency_past_the_deadline_waits_until_it_and_times_out_unsent() -> None:
    """Retry(timeout=5) and 10 s of latency: 5 s waited, APITimeoutError, nothing sent."""
    clock = FakeClock()
    transport = ok()
    pipeline = Pipeline(
        StatusErrors(),
        Retry(timeout=5.0),
        ChaosLatency(latency=10.0, injection_rate=1.0, enabled=True),
        clock=clock,
    )
    with pytest.raises(APITimeoutError) as caught:
        run(pipeline, transport)
    assert caught.value.request_sent is False
    assert "passed the call's deadline" in str(caught.value)
    assert clock.sleeps == [5.0]
    assert transport.calls == []
    assert caught.value.history[-1].reason == "deadline would pass during the wait"


def test_an_outcome_replaces_the_attempt() -> None:
    """The default outcome is a 503 with Retry-After: 1 and a JSON detail; nothing is sent."""
    transport = ok()
    pipeline = Pipeline(ChaosOutcome(injection_rate=1.0, enabled=True), clock=FakeClock())
    got = run(pipeline, transport)
    assert got.status_code == 503
    assert got.headers["Retry-After"] == "1"
    assert got.json() == {"detail": "chaos: injected 503"}
    assert transport.calls == []


def test_an_outcome_function_must_return_a_response() -> None:
    """Returning something that is not a response is a TypeError that says so."""
    policy = ChaosOutcome(injection_rate=1.0, enabled=True, outcome=lambda call: 503)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not a Response"):
        run(Pipeline(policy), ok())


def test_a_behaviour_runs_then_the_attempt_is_sent() -> None:
    """The function sees the call; the attempt then goes out as usual."""
    seen: list[str | None] = []
    transport = ok()
    policy = ChaosBehaviour(
        behaviour=lambda call: seen.append(call.request.url), injection_rate=1.0, enabled=True
    )
    assert run(Pipeline(policy), transport).status_code == 200
    assert seen == ["https://api.example.com/v1/things"]
    assert len(transport.calls) == 1


# -- async ------------------------------------------------------------------------------


def run_async(pipeline: Pipeline, transport: ScriptedTransport) -> requests.Response:
    async def terminal(call: Call) -> requests.Response:
        return transport(call)

    async def main() -> requests.Response:
        call = Call(request=prepared(), clock=pipeline.clock, redactor=pipeline.redactor)
        return await pipeline.wrap_async(terminal)(call)

    return asyncio.run(main())


def test_async_latency_awaits_the_clock() -> None:
    """In an async pipeline the latency is the clock's asleep (recorded the same way)."""
    clock = FakeClock()
    pipeline = Pipeline(ChaosLatency(latency=0.75, injection_rate=1.0, enabled=True), clock=clock)
    assert run_async(pipeline, ok()).status_code == 200
    assert clock.sleeps == [0.75]


def test_async_fault_and_outcome() -> None:
    """The fault raises and the outcome answers in async pipelines too."""
    clock = FakeClock()
    with pytest.raises(APIConnectionError):
        run_async(Pipeline(ChaosFault(injection_rate=1.0, enabled=True), clock=clock), ok())
    outcome = Pipeline(ChaosOutcome(injection_rate=1.0, enabled=True), clock=clock)
    assert run_async(outcome, ok()).status_code == 503


def test_an_async_behaviour_is_awaited_in_async_pipelines_only() -> None:
    """``async def`` behaviour: awaited by asend; a TypeError in a requests session."""
    seen: list[int] = []

    async def behaviour(call: Call) -> None:
        await asyncio.sleep(0)
        seen.append(call.attempt)

    policy = ChaosBehaviour(behaviour=behaviour, injection_rate=1.0, enabled=True)
    assert run_async(Pipeline(policy), ok()).status_code == 200
    assert seen == [1]
    with pytest.raises(TypeError, match="async pipelines only"):
        run(Pipeline(policy), ok())


# -- with retry, budget, breaker and fallback ---------------------------------------------


def test_a_fault_is_retried_like_a_refused_connection() -> None:
    """An injected fault on the first attempt of a POST: sent again (it was never sent)."""
    transport = ok()
    pipeline = Pipeline(
        StatusErrors(),
        Retry(initial_delay=1.0),
        ChaosFault(injection_rate=1.0, enabled=first_attempt),
        clock=FakeClock(random_value=0.5),
    )
    got = run(pipeline, transport, request=prepared("POST", json={"prompt": "a fox"}))
    assert got.status_code == 200
    assert [a.outcome for a in attempts_of(got)] == ["APIConnectionError", "200"]
    assert len(transport.calls) == 1


def test_an_outcome_is_retried_after_its_retry_after() -> None:
    """An injected 503 with Retry-After: 1: the retry waits exactly 1 s, then sends."""
    clock = FakeClock()
    transport = ok()
    pipeline = Pipeline(
        StatusErrors(),
        Retry(),
        ChaosOutcome(injection_rate=1.0, enabled=first_attempt),
        clock=clock,
    )
    assert run(pipeline, transport).status_code == 200
    assert clock.sleeps == [1.0]
    assert len(transport.calls) == 1


def test_an_outcome_every_time_ends_in_the_typed_error() -> None:
    """Injected on every attempt: the retries are spent and StatusErrors raises ServerError."""
    pipeline = Pipeline(
        StatusErrors(),
        Retry(max_attempts=3),
        ChaosOutcome(injection_rate=1.0, enabled=True),
        clock=FakeClock(),
    )
    with pytest.raises(ServerError) as caught:
        run(pipeline, ok())
    assert caught.value.detail == "chaos: injected 503"
    assert caught.value.attempts == 3


@pytest.mark.parametrize(
    "chaos",
    [
        ChaosFault(injection_rate=1.0, enabled=True),
        ChaosOutcome(injection_rate=1.0, enabled=True),
    ],
    ids=["fault", "outcome"],
)
def test_injected_failures_open_the_breaker(chaos: ChaosFault | ChaosOutcome) -> None:
    """Inside the breaker, injected faults and 5xx count as failures: it opens."""
    transport = ok()
    breaker = CircuitBreaker(minimum_calls=3, failure_ratio=0.5, break_duration=30.0)
    pipeline = Pipeline(StatusErrors(), breaker, chaos, clock=FakeClock())
    for _ in range(3):
        with pytest.raises((APIConnectionError, ServerError)):
            run(pipeline, transport)
    with pytest.raises(CircuitOpenError):
        run(pipeline, transport)
    assert transport.calls == []


def test_injected_faults_count_against_the_retry_budget() -> None:
    """A run of injected connection failures puts the shared budget in a failing spell,
    and it then refuses the retries: RetryBudgetExhaustedError, as for a real outage."""
    budget = RetryBudget()
    pipeline = Pipeline(
        StatusErrors(),
        Retry(max_attempts=2, initial_delay=0.01, budget=budget),
        ChaosFault(injection_rate=1.0, enabled=True),
        clock=FakeClock(),
    )
    ended: list[str] = []
    for _ in range(10):
        with pytest.raises((APIConnectionError, RetryBudgetExhaustedError)) as caught:
            run(pipeline, ok())
        ended.append(type(caught.value).__name__)
    assert budget.failing
    assert ended[0] == "APIConnectionError"
    assert ended[-1] == "RetryBudgetExhaustedError"


def test_a_fallback_answers_what_the_chaos_broke() -> None:
    """Fallback outermost, chaos innermost: the caller's fallback path, tested on demand."""
    transport = ok()
    pipeline = Pipeline(
        Fallback(on=ServerError, response=lambda call, outcome: make_response(call, json={})),
        StatusErrors(),
        Retry(max_attempts=2),
        ChaosOutcome(injection_rate=1.0, enabled=True),
        clock=FakeClock(),
    )
    details = fallback_of(run(pipeline, transport))
    assert details is not None
    assert details.status_code == 503
    assert transport.calls == []


# -- telemetry --------------------------------------------------------------------------


def test_each_injection_is_logged_as_a_warning(logs: list[MutableMapping[str, Any]]) -> None:
    """chaos_injected: policy, kind, method, URL without query, attempt, and what was injected."""
    pipeline = Pipeline(
        Retry(),
        ChaosLatency(latency=0.5, injection_rate=1.0, enabled=first_attempt),
        ChaosOutcome(injection_rate=1.0, enabled=first_attempt),
        clock=FakeClock(),
    )
    run(pipeline, ok(), request=prepared(url="https://api.example.com/v1/x?key=secret"))
    events = [e for e in logs if e["event"] == "chaos_injected"]
    assert [(e["policy"], e["kind"], e["attempt"]) for e in events] == [
        ("chaos_latency", "latency", 1),
        ("chaos_outcome", "outcome", 1),
    ]
    assert all(e["log_level"] == "warning" for e in events)
    assert events[0]["latency"] == 0.5
    assert events[1]["status_code"] == 503
    assert {e["url"] for e in events} == {"https://api.example.com/v1/x"}


def test_the_attempt_span_says_what_was_injected() -> None:
    """Innermost, after Tracing: the attempt's CLIENT span has the injected attribute and event."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = Pipeline(
        StatusErrors(),
        Retry(),
        Tracing(tracer_provider=provider),
        ChaosFault(injection_rate=1.0, enabled=first_attempt),
        clock=FakeClock(),
    )
    run(pipeline, ok())
    provider.shutdown()
    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [(s.attributes or {}).get("requests_resilience.chaos.injected") for s in spans] == [
        "fault",
        None,
    ]
    events = [e for e in spans[0].events if e.name == "requests_resilience.chaos"]
    assert len(events) == 1
    assert (events[0].attributes or {})["requests_resilience.chaos.error"] == "APIConnectionError"


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The meter provider, swapped for an isolated one with an in-memory reader."""
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    monkeypatch.setattr(_telemetry, "_meter_provider", lambda: provider)
    yield metric_reader
    provider.shutdown()


def test_each_injection_is_counted(reader: InMemoryMetricReader) -> None:
    """requests_resilience.chaos.injections: by policy and kind; nothing while disabled."""
    clock = FakeClock()
    run(Pipeline(ChaosOutcome(injection_rate=1.0), clock=clock), ok())
    pipeline = Pipeline(ChaosOutcome(injection_rate=1.0, enabled=True), clock=clock)
    for _ in range(3):
        run(pipeline, ok())
    (point,) = points(reader, "requests_resilience.chaos.injections")
    assert point.value == 3
    assert dict(point.attributes or {}) == {
        "requests_resilience.chaos.policy": "chaos_outcome",
        "requests_resilience.chaos.kind": "outcome",
    }


# -- on the three transports, against the fake server -----------------------------------


@pytest.fixture(params=KINDS)
def transport(request: pytest.FixtureRequest) -> Transport:
    return Transport(str(request.param))


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


BALANCE = "/billing/balance"
GENERATE = "/generate/text-to-video"


def vinci_pipeline(server: FakeVinciServer, clock: FakeClock, *chaos: Any) -> Pipeline:
    return Pipeline(
        StatusErrors(),
        Retry(initial_delay=1.0),
        APIKeyAuth(server.api_key),
        Tracing(),
        *chaos,
        clock=clock,
    )


def test_an_injected_fault_is_retried_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """A paid POST whose first attempt is faulted is sent once, by the retry."""
    clock = FakeClock(random_value=0.5)
    chaos = ChaosFault(injection_rate=1.0, enabled=first_attempt)
    got = transport.send(
        vinci_pipeline(server, clock, chaos),
        "POST",
        server.url(GENERATE),
        json={"prompt": "a fox"},
    )
    assert got.status_code == 200
    assert len(server.requests) == 1
    assert server.jobs_created == 1
    assert clock.sleeps == [0.5]


def test_an_injected_outcome_is_retried_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """The injected 503's Retry-After is honoured; the server sees one request."""
    clock = FakeClock()
    chaos = ChaosOutcome(injection_rate=1.0, enabled=first_attempt)
    got = transport.send(vinci_pipeline(server, clock, chaos), "GET", server.url(BALANCE))
    assert got.json()["balance_usd"] == server.balance_usd
    assert clock.sleeps == [1.0]
    assert len(server.requests) == 1


def test_an_injected_outcome_reaches_the_caller_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """A policy-made 429 goes up as a response the client can read, on httpx too."""

    def throttled(call: Call) -> requests.Response:
        return make_response(call, 418, content=b"chaos teapot", headers={"X-Chaos": "1"})

    chaos = ChaosOutcome(injection_rate=1.0, enabled=True, outcome=throttled)
    got = transport.send(Pipeline(chaos, clock=FakeClock()), "GET", server.url(BALANCE))
    assert got.status_code == 418
    assert got.content == b"chaos teapot"
    assert got.headers["X-Chaos"] == "1"
    assert server.requests == []


def test_injected_failures_open_the_breaker_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """Injected 503s on every attempt open the breaker; the server never sees a request."""
    breaker = CircuitBreaker(minimum_calls=3, failure_ratio=0.5, break_duration=30.0)
    pipeline = Pipeline(
        StatusErrors(),
        breaker,
        APIKeyAuth(server.api_key),
        ChaosOutcome(injection_rate=1.0, enabled=True),
        clock=FakeClock(),
    )
    for _ in range(3):
        with pytest.raises(ServerError):
            transport.send(pipeline, "GET", server.url(BALANCE))
    with pytest.raises(CircuitOpenError):
        transport.send(pipeline, "GET", server.url(BALANCE))
    assert server.requests == []


def test_latency_and_behaviour_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """Latency waits on the pipeline's clock, behaviour runs, then the request goes out."""
    clock = FakeClock()
    ran: list[int] = []
    chaos: list[Callable[..., Any] | Any] = [
        ChaosLatency(latency=3.0, injection_rate=1.0, enabled=True),
        ChaosBehaviour(
            behaviour=lambda call: ran.append(call.attempt), injection_rate=1.0, enabled=True
        ),
    ]
    got = transport.send(vinci_pipeline(server, clock, *chaos), "GET", server.url(BALANCE))
    assert got.status_code == 200
    assert clock.sleeps == [3.0]
    assert ran == [1]
    assert len(server.requests) == 1


def test_the_default_outcome_is_a_plain_response() -> None:
    """service_unavailable builds a response bound to the call, its body in memory."""
    call = Call(request=prepared())
    got = service_unavailable(call)
    assert got.request is call.request
    assert got.url == call.request.url
    assert next(got.iter_content(4)) == b'{"de'


def test_the_vinci_preset_puts_fallback_first_and_chaos_last() -> None:
    """build_pipeline(fallback=, chaos=): outermost and innermost; none of them by default."""
    default = build_pipeline(api_key="sk-test-123456789")
    assert default.names == (
        "status_errors",
        "retry",
        "circuit_breaker",
        "rate_limit",
        "auth",
        "tracing",
    )
    pipeline = build_pipeline(
        api_key="sk-test-123456789",
        fallback=Fallback(on=CircuitOpenError, response=lambda call, outcome: make_response(call)),
        chaos=[ChaosFault(injection_rate=0.1), ChaosLatency(latency=1.0, injection_rate=0.1)],
    )
    assert pipeline.names == ("fallback", *default.names, "chaos_fault", "chaos_latency")

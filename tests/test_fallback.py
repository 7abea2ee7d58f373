"""The Fallback policy: what it answers, how it marks it, its place around retry and breaker."""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from requests_resilience import (
    APIConnectionError,
    APIKeyAuth,
    Call,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    Fallback,
    NotFoundError,
    Pipeline,
    RateLimit,
    RateLimitError,
    Retry,
    RetryBudget,
    RetryBudgetExhaustedError,
    ServerError,
    StatusErrors,
    _telemetry,
    attempts_of,
    fallback_of,
    is_fallback,
    make_response,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from tests.helpers import ScriptedTransport, points, prepared, response, run
from tests.three_transports import KINDS, Transport

LAST_GOOD = {"balance_usd": 25.5, "total_spent_usd": 134.75}


def last_good_balance(call: Call, outcome: requests.Response | BaseException) -> requests.Response:
    """The fallback function of these tests: the last good balance."""
    return make_response(call, json=LAST_GOOD)


def fallback(*on: Any) -> Fallback:
    return Fallback(on=on, response=last_good_balance)


def refused(breaker: str = "api.example.com") -> CircuitOpenError:
    return CircuitOpenError("circuit open", breaker=breaker, retry_after=30.0)


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on", "needle"),
    [
        ((), "at least one"),
        (KeyboardInterrupt, "not an Exception subclass"),
        (302, "from 400 to 599"),
        (True, "exception type, a status code"),
        ("503", "exception type, a status code"),
        ((ServerError, 600), "from 400 to 599"),
    ],
)
def test_a_bad_on_is_refused_when_built(on: Any, needle: str) -> None:
    """`on` must name exception types, statuses 400-599 or predicates; the message says so."""
    with pytest.raises(ConfigurationError, match=needle):
        Fallback(on=on, response=last_good_balance)


def test_the_response_function_and_the_name_are_checked() -> None:
    """A response that is not a function, or an empty name, fails at construction."""
    with pytest.raises(ConfigurationError, match="response must be a function"):
        Fallback(on=ServerError, response=make_response(Call(request=prepared())))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="name must be a non-empty string"):
        Fallback(on=ServerError, response=last_good_balance, name="")


def test_repr_names_the_triggers_and_the_function() -> None:
    """The description shows what is answered and by what, in the order given by kind."""
    policy = Fallback(on=(503, CircuitOpenError, callable), response=last_good_balance)
    assert repr(policy) == (
        "Fallback(on=(CircuitOpenError, 503, callable), response=last_good_balance, "
        "name='fallback')"
    )


def test_copies_share_the_immutable_policy_and_pickle_rebuilds_it() -> None:
    """A deep copy is the policy itself; a pickled one answers the same outcomes."""
    listed = Fallback(on=[ServerError, 503], response=last_good_balance)  # type: ignore[arg-type]
    assert listed.on == (ServerError, 503)  # a list is kept as a tuple
    policy = fallback(ServerError, 503)
    assert copy.deepcopy(policy) is policy
    clone = pickle.loads(pickle.dumps(policy))
    assert clone.matches(ServerError("x", status_code=500))
    assert clone.matches(response(503))


# -- what it answers --------------------------------------------------------------------


def test_a_matching_exception_is_answered_and_marked() -> None:
    """An open breaker's refusal becomes the fallback response, with the refusal as evidence."""
    error = refused()
    got = run(Pipeline(fallback(CircuitOpenError)), ScriptedTransport(error))
    assert got.json() == LAST_GOOD
    assert is_fallback(got)
    details = fallback_of(got)
    assert details is not None
    assert details.policy == "fallback"
    assert details.outcome is error
    assert details.reason == "CircuitOpenError"
    assert details.status_code is None


def test_other_outcomes_pass_through_unmarked() -> None:
    """A success, another exception type and another status are left as they are."""
    policy = fallback(CircuitOpenError, 503)
    ok = run(Pipeline(policy), ScriptedTransport(response(200, {"balance_usd": 1.0})))
    assert not is_fallback(ok)
    assert fallback_of(ok) is None
    missing = run(Pipeline(policy), ScriptedTransport(response(404)))
    assert missing.status_code == 404
    with pytest.raises(APIConnectionError):
        run(Pipeline(policy), ScriptedTransport(APIConnectionError("refused")))


def test_a_status_matches_a_raw_response_and_its_body_is_kept_as_evidence() -> None:
    """Without StatusErrors inside, a 503 response is answered; its body was read first."""
    failed = response(503, {"detail": "maintenance"})
    got = run(Pipeline(fallback(503)), ScriptedTransport(failed))
    details = fallback_of(got)
    assert details is not None
    assert details.outcome is failed
    assert details.reason == "503"
    assert details.status_code == 503
    assert failed.json() == {"detail": "maintenance"}  # read before it was closed


def test_a_status_matches_the_typed_error_of_an_inner_status_errors() -> None:
    """Outside StatusErrors, ``on=503`` answers the ServerError it raises for a 503."""
    pipeline = Pipeline(fallback(503), StatusErrors())
    got = run(pipeline, ScriptedTransport(response(503)))
    details = fallback_of(got)
    assert details is not None
    assert isinstance(details.outcome, ServerError)
    assert details.status_code == 503
    with pytest.raises(NotFoundError):
        run(pipeline, ScriptedTransport(response(404)))


def test_a_local_refusal_is_not_a_server_status() -> None:
    """``on=429`` does not answer the rate limit's own refusal; ``on=RateLimitError`` does."""
    clock = FakeClock()
    limit = RateLimit(1, period=60.0, burst=1, max_wait=0.0, key="k")
    transport = ScriptedTransport(response(200))
    by_status = Pipeline(fallback(429), StatusErrors(), limit, clock=clock)
    run(by_status, transport)
    with pytest.raises(RateLimitError) as caught:
        run(by_status, transport)
    assert caught.value.response is None
    by_type = Pipeline(fallback(RateLimitError), StatusErrors(), limit, clock=clock)
    assert is_fallback(run(by_type, transport))
    assert len(transport.calls) == 1


def test_a_predicate_decides_on_any_outcome() -> None:
    """A function (outcome) -> bool answers what types and statuses cannot say."""

    def maintenance(outcome: requests.Response | BaseException) -> bool:
        return isinstance(outcome, requests.Response) and b"maintenance" in outcome.content

    policy = Fallback(on=maintenance, response=last_good_balance)
    assert is_fallback(run(Pipeline(policy), ScriptedTransport(response(502, "maintenance"))))
    assert not is_fallback(run(Pipeline(policy), ScriptedTransport(response(502, "boom"))))


def test_the_function_gets_the_call_and_the_outcome() -> None:
    """The fallback function sees the request and what failed, to choose its answer."""
    seen: list[tuple[str | None, str]] = []

    def answer(call: Call, outcome: requests.Response | BaseException) -> requests.Response:
        seen.append((call.request.url, type(outcome).__name__))
        return make_response(call, 200, content=b"stale", headers={"Cache-Control": "no-store"})

    got = run(
        Pipeline(Fallback(on=ServerError, response=answer), StatusErrors()),
        ScriptedTransport(response(500)),
    )
    assert seen == [("https://api.example.com/v1/things", "ServerError")]
    assert got.content == b"stale"
    assert got.headers["Cache-Control"] == "no-store"
    assert got.request is not None
    assert got.request.url == "https://api.example.com/v1/things"


def test_a_function_that_returns_no_response_is_a_type_error() -> None:
    """Returning a dict (a value, not a response) says what to return instead."""
    policy = Fallback(on=ServerError, response=lambda call, outcome: LAST_GOOD)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"not a requests\.Response"):
        run(Pipeline(policy, StatusErrors()), ScriptedTransport(response(500)))


def test_an_error_in_the_function_reaches_the_caller_with_the_outcome_as_context() -> None:
    """A fallback that fails itself hides nothing: the original is its __context__."""

    def broken(call: Call, outcome: requests.Response | BaseException) -> requests.Response:
        raise LookupError("no cached balance")

    policy = Fallback(on=ServerError, response=broken)
    with pytest.raises(LookupError) as caught:
        run(Pipeline(policy, StatusErrors()), ScriptedTransport(response(500)))
    assert isinstance(caught.value.__context__, ServerError)


def test_keyboard_interrupt_is_never_answered() -> None:
    """Only Exception subclasses are matched, whatever the predicates say."""
    policy = Fallback(on=lambda outcome: True, response=last_good_balance)
    with pytest.raises(KeyboardInterrupt):
        run(Pipeline(policy), ScriptedTransport(KeyboardInterrupt()))


# -- async ------------------------------------------------------------------------------


def run_async(
    pipeline: Pipeline, *outcomes: requests.Response | BaseException
) -> requests.Response:
    transport = ScriptedTransport(*outcomes)

    async def terminal(call: Call) -> requests.Response:
        return transport(call)

    async def main() -> requests.Response:
        call = Call(request=prepared(), clock=pipeline.clock, redactor=pipeline.redactor)
        return await pipeline.wrap_async(terminal)(call)

    return asyncio.run(main())


def test_async_pipelines_await_an_async_function() -> None:
    """In an async pipeline the fallback function may be ``async def``."""

    async def answer(call: Call, outcome: requests.Response | BaseException) -> requests.Response:
        await asyncio.sleep(0)
        return make_response(call, json=LAST_GOOD)

    policy = Fallback(on=CircuitOpenError, response=answer)
    got = run_async(Pipeline(policy, StatusErrors()), refused())
    assert got.json() == LAST_GOOD
    assert is_fallback(got)
    failed = run_async(Pipeline(fallback(503)), response(503, "down"))
    assert fallback_of(failed) is not None


def test_an_async_function_in_a_sync_pipeline_is_a_type_error() -> None:
    """A coroutine cannot be awaited in a requests session: say so, and do not leak it."""

    async def answer(call: Call, outcome: requests.Response | BaseException) -> requests.Response:
        return make_response(call)

    policy = Fallback(on=CircuitOpenError, response=answer)
    with pytest.raises(TypeError, match="async pipelines only"):
        run(Pipeline(policy), ScriptedTransport(refused()))


# -- with retry, budget and breaker -----------------------------------------------------


def test_after_the_retries_are_spent_the_fallback_answers_with_their_history() -> None:
    """Three 503s: three attempts, then the fallback; attempts_of still tells the story."""
    clock = FakeClock(random_value=0.5)
    transport = ScriptedTransport(response(503))
    pipeline = Pipeline(
        fallback(ServerError),
        StatusErrors(),
        Retry(max_attempts=3, initial_delay=1.0),
        clock=clock,
    )
    got = run(pipeline, transport)
    assert len(transport.calls) == 3
    assert clock.sleeps == [0.5, 1.0]
    assert [a.outcome for a in attempts_of(got)] == ["503", "503", "503"]
    assert attempts_of(got)[-1].reason == "attempts exhausted"


def test_a_retry_that_succeeds_leaves_nothing_to_answer() -> None:
    """503 then 200: the fallback is not used (it sits outside the retry)."""
    transport = ScriptedTransport(response(503), response(200, {"balance_usd": 3.0}))
    pipeline = Pipeline(fallback(ServerError), StatusErrors(), Retry(), clock=FakeClock())
    got = run(pipeline, transport)
    assert not is_fallback(got)
    assert got.json() == {"balance_usd": 3.0}


def test_an_open_breaker_is_answered_without_sending() -> None:
    """Once the breaker opens, each call gets the fallback and the server gets nothing."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=3, failure_ratio=0.5, break_duration=30.0)
    transport = ScriptedTransport(response(500))
    pipeline = Pipeline(fallback(CircuitOpenError), StatusErrors(), breaker, clock=clock)
    for _ in range(3):
        with pytest.raises(ServerError):
            run(pipeline, transport)
    for _ in range(5):
        details = fallback_of(run(pipeline, transport))
        assert details is not None
        assert details.reason == "CircuitOpenError"
    assert len(transport.calls) == 3


def test_an_empty_budget_is_answered() -> None:
    """A budget that refuses the retry ends the call in RetryBudgetExhaustedError: answered."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    for _ in range(30):
        budget._record(clock.monotonic(), failed=True)
    retry = Retry(budget=budget, fail_fast_on_budget=True)
    transport = ScriptedTransport(response(503))
    pipeline = Pipeline(fallback(RetryBudgetExhaustedError), StatusErrors(), retry, clock=clock)
    details = fallback_of(run(pipeline, transport))
    assert details is not None
    assert isinstance(details.outcome, RetryBudgetExhaustedError)
    assert len(transport.calls) == 1


# -- telemetry --------------------------------------------------------------------------


def test_a_fallback_is_logged_as_a_warning_without_secrets(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """fallback_used: the policy, the outcome it replaced, method and URL (no query, no key)."""
    key = "sk-test-abcdef123456"
    pipeline = Pipeline(fallback(ServerError), StatusErrors(), APIKeyAuth(key))
    request = prepared(url=f"https://api.example.com/v1/balance?key={key}")
    run(pipeline, ScriptedTransport(response(503)), request=request)
    (event,) = [e for e in logs if e["event"] == "fallback_used"]
    assert event["log_level"] == "warning"
    assert event["policy"] == "fallback"
    assert event["outcome"] == "ServerError"
    assert event["method"] == "GET"
    assert event["url"] == "https://api.example.com/v1/balance"
    assert key not in repr(logs)


def test_a_fallback_adds_an_event_to_the_current_span() -> None:
    """Under an operation span, the fallback is an event on it, with what it replaced."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("operation"):
        run(Pipeline(fallback(CircuitOpenError)), ScriptedTransport(refused()))
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "requests_resilience.fallback"
    assert dict(event.attributes or {}) == {
        "requests_resilience.fallback.policy": "fallback",
        "requests_resilience.fallback.outcome": "CircuitOpenError",
    }


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The meter provider, swapped for an isolated one with an in-memory reader."""
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    monkeypatch.setattr(_telemetry, "_meter_provider", lambda: provider)
    yield metric_reader
    provider.shutdown()


def test_a_fallback_is_counted(reader: InMemoryMetricReader) -> None:
    """requests_resilience.fallbacks: one per answer, by policy and replaced outcome."""
    pipeline = Pipeline(fallback(CircuitOpenError))
    for _ in range(2):
        run(pipeline, ScriptedTransport(refused()))
    (point,) = points(reader, "requests_resilience.fallbacks")
    assert point.value == 2
    assert dict(point.attributes or {}) == {
        "requests_resilience.fallback.policy": "fallback",
        "requests_resilience.fallback.outcome": "CircuitOpenError",
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


def test_an_outage_is_answered_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """Two 503s spend the retries; the caller gets the last good balance, marked."""
    server.script(Fault.status(503), Fault.status(503), path=BALANCE)
    pipeline = Pipeline(
        fallback(ServerError),
        StatusErrors(),
        Retry(max_attempts=2),
        APIKeyAuth(server.api_key),
        clock=FakeClock(),
    )
    got = transport.send(pipeline, "GET", server.url(BALANCE))
    assert got.status_code == 200
    assert got.json() == LAST_GOOD
    details = fallback_of(got)
    assert details is not None
    assert details.reason == "ServerError"
    assert details.status_code == 503
    assert len(server.requests) == 2
    # The next call reaches the server again and is not marked.
    fresh = transport.send(pipeline, "GET", server.url(BALANCE))
    assert not is_fallback(fresh)
    assert fresh.json()["balance_usd"] == server.balance_usd


def test_an_open_breaker_is_answered_on_every_transport(
    transport: Transport, server: FakeVinciServer
) -> None:
    """After three 500s the breaker is open: the fallback answers, nothing is sent."""
    server.script(*[Fault.status(500)] * 3, path=BALANCE)
    breaker = CircuitBreaker(minimum_calls=3, failure_ratio=0.5, break_duration=30.0)
    pipeline = Pipeline(
        fallback(CircuitOpenError),
        StatusErrors(),
        breaker,
        APIKeyAuth(server.api_key),
        clock=FakeClock(),
    )
    for _ in range(3):
        with pytest.raises(ServerError):
            transport.send(pipeline, "GET", server.url(BALANCE))
    got = transport.send(pipeline, "GET", server.url(BALANCE))
    assert got.json() == LAST_GOOD
    assert fallback_of(got) is not None
    assert len(server.requests) == 3


# -- make_response ------------------------------------------------------------------------


def test_make_response_builds_a_readable_response_bound_to_the_call() -> None:
    """JSON or bytes, the standard reason, the call's request and URL, headers kept."""
    call = Call(request=prepared())
    made = make_response(call, 202, json={"ok": True}, headers={"X-Served-By": "cache"})
    assert (made.status_code, made.reason) == (202, "Accepted")
    assert made.json() == {"ok": True}
    assert made.headers["Content-Type"] == "application/json"
    assert made.headers["x-served-by"] == "cache"
    assert made.request is call.request
    assert made.url == call.request.url
    text = make_response(call, 299, content="héllo")
    assert text.content == "héllo".encode()
    assert text.reason == ""


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"status_code": 99}, "from 100 to 599"),
        ({"status_code": True}, "from 100 to 599"),
        ({"json": {}, "content": b"x"}, "not both"),
    ],
)
def test_make_response_checks_its_arguments(kwargs: dict[str, Any], needle: str) -> None:
    """A status out of range, or two bodies, is refused with a message that says so."""
    with pytest.raises(ConfigurationError, match=needle):
        make_response(Call(request=prepared()), **kwargs)

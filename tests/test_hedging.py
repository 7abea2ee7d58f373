"""The Hedging policy: its decisions on a fake clock, and its drivers on a real server.

The decisions (`_Run`) are tested as plain functions of the outcomes and the clock.
The drivers run against a loopback server whose slow answers are held on an Event
and whose handler moves the fake clock on: the hedge is sent because virtual time
passed, at the same point of every run, and no test measures the wall clock.
"""

from __future__ import annotations

import asyncio
import copy
import http.server
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

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
    Call,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    HedgeDetails,
    Hedging,
    LatencyPercentile,
    Outcome,
    Pipeline,
    Retry,
    RetryBudget,
    ServerError,
    StatusErrors,
    Tracing,
    attempts_of,
    mount,
)
from requests_resilience._hedging import _Await, _Done, _Launch, _Run, _Workers
from requests_resilience._telemetry import hedging_attempt
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.testing import FakeClock
from tests.helpers import prepared, response

API_KEY = "sk-hedging-test-0123456789"


def failing_budget(clock: FakeClock) -> RetryBudget:
    """A budget in a failing spell with no token to spend."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    for _ in range(30):
        budget._record(clock.monotonic(), failed=True)
    assert budget.failing
    return budget


def eventually(condition: Callable[[], bool]) -> bool:
    """Whether `condition` holds within 5 s (what another thread finishes any moment)."""
    pause = threading.Event()
    for _ in range(500):
        if condition():
            return True
        pause.wait(0.01)
    return condition()


# -- the decisions, on a fake clock ------------------------------------------------------


def new_run(
    clock: FakeClock,
    *,
    delay: float | None = 0.2,
    method: str = "GET",
    max_hedged_attempts: int = 1,
    budget: RetryBudget | None = None,
    deadline: float | None = None,
    **request: Any,
) -> _Run:
    policy = Hedging(delay=delay, max_hedged_attempts=max_hedged_attempts, budget=budget)
    call = Call(request=prepared(method, **request), clock=clock, deadline=deadline)
    return _Run(policy, call, delay, clock.monotonic())


def launch(run: _Run, action: object, clock: FakeClock) -> _Launch:
    assert isinstance(action, _Launch)
    return action


def test_a_fast_answer_ends_the_call_without_a_hedge() -> None:
    """The first attempt answers within the delay: it is the result, nothing recorded."""
    clock = FakeClock()
    run = new_run(clock)
    first = launch(run, run.begin(), clock)
    assert first.index == 0
    assert first.call.attempt == 1
    waiting = run.launched(0, clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until == pytest.approx(1000.2)
    ok = response(200)
    done = run.observed(0, ok, None, clock.monotonic(), clock.monotonic() + 0.05)
    assert isinstance(done, _Done)
    assert done.result() is ok
    assert done.discard == []
    assert attempts_of(ok) == ()


def test_no_answer_within_the_delay_sends_a_hedge_with_its_own_request() -> None:
    """After the delay a hedge starts: attempt 2, a fresh request from the headers as given."""
    clock = FakeClock()
    run = new_run(clock, headers={"X-Trace": "a"})
    first = launch(run, run.begin(), clock)
    first.call.request.headers["Authorization"] = "set by a policy inside"
    run.launched(0, clock.monotonic())
    clock.advance(0.2)
    hedge = launch(run, run.timed_out(clock.monotonic()), clock)
    assert (hedge.index, hedge.call.attempt) == (1, 2)
    assert hedge.call.request is not first.call.request
    assert hedge.call.request.headers["X-Trace"] == "a"
    assert "Authorization" not in hedge.call.request.headers
    waiting = run.launched(1, clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until is None
    ok = response(200, "hedge")
    done = run.observed(1, ok, None, clock.monotonic(), clock.monotonic() + 0.01)
    assert isinstance(done, _Done)
    assert done.result() is ok
    assert [(a.number, a.reason) for a in attempts_of(ok)] == [(1, "lost"), (2, "won")]


def test_a_timeout_before_the_delay_waits_the_rest_of_it() -> None:
    """A wait that ends early waits on until the same point: the delay is from the launch."""
    clock = FakeClock()
    run = new_run(clock)
    run.launched(0, clock.monotonic())
    clock.advance(0.05)
    waiting = run.timed_out(clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until == pytest.approx(1000.2)


def test_a_failed_attempt_sends_the_next_hedge_at_once() -> None:
    """A 503 before the delay: the hedge goes now (Polly's fallback on failure)."""
    clock = FakeClock()
    reports: list[HedgeDetails] = []
    policy = Hedging(delay=5.0, budget=None, on_hedge=(reports.append,))
    call = Call(request=prepared(), clock=clock)
    run = _Run(policy, call, 5.0, clock.monotonic())
    run.begin()
    run.launched(0, clock.monotonic())
    failed = response(503)
    hedge = launch(run, run.observed(0, failed, None, 1000.0, 1000.0), clock)
    assert hedge.index == 1
    assert reports == []  # reported once it has started
    run.launched(1, clock.monotonic())
    assert [(r.trigger, r.hedge, r.attempt, r.status_code) for r in reports] == [
        ("failure", 1, 2, 503)
    ]
    ok = response(200)
    done = run.observed(1, ok, None, 1000.0, 1000.0)
    assert isinstance(done, _Done)
    assert done.result() is ok
    assert done.discard == [failed]  # the 503 is drained and closed by the driver


def test_when_every_attempt_fails_the_last_response_is_the_result() -> None:
    """A 503 and a 500: the call ends with the later one; the other is released."""
    clock = FakeClock()
    run = new_run(clock, delay=None)
    run.begin()
    run.launched(0, clock.monotonic())
    first = response(503)
    launch(run, run.observed(0, first, None, 1000.0, 1000.0), clock)
    run.launched(1, clock.monotonic())
    second = response(500)
    done = run.observed(1, second, None, 1000.0, 1000.0)
    assert isinstance(done, _Done)
    assert done.result() is second
    assert done.discard == [first]
    assert [a.reason for a in attempts_of(second)] == ["status 503", "all attempts failed"]


def test_a_response_beats_an_error_and_an_error_beats_an_open_breaker() -> None:
    """The result of a failed call carries the most evidence there is."""
    clock = FakeClock()
    run = new_run(clock, delay=0.0, max_hedged_attempts=2)
    run.begin()
    run.launched(0, clock.monotonic())
    run.launched(1, clock.monotonic())
    run.launched(2, clock.monotonic())
    failed = response(502)
    refused = CircuitOpenError("api.example.com", retry_after=3.0)
    broken = APIConnectionError("reset", request=prepared())
    assert isinstance(run.observed(0, failed, None, 1000.0, 1000.0), _Await)
    assert isinstance(run.observed(1, None, broken, 1000.0, 1000.0), _Await)
    done = run.observed(2, None, refused, 1000.0, 1000.0)
    assert isinstance(done, _Done)
    assert done.result() is failed

    run = new_run(clock, delay=0.0)
    run.begin()
    run.launched(0, clock.monotonic())
    run.launched(1, clock.monotonic())
    run.observed(0, None, refused, 1000.0, 1000.0)
    done = run.observed(1, None, broken, 1000.0, 1000.0)
    assert isinstance(done, _Done)
    with pytest.raises(APIConnectionError):
        done.result()


def test_a_fatal_answer_wins_like_a_success() -> None:
    """A 404 is what another attempt would get too: it ends the call at once."""
    clock = FakeClock()
    run = new_run(clock, delay=0.0)
    run.begin()
    run.launched(0, clock.monotonic())
    run.launched(1, clock.monotonic())
    missing = response(404)
    done = run.observed(1, missing, None, 1000.0, 1000.0)
    assert isinstance(done, _Done)
    assert done.result() is missing
    assert [(a.number, a.reason) for a in attempts_of(missing)] == [(1, "lost"), (2, "won")]


def test_parallel_mode_starts_every_attempt_at_once() -> None:
    """A delay of 0: the first attempt and all the hedges start before any wait."""
    clock = FakeClock()
    run = new_run(clock, delay=0.0, max_hedged_attempts=3)
    indices = []
    action: object = run.begin()
    while isinstance(action, _Launch):
        indices.append(action.index)
        action = run.launched(action.index, clock.monotonic())
    assert indices == [0, 1, 2, 3]
    assert isinstance(action, _Await)
    assert action.until is None


def test_fallback_mode_waits_without_a_limit() -> None:
    """No delay: the call waits for the first attempt however long; hedges only on failure."""
    clock = FakeClock()
    run = new_run(clock, delay=None)
    run.begin()
    waiting = run.launched(0, clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until is None


def test_max_hedged_attempts_caps_the_hedges() -> None:
    """Two hedges at most, however long the wait; then the call waits for any of three."""
    clock = FakeClock()
    run = new_run(clock, max_hedged_attempts=2)
    run.begin()
    run.launched(0, clock.monotonic())
    for index in (1, 2):
        clock.advance(0.2)
        assert launch(run, run.timed_out(clock.monotonic()), clock).index == index
        run.launched(index, clock.monotonic())
    clock.advance(10)
    waiting = run.timed_out(clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until is None


def test_no_hedge_after_the_deadline() -> None:
    """The call's deadline has passed: no new attempt, the ones in flight are awaited."""
    clock = FakeClock()
    run = new_run(clock, deadline=clock.monotonic() + 0.1)
    run.begin()
    run.launched(0, clock.monotonic())
    clock.advance(0.2)
    waiting = run.timed_out(clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until is None


def test_a_failing_budget_without_tokens_stops_the_hedges() -> None:
    """While the server fails, a hedge needs a token, as a retry does; none: no hedge."""
    clock = FakeClock()
    run = new_run(clock, budget=failing_budget(clock))
    run.begin()
    run.launched(0, clock.monotonic())
    clock.advance(0.2)
    waiting = run.timed_out(clock.monotonic())
    assert isinstance(waiting, _Await)
    assert waiting.until is None
    failed = response(503)
    done = run.observed(0, failed, None, 1000.0, 1000.0)
    assert isinstance(done, _Done)
    assert done.result() is failed


def test_a_healthy_budget_records_every_attempt_and_a_refused_hedge_costs_nothing() -> None:
    """Each attempt that reached the server is recorded; a breaker's refusal is refunded."""
    clock = FakeClock()
    budget = RetryBudget(max_tokens=2.0)
    run = new_run(clock, budget=budget)
    run.begin()
    run.launched(0, clock.monotonic())
    clock.advance(0.2)
    launch(run, run.timed_out(clock.monotonic()), clock)
    run.launched(1, clock.monotonic())
    run.observed(1, None, CircuitOpenError("x", retry_after=1.0), 1000.0, 1000.0)
    run.observed(0, response(200), None, 1000.0, 1000.0)
    snapshot = budget.snapshot()
    assert snapshot["spent"] == 0  # the hedge's grant went back: it never reached the wire
    assert snapshot["successes"] == 1
    assert snapshot["failures"] == 0


def test_a_hedge_that_cannot_start_stops_the_hedging() -> None:
    """No free worker for a hedge: the call goes on with the attempts it has."""
    clock = FakeClock()
    run = new_run(clock, delay=0.0, max_hedged_attempts=3)
    run.begin()
    hedge = launch(run, run.launched(0, clock.monotonic()), clock)
    waiting = run.not_launched(hedge.index)
    assert run.report is None  # a hedge that did not start is not reported
    assert isinstance(waiting, _Await)
    assert waiting.until is None


@pytest.mark.parametrize(
    ("method", "headers", "body", "hedgeable"),
    [
        ("GET", {}, None, True),
        ("PUT", {}, b"{}", True),
        ("POST", {}, b"{}", False),
        ("POST", {"Idempotency-Key": "k-1"}, b"{}", True),
        ("PATCH", {}, None, False),
    ],
)
def test_only_requests_safe_to_send_twice_are_hedged(
    method: str, headers: dict[str, str], body: bytes | None, hedgeable: bool
) -> None:
    """An idempotent method or an Idempotency-Key, nothing else."""
    call = Call(request=prepared(method, headers=headers, data=body))
    assert Hedging().hedgeable(call) is hedgeable


def test_a_streamed_body_is_not_hedged() -> None:
    """Two attempts cannot read one stream: a PUT with a file body goes once."""
    import io

    call = Call(request=prepared("PUT", data=io.BytesIO(b"payload")))
    assert Hedging().hedgeable(call) is False


# -- the adaptive delay ------------------------------------------------------------------


def test_latency_percentile_waits_for_samples_then_follows_the_percentile() -> None:
    """`initial` until min_samples latencies are in; then the nearest-rank percentile."""
    delay = LatencyPercentile(0.9, window=100, min_samples=10, initial=0.5)
    for n in range(9):
        delay.record(0.001 * (n + 1))
    assert delay.current() == 0.5
    delay.record(0.010)
    assert delay.current() == pytest.approx(0.009)  # the 9th of 10


def test_latency_percentile_forgets_old_latencies_and_keeps_its_bounds() -> None:
    """The window slides; the delay stays within min_delay and max_delay."""
    delay = LatencyPercentile(0.5, window=10, min_samples=10, min_delay=0.002, max_delay=1.0)
    for _ in range(10):
        delay.record(5.0)
    assert delay.current() == 1.0
    for _ in range(10):
        delay.record(0.0)
    assert delay.current() == 0.002
    delay.record(float("nan"))  # ignored
    assert delay.current() == 0.002


def test_the_adaptive_delay_learns_from_the_attempts() -> None:
    """Each answered attempt's latency goes into the policy's estimator."""
    clock = FakeClock()
    delay = LatencyPercentile(0.5, window=10, min_samples=2, initial=3.0)
    policy = Hedging(delay=delay, budget=None)

    def answer(call: Call) -> requests.Response:
        clock.advance(0.04)
        return response(200)

    pipeline = Pipeline(policy, clock=clock)
    handler = pipeline.wrap(answer)
    for _ in range(3):
        handler(Call(request=prepared(), clock=clock))
    assert delay.current() == pytest.approx(0.04)
    policy.close()


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"delay": -1}, "delay"),
        ({"delay": "1s"}, "delay"),
        ({"delay": float("inf")}, "delay"),
        ({"max_hedged_attempts": 0}, "max_hedged_attempts"),
        ({"max_hedged_attempts": 11}, "max_hedged_attempts"),
        ({"max_hedged_attempts": True}, "max_hedged_attempts"),
        ({"max_workers": 0}, "max_workers"),
        ({"idempotent_methods": "GET"}, "idempotent_methods"),
        ({"idempotency_header": ""}, "idempotency_header"),
        ({"classify": 3}, "classify"),
        ({"budget": object()}, "budget"),
        ({"on_hedge": (3,)}, "on_hedge"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_options_fail_when_the_policy_is_built(kwargs: dict[str, Any], named: str) -> None:
    """A bad value raises ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match=named):
        Hedging(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"percentile": 0.3}, "percentile"),
        ({"percentile": 1.0}, "percentile"),
        ({"window": 5}, "window"),
        ({"window": 100, "min_samples": 101}, "min_samples"),
        ({"min_delay": 0}, "min_delay"),
        ({"min_delay": 1.0, "max_delay": 0.5}, "max_delay"),
        ({"initial": -1}, "initial"),
    ],
)
def test_bad_percentile_options_fail_at_once(kwargs: dict[str, Any], named: str) -> None:
    """LatencyPercentile checks its options the same way."""
    with pytest.raises(ConfigurationError, match=named):
        LatencyPercentile(**kwargs)


def test_options_are_normalised_and_frozen() -> None:
    """A timedelta becomes seconds, methods upper case; the policy cannot be changed."""
    policy = Hedging(delay=timedelta(milliseconds=250), idempotent_methods=["get"])
    assert policy.delay == 0.25
    assert policy.idempotent_methods == frozenset({"GET"})
    with pytest.raises(AttributeError):
        policy.delay = 1.0  # type: ignore[misc]
    assert "delay=0.25" in repr(policy)
    assert "max_hedged_attempts=1" in repr(policy)


def test_copies_get_their_own_workers_and_estimator() -> None:
    """A deep copy or an unpickled copy has the same options and fresh state."""
    delay = LatencyPercentile(0.5, window=10, min_samples=1, initial=2.0)
    delay.record(0.1)
    policy = Hedging(delay=delay, max_workers=4)
    for twin in (copy.deepcopy(policy), pickle.loads(pickle.dumps(policy))):
        assert twin.max_workers == 4
        assert twin._workers is not policy._workers
        assert isinstance(twin.delay, LatencyPercentile)
        assert twin.delay is not delay
        assert twin.delay.current() == 2.0


def test_the_workers_are_renewed_in_a_forked_child() -> None:
    """After a fork the parent's threads are gone: the child's pool starts empty."""
    workers = _Workers(2)
    started = threading.Event()
    assert workers.submit(started.wait)
    workers._after_fork()
    assert workers.busy == 0
    assert workers._executor is None
    started.set()


def test_the_workers_refuse_rather_than_queue() -> None:
    """With every worker busy, `submit` says no at once; a free one takes the next."""
    workers = _Workers(1)
    gate = threading.Event()
    done = threading.Event()
    assert workers.submit(gate.wait)
    assert not workers.submit(done.set)
    gate.set()
    assert eventually(lambda: workers.busy == 0)
    assert workers.submit(done.set)
    assert done.wait(5)
    workers.close()


def test_with_every_worker_busy_the_call_is_sent_once_in_the_callers_thread() -> None:
    """No free worker: the first attempt runs here, unhedged."""
    clock = FakeClock()
    policy = Hedging(delay=0.0, budget=None, max_workers=1)
    gate = threading.Event()
    assert policy._workers.submit(gate.wait)
    seen: list[str] = []

    def answer(call: Call) -> requests.Response:
        seen.append(threading.current_thread().name)
        return response(200)

    handler = Pipeline(policy, clock=clock).wrap(answer)
    handler(Call(request=prepared(), clock=clock))
    gate.set()
    policy.close()
    assert seen == [threading.current_thread().name]


def test_a_bug_below_the_policy_is_raised_not_hedged() -> None:
    """An exception that is not a request failure ends the call with that exception."""
    clock = FakeClock()
    policy = Hedging(delay=0.0, budget=None)

    def broken(call: Call) -> requests.Response:
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        Pipeline(policy, clock=clock).wrap(broken)(Call(request=prepared(), clock=clock))
    policy.close()


def test_hedges_are_logged(logs: list[dict[str, Any]]) -> None:
    """Each hedge logs hedge_launched with its attempt, trigger and delay."""
    clock = FakeClock()
    policy = Hedging(delay=0.0, budget=None)
    outcomes = iter([response(503), response(200)])
    lock = threading.Lock()

    def answer(call: Call) -> requests.Response:
        with lock:
            return next(outcomes)

    Pipeline(policy, clock=clock).wrap(answer)(Call(request=prepared(), clock=clock))
    policy.close()
    events = [e for e in logs if e["event"] == "hedge_launched"]
    assert len(events) == 1
    assert events[0]["attempt"] == 2
    assert events[0]["trigger"] == "parallel"
    assert events[0]["url"] == "https://api.example.com/v1/things"


# -- the drivers, against a real server ----------------------------------------------------


@dataclass
class Step:
    """What the server does with one request."""

    status: int = 200
    body: str = "fast"
    advance: float = 0.0  # move the fake clock on by this much first
    hold: bool = False  # then wait for the server's release


@dataclass
class SlowServer:
    """A loopback HTTP/1.1 server answering each request with the next scripted step."""

    clock: FakeClock
    steps: list[Step] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with owner.lock:
                    owner.seen.append((self.command, self.path, dict(self.headers)))
                    step = owner.steps.pop(0) if owner.steps else Step()
                if step.advance:
                    owner.clock.advance(step.advance)
                if step.hold:
                    owner.release.wait(10)  # released by the test (a safety bound only)
                body = step.body.encode()
                try:
                    self.send_response(step.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up on this attempt

            do_GET = do_POST = do_PUT = handle_one  # noqa: N815 - http.server's names

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def url(self, path: str = "/v1/things") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(random_value=0.5)


@pytest.fixture
def server(fake_clock: FakeClock) -> Iterator[SlowServer]:
    srv = SlowServer(fake_clock)
    srv.start()
    yield srv
    srv.stop()


class Transport:
    """One of the three ways to send a call through a pipeline; returns (status, body)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def call(
        self,
        pipeline: Pipeline,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, str]:
        if self.kind == "requests":
            with requests.Session() as session:
                mount(session, "http://", pipeline)
                r = session.request(method, url, headers=headers, data=body)
                return r.status_code, r.text
        if self.kind == "httpx":
            with httpx.Client(transport=ResilientTransport(pipeline)) as client:
                x = client.request(method, url, headers=headers, content=body)
                return x.status_code, x.text

        async def main() -> tuple[int, str]:
            async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
                x = await client.request(method, url, headers=headers, content=body)
                return x.status_code, x.text

        return asyncio.run(main())


@pytest.fixture(params=["requests", "httpx", "httpx-async"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return Transport(str(request.param))


@pytest.fixture
def hedging() -> Iterator[Hedging]:
    policy = Hedging(delay=0.2, budget=None)
    yield policy
    policy.close()


def test_a_late_answer_is_hedged_and_the_hedge_wins(
    transport: Transport, server: SlowServer, fake_clock: FakeClock, hedging: Hedging
) -> None:
    """The first attempt stalls past the delay: the hedge answers, with its own auth header."""
    server.steps = [Step(body="slow", advance=0.3, hold=True)]
    pipeline = Pipeline(StatusErrors(), hedging, APIKeyAuth(API_KEY), clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    assert len(server.seen) == 2
    assert all(h["Authorization"] == f"Bearer {API_KEY}" for _, _, h in server.seen)


def test_a_fast_answer_sends_no_hedge(
    transport: Transport, server: SlowServer, fake_clock: FakeClock, hedging: Hedging
) -> None:
    """Virtual time does not pass: the first attempt's answer is the only request."""
    pipeline = Pipeline(StatusErrors(), hedging, clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    assert len(server.seen) == 1


def test_a_post_is_never_hedged(
    transport: Transport, server: SlowServer, fake_clock: FakeClock, hedging: Hedging
) -> None:
    """A paid POST is sent once, in the caller's own thread, however late its answer."""
    server.steps = [Step(body="late", advance=5.0)]
    threads: list[str] = []

    async def record_async(call: Call, next: Any) -> requests.Response:
        threads.append(threading.current_thread().name)
        return await next(call)  # type: ignore[no-any-return]

    def record(call: Call, next: Any) -> requests.Response:
        threads.append(threading.current_thread().name)
        return next(call)  # type: ignore[no-any-return]

    inner = record_async if transport.kind == "httpx-async" else record
    pipeline = Pipeline(StatusErrors(), hedging, inner, clock=fake_clock)
    assert transport.call(pipeline, "POST", server.url(), body=b"{}") == (200, "late")
    assert len(server.seen) == 1
    assert threads == [threading.current_thread().name]


def test_a_post_with_an_idempotency_key_is_hedged(
    transport: Transport, server: SlowServer, fake_clock: FakeClock, hedging: Hedging
) -> None:
    """The key makes the POST safe to send twice: both attempts carry the same key."""
    server.steps = [Step(body="slow", advance=0.3, hold=True)]
    pipeline = Pipeline(StatusErrors(), hedging, clock=fake_clock)
    headers = {"Idempotency-Key": "job-42"}
    assert transport.call(pipeline, "POST", server.url(), headers, b"{}") == (200, "fast")
    assert [h["Idempotency-Key"] for _, _, h in server.seen] == ["job-42", "job-42"]


def test_a_failed_attempt_is_hedged_before_the_delay(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """A 503 at once: the hedge goes without waiting the 5 s delay; the clock never moves."""
    server.steps = [Step(status=503, body="busy")]
    policy = Hedging(delay=5.0, budget=None)
    pipeline = Pipeline(StatusErrors(), policy, clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    assert len(server.seen) == 2
    assert fake_clock.monotonic() == 1000.0
    policy.close()


def test_the_breaker_counts_each_hedge(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """The first attempt's 503 and the hedge's 200 both pass through the breaker."""
    server.steps = [Step(status=503, body="busy")]
    breaker = CircuitBreaker(minimum_calls=100)
    policy = Hedging(delay=5.0, budget=None)
    pipeline = Pipeline(StatusErrors(), policy, breaker, clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    status = breaker.status(server.url(""))
    assert (status.sent, status.failed) == (2, 1)
    policy.close()


def test_an_open_breaker_refuses_every_hedge_without_a_request(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """Open: the first attempt and its hedge are refused locally; the call raises that."""
    breaker = CircuitBreaker(minimum_calls=1, failure_ratio=0.5, break_duration=30)
    server.steps = [Step(status=500, body="down")]
    opener = Pipeline(breaker, clock=fake_clock)
    assert transport.call(opener, "GET", server.url()) == (500, "down")
    seen = len(server.seen)
    policy = Hedging(delay=0.2, budget=None)
    pipeline = Pipeline(StatusErrors(), policy, breaker, clock=fake_clock)
    with pytest.raises(CircuitOpenError):
        transport.call(pipeline, "GET", server.url())
    assert len(server.seen) == seen
    assert breaker.status(server.url("")).rejected == 2
    policy.close()


def test_a_retry_outside_sends_a_second_hedged_group(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """Both attempts of the first group get 503: the retry waits, then a group succeeds."""
    server.steps = [Step(status=503), Step(status=503)]
    policy = Hedging(delay=5.0, budget=None)
    retry = Retry(initial_delay=1.0, budget=None)
    pipeline = Pipeline(StatusErrors(), retry, policy, clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    assert len(server.seen) == 3
    assert fake_clock.sleeps == [0.5]  # one jittered backoff, between the groups
    policy.close()


def test_a_failing_budget_sends_no_hedge_on_the_wire(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """While the shared budget rations retries, a 503 is not hedged: one request."""
    server.steps = [Step(status=503)]
    policy = Hedging(delay=5.0, budget=failing_budget(fake_clock))
    pipeline = Pipeline(StatusErrors(), policy, clock=fake_clock)
    with pytest.raises(ServerError):
        transport.call(pipeline, "GET", server.url())
    assert len(server.seen) == 1
    policy.close()


def test_a_hedge_has_its_own_span_marked_as_a_hedge(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """Two CLIENT spans: the first one, and the hedge's with resend_count 1 and a marker."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.steps = [Step(status=503)]
    policy = Hedging(delay=5.0, budget=None)
    pipeline = Pipeline(policy, Tracing(tracer_provider=provider), clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    spans = sorted(
        (s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT),
        key=lambda s: s.start_time or 0,
    )
    attributes = [dict(s.attributes or {}) for s in spans]
    assert [a.get("http.response.status_code") for a in attributes] == [503, 200]
    assert "requests_resilience.hedge" not in attributes[0]
    assert attributes[1]["requests_resilience.hedge"] is True
    assert attributes[1]["http.request.resend_count"] == 1
    assert not hedging_attempt.get()  # the marker never leaks into the caller's context
    policy.close()


def test_a_sync_loser_gives_its_connection_back_to_the_pool(
    server: SlowServer, fake_clock: FakeClock, hedging: Hedging
) -> None:
    """Once the stalled first attempt answers, its worker drains it: both connections idle."""
    server.steps = [Step(body="slow", advance=0.3, hold=True)]
    pipeline = Pipeline(hedging, clock=fake_clock)
    with requests.Session() as session:
        mount(session, "http://", pipeline)
        adapter = session.get_adapter(server.url())
        assert session.get(server.url()).text == "fast"
        assert hedging._workers.busy == 1  # the loser still runs
        server.release.set()
        assert eventually(lambda: hedging._workers.busy == 0)
        pools = list(adapter.poolmanager.pools._container.values())  # type: ignore[attr-defined]
        idle = [c for pool in pools for c in list(pool.pool.queue) if c is not None]
        assert len(idle) == 2  # the winner's and the loser's, both back in the pool


def test_an_async_loser_is_cancelled_and_its_connection_closed(
    server: SlowServer, fake_clock: FakeClock, hedging: Hedging
) -> None:
    """The stalled attempt's task is cancelled before the call returns: one connection left."""
    server.steps = [Step(body="slow", advance=0.3, hold=True)]
    pipeline = Pipeline(hedging, clock=fake_clock)
    wrapped = httpx.AsyncHTTPTransport()

    async def main() -> tuple[str, int]:
        transport = AsyncResilientTransport(pipeline, wrapped)
        async with httpx.AsyncClient(transport=transport) as client:
            text = (await client.get(server.url())).text
            open_connections = [c for c in wrapped._pool.connections if not c.is_closed()]
            return text, len(open_connections)

    assert asyncio.run(main()) == ("fast", 1)


def test_outcome_classification_can_be_replaced(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """A classify that calls 409 a transient failure makes it start a hedge."""
    server.steps = [Step(status=409, body="busy")]

    def classify(response: requests.Response | None, error: BaseException | None) -> Outcome:
        if response is not None and response.status_code == 409:
            return Outcome.REJECTED
        return Outcome.SUCCESS if response is not None else Outcome.FATAL

    policy = Hedging(delay=5.0, budget=None, classify=classify)
    pipeline = Pipeline(policy, clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    assert len(server.seen) == 2
    policy.close()


def test_the_loser_of_a_race_keeps_the_slow_tail_in_the_adaptive_delay(
    transport: Transport, server: SlowServer, fake_clock: FakeClock
) -> None:
    """A stalled attempt records how long it ran (cancelled: a lower bound), not nothing."""
    server.steps = [Step(body="slow", advance=0.3, hold=True)]
    delay = LatencyPercentile(0.95, window=10, min_samples=1, initial=0.2)
    policy = Hedging(delay=delay, budget=None)
    pipeline = Pipeline(policy, clock=fake_clock)
    assert transport.call(pipeline, "GET", server.url()) == (200, "fast")
    server.release.set()
    assert eventually(lambda: policy._workers.busy == 0)  # a sync loser has finished
    assert delay.current() == pytest.approx(0.3)  # the hedge's 0.0, and the loser's 0.3
    policy.close()

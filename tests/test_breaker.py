"""The CircuitBreaker policy on a fake clock: window, ratio, states, keys, threads, events."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
import structlog.testing

import requests_resilience._breaker as breaker_module
from requests_resilience import (
    APIConnectionError,
    APIConnectTimeoutError,
    APIReadTimeoutError,
    Call,
    CircuitOpenError,
    ConfigurationError,
    Next,
    Pipeline,
    RateLimitError,
    ServerError,
    StatusErrors,
)
from requests_resilience._breaker import (
    BreakerStatus,
    CircuitBreaker,
    breaker_key_by_endpoint,
    breaker_key_by_host,
    is_breaker_failure,
)
from requests_resilience._events import BreakerStateChange
from requests_resilience._retry import Retry
from requests_resilience.testing import FakeClock
from tests.helpers import ScriptedTransport, prepared, response, run

KEY = "https://api.example.com:443"


def ok(call: Call) -> requests.Response:
    return response(200, request=call.request)


def fail(call: Call) -> requests.Response:
    return response(503, request=call.request)


class Harness:
    """A breaker in a pipeline on a fake clock, with helpers to push outcomes through."""

    def __init__(self, clock: FakeClock | None = None, **options: Any) -> None:
        self.clock = clock or FakeClock()
        self.events: list[BreakerStateChange] = []
        options.setdefault("listeners", self.events.append)
        self.breaker = CircuitBreaker(**options)
        self.pipeline = Pipeline(self.breaker, clock=self.clock)

    def send(
        self, outcome: Callable[[Call], requests.Response], url: str | None = None
    ) -> requests.Response:
        transport = ScriptedTransport(outcome)
        request = prepared(url=url) if url else None
        return run(self.pipeline, transport, request=request)

    def fail(self, n: int = 1, url: str | None = None) -> None:
        for _ in range(n):
            assert self.send(fail, url).status_code == 503

    def ok(self, n: int = 1, url: str | None = None) -> None:
        for _ in range(n):
            assert self.send(ok, url).status_code == 200

    def rejected(self, url: str | None = None) -> CircuitOpenError:
        transport = ScriptedTransport(ok)
        request = prepared(url=url) if url else None
        with pytest.raises(CircuitOpenError) as info:
            run(self.pipeline, transport, request=request)
        assert transport.calls == []
        return info.value

    def state(self, key: str = KEY) -> str:
        return self.breaker.state(key)

    @property
    def transitions(self) -> list[tuple[str, str]]:
        return [(e.old_state, e.new_state) for e in self.events]

    def trip(self) -> None:
        self.fail(self.breaker.minimum_calls)
        assert self.state() == "open"


# -- the window, the minimum and the ratio ----------------------------------------------


def test_trips_when_the_failure_ratio_is_reached_with_the_minimum_of_calls() -> None:
    """Ten 503s in a row (minimum_calls=10, ratio 0.5) open the breaker on the tenth."""
    h = Harness()
    h.fail(9)
    assert h.state() == "closed"
    h.fail()
    assert h.state() == "open"
    assert h.transitions == [("closed", "open")]


def test_does_not_trip_below_the_minimum_of_calls() -> None:
    """Nine failures out of nine calls are not enough when minimum_calls is 10."""
    h = Harness(minimum_calls=10)
    h.fail(9)
    status = h.breaker.status(KEY)
    assert (status.state, status.window_calls, status.window_failures) == ("closed", 9, 9)
    assert status.failure_ratio == 1.0


def test_trips_exactly_at_the_ratio_threshold() -> None:
    """4/10 and 5/11 stay closed at ratio 0.5; 6/12 (= 0.5) opens the breaker."""
    h = Harness(failure_ratio=0.5, minimum_calls=10)
    h.ok(6)
    h.fail(4)
    assert h.state() == "closed"
    h.fail()
    assert h.breaker.status(KEY).window_failures == 5
    assert h.state() == "closed"
    h.fail()
    assert h.state() == "open"
    assert h.events[0].calls == 12
    assert h.events[0].failure_ratio == 0.5


def test_failures_slide_out_of_the_window() -> None:
    """Failures older than the window no longer count towards the ratio."""
    h = Harness(minimum_calls=4, window=10.0)
    h.fail(3)
    h.clock.advance(10.0)
    assert h.breaker.status(KEY).window_calls == 0
    h.fail(3)
    assert h.state() == "closed"
    h.fail()
    assert h.state() == "open"


def test_window_slides_a_tenth_at_a_time() -> None:
    """An outcome stays in a 10 s window until the bucket it fell in is 10 s old."""
    clock = FakeClock(start=1000.0)
    h = Harness(clock, window=10.0)
    h.fail(2)
    h.clock.advance(9.99)
    assert h.breaker.status(KEY).window_calls == 2
    h.ok()
    h.clock.advance(0.01)  # t = 1010.0: the bucket [1000, 1001) has left the window
    status = h.breaker.status(KEY)
    assert (status.window_calls, status.window_failures) == (1, 0)


def test_successes_dilute_failures_within_the_window() -> None:
    """A sustained 40% failure rate never opens a breaker set to 50%."""
    h = Harness(minimum_calls=10, failure_ratio=0.5)
    for _ in range(50):
        h.ok(3)
        h.fail(2)
        h.clock.advance(0.5)
    assert h.state() == "closed"
    assert h.events == []


# -- what counts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "counts"),
    [
        (response(500), True),
        (response(502), True),
        (response(503), True),
        (response(504), True),
        (response(599), True),
        (response(200), False),
        (response(302), False),
        (response(400), False),
        (response(401), False),
        (response(404), False),
        (response(429), False),
        (APIConnectionError("refused", request_sent=False), True),
        (APIConnectTimeoutError("connect timeout", request_sent=False), True),
        (APIReadTimeoutError("read timeout"), True),
        (requests.ConnectionError("reset"), True),
        (requests.Timeout("slow"), True),
        (ServerError("boom", status_code=503), True),
        (RateLimitError("slow down"), False),
        (CircuitOpenError("inner open", breaker="inner"), False),
        (ValueError("a bug"), False),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, requests.Response) else str(v.status_code),
)
def test_default_is_failure(outcome: requests.Response | BaseException, counts: bool) -> None:
    """5xx, connection errors and timeouts count; 1xx-4xx (429 too) and others do not."""
    assert is_breaker_failure(outcome) is counts


@pytest.mark.parametrize("status", [400, 404, 429])
def test_client_errors_never_open_the_breaker(status: int) -> None:
    """A flood of 4xx, 429 included, leaves the breaker closed."""
    h = Harness(minimum_calls=5)
    for _ in range(50):
        assert h.send(lambda call: response(status)).status_code == status
    assert h.state() == "closed"
    assert h.breaker.status(KEY).window_failures == 0


@pytest.mark.parametrize(
    "error",
    [
        APIConnectionError("refused", request_sent=False),
        APIReadTimeoutError("read timeout"),
        APIConnectTimeoutError("connect timeout", request_sent=False),
    ],
)
def test_connection_errors_and_timeouts_are_counted_and_re_raised(error: Exception) -> None:
    """Transport errors count as failures and reach the caller unchanged."""
    h = Harness(minimum_calls=3)
    for _ in range(3):
        transport = ScriptedTransport(error)
        with pytest.raises(type(error)) as info:
            run(h.pipeline, transport)
        assert info.value is error
    assert h.state() == "open"


def test_responses_pass_through_unchanged_5xx_included() -> None:
    """The breaker returns the very response object, and never raises for a 5xx itself."""
    h = Harness()
    resp = response(503, {"detail": "down"})
    assert run(h.pipeline, ScriptedTransport(resp)) is resp


def test_an_inner_breakers_refusal_is_not_counted() -> None:
    """A CircuitOpenError from an inner breaker is re-raised and not counted."""
    h = Harness(minimum_calls=1)
    inner = CircuitOpenError("inner open", breaker="inner", retry_after=3.0)
    for _ in range(5):
        with pytest.raises(CircuitOpenError) as info:
            run(h.pipeline, ScriptedTransport(inner))
        assert info.value is inner
    status = h.breaker.status(KEY)
    assert (status.state, status.window_calls, status.sent) == ("closed", 0, 0)


def test_a_custom_is_failure_replaces_the_default() -> None:
    """is_failure decides: here a 404 counts and a 503 does not."""
    h = Harness(
        minimum_calls=2,
        is_failure=lambda o: isinstance(o, requests.Response) and o.status_code == 404,
    )
    h.fail(5)
    assert h.state() == "closed"
    for _ in range(4):
        h.send(lambda call: response(404))
    assert h.state() == "closed"  # 4 failures out of 9 calls
    h.send(lambda call: response(404))
    assert h.state() == "open"  # 5 out of 10


def test_a_bug_in_is_failure_propagates_and_frees_the_probe() -> None:
    """An is_failure that raises fails the call, and a probe slot is not lost to it."""
    calls = {"n": 0}

    def flaky(outcome: requests.Response | BaseException) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("bug in is_failure")
        return is_breaker_failure(outcome)

    h = Harness(minimum_calls=2, break_duration=5, is_failure=flaky)
    h.trip()
    h.clock.advance(5)
    with pytest.raises(RuntimeError, match="bug in is_failure"):
        h.send(ok)
    assert h.state() == "half_open"
    h.ok()  # the probe slot was given back
    assert h.state() == "closed"


# -- open -----------------------------------------------------------------------------


def test_open_fails_fast_without_calling_the_transport() -> None:
    """When open, calls raise CircuitOpenError with the request, the breaker and the wait."""
    h = Harness(break_duration=30)
    h.trip()
    request = prepared(url="https://api.example.com/v1/jobs?token=abc")
    transport = ScriptedTransport(ok)
    with pytest.raises(CircuitOpenError) as info:
        run(h.pipeline, transport, request=request)
    error = info.value
    assert transport.calls == []
    assert error.request is request
    assert error.breaker == KEY
    assert error.retry_after == 30.0
    assert KEY in str(error)
    assert "probe through in 30s" in str(error)
    assert "token=abc" not in str(error)


def test_retry_after_counts_down_on_the_pipeline_clock() -> None:
    """retry_after is the time left until half-open, measured on call.clock."""
    h = Harness(break_duration=30)
    h.trip()
    h.clock.advance(12.5)
    assert h.rejected().retry_after == pytest.approx(17.5)
    assert h.breaker.status(KEY).retry_after == pytest.approx(17.5)
    h.clock.advance(17.4)
    assert h.rejected().retry_after == pytest.approx(0.1)


def test_open_rejections_send_nothing_and_are_counted() -> None:
    """Failing fast sends nothing: 2000 rejections, no transport call (speed: the benchmarks)."""
    h = Harness()
    h.trip()
    transport = ScriptedTransport(ok)
    pipeline_step = h.pipeline.wrap(transport)
    call = Call(request=prepared(), clock=h.clock, redactor=h.pipeline.redactor)
    for _ in range(2000):
        with contextlib.suppress(CircuitOpenError):
            pipeline_step(call)
    assert transport.calls == []
    assert h.breaker.status(KEY).rejected == 2000


# -- half-open ------------------------------------------------------------------------


def test_a_successful_probe_closes_the_breaker() -> None:
    """After break_duration one probe goes out; its success closes the breaker."""
    h = Harness(break_duration=30)
    h.trip()
    h.clock.advance(30)
    h.ok()
    assert h.state() == "closed"
    assert h.transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert h.breaker.status(KEY).window_calls == 0  # a fresh window after closing


def test_a_failed_probe_opens_the_breaker_for_another_break() -> None:
    """A failed probe reopens the breaker, and the next probe waits a full break again."""
    h = Harness(break_duration=30)
    h.trip()
    h.clock.advance(30)
    h.fail()
    assert h.state() == "open"
    assert h.transitions[-2:] == [("open", "half_open"), ("half_open", "open")]
    assert h.events[-1].retry_after == 30.0
    assert h.rejected().retry_after == 30.0
    h.clock.advance(30)
    h.ok()
    assert h.state() == "closed"
    assert h.breaker.status(KEY).opened == 2


def test_half_open_admits_only_its_probes_at_once() -> None:
    """With half_open_probes=2, two probes go out together; a third call is refused."""
    h = Harness(break_duration=30, half_open_probes=2)
    h.trip()
    h.clock.advance(30)
    refused: list[CircuitOpenError] = []
    seen: list[str] = []

    def second_probe(call: Call) -> requests.Response:
        seen.append("second probe")
        try:
            h.send(ok)  # a third call while both probes are in flight
        except CircuitOpenError as exc:
            refused.append(exc)
        assert h.breaker.status(KEY).probes_in_flight == 2
        return response(200)

    def first_probe(call: Call) -> requests.Response:
        seen.append("first probe")
        h.send(second_probe)
        assert h.state() == "half_open"  # one success is not enough
        return response(200)

    h.send(first_probe)
    assert seen == ["first probe", "second probe"]
    assert len(refused) == 1
    assert refused[0].retry_after == pytest.approx(1.0)  # min(1 s, break_duration / 10)
    assert "half-open" in str(refused[0])
    assert h.state() == "closed"


def test_one_failed_probe_among_several_reopens() -> None:
    """With two probes, one success and one failure leave the breaker open."""
    h = Harness(break_duration=30, half_open_probes=2)
    h.trip()
    h.clock.advance(30)
    h.ok()
    h.fail()
    assert h.state() == "open"


def test_probes_that_never_report_back_are_replaced_after_a_break() -> None:
    """A probe stuck longer than break_duration no longer blocks new probes."""
    h = Harness(break_duration=30)
    h.trip()
    h.clock.advance(30)

    def stuck_probe(call: Call) -> requests.Response:
        assert h.rejected().retry_after == pytest.approx(1.0)
        h.clock.advance(30)
        h.ok()  # admitted as a new probe, closes the breaker
        return response(200)

    h.send(stuck_probe)
    assert h.state() == "closed"


@pytest.mark.parametrize(
    "error",
    [CircuitOpenError("inner", breaker="inner"), KeyboardInterrupt()],
    ids=["inner-breaker", "KeyboardInterrupt"],
)
def test_a_probe_without_a_verdict_frees_its_slot(error: BaseException) -> None:
    """A probe that ends without a countable outcome gives its slot to the next call."""
    h = Harness(break_duration=30)
    h.trip()
    h.clock.advance(30)
    with pytest.raises(type(error)):
        run(h.pipeline, ScriptedTransport(error))
    assert h.state() == "half_open"
    h.ok()
    assert h.state() == "closed"


# -- keys -----------------------------------------------------------------------------


def test_one_breaker_per_host_by_default() -> None:
    """A failing host is cut off; another host keeps working."""
    h = Harness(minimum_calls=3)
    h.fail(3, url="https://down.example.com/v1/x")
    h.rejected(url="https://down.example.com/v1/y")
    h.ok(url="https://up.example.com/v1/x")
    assert h.breaker.state("https://down.example.com:443") == "open"
    assert h.breaker.state("https://up.example.com:443") == "closed"


def test_per_endpoint_keys_isolate_a_failing_endpoint() -> None:
    """With breaker_key_by_endpoint, one failing path does not block the others."""
    h = Harness(minimum_calls=3, key=breaker_key_by_endpoint)
    h.fail(3, url="https://api.example.com/v1/generate")
    h.rejected(url="https://api.example.com/v1/generate?x=1")
    h.ok(url="https://api.example.com/v1/billing/balance")
    assert set(h.breaker.snapshot()) == {
        "https://api.example.com:443/v1/generate",
        "https://api.example.com:443/v1/billing/balance",
    }
    assert h.events[0].breaker == "https://api.example.com:443/v1/generate"


def test_a_custom_key_function_groups_calls() -> None:
    """Any Call -> str function can group calls, e.g. by a header."""

    def by_tenant(call: Call) -> str:
        return str(call.request.headers.get("X-Tenant", "none"))

    h = Harness(minimum_calls=2, key=by_tenant)
    for tenant, outcome in (("a", fail), ("a", fail), ("b", ok)):
        request = prepared(headers={"X-Tenant": tenant})
        run(h.pipeline, ScriptedTransport(outcome), request=request)
    assert h.breaker.state("a") == "open"
    assert h.breaker.state("b") == "closed"


@pytest.mark.parametrize(
    ("url", "host_key", "endpoint_key"),
    [
        ("https://API.Example.com/v1/x?q=1", "https://api.example.com:443", "/v1/x"),
        ("http://example.com", "http://example.com:80", "/"),
        ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080", "/a/b"),
        ("https://[::1]:8443/p", "https://[::1]:8443", "/p"),
    ],
)
def test_key_functions(url: str, host_key: str, endpoint_key: str) -> None:
    """Keys name scheme, host and port (default ports filled in), then the path."""
    call = Call(request=prepared(url=url))
    assert breaker_key_by_host(call) == host_key
    assert breaker_key_by_endpoint(call) == host_key + endpoint_key


def test_breakers_are_created_once_per_key_under_concurrency() -> None:
    """Threads racing on a new key share one breaker: no count is lost to a duplicate."""
    h = Harness(minimum_calls=1000)
    threads = 16
    barrier = threading.Barrier(threads, timeout=10)

    def worker() -> None:
        barrier.wait()
        h.ok()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert h.breaker.status(KEY).sent == threads
    assert h.breaker.status(KEY).window_calls == threads


# -- threads --------------------------------------------------------------------------


def test_threads_share_a_breaker_without_waiting_and_lose_no_counts() -> None:
    """16 threads are inside the transport at once, and every outcome is counted."""
    threads, per_thread = 16, 200
    h = Harness(minimum_calls=10, failure_ratio=0.5)
    barrier = threading.Barrier(threads, timeout=10)
    lock = threading.Lock()
    in_flight = peak = transported = 0

    def transport(call: Call) -> requests.Response:
        nonlocal in_flight, peak, transported
        index = int(call.request.headers["X-Index"])
        with lock:
            in_flight += 1
            transported += 1
            peak = max(peak, in_flight)
        try:
            if index == 0:
                barrier.wait()  # every thread must get here at once, or this times out
            return response(503 if index % 4 == 3 else 200)
        finally:
            with lock:
                in_flight -= 1

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            step = h.pipeline.wrap(transport)
            for index in range(per_thread):
                request = prepared(headers={"X-Index": str(index)})
                step(Call(request=request, clock=h.clock))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert peak == threads
    status = h.breaker.status(KEY)
    total = threads * per_thread
    assert transported == total
    assert (status.sent, status.failed, status.rejected) == (total, total // 4, 0)
    assert (status.window_calls, status.window_failures) == (total, total // 4)
    assert status.state == "closed"


def test_threads_racing_to_trip_open_the_breaker_exactly_once() -> None:
    """Under a storm of failures from 16 threads there is one trip and one event."""
    threads, per_thread = 16, 100
    h = Harness(minimum_calls=10)
    transport = ScriptedTransport(fail)
    barrier = threading.Barrier(threads, timeout=10)
    rejected = [0] * threads

    def worker(n: int) -> None:
        barrier.wait()
        step = h.pipeline.wrap(transport)
        for _ in range(per_thread):
            try:
                step(Call(request=prepared(), clock=h.clock))
            except CircuitOpenError:
                rejected[n] += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    status = h.breaker.status(KEY)
    assert h.transitions == [("closed", "open")]
    assert status.opened == 1
    assert status.sent == len(transport.calls)
    assert status.sent + status.rejected == threads * per_thread
    assert status.rejected == sum(rejected)


# -- events ---------------------------------------------------------------------------


def test_every_state_change_reaches_telemetry_and_listeners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each transition calls breaker_state_changed and every listener with the details."""
    telemetry: list[BreakerStateChange] = []
    monkeypatch.setattr(breaker_module, "breaker_state_changed", telemetry.append)
    second: list[BreakerStateChange] = []
    h = Harness(minimum_calls=4, break_duration=10)
    h.breaker = CircuitBreaker(
        minimum_calls=4, break_duration=10, listeners=[h.events.append, second.append]
    )
    h.pipeline = Pipeline(h.breaker, clock=h.clock)
    h.ok()
    h.fail(3)
    h.clock.advance(10)
    h.fail()
    h.clock.advance(10)
    h.ok()
    expected = [
        BreakerStateChange(
            breaker=KEY,
            old_state="closed",
            new_state="open",
            failure_ratio=0.75,
            calls=4,
            retry_after=10.0,
        ),
        BreakerStateChange(breaker=KEY, old_state="open", new_state="half_open"),
        BreakerStateChange(breaker=KEY, old_state="half_open", new_state="open", retry_after=10.0),
        BreakerStateChange(breaker=KEY, old_state="open", new_state="half_open"),
        BreakerStateChange(breaker=KEY, old_state="half_open", new_state="closed"),
    ]
    assert telemetry == expected
    assert h.events == expected
    assert second == expected


def test_a_failing_listener_is_logged_and_does_not_fail_the_call() -> None:
    """A listener that raises is logged once per event; the call's outcome is unchanged."""

    def broken(change: BreakerStateChange) -> None:
        raise RuntimeError("listener bug")

    h = Harness(minimum_calls=2, listeners=broken)
    with structlog.testing.capture_logs() as logs:
        h.fail(2)
    assert h.state() == "open"
    failures = [entry for entry in logs if entry["event"] == "circuit_breaker_listener_failed"]
    assert len(failures) == 1
    assert failures[0]["breaker"] == KEY
    assert failures[0]["log_level"] == "error"


# -- inspection and description -------------------------------------------------------


def test_status_and_snapshot_report_counts() -> None:
    """status() and snapshot() show state, window, totals; an unseen key is closed."""
    h = Harness(minimum_calls=3, failure_ratio=0.75, break_duration=5)
    assert h.breaker.state("https://never.example.com:443") == "closed"
    h.ok()
    h.fail(2)
    h.fail()
    h.rejected()
    snapshot = h.breaker.snapshot()
    status = snapshot[KEY]
    assert isinstance(status, BreakerStatus)
    assert status == BreakerStatus(
        key=KEY,
        state="open",
        window_calls=0,
        window_failures=0,
        retry_after=5.0,
        probes_in_flight=0,
        sent=4,
        failed=3,
        rejected=1,
        opened=1,
        shared=False,
    )
    with pytest.raises(TypeError):
        snapshot["x"] = status  # type: ignore[index]


def test_repr_shows_the_settings_and_never_a_redis_password() -> None:
    """repr() lists the options; a Redis URL's password is redacted and made a secret."""
    pytest.importorskip("redis")
    plain = CircuitBreaker(window=timedelta(seconds=5), half_open_probes=2)
    assert repr(plain) == (
        "CircuitBreaker(failure_ratio=0.5, minimum_calls=10, window=5.0, break_duration=30.0, "
        "half_open_probes=2, key=breaker_key_by_host, storage='memory')"
    )
    shared = CircuitBreaker(redis_url="redis://user:s3cr3t-pw@127.0.0.1:6390/2", name="vinci")
    assert "s3cr3t-pw" not in repr(shared)
    assert "storage='redis://user:***@127.0.0.1:6390/2'" in repr(shared)
    assert "name='vinci'" in repr(shared)
    assert shared.secrets == ("s3cr3t-pw",)
    assert shared.shared
    assert "s3cr3t-pw" not in Pipeline(shared).describe()


def test_the_policy_is_named_circuit_breaker() -> None:
    """The policy's name is circuit_breaker, as shown in a pipeline's description."""
    pipeline = Pipeline(StatusErrors(), CircuitBreaker())
    assert pipeline.names == ("status_errors", "circuit_breaker")
    assert "CircuitBreaker(failure_ratio=0.5" in pipeline.describe()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failure_ratio": 0.0}, "failure_ratio must be a number more than 0.0 and at most 1.0"),
        ({"failure_ratio": 1.5}, "failure_ratio must be a number more than 0.0 and at most 1.0"),
        ({"failure_ratio": True}, "failure_ratio must be"),
        ({"minimum_calls": 0}, "minimum_calls must be an int from 1 to 1000000, got 0"),
        ({"minimum_calls": 2.5}, "minimum_calls must be an int from 1 to 1000000"),
        ({"window": 0}, "window must be from 0.001 to 86400 seconds, got 0"),
        ({"window": float("nan")}, "window must be a number of seconds or a timedelta"),
        ({"window": timedelta(days=2)}, "window must be from 0.001 to 86400 seconds"),
        ({"break_duration": -1}, "break_duration must be from 0.001 to 86400 seconds"),
        ({"break_duration": "30"}, "break_duration must be a number of seconds"),
        ({"half_open_probes": 0}, "half_open_probes must be an int from 1 to 1000, got 0"),
        ({"key": "host"}, "key must be a function Call -> str"),
        ({"is_failure": None}, "is_failure must be a function"),
        ({"listeners": [print, 3]}, "listeners must be a function, or functions"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"namespace": " "}, "namespace must be a non-empty string"),
        ({"redis_url": "http://localhost:6379"}, "redis_url must start with redis://"),
        (
            {"redis_url": "redis://localhost:6379", "redis_client": object()},
            "redis_url or redis_client, not both",
        ),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    """Each bad option raises ConfigurationError naming the option and its range."""
    if "redis_url" in options and "redis_client" not in options:
        pytest.importorskip("redis")
    with pytest.raises(ConfigurationError, match=r"^CircuitBreaker ") as info:
        CircuitBreaker(**options)
    assert message in str(info.value)


def test_missing_redis_package_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the redis extra, asking for Redis raises an ImportError saying what to install."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'requests-resilience\[redis\]'"):
        CircuitBreaker(redis_url="redis://127.0.0.1:6379/0")


# -- Redis failures degrade to local state --------------------------------------------


class BrokenRedis:
    """A redis client stand-in whose every command fails as if Redis were down."""

    def __init__(self) -> None:
        self.attempts = 0

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        import redis

        self.attempts += 1
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    setnx = _fail
    get = _fail

    def register_script(self, script: str) -> Callable[..., Any]:
        return self._fail


def test_redis_errors_fall_back_to_local_state_and_log_once() -> None:
    """With Redis down, calls go through, the breaker still trips locally, one warning."""
    pytest.importorskip("redis")
    broken = BrokenRedis()
    h = Harness(minimum_calls=3, failure_ratio=0.75, break_duration=10, redis_client=broken)
    with structlog.testing.capture_logs() as logs:
        h.ok()
        h.fail(3)
        h.rejected()
        h.clock.advance(10)  # past the retry interval too: Redis is tried once more
        h.ok()
    assert h.state() == "closed"
    assert h.transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    warnings = [entry for entry in logs if entry["event"] == "circuit_breaker_redis_unavailable"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "Connection refused" in warnings[0]["error"]
    assert broken.attempts == 2  # first step, then one retry after the interval


# -- with the retry policy ------------------------------------------------------------


def test_retry_waits_for_the_breaker_when_the_deadline_allows() -> None:
    """StatusErrors -> Retry -> CircuitBreaker: the retry sleeps retry_after, then probes."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=2, break_duration=5)
    pipeline = Pipeline(
        StatusErrors(),
        Retry(max_attempts=5, initial_delay=0.0, timeout=60, budget=None),
        breaker,
        clock=clock,
    )
    transport = ScriptedTransport(response(503), response(503), response(200))
    assert run(pipeline, transport).status_code == 200
    assert len(transport.calls) == 3
    assert 5.0 in clock.sleeps
    assert breaker.state(KEY) == "closed"


def test_retry_fails_at_once_when_the_break_outlasts_the_deadline() -> None:
    """When retry_after would pass the deadline, the call fails without waiting it out."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=2, break_duration=30)
    pipeline = Pipeline(
        StatusErrors(),
        Retry(max_attempts=5, initial_delay=0.0, timeout=10, budget=None),
        breaker,
        clock=clock,
    )
    transport = ScriptedTransport(fail)
    with pytest.raises(CircuitOpenError) as info:
        run(pipeline, transport)
    assert len(transport.calls) == 2
    assert info.value.retry_after == 30.0
    assert clock.slept == 0.0


def test_custom_policy_inside_sees_each_attempt() -> None:
    """Policies inside the breaker run once per admitted attempt, never when it is open."""
    seen: list[int] = []

    def count(call: Call, next: Next) -> requests.Response:
        seen.append(call.attempt)
        return next(call)

    clock = FakeClock()
    pipeline = Pipeline(CircuitBreaker(minimum_calls=2), count, clock=clock)
    for _ in range(2):
        run(pipeline, ScriptedTransport(fail))
    with pytest.raises(CircuitOpenError):
        run(pipeline, ScriptedTransport(ok))
    assert seen == [1, 1]


def test_keys_beyond_max_keys_drop_the_least_recently_used() -> None:
    """max_keys=10: 25 endpoints keep at most 10 breakers, the most recent among them."""
    clock = FakeClock()
    breaker = CircuitBreaker(key=breaker_key_by_endpoint, max_keys=10)
    pipeline = Pipeline(breaker, clock=clock)
    for i in range(25):
        run(pipeline, ScriptedTransport(response(200)), request=prepared(url=f"https://h/{i}"))
    keys = list(breaker.snapshot())
    assert len(keys) <= 10
    assert "https://h:443/24" in keys
    assert "https://h:443/0" not in keys
    assert breaker.max_keys == 10


# -- slow calls (resilience4j's slowCallRateThreshold) -----------------------------------


def _slow(
    seconds: float, clock: FakeClock, outcome: Callable[[Call], requests.Response] = ok
) -> Callable[[Call], requests.Response]:
    """An answer that takes `seconds` on the fake clock."""

    def answer(call: Call) -> requests.Response:
        clock.advance(seconds)
        return outcome(call)

    return answer


def test_slow_successes_open_the_breaker_at_the_slow_call_ratio() -> None:
    """4 calls of 2 s (threshold 1 s, ratio 0.5, minimum 4): open, though all were 200s."""
    h = Harness(minimum_calls=4, slow_call_duration=1.0, slow_call_ratio=0.5)
    h.ok(2)
    assert h.send(_slow(2.0, h.clock)).status_code == 200
    assert h.state() == "closed"  # 1 slow of 3: under the minimum of calls
    assert h.send(_slow(2.0, h.clock)).status_code == 200
    assert h.state() == "open"  # 2 slow of 4 = 0.5
    assert h.breaker.status(KEY).failed == 0
    assert h.events[0].slow_call_ratio == 0.5
    assert h.events[0].failure_ratio == 0.0


def test_calls_under_the_threshold_are_not_slow() -> None:
    """Calls of 0.99 s with a 1 s threshold never open it; the window counts no slow call."""
    h = Harness(minimum_calls=4, slow_call_duration=1.0, slow_call_ratio=0.25)
    for _ in range(8):
        h.send(_slow(0.99, h.clock))
    status = h.breaker.status(KEY)
    assert (status.state, status.window_calls, status.window_slow_calls) == ("closed", 8, 0)


def test_without_a_threshold_calls_are_not_timed() -> None:
    """The default: slow answers count as the successes they are; no clock is read for it."""
    h = Harness(minimum_calls=2, slow_call_ratio=0.1)
    for _ in range(4):
        h.send(_slow(60.0, h.clock))
    assert h.state() == "closed"
    assert h.breaker.status(KEY).window_slow_calls == 0


def test_a_slow_probe_reopens_the_breaker() -> None:
    """Half-open, the probe answers 200 but slowly: the breaker opens for another break."""
    h = Harness(minimum_calls=2, slow_call_duration=1.0, break_duration=10)
    h.trip()
    h.clock.advance(10)
    assert h.send(_slow(5.0, h.clock)).status_code == 200
    assert h.state() == "open"
    assert h.transitions[-2:] == [("open", "half_open"), ("half_open", "open")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"slow_call_duration": 0}, "slow_call_duration must be"),
        ({"slow_call_duration": "1s"}, "slow_call_duration must be"),
        ({"slow_call_duration": 1, "slow_call_ratio": 0}, "slow_call_ratio must be a number"),
        ({"slow_call_duration": 1, "slow_call_ratio": 1.5}, "slow_call_ratio must be a number"),
    ],
)
def test_bad_slow_call_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CircuitBreaker(**options)


def test_the_repr_shows_the_slow_call_settings() -> None:
    breaker = CircuitBreaker(slow_call_duration=timedelta(seconds=2), slow_call_ratio=0.8)
    assert "slow_call_duration=2.0, slow_call_ratio=0.8" in repr(breaker)


def test_a_fast_success_is_counted_like_any_outcome_in_the_window() -> None:
    """The storage's short step for a fast success keeps the window's counts exact."""
    from requests_resilience._breaker_storage import STATE_CLOSED, MemoryBreakerStorage

    rules = CircuitBreaker(minimum_calls=10, window=10.0, break_duration=5)._settings.rules
    assert rules.buckets == 10  # one bucket per second of the window, as below
    storage = MemoryBreakerStorage(rules.buckets)
    for second in range(4):
        storage.record(float(second), rules, failed=True, probe=False)
        for _ in range(3):
            storage.record(float(second) + 0.5, rules, failed=False, probe=False)
    state = storage.read(3.9, rules)
    assert (state.calls, state.failures) == (16, 4)
    assert storage.counter == 0  # the failure count is reset by a success, as pybreaker's
    assert storage.state == STATE_CLOSED
    later = storage.read(12.9, rules)  # the window slid: only second 3 is left in it
    assert (later.calls, later.failures) == (4, 1)

"""The Retry policy on a fake clock: classification, waits, deadlines, budget, bodies."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_resilience import (
    APIConnectionError,
    APIReadTimeoutError,
    Call,
    CircuitOpenError,
    ConcurrencyLimitError,
    ConfigurationError,
    Next,
    Outcome,
    Pipeline,
    RateLimitError,
    Retry,
    RetryBudget,
    RetryBudgetExhaustedError,
    RetryDetails,
    ServerError,
    StatusErrors,
    attempts_of,
    classify_outcome,
)
from requests_resilience.testing import FakeClock
from tests.helpers import ScriptedTransport, prepared, response, run

POST = "https://api.example.com/v1/generate/text-to-video"


def refused() -> APIConnectionError:
    return APIConnectionError("refused", request_sent=False)


def reset() -> APIConnectionError:
    return APIConnectionError("reset after sending", request_sent=True)


def go(
    retry: Retry,
    *outcomes: Any,
    method: str = "GET",
    clock: FakeClock | None = None,
    status_errors: bool = True,
    **request_kwargs: Any,
) -> tuple[ScriptedTransport, FakeClock, Any]:
    """Run one call; return the transport, the clock and the response or exception."""
    clock = clock or FakeClock(random_value=0.5)
    transport = ScriptedTransport(*outcomes)
    policies = (StatusErrors(), retry) if status_errors else (retry,)
    pipeline = Pipeline(*policies, clock=clock)
    try:
        result: Any = run(pipeline, transport, prepared(method, POST, **request_kwargs), clock)
    except Exception as exc:
        result = exc
    return transport, clock, result


NO_BUDGET = Retry(budget=None, initial_delay=1.0)

# -- the classification table -------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (response(200), Outcome.SUCCESS),
        (response(302), Outcome.SUCCESS),
        (response(408), Outcome.REJECTED),
        (response(429), Outcome.REJECTED),
        (response(503), Outcome.REJECTED),
        (response(500), Outcome.UNKNOWN),
        (response(502), Outcome.UNKNOWN),
        (response(504), Outcome.UNKNOWN),
        (response(400), Outcome.FATAL),
        (response(401), Outcome.FATAL),
        (response(402), Outcome.FATAL),
        (response(404), Outcome.FATAL),
        (response(413), Outcome.FATAL),
        (refused(), Outcome.NOT_SENT),
        (CircuitOpenError("open", breaker="h", retry_after=1.0), Outcome.NOT_SENT),
        (reset(), Outcome.UNKNOWN),
        (APIReadTimeoutError("slow", request_sent=True), Outcome.UNKNOWN),
        (requests.exceptions.InvalidURL("bad"), Outcome.FATAL),
    ],
)
def test_classification_table(outcome: Any, expected: Outcome) -> None:
    """Each row of the documented table classifies as stated."""
    if isinstance(outcome, requests.Response):
        assert classify_outcome(outcome, None) is expected
    else:
        assert classify_outcome(None, outcome) is expected


def test_ssl_errors_are_not_retried() -> None:
    """A TLS certificate failure does not heal by retrying."""
    error = APIConnectionError("bad cert", request_sent=False)
    error.__cause__ = requests.exceptions.SSLError("certificate verify failed")
    assert classify_outcome(None, error) is Outcome.FATAL


@pytest.mark.parametrize(
    ("method", "outcome", "attempts"),
    [
        ("POST", response(500), 1),
        ("POST", response(502), 1),
        ("POST", response(504), 1),
        ("POST", reset(), 1),
        ("POST", APIReadTimeoutError("slow", request_sent=True), 1),
        ("POST", response(503), 3),
        ("POST", response(429), 3),
        ("POST", response(408), 3),
        ("POST", refused(), 3),
        ("GET", response(500), 3),
        ("GET", reset(), 3),
        ("PUT", response(502), 3),
        ("DELETE", response(504), 3),
        ("GET", response(400), 1),
        ("GET", response(402), 1),
        ("GET", response(404), 1),
    ],
)
def test_what_is_retried_end_to_end(method: str, outcome: Any, attempts: int) -> None:
    """Unknown outcomes are retried only for idempotent methods; rejections always."""
    transport, _, _ = go(Retry(max_attempts=3, budget=None), outcome, method=method)
    assert len(transport.calls) == attempts


def test_post_with_idempotency_key_is_retried_after_500() -> None:
    """An Idempotency-Key header makes a POST safe to repeat."""
    transport, _, result = go(
        NO_BUDGET,
        response(500),
        response(200),
        method="POST",
        headers={"Idempotency-Key": "k1"},
    )
    assert len(transport.calls) == 2
    assert result.status_code == 200


def test_add_idempotency_key_sends_the_same_key_on_every_attempt() -> None:
    """add_idempotency_key adds one key per call and every attempt carries it."""
    transport, _, _ = go(
        Retry(add_idempotency_key=True, budget=None, max_attempts=3),
        response(500),
        response(502),
        response(200),
        method="POST",
    )
    keys = {c.request.headers["Idempotency-Key"] for c in transport.calls}
    assert len(transport.calls) == 3
    assert len(keys) == 1


def test_add_idempotency_key_leaves_gets_and_given_keys_alone() -> None:
    """GETs get no key; a caller's own key is kept."""
    transport, _, _ = go(Retry(add_idempotency_key=True), response(200))
    assert "Idempotency-Key" not in transport.calls[0].request.headers
    transport, _, _ = go(
        Retry(add_idempotency_key=True),
        response(200),
        method="POST",
        headers={"Idempotency-Key": "mine"},
    )
    assert transport.calls[0].request.headers["Idempotency-Key"] == "mine"


def test_not_retried_reason_is_in_the_error() -> None:
    """The final error says why no further attempt was made."""
    _, _, exc = go(NO_BUDGET, response(500, {"detail": "boom"}), method="POST")
    assert isinstance(exc, ServerError)
    assert "not idempotent" in str(exc)
    assert exc.history[-1].reason.startswith("not retried")


# -- waits -----------------------------------------------------------------------------


def test_success_after_retries_records_history() -> None:
    """attempts_of() lists every attempt with its outcome and wait."""
    transport, clock, result = go(NO_BUDGET, response(503), response(503), response(200))
    history = attempts_of(result)
    assert [a.outcome for a in history] == ["503", "503", "200"]
    assert [a.number for a in history] == [1, 2, 3]
    assert [a.wait for a in history] == [*clock.sleeps, 0.0]
    assert history[0].reason == "status 503"
    assert [c.attempt for c in transport.calls] == [1, 2, 3]
    assert [len(c.history) for c in transport.calls] == [0, 1, 2]


def test_first_attempt_success_records_nothing() -> None:
    """The happy path allocates no history."""
    _, clock, result = go(NO_BUDGET, response(200))
    assert attempts_of(result) == ()
    assert clock.sleeps == []


def test_exhausted_attempts_raise_the_last_error_with_history() -> None:
    """After max_attempts the last error is raised, carrying every attempt."""
    transport, clock, exc = go(Retry(max_attempts=4, budget=None), response(503))
    assert isinstance(exc, ServerError)
    assert len(transport.calls) == 4
    assert exc.attempts == 4
    assert exc.history[-1].reason == "attempts exhausted"
    assert len(clock.sleeps) == 3


def test_exception_outcomes_carry_history_too() -> None:
    """A transport error that ends the call carries the history."""
    _, _, exc = go(Retry(max_attempts=2, budget=None), refused())
    assert isinstance(exc, APIConnectionError)
    assert [a.outcome for a in exc.history] == ["APIConnectionError"] * 2


@pytest.mark.parametrize(
    ("jitter", "low", "high"),
    [("full", 0.0, 1.0), ("equal", 0.5, 1.0), ("none", 1.0, 1.0)],
)
def test_jitter_bounds_for_the_first_wait(jitter: str, low: float, high: float) -> None:
    """Full jitter draws in [0, b], equal in [b/2, b], none waits exactly b."""
    for draw in (0.0, 0.5, 0.999):
        _, clock, _ = go(
            Retry(jitter=jitter, initial_delay=1.0, budget=None),  # type: ignore[arg-type]
            response(503),
            response(200),
            clock=FakeClock(random_value=draw),
        )
        assert low <= clock.sleeps[0] <= high


def test_exponential_growth_and_cap() -> None:
    """Without jitter the waits double up to max_delay."""
    _, clock, _ = go(
        Retry(jitter="none", initial_delay=1, max_delay=5, max_attempts=6, budget=None),
        response(503),
    )
    assert clock.sleeps == [1, 2, 4, 5, 5]


def test_decorrelated_jitter_stays_in_range() -> None:
    """Decorrelated waits lie in [initial, min(cap, 3 x previous)]."""
    _, clock, _ = go(
        Retry(jitter="decorrelated", initial_delay=1, max_delay=10, max_attempts=8, budget=None),
        response(503),
        clock=FakeClock(seed=7),
    )
    previous = 1.0
    for wait in clock.sleeps:
        assert 1.0 <= wait <= min(10.0, 3 * previous) + 1e-9
        previous = wait


NOW = FakeClock().time()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "0.2"}, 0.2),
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after-ms": "1500"}, 1.5),
        (
            {
                "Retry-After": format_datetime(
                    datetime.fromtimestamp(NOW + 7, tz=timezone.utc), usegmt=True
                )
            },
            7.0,
        ),
        (
            {
                "Retry-After": format_datetime(
                    datetime.fromtimestamp(NOW - 60, tz=timezone.utc), usegmt=True
                )
            },
            0.0,
        ),
    ],
)
def test_retry_after_is_honoured_exactly(headers: dict[str, str], expected: float) -> None:
    """Every Retry-After form is waited exactly, never less."""
    _, clock, result = go(NO_BUDGET, response(429, headers=headers), response(200))
    assert result.status_code == 200
    assert clock.sleeps == [pytest.approx(expected, abs=1e-6)]


@pytest.mark.parametrize("value", ["garbage", "-1", "", "nan", "1e400"])
def test_bad_retry_after_falls_back_to_backoff(value: str) -> None:
    """Junk Retry-After values are ignored and the backoff applies."""
    _, clock, _ = go(
        Retry(jitter="none", initial_delay=1.0, budget=None),
        response(503, headers={"Retry-After": value}),
        response(200),
    )
    assert clock.sleeps == [1.0]


def test_retry_after_over_the_cap_fails_at_once() -> None:
    """A server wait over max_retry_after is not waited: RateLimitError with retry_after."""
    transport, clock, exc = go(
        Retry(max_retry_after=30, budget=None),
        response(429, {"detail": "slow down"}, headers={"Retry-After": "3600"}),
    )
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == 3600
    assert len(transport.calls) == 1
    assert clock.sleeps == []


def test_rate_limit_reset_is_used_when_retry_after_is_absent() -> None:
    """A 429 with X-RateLimit-Remaining 0 waits until X-RateLimit-Reset."""
    clock = FakeClock(random_value=0.5)
    reset_at = int(clock.time()) + 12
    _, clock, _ = go(
        NO_BUDGET,
        response(429, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_at)}),
        response(200),
        clock=clock,
    )
    assert clock.sleeps == [pytest.approx(reset_at - FakeClock().time())]


def test_open_circuit_is_waited_out() -> None:
    """CircuitOpenError is retried after its retry_after, like a Retry-After."""
    _, clock, result = go(
        NO_BUDGET,
        CircuitOpenError("open", breaker="h", retry_after=4.0),
        response(200),
        method="POST",
    )
    assert result.status_code == 200
    assert clock.sleeps == [4.0]


def test_open_circuit_beyond_the_deadline_fails_at_once() -> None:
    """When the breaker opens after the deadline, the call fails without waiting."""
    transport, clock, exc = go(
        Retry(timeout=5, budget=None),
        CircuitOpenError("open", breaker="h", retry_after=30.0),
    )
    assert isinstance(exc, CircuitOpenError)
    assert clock.sleeps == []
    assert len(transport.calls) == 1


# -- deadlines ---------------------------------------------------------------------------


def test_wait_that_would_pass_the_deadline_is_not_started() -> None:
    """The call stops instead of starting a wait that ends after its deadline."""
    _, clock, exc = go(
        Retry(timeout=2.5, jitter="none", initial_delay=1.0, max_attempts=10, budget=None),
        response(503),
    )
    assert isinstance(exc, ServerError)
    assert clock.sleeps == [1.0]  # 1 + 2 would pass 2.5
    assert exc.history[-1].reason == "deadline would pass during the wait"


def test_attempt_timeout_is_cut_to_the_time_left() -> None:
    """Each attempt's timeout is at most the time left before the deadline."""

    def slow(call: Call) -> requests.Response:
        call.clock.sleep(3.0)
        return response(503)

    clock = FakeClock(random_value=0.0)
    transport, _, _ = go(
        Retry(timeout=10, attempt_timeout=8, budget=None, max_attempts=3),
        slow,
        clock=clock,
    )
    timeouts = [c.timeout for c in transport.calls]
    assert timeouts[0] == 8
    assert timeouts[1] == pytest.approx(7)  # 10 - 3 elapsed
    assert timeouts[2] == pytest.approx(4)


def test_requests_timeout_tuple_is_cut_too() -> None:
    """A (connect, read) timeout from requests is cut element-wise."""

    def probe(call: Call) -> requests.Response:
        return response(200)

    clock = FakeClock()
    transport = ScriptedTransport(probe)
    pipeline = Pipeline(Retry(timeout=4), clock=clock)
    call = Call(request=prepared(), clock=clock, timeout=(10.0, 2.0))
    pipeline.wrap(transport)(call)
    assert transport.calls[0].timeout == (4.0, 2.0)
    assert transport.calls[0].deadline == clock.monotonic() + 4


# -- the budget -----------------------------------------------------------------------------


def _failing(clock: FakeClock, **options: Any) -> RetryBudget:
    """A budget that has seen a long run of failures at the clock's current time."""
    options = {"ratio": 0.0, "min_per_second": 0.0, **options}
    budget = RetryBudget(**options)
    for _ in range(30):
        budget._record(clock.monotonic(), failed=True)
    assert budget.failing
    return budget


def test_random_failures_are_retried_freely() -> None:
    """A healthy budget admits every retry: the call ends as it would without one."""
    budget = RetryBudget()
    transport, _, result = go(Retry(budget=budget), response(503), response(503), response(200))
    assert result.status_code == 200
    assert len(transport.calls) == 3
    snapshot = budget.snapshot()
    # Two retries admitted at no cost; the first failed on the wire ("spent").
    assert (snapshot["granted"], snapshot["spent"], snapshot["refused"]) == (2, 1, 0)
    assert snapshot["tokens"] == 0.0


def test_budget_empty_waits_patiently_then_fails_with_its_own_error() -> None:
    """With no token, the call waits its backoff steps and fails with its own error."""
    clock = FakeClock()
    retry = Retry(budget=_failing(clock), max_attempts=5, jitter="none", initial_delay=1.0)
    transport, clock, exc = go(retry, response(503), clock=clock)
    assert isinstance(exc, RetryBudgetExhaustedError)
    assert len(transport.calls) == 1
    assert clock.sleeps == [1, 2, 4, 8]  # the same patience as without a budget
    assert exc.response is not None
    assert exc.response.status_code == 503
    assert exc.history[-1].reason == "retry budget empty"


def test_a_patient_call_succeeds_when_a_token_arrives() -> None:
    """Refused at first, the call keeps waiting; a token from time lets it retry."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=0.5)
    retry = Retry(budget=budget, max_attempts=5, jitter="none", initial_delay=1.0)
    transport, clock, result = go(retry, response(503), response(200), clock=clock)
    assert result.status_code == 200
    assert clock.sleeps == [1, 2]  # refused at 1 s (half a token), admitted at 3 s
    assert [c.attempt for c in transport.calls] == [1, 2]
    # 1.5 tokens at 3 s, one taken, and given back because the retry worked.
    assert budget.snapshot()["tokens"] == 1.5


@pytest.mark.parametrize(
    ("headers", "asked"),
    [
        ({"Retry-After": "0.3"}, 0.3),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "300"}, 0.3),
        ({"Retry-After": "HTTP-DATE+5"}, 5.0),
    ],
)
@pytest.mark.parametrize("pressure", [False, True], ids=["healthy", "failing"])
def test_retry_after_is_never_shortened_by_the_budget(
    headers: dict[str, str], asked: float, pressure: bool
) -> None:
    """Whatever the budget does, the first wait is the server's, and the re-send no sooner."""
    clock = FakeClock()
    if headers.get("Retry-After") == "HTTP-DATE+5":
        when = datetime.fromtimestamp(clock.time() + asked, tz=timezone.utc)
        headers = {"Retry-After": format_datetime(when, usegmt=True)}
    budget = _failing(clock, min_per_second=2.0) if pressure else RetryBudget()
    retry = Retry(budget=budget, jitter="none", initial_delay=0.1)
    transport, clock, result = go(
        retry, response(429, headers=headers), response(200), clock=clock
    )
    assert result.status_code == 200
    assert clock.sleeps[0] == pytest.approx(asked)
    assert sum(clock.sleeps) >= asked - 1e-9
    assert len(transport.calls) == 2


def test_budget_fail_fast() -> None:
    """fail_fast_on_budget fails at once when no token is free."""
    clock = FakeClock()
    retry = Retry(budget=_failing(clock), fail_fast_on_budget=True, jitter="none", initial_delay=1)
    transport, clock, exc = go(retry, response(503), clock=clock)
    assert isinstance(exc, RetryBudgetExhaustedError)
    assert len(transport.calls) == 1
    assert clock.sleeps == []


def test_successful_retry_gives_its_token_back() -> None:
    """A retry that works costs no token: the server is back."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=1.0, max_tokens=2.0)
    clock.advance(5.0)
    go(Retry(budget=budget, jitter="none"), response(503), response(200), clock=clock)
    assert budget.snapshot()["tokens"] == 2.0
    assert budget.snapshot()["spent"] == 0


def test_a_failed_retry_keeps_its_token() -> None:
    """A retry that failed on the wire spent its token."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=1.0, max_tokens=1.0)
    clock.advance(5.0)
    retry = Retry(budget=budget, max_attempts=2, jitter="none", initial_delay=0.1)
    go(retry, response(503), clock=clock)
    assert budget.snapshot()["spent"] == 1
    assert budget.snapshot()["tokens"] == 0.0


def test_budget_token_is_refunded_when_the_breaker_blocks_the_retry() -> None:
    """A retry stopped by an open breaker never hit the wire and costs no token."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=1.0, max_tokens=2.0)
    clock.advance(5.0)
    retry = Retry(budget=budget, max_attempts=3, jitter="none", initial_delay=0.1)
    _, _, exc = go(
        retry,
        response(503),
        CircuitOpenError("open", breaker="h", retry_after=1.0),
        response(503),
        clock=clock,
    )
    assert isinstance(exc, ServerError)
    # The first retry's token came back (the breaker refused it); the retry after the
    # refusal is the breaker's to ration (refused again, or its probe) and takes none.
    assert budget.snapshot()["tokens"] == 2.0
    assert budget.snapshot()["failures"] == 30 + 2  # the refusal is not evidence


def test_budget_token_is_refunded_when_a_concurrency_limit_refuses_the_retry() -> None:
    """A retry refused by a full concurrency limit (placed inside Retry) never hit the
    wire: its token comes back, and the refusal, final, is the call's outcome."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=1.0, max_tokens=2.0)
    clock.advance(5.0)
    retry = Retry(budget=budget, max_attempts=3, jitter="none", initial_delay=0.1)
    refusal = ConcurrencyLimitError("full", limit="cl", key="k", max_concurrent=1)
    _, _, exc = go(retry, response(503), refusal, clock=clock)
    assert exc is refusal
    assert budget.snapshot()["tokens"] == 2.0
    assert budget.snapshot()["spent"] == 0


def test_an_interrupted_retry_gives_its_token_back() -> None:
    """Ctrl-C while a retry is on the wire: the call ends, and the token is returned."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=1.0, max_tokens=1.0)
    clock.advance(5.0)
    retry = Retry(budget=budget, jitter="none", initial_delay=0.1)
    with pytest.raises(KeyboardInterrupt):
        go(retry, response(503), KeyboardInterrupt(), clock=clock)
    assert budget.snapshot()["tokens"] == 1.0
    assert budget.snapshot()["spent"] == 0


def test_fatal_answers_are_evidence_of_a_working_server() -> None:
    """A 404 breaks a run of failures: the budget records the server as up."""
    budget = RetryBudget()
    for _ in range(60):
        budget._record(0.0, failed=False)
    go(Retry(budget=budget, max_attempts=1), response(503))
    go(Retry(budget=budget, max_attempts=1), response(503))
    go(Retry(budget=budget, max_attempts=1), response(404))
    go(Retry(budget=budget, max_attempts=1), response(503))
    assert budget.snapshot()["run"] == 1
    assert not budget.failing


def test_budget_is_shared_across_calls() -> None:
    """Every call through one Retry draws from the same bucket."""
    clock = FakeClock()
    budget = _failing(clock, min_per_second=1.0, max_tokens=2.0)
    clock.advance(5.0)
    retry = Retry(budget=budget, max_attempts=2, fail_fast_on_budget=True)
    results = [go(retry, response(503), clock=clock)[2] for _ in range(3)]
    assert [type(r).__name__ for r in results] == [
        "ServerError",
        "ServerError",
        "RetryBudgetExhaustedError",
    ]


# -- bodies -----------------------------------------------------------------------------------


def test_file_body_is_rewound_for_each_attempt() -> None:
    """A seekable body is sent from the same position on every attempt."""
    seen: list[bytes] = []

    def read_all(call: Call) -> requests.Response:
        body = call.request.body
        seen.append(body.read())  # type: ignore[union-attr]
        return response(503) if len(seen) < 3 else response(200)

    body = io.BytesIO(b"prefix:the-video-bytes")
    body.read(7)
    go(NO_BUDGET, read_all, method="PUT", data=body)
    assert seen == [b"the-video-bytes"] * 3


def test_generator_body_is_sent_once_and_the_error_says_why() -> None:
    """A body that cannot be rewound is never retried, and the error explains it."""

    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    transport, _, exc = go(
        NO_BUDGET, response(503, {"detail": "busy"}), method="PUT", data=chunks()
    )
    assert len(transport.calls) == 1
    assert isinstance(exc, ServerError)
    assert "cannot be rewound" in str(exc)


def test_bytes_body_is_resent_identically() -> None:
    """The same bytes go out on every attempt."""
    transport, _, _ = go(
        NO_BUDGET, response(503), response(200), method="POST", json={"prompt": "fox"}
    )
    assert transport.calls[0].request.body == transport.calls[1].request.body
    assert transport.calls[0].request is not transport.calls[1].request


def test_headers_set_by_inner_policies_do_not_leak_between_attempts() -> None:
    """Each attempt starts from the caller's headers, not the previous attempt's."""

    def stamp(call: Call, next: Next) -> requests.Response:
        assert "X-Attempt" not in call.request.headers
        call.request.headers["X-Attempt"] = str(call.attempt)
        return next(call)

    clock = FakeClock()
    transport = ScriptedTransport(response(503), response(200))
    pipeline = Pipeline(Retry(budget=None), stamp, clock=clock)
    run(pipeline, transport, clock=clock)
    assert [c.request.headers["X-Attempt"] for c in transport.calls] == ["1", "2"]


def test_failed_responses_are_closed_before_the_next_attempt() -> None:
    """A discarded attempt's body is drained (so its connection can be reused)."""
    first = response(503, b"x" * 100)
    go(NO_BUDGET, first, response(200))
    assert first._content_consumed  # type: ignore[attr-defined]
    assert first.raw.read() == b""


# -- hooks and options -------------------------------------------------------------------------


def test_on_retry_hooks_get_details() -> None:
    """Hooks receive a RetryDetails per scheduled retry, with no secrets."""
    seen: list[RetryDetails] = []
    go(
        Retry(budget=None, on_retry=(seen.append,), jitter="none", initial_delay=1),
        response(503, headers={"X-Request-ID": "req_9"}),
        response(200),
    )
    assert len(seen) == 1
    detail = seen[0]
    assert (detail.attempt, detail.wait, detail.reason) == (1, 1.0, "status 503")
    assert detail.request_id == "req_9"
    assert detail.url == POST
    assert detail.method == "GET"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int from 1 to 100"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"initial_delay": -1}, "initial_delay must be from 0 to 3600"),
        ({"multiplier": 0.5}, "multiplier must be from 1.0 to 10.0"),
        ({"max_delay": 0.1, "initial_delay": 1}, "max_delay must be from 1"),
        ({"jitter": "wild"}, "jitter must be one of"),
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"timeout": float("nan")}, "timeout must be a number"),
        ({"attempt_timeout": -2}, "attempt_timeout"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"idempotent_methods": "GET"}, "idempotent_methods"),
        ({"idempotency_header": ""}, "idempotency_header"),
        ({"classify": 3}, "classify"),
        ({"budget": 3}, "budget must be a RetryBudget"),
        ({"on_retry": (1,)}, "on_retry"),
    ],
)
def test_bad_options_fail_when_built(options: dict[str, Any], message: str) -> None:
    """Every out-of-range option fails at construction with a message naming it."""
    with pytest.raises(ConfigurationError, match=message):
        Retry(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ratio": 2}, "ratio must be a number from 0.0 to 1.0"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_budget_options_fail(options: dict[str, Any], message: str) -> None:
    """RetryBudget validates its options too."""
    with pytest.raises(ConfigurationError, match=message):
        RetryBudget(**options)


def test_timedeltas_are_converted_once() -> None:
    """timedelta options become float seconds; the policy is frozen."""
    retry = Retry(initial_delay=timedelta(milliseconds=250), timeout=timedelta(minutes=2))
    assert retry.initial_delay == 0.25
    assert retry.timeout == 120.0
    with pytest.raises(AttributeError):
        retry.max_attempts = 9  # type: ignore[misc]


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    statuses=st.lists(st.sampled_from([429, 500, 503, 504]), min_size=1, max_size=8),
    retry_after=st.lists(
        st.one_of(st.none(), st.floats(0, 100), st.sampled_from(["junk", "-3"])),
        min_size=8,
        max_size=8,
    ),
    jitter=st.sampled_from(["full", "equal", "decorrelated", "none"]),
    initial=st.floats(0.0, 5.0),
    cap=st.floats(5.0, 60.0),
    timeout=st.one_of(st.none(), st.floats(0.5, 200.0)),
    seed=st.integers(0, 1000),
)
def test_waits_are_bounded_and_never_pass_the_deadline(
    statuses: list[int],
    retry_after: list[float | str | None],
    jitter: str,
    initial: float,
    cap: float,
    timeout: float | None,
    seed: int,
) -> None:
    """Each wait is in [0, cap] or is the server's Retry-After; the sum fits the deadline."""
    outcomes = []
    server_waits = []
    for status, ra in zip(statuses, retry_after, strict=False):
        headers = {} if ra is None else {"Retry-After": str(ra)}
        outcomes.append(response(status, headers=headers))
        server_waits.append(ra if isinstance(ra, float) else None)
    outcomes.append(response(200))
    retry = Retry(
        jitter=jitter,  # type: ignore[arg-type]
        initial_delay=initial,
        max_delay=cap,
        timeout=timeout,
        max_attempts=10,
        budget=None,
    )
    clock = FakeClock(seed=seed)
    _, clock, _ = go(retry, *outcomes, clock=clock)
    for index, wait in enumerate(clock.sleeps):
        server = server_waits[index] if index < len(server_waits) else None
        if server is not None:
            assert wait == pytest.approx(server)
        else:
            assert 0.0 <= wait <= cap
    if timeout is not None:
        assert sum(clock.sleeps) <= timeout + 1e-9

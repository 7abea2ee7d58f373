"""Concurrency soak: 32 threads share one session and one pipeline under a fault mix.

The fake server answers a random mix of successes, latency, 429, 500, 503 and
connection resets while 32 threads call it through the full Vinci preset for a bounded
time (2 s in CI, 60 s with ``./dev soak``). The run must end within its bound (no
deadlock), every logical call must end in a response or an `APIError`, the pool must
never discard a connection, the breaker's and the retry budget's counters must add up
exactly to what the server saw, and no file descriptor may leak.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import random
import threading
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from requests_resilience import (
    APIError,
    APIReadTimeoutError,
    Call,
    CircuitBreaker,
    CircuitOpenError,
    Next,
    Pipeline,
    PipelineAdapter,
    PolicyLike,
    RateLimitError,
    Retry,
    attempts_of,
)
from requests_resilience._pipeline import Attempt
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import DEFAULT, mount
from tests.reliability.conftest import KEY, WALL

THREADS = 32
CI_SECONDS = 2.0
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
#: How long after its end the run may take to wind down before it counts as a deadlock.
GRACE = 20.0
BALANCE = "/billing/balance"
GENERATE = "/generate/text-to-video"
#: Faults after which the server drops the connection.
CONNECTION_KILLERS = frozenset({"reset", "reset_mid_body", "truncated"})
#: Attempts after which the client drops the connection.
TIMEOUTS = frozenset({"APIReadTimeoutError", "APIConnectTimeoutError"})
#: The fault mix, by weight: mostly successes, some slow, the rest failures.
MIX: tuple[tuple[Fault, int], ...] = (
    (Fault.delay(0), 50),
    (Fault.delay(0.005), 10),
    (Fault.status(429, retry_after="0"), 8),
    (Fault.status(429), 4),
    (Fault.status(500), 6),
    (Fault.status(503, retry_after="0.5"), 6),
    (Fault.body(502, "<html>bad gateway</html>", content_type="text/html"), 4),
    (Fault.reset(), 6),
    (Fault.reset(after=True), 3),
    (Fault.reset_mid_body(), 3),
)


class CountingPolicy:
    """Counts every attempt between the retry and the breaker, and those never sent.

    An attempt is not sent when the breaker refuses it (`CircuitOpenError`) or the
    preset's rate limit refuses it locally (a `RateLimitError` without a response).
    One that the call's deadline cut before the response's head arrived
    (`APIReadTimeoutError` without a response) was written, but the server may not
    have read it yet when the client gave up: it is counted as `cut`.
    """

    name = "counting"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts = 0
        self.refused = 0
        self.refused_locally = 0
        self.cut = 0

    def send(self, call: Call, next: Next) -> requests.Response:
        """Count the attempt, and whether something refused it before the wire."""
        with self._lock:
            self.attempts += 1
        try:
            return next(call)
        except CircuitOpenError:
            with self._lock:
                self.refused += 1
            raise
        except RateLimitError as exc:
            if exc.response is None:
                with self._lock:
                    self.refused_locally += 1
            raise
        except APIReadTimeoutError as exc:
            if exc.response is None:
                with self._lock:
                    self.cut += 1
            raise


@dataclass
class SoakReport:
    """What the threads saw, and what the server and the policies counted."""

    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: list[BaseException] = field(default_factory=list)
    histories: list[tuple[Attempt, ...]] = field(default_factory=list)
    calls: int = 0
    alive_after_join: int = 0
    pool_warnings: list[str] = field(default_factory=list)
    errors: list[APIError] = field(default_factory=list)
    adapter: PipelineAdapter | None = None
    counter: CountingPolicy = field(default_factory=CountingPolicy)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _history(attempts: tuple[Attempt, ...]) -> tuple[Attempt, ...]:
    return attempts or (Attempt(number=1, status_code=200),)


def run_soak(
    server: FakeVinciServer,
    seconds: float,
    *,
    threads: int = THREADS,
    tracing: PolicyLike | None = None,
    seed: int = 7,
    keep_errors: bool = False,
    mix: tuple[tuple[Fault, int], ...] = MIX,
) -> SoakReport:
    """Run `threads` workers against `server` for `seconds`; see the module docstring."""
    report = SoakReport()
    clock = FakeClock(wall=WALL, seed=seed)
    lock = threading.Lock()
    stop = threading.Event()
    faults = [fault for fault, _ in mix]
    weights = [weight for _, weight in mix]
    pool_log = logging.getLogger("urllib3.connectionpool")
    collect = _Collect()
    pool_log.addHandler(collect)
    session = requests.Session()
    try:
        mount(
            session,
            api_key=KEY,
            base_url=server.base_url,
            clock=clock,
            tracing=DEFAULT if tracing is None else tracing,
            extra_policies=[report.counter],
            pool_maxsize=threads,
        )
        adapter = session.get_adapter(server.base_url + "/")
        assert isinstance(adapter, PipelineAdapter)
        report.adapter = adapter

        def one_call(rng: random.Random) -> None:
            server.script(rng.choices(faults, weights)[0])
            try:
                if rng.random() < 0.7:
                    response = session.get(server.url(BALANCE), timeout=5)
                else:
                    response = session.post(
                        server.url(GENERATE), json={"prompt": "soak"}, timeout=5
                    )
                response.close()
                history = _history(attempts_of(response))
                outcome = str(response.status_code)
            except APIError as exc:
                history = exc.history or (Attempt(number=1, error=type(exc).__name__),)
                outcome = type(exc).__name__
                if keep_errors:
                    with lock:
                        report.errors.append(exc)
            with lock:
                report.calls += 1
                report.outcomes[outcome] += 1
                report.histories.append(history)

        def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while not stop.is_set():
                try:
                    one_call(rng)
                except BaseException as exc:  # anything but an APIError is a finding
                    with lock:
                        report.unexpected.append(exc)
                    return

        workers = [
            threading.Thread(target=worker, args=(i,), name=f"soak-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in workers:
            thread.start()
        stop.wait(seconds)
        stop.set()
        deadline = time.monotonic() + GRACE
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        report.alive_after_join = sum(thread.is_alive() for thread in workers)
    finally:
        stop.set()
        session.close()
        pool_log.removeHandler(collect)
    report.pool_warnings = collect.messages
    return report


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled_fds(target: int, wait: float = 3.0) -> int:
    """The open descriptors, once they come down to `target` (or after `wait`)."""
    deadline = time.monotonic() + wait
    count = _fds()
    while count > target and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
        count = _fds()
    return count


def check_soak(seconds: float) -> SoakReport:
    """Run the soak on a server of its own and assert every invariant."""
    gc.collect()
    fds_before = _fds()
    server = FakeVinciServer(api_keys=(KEY,), balance_usd=1_000_000.0)
    with server:
        report = run_soak(server, seconds)
        wire = server.request_count
        requests_seen = server.requests
    fds_after = _settled_fds(fds_before)

    # No deadlock: every thread ended within the grace period after the stop.
    assert report.alive_after_join == 0, f"{report.alive_after_join} threads still running"
    # Every logical call ended in a response or a typed error.
    assert report.unexpected == []
    assert report.calls == sum(report.outcomes.values()) > THREADS
    assert report.outcomes["200"] > 0
    assert len(report.outcomes) > 2, f"the mix produced too few outcomes: {report.outcomes}"
    # The pool never discarded a connection, and the server saw no more than that.
    assert report.pool_warnings == []
    # A connection is replaced only after the server broke it, or after the client gave
    # up waiting on it: the fake clock runs ahead of real time (32 threads sleep on it),
    # so a call near its 120 s deadline gets a read timeout cut to what is left.
    attempts = [a for history in report.histories for a in history]
    killed = sum(1 for r in requests_seen if r.fault in CONNECTION_KILLERS)
    timed_out = sum(1 for a in attempts if a.error in TIMEOUTS)
    connections = {r.connection_id for r in requests_seen}
    assert len(connections) <= THREADS + killed + timed_out
    # The counters add up to what the server saw.
    counter = report.counter
    assert sum(len(h) for h in report.histories) == counter.attempts
    refused = [a for a in attempts if a.error == CircuitOpenError.__name__]
    assert len(refused) == counter.refused
    local = [a for a in attempts if a.error == RateLimitError.__name__]
    assert len(local) == counter.refused_locally
    sent = counter.attempts - counter.refused - counter.refused_locally
    assert sent - counter.cut <= wire <= sent  # a cut attempt may not have been read
    assert report.adapter is not None
    policies = report.adapter.pipeline.policies
    (breaker,) = [p for p in policies if isinstance(p, CircuitBreaker)]
    (retry,) = [p for p in policies if isinstance(p, Retry)]
    (status,) = breaker.snapshot().values()
    assert status.sent == sent
    assert status.rejected == counter.refused
    failed = [a for a in attempts if _breaker_failure(a)]
    assert status.failed == len(failed)
    assert retry.budget is not None
    budget = retry.budget.snapshot()
    # The budget saw every answer: a success or a 4xx says the server is up.
    answered = [a for a in attempts if a.status_code is not None]
    up = [a for a in answered if a.status_code not in (408, 429, 500, 502, 503, 504)]
    assert budget["successes"] == len(up)
    # A retry keeps its token unless it succeeded or was refused locally (the breaker,
    # the rate limit); a retry after a breaker's refusal is the breaker's to ration and
    # takes no token.
    failed_retries = [
        a
        for history in report.histories
        for previous, a in itertools.pairwise(history)
        if _failed_retry(a) and previous.error != CircuitOpenError.__name__
    ]
    assert budget["spent"] == len(failed_retries)
    # No descriptor leaked.
    assert fds_after == fds_before
    return report


def _failed_retry(attempt: Attempt) -> bool:
    """A retry that kept its token: it reached the wire and did not succeed.

    A retry refused locally (an open breaker, the rate limit past the deadline) never
    reached the wire and gave its token back.
    """
    if attempt.status_code is not None:
        return attempt.status_code >= 400
    return attempt.error not in (CircuitOpenError.__name__, RateLimitError.__name__)


def _breaker_failure(attempt: Attempt) -> bool:
    if attempt.status_code is not None:
        return attempt.status_code >= 500
    return attempt.error not in (CircuitOpenError.__name__, RateLimitError.__name__)


def test_soak_ci() -> None:
    """32 threads for 2 s: no deadlock, typed outcomes, no pool discards, exact counts."""
    check_soak(CI_SECONDS)


@pytest.mark.soak
def test_soak_long() -> None:
    """The same soak for a minute (SOAK_SECONDS): selected by --soak (./dev soak)."""
    check_soak(SOAK_SECONDS)


def test_a_local_refusal_is_neither_sent_nor_a_probe_answer() -> None:
    """A rate limit's local refusal inside the breaker is not counted as sent, nor closes it.

    Found by the soak's counters: the breaker counted refusals of the preset's rate limit
    as successful calls, so a half-open probe refused locally closed the breaker.
    """
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, break_duration=1.0)
    refusal = RateLimitError("refused locally", retry_after=5.0)
    outcomes: list[requests.Response | BaseException] = [_server_error(), refusal]

    def transport(call: Call) -> requests.Response:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    handler = Pipeline(breaker, clock=clock).wrap(transport)
    call = Call(
        request=requests.Request("GET", "https://api.example.com/x").prepare(), clock=clock
    )
    handler(call)
    clock.advance(2.0)
    with pytest.raises(RateLimitError):
        handler(call)
    (status,) = breaker.snapshot().values()
    assert (status.state, status.sent, status.failed) == ("half_open", 1, 1)


def _server_error() -> requests.Response:
    response = requests.Response()
    response.status_code = 500
    response._content = b""
    return response


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")  # pragma: no cover - Linux only


@pytest.mark.soak
def test_soak_64_threads_holds_memory_and_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 threads, the full pipeline, four rounds: no error, memory and descriptors flat.

    The first round warms up (imports, pools, caches); over the last three the memory
    Python allocates (tracemalloc) must not grow by more than 1 MiB, nor a descriptor stay
    open. (The resident set is printed: it includes the C allocator's arenas for 64 new
    threads a round, which it keeps.)
    """
    # pytest keeps every log record of a test for its report: not the library's memory.
    monkeypatch.setattr(logging.getLogger("requests_resilience"), "propagate", False)
    monkeypatch.setattr(logging.getLogger("urllib3"), "propagate", False)
    seconds = SOAK_SECONDS / 4
    rss: list[int] = []
    traced: list[int] = []
    fds: list[int] = []
    tracemalloc.start()
    for round_ in range(4):
        with FakeVinciServer(api_keys=(KEY,), balance_usd=1_000_000.0) as server:
            report = run_soak(server, seconds, threads=64, seed=round_)
        assert report.alive_after_join == 0
        assert report.unexpected == []
        assert report.pool_warnings == []
        assert report.calls > 64
        gc.collect()
        rss.append(_rss_bytes())
        traced.append(tracemalloc.get_traced_memory()[0])
        fds.append(_settled_fds(fds[0] if fds else _fds()))
    tracemalloc.stop()
    print(f"soak 64 threads: traced {traced}, resident {rss}, descriptors {fds}")
    growth = traced[-1] - traced[1]
    assert growth < 1024 * 1024, f"Python memory grew by {growth / 2**20:.2f} MiB: {traced}"
    assert fds[-1] <= fds[0], f"descriptors: {fds}"

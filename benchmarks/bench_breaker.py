"""The circuit breaker: threads must not wait on each other, and an outage must cost little.

Against the fake Vinci server on loopback.

Scenarios:
  throughput  the server takes 100 ms per request; 1 thread, then 16 threads sharing one
              Session, each sending requests back to back: throughput and the speed-up of
              16 threads over 1, for our breaker (mounted in the pipeline), no breaker at
              all, and ``pybreaker.CircuitBreaker.call()`` around ``session.get`` (its lock
              is held for the whole call, so threads run one at a time).
  outage      the server answers 503 for 4 s while 8 threads share one Session, each
              starting a logical call every 20 ms (or as soon as its last one ends): requests
              that reached the server per logical call, and the calls' median duration, for a
              retry alone (4 attempts, backoff from 20 ms, 1 s deadline per call), the retry
              with the breaker inside it (break 2 s: in its last second the retry waits for
              the probe, as its deadline allows), and the breaker alone.

Run: ``./dev bench breaker`` (or ``python -m benchmarks breaker``, or this file).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pybreaker
import requests
import structlog

from benchmarks._common import median, table, write
from requests_resilience import APIKeyAuth, Pipeline, Retry, StatusErrors, mount
from requests_resilience._breaker import CircuitBreaker
from requests_resilience.testing import FakeVinciServer

PATH = "/billing/balance"
LATENCY = 0.1
THREADS = 16
PER_THREAD = 12
PYBREAKER_PER_THREAD = 3
OUTAGE_THREADS = 8
OUTAGE_SECONDS = 4.0
CALL_EVERY = 0.02


def _session(server: FakeVinciServer, *policies: Any) -> requests.Session:
    session = requests.Session()
    pipeline = Pipeline(StatusErrors(), *policies, APIKeyAuth(server.api_key))
    mount(session, server.base_url + "/", pipeline, pool_maxsize=THREADS * 2)
    return session


def _run_threads(threads: int, per_thread: int, send: Callable[[], None]) -> float:
    """Seconds for `threads` threads to each call `send` `per_thread` times, all at once."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(per_thread):
                send()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def _throughput_of(name: str, send: Callable[[], None], per_thread: int) -> dict[str, Any]:
    _run_threads(THREADS, 1, send)  # warm up: open the connections
    one = _run_threads(1, per_thread, send)
    many = _run_threads(THREADS, per_thread, send)
    single = per_thread / one
    multi = THREADS * per_thread / many
    return {
        "client": name,
        "requests_1_thread": per_thread,
        "seconds_1_thread": round(one, 3),
        "per_second_1_thread": round(single, 2),
        "requests_16_threads": THREADS * per_thread,
        "seconds_16_threads": round(many, 3),
        "per_second_16_threads": round(multi, 2),
        "speedup": round(multi / single, 2),
    }


def throughput() -> list[dict[str, Any]]:
    """16 threads vs 1 through one Session, 100 ms per request."""
    results = []
    with FakeVinciServer() as server:
        server.set_latency(LATENCY)
        url = server.url(PATH)

        breaker = CircuitBreaker()
        with _session(server, breaker) as session:

            def ours() -> None:
                session.get(url, timeout=10).close()

            results.append(_throughput_of("requests-resilience CircuitBreaker", ours, PER_THREAD))
            assert breaker.state(f"http://127.0.0.1:{server.port}") == "closed"

        with _session(server) as session:

            def bare() -> None:
                session.get(url, timeout=10).close()

            results.append(_throughput_of("no breaker", bare, PER_THREAD))

        with _session(server) as session:
            guard = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

            def guarded() -> None:
                guard.call(session.get, url, timeout=10).close()

            results.append(
                _throughput_of("pybreaker CircuitBreaker.call()", guarded, PYBREAKER_PER_THREAD)
            )
    return results


def _outage_of(name: str, retry: Retry | None, breaker: CircuitBreaker | None) -> dict[str, Any]:
    with FakeVinciServer() as server:
        policies = [p for p in (retry, breaker) if p is not None]
        url = server.url(PATH)
        durations: list[float] = []
        lock = threading.Lock()
        with _session(server, *policies) as session:
            server.outage(OUTAGE_SECONDS + 5.0)
            stop_at = time.monotonic() + OUTAGE_SECONDS

            def worker() -> None:
                next_start = time.monotonic()
                while next_start < stop_at:
                    began = time.perf_counter()
                    with contextlib.suppress(requests.RequestException):
                        session.get(url, timeout=5).close()
                    took = time.perf_counter() - began
                    with lock:
                        durations.append(took)
                    # Every CALL_EVERY seconds; a call that overran is not made up for.
                    next_start = max(next_start + CALL_EVERY, time.monotonic())
                    time.sleep(max(0.0, next_start - time.monotonic()))

            pool = [threading.Thread(target=worker) for _ in range(OUTAGE_THREADS)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        calls = len(durations)
        sent = server.request_count
        row: dict[str, Any] = {
            "client": name,
            "logical_calls": calls,
            "requests_to_server": sent,
            "requests_per_call": round(sent / calls, 3) if calls else None,
            "median_call_ms": round(median(durations) * 1000, 3),
        }
        if breaker is not None:
            status = breaker.status(f"http://127.0.0.1:{server.port}")
            row["breaker_opened"] = status.opened
            row["breaker_rejected"] = status.rejected
        return row


def outage() -> list[dict[str, Any]]:
    """Requests per logical call while the server is down, with and without the breaker."""

    def retry() -> Retry:
        return Retry(max_attempts=4, initial_delay=0.02, max_delay=0.2, timeout=1.0, budget=None)

    def breaker() -> CircuitBreaker:
        return CircuitBreaker(failure_ratio=0.5, minimum_calls=10, window=10, break_duration=2.0)

    return [
        _outage_of("Retry, no breaker", retry(), None),
        _outage_of("Retry + CircuitBreaker", retry(), breaker()),
        _outage_of("CircuitBreaker, no retry", None, breaker()),
    ]


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Drop structlog events below CRITICAL for a while, then restore the configuration."""
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**previous)


SCENARIOS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "throughput": throughput,
    "outage": outage,
}


def main(selected: list[str] | None = None) -> dict[str, Any]:
    """Run the scenarios, print tables, write results/breaker.json."""
    names = selected or list(SCENARIOS)
    out: dict[str, Any] = {
        "settings": {
            "latency_s": LATENCY,
            "threads": THREADS,
            "outage_threads": OUTAGE_THREADS,
            "outage_seconds": OUTAGE_SECONDS,
            "call_every_s": CALL_EVERY,
        }
    }
    for name in names:
        with _quiet_logs():  # thousands of retries and breaker events otherwise
            out[name] = SCENARIOS[name]()
        print(f"  measured {name}", flush=True)
    if "throughput" in out:
        print()
        print(
            table(
                ["client (100 ms server)", "1 thread req/s", "16 threads req/s", "speed-up"],
                [
                    [
                        r["client"],
                        r["per_second_1_thread"],
                        r["per_second_16_threads"],
                        f"{r['speedup']:.1f}x",
                    ]
                    for r in out["throughput"]
                ],
            )
        )
    if "outage" in out:
        print()
        print(
            table(
                ["client (server down)", "logical calls", "requests", "req/call", "median ms"],
                [
                    [
                        r["client"],
                        r["logical_calls"],
                        r["requests_to_server"],
                        f"{r['requests_per_call']:.3f}",
                        r["median_call_ms"],
                    ]
                    for r in out["outage"]
                ],
            )
        )
    path = write("breaker", out)
    print(f"\nwritten to {path}")
    return out


if __name__ == "__main__":
    main()

"""Test your application's resilience: the Vinci client with chaos injected.

Twelve jobs are created and waited for through `VinciClient` and the Vinci preset,
with three chaos policies at the innermost end of the pipeline (the preset's
``chaos=`` seam, after tracing): connection failures, injected 503s and added
latency, each on a share of the attempts. Then a simulated outage (a fourth policy,
its switch a function) fails every attempt while the app reads its balance: a
`Fallback` (the preset's ``fallback=`` seam, outermost) answers with the last good
balance, marked.

The pipeline's clock is a seeded `FakeClock`, so every wait is instant and the same
attempts are hit on every run: the numbers printed are reproducible. Against a
staging API, use the real clock and switch chaos on with a flag of your own
(``enabled=lambda call: os.environ.get("CHAOS") == "on"``).

    python examples/chaos_demo.py
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import requests

from requests_resilience import (
    APIConnectionError,
    APIError,
    Call,
    ChaosFault,
    ChaosLatency,
    ChaosOutcome,
    CircuitOpenError,
    Fallback,
    Next,
    RetryBudgetExhaustedError,
    ServerError,
    fallback_of,
    make_response,
)
from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import VinciClient, build_pipeline

BALANCE = "/billing/balance"
JOBS = 12


class EventCounter(logging.Handler):
    """Counts the library's events (``record.requests_resilience`` holds their fields)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.events: Counter[str] = Counter()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "requests_resilience", None)
        if event is not None:
            self.events[event["event"]] += 1
            self.fields.append(event)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [f for f in self.fields if f["event"] == name]


class LastGoodBalance:
    """A ten-line policy: remember the last balance the API returned (and answer with it)."""

    name = "last_good_balance"

    def __init__(self) -> None:
        self.body: dict[str, Any] = {"balance_usd": 0.0, "total_spent_usd": 0.0}

    def send(self, call: Call, next: Next) -> requests.Response:
        response = next(call)
        if (call.request.url or "").endswith(BALANCE) and response.status_code == 200:
            self.body = response.json()
        return response

    def answer(self, call: Call, outcome: requests.Response | BaseException) -> requests.Response:
        """The fallback: the last good balance."""
        return make_response(call, json=self.body)

    def __repr__(self) -> str:
        return f"LastGoodBalance(balance_usd={self.body['balance_usd']})"


def balance_unavailable(outcome: requests.Response | BaseException) -> bool:
    """Fallback only for balance reads, and only when the API could not answer."""
    request = getattr(outcome, "request", None)
    unavailable = (ServerError, APIConnectionError, CircuitOpenError, RetryBudgetExhaustedError)
    return (
        isinstance(outcome, unavailable)
        and request is not None
        and (request.url or "").endswith(BALANCE)
    )


def main() -> None:
    counter = EventCounter()
    logging.getLogger("requests_resilience").addHandler(counter)
    clock = FakeClock(seed=19)
    outage = threading.Event()
    last_good = LastGoodBalance()
    with FakeVinciServer(polls_to_complete=2) as server:
        chaos = [
            ChaosFault(injection_rate=0.15, enabled=True),
            ChaosOutcome(injection_rate=0.10, enabled=True),
            ChaosLatency(latency=0.8, injection_rate=0.20, enabled=True),
            ChaosFault(injection_rate=1.0, enabled=lambda call: outage.is_set(), name="outage"),
        ]
        pipeline = build_pipeline(
            api_key=server.api_key,
            clock=clock,
            rate_limit=None,  # the fake server has no rate limit; keep the run short
            extra_policies=(last_good,),  # sees every attempt, inside the retry
            fallback=Fallback(on=balance_unavailable, response=last_good.answer),  # outermost
            chaos=chaos,  # innermost, after tracing
        )
        print(pipeline.describe())
        with VinciClient(base_url=server.base_url, pipeline=pipeline, clock=clock) as client:
            jobs: Counter[str] = Counter()
            for index in range(JOBS):
                try:
                    job = client.text_to_video(f"chaos job {index}", duration_seconds=5)
                    client.wait(job, timeout=600, poll_interval=1.0)
                except APIError as exc:
                    jobs[type(exc).__name__] += 1
                else:
                    jobs["completed"] += 1
            injected = Counter(f["kind"] for f in counter.of("chaos_injected"))
            latency = sum(f.get("latency", 0.0) for f in counter.of("chaos_injected"))
            retries = Counter(f["reason"] for f in counter.of("retry_scheduled"))
            served = server.request_count
            print(
                f"jobs: {jobs['completed']} of {JOBS} completed, {JOBS - jobs['completed']} lost"
            )
            print(
                f"injected faults: {injected['fault']} connection failures, "
                f"{injected['outcome']} 503s, {injected['latency']} delays "
                f"({latency:.1f} s of added latency)"
            )
            print(f"retries: {sum(retries.values())} ({_counts(retries)})")
            print(f"server: {served} requests received, {server.jobs_created} jobs created")

            clock.advance(60.0)  # a quiet minute later, the API goes down
            before = len(counter.of("chaos_injected"))
            outage.set()
            reads = [client.session.get(server.url(BALANCE)) for _ in range(4)]
            outage.clear()
        marked = [fallback_of(r) for r in reads]
        during = counter.of("chaos_injected")[before:]
        failed = sum(f["kind"] in ("fault", "outcome") for f in during)
        opened = [f["new_state"] for f in counter.of("breaker_state_changed")].count("open")
        reasons = Counter(m.reason for m in marked if m is not None)
        print(
            f"outage: {failed} attempts failed, the breaker opened {opened} times (once, then "
            f"after each failed half-open probe); {len(reads)} balance reads, "
            f"{sum(reasons.values())} answered by the fallback ({_counts(reasons)})"
        )
        print(
            f"fallback balance: ${reads[-1].json()['balance_usd']:.2f} (the last good one), "
            f"server requests during the outage: {server.request_count - served}"
        )
        print(f"virtual time waited: {clock.slept:.1f} s (real waiting: none)")


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in sorted(counts.items())) or "none"


if __name__ == "__main__":
    main()

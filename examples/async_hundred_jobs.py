"""100 Vinci jobs, created and waited concurrently in one event loop, through faults.

Runs against the embedded fake Vinci server, so it needs no key and no network:

    python examples/async_hundred_jobs.py

Each job is one task: ``await client.text_to_video(...)`` then ``await client.wait(job)``,
all 100 gathered at once on one `AsyncVinciClient`. The server misbehaves meanwhile:

- three ``429 Too Many Requests`` with ``Retry-After: 0.05`` on job creation: the
  server refused without acting, so `Retry` waits what it says and re-sends the POST;
- one ``502`` on job creation: the outcome of a paid POST is unknown (the server may
  have created the job), so it is *not* re-sent; that job fails with `ServerError`;
- a burst of ``500``/``503`` on status polls: a GET is safe to repeat, so it is retried;
- a 0.3 s outage (every request gets ``503``) while the jobs are being polled;
- three jobs that the server ends ``failed`` (`JobFailedError`).

What the run checks, and prints:

- every job completes or fails with a typed error of the library (an `APIError`);
- no paid POST is served twice for one job: per prompt, at most one ``POST /generate``
  reached the endpoint (the refused 429s never did), and the server charged exactly
  the jobs the client knows of;
- the event loop never stalls: a heartbeat task ticks every 5 ms and records the
  longest gap between ticks (real time, since a stall is real time). The library never
  blocks the loop (no sync sleep, socket or Redis call); what the gap still shows is
  the loop being busy: 100 tasks' own work, the GIL shared with the fake server's
  threads in this same process, and now and then a full garbage collection. Expect
  10 to 40 ms on a quiet machine, more on a loaded one. The script prints the figure;
  `tests/test_async_hundred_jobs.py` bounds it.

The timings are shortened for the fake server (polls every 50 ms, a 0.1 s breaker
break); against the real API keep the preset's (``AsyncVinciClient()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

from requests_resilience import APIError, CircuitBreaker, Pipeline, Retry
from requests_resilience.testing import FakeVinciServer, Fault
from requests_resilience.vinci import AsyncVinciClient, JobStatus, build_pipeline

JOBS = 100
TEXT_TO_VIDEO = "/generate/text-to-video"
TICK = 0.005  # the heartbeat's period, seconds
STALL = 0.050  # a gap longer than this between two ticks is a stall
CREATING = 16  # paid POSTs in flight at once, at most


@dataclass
class Report:
    """What a run saw: outcomes, POSTs per job, jobs charged, the longest loop gap."""

    outcomes: Counter[str] = field(default_factory=Counter)
    posts_per_job: Counter[int] = field(default_factory=Counter)  # attempts -> jobs
    served_per_job: Counter[int] = field(default_factory=Counter)  # served POSTs -> jobs
    faults: Counter[str] = field(default_factory=Counter)  # fault kind -> requests
    balance_usd: float = 0.0  # before the jobs
    jobs_created: int = 0
    jobs_known: int = 0  # jobs the client got a request_id for
    max_gap: float = 0.0  # seconds between two heartbeat ticks, at most
    ticks: int = 0
    late_ticks: int = 0  # ticks that came more than STALL after the previous one
    seconds: float = 0.0


class Heartbeat:
    """A task that ticks every `TICK` seconds and records the longest gap between ticks.

    A gap much longer than `TICK` means something held the event loop: a blocking
    call (a sync sleep, a sync socket, a lock) in a coroutine.
    """

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self.late = 0  # gaps over 50 ms
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            self.late += now - last > STALL
            last = now

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def script_faults(server: FakeVinciServer, failed_jobs: int) -> None:
    """Queue the faults that do not depend on time (the outage is started later)."""
    server.script(
        Fault.rate_limited(retry_after=0.05),
        Fault.rate_limited(retry_after=0.05),
        Fault.rate_limited(retry_after=0.05),
        Fault.status(502),
        path=TEXT_TO_VIDEO,
        method="POST",
    )
    server.script(
        *[Fault.status(500), Fault.status(503)] * 4,  # the 5xx burst, on polls
        path="/status/*",
    )
    server.fail_next_jobs(failed_jobs, error="Content policy violation")


def pipeline_for(server: FakeVinciServer) -> Pipeline:
    """The preset with timings for the fake server: fast backoff, a short breaker break.

    The preset's rate limit (10 requests a minute, the API's default for a new key) is
    left out: 100 jobs under it take ten minutes, not seconds.
    """
    return build_pipeline(
        api_key=server.api_key,
        retry=Retry(max_attempts=8, initial_delay=0.02, max_delay=0.2, timeout=30.0),
        breaker=CircuitBreaker(
            failure_ratio=0.5, minimum_calls=20, window=1.0, break_duration=0.1
        ),
        rate_limit=None,
    )


async def run(server: FakeVinciServer, jobs: int = JOBS, failed_jobs: int = 3) -> Report:
    """Create and wait for `jobs` jobs concurrently on one client; report what happened."""
    report = Report()
    script_faults(server, failed_jobs)
    known: list[str] = []
    created = [0]  # creation attempts ended, successful or not

    creating = asyncio.Semaphore(CREATING)
    all_created = asyncio.Event()

    async def one(client: AsyncVinciClient, i: int) -> JobStatus:
        try:
            async with creating:
                job = await client.text_to_video(f"clip {i:03d}", duration_seconds=2)
        finally:
            created[0] += 1
            if created[0] == jobs:
                all_created.set()
        known.append(job.request_id)
        return await client.wait(job, timeout=30, poll_interval=0.05, max_poll_interval=0.2)

    async def outage_soon() -> None:
        # While the jobs are polled: a GET is retried through it (waiting Retry-After).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_created.wait(), timeout=5.0)
        server.outage(0.3, retry_after="0.1")

    started = time.perf_counter()
    async with AsyncVinciClient(
        base_url=server.base_url,
        pipeline=pipeline_for(server),
        max_concurrency=jobs,
        pool_maxsize=32,
    ) as client:
        # One request before the clock starts: the first one connects and imports
        # httpx's network backend, a one-time cost of a few tens of milliseconds.
        report.balance_usd = (await client.balance()).balance_usd
        server.reset_stats()
        with Heartbeat() as heartbeat:
            outage = asyncio.create_task(outage_soon())
            results = await asyncio.gather(
                *(one(client, i) for i in range(jobs)), return_exceptions=True
            )
            await outage
    report.seconds = time.perf_counter() - started
    report.max_gap = heartbeat.max_gap
    report.ticks, report.late_ticks = heartbeat.ticks, heartbeat.late
    for result in results:
        if isinstance(result, JobStatus):
            report.outcomes[result.status] += 1
        elif isinstance(result, APIError):
            report.outcomes[type(result).__name__] += 1
        else:  # not a typed error of the library: let it surface
            raise result
    posts = [r for r in server.requests if r.method == "POST" and r.path == TEXT_TO_VIDEO]
    attempts = Counter(r.json()["prompt"] for r in posts)
    served = Counter(r.json()["prompt"] for r in posts if r.fault is None)
    report.posts_per_job = Counter(attempts.values())
    report.served_per_job = Counter(served.get(f"clip {i:03d}", 0) for i in range(jobs))
    report.faults = Counter(r.fault for r in server.requests if r.fault is not None)
    report.jobs_created = server.jobs_created
    report.jobs_known = len(known)
    return report


def main() -> Report:
    """Run the 100 jobs against a fresh fake server, print the figures, check them."""
    with FakeVinciServer(polls_to_complete=3) as server:
        report = asyncio.run(run(server))
    outcomes = ", ".join(f"{name}: {count}" for name, count in sorted(report.outcomes.items()))
    faults = ", ".join(f"{kind}: {count}" for kind, count in sorted(report.faults.items()))
    print(f"balance before: ${report.balance_usd:.2f}; requests faulted ({faults})")
    print(f"jobs: {sum(report.outcomes.values())} in {report.seconds:.2f} s ({outcomes})")
    print(f"POST attempts per job: {dict(sorted(report.posts_per_job.items()))}")
    print(f"POSTs served per job: {dict(sorted(report.served_per_job.items()))}")
    print(f"jobs charged: {report.jobs_created}, jobs the client knows: {report.jobs_known}")
    print(
        f"max event-loop gap: {report.max_gap * 1000:.1f} ms "
        f"({report.late_ticks} of {report.ticks} ticks over {STALL * 1000:.0f} ms; every 5 ms)"
    )
    assert sum(report.outcomes.values()) == JOBS
    assert max(report.served_per_job) <= 1, "a paid POST was served twice for one job"
    assert report.jobs_created == report.jobs_known, "a job was charged but not known"
    return report


if __name__ == "__main__":
    main()

"""AsyncVinciClient against the fake server over loopback, driven by asyncio.run()."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from requests import Response

from requests_resilience import (
    APIError,
    AsyncNext,
    AuthenticationError,
    Call,
    CircuitBreaker,
    CircuitOpenError,
    InsufficientBalanceError,
    Next,
    RateLimitError,
    Retry,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import (
    AsyncVinciClient,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    VinciClient,
    VinciInputError,
    build_pipeline,
)

from .conftest import PNG

T = TypeVar("T")


def run(
    server: FakeVinciServer,
    clock: FakeClock,
    body: Callable[[AsyncVinciClient], Awaitable[T]],
    **options: object,
) -> T:
    """Run `body` with a client of `server` on `clock` (no retry, breaker or rate limit)."""
    pipeline = options.pop("pipeline", None) or build_pipeline(
        api_key=server.api_key, clock=clock, retry=None, breaker=None, rate_limit=None
    )

    async def main() -> T:
        async with AsyncVinciClient(
            base_url=server.base_url,
            pipeline=pipeline,  # type: ignore[arg-type]
            clock=clock,
            **options,  # type: ignore[arg-type]
        ) as client:
            return await body(client)

    return asyncio.run(main())


class InFlight:
    """A policy that counts the requests in flight at once (sync and async forms)."""

    name = "in_flight"

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def send(self, call: Call, next: Next) -> Response:
        return next(call)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.005)  # hold the slot a moment, as a slow network would
            return await next(call)
        finally:
            self.now -= 1


def test_generate_and_wait(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """A job is created, polled on the fake clock's schedule, and completes."""
    seen: list[tuple[str, float]] = []

    async def body(client: AsyncVinciClient) -> JobStatus:
        job = await client.text_to_video("A fox", duration_seconds=4)
        return await client.wait(job, on_progress=lambda s: seen.append((s.status, s.progress)))

    done = run(fake_vinci, clock, body)
    assert done.status == "completed"
    assert done.video_url is not None
    assert seen == [("pending", 0.0), ("processing", 50.0), ("completed", 100.0)]
    assert clock.sleeps == [5.0, 7.5]
    assert fake_vinci.count("GET", "/status/*") == 3


def test_every_endpoint_returns_the_sync_clients_types(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """image_to_video, status, balance, usage and the key endpoints, awaited."""

    async def body(client: AsyncVinciClient) -> list[object]:
        job = await client.image_to_video(PNG, "The cat waves", duration_seconds=2)
        key = await client.create_key("ci", rate_limit=20)
        keys = await client.list_keys()
        revoked = await client.revoke_key(key.key_id)
        return [
            job.status,
            (await client.status(job)).status,
            (await client.balance()).balance_usd,
            (await client.usage(days=7)).period_days,
            key.rate_limit,
            len(keys),
            revoked.key_id == key.key_id,
        ]

    assert run(fake_vinci, clock, body) == ["pending", "pending", 99.9, 7, 20, 2, True]


def test_ten_jobs_are_waited_concurrently(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """Ten jobs: polls overlap, and the fake clock moves as for one job, not ten."""
    in_flight = InFlight()
    pipeline = build_pipeline(
        api_key=fake_vinci.api_key,
        clock=clock,
        retry=None,
        breaker=None,
        rate_limit=None,
        extra_policies=[in_flight],
    )

    async def body(client: AsyncVinciClient) -> list[JobStatus]:
        jobs = [await client.text_to_video(f"clip {i}") for i in range(10)]
        start = clock.monotonic()
        results = await client.wait_all(jobs)
        assert clock.monotonic() - start == 12.5  # 5 + 7.5: one job's schedule
        return results

    results = run(fake_vinci, clock, body, pipeline=pipeline)
    assert [r.status for r in results] == ["completed"] * 10
    assert fake_vinci.count("GET", "/status/*") == 30  # three polls per job, no more
    assert in_flight.most > 1  # polls really overlapped
    assert clock.slept == 12.5


def test_max_concurrency_bounds_the_polls_in_flight(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """With max_concurrency=2, never more than two status polls are in flight."""
    in_flight = InFlight()
    pipeline = build_pipeline(
        api_key=fake_vinci.api_key,
        clock=clock,
        retry=None,
        breaker=None,
        rate_limit=None,
        extra_policies=[in_flight],
        tracing=None,
    )

    async def body(client: AsyncVinciClient) -> int:
        jobs = [await client.text_to_video(f"clip {i}") for i in range(6)]
        in_flight.most = 0
        return len(await client.wait_all(jobs))

    assert run(fake_vinci, clock, body, pipeline=pipeline, max_concurrency=2) == 6
    assert in_flight.most == 2


def test_a_local_402_sends_nothing(clock: FakeClock) -> None:
    """The pre-check refuses a job the balance cannot cover; no POST reaches the server."""
    with FakeVinciServer(balance_usd=0.30) as server:

        async def body(client: AsyncVinciClient) -> None:
            await client.text_to_video("first", duration_seconds=5)
            with pytest.raises(InsufficientBalanceError) as info:
                await client.text_to_video("second", duration_seconds=5)
            assert info.value.response is None

        run(server, clock, body)
        assert server.jobs_created == 1
        assert server.count("GET", "/billing/balance") == 1


def test_concurrent_jobs_fetch_the_balance_once(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """Five jobs created at once: one awaited balance fetch serves every reservation."""

    async def body(client: AsyncVinciClient) -> int:
        jobs = await asyncio.gather(*(client.text_to_video(f"c{i}") for i in range(5)))
        return len(jobs)

    assert run(fake_vinci, clock, body) == 5
    assert fake_vinci.count("GET", "/billing/balance") == 1
    assert fake_vinci.jobs_created == 5


def test_a_bad_key_is_an_authentication_error(clock: FakeClock) -> None:
    """A 401 raises AuthenticationError, as in the sync client."""
    with FakeVinciServer() as server:
        pipeline = build_pipeline(api_key="sk-wrong-key-123456", clock=clock, retry=None)

        async def body(client: AsyncVinciClient) -> None:
            with pytest.raises(AuthenticationError):
                await client.usage()

        run(server, clock, body, pipeline=pipeline)


def test_a_429_is_retried_after_its_wait(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """A 429 with Retry-After is waited out on the clock and retried; without retry, typed."""
    fake_vinci.script(Fault.status(429, retry_after="3"), path="/billing/usage")
    pipeline = build_pipeline(api_key=fake_vinci.api_key, clock=clock, rate_limit=None)

    async def body(client: AsyncVinciClient) -> int:
        return (await client.usage()).period_days

    assert run(fake_vinci, clock, body, pipeline=pipeline) == 30
    assert 3.0 in clock.sleeps
    fake_vinci.script(Fault.status(429, retry_after="3"), path="/billing/usage")

    async def no_retry(client: AsyncVinciClient) -> None:
        with pytest.raises(RateLimitError):
            await client.usage()

    run(fake_vinci, clock, no_retry)


def test_a_failed_job_and_a_timeout_are_typed(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """JobFailedError for a failed job, JobTimeoutError at the deadline, with request ids."""
    fake_vinci.fail_next_jobs(1, error="Content policy violation")

    async def body(client: AsyncVinciClient) -> list[JobStatus | APIError]:
        failing = await client.text_to_video("bad")
        slow = await client.text_to_video("slow")
        with pytest.raises(JobFailedError) as failed:
            await client.wait(failing)
        assert failed.value.error == "Content policy violation"
        with pytest.raises(JobTimeoutError) as late:
            await client.wait(slow, timeout=0.5, poll_interval=1, max_poll_interval=1)
        assert late.value.request_id == slow.request_id
        return await client.wait_all([failing, slow], timeout=1, return_exceptions=True)

    with_errors = run(fake_vinci, clock, body)
    assert [type(r) for r in with_errors] == [JobFailedError, JobStatus]


def test_input_is_checked_before_sending(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """The shared validation: VinciInputError, nothing sent."""

    async def body(client: AsyncVinciClient) -> None:
        with pytest.raises(VinciInputError):
            await client.text_to_video("   ")
        with pytest.raises(VinciInputError):
            await client.image_to_video(b"GIF89a", "x")

    run(fake_vinci, clock, body)
    assert fake_vinci.request_count == 0


@pytest.mark.fake_vinci(polls_to_complete=1000)
def test_cancelling_wait_all_cancels_every_task(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """A cancelled wait_all leaves no task behind, and the client closes cleanly."""

    async def main() -> None:
        pipeline = build_pipeline(
            api_key=fake_vinci.api_key, clock=clock, retry=None, breaker=None, rate_limit=None
        )
        client = AsyncVinciClient(base_url=fake_vinci.base_url, pipeline=pipeline, clock=clock)
        jobs = [await client.text_to_video(f"c{i}") for i in range(5)]
        before = asyncio.all_tasks()
        waiting = asyncio.ensure_future(client.wait_all(jobs, timeout=None))
        while fake_vinci.count("GET", "/status/*") < 10:
            await asyncio.sleep(0.001)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert asyncio.all_tasks() == before  # no poll task outlived the wait
        await client.aclose()
        assert client.http_client.is_closed

    asyncio.run(main())


def test_one_pipeline_shares_its_breaker_between_sync_and_async(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """Failures seen by the async client open the breaker the sync client then meets."""
    breaker = CircuitBreaker(failure_ratio=0.5, minimum_calls=2, window=60, break_duration=30)
    pipeline = build_pipeline(
        api_key=fake_vinci.api_key,
        clock=clock,
        retry=Retry(max_attempts=1),
        breaker=breaker,
        rate_limit=None,
    )
    fake_vinci.script(*[Fault.status(500)] * 2, path="/billing/usage")

    async def body(client: AsyncVinciClient) -> None:
        for _ in range(2):
            with pytest.raises(Exception, match="500"):
                await client.usage()

    run(fake_vinci, clock, body, pipeline=pipeline)
    sent = fake_vinci.request_count
    with (
        VinciClient(base_url=fake_vinci.base_url, pipeline=pipeline, clock=clock) as sync,
        pytest.raises(CircuitOpenError),
    ):
        sync.usage()
    assert fake_vinci.request_count == sent  # refused without a request

"""wait() and wait_all(): polling on the fake clock, deadlines, progress, failures."""

from __future__ import annotations

import pytest

from requests_resilience import ConfigurationError, NotFoundError
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import (
    Job,
    JobFailedError,
    JobStatus,
    JobTimeoutError,
    PollSchedule,
    VinciClient,
)


def test_wait_polls_until_completed(
    fake_vinci: FakeVinciServer, client: VinciClient, clock: FakeClock
) -> None:
    """Polls at once, then after 5 s and 7.5 s (backing off), and returns the video."""
    job = client.text_to_video("A fox")
    done = client.wait(job)
    assert done.status == "completed"
    assert done.video_url is not None
    assert clock.sleeps == [5.0, 7.5]
    assert fake_vinci.count("GET", "/status/*") == 3


def test_wait_accepts_a_request_id(client: VinciClient) -> None:
    """A request id string works as well as a Job."""
    job = client.text_to_video("A fox")
    assert client.wait(job.request_id).request_id == job.request_id


def test_progress_is_reported_for_every_poll(client: VinciClient) -> None:
    """on_progress sees pending 0%, processing 50%, completed 100%."""
    seen: list[tuple[str, float]] = []
    client.wait(
        client.text_to_video("A fox"), on_progress=lambda s: seen.append((s.status, s.progress))
    )
    assert seen == [("pending", 0.0), ("processing", 50.0), ("completed", 100.0)]


def test_the_poll_interval_backs_off_to_its_cap(
    fake_vinci: FakeVinciServer, client: VinciClient, clock: FakeClock
) -> None:
    """Waits grow by 1.5x per poll up to max_poll_interval."""
    fake_vinci.script(*[Fault.status(503)] * 5, path="/status/*")
    client.wait(client.text_to_video("A fox"), poll_interval=4, max_poll_interval=10)
    assert clock.sleeps == [4.0, 6.0, 9.0, 10.0, 10.0, 10.0, 10.0]


def test_jitter_shortens_waits() -> None:
    """A random draw takes up to `jitter` of the wait off, never more."""
    schedule = PollSchedule(poll_interval=10, max_poll_interval=10, jitter=0.2)
    assert schedule.delay(1, 0.0) == 10.0
    assert schedule.delay(1, 0.999) == pytest.approx(8.002)


def test_a_failed_job_raises_job_failed_error(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """A failed job raises JobFailedError with its request_id and the server's message."""
    fake_vinci.fail_next_jobs(1, error="Content policy violation")
    job = client.text_to_video("A fox")
    with pytest.raises(JobFailedError) as info:
        client.wait(job)
    assert info.value.request_id == job.request_id
    assert info.value.error == "Content policy violation"
    assert info.value.status.status == "failed"
    assert job.request_id in str(info.value)


@pytest.mark.fake_vinci(polls_to_complete=1000)
def test_the_deadline_raises_a_timeout_with_the_request_id(
    fake_vinci: FakeVinciServer, client: VinciClient, clock: FakeClock
) -> None:
    """Polls at 0, 5, 12.5 and, last, at the 20 s deadline; then JobTimeoutError."""
    job = client.text_to_video("A slow fox")
    start = clock.monotonic()
    with pytest.raises(JobTimeoutError) as info:
        client.wait(job, timeout=20)
    assert clock.monotonic() - start == 20.0
    assert clock.sleeps == [5.0, 7.5, 7.5]
    assert fake_vinci.count("GET", "/status/*") == 4
    error = info.value
    assert (error.request_id, error.timeout) == (job.request_id, 20.0)
    assert error.last_status is not None
    assert error.last_status.status == "processing"
    assert isinstance(error, TimeoutError)


def test_transient_poll_errors_do_not_end_the_wait(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """5xx answers and a reset connection while polling are polled through."""
    fake_vinci.script(Fault.status(502), Fault.reset(), Fault.status(503), path="/status/*")
    assert client.wait(client.text_to_video("A fox")).status == "completed"
    assert fake_vinci.count("GET", "/status/*") == 6


def test_a_429_holds_back_the_next_poll(
    fake_vinci: FakeVinciServer, client: VinciClient, clock: FakeClock
) -> None:
    """The server's Retry-After is honoured before polling again."""
    fake_vinci.script(Fault.status(429, retry_after="12"), path="/status/*")
    client.wait(client.text_to_video("A fox"))
    assert clock.sleeps[0] == 12.0


@pytest.mark.fake_vinci(polls_to_complete=1000)
def test_a_timeout_after_a_failed_poll_keeps_its_cause(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """When the last poll failed, that error is the timeout's __cause__."""
    job = client.text_to_video("A fox")
    fake_vinci.script(*[Fault.status(503)] * 10, path="/status/*")
    with pytest.raises(JobTimeoutError) as info:
        client.wait(job, timeout=6)
    assert info.value.last_status is None
    assert info.value.__cause__ is not None


def test_a_final_poll_error_ends_the_wait(client: VinciClient) -> None:
    """A 404 is not transient: it is raised at once."""
    with pytest.raises(NotFoundError):
        client.wait("req_unknown")


def test_wait_all_polls_many_jobs_in_one_loop(
    fake_vinci: FakeVinciServer, client: VinciClient, clock: FakeClock
) -> None:
    """Three jobs in step: the loop sleeps twice in all, not twice per job."""
    jobs = [client.text_to_video(f"fox {i}") for i in range(3)]
    results = client.wait_all(jobs)
    assert [r.request_id for r in results] == [j.request_id for j in jobs]
    assert all(r.status == "completed" for r in results)
    assert clock.sleeps == [5.0, 7.5]
    assert fake_vinci.count("GET", "/status/*") == 9


def test_wait_all_reports_progress_of_every_job(client: VinciClient) -> None:
    """on_progress is called with each job's statuses."""
    jobs = [client.text_to_video(f"fox {i}") for i in range(2)]
    seen: list[JobStatus] = []
    client.wait_all(jobs, on_progress=seen.append)
    assert len(seen) == 6
    assert {s.request_id for s in seen} == {j.request_id for j in jobs}


def test_wait_all_returns_exceptions_in_place(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """With return_exceptions, a failed job's error takes its place; the rest complete."""
    first = client.text_to_video("a")
    fake_vinci.fail_next_jobs(1)
    second = client.text_to_video("b")
    third = client.text_to_video("c")
    results = client.wait_all([first, second, third], return_exceptions=True)
    assert isinstance(results[0], JobStatus)
    assert isinstance(results[1], JobFailedError)
    assert results[1].request_id == second.request_id
    assert isinstance(results[2], JobStatus)


def test_wait_all_raises_the_first_failure(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """Without return_exceptions, the first failed job's error is raised."""
    fake_vinci.fail_next_jobs(1)
    jobs: list[Job] = [client.text_to_video("a"), client.text_to_video("b")]
    with pytest.raises(JobFailedError) as info:
        client.wait_all(jobs)
    assert info.value.request_id == jobs[0].request_id


@pytest.mark.fake_vinci(polls_to_complete=1000)
def test_wait_all_times_out_every_unfinished_job(client: VinciClient, clock: FakeClock) -> None:
    """One deadline for the batch; each unfinished job gets its JobTimeoutError."""
    jobs = [client.text_to_video(f"fox {i}") for i in range(2)]
    start = clock.monotonic()
    results = client.wait_all(jobs, timeout=30, return_exceptions=True)
    assert clock.monotonic() - start == 30.0
    assert [type(r) for r in results] == [JobTimeoutError, JobTimeoutError]
    assert [getattr(r, "request_id", None) for r in results] == [j.request_id for j in jobs]


def test_wait_all_of_nothing_is_empty(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """No jobs: no polls, an empty list."""
    assert client.wait_all([]) == []
    assert fake_vinci.request_count == 0


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"poll_interval": 0},
        {"poll_interval": float("inf")},
        {"poll_interval": 10, "max_poll_interval": 5},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"poll_interval": True},
    ],
)
def test_bad_poll_options_are_configuration_errors(options: dict[str, float]) -> None:
    """Out-of-range schedule options fail with a message naming the option."""
    name = next(iter(options)) if len(options) == 1 else "max_poll_interval"
    with pytest.raises(ConfigurationError, match=name):
        PollSchedule(**options)


def test_bad_wait_options_send_nothing(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """wait() checks its options before the first poll."""
    with pytest.raises(ConfigurationError):
        client.wait("req_1", poll_interval=-1)
    assert fake_vinci.request_count == 0

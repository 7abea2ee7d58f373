"""The pytest plugin's fixtures in async tests (anyio's marker, on asyncio).

`fake_vinci` and `fake_clock` are sync fixtures that async tests use unchanged: the
server answers from its own threads, and `FakeClock.asleep` moves virtual time. Both
async clients are covered, the `AsyncVinciClient` and an `httpx.AsyncClient` over
`AsyncResilientTransport`, and so is `make_async_vinci_client`, which makes the first
bound to both fixtures. The last tests run the fixtures in a fresh pytest (pytester).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from requests_resilience import (
    APIKeyAuth,
    AuthenticationError,
    InsufficientBalanceError,
    Pipeline,
    Retry,
    StatusErrors,
)
from requests_resilience.httpx import AsyncResilientTransport
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import AsyncVinciClient, build_pipeline

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.anyio

TEXT_TO_VIDEO = "/generate/text-to-video"
MakeClient = Callable[..., AsyncVinciClient]


@pytest.fixture
def real_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay given to `asyncio.sleep` during the test (the sleep still happens)."""
    delays: list[float] = []
    real_sleep = asyncio.sleep

    def recording_sleep(delay: float, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        delays.append(delay)
        return real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    return delays


async def test_fake_vinci_serves_an_async_vinci_client(
    fake_vinci: FakeVinciServer, fake_clock: FakeClock
) -> None:
    """An AsyncVinciClient on the fixtures: a job through a 429, waits on the fake clock."""
    fake_vinci.script(Fault.rate_limited(retry_after=30), path=TEXT_TO_VIDEO)
    pipeline = build_pipeline(api_key=fake_vinci.api_key, clock=fake_clock)
    async with AsyncVinciClient(
        base_url=fake_vinci.base_url, pipeline=pipeline, clock=fake_clock
    ) as client:
        job = await client.text_to_video("a fox", duration_seconds=2)
        done = await client.wait(job, poll_interval=5)

    assert done.status == "completed"
    assert fake_vinci.count("POST", TEXT_TO_VIDEO) == 2  # the 429, then the job
    assert fake_vinci.jobs_created == 1
    assert fake_vinci.count("GET", "/status/*") == 3  # polls_to_complete
    # Every wait was on virtual time: the Retry-After, then before polls 2 and 3,
    # poll_interval and 1.5 times it, each less up to 20% (the schedule's jitter).
    retry_after, *polls = fake_clock.sleeps
    assert retry_after == 30
    assert len(polls) == 2
    assert 4.0 <= polls[0] <= 5.0
    assert 6.0 <= polls[1] <= 7.5


async def test_fake_vinci_serves_httpx_async_client_over_the_transport(
    fake_vinci: FakeVinciServer, fake_clock: FakeClock
) -> None:
    """httpx.AsyncClient(transport=AsyncResilientTransport(...)): two 503s retried."""
    pipeline = Pipeline(
        StatusErrors(),
        Retry(initial_delay=1.0, jitter="none", budget=None),
        APIKeyAuth(fake_vinci.api_key),
        clock=fake_clock,
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path="/billing/balance")
    async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
        answer = await client.get(fake_vinci.url("/billing/balance"))

    assert answer.status_code == 200
    assert answer.json()["balance_usd"] == 100.0
    assert fake_vinci.count("GET", "/billing/balance") == 3
    assert fake_clock.sleeps == [1.0, 2.0]


async def test_make_async_vinci_client_waits_only_on_the_fake_clock(
    fake_vinci: FakeVinciServer,
    fake_clock: FakeClock,
    make_async_vinci_client: MakeClient,
    real_sleeps: list[float],
) -> None:
    """A job through a 429 (Retry-After: 1 h) and a 503 poll: no real wait at all."""
    fake_vinci.script(Fault.rate_limited(retry_after=3600), path=TEXT_TO_VIDEO)
    fake_vinci.script(Fault.status(503), path="/status/*")
    retry = Retry(max_retry_after=7200, jitter="none", budget=None)
    pipeline = build_pipeline(api_key=fake_vinci.api_key, clock=fake_clock, retry=retry)
    async with make_async_vinci_client(pipeline=pipeline) as client:
        assert client.base_url == fake_vinci.base_url
        assert client.clock is fake_clock
        done = await client.wait(await client.text_to_video("a fox", duration_seconds=2))

    assert done.status == "completed"
    assert 3600 in fake_clock.sleeps
    assert fake_clock.slept >= 3600
    # The waits went through FakeClock.asleep, which yields with asyncio.sleep(0): the
    # recorder saw them, and no delay longer than zero.
    assert len(real_sleeps) >= len(fake_clock.sleeps)
    assert set(real_sleeps) == {0}


async def test_make_async_vinci_client_defaults_to_the_server_and_the_preset(
    fake_vinci: FakeVinciServer, fake_clock: FakeClock, make_async_vinci_client: MakeClient
) -> None:
    """No options: the server's URL and key, the preset's pipeline on the fake clock."""
    async with make_async_vinci_client() as client:
        balance = await client.balance()
    assert balance.balance_usd == 100.0
    assert client.pipeline.clock is fake_clock
    sent = fake_vinci.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {fake_vinci.api_key}"


async def test_make_async_vinci_client_passes_options_to_the_client(
    fake_vinci: FakeVinciServer, make_async_vinci_client: MakeClient
) -> None:
    """Keyword arguments replace the defaults: no balance pre-check, another key."""
    async with make_async_vinci_client(balance_check=False) as client:
        await client.text_to_video("a fox", duration_seconds=2)
    assert fake_vinci.count(path="/billing/balance") == 0  # no pre-check fetch
    async with make_async_vinci_client(api_key="sk-not-a-key") as stranger:
        with pytest.raises(AuthenticationError):
            await stranger.balance()


@pytest.mark.fake_vinci(balance_usd=0.0)
async def test_make_async_vinci_client_uses_the_marker_options(
    fake_vinci: FakeVinciServer, make_async_vinci_client: MakeClient
) -> None:
    """@pytest.mark.fake_vinci(...) configures the server the clients talk to."""
    async with make_async_vinci_client() as client:
        with pytest.raises(InsufficientBalanceError):
            await client.text_to_video("a fox")
    assert fake_vinci.jobs_created == 0


# -- in a fresh pytest run --------------------------------------------------------------


def _plugin_args() -> list[str]:
    """Load the plugin by hand when its entry point is not installed."""
    installed = any(
        ep.name == "requests_resilience"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "requests_resilience.testing._pytest_plugin"]


ASYNC_TESTS = """
import asyncio

import pytest

from requests_resilience.testing import Fault

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_job_on_the_fake_clock(fake_vinci, fake_clock, make_async_vinci_client):
    fake_vinci.script(Fault.rate_limited(retry_after=30), path="/generate/text-to-video")
    async with make_async_vinci_client() as client:
        done = await client.wait(await client.text_to_video("a fox"))
    assert done.status == "completed"
    assert 30 in fake_clock.sleeps


async def test_the_clock_alone(fake_clock):
    await fake_clock.asleep(60)
    assert fake_clock.sleeps == [60]


@pytest.mark.fake_vinci(polls_to_complete=1)
async def test_many_jobs_at_once(fake_vinci, make_async_vinci_client):
    async with make_async_vinci_client(balance_check=False) as client:
        jobs = await asyncio.gather(*(client.text_to_video(f"clip {i}") for i in range(5)))
        done = await client.wait_all(jobs)
    assert [job.status for job in done] == ["completed"] * 5
    assert fake_vinci.jobs_created == 5
"""


def test_async_tests_use_the_fixtures_in_a_fresh_run(pytester: pytest.Pytester) -> None:
    """A test module of anyio tests on fake_vinci, fake_clock, make_async_vinci_client."""
    pytester.makepyfile(ASYNC_TESTS)
    result = pytester.runpytest_inprocess(
        *_plugin_args(), "-p", "no:cacheprovider", "--strict-markers", "-W", "error"
    )
    result.assert_outcomes(passed=3)


def test_a_client_left_open_fails_its_test_at_teardown(pytester: pytest.Pytester) -> None:
    """make_async_vinci_client errors the test that did not close a client, and says how."""
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.anyio

        async def test_closes(make_async_vinci_client):
            async with make_async_vinci_client() as client:
                await client.balance()

        async def test_forgets(make_async_vinci_client):
            make_async_vinci_client()
            client = make_async_vinci_client()
            await client.aclose()
        """
    )
    result = pytester.runpytest_inprocess(
        *_plugin_args(), "-p", "no:cacheprovider", "--strict-markers", "-W", "error"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_forgets*",
            "*make_async_vinci_client: 1 of 2 clients left open*async with*",
        ]
    )

"""Retry over real loopback HTTP: no double payment, Retry-After honoured, no leaks."""

from __future__ import annotations

import pytest
import requests
from requests.adapters import HTTPAdapter

from requests_resilience import (
    APIKeyAuth,
    Pipeline,
    PipelineAdapter,
    RateLimitError,
    Retry,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience.testing import FakeVinciServer, Fault

GENERATE = "/generate/text-to-video"
JOB = {"prompt": "calm ocean at sunrise", "duration_seconds": 5}


def mounted(server: FakeVinciServer, session: requests.Session, retry: Retry, **kw: int) -> None:
    pipeline = Pipeline(StatusErrors(), retry, APIKeyAuth(server.api_key))
    mount(session, server.base_url + "/", pipeline, **kw)  # type: ignore[arg-type]


FAST = Retry(initial_delay=0.01, max_delay=0.05, budget=None)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_after_unknown_outcome_is_not_sent_twice(
    fake_vinci: FakeVinciServer, session: requests.Session, status: int
) -> None:
    """The server charged for the job, then failed: without a key the POST is not repeated."""
    mounted(fake_vinci, session, FAST)
    fake_vinci.script(Fault.status(status, after=True), path=GENERATE)
    with pytest.raises(ServerError):
        session.post(fake_vinci.url(GENERATE), json=JOB)
    assert fake_vinci.count(method="POST", path=GENERATE) == 1
    assert fake_vinci.jobs_created == 1


def test_post_after_reset_is_not_sent_twice(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A connection reset after the server acted is not retried for a POST."""
    mounted(fake_vinci, session, FAST)
    fake_vinci.script(Fault.reset(after=True), path=GENERATE)
    with pytest.raises(requests.ConnectionError):
        session.post(fake_vinci.url(GENERATE), json=JOB)
    assert fake_vinci.count(method="POST", path=GENERATE) == 1
    assert fake_vinci.jobs_created == 1


def test_post_with_idempotency_key_is_retried(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """With an Idempotency-Key the same POST is sent again, with the same key and bytes."""
    mounted(fake_vinci, session, FAST)
    fake_vinci.script(Fault.status(500), path=GENERATE)
    response = session.post(
        fake_vinci.url(GENERATE), json=JOB, headers={"Idempotency-Key": "job-42"}
    )
    assert response.status_code == 200
    sent = [r for r in fake_vinci.requests if r.path == GENERATE]
    assert len(sent) == 2
    assert sent[0].body == sent[1].body
    assert {r.headers["Idempotency-Key"] for r in sent} == {"job-42"}


def test_429_with_fractional_retry_after_is_waited(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """Retry-After: 0.2 is honoured: the retry reaches the server at least 0.2 s later."""
    mounted(fake_vinci, session, FAST)
    fake_vinci.script(Fault.status(429, retry_after="0.2"), path=GENERATE)
    response = session.post(fake_vinci.url(GENERATE), json=JOB)
    assert response.status_code == 200
    first, second = (r for r in fake_vinci.requests if r.path == GENERATE)
    assert second.time - first.time >= 0.2
    assert fake_vinci.jobs_created == 1


def test_429_retry_after_longer_than_allowed_fails_at_once(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A Retry-After beyond max_retry_after raises RateLimitError without waiting."""
    mounted(fake_vinci, session, Retry(max_retry_after=5, budget=None))
    fake_vinci.script(Fault.status(429, retry_after="120"), path=GENERATE)
    with pytest.raises(RateLimitError) as info:
        session.post(fake_vinci.url(GENERATE), json=JOB)
    assert info.value.retry_after == 120
    assert fake_vinci.count(path=GENERATE) == 1


def test_connection_refused_post_is_retried(session: requests.Session) -> None:
    """A POST that could not connect never reached the server and is retried."""
    server = FakeVinciServer().start()
    base, key = server.base_url, server.api_key
    server.stop()  # nothing listens on that port now
    mount(
        session,
        base + "/",
        Pipeline(
            StatusErrors(), Retry(max_attempts=3, initial_delay=0.01, budget=None), APIKeyAuth(key)
        ),
    )
    with pytest.raises(requests.ConnectionError) as info:
        session.post(base + GENERATE, json=JOB, timeout=1)
    assert info.value.attempts == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("stream", [False, True])
def test_no_connection_leaks_with_a_pool_of_one(
    fake_vinci: FakeVinciServer, session: requests.Session, stream: bool
) -> None:
    """Many retries through a one-connection pool reuse that connection every time."""
    retry = Retry(max_attempts=10, initial_delay=0.001, max_delay=0.002, budget=None)
    mounted(fake_vinci, session, retry, pool_connections=1, pool_maxsize=1)
    for _ in range(3):
        fake_vinci.script(*[Fault.status(503)] * 9, path="/billing/balance")
        with session.get(fake_vinci.url("/billing/balance"), stream=stream) as response:
            assert response.status_code == 200
            assert response.json()["balance_usd"] >= 0
    adapter = session.get_adapter(fake_vinci.base_url + "/")
    assert isinstance(adapter, PipelineAdapter)
    transport = adapter.transport
    assert isinstance(transport, HTTPAdapter)
    pools = [transport.poolmanager.pools[key] for key in transport.poolmanager.pools.keys()]  # noqa: SIM118 - a RecentlyUsedContainer is not iterable
    assert fake_vinci.request_count == 30
    assert [pool.num_connections for pool in pools] == [1]
    assert len({r.connection_id for r in fake_vinci.requests}) == 1

"""The circuit breaker over real loopback HTTP, against the fake server's outage window."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from requests_resilience import (
    APIKeyAuth,
    CircuitOpenError,
    Pipeline,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience._breaker import CircuitBreaker, breaker_key_by_endpoint
from requests_resilience._events import BreakerStateChange
from requests_resilience.testing import FakeVinciServer, Fault

BALANCE = "/billing/balance"


def key_of(server: FakeVinciServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def events() -> list[BreakerStateChange]:
    return []


@pytest.fixture
def breaker(events: list[BreakerStateChange]) -> CircuitBreaker:
    return CircuitBreaker(
        failure_ratio=0.5,
        minimum_calls=4,
        window=1.0,
        break_duration=0.3,
        listeners=events.append,
    )


@pytest.fixture
def client(fake_vinci: FakeVinciServer, breaker: CircuitBreaker) -> Iterator[requests.Session]:
    pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(fake_vinci.api_key))
    with requests.Session() as session:
        mount(session, fake_vinci.base_url + "/", pipeline)
        yield session


def test_outage_opens_the_breaker_then_a_probe_closes_it(
    fake_vinci: FakeVinciServer,
    breaker: CircuitBreaker,
    client: requests.Session,
    events: list[BreakerStateChange],
) -> None:
    """503s open it; open calls never reach the server; after recovery a probe closes it."""
    url = fake_vinci.url(BALANCE)
    fake_vinci.outage(30.0)
    for _ in range(4):
        with pytest.raises(ServerError):
            client.get(url, timeout=5)
    assert breaker.state(key_of(fake_vinci)) == "open"

    reached = fake_vinci.request_count
    for _ in range(50):
        with pytest.raises(CircuitOpenError) as info:
            client.get(url, timeout=5)
    assert fake_vinci.request_count == reached  # nothing reached the server
    assert breaker.status(key_of(fake_vinci)).rejected == 50
    assert 0 < info.value.retry_after <= 0.3

    fake_vinci.clear_faults()  # the server recovers
    time.sleep(info.value.retry_after + 0.01)  # the rest of the break, in real time
    answer = client.get(url, timeout=5)
    assert answer.status_code == 200
    assert fake_vinci.request_count == reached + 1  # exactly one probe
    assert breaker.state(key_of(fake_vinci)) == "closed"
    assert [(e.old_state, e.new_state) for e in events] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_a_probe_during_the_outage_reopens_the_breaker(
    fake_vinci: FakeVinciServer,
    breaker: CircuitBreaker,
    client: requests.Session,
) -> None:
    """A probe that meets the outage reopens the breaker; callers fail fast again."""
    url = fake_vinci.url(BALANCE)
    fake_vinci.outage(5.0)
    for _ in range(4):
        with pytest.raises(ServerError):
            client.get(url, timeout=5)
    with pytest.raises(CircuitOpenError) as info:
        client.get(url, timeout=5)
    time.sleep(info.value.retry_after + 0.01)

    reached = fake_vinci.request_count
    with pytest.raises(ServerError):
        client.get(url, timeout=5)  # the probe
    with pytest.raises(CircuitOpenError) as again:
        client.get(url, timeout=5)
    assert fake_vinci.request_count == reached + 1
    assert again.value.retry_after == pytest.approx(0.3, abs=0.05)
    status = breaker.status(key_of(fake_vinci))
    assert (status.state, status.opened, status.rejected) == ("open", 2, 2)


def test_per_endpoint_breaker_keeps_healthy_endpoints_reachable(
    fake_vinci: FakeVinciServer,
) -> None:
    """With per-endpoint keys, a failing endpoint is cut off while another still answers."""
    breaker = CircuitBreaker(minimum_calls=3, break_duration=30, key=breaker_key_by_endpoint)
    pipeline = Pipeline(StatusErrors(), breaker, APIKeyAuth(fake_vinci.api_key))
    failing = fake_vinci.url("/billing/usage")
    with requests.Session() as session:
        mount(session, fake_vinci.base_url + "/", pipeline)
        fake_vinci.script(*[Fault.status(502)] * 3, path="/billing/usage")
        for _ in range(3):
            with pytest.raises(ServerError):
                session.get(failing, timeout=5)
        with pytest.raises(CircuitOpenError):
            session.get(failing, timeout=5)
        assert session.get(fake_vinci.url(BALANCE), timeout=5).status_code == 200
    assert fake_vinci.count(path="/billing/usage") == 3

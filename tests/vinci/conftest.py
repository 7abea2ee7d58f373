"""Fixtures for the Vinci client tests: a client on the fake server and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import VinciClient, build_pipeline

#: The smallest valid images: the magic bytes are all the client and server look at.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the VINCI_API_KEY of the machine that runs it."""
    monkeypatch.delenv("VINCI_API_KEY", raising=False)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock without jitter (random() is always 0)."""
    return FakeClock(random_value=0.0)


@pytest.fixture
def client(fake_vinci: FakeVinciServer, clock: FakeClock) -> Iterator[VinciClient]:
    """A client of the fake server, on the fake clock, without retry or breaker.

    Most tests check what one request does (its mapping, its validation); the preset's
    retry and breaker have tests of their own (`resilient_client`).
    """
    pipeline = build_pipeline(
        api_key=fake_vinci.api_key, clock=clock, retry=None, breaker=None, rate_limit=None
    )
    with VinciClient(base_url=fake_vinci.base_url, pipeline=pipeline, clock=clock) as c:
        yield c


@pytest.fixture
def resilient_client(fake_vinci: FakeVinciServer, clock: FakeClock) -> Iterator[VinciClient]:
    """A client with the preset's full pipeline, on the fake clock."""
    with VinciClient(api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, clock=clock) as c:
        yield c

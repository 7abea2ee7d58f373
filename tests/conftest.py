"""Shared fixtures: sessions, fake clocks, and helpers to build canned responses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from requests_resilience.testing import FakeClock


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A fresh Session, closed after the test."""
    with requests.Session() as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock with deterministic randomness."""
    return FakeClock()

"""Shared fixtures: sessions, fake clocks, and helpers to build canned responses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from requests_resilience.testing import FakeClock


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak``: run the long soak variants of tests/reliability (``./dev soak``)."""
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the long concurrency soak variants (marked soak); ./dev soak sets it",
    )


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A fresh Session, closed after the test."""
    with requests.Session() as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock with deterministic randomness."""
    return FakeClock()

"""Shared fixtures: sessions, fake clocks, and helpers to build canned responses."""

from __future__ import annotations

import gc
import shutil
import warnings
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import requests
import structlog
from hypothesis import settings
from structlog.testing import capture_logs

from requests_resilience.testing import FakeClock
from tests.integration.conftest import REDIS_MISSING, RedisServer

# Hypothesis fails an example that takes over 200 ms by default: a wall-clock threshold,
# which a loaded 2-core machine running the suite on both cores can trip. The property
# tests assert behaviour only; their speed is nobody's business here.
settings.register_profile("requests-resilience", deadline=None)
settings.load_profile("requests-resilience")


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


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog events captured for one test; the configuration is restored after."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    with capture_logs() as entries:
        yield entries
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server for one test, that it may stop, restart or SIGSTOP.

    Fails (never skips) when redis-server is not installed. After the test the server
    is continued (if stopped with SIGSTOP) and stopped.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(REDIS_MISSING)
    server = RedisServer(executable)
    server.start()
    try:
        yield server
    finally:
        server.thaw()
        # A policy's own Redis client (made from redis_url) has no close(): it lives
        # as long as the policy. Collect the ones this test left in reference cycles
        # now, so that their sockets do not warn inside a later test's gc.collect().
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a started, empty redis-server (``redis://127.0.0.1:<port>/0``)."""
    return redis_server.url


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio: redis.asyncio needs it."""
    return "asyncio"

"""Shared fixtures: sessions, fake clocks, and helpers to build canned responses."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import requests
import structlog
from structlog.testing import capture_logs

from requests_resilience.testing import FakeClock
from tests.integration.conftest import REDIS_MISSING, RedisServer


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
def redis_process() -> Iterator[RedisServer]:
    """A started redis-server that a test may stop, restart or SIGSTOP; always cleaned up."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(REDIS_MISSING)
    server = RedisServer(executable)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio: redis.asyncio needs it."""
    return "asyncio"

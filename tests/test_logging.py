"""Logging by the field's conventions: stdlib until structlog is configured, never stdout."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import requests
import structlog
from structlog.testing import capture_logs

from requests_resilience import Pipeline, Retry, StatusErrors, mount
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import requests
    from requests_resilience import Pipeline, Retry, StatusErrors, mount, no_waits
    from requests_resilience.testing import FakeVinciServer, Fault

    if sys.argv[1:] == ["quiet"]:
        logging.basicConfig(level=logging.ERROR)
    if sys.argv[1:] == ["configured"]:
        logging.basicConfig(level=logging.WARNING)
    with FakeVinciServer() as srv, no_waits():
        srv.script(Fault.status(503), Fault.status(503))
        session = requests.Session()
        mount(session, "http://", Pipeline(StatusErrors(), Retry()))
        auth = {"Authorization": "Bearer " + srv.api_key}
        response = session.get(srv.url("/billing/balance"), headers=auth)
        print(json.dumps({"status": response.status_code}))
    """
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_stdout_stays_the_applications_own() -> None:
    """A script printing JSON while calls retry gets exactly its JSON on stdout, and with
    no logging configured nothing on stderr either (a NullHandler, as urllib3 has)."""
    done = _run()
    assert json.loads(done.stdout) == {"status": 200}
    assert done.stdout.count("\n") == 1
    assert "retry_scheduled" not in done.stderr


def test_the_applications_logging_configuration_shows_the_events() -> None:
    """logging.basicConfig(level=WARNING) shows both retries on stderr, not stdout."""
    done = _run("configured")
    assert json.loads(done.stdout) == {"status": 200}
    assert done.stderr.count("retry_scheduled") == 2


def test_the_applications_logging_level_applies() -> None:
    """logging.basicConfig(level=ERROR) silences the retry warnings."""
    done = _run("quiet")
    assert json.loads(done.stdout) == {"status": 200}
    assert "retry_scheduled" not in done.stderr


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


def _retrying_get(server: FakeVinciServer) -> None:
    server.script(Fault.status(503))
    with requests.Session() as session:
        mount(session, "http://", Pipeline(StatusErrors(), Retry(), clock=FakeClock()))
        auth = {"Authorization": f"Bearer {server.api_key}"}
        assert session.get(server.url("/billing/balance"), headers=auth).status_code == 200


def test_unconfigured_structlog_means_stdlib_records(
    server: FakeVinciServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Before structlog is configured, events are stdlib records with their fields."""
    structlog.reset_defaults()
    assert not structlog.is_configured()
    with caplog.at_level(logging.WARNING, logger="requests_resilience"):
        _retrying_get(server)
    (record,) = [r for r in caplog.records if r.name == "requests_resilience"]
    assert record.levelno == logging.WARNING
    fields = record.requests_resilience  # type: ignore[attr-defined]
    assert fields["event"] == "retry_scheduled"
    assert fields["status_code"] == 503
    assert fields["attempt"] == 1
    assert record.getMessage().startswith("retry_scheduled ")
    assert server.api_key not in record.getMessage()


def test_configured_structlog_gets_the_same_events(server: FakeVinciServer) -> None:
    """Once structlog is configured, the events go through it with the same names."""
    with capture_logs() as logs:
        assert structlog.is_configured()
        _retrying_get(server)
    retries = [e for e in logs if e["event"] == "retry_scheduled"]
    assert len(retries) == 1
    assert retries[0]["log_level"] == "warning"
    assert retries[0]["status_code"] == 503

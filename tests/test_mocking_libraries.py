"""requests-mock and betamax work as the transport *under* the pipeline.

Their session-level modes (``requests_mock.Mocker``, which patches
``Session.get_adapter``, and betamax's replay, which answers from its own adapter)
take the place of the mounted adapter, so the policies do not run: these tests show
both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import requests_mock
from betamax import Betamax

from requests_resilience import Pipeline, Retry, mount
from requests_resilience.testing import FakeClock, FakeVinciServer

URL = "http://api.example.test/v1/things"


def _retrying() -> Pipeline:
    return Pipeline(Retry(), clock=FakeClock())


def test_requests_mock_adapter_under_the_pipeline() -> None:
    """A 503 then a 200 from requests_mock.Adapter: the pipeline retries, two requests."""
    transport = requests_mock.Adapter()
    transport.register_uri("GET", URL, [{"status_code": 503}, {"status_code": 200, "text": "ok"}])
    with requests.Session() as session:
        mount(session, "http://api.example.test/", _retrying(), transport=transport)
        response = session.get(URL)
    assert response.status_code == 200
    assert response.text == "ok"
    assert transport.call_count == 2


def test_requests_mock_mocker_bypasses_the_pipeline() -> None:
    """Mocker patches Session.get_adapter: the mounted pipeline never runs, no retry."""
    with requests.Session() as session, requests_mock.Mocker(session=session) as mocker:
        mount(session, "http://api.example.test/", _retrying())
        mocker.get(URL, [{"status_code": 503}, {"status_code": 200}])
        response = session.get(URL)
    assert response.status_code == 503
    assert mocker.call_count == 1


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


def _under_pipeline_with_betamax(
    library: Path, server: FakeVinciServer, record_mode: str
) -> tuple[int, int]:
    recorder = Betamax(requests.Session(), cassette_library_dir=str(library))
    with recorder.use_cassette("balance", record=record_mode), requests.Session() as session:
        mount(session, "http://", _retrying(), transport=recorder.betamax_adapter)
        auth = {"Authorization": f"Bearer {server.api_key}"}
        status = session.get(server.url("/billing/balance"), headers=auth).status_code
    return status, server.request_count


def test_betamax_records_and_replays_under_the_pipeline(
    tmp_path: Path, server: FakeVinciServer
) -> None:
    """Recorded through the pipeline once, then replayed with the server never asked."""
    assert _under_pipeline_with_betamax(tmp_path, server, "once") == (200, 1)
    assert (tmp_path / "balance.json").exists()
    assert _under_pipeline_with_betamax(tmp_path, server, "none") == (200, 1)  # not re-sent


def test_betamax_session_mode_replaces_the_mounted_adapter(tmp_path: Path) -> None:
    """Betamax(session) mounts its own adapter over ours: the pipeline is no longer used."""
    with requests.Session() as session:
        mount(session, "http://", _retrying())
        recorder = Betamax(session, cassette_library_dir=str(tmp_path))
        with recorder.use_cassette("anything", record="all"):
            adapter = session.get_adapter("http://x/")
            assert adapter is recorder.betamax_adapter

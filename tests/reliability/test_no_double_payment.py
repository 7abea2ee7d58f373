"""No double payment: a generate POST whose outcome is unknown is never sent twice.

Every fault here lets the server act first (the job is created and charged), then hides
the answer from the client: a reset, a 500/502/504, a body that breaks off, or a read
timeout while the body is awaited. Without an ``Idempotency-Key`` the preset must not
send the POST again; the server's own counters prove it. With the key, the same fault
IS retried, so these tests would notice a retry policy that never retries at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from requests_resilience import (
    APIConnectionError,
    APIError,
    APIReadTimeoutError,
    ServerError,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import VinciClient
from tests.reliability.conftest import HANG, within

TEXT = "/generate/text-to-video"
IMAGE = "/generate/image-to-video"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SHORT_TIMEOUT = 0.05

UNKNOWN_OUTCOMES = [
    pytest.param(Fault.reset(after=True), APIConnectionError, id="reset-after-body-sent"),
    pytest.param(Fault.status(500, after=True), ServerError, id="500"),
    pytest.param(Fault.status(502, after=True), ServerError, id="502"),
    pytest.param(Fault.status(504, after=True), ServerError, id="504"),
    pytest.param(Fault.reset_mid_body(), APIConnectionError, id="reset-mid-body"),
    pytest.param(Fault.truncated(), APIConnectionError, id="truncated-body"),
    pytest.param(
        Fault.stall_after_headers(0.5), APIReadTimeoutError, id="read-timeout-after-acting"
    ),
]
ENDPOINTS = [pytest.param(TEXT, id="text-to-video"), pytest.param(IMAGE, id="image-to-video")]


def _post(session: requests.Session, server: FakeVinciServer, path: str, **kw: Any) -> None:
    """POST one job to `path`, the way the API documents its body."""
    if path == TEXT:
        kw["json"] = {"prompt": "calm ocean at sunrise", "duration_seconds": 5}
    else:
        kw["files"] = {"image": ("cat.png", PNG, "image/png")}
        kw["data"] = {"prompt": "the cat waves", "duration_seconds": "5"}
    response = session.post(server.url(path), **kw)
    response.close()


def _client_call(client: VinciClient, path: str) -> Callable[[], object]:
    if path == TEXT:
        return lambda: client.text_to_video("calm ocean at sunrise")
    return lambda: client.image_to_video(PNG, "the cat waves")


def _timeout_for(fault: Fault) -> float:
    return SHORT_TIMEOUT if fault.kind == "stall_after_headers" else 5.0


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(("fault", "error"), UNKNOWN_OUTCOMES)
def test_unknown_outcome_is_not_paid_twice_through_the_session(
    fault: Fault,
    error: type[APIError],
    path: str,
    server: FakeVinciServer,
    vinci_session: requests.Session,
) -> None:
    """A generate POST with an unknown outcome reaches the server once and creates one job."""
    server.script(fault, path=path)
    with pytest.raises(error):
        within(HANG, lambda: _post(vinci_session, server, path, timeout=_timeout_for(fault)))
    assert server.count(method="POST", path=path) == 1
    assert server.jobs_created == 1


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(("fault", "error"), UNKNOWN_OUTCOMES)
def test_unknown_outcome_is_not_paid_twice_through_the_client(
    fault: Fault,
    error: type[APIError],
    path: str,
    server: FakeVinciServer,
    vinci_session: requests.Session,
    clock: FakeClock,
) -> None:
    """VinciClient's job methods send a job once when its outcome is unknown."""
    server.script(fault, path=path)
    with (
        VinciClient(
            vinci_session,
            base_url=server.base_url,
            clock=clock,
            request_timeout=_timeout_for(fault),
        ) as client,
        pytest.raises(error),
    ):
        within(HANG, _client_call(client, path))
    assert server.count(method="POST", path=path) == 1
    assert server.jobs_created == 1


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(("fault", "error"), UNKNOWN_OUTCOMES)
def test_with_an_idempotency_key_the_same_fault_is_retried(
    fault: Fault,
    error: type[APIError],
    path: str,
    server: FakeVinciServer,
    vinci_session: requests.Session,
) -> None:
    """With an Idempotency-Key the POST is sent again with the same key, and succeeds."""
    server.script(fault, path=path)
    within(
        HANG,
        lambda: _post(
            vinci_session,
            server,
            path,
            timeout=_timeout_for(fault),
            headers={"Idempotency-Key": "job-7f3a"},
        ),
    )
    sent = [r for r in server.requests if r.method == "POST" and r.path == path]
    assert len(sent) == 2
    assert [r.headers.get("Idempotency-Key") for r in sent] == ["job-7f3a", "job-7f3a"]
    assert sent[0].body == sent[1].body
    assert server.jobs_created == 2  # the fake server does not deduplicate; a real one would

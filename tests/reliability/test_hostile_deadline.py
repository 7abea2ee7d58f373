"""A call's deadline holds on the wire, whatever the pace of a hostile server.

Each row runs a hand-written socket server on loopback (`tests.reliability.hostile`)
that trickles one byte every `INTERVAL` seconds, in the headers, in a
``Content-Length`` body or in a chunked body, or stalls, against a pipeline whose
``Retry(timeout=DEADLINE)`` sets the call's deadline. Each asserts the exact outcome:
the error (an `APIReadTimeoutError`, so a `requests.ReadTimeout`, saying the deadline
passed), what it carries (the status when the head had arrived, the body bytes that
had), and how many requests the server saw. No row asserts elapsed time: a server
that trickles a 60-byte body over 12 s is cut off with fewer than 60 bytes received,
which only the deadline can do; `within(HANG)` only keeps a broken deadline from
blocking the run. The times measured on an idle machine are in the closing note of
the hardening issue (about 3 ms past a 3 s deadline).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import trustme

from requests_resilience import (
    APIReadTimeoutError,
    Call,
    Next,
    Pipeline,
    PolicyLike,
    Retry,
    StatusErrors,
    mount,
)
from tests.reliability import hostile
from tests.reliability.conftest import HANG, within

DEADLINE = 1.0
#: One byte per this many seconds: each read completes, so no read timeout fires.
INTERVAL = 0.2


def session_for(server: hostile.HostileServer, *policies: PolicyLike) -> requests.Session:
    """A session with `policies` (default: StatusErrors, Retry(timeout=DEADLINE)) mounted."""
    pipeline = Pipeline(*(policies or (StatusErrors(), Retry(timeout=DEADLINE, budget=None))))
    return mount(requests.Session(), server.url + "/", pipeline)


def timed(func: Callable[[], object]) -> tuple[BaseException, float]:
    """The exception `func` raises (within HANG) and the real seconds it took (reported
    by nothing here: for the figures of the notes)."""
    start = time.monotonic()
    with pytest.raises(requests.RequestException) as info:
        within(HANG, func)
    return info.value, time.monotonic() - start


def deadline_error(error: BaseException) -> APIReadTimeoutError:
    """`error` as the deadline's error, checking its class and what requests sees."""
    assert isinstance(error, APIReadTimeoutError), repr(error)
    assert isinstance(error, requests.exceptions.ReadTimeout)
    assert "deadline passed" in str(error)
    assert error.request_sent is True
    return error


@pytest.fixture
def content_length_trickle() -> Iterator[hostile.HostileServer]:
    """``Content-Length: 60``, then a byte every INTERVAL (12 s for the whole body)."""
    with hostile.HostileServer(hostile.content_length_trickle(60, INTERVAL)) as server:
        yield server


@pytest.fixture
def chunked_trickle() -> Iterator[hostile.HostileServer]:
    """A chunked body of 60 one-byte chunks, one every INTERVAL."""
    with hostile.HostileServer(hostile.chunked_trickle(60, INTERVAL)) as server:
        yield server


def test_content_length_body_trickle_ends_at_the_deadline(
    content_length_trickle: hostile.HostileServer,
) -> None:
    """A non-streamed body sent a byte at a time fails at the deadline, with its status."""
    server = content_length_trickle
    with session_for(server) as session:
        error, _ = timed(lambda: session.get(server.url + "/x"))
    error = deadline_error(error)
    assert error.response is not None
    assert error.response.status_code == 200
    assert error.response.content == b"x" * error.bytes_received
    assert server.requests == 1  # the deadline left no time for a retry


def test_content_length_body_trickle_streamed_ends_at_the_deadline(
    content_length_trickle: hostile.HostileServer,
) -> None:
    """A streamed body read through iter_content stops at the call's deadline too."""
    server = content_length_trickle
    with session_for(server) as session:
        response = within(HANG, lambda: session.get(server.url + "/x", stream=True))
        with pytest.raises(requests.RequestException) as info:
            within(HANG, lambda: b"".join(response.iter_content(1)))
    error = deadline_error(info.value)
    assert error.response is response
    assert 0 < error.bytes_received < 60
    assert server.requests == 1


def test_chunked_body_trickle_ends_at_the_deadline(
    chunked_trickle: hostile.HostileServer,
) -> None:
    """A chunked body of one-byte chunks fails at the deadline with the bytes that came."""
    server = chunked_trickle
    with session_for(server) as session:
        error, _ = timed(lambda: session.get(server.url + "/x"))
    error = deadline_error(error)
    assert error.response is not None
    assert 0 < error.bytes_received < 60
    assert error.response.content == b"x" * error.bytes_received
    assert server.requests == 1


def test_chunked_body_trickle_through_iter_lines_ends_at_the_deadline(
    chunked_trickle: hostile.HostileServer,
) -> None:
    """iter_lines on a streamed response stops at the deadline with the library's error."""
    server = chunked_trickle
    with session_for(server) as session:
        response = within(HANG, lambda: session.get(server.url + "/x", stream=True))
        with pytest.raises(requests.RequestException) as info:
            within(HANG, lambda: list(response.iter_lines()))
    deadline_error(info.value)
    assert server.requests == 1


def test_streamed_content_property_ends_at_the_deadline(
    chunked_trickle: hostile.HostileServer,
) -> None:
    """response.content of a streamed call is bounded by the deadline as well."""
    server = chunked_trickle
    with session_for(server) as session:
        response = within(HANG, lambda: session.get(server.url + "/x", stream=True))
        error, _ = timed(lambda: response.content)
    deadline_error(error)


def test_headers_trickle_ends_at_the_deadline() -> None:
    """A status line and headers sent a byte at a time fail at the deadline, no status."""
    with (
        hostile.HostileServer(hostile.header_trickle(INTERVAL)) as server,
        session_for(server) as session,
    ):
        error, _ = timed(lambda: session.get(server.url + "/x"))
        requests_seen = server.requests
    error = deadline_error(error)
    assert error.response is None
    assert "before the response's head had arrived" in str(error)
    assert requests_seen == 1


def test_a_stall_ends_at_the_deadline() -> None:
    """Headers and then nothing: the deadline, not a read timeout, ends the call."""
    with (
        hostile.HostileServer(hostile.stall_after_headers()) as server,
        session_for(server) as session,
    ):
        error, _ = timed(lambda: session.get(server.url + "/x", timeout=30))
        requests_seen = server.requests
    error = deadline_error(error)
    assert error.bytes_received == 0
    assert requests_seen == 1


def test_a_deadline_set_by_any_policy_holds() -> None:
    """call.deadline holds on the wire without Retry: a policy of ten lines sets it."""

    def one_second(call: Call, next: Next) -> requests.Response:
        return next(call.evolve(deadline=call.clock.monotonic() + DEADLINE))

    with (
        hostile.HostileServer(hostile.chunked_trickle(60, INTERVAL)) as server,
        session_for(server, one_second) as session,
    ):
        error, _ = timed(lambda: session.get(server.url + "/x"))
    deadline_error(error)


def test_a_post_is_sent_once_and_fails_at_the_deadline(
    content_length_trickle: hostile.HostileServer,
) -> None:
    """A POST whose answer trickles is not re-sent: one request, the deadline's error."""
    server = content_length_trickle
    with session_for(server) as session:
        error, _ = timed(lambda: session.post(server.url + "/jobs", json={"a": 1}))
    deadline_error(error)
    assert server.requests == 1


def test_without_a_deadline_a_slow_body_is_read_whole() -> None:
    """No deadline, nothing changes: a body that takes longer than DEADLINE arrives whole."""
    with (
        hostile.HostileServer(hostile.content_length_trickle(8, DEADLINE / 4)) as server,
        session_for(server, StatusErrors()) as session,
    ):
        response = within(HANG, lambda: session.get(server.url + "/x"))
    assert response.status_code == 200
    assert response.content == b"x" * 8


def test_a_fast_answer_within_the_deadline_is_untouched() -> None:
    """With a deadline, a prompt answer keeps its body and its connection is reused."""
    body = b"y" * 100_000
    with (
        hostile.HostileServer(hostile.fixed(200, body), keep_alive=True) as server,
        session_for(server) as session,
    ):
        first = within(HANG, lambda: session.get(server.url + "/a"))
        streamed = within(HANG, lambda: session.get(server.url + "/b", stream=True))
        chunks = b"".join(streamed.iter_content(4096))
        assert server.connections == 1
    assert first.content == body
    assert chunks == body


@pytest.mark.parametrize(
    "script",
    [hostile.chunked_trickle(60, INTERVAL), hostile.header_trickle(INTERVAL)],
    ids=["body", "headers"],
)
def test_over_tls_a_trickle_ends_at_the_deadline(script: hostile.Script, tmp_path: Path) -> None:
    """Over HTTPS too, a body or headers sent a byte at a time fail at the deadline."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with hostile.HostileServer(script, tls=context) as server:
        with session_for(server) as session:
            error, _ = timed(lambda: session.get(server.url + "/x", verify=str(bundle)))
        requests_seen = server.requests
    deadline_error(error)
    assert requests_seen == 1

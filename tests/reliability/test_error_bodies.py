"""Error bodies are read only up to a cap; success bodies never; broken bodies are typed.

Each row runs a hand-written socket server on loopback (`tests.reliability.hostile`).
The bomb is a valid gzip stream of 2 GiB of zeros, about 2 MiB on the wire: read whole,
as requests reads a non-streamed body, it took 4.1 GB and 7 to 15 s; read through the
pipeline it must cost at most `MAX_ERROR_BODY` and a constant, streamed call or not.
Memory is asserted as a tracemalloc peak with a generous bound (`MEMORY_BOUND`); the
figures measured are in the pull request.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests

from requests_resilience import (
    APIChunkedEncodingError,
    APIContentDecodingError,
    APIStatusError,
    BadRequestError,
    NotFoundError,
    Pipeline,
    PolicyLike,
    Retry,
    ServerError,
    StatusErrors,
    attempts_of,
    mount,
)
from requests_resilience._bodies import MAX_ERROR_BODY
from tests.reliability import hostile
from tests.reliability.conftest import HANG, within

T = TypeVar("T")

GZIP = {"Content-Encoding": "gzip"}
#: The cap and a constant: a few chunks of 64 KiB, their join and the server's buffers.
MEMORY_BOUND = MAX_ERROR_BODY * 8
#: Generous, for a slow shared machine; the measured figure is a few milliseconds.
TIME_BOUND = 5.0


def session_for(server: hostile.HostileServer, *policies: PolicyLike) -> requests.Session:
    """A session with `policies` (default: StatusErrors and one attempt) mounted."""
    pipeline = Pipeline(*(policies or (StatusErrors(), Retry(max_attempts=1, budget=None))))
    return mount(requests.Session(), server.url + "/", pipeline)


def measured(func: Callable[[], T]) -> tuple[T | BaseException, int, float]:
    """What `func` returns or raises, its tracemalloc peak in bytes, and its real time."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        outcome: T | BaseException = within(HANG, func)
    except requests.RequestException as exc:
        outcome = exc
    finally:
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak, elapsed


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """2 GiB of zeros as gzip (built once, before any memory is measured)."""
    return hostile.gzip_bomb()


@pytest.mark.parametrize("stream", [False, True], ids=["read", "streamed"])
@pytest.mark.parametrize(
    ("status", "error_class"), [(500, ServerError), (400, BadRequestError)], ids=["500", "400"]
)
def test_a_gzip_bomb_error_body_costs_the_cap(
    bomb: bytes, stream: bool, status: int, error_class: type[APIStatusError]
) -> None:
    """A 2 GiB gzip error body is inflated to MAX_ERROR_BODY only, streamed call or not."""
    with (
        hostile.HostileServer(hostile.fixed(status, bomb, GZIP)) as server,
        session_for(server) as session,
    ):
        error, peak, _ = measured(lambda: session.get(server.url + "/x", stream=stream))
        assert server.requests == 1
    assert isinstance(error, error_class)
    assert error.response is not None
    assert error.response.content == bytes(MAX_ERROR_BODY)
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB"


def test_without_status_errors_a_non_streamed_error_body_is_capped_too(bomb: bytes) -> None:
    """An empty pipeline returns the 500, its content cut at MAX_ERROR_BODY, cheaply."""
    with (
        hostile.HostileServer(hostile.fixed(500, bomb, GZIP)) as server,
        session_for(server, lambda call, next: next(call)) as session,
    ):
        response, peak, _ = measured(lambda: session.get(server.url + "/x"))
    assert isinstance(response, requests.Response)
    assert response.status_code == 500
    assert response.content == bytes(MAX_ERROR_BODY)
    assert peak < MEMORY_BOUND


def test_a_large_success_body_is_never_capped() -> None:
    """A 3 MiB body that inflates from gzip, and one sent plain, arrive whole."""
    text = b"0123456789abcdef" * (3 * 2**16)
    for body, headers in ((gzip.compress(text), GZIP), (text, {})):
        with (
            hostile.HostileServer(hostile.fixed(200, body, headers)) as server,
            session_for(server) as session,
        ):
            response = within(HANG, lambda: session.get(server.url + "/x"))
        assert response.status_code == 200
        assert len(response.content) == len(text) > MAX_ERROR_BODY
        assert response.content == text


def test_an_error_body_within_the_cap_is_whole_and_keeps_its_connection() -> None:
    """A small 404 body is read whole; its connection goes back to the pool."""
    body = b'{"detail": "no such job"}'
    script = hostile.fixed(404, body, {"Content-Type": "application/json"})
    with (
        hostile.HostileServer(script, keep_alive=True) as server,
        session_for(server) as session,
    ):
        for _ in range(2):
            with pytest.raises(NotFoundError, match="no such job") as info:
                within(HANG, lambda: session.get(server.url + "/jobs/1"))
            assert info.value.response is not None
            assert info.value.response.content == body
        assert server.requests == 2
        assert server.connections == 1


def test_an_error_body_over_the_cap_is_cut_and_its_connection_closed() -> None:
    """A 32 MiB 404 keeps its first MiB; the rest is not drained: a new connection follows."""
    body = b"e" * (32 * MAX_ERROR_BODY)
    with (
        hostile.HostileServer(hostile.fixed(404, body), keep_alive=True) as server,
        session_for(server) as session,
    ):
        for _ in range(2):
            with pytest.raises(NotFoundError) as info:
                within(HANG, lambda: session.get(server.url + "/big"))
            assert info.value.response is not None
            assert info.value.response.content == body[:MAX_ERROR_BODY]
        assert server.requests == 2
        assert server.connections == 2
        # Neither body was read to its end (the kernel's buffers take a few MiB of each).
        assert server.sent < len(body)


def test_a_broken_gzip_body_is_the_librarys_error_with_its_history() -> None:
    """A 200 whose gzip is broken raises APIContentDecodingError, attempts in history."""
    script = hostile.fixed(200, b"not gzip at all", GZIP)
    with hostile.HostileServer(script) as server:
        retry = Retry(max_attempts=2, initial_delay=0.01, budget=None)
        with (
            session_for(server, StatusErrors(), retry) as session,
            pytest.raises(requests.exceptions.ContentDecodingError) as info,
        ):
            within(HANG, lambda: session.get(server.url + "/x"))
        assert server.requests == 2
    error = info.value
    assert isinstance(error, APIContentDecodingError)
    assert [a.error for a in error.history] == ["APIContentDecodingError"] * 2


def test_a_broken_gzip_body_streamed_is_the_librarys_error() -> None:
    """Streamed, the broken gzip surfaces from iter_content as the library's error."""
    script = hostile.fixed(200, b"not gzip at all", GZIP)
    with (
        hostile.HostileServer(script) as server,
        session_for(server) as session,
    ):
        response = within(HANG, lambda: session.get(server.url + "/x", stream=True))
        with pytest.raises(requests.exceptions.ContentDecodingError) as info:
            within(HANG, lambda: b"".join(response.iter_content(1024)))
        assert server.requests == 1
    assert isinstance(info.value, APIContentDecodingError)
    assert info.value.history == attempts_of(response)
    assert info.value.request is response.request


def test_a_truncated_error_body_raises_as_plain_requests_does() -> None:
    """A 500 whose body breaks off is a broken body, as with plain requests: typed."""
    head = b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n" + b"z" * 10

    def script(connection: hostile.Connection, request: bytes) -> None:
        connection.send(head)

    with (
        hostile.HostileServer(script) as server,
        session_for(server) as session,
        pytest.raises(requests.exceptions.ChunkedEncodingError) as info,
    ):
        within(HANG, lambda: session.get(server.url + "/x"))
    assert isinstance(info.value, APIChunkedEncodingError)


def test_a_broken_gzip_body_does_not_leave_its_rest_on_a_pooled_connection() -> None:
    """After a broken 100 KB gzip body, the next call gets its own answer, not the rest."""
    answers = [hostile.fixed(200, b"\x1f\x8b" + b"z" * 100_000, GZIP), hostile.fixed(200, b"ok")]

    def script(connection: hostile.Connection, request: bytes) -> None:
        answers.pop(0)(connection, request)

    with (
        hostile.HostileServer(script, keep_alive=True) as server,
        session_for(server) as session,
    ):
        with pytest.raises(APIContentDecodingError):
            within(HANG, lambda: session.get(server.url + "/broken"))
        assert within(HANG, lambda: session.get(server.url + "/next")).content == b"ok"
        assert server.requests == 2

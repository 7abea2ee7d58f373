"""A call's deadline on the wire: connect, request, headers and body, whatever the pace.

A socket timeout bounds one wait for bytes, not the call: a server that sends one byte
a second never trips it, and http.client keeps reading a status line, a header, a
chunk-size line or a ``Content-Length`` body for as long as the bytes keep coming.
urllib3's ``Timeout(total=...)`` has the same gap (its total only shortens the socket
timeout once, before the response is read), and so do httpx's per-operation timeouts;
stamina checks its timeout only between attempts.

This module makes the deadline hold without a thread:

- The adapter puts the call's deadline (on `time.monotonic`, see `wire_deadline`) in a
  thread-local for the time of one `HTTPAdapter.send`, and cuts the connect and read
  timeouts to the time left.
- Its connection pools use `DeadlineHTTPConnection` / `DeadlineHTTPSConnection`, which
  read that thread-local. Each ``send`` of the request waits at most the time left; and
  `getresponse` hands http.client a `DeadlineSocket` to read the response from, so
  every ``recv`` of the status line, the headers and the body (also when the body is
  streamed later, through ``iter_content``) waits at most ``min(read timeout, time
  left)`` and none starts after the deadline. A trickle then ends at the deadline plus
  the time of one ``recv`` call on bytes that are already there: microseconds.
- When the deadline is what stopped the call, the error says so (`deadline_error`).

With no deadline nothing of this runs but one thread-local read per response. What the
deadline does not bound: the DNS lookup (``getaddrinfo`` has no timeout), waiting for a
free connection of a full pool with ``pool_block=True``, a body streamed after the
deadline from bytes already buffered, and connections made by another transport
(``transport=``) or through a SOCKS proxy, which keep the per-read timeouts only.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import urllib3.connection
import urllib3.connectionpool
import urllib3.poolmanager

from requests_resilience._errors import (
    APIReadTimeoutError,
    APITimeoutError,
    _causes,
    _safe_url,
)

if TYPE_CHECKING:
    from requests import PreparedRequest, Response

    from requests_resilience._pipeline import Call
    from requests_resilience._secrets import Redactor

__all__ = [
    "DEADLINE_POOL_CLASSES",
    "DeadlineHTTPConnection",
    "DeadlineHTTPSConnection",
    "DeadlinePassedError",
    "DeadlineSocket",
    "deadline_error",
    "deadline_passed",
    "install_pool_classes",
    "wire",
    "wire_deadline",
]


#: The least time a write of the request is given, when the deadline is that close.
_MIN_WAIT = 0.001


class DeadlinePassedError(TimeoutError):
    """A read or write was refused because the call's deadline had passed.

    A `TimeoutError` (``socket.timeout``), so urllib3 and requests treat it as the read
    timeout it is; the adapter then turns it into `APIReadTimeoutError` with
    `deadline_error`.
    """


class _Wire(threading.local):
    """The deadline of the `HTTPAdapter.send` running in this thread, if any."""

    deadline: float | None = None


#: This thread's wire deadline. `wire_deadline` sets it for a block; the adapter's
#: per-request path sets ``wire.deadline`` itself and puts the previous value back
#: (a ``with`` block costs an object and two method calls more).
wire = _Wire()


class wire_deadline:  # noqa: N801 - used like a function: ``with wire_deadline(...)``
    """For the ``with`` block, the connections of this thread keep `deadline`.

    Args:
        deadline: the end of the call on `time.monotonic`.
    """

    __slots__ = ("_deadline", "_previous")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._previous: float | None = None

    def __enter__(self) -> None:
        self._previous = wire.deadline
        wire.deadline = self._deadline

    def __exit__(self, *exc_info: object) -> None:
        wire.deadline = self._previous


class DeadlineSocket:
    """A socket whose reads never wait past a deadline.

    Each ``recv_into`` waits at most ``min(timeout, time left)`` and raises
    `DeadlinePassedError` when no time is left, or when the time left, not the socket
    timeout, is what ran out. Everything else is the wrapped socket's: http.client
    reads the response through ``makefile()``, which this class builds on itself.

    Args:
        sock: the connection's socket (plain or TLS).
        deadline: the end of the call on `time.monotonic`.
        timeout: the read timeout to keep (None: wait as long as the deadline allows).
    """

    __slots__ = ("_deadline", "_sock", "_timeout")

    def __init__(self, sock: socket.socket, deadline: float, timeout: float | None) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout = timeout

    def recv_into(self, buffer: Any, *args: Any) -> int:
        """`socket.recv_into`, waiting at most until the deadline."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassedError("the call's deadline passed")
        timeout = self._timeout
        binding = timeout is None or left < timeout
        sock = self._sock
        sock.settimeout(left if binding else timeout)
        try:
            return sock.recv_into(buffer, *args)  # as given: TLS sockets read 0 bytes for 0
        except TimeoutError:
            if binding:
                raise DeadlinePassedError("the call's deadline passed") from None
            raise

    def makefile(self, mode: str = "rb", buffering: int | None = None, **_: Any) -> Any:
        """A buffered binary reader over this socket, as `socket.makefile` makes one."""
        if mode != "rb":  # http.client reads with "rb" only
            sock: Any = self._sock
            return sock.makefile(mode, buffering)
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type] # duck-typed socket
        self._sock._io_refs += 1  # type: ignore[attr-defined] # socket.makefile's own count
        size = io.DEFAULT_BUFFER_SIZE if buffering is None or buffering < 0 else buffering
        return io.BufferedReader(raw, size)

    def _decref_socketios(self) -> None:
        self._sock._decref_socketios()  # type: ignore[attr-defined] # socket.makefile's count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _send(conn: urllib3.connection.HTTPConnection, data: Any, send: Callable[[Any], None]) -> None:
    deadline = wire.deadline
    sock = conn.sock
    if deadline is not None and sock is not None:
        # Each write waits at most the time left (the reads then refuse to start late).
        left = max(deadline - time.monotonic(), _MIN_WAIT)
        timeout = sock.gettimeout()
        if timeout is None or left < timeout:
            sock.settimeout(left)
    send(data)


def _getresponse(
    conn: urllib3.connection.HTTPConnection,
    getresponse: Callable[[], urllib3.response.HTTPResponse],
) -> urllib3.response.HTTPResponse:
    deadline = wire.deadline
    sock = conn.sock
    if deadline is None or not isinstance(sock, socket.socket):
        return getresponse()
    timeout = conn.timeout  # the read timeout, which urllib3 set for this response
    if timeout is not None and not isinstance(timeout, (int, float)):
        timeout = sock.gettimeout()  # a default-timeout sentinel: what the socket has
    reader = DeadlineSocket(sock, deadline, timeout)
    conn.sock = reader  # http.client makes its file from it
    try:
        return getresponse()
    finally:
        if conn.sock is reader:  # http.client sets None when it closes the connection
            conn.sock = sock


class DeadlineHTTPConnection(urllib3.connection.HTTPConnection):
    """urllib3's `HTTPConnection`, keeping the deadline of the call that uses it."""

    def send(self, data: Any) -> None:
        """Send `data`, waiting at most until the deadline."""
        _send(self, data, super().send)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override] # as urllib3's
        """Read the response's head, and later its body, at most until the deadline."""
        return _getresponse(self, super().getresponse)


class DeadlineHTTPSConnection(urllib3.connection.HTTPSConnection):
    """urllib3's `HTTPSConnection`, keeping the deadline of the call that uses it."""

    def send(self, data: Any) -> None:
        """Send `data`, waiting at most until the deadline."""
        _send(self, data, super().send)

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override] # as urllib3's
        """Read the response's head, and later its body, at most until the deadline."""
        return _getresponse(self, super().getresponse)


class DeadlineHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    """A pool of `DeadlineHTTPConnection`."""

    ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    """A pool of `DeadlineHTTPSConnection`."""

    ConnectionCls = DeadlineHTTPSConnection


#: The pool classes by scheme that a `PoolManager` of the adapter uses.
DEADLINE_POOL_CLASSES = {
    "http": DeadlineHTTPConnectionPool,
    "https": DeadlineHTTPSConnectionPool,
}


def install_pool_classes(manager: urllib3.poolmanager.PoolManager) -> None:
    """Make `manager` build deadline-keeping pools, unless it was given pools of its own.

    A manager whose ``pool_classes_by_scheme`` is not urllib3's default (a SOCKS proxy
    manager, a subclass of yours) is left as it is.
    """
    if manager.pool_classes_by_scheme == urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = dict(DEADLINE_POOL_CLASSES)


def deadline_passed(deadline: float | None, error: BaseException) -> bool:
    """Whether `error` came from the wire `deadline` passing (not a plain timeout)."""
    if deadline is None:
        return False
    return time.monotonic() >= deadline or any(
        isinstance(c, DeadlinePassedError) for c in _causes(error)
    )


def deadline_error(
    call: Call,
    request: PreparedRequest,
    redactor: Redactor,
    *,
    response: Response | None = None,
    received: int = 0,
) -> APITimeoutError:
    """The error for a call whose deadline passed on the wire.

    An `APIReadTimeoutError` (so a `requests.ReadTimeout`) when the request may have
    been sent, with `bytes_received` set and, when the response's head had arrived,
    the response (its ``content`` holds the body bytes that arrived, when the pipeline
    was reading it); `request_sent` is True: the server may have acted.

    Args:
        call: the call whose deadline passed.
        request: the request of the attempt.
        redactor: removes secrets from the message.
        response: the response, when its head had arrived.
        received: body bytes received before the deadline.
    """
    target = f"{request.method} {_safe_url(request.url)}"
    if response is None:
        what = "before the response's head had arrived"
    else:
        what = f"after status {response.status_code} and {received} body byte(s)"
    message = redactor.redact(f"deadline passed for {target} {what}")
    if call.history:
        message += f" [attempt {call.attempt}]"
    error = APIReadTimeoutError(message, request_sent=True, request=request, response=response)
    error.bytes_received = received
    return error

"""The fake server's HTTP/1.1 request handler: keep-alive, request-body drains, resets.

werkzeug's development server (3.1) parses requests and builds the WSGI environ well, but
its response writer sends ``Connection: close`` on every answer, so a client could never
reuse a pooled connection against it. This handler keeps werkzeug's parsing and environ
and writes the answer itself:

- the connection stays open (HTTP/1.1 keep-alive) when the request body was fully read,
  or is small enough to be drained, and the answer was sent whole;
- an answer shorter than its ``Content-Length`` is followed by a close (a truncated body);
- :class:`AbortConnection` from the app closes the socket with ``SO_LINGER`` 0 (an RST);
- a large unread body (a 413) is drained after the answer, within limits, so the client
  reads the 413 rather than a connection reset;
- werkzeug's request logging is silenced.

The connections in use are tracked so that stopping the server can close them at once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from werkzeug.serving import WSGIRequestHandler

from requests_resilience.testing._faults import AbortConnection

if TYPE_CHECKING:
    from _typeshed import OptExcInfo, WriteableBuffer
    from _typeshed.wsgi import WSGIEnvironment

_log = logging.getLogger("requests_resilience.testing")

RAW_HEADERS_KEY = "requests_resilience.raw_headers"
"""Environ key of the request headers as sent: a list of (name, value) pairs."""
CONNECTION_ID_KEY = "requests_resilience.connection_id"
"""Environ key of the number of the TCP connection (1, 2, ... per server)."""

_DRAIN_BEFORE_ANSWER = 64 * 1024  # unread body small enough to drain and keep the connection
_DRAIN_AFTER_ANSWER = 64 * 1024 * 1024  # unread body drained after a 413 before closing
_DRAIN_IDLE_SECONDS = 0.25
_DRAIN_TOTAL_SECONDS = 2.0
_CHUNK = 64 * 1024


class ConnectionTracker:
    """The open client connections of one server and the threads serving them."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._open: dict[socket.socket, threading.Thread] = {}
        self._accepted = 0

    def add(self, sock: socket.socket) -> int:
        """Track a connection served by the current thread; return its number."""
        with self._lock:
            self._open[sock] = threading.current_thread()
            self._accepted += 1
            return self._accepted

    def discard(self, sock: socket.socket) -> None:
        """Stop tracking a connection."""
        with self._lock:
            self._open.pop(sock, None)

    def close_all(self, timeout: float) -> None:
        """Shut every open connection down and wait up to ``timeout`` for its thread."""
        with self._lock:
            items = list(self._open.items())
        for sock, _ in items:
            with contextlib.suppress(OSError):  # already closed by its thread
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in items:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))


class _RequestBody(io.RawIOBase):
    """The request body as the app reads it, tracking whether all of it was read."""

    def __init__(self, stream: io.RawIOBase | io.BufferedIOBase) -> None:
        self._stream = stream
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def unread_at_least(self) -> int:
        """A lower bound of the bytes not read yet (0 when unknown)."""
        return 0

    def readinto(self, buffer: WriteableBuffer) -> int:
        read = self._stream.readinto(buffer) or 0
        if read == 0:
            self.exhausted = True
        return read

    def discard(self, limit: int, seconds: float) -> bool:
        """Read and drop the unread body, at most ``limit`` bytes; True if all was read.

        Gives up after ``seconds``; the caller bounds each read with a socket timeout.
        """
        if self.unread_at_least() > limit:
            return False
        deadline = time.monotonic() + seconds
        sink = memoryview(bytearray(_CHUNK))
        while not self.exhausted:
            if limit < 0 or time.monotonic() >= deadline:
                return False
            limit -= self.readinto(sink)
        return True


class _SizedBody(_RequestBody):
    """A body of known ``Content-Length``: reads stop at its end."""

    def __init__(self, stream: io.BufferedIOBase, length: int) -> None:
        super().__init__(stream)
        self._remaining = length
        self.exhausted = length == 0

    def unread_at_least(self) -> int:
        return self._remaining

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._remaining == 0 or not view:
            return 0
        read = self._stream.readinto(view[: self._remaining]) or 0
        self._remaining -= read
        if self._remaining == 0 or read == 0:  # read == 0: the client closed early
            self.exhausted = True
        return read


class _Answer:
    """Writes one WSGI answer on the handler's connection."""

    def __init__(self, handler: KeepAliveHandler, body: _RequestBody) -> None:
        self._handler = handler
        self._body = body
        self._status: str | None = None
        self._headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self._chunked = False
        self._declared: int | None = None
        self._sent = 0
        self._bodyless = False
        self.drain_after = False

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> Callable[[bytes], object]:
        if exc_info is not None and exc_info[1] is not None and self.headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self._status = status
        self._headers = list(headers)
        return self.write

    def _request_body_settled(self) -> bool:
        """Whether the connection can serve another request after this answer.

        A small unread body is drained now; a large one after the answer, then close.
        """
        if self._body.exhausted:
            return True
        if self._discard(_DRAIN_BEFORE_ANSWER, keep=True):
            return True
        self.drain_after = True
        return False

    def _discard(self, limit: int, *, keep: bool) -> bool:
        """Drain the unread request body with a per-read timeout; True if all was read."""
        sock = self._handler.connection
        try:
            sock.settimeout(_DRAIN_IDLE_SECONDS)
            return self._body.discard(limit, _DRAIN_TOTAL_SECONDS)
        except (OSError, ValueError):  # ValueError: werkzeug's dechunker on a short read
            return False  # the client stopped sending: the connection will be closed
        finally:
            if keep:  # the answer is still to be written, with no timeout
                with contextlib.suppress(OSError):
                    sock.settimeout(None)

    def _send_headers(self) -> None:
        handler = self._handler
        if self._status is None:
            raise RuntimeError("the app wrote before calling start_response")
        code_text, _, reason = self._status.partition(" ")
        code = int(code_text)
        handler.send_response(code, reason or None)
        names = set()
        for name, value in self._headers:
            handler.send_header(name, value)
            names.add(name.lower())
            if name.lower() == "content-length":
                self._declared = int(value)
        self._bodyless = handler.command == "HEAD" or code in (204, 304)
        if "content-length" not in names and not self._bodyless:
            if handler.request_version == "HTTP/1.1":
                self._chunked = True
                handler.send_header("Transfer-Encoding", "chunked")
            else:
                handler.send_header("Connection", "close")
        if not self._request_body_settled():
            handler.send_header("Connection", "close")
        handler.end_headers()
        self.headers_sent = True

    def write(self, data: bytes) -> None:
        """Send ``data``, sending the status line and headers first if not yet sent."""
        if not self.headers_sent:
            self._send_headers()
        if data and not self._bodyless:
            wfile = self._handler.wfile
            if self._chunked:
                wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                wfile.write(data)
            self._sent += len(data)

    def finish(self) -> None:
        """Complete the answer; close the connection if its body was short."""
        if not self.headers_sent:
            self._send_headers()
        if self._chunked:
            self._handler.wfile.write(b"0\r\n\r\n")
        elif self._declared is not None and self._sent < self._declared and not self._bodyless:
            self._handler.close_connection = True

    def drain(self) -> None:
        """After answering a large unread body, read it (within limits) before closing."""
        if self.drain_after:
            self._discard(_DRAIN_AFTER_ANSWER, keep=False)


class KeepAliveHandler(WSGIRequestHandler):
    """A quiet werkzeug request handler that keeps HTTP/1.1 connections alive.

    Subclass it per server with :func:`handler_class`, which binds the connection tracker.
    """

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK would add ~40 ms to every answer.
    disable_nagle_algorithm = True
    tracker: ClassVar[ConnectionTracker]
    connection_id: int

    def setup(self) -> None:
        """Set the connection up and track it."""
        super().setup()
        self.connection_id = self.tracker.add(self.connection)

    def handle(self) -> None:
        """Serve requests until the connection closes; never let an error escape."""
        try:
            super().handle()
        except Exception:
            _log.debug("fake Vinci server: connection error", exc_info=True)

    def finish(self) -> None:
        """Close the connection's files and stop tracking it."""
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.tracker.discard(self.connection)

    def run_wsgi(self) -> None:
        """Run the app for one request and write its answer."""
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        environ[RAW_HEADERS_KEY] = list(self.headers.items())
        environ[CONNECTION_ID_KEY] = self.connection_id
        body = self._wrap_input(environ)
        answer = _Answer(self, body)
        try:
            app_iter = self.server.app(environ, answer.start_response)
            try:
                for data in app_iter:
                    answer.write(data)
                answer.finish()
            finally:
                close = getattr(app_iter, "close", None)
                if close is not None:
                    close()
        except AbortConnection:
            self._abort()
            return
        except OSError:
            self.close_connection = True
            return
        except Exception:
            _log.exception("fake Vinci server: unhandled error")
            self.close_connection = True
            if not answer.headers_sent:
                self._send_internal_error()
            return
        if self.close_connection:
            answer.drain()

    def _wrap_input(self, environ: WSGIEnvironment) -> _RequestBody:
        body: _RequestBody
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's DechunkedInput
            body = _RequestBody(environ["wsgi.input"])
        else:
            try:
                length = max(int(environ.get("CONTENT_LENGTH") or 0), 0)
            except ValueError:
                length = 0
            body = _SizedBody(self.rfile, length)
        environ["wsgi.input"] = body
        return body

    def _send_internal_error(self) -> None:
        body = b'{"detail": "Internal Server Error"}'
        try:
            self.send_response(500, "Internal Server Error")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def _abort(self) -> None:
        """Reset the connection: ``SO_LINGER`` 0, then close the descriptor at once."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The handler's files still reference the socket object, which would delay the
            # close until they are closed; detach the descriptor and close it now.
            socket.socket(fileno=sock.detach()).close()
        except OSError:
            _log.debug("fake Vinci server: reset failed", exc_info=True)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Do not log requests (werkzeug would print each one to stderr)."""

    def log(self, type: str, message: str, *args: object) -> None:
        """Do not log (werkzeug would print to stderr)."""


def handler_class(tracker: ConnectionTracker) -> type[KeepAliveHandler]:
    """Return a :class:`KeepAliveHandler` subclass bound to ``tracker``."""

    class FakeVinciRequestHandler(KeepAliveHandler):
        pass

    FakeVinciRequestHandler.tracker = tracker
    return FakeVinciRequestHandler

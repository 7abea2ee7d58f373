"""Hand-written hostile HTTP servers on loopback, for the reliability suite.

Each `HostileServer` listens on ``127.0.0.1:0`` and answers every connection in its own
thread with a *script*: a function that gets the connection and the request head it
read and writes whatever bytes it likes, at whatever pace. The scripts below are the
ones the suite uses: bodies and headers that trickle one byte at a time, a stall, a
gzip decompression bomb, and a keep-alive server that echoes each request's path.

Every server counts the requests it read (`requests`), stops by itself when the test
leaves its ``with`` block, and never sends to any address but the client's.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Callable
from functools import cache
from types import TracebackType

#: A script: writes the answer to one connection, given the request head it read.
Script = Callable[["Connection", bytes], None]


class Connection:
    """One accepted connection, as a script sees it."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping
        self.sent = 0  # bytes written, body and head
        self._buffer = b""

    def read_head(self) -> bytes | None:
        """The next request head (up to the blank line), or None when the client left."""
        while b"\r\n\r\n" not in self._buffer:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        return head

    def send(self, data: bytes) -> bool:
        """Write `data`; False when the client has gone (the script should stop)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True

    def trickle(self, data: bytes, interval: float) -> bool:
        """Write `data` one byte every `interval` seconds, until done or stopped."""
        for index in range(len(data)):
            if not self.send(data[index : index + 1]):
                return False
            if self.stopping.wait(interval):
                return False
        return True


class HostileServer:
    """A threaded TCP server on loopback that runs `script` for each connection.

    With ``keep_alive=True`` it reads the next request on the same connection after
    each answer; else it closes the connection after one. With ``tls=`` (a server-side
    context) it speaks HTTPS.

    Attributes:
        requests: request heads read, over every connection.
        connections: connections accepted.
    """

    def __init__(
        self, script: Script, *, keep_alive: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self._script = script
        self._keep_alive = keep_alive
        self._tls = tls
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self.requests = 0
        self.connections = 0
        self.sent = 0
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL, without a trailing slash."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, end every script, close every socket."""
        self.stopping.set()
        self._acceptor.join(5)
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for sock in socks:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # TLS or not: the TCP
        for thread in threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle waits
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            with self._lock:
                self.connections += 1
                self._socks.append(sock)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        if self._tls is not None:
            try:
                sock.settimeout(5)
                sock = self._tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except OSError:
                sock.close()
                return
        connection = Connection(sock, self.stopping)
        try:
            while not self.stopping.is_set():
                head = connection.read_head()
                if head is None:
                    return
                with self._lock:
                    self.requests += 1
                self._script(connection, head)
                if not self._keep_alive:
                    return
        finally:
            with self._lock:
                self.sent += connection.sent
            sock.close()


# -- scripts ------------------------------------------------------------------------


def content_length_trickle(length: int = 60, interval: float = 1.0) -> Script:
    """A 200 that announces ``Content-Length: length``, then sends a byte per interval."""

    def script(connection: Connection, head: bytes) -> None:
        head_out = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode()
        if connection.send(head_out):
            connection.trickle(b"x" * length, interval)

    return script


def chunked_trickle(chunks: int = 60, interval: float = 1.0) -> Script:
    """A chunked 200 that sends one 1-byte chunk per interval."""

    def script(connection: Connection, head: bytes) -> None:
        if not connection.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"):
            return
        for _ in range(chunks):
            if not connection.send(b"1\r\nx\r\n") or connection.stopping.wait(interval):
                return
        connection.send(b"0\r\n\r\n")

    return script


def header_trickle(interval: float = 1.0) -> Script:
    """A response whose status line and headers arrive one byte per interval."""
    filler = "".join(f"X-Filler-{n}: {'y' * 20}\r\n" for n in range(10))
    data = f"HTTP/1.1 200 OK\r\n{filler}Content-Length: 2\r\n\r\nok".encode()

    def script(connection: Connection, head: bytes) -> None:
        connection.trickle(data, interval)

    return script


def stall_after_headers() -> Script:
    """Headers of a 60-byte body, then silence until the server stops."""

    def script(connection: Connection, head: bytes) -> None:
        if connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n"):
            connection.stopping.wait(120)

    return script


def fixed(status: int, body: bytes, headers: dict[str, str] | None = None) -> Script:
    """An answer with `status`, `body` and `headers`, sent as fast as the client reads."""
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head_out = ("\r\n".join(lines) + "\r\n\r\n").encode()

    def script(connection: Connection, head: bytes) -> None:
        if connection.send(head_out):
            for start in range(0, len(body), 65536):
                if not connection.send(body[start : start + 65536]):
                    return

    return script


def echo_path(connection: Connection, head: bytes) -> None:
    """Answer with the request's own path as the body (run it with ``keep_alive=True``)."""
    path = head.split(b" ", 2)[1]
    connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))


@cache
def gzip_bomb(inflated_mib: int = 2048) -> bytes:
    """A valid gzip stream of `inflated_mib` MiB of zeros (2048 MiB -> about 2 MiB)."""
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor starts afresh: every further MiB encodes alike.
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (inflated_mib << 20) & 0xFFFFFFFF)
    return header + first + block * (inflated_mib - 1) + end + trailer

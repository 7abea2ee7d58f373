"""Scripted faults for the fake Vinci server.

A :class:`Fault` describes one misbehaviour; the server consumes one fault per matching
request from a FIFO script (see ``FakeVinciServer.script``). The faults fall in three
groups:

- **replace the response**: ``status`` and ``body`` answer in place of the endpoint. With
  ``after=True`` the endpoint runs first (a job is created and charged) and its answer is
  thrown away, which models "the server acted, the client cannot know".
- **break the connection**: ``reset`` aborts the TCP connection with an RST and no answer
  (``after=True``: once the endpoint has acted); ``reset_mid_body`` and ``truncated`` send
  the endpoint's status, headers and half its body, then reset or close.
- **slow the answer**: ``delay`` waits before handling the request (the client sees nothing,
  so a short read timeout fires as ``requests.ReadTimeout``); ``stall_after_headers`` sends
  the endpoint's status and headers at once and its body only after the stall.

``reset_mid_body``, ``truncated`` and ``stall_after_headers`` shape the endpoint's real
answer, so the endpoint runs (and charges) for them too.

Presets for the common cases, one line each: ``rate_limited(retry_after=...)`` (a 429
worded as the API words it), ``insufficient_balance()`` (a 402), ``outage(n)`` (the next
``n`` requests get a 503) and ``delay(seconds)`` (a slow response).
"""

from __future__ import annotations

import http
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

FaultKind = Literal[
    "status", "body", "reset", "reset_mid_body", "stall_after_headers", "truncated", "delay"
]
"""The kinds of :class:`Fault`, also the name recorded in ``RecordedRequest.fault``."""

_KINDS: frozenset[str] = frozenset(
    ("status", "body", "reset", "reset_mid_body", "stall_after_headers", "truncated", "delay")
)
_RESPONDING_KINDS: frozenset[str] = frozenset(("status", "body"))
_TIMED_KINDS: frozenset[str] = frozenset(("stall_after_headers", "delay"))
_AFTER_KINDS: frozenset[str] = frozenset(("status", "body", "reset"))

JsonBody = Mapping[str, object]


class AbortConnection(Exception):  # noqa: N818 - a signal to the handler, not an error
    """Raised by the app, or inside its response iterator, to reset the connection.

    The request handler catches it and closes the socket with ``SO_LINGER`` 0, so the
    client sees an RST instead of (the rest of) an answer.
    """


def reason_phrase(code: int) -> str:
    """Return the standard reason phrase for ``code``, or ``"Error"`` if it has none."""
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def detail_body(detail: str) -> bytes:
    """Encode the API's error body, ``{"detail": detail}``."""
    return json.dumps({"detail": detail}).encode()


def _encode_body(body: bytes | str | JsonBody) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(dict(body)).encode()


def _header_pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(value)) for name, value in (headers or {}).items())


def _retry_after_text(value: str | float) -> str:
    if isinstance(value, bool):
        raise TypeError("retry_after must be a str or a number, not a bool")
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scripted misbehaviour of the fake server, consumed by one matching request.

    Build faults with the class methods rather than the constructor; each documents what
    the client observes. A fault is frozen and can be queued any number of times.

    Example:
        >>> from requests_resilience.testing import FakeVinciServer, Fault
        >>> with FakeVinciServer() as server:  # doctest: +SKIP
        ...     server.script(
        ...         Fault.status(503, retry_after="0.2"),
        ...         Fault.reset(),
        ...         path="/generate/text-to-video",
        ...     )
        ...     # the next two text-to-video POSTs get a 503, then a reset; the third works

    Attributes:
        kind: What the fault does; also the name recorded in ``RecordedRequest.fault``.
        status_code: The status sent by ``status`` and ``body`` faults.
        headers: Extra response headers of ``status`` and ``body`` faults.
        payload: The body of ``status`` and ``body`` faults, sent as is.
        seconds: How long ``delay`` and ``stall_after_headers`` wait.
        after: Run the endpoint first (``status``, ``body`` and ``reset`` only).
    """

    kind: FaultKind
    status_code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    payload: bytes | None = field(default=None, repr=False)
    seconds: float = 0.0
    after: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {self.kind!r}")
        if self.kind in _RESPONDING_KINDS:
            code = self.status_code
            if not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599:
                raise ValueError(f"status_code must be an int from 200 to 599, got {code!r}")
        elif self.status_code is not None:
            raise ValueError(f"status_code is not used by {self.kind!r} faults")
        if self.kind in _TIMED_KINDS and not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {self.seconds!r}")
        if self.after and self.kind not in _AFTER_KINDS:
            raise ValueError(f"after=True is not supported by {self.kind!r} faults")

    @property
    def name(self) -> str:
        """The name recorded for a request this fault was applied to (its ``kind``)."""
        return self.kind

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: str | float | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | JsonBody | None = None,
        after: bool = False,
    ) -> Fault:
        """Answer with status ``code`` instead of the endpoint's answer.

        Args:
            code: The HTTP status, 200 to 599.
            retry_after: Sent verbatim as ``Retry-After`` (``"0.2"``, ``"garbage"``, ``-1``,
                an HTTP date...); numbers are sent as ``str(value)``.
            headers: Extra response headers.
            body: A mapping is sent as JSON; bytes or str are sent raw. The default is the
                API's error shape, ``{"detail": "<reason phrase>"}``. The ``Content-Type``
                is ``application/json`` unless ``headers`` sets one.
            after: Run the endpoint first (create and charge a job), then answer ``code``.

        Returns:
            The fault.
        """
        pairs = [("Content-Type", "application/json")]
        if retry_after is not None:
            pairs.append(("Retry-After", _retry_after_text(retry_after)))
        extra = _header_pairs(headers)
        extra_names = {name.lower() for name, _ in extra}
        pairs = [pair for pair in pairs if pair[0].lower() not in extra_names]
        payload = detail_body(reason_phrase(code)) if body is None else _encode_body(body)
        return cls(
            kind="status",
            status_code=code,
            headers=(*pairs, *extra),
            payload=payload,
            after=after,
        )

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = 60, *, after: bool = False) -> Fault:
        """A 429 as the Vinci API words it, with ``Retry-After`` (the common case, in a line).

        The body is ``{"detail": "Rate limit exceeded. Try again in N seconds."}``. A
        client's `Retry` honours ``Retry-After`` up to its ``max_retry_after`` (60 s by
        default): ``Fault.rate_limited(retry_after=3600)`` makes the call fail at once
        with `RateLimitError`, without scripting one 429 per attempt.

        Args:
            retry_after: Sent as ``Retry-After`` (seconds or an HTTP date); None sends
                none (the real API does not document the header).
            after: Run the endpoint first (the request counts, a job is charged).

        Returns:
            The fault.

        Example:
            >>> server.script(Fault.rate_limited(retry_after=3600))  # doctest: +SKIP
        """
        seconds = 60
        if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool):
            seconds = max(math.ceil(retry_after), 0)
        detail = f"Rate limit exceeded. Try again in {seconds} seconds."
        return cls.status(429, retry_after=retry_after, body={"detail": detail}, after=after)

    @classmethod
    def insufficient_balance(cls, balance: float = 0.0, required: float = 0.25) -> Fault:
        """A 402 as the Vinci API words it: the balance does not cover the job.

        The body is ``{"detail": "Insufficient balance. Current balance: $0.00,
        required: $0.25"}``; the server creates and charges nothing. (To make the
        server refuse for real, set ``server.balance_usd`` instead.)

        Args:
            balance: The balance the detail states.
            required: The cost the detail states.

        Returns:
            The fault.

        Example:
            >>> server.script(Fault.insufficient_balance(1.25, 2.50))  # doctest: +SKIP
        """
        detail = (
            f"Insufficient balance. Current balance: ${balance:.2f}, required: ${required:.2f}"
        )
        return cls.status(402, body={"detail": detail})

    @classmethod
    def outage(
        cls, requests: int = 1, *, status: int = 503, retry_after: str | float | None = None
    ) -> tuple[Fault, ...]:
        """The next ``requests`` requests fail with ``status``: an outage counted in requests.

        ``FakeVinciServer.script`` takes the tuple as it is (``server.script(
        Fault.outage(3))``). For an outage measured in time instead, use
        ``FakeVinciServer.outage(seconds)``.

        Args:
            requests: How many requests fail, at least 1.
            status: The status they get, 200 to 599 (503 by default).
            retry_after: Sent as ``Retry-After`` on each; none if None.

        Returns:
            The faults, one per request.

        Example:
            >>> server.script(Fault.outage(3, retry_after=0.1))  # doctest: +SKIP
        """
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise ValueError(f"requests must be an int >= 1, got {requests!r}")
        return (cls.status(status, retry_after=retry_after),) * requests

    @classmethod
    def body(
        cls,
        status: int,
        body: bytes | str | JsonBody,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        after: bool = False,
    ) -> Fault:
        """Answer with an arbitrary body: non-JSON errors, huge bodies, JSON of a wrong shape.

        Args:
            status: The HTTP status, 200 to 599.
            body: Bytes or str are sent raw; a mapping is sent as JSON.
            content_type: The ``Content-Type`` header.
            headers: Extra response headers.
            after: Run the endpoint first, then send this answer instead of its own.

        Returns:
            The fault.
        """
        return cls(
            kind="body",
            status_code=status,
            headers=(("Content-Type", content_type), *_header_pairs(headers)),
            payload=_encode_body(body),
            after=after,
        )

    @classmethod
    def reset(cls, *, after: bool = False) -> Fault:
        """Abort the TCP connection with an RST and send no answer.

        The client sees a connection error (``requests.ConnectionError``).

        Args:
            after: Reset only once the endpoint has acted (job created and charged).

        Returns:
            The fault.
        """
        return cls(kind="reset", after=after)

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Send the status, the headers with the full ``Content-Length``, half the body, RST.

        The endpoint runs. Reading the body fails (``requests.ChunkedEncodingError`` or
        ``requests.ConnectionError``).

        Returns:
            The fault.
        """
        return cls(kind="reset_mid_body")

    @classmethod
    def stall_after_headers(cls, seconds: float) -> Fault:
        """Send the status and headers at once, then wait ``seconds`` before the body.

        The endpoint runs. With ``requests``, a read timeout shorter than the stall fires
        while reading the body, which ``requests`` reports as ``requests.ConnectionError``
        wrapping urllib3's ``ReadTimeoutError`` (not as ``requests.ReadTimeout``). The stall
        ends early when the server stops.

        Args:
            seconds: How long to stall.

        Returns:
            The fault.
        """
        return cls(kind="stall_after_headers", seconds=seconds)

    @classmethod
    def truncated(cls) -> Fault:
        """Send the status and headers with a ``Content-Length`` larger than the body, close.

        The endpoint runs. Half of its body is sent, then the connection is closed cleanly
        (FIN), so the client reads a short body (``requests.ChunkedEncodingError``).

        Returns:
            The fault.
        """
        return cls(kind="truncated")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before handling the request normally (latency).

        Nothing is sent during the wait, so a shorter read timeout fires as
        ``requests.ReadTimeout``. The wait ends early when the server stops.

        Args:
            seconds: How long to wait.

        Returns:
            The fault.
        """
        return cls(kind="delay", seconds=seconds)


def canned_response_app(
    status_code: int, headers: list[tuple[str, str]], body: bytes
) -> WSGIApplication:
    """Return a WSGI app that sends exactly this status, these headers and this body."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        start_response(
            f"{status_code} {reason_phrase(status_code)}",
            [*headers, ("Content-Length", str(len(body)))],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return app


def shaped_response_app(
    fault: Fault,
    status: str,
    headers: list[tuple[str, str]],
    body: bytes,
    wait: Callable[[float], bool],
) -> WSGIApplication:
    """Return a WSGI app that sends an endpoint's answer misshaped by ``fault``.

    Args:
        fault: A ``reset_mid_body``, ``truncated`` or ``stall_after_headers`` fault.
        status: The endpoint's status line, e.g. ``"200 OK"``.
        headers: The endpoint's headers, without ``Content-Length``.
        body: The endpoint's body.
        wait: Waits up to the given seconds; returns True if the server is stopping.

    Returns:
        The WSGI app.
    """
    declared = max(len(body), 1)
    half = body[: declared // 2]

    def stall() -> Iterator[bytes]:
        yield b""  # the handler sends the status line and headers on the first write
        if wait(fault.seconds):
            raise AbortConnection
        yield body

    def reset_mid_body() -> Iterator[bytes]:
        yield half
        raise AbortConnection

    def truncated() -> Iterator[bytes]:
        # The handler closes the connection when fewer bytes than declared were sent.
        yield half

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        if fault.kind == "stall_after_headers":
            start_response(status, [*headers, ("Content-Length", str(len(body)))])
            return stall()
        start_response(status, [*headers, ("Content-Length", str(declared))])
        if fault.kind == "reset_mid_body":
            return reset_mid_body()
        return truncated()

    return app

"""Reading response bodies without trusting their size, their encoding or their pace.

Three readers, for the three ways a body is read:

- `read_body`: a success body of a non-streamed call, read whole inside the pipeline
  (as requests would read it, only earlier), so that a body that breaks off is the
  pipeline's to see and to retry.
- `read_bounded`: an error body (status >= 400), read and decompressed only up to
  `MAX_ERROR_BODY` bytes, streamed call or not: a 500 whose gzip body inflates to 2 GiB
  costs one MiB and the time to inflate it, not 2 GiB. What is past the cap is not
  drained: the connection is closed instead.
- `guard_stream`: a body the caller streams after the pipeline returned
  (``stream=True``, ``iter_content``, ``iter_lines``, ``.content``), or a redirect's
  body that requests drains: a failure while it is read is raised as this library's
  error (`APIContentDecodingError`, `APIChunkedEncodingError`, ...) with the call's
  history, and a call's deadline that passes during the read as `APIReadTimeoutError`
  with the bytes that had arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import requests

from requests_resilience._deadline import deadline_error, deadline_passed
from requests_resilience._errors import APIError, translate_transport_error
from requests_resilience._pipeline import attempts_of

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._pipeline import Call

__all__ = [
    "MAX_ERROR_BODY",
    "GuardedResponse",
    "body_is_read",
    "guard_stream",
    "read_body",
    "read_bounded",
    "read_bounded_async",
]

#: Most bytes of an error body (status >= 400) that are read and kept, decompressed,
#: streamed call or not; a larger body is cut, its connection closed rather than
#: drained. Success bodies are never cut.
MAX_ERROR_BODY = 1 << 20
_CHUNK = 64 * 1024
_CONTENT_CHUNK = 10 * 1024  # requests' CONTENT_CHUNK_SIZE


def body_is_read(response: Response) -> bool:
    """Whether the response's body has been read into `response.content`."""
    content: object = getattr(response, "_content", False)
    return content is not False


def read_body(response: Response, limit: int | None = None) -> None:
    """Read the body into `response.content`, as requests does for stream=False.

    With a `limit`, only that many bytes are read and kept (decompressed); a longer body
    is cut there and its connection closed instead of drained. If reading fails, the
    bytes that arrived become `response.content` and the error propagates (the adapter
    turns it into this library's error), as requests raises it for a broken body.
    """
    if body_is_read(response):
        return
    if response.status_code == 0 or response.raw is None:
        response._content = None
        response._content_consumed = True  # type: ignore[attr-defined] # requests' own flag
        return
    if _read(response, limit):
        _release(response)
    else:
        _cut(response)


def read_bounded(response: Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """Read at most `limit` bytes of a response's body and make them its `content`.

    A body that was already read is returned as is. A streamed body is read in chunks;
    if it ends within `limit`, it becomes `response.content` and the connection goes
    back to the pool; if not, the first `limit` bytes become `response.content` and
    the connection is closed instead of draining an unbounded body. A compressed body
    is decompressed chunk by chunk, so memory stays within `limit` and a chunk. A body
    that breaks off (or runs into the call's deadline) while being read keeps what
    arrived. Never raises for a broken body.
    """
    if body_is_read(response):
        return response.content or b""
    try:
        complete = _read(response, limit)
    except (requests.RequestException, OSError):
        complete = False
    if complete:
        _release(response)
    else:
        _cut(response)
    return response._content or b""


async def read_bounded_async(response: Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """`read_bounded` for a response of an async transport, without blocking the loop.

    A response that can load itself asynchronously (the httpx view has ``aload``) does
    so, bounded; any other is read as `read_bounded` reads it.
    """
    aload = getattr(response, "aload", None)
    if aload is not None and not body_is_read(response):
        await aload(limit)
    return read_bounded(response, limit)


def _read(response: Response, limit: int | None) -> bool:
    """Read the body (at most `limit` bytes) into `content`; whether it all fit.

    What arrived is kept as `response.content` even when reading raises; the connection
    of a body that failed is closed then (what is left of it is never read).
    """
    parts: list[bytes] = []
    size = 0
    chunk_size = _CONTENT_CHUNK if limit is None else min(_CHUNK, limit + 1)
    try:
        for chunk in response.iter_content(chunk_size):
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                parts[-1] = chunk[: len(chunk) - (size - limit)]  # keep exactly `limit`
                return False
        return True
    except BaseException:
        _cut(response)  # e.g. a broken gzip: the rest of the body is still on the socket
        raise
    finally:
        response._content = b"".join(parts)
        response._content_consumed = True  # type: ignore[attr-defined] # requests' own flag


def _release(response: Response) -> None:
    """The body was read to its end: the connection goes back to the pool."""
    release = getattr(response.raw, "release_conn", None)
    if release is not None:
        release()


def _cut(response: Response) -> None:
    """The rest of the body is never read: close the connection rather than drain it."""
    raw = response.raw
    if raw is not None:
        raw.close()
    _release(response)


class GuardedResponse(requests.Response):
    """A `requests.Response` whose body, read after the pipeline returned, is guarded.

    The adapter gives this class to responses whose body it does not read itself: those
    of ``stream=True`` calls, and redirects (which requests drains). ``iter_content``
    (so ``iter_lines``, ``content``, ``text`` and ``json()`` too) raises this library's
    errors, each still the requests class plain requests raises; a read past the
    call's deadline raises `APIReadTimeoutError` with what had arrived. In every other
    way it is the `requests.Response` it was.
    """

    _rr_call: Call | None = None
    _rr_deadline: float | None = None
    _rr_received: int = 0

    def iter_content(
        self, chunk_size: int | None = 1, decode_unicode: bool = False
    ) -> Iterator[Any]:
        """`requests.Response.iter_content`, raising this library's errors."""
        chunks = super().iter_content(chunk_size, decode_unicode)
        if body_is_read(self) or self._rr_call is None:
            return chunks  # slices of content already read: nothing to guard
        return self._guarded(chunks)

    def _guarded(self, chunks: Iterator[Any]) -> Iterator[Any]:
        try:
            for chunk in chunks:
                self._rr_received += len(chunk)
                yield chunk
        except requests.RequestException as exc:
            if isinstance(exc, APIError):
                raise
            error = self._library_error(exc)
            if error is None:
                raise
            raise error from exc

    def _library_error(self, exc: requests.RequestException) -> APIError | None:
        call = self._rr_call
        request = self.request
        if call is None or request is None:
            return None
        error: APIError | None
        if deadline_passed(self._rr_deadline, exc):
            error = deadline_error(
                call, request, call.redactor, response=self, received=self._rr_received
            )
        else:
            error = translate_transport_error(exc, request, call.redactor)
        if error is not None:
            error.history = attempts_of(self)
        return error


def guard_stream(response: Response, call: Call, deadline: float | None) -> None:
    """Make `response` a `GuardedResponse` for `call` (see it), with the wire `deadline`."""
    if type(response) is not requests.Response or body_is_read(response):
        return  # a transport's own Response class, or nothing left to read
    response.__class__ = GuardedResponse
    assert isinstance(response, GuardedResponse)
    response._rr_call = call
    response._rr_deadline = deadline

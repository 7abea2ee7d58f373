"""Parsers for what a server sends back: Retry-After, rate-limit headers, error bodies.

Every function here takes untrusted input and never raises on it: garbage yields None
(or a safe fallback), so a misbehaving server can only ever produce the documented
exceptions of the policies that call these functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from requests_resilience._bodies import body_is_read
from requests_resilience._headers import header, response_headers

if TYPE_CHECKING:
    from requests import Response

__all__ = [
    "MAX_DETAIL_CHARS",
    "RateLimitHeaders",
    "error_detail",
    "json_body",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "request_id_of",
]

#: Longest `detail` kept from an error body; the rest is cut with an ellipsis.
MAX_DETAIL_CHARS = 500
#: Most bytes of an *error* body that are parsed as JSON for a detail or request id
#: (an error body is read only up to a cap of this size anyway). A success body that the
#: caller asked to be parsed (`json_body` with ``max_bytes=None``) has no such cap: it is
#: already in memory, and parsing it costs time linear in its size.
MAX_PARSED_BODY = 1 << 20
#: A Retry-After beyond this (about 10 years) is treated as garbage, not as a wait.
_MAX_SANE_SECONDS = 10 * 365 * 86400.0

_REQUEST_ID_HEADERS = ("x-request-id", "request-id")


def _finite_seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """How long the server asked the client to wait, in seconds, or None.

    Reads, in order: ``retry-after-ms`` (milliseconds, as sent by some APIs), then
    ``Retry-After`` as delta-seconds (integers and fractions such as ``0.2``) or as an
    HTTP-date. A date in the past means "now" (0.0). Negative, non-finite, absurdly
    large or unparsable values are ignored (None), never trusted.

    Args:
        headers: the response headers (case-insensitive mapping).
        now: the current wall-clock Unix time, from the pipeline's clock.

    Returns:
        Seconds to wait (>= 0), or None when the server did not say (usefully).
    """
    raw_ms = header(headers, "retry-after-ms")
    if raw_ms is not None:
        ms = _finite_seconds(str(raw_ms).strip())
        if ms is not None and 0 <= ms <= _MAX_SANE_SECONDS * 1000:
            return ms / 1000.0
    raw = header(headers, "retry-after")
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    seconds = _finite_seconds(text)
    if seconds is not None:
        return seconds if 0 <= seconds <= _MAX_SANE_SECONDS else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as GMT
        when = when.replace(tzinfo=timezone.utc)
    try:
        delta = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    if delta > _MAX_SANE_SECONDS:
        return None
    return max(0.0, delta)


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The ``X-RateLimit-*`` headers of a response, where present and well-formed.

    Attributes:
        limit: requests allowed per window.
        remaining: requests left in the current window.
        reset: Unix time (seconds) when the window resets.
    """

    limit: int | None
    remaining: int | None
    reset: float | None

    def reset_after(self, now: float) -> float | None:
        """Seconds from `now` until the window resets (>= 0), or None."""
        if self.reset is None:
            return None
        return max(0.0, self.reset - now)


def _non_negative_int(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = str(raw).strip()
    if text.isascii() and text.isdigit():
        # Digits are read exactly: through a float, 2**53 + 1 would pass as 2**53. (At
        # most 16 digits can be within 2**53; longer text is never converted.)
        exact = int(text) if len(text) <= 16 else None
        return exact if exact is not None and exact <= 2**53 else None
    value = _finite_seconds(text)
    if value is None or value < 0 or value != int(value) or value > 2**53:
        return None
    return int(value)


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """Read ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``; None if none is usable."""
    limit_raw = header(headers, "x-ratelimit-limit")
    remaining_raw = header(headers, "x-ratelimit-remaining")
    reset_raw = header(headers, "x-ratelimit-reset")
    if limit_raw is None and remaining_raw is None and reset_raw is None:
        return None  # the common answer: no such headers
    limit = _non_negative_int(limit_raw)
    remaining = _non_negative_int(remaining_raw)
    reset = _finite_seconds(str(reset_raw).strip()) if reset_raw is not None else None
    if reset is not None and not 0 <= reset <= 2**40:
        reset = None
    if limit is None and remaining is None and reset is None:
        return None
    return RateLimitHeaders(limit=limit, remaining=remaining, reset=reset)


def _json_body(response: Response, max_bytes: int | None = MAX_PARSED_BODY) -> Any:
    content = response.content if body_is_read(response) else b""
    if not content or (max_bytes is not None and len(content) > max_bytes):
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def request_id_of(response: Response, body: Any = None) -> str | None:
    """The request id of a response: ``X-Request-ID`` / ``Request-Id``, else the body's.

    Args:
        response: the response; its body must already be read.
        body: the parsed JSON body, if the caller has it (saves a second parse).
    """
    found = request_id_in_headers(response)
    if found is not None:
        return found
    if body is None:
        body = _json_body(response)
    if isinstance(body, dict):
        value = body.get("request_id")
        if isinstance(value, str) and value.strip():
            return _cut(value.strip(), 200)
    return None


def request_id_in_headers(response: Response) -> str | None:
    """The request id a response's headers carry (`request_id_of` without the body)."""
    for value in response_headers(response, *_REQUEST_ID_HEADERS):
        if value and value.strip():
            return _cut(value.strip(), 200)
    return None


def error_detail(response: Response, body: Any = None) -> str:
    """A short human-readable detail for an error response.

    The JSON body's ``detail`` when it is a string; a compact JSON rendering when it is
    a list or an object (validation errors); else the body text; else the reason
    phrase. Cut to `MAX_DETAIL_CHARS`.
    """
    if body is None:
        body = _json_body(response)
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
        return _cut(" ".join(text.split()), MAX_DETAIL_CHARS)
    content = response.content if body_is_read(response) else b""
    if content:
        text = content[: MAX_DETAIL_CHARS * 4].decode("utf-8", errors="replace")
        text = " ".join(text.split())
        if text:
            return _cut(text, MAX_DETAIL_CHARS)
    return response.reason or ""


def json_body(response: Response, max_bytes: int | None = MAX_PARSED_BODY) -> Any:
    """The response body parsed as JSON, or None if it is empty, not JSON or too big.

    Args:
        response: the response; its body must already be read (an unread, streamed
            body gives None rather than being read here).
        max_bytes: bodies longer than this are not parsed (None): `MAX_PARSED_BODY` by
            default, for error bodies; None to parse a body of any size (a success
            body the caller wants, e.g. a 5 MB job list).
    """
    return _json_body(response, max_bytes)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Property tests: no server input makes a parser raise anything but its documented errors.

Extends tests/test_parsing.py (which fuzzes raw text): here the inputs are shaped like
what a server really sends, valid and almost valid, so the properties can check values
as well as the absence of crashes: Retry-After in every form (delta-seconds, fractions,
HTTP-dates, ``retry-after-ms``), ``X-RateLimit-*``, error bodies of every JSON shape
through `status_error`, the 402 detail the balance guard reads, and every result parser
of the Vinci client.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from requests_resilience import APIStatusError, RateLimitError
from requests_resilience._parsing import (
    MAX_DETAIL_CHARS,
    json_body,
    parse_rate_limit_headers,
    parse_retry_after,
)
from requests_resilience._secrets import REDACTED, Redactor
from requests_resilience._status_errors import status_error
from requests_resilience.vinci import UnexpectedResponseError
from requests_resilience.vinci._balance import balance_in_detail
from requests_resilience.vinci._models import (
    parse_api_key,
    parse_balance,
    parse_job,
    parse_job_status,
    parse_key_list,
    parse_revoked,
    parse_usage,
)
from tests.helpers import response
from tests.reliability.conftest import KEY

NOW = 1_750_000_000.0
TEN_YEARS = 10 * 365 * 86400.0

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
HEADER_TEXT = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=40
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)


def headers(**values: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({k.replace("_", "-"): v for k, v in values.items()})


# -- Retry-After -----------------------------------------------------------------------


@given(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False))
def test_retry_after_delta_seconds_are_taken_exactly_when_sane(seconds: float) -> None:
    """Delta-seconds (integers and fractions) are the wait when 0..10 years, else None."""
    result = parse_retry_after(headers(retry_after=repr(seconds)), NOW)
    assert result == (seconds if 0 <= seconds <= TEN_YEARS else None)


@given(st.floats(min_value=-1e18, max_value=1e18, allow_nan=False))
def test_retry_after_ms_is_milliseconds_when_sane(ms: float) -> None:
    """retry-after-ms wins when sane; otherwise Retry-After (here absent) decides."""
    result = parse_retry_after(headers(retry_after_ms=repr(ms)), NOW)
    assert result == (ms / 1000.0 if 0 <= ms <= TEN_YEARS * 1000 else None)


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(9999, 12, 31),
        timezones=st.just(timezone.utc),
    ).map(lambda d: d.replace(microsecond=0))
)
def test_retry_after_http_date_is_the_time_until_it(when: datetime) -> None:
    """An IMF-fixdate gives the seconds until it (0 when past); beyond 10 years, None."""
    result = parse_retry_after(headers(retry_after=format_datetime(when, usegmt=True)), NOW)
    delta = when.timestamp() - NOW
    if delta > TEN_YEARS:
        assert result is None
    else:
        assert result == pytest.approx(max(0.0, delta))


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(
        [
            "%a, %d %b %Y %H:%M:%S GMT",
            "%A, %d-%b-%y %H:%M:%S GMT",
            "%a %b %d %H:%M:%S %Y",
            "%a, %d %b %Y %H:%M:%S %z",
            "%d %b %Y",
            "%Y-%m-%dT%H:%M:%S",
        ]
    ),
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
)
def test_retry_after_in_any_date_format_and_any_now_never_raises(
    when: datetime, pattern: str, now: float
) -> None:
    """Obsolete, odd or partial date formats, against any clock: None or a sane wait."""
    text = when.replace(tzinfo=timezone.utc).strftime(pattern)
    result = parse_retry_after(headers(retry_after=text, retry_after_ms=text), now)
    assert result is None or 0.0 <= result <= TEN_YEARS


@given(NUMBERS | HEADER_TEXT, NUMBERS | HEADER_TEXT)
def test_retry_after_of_any_number_text_never_raises(retry_after: str, ms: str) -> None:
    """Any numeric-looking text (nan, inf, 1e400, -0, decimals) yields None or a sane wait."""
    result = parse_retry_after(headers(retry_after=retry_after, retry_after_ms=ms), NOW)
    assert result is None or (math.isfinite(result) and 0.0 <= result <= TEN_YEARS)


# -- X-RateLimit-* ---------------------------------------------------------------------


@given(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.integers(min_value=-(10**18), max_value=10**18),
    NUMBERS,
)
def test_rate_limit_headers_keep_exactly_the_sane_values(
    limit: int, remaining: int, reset: str
) -> None:
    """Non-negative integers are kept as they are; other values are dropped, never raised."""
    parsed = parse_rate_limit_headers(
        headers(
            x_ratelimit_limit=str(limit),
            x_ratelimit_remaining=str(remaining),
            x_ratelimit_reset=reset,
        )
    )
    sane_limit = limit if 0 <= limit <= 2**53 else None
    sane_remaining = remaining if 0 <= remaining <= 2**53 else None
    if parsed is None:
        assert sane_limit is None
        assert sane_remaining is None
        return
    assert (parsed.limit, parsed.remaining) == (sane_limit, sane_remaining)
    assert parsed.reset is None or 0 <= parsed.reset <= 2**40
    wait = parsed.reset_after(NOW)
    assert wait is None or wait >= 0


# -- error bodies ----------------------------------------------------------------------


def _body_of(detail: Any, request_id: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {"detail": detail, "request_id": request_id, **extra}


ERROR_BODIES = st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),
    st.builds(_body_of, JSON, JSON, st.dictionaries(st.text(max_size=8), JSON, max_size=3)).map(
        lambda body: json.dumps(body).encode()
    ),
    st.binary(max_size=200),
    st.text(max_size=3000).map(str.encode),
)
ERROR_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "X-Request-ID",
            "Request-Id",
            "Retry-After",
            "retry-after-ms",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Content-Type",
        ]
    ),
    NUMBERS | HEADER_TEXT,
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.integers(min_value=400, max_value=599), ERROR_BODIES, ERROR_HEADERS)
def test_any_error_answer_becomes_a_typed_error(
    status: int, body: bytes, extra: dict[str, str]
) -> None:
    """Any 4xx/5xx body and headers give an APIStatusError with a bounded, str detail."""
    r = response(status, body, headers=extra)
    error = status_error(r, Redactor([KEY]), NOW)
    assert isinstance(error, APIStatusError)
    assert error.status_code == status
    assert isinstance(error.detail, str)
    assert len(error.detail) <= MAX_DETAIL_CHARS
    assert error.request_id is None or (
        isinstance(error.request_id, str) and 0 < len(error.request_id) <= 200
    )
    if isinstance(error, RateLimitError):
        assert error.retry_after is None or (
            math.isfinite(error.retry_after) and error.retry_after >= 0
        )
    assert str(error)


@settings(deadline=None)
@given(st.text(max_size=60), st.text(max_size=60), st.sampled_from(["detail", "request_id"]))
def test_the_key_echoed_anywhere_in_an_error_body_is_redacted(
    before: str, after: str, field: str
) -> None:
    """The key inside any detail or request id never reaches the error's text."""
    body = json.dumps({field: f"{before}{KEY}{after}", "detail" if field != "detail" else "x": 1})
    error = status_error(response(500, body), Redactor([KEY]), NOW)
    for text in (str(error), error.detail, error.request_id or ""):
        assert KEY not in text
    assert REDACTED in str(error)


@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_json_body_returns_the_json_or_none(body: bytes) -> None:
    """json_body() never raises: it gives the decoded JSON, or None for anything else."""
    r = response(200, body)
    r.content  # noqa: B018 - json_body only reads a body that was read
    try:
        expected = json.loads(body) if body else None
    except ValueError:
        expected = None
    assert json.dumps(json_body(r)) == json.dumps(expected)


@given(st.text(max_size=200) | st.from_regex(r"Current balance: \$-?[0-9]{0,40}(\.[0-9]{0,40})?"))
def test_a_402_detail_yields_a_balance_or_none(detail: str) -> None:
    """The balance guard's reading of a 402 detail never raises, whatever the text."""
    result = balance_in_detail(detail)
    assert result is None or result.is_finite()


# -- the Vinci client's result parsers -------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "job": {
        "request_id": "req_1",
        "status": "pending",
        "estimated_cost_usd": 0.25,
        "estimated_duration_seconds": 5,
    },
    "status": {"request_id": "req_1", "status": "completed", "video_url": "https://v/1.mp4"},
    "balance": {"balance_usd": 25.5, "total_spent_usd": 134.75},
    "usage": {
        "period_days": 30,
        "total_requests": 3,
        "total_seconds": 15,
        "total_cost_usd": 0.75,
        "current_balance_usd": 25.5,
        "total_spent_usd": 134.75,
    },
    "api_key": {"key_id": "vinci_1", "name": "ci", "api_key": "sk-new", "rate_limit": 10},
    "key_list": {
        "api_keys": [{"key_id": "vinci_1", "name": "ci", "is_active": True}],
        "count": 1,
    },
    "revoked": {"message": "API key revoked", "key_id": "vinci_1"},
}
PARSERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "job": parse_job,
    "status": lambda body: parse_job_status(body, "req_asked"),
    "balance": parse_balance,
    "usage": parse_usage,
    "api_key": parse_api_key,
    "key_list": parse_key_list,
    "revoked": lambda body: parse_revoked(body, "vinci_asked"),
}


def _parse_or_unexpected(name: str, body: dict[str, Any]) -> object | None:
    try:
        return PARSERS[name](body)
    except UnexpectedResponseError as exc:
        message = str(exc)
    assert message.startswith("unexpected ")
    return None


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_parser_reads_its_valid_answer(name: str) -> None:
    """The baseline of the properties below: a documented answer parses."""
    assert _parse_or_unexpected(name, VALID[name]) is not None


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(body=st.dictionaries(st.text(max_size=20), JSON, max_size=6))
def test_any_json_object_parses_or_is_unexpected(name: str, body: dict[str, Any]) -> None:
    """Any JSON object: a result, or UnexpectedResponseError; never KeyError or TypeError."""
    _parse_or_unexpected(name, body)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(data=st.data(), value=JSON)
def test_one_field_of_a_valid_answer_replaced_parses_or_is_unexpected(
    name: str, data: st.DataObject, value: Any
) -> None:
    """A documented answer with any one field changed to any JSON value, or removed."""
    body = dict(VALID[name])
    field = data.draw(st.sampled_from(sorted(body)))
    if data.draw(st.booleans()):
        del body[field]
    else:
        body[field] = value
    if name == "key_list" and isinstance(value, dict):
        body["api_keys"] = [{**VALID[name]["api_keys"][0], **value}]
    _parse_or_unexpected(name, body)


@given(st.floats() | st.integers(min_value=-(10**30), max_value=10**30))
def test_progress_is_always_a_percentage(progress: float) -> None:
    """Any progress the server reports is clamped to 0..100, or the answer is refused."""
    body = {"request_id": "req_1", "status": "processing", "progress": progress}
    result = _parse_or_unexpected("status", body)
    if result is not None:
        assert 0.0 <= result.progress <= 100.0  # type: ignore[attr-defined]

"""Parsers of server input: Retry-After, rate-limit headers, request ids, details."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from requests_resilience._parsing import (
    error_detail,
    parse_rate_limit_headers,
    parse_retry_after,
    request_id_of,
)
from tests.helpers import response

NOW = 1_750_000_000.0


def h(**headers: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("0.2", 0.2),
        (" 1.5 ", 1.5),
        ("120", 120.0),
        ("-1", None),
        ("garbage", None),
        ("", None),
        ("nan", None),
        ("inf", None),
        ("1e300", None),
    ],
)
def test_retry_after_delta_seconds(value: str, expected: float | None) -> None:
    """Delta-seconds, fractions included; negative, non-finite and junk are ignored."""
    assert parse_retry_after(h(retry_after=value), NOW) == expected


def test_retry_after_http_date_future_and_past() -> None:
    """An HTTP-date gives the seconds until it; a past date means now."""
    future = format_datetime(datetime.fromtimestamp(NOW + 30, tz=timezone.utc), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(h(retry_after=future), NOW) == pytest.approx(30)
    assert parse_retry_after(h(retry_after=past), NOW) == 0.0


def test_retry_after_ms_wins() -> None:
    """retry-after-ms is read first, in milliseconds."""
    assert parse_retry_after(h(retry_after_ms="250", retry_after="9"), NOW) == 0.25
    assert parse_retry_after(h(retry_after_ms="junk", retry_after="9"), NOW) == 9.0


def test_retry_after_absent() -> None:
    """No header, no wait."""
    assert parse_retry_after(h(), NOW) is None


@given(st.text(max_size=60))
def test_retry_after_never_raises_and_is_non_negative(value: str) -> None:
    """Any header text yields None or a finite wait >= 0."""
    result = parse_retry_after(h(retry_after=value, retry_after_ms=value), NOW)
    assert result is None or 0.0 <= result < float("inf")


def test_rate_limit_headers() -> None:
    """X-RateLimit-* are read when well-formed and ignored when not."""
    parsed = parse_rate_limit_headers(
        h(x_ratelimit_limit="10", x_ratelimit_remaining="0", x_ratelimit_reset=str(int(NOW) + 60))
    )
    assert parsed is not None
    assert (parsed.limit, parsed.remaining) == (10, 0)
    assert parsed.reset_after(NOW) == 60
    assert parse_rate_limit_headers(h()) is None
    junk = parse_rate_limit_headers(h(x_ratelimit_limit="ten", x_ratelimit_remaining="-3"))
    assert junk is None


@given(
    st.dictionaries(
        st.sampled_from(["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]),
        st.text(max_size=30),
    )
)
def test_rate_limit_headers_never_raise(headers: dict[str, str]) -> None:
    """Any header values parse to None or to sane numbers."""
    parsed = parse_rate_limit_headers(CaseInsensitiveDict(headers))
    if parsed is not None:
        assert parsed.limit is None or parsed.limit >= 0
        assert parsed.remaining is None or parsed.remaining >= 0
        assert parsed.reset_after(NOW) is None or parsed.reset_after(NOW) >= 0  # type: ignore[operator]


@given(st.binary(max_size=300))
def test_error_body_parsers_never_raise(body: bytes) -> None:
    """Any body yields a str detail and a str-or-None request id."""
    r = response(500, body)
    r.content  # noqa: B018
    assert isinstance(error_detail(r), str)
    rid = request_id_of(r)
    assert rid is None or isinstance(rid, str)


@pytest.mark.parametrize(
    "body",
    [
        {"detail": None},
        {"detail": 3},
        {"request_id": 5},
        [1, 2],
        "null",
        '"str"',
        {"detail": {"a": 1}},
    ],
)
def test_json_of_the_wrong_shape(body: object) -> None:
    """JSON that is valid but not the documented shape is handled."""
    r = response(500, body)  # type: ignore[arg-type]
    r.content  # noqa: B018
    assert isinstance(error_detail(r), str)
    assert request_id_of(r) is None


def test_rate_limit_counts_just_over_two_to_the_53_are_refused_not_rounded() -> None:
    """Read through a float, 2**53 + 1 would be kept as 2**53: counts are read exactly."""
    from requests_resilience._parsing import parse_rate_limit_headers

    over = CaseInsensitiveDict({"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": str(2**53 + 1)})
    parsed = parse_rate_limit_headers(over)
    assert parsed is not None
    assert (parsed.limit, parsed.remaining) == (0, None)
    at = parse_rate_limit_headers(CaseInsensitiveDict({"X-RateLimit-Remaining": str(2**53)}))
    assert at is not None
    assert at.remaining == 2**53

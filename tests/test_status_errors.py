"""The StatusErrors policy: status -> exception class, detail, request_id, retry_after."""

from __future__ import annotations

import pickle

import pytest
import requests

from requests_resilience import (
    DEFAULT_STATUS_ERRORS,
    APIError,
    APIKeyAuth,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    NotFoundError,
    PayloadTooLargeError,
    Pipeline,
    RateLimitError,
    ServerError,
    StatusErrors,
)
from requests_resilience._bodies import MAX_ERROR_BODY, read_body, read_bounded
from requests_resilience.testing import FakeClock
from tests.helpers import ScriptedTransport, prepared, response, run

CASES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (402, InsufficientBalanceError),
    (404, NotFoundError),
    (413, PayloadTooLargeError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
    (599, ServerError),
    (403, APIStatusError),
    (409, APIStatusError),
]


def raise_for(
    resp: requests.Response, pipeline: Pipeline | None = None, clock: FakeClock | None = None
) -> APIStatusError:
    pipeline = pipeline or Pipeline(StatusErrors())
    with pytest.raises(APIStatusError) as info:
        run(pipeline, ScriptedTransport(resp), clock=clock)
    return info.value


@pytest.mark.parametrize(("status", "cls"), CASES)
def test_status_maps_to_class_with_json_detail(status: int, cls: type[APIStatusError]) -> None:
    """Each status becomes its class; the JSON detail is carried and in the message."""
    exc = raise_for(response(status, {"detail": f"because {status}"}))
    assert type(exc) is cls
    assert exc.status_code == status
    assert exc.detail == f"because {status}"
    assert f"because {status}" in str(exc)
    assert str(status) in str(exc)


@pytest.mark.parametrize(("status", "cls"), CASES)
def test_status_maps_to_class_without_json_body(status: int, cls: type[APIStatusError]) -> None:
    """A plain-text body becomes the detail; an empty one falls back to the reason."""
    exc = raise_for(response(status, "upstream exploded\n  badly"))
    assert type(exc) is cls
    assert exc.detail == "upstream exploded badly"
    empty = raise_for(response(status, b"", reason="Custom Reason"))
    assert empty.detail == "Custom Reason"


@pytest.mark.parametrize("status", [200, 201, 204, 301, 302, 304])
def test_success_and_redirect_pass_through(status: int) -> None:
    """Statuses below 400 are returned untouched."""
    resp = response(status, {"ok": True})
    assert run(Pipeline(StatusErrors()), ScriptedTransport(resp)) is resp


def test_status_errors_are_requests_http_errors() -> None:
    """Code that catches requests.HTTPError or RequestException keeps working."""
    exc = raise_for(response(402, {"detail": "broke"}))
    assert isinstance(exc, requests.HTTPError)
    assert isinstance(exc, requests.RequestException)
    assert isinstance(exc, APIError)
    assert exc.response is not None
    assert exc.response.status_code == 402
    assert exc.request is exc.response.request
    with pytest.raises(requests.HTTPError):
        raise exc


def test_request_id_from_header() -> None:
    """X-Request-ID (or Request-Id) becomes request_id and shows in the message."""
    exc = raise_for(response(500, {"detail": "x"}, headers={"X-Request-ID": "req_hdr1"}))
    assert exc.request_id == "req_hdr1"
    assert "request_id=req_hdr1" in str(exc)
    exc = raise_for(response(500, {"detail": "x"}, headers={"Request-Id": "req_hdr2"}))
    assert exc.request_id == "req_hdr2"


def test_request_id_from_body() -> None:
    """Without a header, the JSON body's request_id is used."""
    exc = raise_for(response(500, {"detail": "x", "request_id": "req_body"}))
    assert exc.request_id == "req_body"
    assert raise_for(response(500, {"detail": "x"})).request_id is None


def test_detail_of_wrong_shape_is_rendered_compactly() -> None:
    """A list or object detail (validation errors) is kept as compact JSON."""
    exc = raise_for(response(400, {"detail": [{"loc": ["body", "prompt"], "msg": "required"}]}))
    assert exc.detail == '[{"loc": ["body", "prompt"], "msg": "required"}]'


def test_huge_detail_is_cut() -> None:
    """A long detail is cut to 500 characters."""
    exc = raise_for(response(500, {"detail": "x" * 10_000}))
    assert len(exc.detail) == 500
    assert exc.detail.endswith("…")


def test_rate_limit_retry_after_from_header() -> None:
    """RateLimitError.retry_after reads Retry-After, fractions included."""
    exc = raise_for(response(429, {"detail": "slow"}, headers={"Retry-After": "0.2"}))
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == pytest.approx(0.2)


def test_rate_limit_retry_after_from_reset_header(clock: FakeClock) -> None:
    """Without Retry-After, the time until X-RateLimit-Reset is used."""
    reset = int(clock.time()) + 42
    exc = raise_for(
        response(429, {"detail": "slow"}, headers={"X-RateLimit-Reset": str(reset)}),
        Pipeline(StatusErrors(), clock=clock),
        clock=clock,
    )
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after == pytest.approx(42, abs=1)


def test_rate_limit_without_hints_has_no_retry_after() -> None:
    """A bare 429 leaves retry_after as None."""
    exc = raise_for(response(429, {"detail": "Rate limit exceeded. Try again in 60 seconds."}))
    assert isinstance(exc, RateLimitError)
    assert exc.retry_after is None


def test_secret_echoed_by_server_is_redacted() -> None:
    """A server that echoes the key (or a piece of it) does not leak it into the error."""
    key = "sk-live-ECHOECHO-0123456789"
    pipeline = Pipeline(StatusErrors(), APIKeyAuth(key))
    exc = raise_for(response(401, {"detail": f"Invalid API key {key[:12]}..."}), pipeline)
    assert key[:12] not in str(exc)
    assert key[:12] not in exc.detail
    assert "[REDACTED]" in exc.detail


def test_message_has_no_query_string() -> None:
    """The URL in the message loses its query (where tokens often hide)."""
    req = prepared("GET", "https://api.example.com/v1/x?token=abc123secret")
    resp = response(500, {"detail": "x"}, request=req)
    with pytest.raises(ServerError) as info:
        run(Pipeline(StatusErrors()), ScriptedTransport(resp), request=req)
    assert "abc123secret" not in str(info.value)
    assert "GET https://api.example.com/v1/x" in str(info.value)


def test_custom_table_extends_the_default() -> None:
    """A user table adds classes for other APIs; unknown 4xx stay APIStatusError."""

    class ConflictError(APIStatusError):
        pass

    pipeline = Pipeline(StatusErrors(table={**DEFAULT_STATUS_ERRORS, 409: ConflictError}))
    assert type(raise_for(response(409, {"detail": "dup"}), pipeline)) is ConflictError
    assert type(raise_for(response(402, {"detail": "x"}), pipeline)) is InsufficientBalanceError


def test_bad_table_fails_when_built() -> None:
    """Table entries are validated at construction."""
    with pytest.raises(ValueError, match="400 to 599"):
        StatusErrors(table={302: APIStatusError})
    with pytest.raises(TypeError, match="APIStatusError subclass"):
        StatusErrors(table={409: ValueError})  # type: ignore[dict-item]


def test_status_error_pickles_with_its_evidence() -> None:
    """Errors survive pickling (e.g. across multiprocessing) with their attributes."""
    exc = raise_for(response(402, {"detail": "broke", "request_id": "req_p"}))
    exc.response = None  # a live Response is not picklable; the evidence is
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is InsufficientBalanceError
    assert (copy.status_code, copy.detail, copy.request_id) == (402, "broke", "req_p")


def test_an_error_body_over_the_cap_is_cut_for_the_exception() -> None:
    """A 3 MiB error body keeps its first MAX_ERROR_BODY bytes; its raw stream is closed."""
    big = response(500, b"e" * (3 * MAX_ERROR_BODY))
    raw = big.raw
    error = raise_for(big)
    assert isinstance(error, ServerError)
    assert error.response is big
    assert big.content == b"e" * MAX_ERROR_BODY
    assert raw.closed


def test_read_bounded_keeps_a_body_within_the_cap_whole() -> None:
    """A body within the limit is read whole and kept as content; a read body is reused."""
    small = response(404, b"not here")
    assert read_bounded(small, limit=100) == b"not here"
    assert small.content == b"not here"
    assert read_bounded(small, limit=2) == b"not here"  # already read: as it is


def test_read_body_with_a_limit_cuts_and_without_reads_all() -> None:
    """read_body reads a success body whole, and only `limit` bytes of an error body."""
    whole = response(200, b"x" * 300_000)
    read_body(whole)
    assert whole.content == b"x" * 300_000
    cut = response(500, b"y" * 300_000)
    read_body(cut, limit=1000)
    assert cut.content == b"y" * 1000

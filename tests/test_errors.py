"""The exception tree and the translation of transport errors."""

from __future__ import annotations

import pickle
import socket

import pytest
import requests
import urllib3.exceptions

import requests_resilience as rr
from requests_resilience._errors import translate_transport_error
from requests_resilience._secrets import Redactor
from tests.helpers import prepared


def test_tree_matches_the_docstring() -> None:
    """Each class has the parents the module docstring draws."""
    assert issubclass(rr.APIError, requests.RequestException)
    for cls in (
        rr.BadRequestError,
        rr.AuthenticationError,
        rr.InsufficientBalanceError,
        rr.NotFoundError,
        rr.PayloadTooLargeError,
        rr.RateLimitError,
        rr.ServerError,
    ):
        assert issubclass(cls, rr.APIStatusError)
    assert issubclass(rr.APIStatusError, requests.HTTPError)
    assert issubclass(rr.APIConnectionError, requests.ConnectionError)
    assert issubclass(rr.APITimeoutError, rr.APIConnectionError)
    assert issubclass(rr.APITimeoutError, requests.Timeout)
    assert issubclass(rr.APIConnectTimeoutError, requests.ConnectTimeout)
    assert issubclass(rr.APIReadTimeoutError, requests.ReadTimeout)
    assert issubclass(rr.CircuitOpenError, rr.APIError)
    assert issubclass(rr.MissingAPIKeyError, rr.ConfigurationError)
    assert issubclass(rr.ConfigurationError, ValueError)
    assert not issubclass(rr.ConfigurationError, rr.APIError)


def test_errors_pickle() -> None:
    """Every error class survives pickling with its attributes."""
    err = rr.APIConnectionError("boom", request_sent=False)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), copy.request_sent) == (rr.APIConnectionError, "boom", False)
    open_ = pickle.loads(pickle.dumps(rr.CircuitOpenError("open", breaker="h", retry_after=3.0)))
    assert (open_.breaker, open_.retry_after) == ("h", 3.0)
    assert rr.APIError("x").attempts == 1


def _wrapped(inner: BaseException) -> requests.ConnectionError:
    return requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/x", reason=inner)  # type: ignore[arg-type]
    )


REQ = prepared("POST", "https://api.example.com/v1/x?key=sk-query-secret")


@pytest.mark.parametrize(
    ("exc", "cls", "sent"),
    [
        (
            _wrapped(urllib3.exceptions.NewConnectionError(None, "refused")),  # type: ignore[arg-type]
            rr.APIConnectionError,
            False,
        ),
        (
            requests.ConnectTimeout(_wrapped(urllib3.exceptions.ConnectTimeoutError())),
            rr.APIConnectTimeoutError,
            False,
        ),
        (requests.ReadTimeout("read timed out"), rr.APIReadTimeoutError, True),
        (
            requests.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/x", "slow")),  # type: ignore[arg-type]
            rr.APIReadTimeoutError,
            True,
        ),
        (
            requests.ConnectionError(
                urllib3.exceptions.ProtocolError(
                    "Connection aborted.", ConnectionResetError(104, "reset")
                )
            ),
            rr.APIConnectionError,
            True,
        ),
        (requests.exceptions.ChunkedEncodingError("incomplete"), rr.APIChunkedEncodingError, True),
        (requests.exceptions.ProxyError("proxy down"), rr.APIProxyError, False),
        (requests.exceptions.SSLError("bad cert"), rr.APISSLError, False),
    ],
)
def test_transport_errors_translate(
    exc: requests.RequestException, cls: type[rr.APIConnectionError], sent: bool
) -> None:
    """Each transport failure maps to the most specific class and knows if it was sent."""
    error = translate_transport_error(exc, REQ, Redactor())
    assert type(error) is cls
    assert error is not None
    assert error.request_sent is sent
    assert error.request is REQ
    assert "sk-query-secret" not in str(error)


def test_caller_errors_are_left_alone() -> None:
    """Invalid URLs and headers are the caller's errors, not transport failures."""
    assert translate_transport_error(requests.exceptions.InvalidURL("x"), REQ, Redactor()) is None
    assert (
        translate_transport_error(requests.exceptions.InvalidHeader("x"), REQ, Redactor()) is None
    )


def test_redactor_removes_secrets_from_translated_messages() -> None:
    """A secret that appears in the transport's text is redacted."""
    exc = requests.ConnectionError("failed for token sk-abcdefgh12345678")
    error = translate_transport_error(exc, REQ, Redactor(["sk-abcdefgh12345678"]))
    assert error is not None
    assert "abcdefgh" not in str(error)


def test_connection_refused_on_a_real_socket() -> None:
    """A closed loopback port gives APIConnectionError with request_sent False."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with requests.Session() as session:
        rr.mount(session, "http://", rr.Pipeline())
        with pytest.raises(rr.APIConnectionError) as info:
            session.get(f"http://127.0.0.1:{port}/x", timeout=2)
    assert info.value.request_sent is False
    assert isinstance(info.value.__cause__, requests.ConnectionError)

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


# -- no credential on an exception ---------------------------------------------------------

SECRET = "sk-errtest-Hq7Vn2Lm9Xc4Bz6Kd1"


def test_a_message_is_cleared_of_every_known_secret() -> None:
    """A message built anywhere (a reason phrase, a URL) loses the secrets of live redactors."""
    redactor = Redactor([SECRET])
    error = rr.AuthenticationError(f"401 Bad key {SECRET} from GET https://h/k/{SECRET}")
    assert str(error) == "401 Bad key [REDACTED] from GET https://h/k/[REDACTED]"
    assert error.args == (str(error),)
    assert redactor  # the redactor (its pipeline) is alive while the error is built


def test_the_request_kept_has_its_credentials_redacted() -> None:
    """exc.request and exc.response.request: credential headers read [REDACTED].

    The attempt's own request (the live object) is not changed.
    """
    live = prepared(
        headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": "k", "Accept": "json"}
    )
    answer = requests.Response()
    answer.status_code = 500
    answer.request = live
    error = rr.ServerError("500", status_code=500, response=answer)
    assert error.request is not None
    assert dict(error.request.headers) == {
        "Authorization": "[REDACTED]",
        "X-Api-Key": "[REDACTED]",
        "Accept": "json",
    }
    assert error.response is not None
    assert error.response.request is not None
    assert error.response.request.headers["Authorization"] == "[REDACTED]"
    assert live.headers["Authorization"] == f"Bearer {SECRET}"  # the attempt's own copy


def test_a_request_without_credentials_is_kept_as_it_is() -> None:
    """No credential, no copy: the exception keeps the very request."""
    request = prepared(headers={"Accept": "json"})
    assert rr.APIConnectionError("refused", request=request).request is request


def test_a_pickled_error_is_scrubbed_of_known_secrets() -> None:
    """The pickled state: reason, URL, headers, body and the request's URL have no secret."""
    redactor = Redactor([SECRET])
    answer = requests.Response()
    answer.status_code = 500
    answer.reason = f"Oops {SECRET}"
    answer.url = f"https://h/k/{SECRET}"
    answer.headers["X-Echo"] = SECRET
    answer._content = f"echo {SECRET}".encode()
    answer.request = prepared(url=f"https://h/k/{SECRET}")
    error = rr.ServerError("500", status_code=500, response=answer)
    data = pickle.dumps(error)
    assert SECRET.encode() not in data
    copy = pickle.loads(data)
    assert (copy.response.reason, copy.response.url) == (
        "Oops [REDACTED]",
        "https://h/k/[REDACTED]",
    )
    assert copy.response.content == b"echo [REDACTED]"
    assert copy.request.url == "https://h/k/[REDACTED]"
    assert redactor


def test_a_transport_error_naming_a_secret_url_is_redacted_along_its_chain() -> None:
    """urllib3's text names the redirected URL: args and causes lose the secret."""
    redactor = Redactor([SECRET])
    inner = urllib3.exceptions.MaxRetryError(None, f"/k/{SECRET}/x")  # type: ignore[arg-type]
    outer = requests.ConnectionError(inner)
    outer.__cause__ = inner
    error = translate_transport_error(outer, prepared(url=f"https://h/k/{SECRET}/x"), redactor)
    assert error is not None
    texts = [str(error), repr(error), repr(error.args), repr(outer.args), str(inner)]
    assert [SECRET in text for text in texts] == [False] * 5

"""The exception tree, and the one boundary where transport errors are translated.

Every runtime error this library raises derives from `APIError`, which itself derives
from `requests.RequestException`, so code written for plain `requests` keeps catching
what it caught before: status errors are also `requests.HTTPError`, connection errors
are also `requests.ConnectionError`, timeouts are also `requests.Timeout` (and
`ConnectTimeout` / `ReadTimeout`)::

    requests.RequestException
    └── APIError                              request, response, history, attempts
        ├── APIStatusError  (HTTPError)       status_code, request_id, detail
        │   ├── BadRequestError               400
        │   ├── AuthenticationError           401
        │   ├── InsufficientBalanceError      402
        │   ├── NotFoundError                 404
        │   ├── PayloadTooLargeError          413
        │   ├── RateLimitError                429  retry_after
        │   └── ServerError                   5xx
        ├── APIConnectionError  (ConnectionError)   request_sent
        │   ├── APITimeoutError  (Timeout)
        │   │   ├── APIConnectTimeoutError  (ConnectTimeout)
        │   │   └── APIReadTimeoutError  (ReadTimeout)
        │   ├── APISSLError  (SSLError)
        │   ├── APIProxyError  (ProxyError)
        │   ├── APIChunkedEncodingError  (ChunkedEncodingError)
        │   └── APIContentDecodingError  (ContentDecodingError)
        ├── CircuitOpenError                  breaker, retry_after
        ├── ConcurrencyLimitError             limit, key, max_concurrent, retry_after
        └── RetryBudgetExhaustedError         the retry budget refused every retry

    ValueError
    └── ConfigurationError                    a bad option, found when a pipeline is built
        └── MissingAPIKeyError

Status errors are raised by the `StatusErrors` policy from the *final* response;
transport errors are translated where the pipeline meets the transport, always
``raise ... from`` the original, which stays available as ``__cause__``. A translated
transport error is an instance of the very requests class that plain requests raises
for the same failure (``except requests.exceptions.SSLError:`` keeps catching) and
keeps its ``args`` (``args[0]`` is urllib3's error, as with plain requests); only its
``str()`` differs: a short message with the method, the URL without its query, and the
pipeline's secrets removed.

No exception carries a credential. Every message goes through
`requests_resilience._secrets.redact_known` when the exception is built (a reason
phrase or a redirect URL is the server's text); the request kept as ``request`` (and as
``response.request``) is a copy whose credential headers (``Authorization``,
``Proxy-Authorization``, ``Cookie``, ``X-API-Key``, and any header holding a known
secret) read ``[REDACTED]``; a translated transport error whose urllib3 cause names a
URL with a secret in it has that text redacted, in ``args`` and along its cause chain.
Every exception pickles and unpickles with its attributes (whatever its ``__init__``
takes), and the pickled state is scrubbed again: the response's reason, URL, headers,
cookies and body, and the request's URL and headers, with every known secret removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import requests
import requests.structures
import urllib3.exceptions

from requests_resilience._secrets import REDACTED, known_secrets, redact_known

if TYPE_CHECKING:
    from requests import PreparedRequest, Response

    from requests_resilience._pipeline import Attempt
    from requests_resilience._secrets import Redactor

__all__ = [
    "DEFAULT_STATUS_ERRORS",
    "APIChunkedEncodingError",
    "APIConnectTimeoutError",
    "APIConnectionError",
    "APIContentDecodingError",
    "APIError",
    "APIProxyError",
    "APIReadTimeoutError",
    "APISSLError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "InsufficientBalanceError",
    "MissingAPIKeyError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RetryBudgetExhaustedError",
    "ServerError",
]


class APIError(requests.RequestException):
    """The root of every runtime error raised by this library.

    Attributes:
        request: the prepared request of the last attempt, when there was one.
        response: the last response, when there was one.
        history: every attempt of the logical call, oldest first (filled in by the
            retry policy; empty when no retry policy ran).

    Example:
        >>> try:
        ...     session.get(url)
        ... except APIError as exc:  # also a requests.RequestException
        ...     print(exc, [attempt.status_code for attempt in exc.history])
    """

    history: tuple[Attempt, ...]

    def __init__(
        self,
        message: str = "",
        *,
        request: PreparedRequest | None = None,
        response: Response | None = None,
    ) -> None:
        text = redact_known(message if isinstance(message, str) else str(message))
        if request is None and response is not None:
            request = response.request
        if request is not None:
            request = without_credentials(request)
            if response is not None and response.request is not None:
                response.request = without_credentials(response.request)
        super().__init__(text, request=request, response=response)
        self._message = text
        self.history = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__ (subclasses take other arguments), from a
        # state whose request and response have every known secret removed.
        state = dict(self.__dict__)
        if state.get("request") is not None:
            state["request"] = without_credentials(state["request"], url=True)
        if state.get("response") is not None:
            state["response"] = _scrubbed_response(state["response"])
        return (_rebuild_error, (type(self), self.args, state))

    @property
    def attempts(self) -> int:
        """How many wire attempts the logical call made (at least 1)."""
        return max(1, len(self.history))

    @property
    def message(self) -> str:
        """The error message (also what ``str()`` gives)."""
        return self._message

    def __str__(self) -> str:
        return self._message


class APIStatusError(APIError, requests.HTTPError):
    """The server answered with a 4xx or 5xx status.

    Example:
        >>> try:
        ...     session.post(url, json={"prompt": "a fox"})
        ... except InsufficientBalanceError as exc:
        ...     print(exc.status_code, exc.detail, exc.request_id)

    Attributes:
        status_code: the HTTP status.
        request_id: the server's id for the request (header or JSON body), if any.
        detail: the server's explanation: the JSON ``detail``, or the body text, cut
            to 500 characters, with the pipeline's secrets removed.
    """

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int = 0,
        request_id: str | None = None,
        detail: str = "",
        request: PreparedRequest | None = None,
        response: Response | None = None,
    ) -> None:
        super().__init__(message, request=request, response=response)
        self.status_code = status_code
        self.request_id = request_id
        self.detail = detail


class BadRequestError(APIStatusError):
    """400: the payload is malformed or a field is invalid.

    Example:
        >>> try:
        ...     session.post(url, json={"duration_seconds": 5})
        ... except BadRequestError as exc:
        ...     print(exc.status_code, exc.detail)  # 400 prompt is required
    """


class AuthenticationError(APIStatusError):
    """401: the API key is missing, unknown or revoked.

    Example:
        >>> try:
        ...     session.get(url)
        ... except AuthenticationError as exc:
        ...     print("check the key:", exc.detail)
    """


class InsufficientBalanceError(APIStatusError):
    """402: the account's balance does not cover the job.

    Example:
        >>> try:
        ...     session.post(url, json={"prompt": "a fox"})
        ... except InsufficientBalanceError as exc:
        ...     print("add credits:", exc.detail)
    """


class NotFoundError(APIStatusError):
    """404: no such resource (for example an unknown job id).

    Example:
        >>> try:
        ...     session.get(url)
        ... except NotFoundError as exc:
        ...     print("no such job:", exc.request.url)
    """


class PayloadTooLargeError(APIStatusError):
    """413: the upload or payload exceeds the server's limit.

    Example:
        >>> try:
        ...     session.post(url, files={"image": big_file})
        ... except PayloadTooLargeError as exc:
        ...     print("make the upload smaller:", exc.detail)
    """


class RateLimitError(APIStatusError):
    """429: too many requests.

    Attributes:
        retry_after: seconds the server asked to wait (``Retry-After``, else the time
            until ``X-RateLimit-Reset``), or None when it did not say.

    Example:
        >>> try:
        ...     session.post(url, json=payload)
        ... except RateLimitError as exc:
        ...     print(f"throttled; the server asks for {exc.retry_after} s")
    """

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int = 429,
        request_id: str | None = None,
        detail: str = "",
        retry_after: float | None = None,
        request: PreparedRequest | None = None,
        response: Response | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            request_id=request_id,
            detail=detail,
            request=request,
            response=response,
        )
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the server failed; the outcome of a non-idempotent request is unknown.

    Example:
        >>> try:
        ...     session.get(url)
        ... except ServerError as exc:
        ...     print(exc.status_code, exc.request_id, len(exc.history), "attempts")
    """


#: The Vinci status table: status -> exception class. Other 5xx map to `ServerError`
#: and other 4xx to `APIStatusError`. Extend it for another API with
#: ``StatusErrors(table={**DEFAULT_STATUS_ERRORS, 409: ConflictError})``.
DEFAULT_STATUS_ERRORS: Mapping[int, type[APIStatusError]] = MappingProxyType(
    {
        400: BadRequestError,
        401: AuthenticationError,
        402: InsufficientBalanceError,
        404: NotFoundError,
        413: PayloadTooLargeError,
        429: RateLimitError,
    }
)


class APIConnectionError(APIError, requests.ConnectionError):
    """The request failed below HTTP: refused, reset, DNS, TLS, or a broken body.

    Attributes:
        request_sent: False when the failure happened before the request could reach
            the server (refused, DNS, connect timeout, proxy, TLS handshake), so
            sending it again cannot duplicate its effect; True when the server may have
            received it and acted (reset, read timeout, truncated response).

    Example:
        >>> try:
        ...     session.get(url)
        ... except APIConnectionError as exc:
        ...     print("network trouble; sent:", exc.request_sent)
    """

    def __init__(
        self,
        message: str = "",
        *,
        request_sent: bool = True,
        request: PreparedRequest | None = None,
        response: Response | None = None,
    ) -> None:
        super().__init__(message, request=request, response=response)
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError, requests.Timeout):
    """A connect or read timeout, or the call's deadline passing on the wire.

    Attributes:
        bytes_received: body bytes that had arrived when the call's deadline stopped
            it (the status, when it had arrived, is on `response`); 0 otherwise.

    Example:
        >>> try:
        ...     session.get(url, timeout=(3.05, 10))
        ... except APITimeoutError as exc:
        ...     print("timed out; sent:", exc.request_sent)
    """

    bytes_received: int = 0


class APIConnectTimeoutError(APITimeoutError, requests.ConnectTimeout):
    """No connection within the connect timeout; the request was not sent.

    Example:
        >>> try:
        ...     session.get(url)
        ... except APIConnectTimeoutError as exc:
        ...     assert not exc.request_sent  # safe to send again
    """


class APIReadTimeoutError(APITimeoutError, requests.ReadTimeout):
    """The server did not answer within the read timeout; the outcome is unknown.

    Example:
        >>> try:
        ...     session.post(url, json=payload, timeout=(3.05, 10))
        ... except APIReadTimeoutError as exc:
        ...     print("the server may have acted on it")
    """


class APISSLError(APIConnectionError, requests.exceptions.SSLError):
    """The TLS handshake or the TLS session failed (certificate, protocol, reset).

    Example:
        >>> try:
        ...     session.get(url)
        ... except requests.exceptions.SSLError as exc:  # also an APISSLError
        ...     print("TLS trouble; sent:", exc.request_sent)
    """


class APIProxyError(APIConnectionError, requests.exceptions.ProxyError):
    """The proxy refused or failed the connection; the request did not reach the server.

    Example:
        >>> try:
        ...     session.get(url, proxies={"https": "http://proxy.internal:3128"})
        ... except APIProxyError as exc:
        ...     assert not exc.request_sent
    """


class APIChunkedEncodingError(APIConnectionError, requests.exceptions.ChunkedEncodingError):
    """The response body broke off: truncated, or invalid chunked framing.

    Example:
        >>> try:
        ...     session.get(url).content
        ... except requests.exceptions.ChunkedEncodingError as exc:  # also this class
        ...     print("body broke off after the request was sent:", exc.request_sent)
    """


class APIContentDecodingError(APIConnectionError, requests.exceptions.ContentDecodingError):
    """The response body could not be decoded (a broken ``Content-Encoding``).

    Example:
        >>> try:
        ...     session.get(url).content
        ... except APIContentDecodingError:
        ...     print("the server sent a body its Content-Encoding does not describe")
    """


class CircuitOpenError(APIError):
    """The circuit breaker is open: the request was not sent.

    Attributes:
        breaker: the breaker's name (for example the host).
        retry_after: seconds until the breaker lets a probe through.

    Example:
        >>> try:
        ...     session.get(url)
        ... except CircuitOpenError as exc:  # nothing was sent
        ...     print(f"{exc.breaker} is failing; next probe in {exc.retry_after:.0f} s")
    """

    def __init__(
        self,
        message: str = "",
        *,
        breaker: str = "",
        retry_after: float = 0.0,
        request: PreparedRequest | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.breaker = breaker
        self.retry_after = retry_after


class ConcurrencyLimitError(APIError):
    """The concurrency limit had no permit in time: the request was not sent.

    Raised by `ConcurrencyLimit` when as many calls as it allows are in flight and the
    call could not wait for one of them to finish: the queue was full, or no permit
    came free before `max_wait` or the call's deadline.

    Attributes:
        limit: the policy's name.
        key: the key whose permits were all taken (for example the origin).
        max_concurrent: the most calls the key allows in flight at once.
        reason: ``"queue full"``, ``"no wait allowed"`` or ``"timed out"``.
        waited: seconds the call waited in the queue before it was refused.
        retry_after: an estimate of the seconds until a permit would be free for a
            new caller (recent calls' average hold time, times the rounds of the queue
            ahead of it), or None before any call through the key has finished.

    Example:
        >>> try:
        ...     session.post(url, json=payload)
        ... except ConcurrencyLimitError as exc:  # nothing was sent
        ...     print(f"{exc.max_concurrent} calls in flight; try in {exc.retry_after} s")
    """

    def __init__(
        self,
        message: str = "",
        *,
        limit: str = "",
        key: str = "",
        max_concurrent: int = 0,
        reason: str = "",
        waited: float = 0.0,
        retry_after: float | None = None,
        request: PreparedRequest | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.limit = limit
        self.key = key
        self.max_concurrent = max_concurrent
        self.reason = reason
        self.waited = waited
        self.retry_after = retry_after


class RetryBudgetExhaustedError(APIError):
    """The call waited its whole patience but the shared retry budget had no token.

    Raised instead of the last attempt's error when the retry budget (not the server,
    nor the attempt limit) is what stopped the call: the fleet-wide cap on retries is
    protecting a struggling server. The last attempt's error is the ``__cause__`` and
    its response, if any, is `response`; `history` lists every attempt.

    Example:
        >>> try:
        ...     session.get(url)
        ... except RetryBudgetExhaustedError as exc:
        ...     print("budget empty; the last error was", repr(exc.__cause__))
    """


def refused_locally(error: BaseException) -> bool:
    """Whether `error` is a policy's local refusal: nothing reached the server.

    An open breaker's `CircuitOpenError`, a concurrency limit's
    `ConcurrencyLimitError`, or a status error without a response (a rate limit that
    refused to wait past the deadline). Such an outcome tells nothing about the
    server's health.
    """
    return isinstance(error, CircuitOpenError | ConcurrencyLimitError) or (
        isinstance(error, APIStatusError) and error.response is None
    )


class ConfigurationError(ValueError):
    """An option is missing or out of range; raised when a pipeline is built.

    Example:
        >>> Retry(max_attempts=0)
        Traceback (most recent call last):
        ...
        ConfigurationError: Retry max_attempts must be an int from 1 to 100, got 0
    """


class MissingAPIKeyError(ConfigurationError):
    """No API key was given and none was found in the environment.

    Example:
        >>> APIKeyAuth(env_var="EXAMPLE_API_KEY")  # with EXAMPLE_API_KEY unset
        Traceback (most recent call last):
        ...
        MissingAPIKeyError: the API key was not given: pass api_key=... or set the ...
    """


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (args, `.reason`), and its cause chain."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        if current.__cause__ is not None:
            stack.append(current.__cause__)
        if current.__context__ is not None:
            stack.append(current.__context__)


_NOT_SENT = (
    urllib3.exceptions.NewConnectionError,  # refused, unreachable, DNS (NameResolutionError)
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.ProxyError,
    requests.exceptions.ConnectTimeout,
    requests.exceptions.ProxyError,
)


def translate_transport_error(
    exc: requests.RequestException,
    request: PreparedRequest,
    redactor: Redactor,
) -> APIConnectionError | None:
    """Map a requests transport exception to this library's tree, or None to leave it.

    The result is an instance of the library's class *and* of the requests class that
    was raised (see `TRANSPORT_ERRORS`), with the same ``args``. A read timeout while
    the body streams in arrives from requests as a plain `ConnectionError` and becomes
    an `APIReadTimeoutError` (still a `ConnectionError`). Errors of the caller's own
    making (invalid URL, invalid header) are left alone.
    """
    kind = next((k for k in TRANSPORT_ERRORS if isinstance(exc, k[0])), None)
    if kind is None:
        return None
    _, library_class, label = kind
    causes = list(_causes(exc))
    sent = not any(isinstance(c, _NOT_SENT) for c in causes)
    if isinstance(exc, requests.exceptions.SSLError) and not any(
        isinstance(c, urllib3.exceptions.ProtocolError) for c in causes
    ):
        sent = False  # the TLS handshake precedes the request
    if library_class is APIConnectionError:
        if not sent and any(_is_connect_timeout(c) for c in causes):
            library_class, label = APIConnectTimeoutError, "connect timeout"
        elif any(isinstance(c, urllib3.exceptions.ReadTimeoutError) for c in causes):
            library_class, label = APIReadTimeoutError, "read timeout"
    if library_class is APIReadTimeoutError:
        sent = True
    elif library_class is APIConnectTimeoutError:
        sent = False
    detail = redactor.redact(_short(exc))
    target = f"{request.method} {_safe_url(request.url)}"
    error = library_class(f"{label} for {target}: {detail}", request_sent=sent, request=request)
    _scrub_chain(exc)  # a URL the server redirected to may hold a secret
    error.args = exc.args  # what plain requests gives: args[0] is urllib3's error
    return error


#: Each requests transport exception (most specific first), the library class its
#: translation is an instance of (it is an instance of both), and the message's label.
TRANSPORT_ERRORS: tuple[
    tuple[type[requests.RequestException], type[APIConnectionError], str], ...
] = (
    (requests.ConnectTimeout, APIConnectTimeoutError, "connect timeout"),
    (requests.ReadTimeout, APIReadTimeoutError, "read timeout"),
    (requests.exceptions.SSLError, APISSLError, "TLS failed"),
    (requests.exceptions.ProxyError, APIProxyError, "proxy failed"),
    (requests.exceptions.ChunkedEncodingError, APIChunkedEncodingError, "body broke off"),
    (requests.exceptions.ContentDecodingError, APIContentDecodingError, "body not decodable"),
    (requests.ConnectionError, APIConnectionError, "connection failed"),
)


_QUERY = re.compile(r"\?[^\s'\")]*")


def _is_connect_timeout(exc: BaseException) -> bool:
    # urllib3's NewConnectionError (refused, DNS) subclasses ConnectTimeoutError.
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return isinstance(exc, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    )


def _short(exc: BaseException) -> str:
    text = _QUERY.sub("?…", " ".join(str(exc).split()))
    return text if len(text) <= 300 else text[:299] + "…"


def _safe_url(url: str | None) -> str:
    """The URL without query, fragment, userinfo or known secrets: safe for messages and logs.

    After a redirect the URL is the server's choice, and its path may hold a key: every
    secret this process knows of is removed (`redact_known`). Called only to build a
    message or an event, never on a successful call's path.
    """
    if not url:
        return ""
    base = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = base.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        host_and_path = rest.split("@", 1)[1]
        base = f"{scheme}://{host_and_path}"
    return redact_known(base)


# -- no credential on an exception ---------------------------------------------------

#: Headers that hold a credential whatever their value; their value becomes REDACTED on
#: the request an exception keeps (compared in lower case).
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)


def without_credentials(request: PreparedRequest, *, url: bool = False) -> PreparedRequest:
    """`request` itself if it holds no credential, else a copy with them ``[REDACTED]``.

    A header in `CREDENTIAL_HEADERS`, or whose value holds a known secret, gets the value
    ``[REDACTED]``; with `url`, known secrets are also removed from the URL. The copy
    shares the body (an exception does not re-send it).
    """
    known = known_secrets()
    headers: Mapping[str, str] = request.headers or {}
    names = [
        name
        for name, value in headers.items()
        if (name.lower() in CREDENTIAL_HEADERS and value != REDACTED)
        or (isinstance(value, str) and known.redact(value) != value)
    ]
    safe_url = redact_known(request.url) if url and request.url else request.url
    if not names and safe_url == request.url:
        return request
    copy = request.copy()
    for name in names:
        copy.headers[name] = REDACTED
    copy.url = safe_url
    return copy


def _scrubbed_response(response: Response) -> Response:
    """A detached copy of `response` for pickling, with every known secret removed."""
    known = known_secrets()
    copy = requests.Response()
    copy.status_code = response.status_code
    copy.reason = known.redact(response.reason or "")
    copy.url = known.redact(response.url or "")
    copy.encoding = response.encoding
    copy.elapsed = response.elapsed
    copy.headers = requests.structures.CaseInsensitiveDict(
        {
            name: REDACTED if name.lower() in _RESPONSE_CREDENTIALS else known.redact(value)
            for name, value in response.headers.items()
        }
    )
    # _bodies imports this module (through _deadline): import it when pickling.
    from requests_resilience._bodies import read_bounded  # noqa: PLC0415

    content = read_bounded(response)  # as requests' own pickling reads it, but capped
    copy._content = known.redact_bytes(content)
    copy._content_consumed = True  # type: ignore[attr-defined] # requests' own flag
    if response.request is not None:
        copy.request = without_credentials(response.request, url=True)
    return copy


_RESPONSE_CREDENTIALS = frozenset({"set-cookie", "www-authenticate", "proxy-authenticate"})


def _rebuild_error(cls: type[APIError], args: tuple[Any, ...], state: dict[str, Any]) -> APIError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def _scrub_chain(exc: BaseException) -> None:
    """Redact known secrets from the text of `exc` and of what it wraps, in place.

    urllib3's errors name the URL (``Max retries exceeded with url: /k/<key>/x`` after a
    redirect the server chose). Only an exception whose text holds a secret is touched:
    its ``args`` become their redacted text.
    """
    known = known_secrets()
    if not known:
        return
    for current in list(_causes(exc)):
        texts = [str(arg) for arg in current.args]
        if any(known.redact(text) != text for text in texts):
            current.args = tuple(known.redact(text) for text in texts)

"""The `APIKeyAuth` policy: a credential header on every attempt, for one origin only."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from requests_resilience._errors import ConfigurationError, MissingAPIKeyError
from requests_resilience._headers import put_header

if TYPE_CHECKING:
    from requests import PreparedRequest, Response

    from requests_resilience._pipeline import AsyncNext, Call, Next

__all__ = ["APIKeyAuth", "origin_of"]

_FORBIDDEN = frozenset("\r\n\x00")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of `url` (default port filled in, lower case), or None.

    Example:
        >>> origin_of("HTTPS://API.Example.com/v1/jobs?x=1")
        'https://api.example.com:443'
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except (ValueError, TypeError, AttributeError):
        return None
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}:{port}"


def _prefixes(origin: str) -> tuple[str, ...]:
    """The URL prefixes that certainly belong to `origin`, for a check without parsing.

    requests normalises a prepared URL (scheme and host in lower case, a path of at
    least ``/``), so a URL of the origin starts with ``scheme://host/``, or with
    ``scheme://host:port/`` (the port written out); anything else is parsed.
    """
    scheme, _, rest = origin.partition("://")
    host, _, port = rest.rpartition(":")
    explicit = f"{scheme}://{host}:{port}/"
    if _DEFAULT_PORTS.get(scheme) == int(port):
        return (f"{scheme}://{host}/", explicit)
    return (explicit,)


def _check_key(key: object, env_var: str | None) -> str:
    if key is None or (isinstance(key, str) and not key.strip()):
        where = f" or set the {env_var} environment variable" if env_var else ""
        given = "was blank" if key is not None else "was not given"
        msg = f"the API key {given}: pass api_key=...{where}"
        raise MissingAPIKeyError(msg)
    if not isinstance(key, str):
        msg = f"api_key must be a str, got {type(key).__name__} (decode bytes first)"
        raise ConfigurationError(msg)
    key = key.strip()
    if any(ch in _FORBIDDEN for ch in key):
        msg = "api_key must not contain a line break or NUL character"
        raise ConfigurationError(msg)
    if not key.isascii() or not key.isprintable():
        msg = "api_key must be printable ASCII (an HTTP header value cannot carry it otherwise)"
        raise ConfigurationError(msg)
    return key


def _check_origin(origin: object) -> str | None:
    if origin is None:
        return None
    checked = origin_of(origin) if isinstance(origin, str) else None
    if checked is None:
        msg = (
            "origin must be None or an http:// or https:// URL with a host, such as "
            f"'https://api.example.com', got {origin!r}"
        )
        raise ConfigurationError(msg)
    return checked


class APIKeyAuth:
    """Set an API key header (``Authorization: Bearer <key>`` by default) on each attempt.

    The key comes from `api_key`, else from the environment variable `env_var`. A
    missing, blank or non-ASCII key fails here, when the pipeline is built, not on the
    first request. The key never appears in this object's ``repr``/``str``, and the
    pipeline removes it (and any 8-character piece of it) from every exception message,
    log event and span attribute.

    The key is bound to one origin (scheme, host and port): `origin`, or else the
    origin of the first request this policy sees (the mount prefix's origin, when the
    prefix names a host). A request to any other origin is sent without it, and if it
    carries this policy's header value (requests keeps it on an ``http`` to ``https``
    redirect of the same host) the header is removed. So a redirect can never take the
    key to another host, whatever prefix the adapter is mounted on: mounted on
    ``"http://"``, a redirect from host A to host B reaches B without the key. Pass
    `origin` when the first request might not go to the API (a broad mount prefix).

    Args:
        api_key: the key, a non-empty printable ASCII `str`. Leading and trailing
            white space is removed.
        env_var: where to look when `api_key` is None, e.g. ``"VINCI_API_KEY"``.
        header: the header to set.
        scheme: the prefix before the key (``"Bearer"``), or None for the bare key
            (e.g. ``APIKeyAuth(key, header="X-API-Key", scheme=None)``).
        origin: the only origin the key is sent to, as a URL (``"https://api.example.com"``;
            a path is ignored); None to bind it to the first request's origin.

    Raises:
        MissingAPIKeyError: no key was given and `env_var` is unset or blank.
        ConfigurationError: the key is not a `str`, is not printable ASCII or contains
            a line break or NUL; the header is empty; the scheme contains white space;
            the origin is not an http(s) URL with a host; an option has the wrong type.

    Example:
        >>> auth = APIKeyAuth(env_var="VINCI_API_KEY")  # doctest: +SKIP
        >>> auth = APIKeyAuth("sk-live-abc123def456", origin="https://api.example.com")
        >>> auth.origin
        'https://api.example.com:443'
    """

    __slots__ = (
        "_bind_lock",
        "_explicit",
        "_header",
        "_item",
        "_key",
        "_origin",
        "_prefixes",
        "_scheme",
        "_value",
    )
    name: ClassVar[str] = "auth"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        env_var: str | None = None,
        header: str = "Authorization",
        scheme: str | None = "Bearer",
        origin: str | None = None,
    ) -> None:
        if env_var is not None and (not isinstance(env_var, str) or not env_var.strip()):
            msg = f"env_var must be None or a non-empty environment variable name, got {env_var!r}"
            raise ConfigurationError(msg)
        key = api_key
        if key is None and env_var is not None:
            key = os.environ.get(env_var)
        key = _check_key(key, env_var)
        if (
            not isinstance(header, str)
            or not header
            or not header.isascii()
            or any(ch in _FORBIDDEN or ch.isspace() or ch == ":" for ch in header)
        ):
            msg = f"header must be a non-empty header name, got {header!r}"
            raise ConfigurationError(msg)
        if scheme is not None and (
            not isinstance(scheme, str)
            or not scheme
            or not scheme.isascii()
            or any(ch in _FORBIDDEN or ch.isspace() for ch in scheme)
        ):
            msg = f"scheme must be None or one word without white space, got {scheme!r}"
            raise ConfigurationError(msg)
        bound = _check_origin(origin)
        self._key = key
        self._header = header
        self._scheme = scheme
        self._value = f"{scheme} {key}" if scheme else key
        self._item = (header.lower(), (header, self._value))  # for `put_header`
        self._origin = bound
        self._explicit = bound is not None
        self._prefixes = _prefixes(bound) if bound is not None else ()
        self._bind_lock = threading.Lock()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential, for the pipeline's redactor."""
        return (self._key,)

    @property
    def header(self) -> str:
        """The header this policy sets."""
        return self._header

    @property
    def origin(self) -> str | None:
        """The origin the key is sent to (``scheme://host:port``), None until bound."""
        return self._origin

    def send(self, call: Call, next: Next) -> Response:
        """Set the header on this attempt's request if it goes to the key's origin; send it."""
        self._authorize(call.request)
        return next(call)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines (httpx.AsyncClient)."""
        self._authorize(call.request)
        return await next(call)

    def _authorize(self, request: PreparedRequest) -> None:
        url = request.url or ""
        prefixes = self._prefixes
        # The first test, a string comparison, is `_is_own`'s own hot path written out.
        if (prefixes and url.startswith(prefixes)) or self._is_own(url):
            put_header(request.headers, self._item)
        elif request.headers.get(self._header) == self._value:
            del request.headers[self._header]  # kept by requests across a redirect

    def _is_own(self, url: str) -> bool:
        if self._prefixes and url.startswith(self._prefixes):
            return True  # the hot path: a string comparison
        origin = origin_of(url)
        if origin is None:
            return False
        if self._origin is None:
            with self._bind_lock:
                if self._origin is None:
                    self._prefixes = _prefixes(origin)
                    self._origin = origin
        return origin == self._origin

    def __repr__(self) -> str:
        origin = f"origin={self._origin!r}, " if self._explicit else ""
        return (
            f"APIKeyAuth(header={self._header!r}, scheme={self._scheme!r}, "
            f"{origin}api_key=<redacted>)"
        )

    def __reduce__(self) -> str | tuple[object, ...]:
        msg = "APIKeyAuth holds a secret and cannot be pickled; build it where it is used"
        raise TypeError(msg)

    def __deepcopy__(self, memo: dict[int, object]) -> APIKeyAuth:
        return self  # its options are immutable, its binding is for the same API

"""The `APIKeyAuth` policy: a credential header on every attempt, never in any text."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

from requests_resilience._errors import ConfigurationError, MissingAPIKeyError

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._pipeline import Call, Next

__all__ = ["APIKeyAuth"]

_FORBIDDEN = frozenset("\r\n\x00")


class APIKeyAuth:
    """Set an API key header (``Authorization: Bearer <key>`` by default) on each attempt.

    The key comes from `api_key`, else from the environment variable `env_var`. A
    missing or blank key fails here, when the pipeline is built, not on the first
    request. The key never appears in this object's ``repr``/``str``, and the pipeline
    removes it (and any 8-character piece of it) from every exception message, log
    event and span attribute. Requests strips the header itself when a redirect
    leaves the host.

    Args:
        api_key: the key. Leading and trailing white space is removed.
        env_var: where to look when `api_key` is None, e.g. ``"VINCI_API_KEY"``.
        header: the header to set.
        scheme: the prefix before the key (``"Bearer"``), or None for the bare key
            (e.g. ``APIKeyAuth(key, header="X-API-Key", scheme=None)``).

    Raises:
        MissingAPIKeyError: no key was given and `env_var` is unset or blank.
        ConfigurationError: the key contains a line break or NUL, the header is
            empty, or the scheme contains white space.

    Example:
        >>> auth = APIKeyAuth(env_var="VINCI_API_KEY")  # doctest: +SKIP
        >>> APIKeyAuth("sk-live-abc123def456")
        APIKeyAuth(header='Authorization', scheme='Bearer', api_key=<redacted>)
    """

    __slots__ = ("_header", "_key", "_scheme", "_value")
    name: ClassVar[str] = "auth"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        env_var: str | None = None,
        header: str = "Authorization",
        scheme: str | None = "Bearer",
    ) -> None:
        key = api_key
        if key is None and env_var is not None:
            key = os.environ.get(env_var)
        if key is None or not key.strip():
            where = f" or set the {env_var} environment variable" if env_var else ""
            given = "was blank" if key is not None else "was not given"
            msg = f"the API key {given}: pass api_key=...{where}"
            raise MissingAPIKeyError(msg)
        key = key.strip()
        if any(ch in _FORBIDDEN for ch in key):
            msg = "api_key must not contain a line break or NUL character"
            raise ConfigurationError(msg)
        if not header or any(ch in _FORBIDDEN or ch.isspace() for ch in header):
            msg = f"header must be a non-empty header name, got {header!r}"
            raise ConfigurationError(msg)
        if scheme is not None and (
            not isinstance(scheme, str) or any(ch in _FORBIDDEN or ch.isspace() for ch in scheme)
        ):
            msg = f"scheme must be None or one word without white space, got {scheme!r}"
            raise ConfigurationError(msg)
        self._key = key
        self._header = header
        self._scheme = scheme
        self._value = f"{scheme} {key}" if scheme else key

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential, for the pipeline's redactor."""
        return (self._key,)

    @property
    def header(self) -> str:
        """The header this policy sets."""
        return self._header

    def send(self, call: Call, next: Next) -> Response:
        """Set the header on this attempt's request and send it."""
        call.request.headers[self._header] = self._value
        return next(call)

    def __repr__(self) -> str:
        return f"APIKeyAuth(header={self._header!r}, scheme={self._scheme!r}, api_key=<redacted>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        msg = "APIKeyAuth holds a secret and cannot be pickled; build it where it is used"
        raise TypeError(msg)

    def __deepcopy__(self, memo: dict[int, object]) -> APIKeyAuth:
        return self  # immutable: a copy in the same process may share it

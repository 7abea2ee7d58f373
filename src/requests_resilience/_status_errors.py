"""The `StatusErrors` policy: the final 4xx/5xx response becomes a typed exception."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from requests_resilience._bodies import read_bounded, read_bounded_async
from requests_resilience._errors import (
    DEFAULT_STATUS_ERRORS,
    APIError,
    APIStatusError,
    ConfigurationError,
    RateLimitError,
    ServerError,
    _safe_url,
)
from requests_resilience._parsing import (
    error_detail,
    json_body,
    parse_rate_limit_headers,
    parse_retry_after,
    request_id_of,
)
from requests_resilience._pipeline import attempts_of
from requests_resilience._telemetry import call_failed

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._pipeline import AsyncNext, Call, Next
    from requests_resilience._secrets import Redactor

__all__ = ["StatusErrors", "status_error"]


class StatusErrors:
    """Raise a typed `APIStatusError` for a final 4xx or 5xx response.

    Place it first (outermost), so that a retry policy inside it sees raw responses
    and only the last one becomes an exception. 1xx-3xx responses pass through
    untouched, so the Session still follows redirects.

    Args:
        table: status code -> exception class. Codes not in it map to `ServerError`
            (5xx) or `APIStatusError` (4xx). Defaults to the Vinci table,
            `DEFAULT_STATUS_ERRORS`.

    Example:
        >>> from requests_resilience import DEFAULT_STATUS_ERRORS, APIStatusError
        >>> class ConflictError(APIStatusError): ...
        >>> StatusErrors(table={**DEFAULT_STATUS_ERRORS, 409: ConflictError})
        StatusErrors(table=<7 statuses>)
    """

    __slots__ = ("_table",)
    name: ClassVar[str] = "status_errors"

    def __init__(self, table: Mapping[int, type[APIStatusError]] = DEFAULT_STATUS_ERRORS) -> None:
        checked: dict[int, type[APIStatusError]] = {}
        for code, cls in table.items():
            if not isinstance(code, int) or not 400 <= code <= 599:
                msg = f"StatusErrors table: status {code!r} must be an int from 400 to 599"
                raise ConfigurationError(msg)
            if not (isinstance(cls, type) and issubclass(cls, APIStatusError)):
                msg = f"StatusErrors table: {code} must map to an APIStatusError subclass"
                raise TypeError(msg)
            checked[code] = cls
        self._table: Mapping[int, type[APIStatusError]] = MappingProxyType(checked)

    @property
    def table(self) -> Mapping[int, type[APIStatusError]]:
        """The status -> exception class table (read-only)."""
        return self._table

    def send(self, call: Call, next: Next) -> Response:
        """Send, then raise for a 4xx/5xx response."""
        try:
            response = next(call)
        except APIError as exc:
            call_failed(exc)
            raise
        if response.status_code < 400:
            return response
        error = status_error(response, call.redactor, call.clock.time(), self._table)
        call_failed(error)
        raise error

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines: the error body is read (bounded) without blocking."""
        try:
            response = await next(call)
        except APIError as exc:
            call_failed(exc)
            raise
        if response.status_code < 400:
            return response
        await read_bounded_async(response)
        error = status_error(response, call.redactor, call.clock.time(), self._table)
        call_failed(error)
        raise error

    def __repr__(self) -> str:
        return f"StatusErrors(table=<{len(self._table)} statuses>)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (StatusErrors, (dict(self._table),))

    def __deepcopy__(self, memo: dict[int, Any]) -> StatusErrors:
        return self  # immutable: a copy may share it


def status_error(
    response: Response,
    redactor: Redactor,
    now: float,
    table: Mapping[int, type[APIStatusError]] = DEFAULT_STATUS_ERRORS,
) -> APIStatusError:
    """Build the exception for an error response, reading (a bounded part of) its body.

    Args:
        response: a response with status >= 400.
        redactor: removes secrets from the server's detail.
        now: wall-clock Unix time, to read HTTP-date and reset headers.
        table: status code -> exception class.
    """
    read_bounded(response)
    status = response.status_code
    cls = table.get(status) or (ServerError if status >= 500 else APIStatusError)
    body = json_body(response)
    detail = redactor.redact(error_detail(response, body))
    request_id = request_id_of(response, body)
    if request_id is not None:
        request_id = redactor.redact(request_id)
    request = response.request
    target = f"{request.method} {_safe_url(request.url)}" if request is not None else ""
    message = f"{status} {response.reason or ''}".rstrip()
    if target:
        message += f" from {target}"
    if detail:
        message += f": {detail}"
    if request_id:
        message += f" (request_id={request_id})"
    history = attempts_of(response)
    if history:
        message += f" [{len(history)} attempt(s); {history[-1].reason}]"
    error: APIStatusError
    if issubclass(cls, RateLimitError):
        retry_after = parse_retry_after(response.headers, now)
        if retry_after is None:
            limits = parse_rate_limit_headers(response.headers)
            if limits is not None:
                retry_after = limits.reset_after(now)
        error = cls(
            message,
            status_code=status,
            request_id=request_id,
            detail=detail,
            retry_after=retry_after,
            response=response,
        )
    else:
        error = cls(
            message, status_code=status, request_id=request_id, detail=detail, response=response
        )
    error.history = history
    return error

"""The `Fallback` policy: answer a chosen failure with a response of your own, marked.

Place it first (outermost), outside `StatusErrors`::

    Fallback -> StatusErrors -> Retry -> CircuitBreaker -> RateLimit -> APIKeyAuth -> Tracing

So it sees the call's *final* outcome, after every retry and as the typed exception
the caller would get: a `ServerError` once the retries are spent, a `CircuitOpenError`
from an open breaker, a `RetryBudgetExhaustedError`, an `APIConnectionError`. (Polly
puts its fallback outermost for the same reason: a fallback inside the retry would
answer the first failure and leave the retry nothing to do.)

The response it returns is marked, never by a header (that would read as the
server's): `fallback_of(response)` gives the `FallbackDetails`, with the outcome it
replaced, and `attempts_of(response)` still lists the attempts that failed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import requests
from opentelemetry import context, trace

from requests_resilience import _telemetry
from requests_resilience._bodies import read_bounded, read_bounded_async
from requests_resilience._counters import LazyCounter
from requests_resilience._errors import APIError, APIStatusError, ConfigurationError, _safe_url
from requests_resilience._pipeline import HTTPX_EXTENSIONS_ATTR, attempts_of, set_attempts

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue
    from requests import Response

    from requests_resilience._pipeline import AsyncNext, Call, Next

__all__ = ["Fallback", "FallbackDetails", "fallback_of", "is_fallback"]

#: A failed outcome, as `Fallback` and its predicates see it.
Failure: TypeAlias = "Response | BaseException"
#: What ``on=`` takes: an exception type, a status code, a predicate, or several.
FallbackTrigger: TypeAlias = "type[Exception] | int | Callable[[Response | BaseException], bool]"
#: The fallback function: ``(call, outcome) -> Response`` (or an awaitable of one).
FallbackFunction: TypeAlias = (
    "Callable[[Call, Response | BaseException], Response | Awaitable[Response]]"
)

_MARK = "_requests_resilience_fallback"
#: The key of the httpx response's ``extensions`` that holds the `FallbackDetails`.
HTTPX_EXTENSION = "requests_resilience.fallback"


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackDetails:
    """Why a response is a fallback: which policy made it, and what it replaced.

    Attributes:
        policy: the `Fallback` policy's name.
        outcome: the final response or exception that the fallback replaced, kept as
            evidence (a response's body was read, boundedly, and it was closed).

    Example:
        >>> details = fallback_of(session.get(url))
        >>> details.policy, details.reason
        ('fallback', 'CircuitOpenError')
    """

    policy: str
    outcome: Response | BaseException = field(repr=False)

    @property
    def status_code(self) -> int | None:
        """The replaced outcome's status (a response's, or a status error's), else None."""
        if isinstance(self.outcome, BaseException):
            status = getattr(self.outcome, "status_code", None)
            return status if isinstance(status, int) else None
        return self.outcome.status_code

    @property
    def reason(self) -> str:
        """``"503"`` for a response, the exception's type name (``"ServerError"``) else."""
        if isinstance(self.outcome, BaseException):
            return type(self.outcome).__name__
        return str(self.outcome.status_code)


def fallback_of(response: object) -> FallbackDetails | None:
    """The `FallbackDetails` of a response a `Fallback` made, or None for any other.

    Works on what the caller gets: a `requests.Response`, and the `httpx.Response` of
    an httpx client (where the details are in ``response.extensions``).

    Example:
        >>> details = fallback_of(response)
        >>> if details is not None:
        ...     print("stale balance; the API said", details.reason)
    """
    details = getattr(response, _MARK, None)
    if details is None:
        extensions = getattr(response, "extensions", None)
        if isinstance(extensions, Mapping):
            details = extensions.get(HTTPX_EXTENSION)
    return details if isinstance(details, FallbackDetails) else None


def is_fallback(response: object) -> bool:
    """Whether `response` was made by a `Fallback` policy rather than the server.

    Example:
        >>> is_fallback(session.get(url))
        False
    """
    return fallback_of(response) is not None


def _split(on: object) -> tuple[tuple[type[Exception], ...], frozenset[int], tuple[Any, ...]]:
    """``on=`` as (exception types, status codes, predicates); raises on anything else."""
    items: Iterable[object]
    items = (on,) if isinstance(on, str | bytes) or not isinstance(on, Iterable) else tuple(on)
    types: list[type[Exception]] = []
    statuses: set[int] = set()
    predicates: list[Any] = []
    for item in items:
        if isinstance(item, type):
            if not issubclass(item, Exception):
                msg = (
                    f"Fallback on: {item.__name__} is not an Exception subclass "
                    "(KeyboardInterrupt and cancellation are never answered with a fallback)"
                )
                raise ConfigurationError(msg)
            types.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not 400 <= item <= 599:
                msg = f"Fallback on: status {item!r} must be an int from 400 to 599"
                raise ConfigurationError(msg)
            statuses.add(item)
        elif callable(item):
            predicates.append(item)
        else:
            msg = (
                "Fallback on must be an exception type, a status code from 400 to 599, "
                f"a function (outcome) -> bool, or a tuple of these; got {item!r}"
            )
            raise ConfigurationError(msg)
    if not (types or statuses or predicates):
        msg = "Fallback on must name at least one exception type, status or predicate"
        raise ConfigurationError(msg)
    return tuple(types), frozenset(statuses), tuple(predicates)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    """On the failures you choose, return a response of your own instead, marked.

    The final outcome of the rest of the pipeline (a 4xx or 5xx response, or an
    exception derived from `Exception`) is matched against `on`; on a match, `response` is
    called with the call and that outcome and what it returns goes to the caller.
    Any other outcome passes through untouched. `fallback_of()` on the result gives
    the `FallbackDetails`; a warning ``fallback_used`` is logged, a
    ``requests_resilience.fallbacks`` counted and a ``requests_resilience.fallback``
    event added to the current span.

    Place it outermost, before `StatusErrors`: it then answers the call's final
    outcome, after every retry, as the typed error the caller would get (a
    `ServerError` once the retries are spent, a `CircuitOpenError`), and the status
    codes in `on` match those errors by their ``status_code``. A status code matches
    a response or a status error that the server sent, not a local refusal (a
    `RateLimitError` raised by the `RateLimit` policy has no response: name
    `RateLimitError` to catch it too).

    Args:
        on: what to answer: exception types (``CircuitOpenError``, ``ServerError``;
            subclasses match), status codes 400 to 599, functions
            ``(outcome) -> bool``, or a tuple of these. Required.
        response: ``(call, outcome) -> requests.Response``; `make_response` builds
            one from JSON or bytes. It may be ``async def`` in async pipelines. An
            exception it raises reaches the caller (with the outcome as its context).
        name: the policy's name in logs, spans and `FallbackDetails`.

    Raises:
        ConfigurationError: `on` names nothing, or something that is not an
            exception type, a status 400-599 or a function; `response` is not a
            function; `name` is empty.

    Example:
        >>> from requests_resilience import CircuitOpenError, ServerError, make_response
        >>> last_good = {"balance_usd": 25.5}
        >>> fallback = Fallback(
        ...     on=(CircuitOpenError, ServerError),
        ...     response=lambda call, outcome: make_response(call, json=last_good),
        ... )
        >>> pipeline = Pipeline(fallback, StatusErrors(), Retry(), CircuitBreaker())
    """

    on: FallbackTrigger | tuple[FallbackTrigger, ...]
    response: FallbackFunction
    name: str = "fallback"
    _types: tuple[type[Exception], ...] = field(init=False, repr=False, compare=False)
    _statuses: frozenset[int] = field(init=False, repr=False, compare=False)
    _predicates: tuple[Callable[[Failure], bool], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        types, statuses, predicates = _split(self.on)
        set_ = object.__setattr__
        if not isinstance(self.on, tuple) and isinstance(self.on, Iterable):
            set_(self, "on", tuple(self.on))  # a list given: kept as an immutable tuple
        set_(self, "_types", types)
        set_(self, "_statuses", statuses)
        set_(self, "_predicates", predicates)
        if not callable(self.response):
            msg = "Fallback response must be a function (call, outcome) -> requests.Response"
            raise ConfigurationError(msg)
        if not isinstance(self.name, str) or not self.name:
            msg = f"Fallback name must be a non-empty string, got {self.name!r}"
            raise ConfigurationError(msg)

    # -- the decision ---------------------------------------------------------------

    def matches(self, outcome: Response | BaseException) -> bool:
        """Whether `outcome` (a final response or exception) is answered by the fallback.

        Example:
            >>> stale = Fallback(on=ServerError, response=lambda call, outcome: ...)
            >>> stale.matches(ServerError("503 from GET /balance", status_code=503))
            True
        """
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                return False
            if isinstance(outcome, self._types):
                return True
            if (
                self._statuses
                and isinstance(outcome, APIStatusError)
                and outcome.response is not None
                and outcome.status_code in self._statuses
            ):
                return True
        elif outcome.status_code in self._statuses:
            return True
        return any(predicate(outcome) for predicate in self._predicates)

    # -- the drivers ----------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Send; answer a matching final outcome with the fallback's response."""
        try:
            response = next(call)
        except Exception as exc:
            if not self.matches(exc):
                raise
            made = self.response(call, exc)
            if inspect.isawaitable(made):
                _close(made)
                raise _async_in_sync(self.name) from exc
            return self._mark(call, made, exc)
        if response.status_code < 400 or not self.matches(response):
            return response
        read_bounded(response)
        response.close()
        made = self.response(call, response)
        if inspect.isawaitable(made):
            _close(made)
            raise _async_in_sync(self.name)
        return self._mark(call, made, response)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines; `response` may be an ``async def`` function."""
        try:
            response = await next(call)
        except Exception as exc:
            if not self.matches(exc):
                raise
            made = self.response(call, exc)
            if inspect.isawaitable(made):
                made = await made
            return self._mark(call, made, exc)
        if response.status_code < 400 or not self.matches(response):
            return response
        await read_bounded_async(response)
        response.close()
        made = self.response(call, response)
        if inspect.isawaitable(made):
            made = await made
        return self._mark(call, made, response)

    def _mark(self, call: Call, made: object, outcome: Response | BaseException) -> Response:
        """Check and mark the fallback's response; report it."""
        if not isinstance(made, requests.Response):
            msg = (
                f"Fallback {self.name!r}: its response function returned "
                f"{type(made).__name__}, not a requests.Response (make_response builds one)"
            )
            raise TypeError(msg)
        if made.request is None:
            made.request = call.request
        details = FallbackDetails(policy=self.name, outcome=outcome)
        history = (
            getattr(outcome, "history", ())
            if isinstance(outcome, APIError)
            else attempts_of(outcome)
            if isinstance(outcome, requests.Response)
            else ()
        )
        if history and not attempts_of(made):
            set_attempts(made, history)
        setattr(made, _MARK, details)
        # On an httpx transport, the mark reaches the caller in the httpx response's
        # extensions (the transport builds that response from this one).
        setattr(made, HTTPX_EXTENSIONS_ATTR, {HTTPX_EXTENSION: details})
        _fallback_used(call, details)
        return made

    def __repr__(self) -> str:
        on = [t.__name__ for t in self._types]
        on += [str(s) for s in sorted(self._statuses)]
        on += [getattr(p, "__name__", type(p).__name__) for p in self._predicates]
        function = getattr(self.response, "__name__", type(self.response).__name__)
        return f"Fallback(on=({', '.join(on)}), response={function}, name={self.name!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Fallback:
        return self  # immutable: a copy may share it


_FALLBACKS = LazyCounter(
    "requests_resilience.fallbacks",
    unit="{response}",
    description="Responses a fallback policy made in place of a failure, by policy and outcome.",
)


def _fallback_used(call: Call, details: FallbackDetails) -> None:
    """Log ``fallback_used``, add a span event, count ``requests_resilience.fallbacks``."""
    request = call.request
    fields: dict[str, Any] = {
        "policy": details.policy,
        "outcome": details.reason,
        "method": request.method or "",
        "url": _safe_url(request.url),
    }
    _telemetry.logger.warning("fallback_used", **fields)
    attributes: dict[str, AttributeValue] = {
        "requests_resilience.fallback.policy": details.policy,
        "requests_resilience.fallback.outcome": details.reason,
    }
    _FALLBACKS.add(1, attributes)
    if not context.get_current():
        return  # no span in the context: nothing to annotate
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("requests_resilience.fallback", attributes)


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # a coroutine never awaited would warn


def _async_in_sync(name: str) -> TypeError:
    return TypeError(
        f"Fallback {name!r}: its response function is async (it returned an awaitable); "
        "that works in async pipelines only (httpx.AsyncClient): give it a plain function"
    )

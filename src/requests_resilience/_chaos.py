"""Chaos injection: Simmy's four strategies as policies, off unless enabled.

Each policy replaces or disturbs a share of the wire attempts, to test how *your*
application copes with a failing API while it talks to the real one (in staging):

=====================  ====================================================
`ChaosFault`           raises an exception instead of sending (default: a
                       connection failure before the request left)
`ChaosLatency`         waits before sending, on the pipeline's clock
`ChaosOutcome`         answers with a response of its own instead of sending
                       (default: a 503 with ``Retry-After: 1``)
`ChaosBehaviour`       runs a function of yours, then sends
=====================  ====================================================

Every one has an ``injection_rate`` (the share of attempts it touches, 0 to 1) and an
``enabled`` switch: False by default, True, or a function ``(call) -> bool`` asked on
each attempt (an environment flag, a header, a feature switch). An enabled policy
draws one number per attempt from ``call.clock.random()`` and injects when it is below
the rate; a disabled one draws nothing, so leaving chaos in a pipeline, switched off,
changes nothing, not even the jitter of a test's seeded `FakeClock`. On a `FakeClock`
the injections are reproducible: the same seed, the same attempts.

Place them innermost, after `Tracing` (Polly adds its chaos strategies last, next to
the callback)::

    StatusErrors -> Retry -> CircuitBreaker -> RateLimit -> APIKeyAuth -> Tracing -> Chaos...

There an injected attempt is an attempt like any other: the retry retries it, the
breaker counts it, the rate limit spends a token on it, and it has its own span, with
the ``requests_resilience.chaos.injected`` attribute saying what was injected. Every
injection logs a warning ``chaos_injected``, loud on purpose: chaos left on in
production must not go unnoticed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from opentelemetry import context, trace

from requests_resilience import _telemetry
from requests_resilience._clock import sleep_async
from requests_resilience._counters import LazyCounter
from requests_resilience._errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    _safe_url,
)
from requests_resilience._responses import make_response

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._pipeline import AsyncNext, Call, Next

__all__ = [
    "ChaosBehaviour",
    "ChaosFault",
    "ChaosLatency",
    "ChaosOutcome",
    "connection_failure",
    "service_unavailable",
]

#: The span attribute set on the current span (the attempt's) for an injection.
INJECTED_ATTRIBUTE = "requests_resilience.chaos.injected"
_INJECTIONS = LazyCounter(
    "requests_resilience.chaos.injections",
    unit="{injection}",
    description="Attempts a chaos policy disturbed, by policy and kind.",
)
_DAY = 86_400.0


def connection_failure(call: Call) -> APIConnectionError:
    """The default fault: a connection failure before the request left (``request_sent=False``).

    What a refused connection raises, so the retry sends again whatever the method.

    Example:
        >>> ChaosFault(injection_rate=0.1, enabled=True, fault=connection_failure)
        ChaosFault(injection_rate=0.1, enabled=True, fault=connection_failure)
    """
    request = call.request
    return APIConnectionError(
        f"chaos: injected connection failure for {request.method} {_safe_url(request.url)} "
        "(nothing was sent)",
        request_sent=False,
        request=request,
    )


def service_unavailable(call: Call) -> Response:
    """The default outcome: ``503 Service Unavailable`` with ``Retry-After: 1``.

    Example:
        >>> ChaosOutcome(injection_rate=0.1, enabled=True, outcome=service_unavailable)
        ChaosOutcome(injection_rate=0.1, enabled=True, outcome=service_unavailable)
    """
    return make_response(
        call,
        503,
        json={"detail": "chaos: injected 503"},
        headers={"Retry-After": "1"},
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Chaos:
    """The options and the decision every chaos policy shares."""

    injection_rate: float
    enabled: bool | Callable[[Call], bool] = False
    name: str = "chaos"

    kind: ClassVar[str] = "chaos"

    def __post_init__(self) -> None:
        label = type(self).__name__
        rate = self.injection_rate
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not math.isfinite(rate)
            or not 0.0 <= rate <= 1.0
        ):
            msg = f"{label} injection_rate must be a number from 0.0 to 1.0, got {rate!r}"
            raise ConfigurationError(msg)
        object.__setattr__(self, "injection_rate", float(rate))
        if not isinstance(self.enabled, bool) and not callable(self.enabled):
            msg = f"{label} enabled must be True, False or a function (call) -> bool"
            raise ConfigurationError(msg)
        if not isinstance(self.name, str) or not self.name:
            msg = f"{label} name must be a non-empty string, got {self.name!r}"
            raise ConfigurationError(msg)

    def injects(self, call: Call) -> bool:
        """Whether this attempt is disturbed: enabled, and a draw below the rate.

        A disabled policy draws no random number (the clock's sequence is left as is).
        """
        enabled = self.enabled
        if enabled is False or (enabled is not True and not enabled(call)):
            return False
        return call.clock.random() < self.injection_rate

    # Each kind sends in its own way; declared here so that a list of chaos policies
    # of several kinds is still a list of policies to a type checker.
    def send(self, call: Call, next: Next) -> Response:
        """Handle one attempt (see each kind)."""
        raise NotImplementedError  # pragma: no cover - every kind overrides it

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """Handle one attempt in an async pipeline (see each kind)."""
        raise NotImplementedError  # pragma: no cover - every kind overrides it

    def _report(self, call: Call, **detail: Any) -> None:
        """Log ``chaos_injected``, count it, mark the current span (the attempt's)."""
        request = call.request
        fields: dict[str, Any] = {
            "policy": self.name,
            "kind": self.kind,
            "method": request.method or "",
            "url": _safe_url(request.url),
            "attempt": call.attempt,
            **detail,
        }
        _telemetry.logger.warning("chaos_injected", **fields)
        _INJECTIONS.add(
            1,
            {
                "requests_resilience.chaos.policy": self.name,
                "requests_resilience.chaos.kind": self.kind,
            },
        )
        if not context.get_current():
            return  # no span in the context: nothing to annotate
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(INJECTED_ATTRIBUTE, self.kind)
            span.add_event(
                "requests_resilience.chaos",
                {
                    "requests_resilience.chaos.policy": self.name,
                    "requests_resilience.chaos.kind": self.kind,
                    **{f"requests_resilience.chaos.{k}": v for k, v in detail.items()},
                },
            )

    def _options(self) -> str:
        enabled = self.enabled if isinstance(self.enabled, bool) else _name_of(self.enabled)
        return f"injection_rate={self.injection_rate:g}, enabled={enabled}"

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self  # immutable: a copy may share it


def _name_of(function: object) -> str:
    return getattr(function, "__name__", type(function).__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosFault(_Chaos):
    """Raise an exception instead of sending, on a share of the attempts.

    Place chaos policies last, after `Tracing`: an injected attempt is then retried,
    counted by the breaker and traced like a real one. Off unless `enabled`.

    Args:
        injection_rate: the share of attempts that fail, 0.0 to 1.0. Required.
        enabled: False (the default: nothing is injected), True, or a function
            ``(call) -> bool`` asked on each attempt.
        fault: ``(call) -> exception``, called for each injection so that every
            attempt raises its own exception (default `connection_failure`: an
            `APIConnectionError` with ``request_sent=False``). Any exception type
            works; the library's (`APIReadTimeoutError`, ...) are retried and counted
            by the breaker as real ones are.
        name: the policy's name in logs and spans.

    Raises:
        ConfigurationError: the rate is outside 0 to 1, `enabled` is neither a bool
            nor a function, `fault` is not a function (an exception *instance* is
            refused: one object raised by every call would pile up their tracebacks).

    Example:
        >>> from requests_resilience import APIReadTimeoutError
        >>> def read_timeout(call):
        ...     return APIReadTimeoutError("chaos: read timeout", request=call.request)
        >>> chaos = ChaosFault(injection_rate=0.2, enabled=True, fault=read_timeout)
    """

    fault: Callable[[Call], BaseException] = connection_failure
    name: str = "chaos_fault"

    kind: ClassVar[str] = "fault"

    def __post_init__(self) -> None:
        _Chaos.__post_init__(self)
        if isinstance(self.fault, BaseException) or not callable(self.fault):
            msg = (
                "ChaosFault fault must be a function (call) -> exception that builds a "
                f"fresh exception for each injection, got {self.fault!r}"
            )
            raise ConfigurationError(msg)

    def _error(self, call: Call) -> BaseException:
        error = self.fault(call)
        if not isinstance(error, BaseException):
            msg = f"ChaosFault fault returned {type(error).__name__}, not an exception"
            raise TypeError(msg)
        self._report(call, error=type(error).__name__)
        return error

    def send(self, call: Call, next: Next) -> Response:
        """Raise the fault on an injected attempt; send the others."""
        if self.injects(call):
            raise self._error(call)
        return next(call)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines."""
        if self.injects(call):
            raise self._error(call)
        return await next(call)

    def __repr__(self) -> str:
        return f"ChaosFault({self._options()}, fault={_name_of(self.fault)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosLatency(_Chaos):
    """Wait before sending, on a share of the attempts (a slow network or server).

    Place chaos policies last, after `Tracing`: an injected attempt is then retried,
    counted by the breaker and traced like a real one. Off unless `enabled`.

    The wait is on the pipeline's clock (a `FakeClock` makes it instant and records
    it in ``clock.sleeps``). A wait that would pass the call's deadline (the retry's
    ``timeout``) waits until the deadline and fails with `APITimeoutError`
    (``request_sent=False``): what the deadline would have done to a slow attempt,
    without sending it.

    Args:
        latency: the added wait, seconds or a `timedelta`, 0 to 86400. Required.
        injection_rate: the share of attempts delayed, 0.0 to 1.0. Required.
        enabled: False (the default), True, or a function ``(call) -> bool``.
        name: the policy's name in logs and spans.

    Raises:
        ConfigurationError: an option is out of range.

    Example:
        >>> chaos = ChaosLatency(latency=2.5, injection_rate=0.1, enabled=True)
    """

    latency: float | timedelta
    name: str = "chaos_latency"

    kind: ClassVar[str] = "latency"

    def __post_init__(self) -> None:
        _Chaos.__post_init__(self)
        value = self.latency
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0.0 <= value <= _DAY
        ):
            msg = (
                "ChaosLatency latency must be a number of seconds (or a timedelta) "
                f"from 0 to 86400, got {self.latency!r}"
            )
            raise ConfigurationError(msg)
        object.__setattr__(self, "latency", float(value))

    def _plan(self, call: Call) -> tuple[float, bool]:
        """(seconds to wait, whether the deadline cuts the wait short)."""
        latency = float(self.latency)  # type: ignore[arg-type]
        left = call.time_left()
        if left is not None and latency >= left:
            self._report(call, latency=latency, deadline_passed=True)
            return max(0.0, left), True
        self._report(call, latency=latency)
        return latency, False

    def _timeout(self, call: Call) -> APITimeoutError:
        request = call.request
        return APITimeoutError(
            f"chaos: injected latency of {self.latency:g}s passed the call's deadline for "
            f"{request.method} {_safe_url(request.url)} (nothing was sent)",
            request_sent=False,
            request=request,
        )

    def send(self, call: Call, next: Next) -> Response:
        """Wait first on an injected attempt, then send (unless the deadline passed)."""
        if self.injects(call):
            wait, passed = self._plan(call)
            call.clock.sleep(wait)
            if passed:
                raise self._timeout(call)
        return next(call)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines: the wait does not block the event loop."""
        if self.injects(call):
            wait, passed = self._plan(call)
            await sleep_async(call.clock, wait)
            if passed:
                raise self._timeout(call)
        return await next(call)

    def __repr__(self) -> str:
        return f"ChaosLatency(latency={self.latency:g}, {self._options()})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosOutcome(_Chaos):
    """Answer with a response of your own instead of sending, on a share of the attempts.

    Place chaos policies last, after `Tracing`: an injected attempt is then retried,
    counted by the breaker and traced like a real one. Off unless `enabled`.

    Args:
        injection_rate: the share of attempts answered, 0.0 to 1.0. Required.
        enabled: False (the default), True, or a function ``(call) -> bool``.
        outcome: ``(call) -> requests.Response`` (default `service_unavailable`, a
            503 with ``Retry-After: 1``); `make_response` builds one.
        name: the policy's name in logs and spans.

    Raises:
        ConfigurationError: an option is out of range or `outcome` is not a function.

    Example:
        >>> from requests_resilience import make_response
        >>> def throttled(call):
        ...     return make_response(call, 429, headers={"Retry-After": "2"})
        >>> chaos = ChaosOutcome(injection_rate=0.3, enabled=True, outcome=throttled)
    """

    outcome: Callable[[Call], Response] = service_unavailable
    name: str = "chaos_outcome"

    kind: ClassVar[str] = "outcome"

    def __post_init__(self) -> None:
        _Chaos.__post_init__(self)
        if not callable(self.outcome):
            msg = "ChaosOutcome outcome must be a function (call) -> requests.Response"
            raise ConfigurationError(msg)

    def _response(self, call: Call) -> Response:
        response = self.outcome(call)
        status = getattr(response, "status_code", None)
        if not isinstance(status, int):
            msg = f"ChaosOutcome outcome returned {type(response).__name__}, not a Response"
            raise TypeError(msg)
        if response.request is None:
            response.request = call.request
        self._report(call, status_code=status)
        return response

    def send(self, call: Call, next: Next) -> Response:
        """Return the injected response instead of sending; send the others."""
        if self.injects(call):
            return self._response(call)
        return next(call)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines."""
        if self.injects(call):
            return self._response(call)
        return await next(call)

    def __repr__(self) -> str:
        return f"ChaosOutcome({self._options()}, outcome={_name_of(self.outcome)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosBehaviour(_Chaos):
    """Run a function of yours before sending, on a share of the attempts.

    Place chaos policies last, after `Tracing`: an injected attempt is then retried,
    counted by the breaker and traced like a real one. Off unless `enabled`.

    For what the other three cannot say: drop a cache, revoke a test key, pause a
    worker, kill a connection. The attempt is then sent as usual (raise from the
    function to fail it instead).

    Args:
        behaviour: ``(call) -> None``; in async pipelines it may be ``async def``.
            Required.
        injection_rate: the share of attempts, 0.0 to 1.0. Required.
        enabled: False (the default), True, or a function ``(call) -> bool``.
        name: the policy's name in logs and spans.

    Raises:
        ConfigurationError: an option is out of range or `behaviour` is not a function.

    Example:
        >>> flushed = []
        >>> chaos = ChaosBehaviour(
        ...     behaviour=lambda call: flushed.append(call.request.url),
        ...     injection_rate=0.05,
        ...     enabled=True,
        ... )
    """

    behaviour: Callable[[Call], Awaitable[None] | None]
    name: str = "chaos_behaviour"

    kind: ClassVar[str] = "behaviour"

    def __post_init__(self) -> None:
        _Chaos.__post_init__(self)
        if not callable(self.behaviour):
            msg = "ChaosBehaviour behaviour must be a function (call) -> None"
            raise ConfigurationError(msg)

    def send(self, call: Call, next: Next) -> Response:
        """Run the behaviour on an injected attempt, then send."""
        if self.injects(call):
            self._report(call, behaviour=_name_of(self.behaviour))
            result = self.behaviour(call)
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                msg = (
                    f"ChaosBehaviour {self.name!r}: its behaviour is async; that works in "
                    "async pipelines only (httpx.AsyncClient): give it a plain function"
                )
                raise TypeError(msg)
        return next(call)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines; an ``async def`` behaviour is awaited."""
        if self.injects(call):
            self._report(call, behaviour=_name_of(self.behaviour))
            result = self.behaviour(call)
            if inspect.isawaitable(result):
                await result
        return await next(call)

    def __repr__(self) -> str:
        return f"ChaosBehaviour({self._options()}, behaviour={_name_of(self.behaviour)})"

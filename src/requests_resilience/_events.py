"""Frozen detail objects that policies hand to hooks, logs, span events and metrics.

Policies never format log lines themselves: they build one of these (only when
something happened that is worth reporting, never on the happy path) and pass it to
`requests_resilience._telemetry`, which fans it out to structlog, the current span and
the metrics, and to the user's own hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BreakerStateChange", "HedgeDetails", "RetryDetails"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDetails:
    """A retry about to happen, in the spirit of stamina's ``RetryDetails``.

    Attributes:
        policy: the retry policy's name.
        method: the HTTP method.
        url: the URL without query, fragment or credentials.
        attempt: the number of the attempt that just failed (1 = first).
        wait: seconds the policy will wait before the next attempt.
        reason: why it retries, e.g. ``"status 503"``, ``"APIConnectionError"``,
            ``"circuit open"``.
        status_code: the failed attempt's status, if it got a response.
        error: the failed attempt's exception type name, if it raised.
        request_id: the server's request id of the failed attempt, if known.
        retry_after: what the server (or an open breaker) asked to wait, if anything.
        elapsed: seconds since the first attempt started.

    Example:
        >>> def on_retry(details: RetryDetails) -> None:
        ...     print(f"{details.method} {details.url}: {details.reason}, "
        ...           f"retry in {details.wait:.2f} s")
        >>> retry = Retry(on_retry=(on_retry,))
    """

    policy: str
    method: str
    url: str
    attempt: int
    wait: float
    reason: str
    status_code: int | None = None
    error: str | None = None
    request_id: str | None = None
    retry_after: float | None = None
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStateChange:
    """A circuit breaker moved from one state to another.

    Attributes:
        breaker: the breaker's name (its key, e.g. the host).
        old_state: ``"closed"``, ``"open"`` or ``"half_open"``.
        new_state: ``"closed"``, ``"open"`` or ``"half_open"``.
        failure_ratio: the failure ratio in the window when it changed, if known.
        slow_call_ratio: the share of slow calls in the window when it changed, if the
            breaker times calls and any was slow.
        calls: the number of calls in the window when it changed, if known.
        retry_after: for ``"open"``, seconds until a probe is let through.

    Example:
        >>> def on_change(change: BreakerStateChange) -> None:
        ...     print(f"{change.breaker}: {change.old_state} -> {change.new_state}")
        >>> breaker = CircuitBreaker(listeners=on_change)
    """

    breaker: str
    old_state: str
    new_state: str
    failure_ratio: float | None = None
    calls: int | None = None
    retry_after: float | None = None
    slow_call_ratio: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeDetails:
    """A hedged attempt about to be sent while earlier attempts of the call may still run.

    Attributes:
        policy: the hedging policy's name.
        method: the HTTP method.
        url: the URL without query, fragment or credentials.
        attempt: the number the new attempt gets (the first hedge of a call is 2).
        hedge: which hedge of the call it is: 1 for the first.
        trigger: ``"delay"`` (no acceptable response within the delay),
            ``"failure"`` (an earlier attempt failed), or ``"parallel"`` (a delay of 0).
        delay: the call's hedging delay in seconds (None in fallback mode).
        elapsed: seconds since the call's first attempt started.
        status_code: for ``"failure"``, the status of the attempt that failed, if any.
        error: for ``"failure"``, the exception type name of the attempt that failed.

    Example:
        >>> def on_hedge(details: HedgeDetails) -> None:
        ...     print(f"{details.method} {details.url}: hedge {details.hedge} "
        ...           f"({details.trigger}) after {details.elapsed:.3f} s")
        >>> hedging = Hedging(delay=0.2, on_hedge=(on_hedge,))
    """

    policy: str
    method: str
    url: str
    attempt: int
    hedge: int
    trigger: str
    delay: float | None
    elapsed: float
    status_code: int | None = None
    error: str | None = None

"""The `Retry` policy: jittered backoff that is safe for requests that cost money.

What is retried, and why (the default `classify_outcome`):

======================================  ===============  ===============================
outcome                                 class            retried
======================================  ===============  ===============================
2xx, 3xx                                ``SUCCESS``      no: returned
refused, DNS, connect timeout, proxy,   ``NOT_SENT``     always: the server never saw it
TLS handshake (``request_sent=False``)
`CircuitOpenError` (local, no I/O)      ``NOT_SENT``     always, after its ``retry_after``
408, 429, 503                           ``REJECTED``     always: refused without acting
500, 502, 504                           ``UNKNOWN``      only if idempotent
read timeout, reset after sending,      ``UNKNOWN``      only if idempotent
broken body (``request_sent=True``)
other 4xx                               ``FATAL``        never
anything else                           ``FATAL``        never
======================================  ===============  ===============================

A request is idempotent when its method is in ``idempotent_methods`` (GET, HEAD,
OPTIONS, PUT, DELETE, TRACE) or it carries an ``Idempotency-Key`` header. So a POST that
starts a paid job is never sent twice when the first one may have been acted on,
unless the API deduplicates it by key (``add_idempotency_key=True`` adds one).

How long to wait: the server's ``Retry-After`` (delta-seconds, fractions, HTTP-date,
``retry-after-ms``; for a 429 without it, ``X-RateLimit-Reset``) or an open breaker's
``retry_after``, exactly; else exponential backoff with jitter, capped at
``max_delay``. A server wait longer than ``max_retry_after``, or any wait that would
end after the call's deadline, is not started: the call fails at once with the last
response or error.

A `RetryBudget` shared by all calls rations retries while the server keeps failing
(see its docstring): when it refuses a token, the call keeps its patience (it waits
its next backoff step and asks again, for as long as the whole backoff schedule would
have taken) and fails with `RetryBudgetExhaustedError` when its patience runs out. A
retry after an open breaker's refusal takes no token: the breaker rations those.
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, TypeAlias

import requests
import urllib3.util
from requests.utils import rewind_body

from requests_resilience._bodies import read_bounded, read_bounded_async
from requests_resilience._budget import RetryBudget
from requests_resilience._clock import sleep_async
from requests_resilience._errors import (
    APIConnectionError,
    APIError,
    CircuitOpenError,
    ConfigurationError,
    RetryBudgetExhaustedError,
    _safe_url,
    refused_locally,
)
from requests_resilience._events import RetryDetails
from requests_resilience._headers import copy_headers, request_snapshot, restore_headers
from requests_resilience._options import seconds
from requests_resilience._parsing import (
    parse_rate_limit_headers,
    parse_retry_after,
    request_id_of,
)
from requests_resilience._pipeline import Attempt, set_attempts, with_deadline
from requests_resilience._telemetry import retry_scheduled

if TYPE_CHECKING:
    from requests import PreparedRequest, Response
    from requests.structures import CaseInsensitiveDict

    from requests_resilience._clock import Clock
    from requests_resilience._pipeline import AsyncNext, Call, Next, TimeoutValue

__all__ = ["Outcome", "Retry", "classify_outcome"]

Jitter = Literal["full", "equal", "decorrelated", "none"]
_JITTERS = ("full", "equal", "decorrelated", "none")
_DRAIN_LIMIT = 64 * 1024
_DAY = 86_400.0
#: What `isinstance` checks a number of seconds against (``int | float`` would build a
#: union object on every call of the per-request path).
_NUMBER = (int, float)


class Outcome(enum.Enum):
    """What one attempt's result means for retrying it (see the module's table).

    Example:
        >>> classify_outcome(None, CircuitOpenError("api.example.com", retry_after=5.0))
        <Outcome.NOT_SENT: 'not_sent'>
    """

    SUCCESS = "success"
    """A response to return as is (2xx, 3xx)."""
    FATAL = "fatal"
    """A failure that another attempt would not fix (most 4xx, caller errors)."""
    NOT_SENT = "not_sent"
    """The request never reached the server: always safe to send again."""
    REJECTED = "rejected"
    """The server refused it without acting (408, 429, 503): safe to send again."""
    UNKNOWN = "unknown"
    """The server may have acted (500, 502, 504, read timeout, reset): only idempotent."""


def classify_outcome(response: Response | None, error: BaseException | None) -> Outcome:
    """The default classification of an attempt's result; see the module's table.

    Replace it with ``Retry(classify=...)``; a custom function usually handles its
    special cases and delegates the rest here.

    Args:
        response: the attempt's response, or None when it raised.
        error: the exception the attempt raised, or None.

    Example:
        >>> def classify(response, error):
        ...     if response is not None and response.status_code == 409:
        ...         return Outcome.REJECTED  # this API answers 409 while it is busy
        ...     return classify_outcome(response, error)
        >>> retry = Retry(classify=classify)
    """
    if response is not None:
        status = response.status_code
        if status < 400:
            return Outcome.SUCCESS
        if status in (408, 429, 503):
            return Outcome.REJECTED
        if status in (500, 502, 504):
            return Outcome.UNKNOWN
        return Outcome.FATAL
    if isinstance(error, CircuitOpenError):
        return Outcome.NOT_SENT
    if isinstance(error, APIConnectionError):
        if isinstance(error.__cause__, requests.exceptions.SSLError):
            return Outcome.FATAL  # a certificate problem does not heal by retrying
        return Outcome.UNKNOWN if error.request_sent else Outcome.NOT_SENT
    return Outcome.FATAL


Classifier = Callable[["Response | None", "BaseException | None"], Outcome]
RetryHook = Callable[[RetryDetails], None]

_DEFAULT_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def cut_timeout(given: TimeoutValue, cap: float) -> TimeoutValue:
    """`given` (any form requests accepts) with each of its parts cut to at most `cap`.

    Seconds, ``(connect, read)`` with either part None, None, or a
    `urllib3.util.Timeout` (its ``total`` is cut too); the form is kept.
    """
    if given is None:
        return cap
    if isinstance(given, tuple):
        connect, read = given
        return (_cut(connect, cap), _cut(read, cap))
    if isinstance(given, urllib3.util.Timeout):
        # The parts as given: its read_timeout property needs a started timer.
        return urllib3.util.Timeout(
            connect=_cut(_seconds_of(getattr(given, "_connect", None)), cap),
            read=_cut(_seconds_of(getattr(given, "_read", None)), cap),
            total=_cut(_seconds_of(given.total), cap),
        )
    return min(float(given), cap)


def within(given: TimeoutValue, left: float) -> bool:
    """Whether `given` (seconds or ``(connect, read)``) is already no longer than `left`.

    Then cutting it to `left` changes nothing, and the attempt keeps the very value the
    caller gave (a transport can then send the caller's request as it is).
    """
    if isinstance(given, tuple):
        connect, read = given
        return (
            isinstance(connect, _NUMBER)
            and isinstance(read, _NUMBER)
            and connect <= left
            and read <= left
        )
    return isinstance(given, _NUMBER) and given <= left


def _cut(part: float | None, cap: float) -> float:
    return cap if part is None else min(float(part), cap)


_seconds = functools.partial(seconds, "Retry")


def _seconds_of(part: object) -> float | None:
    """A `urllib3.util.Timeout` part as seconds, None for "not set" (or its default)."""
    return float(part) if isinstance(part, (int, float)) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Retry failed attempts with jittered exponential backoff, safely.

    Place it inside `StatusErrors` and outside everything that must run once per wire
    attempt (breaker, rate limit, auth, tracing)::

        StatusErrors -> Retry -> CircuitBreaker -> RateLimit -> APIKeyAuth -> Tracing

    Args:
        max_attempts: wire attempts at most, the first included; 1 to 100 (default 5).
        initial_delay: backoff before the first retry (seconds or timedelta); 0 to 3600
            (default 0.5).
        multiplier: growth of the backoff per retry; 1.0 to 10.0 (default 2.0).
        max_delay: cap on one backoff wait; `initial_delay` to 86400 (default 30).
        jitter: ``"full"`` (uniform in [0, backoff], the default), ``"equal"``
            (half fixed, half random), ``"decorrelated"`` (uniform in
            [initial_delay, 3 x previous wait]) or ``"none"``.
        timeout: deadline for the whole call, attempts and waits together; None for
            none (default), else 0 < timeout <= 86400.
        attempt_timeout: timeout for one attempt, cut to the time left; None to use
            the ``timeout=`` given to requests (also cut to the time left).
        max_retry_after: the longest server-requested wait the call will honour; a
            longer one fails the call at once; 0 to 86400 (default 60).
        idempotent_methods: methods that are safe to repeat after an unknown outcome.
        idempotency_header: the header that makes any request idempotent.
        add_idempotency_key: add a random ``idempotency_header`` to requests whose
            method is not idempotent, once per call, so every attempt carries the
            same key. Only useful if the API honours it (Vinci's docs do not say).
        classify: the outcome classification (default `classify_outcome`).
        budget: the shared `RetryBudget`, or None for no budget.
        fail_fast_on_budget: when the budget is empty, fail at once instead of
            waiting for a token within the call's patience.
        on_retry: functions called with a `RetryDetails` before each wait.
        name: the policy's name in logs, spans and metrics.

    Raises:
        ConfigurationError: an option is out of range (the message names it).

    Example:
        >>> from requests_resilience import Pipeline, Retry, StatusErrors
        >>> pipeline = Pipeline(StatusErrors(), Retry(max_attempts=4, timeout=30))
    """

    max_attempts: int = 5
    initial_delay: float | timedelta = 0.5
    multiplier: float = 2.0
    max_delay: float | timedelta = 30.0
    jitter: Jitter = "full"
    timeout: float | timedelta | None = None
    attempt_timeout: float | timedelta | None = None
    max_retry_after: float | timedelta = 60.0
    idempotent_methods: Collection[str] = _DEFAULT_IDEMPOTENT
    idempotency_header: str = "Idempotency-Key"
    add_idempotency_key: bool = False
    classify: Classifier = classify_outcome
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    fail_fast_on_budget: bool = False
    on_retry: tuple[RetryHook, ...] = ()
    name: str = "retry"

    def __post_init__(self) -> None:
        self._check_timing()
        self._check_behaviour()

    def _check_timing(self) -> None:
        """Validate and normalise the counts and durations (timedelta -> seconds)."""
        set_ = object.__setattr__
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or not 1 <= self.max_attempts <= 100
        ):
            msg = f"Retry max_attempts must be an int from 1 to 100, got {self.max_attempts!r}"
            raise ConfigurationError(msg)
        set_(self, "initial_delay", _seconds("initial_delay", self.initial_delay, 0, 3600))
        if (
            isinstance(self.multiplier, bool)
            or not isinstance(self.multiplier, int | float)
            or not 1.0 <= self.multiplier <= 10.0
        ):
            msg = f"Retry multiplier must be from 1.0 to 10.0, got {self.multiplier!r}"
            raise ConfigurationError(msg)
        set_(self, "multiplier", float(self.multiplier))
        set_(
            self,
            "max_delay",
            _seconds("max_delay", self.max_delay, float(self.initial_delay), _DAY),  # type: ignore[arg-type]
        )
        if self.jitter not in _JITTERS:
            msg = f"Retry jitter must be one of {', '.join(_JITTERS)}, got {self.jitter!r}"
            raise ConfigurationError(msg)
        for option in ("timeout", "attempt_timeout"):
            value = getattr(self, option)
            if value is not None:
                seconds = _seconds(option, value, 0, _DAY)
                if seconds == 0:
                    msg = f"Retry {option} must be more than 0 seconds (or None), got {value!r}"
                    raise ConfigurationError(msg)
                set_(self, option, seconds)
        set_(self, "max_retry_after", _seconds("max_retry_after", self.max_retry_after, 0, _DAY))

    def _check_behaviour(self) -> None:
        """Validate what is retried, the hooks and the budget."""
        set_ = object.__setattr__
        methods = self.idempotent_methods
        if (
            isinstance(methods, str)
            or not isinstance(methods, Collection)
            or not all(isinstance(m, str) and m for m in methods)
        ):
            msg = "Retry idempotent_methods must be a collection of method names, not a string"
            raise ConfigurationError(msg)
        set_(self, "idempotent_methods", frozenset(m.upper() for m in methods))
        for option in ("add_idempotency_key", "fail_fast_on_budget"):
            if not isinstance(getattr(self, option), bool):
                msg = f"Retry {option} must be True or False, got {getattr(self, option)!r}"
                raise ConfigurationError(msg)
        if not isinstance(self.name, str) or not self.name:
            msg = f"Retry name must be a non-empty string, got {self.name!r}"
            raise ConfigurationError(msg)
        if not self.idempotency_header or not isinstance(self.idempotency_header, str):
            msg = "Retry idempotency_header must be a non-empty header name"
            raise ConfigurationError(msg)
        if not callable(self.classify):
            msg = "Retry classify must be a function (response, error) -> Outcome"
            raise ConfigurationError(msg)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            msg = f"Retry budget must be a RetryBudget or None, got {type(self.budget).__name__}"
            raise ConfigurationError(msg)
        hooks = (
            (self.on_retry,)
            if callable(self.on_retry)
            else tuple(self.on_retry)
            if isinstance(self.on_retry, Iterable)
            else (self.on_retry,)
        )
        if not all(callable(h) for h in hooks):
            msg = "Retry on_retry must be a function or a tuple of functions"
            raise ConfigurationError(msg)
        set_(self, "on_retry", hooks)

    # -- the policy ---------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Send the call, retrying failed attempts as the module docstring describes.

        This is the synchronous driver: `_start`, `_settled` and `_Run` make every
        decision (retry or not, how long to wait, whether the budget allows it) without
        I/O; the driver sends, drains and sleeps as it is told, like tenacity's
        ``Retrying`` around ``iter()``. Most calls succeed at once: for them `_Run` is
        never built.
        """
        first, began, deadline, template = _start(self, call)
        try:
            response = next(first)
        except requests.RequestException as exc:
            run = _Run(self, call, began, deadline, template)
            action = run.observed(None, exc, began)
        else:
            outcome = _settled(self, response, call.clock)
            if outcome is None:
                return response
            run = _Run(self, call, began, deadline, template)
            action = run.observed(response, None, began, outcome)
        clock = call.clock
        while not isinstance(action, _Done):
            if isinstance(action, _Wait):
                if action.discard is not None:
                    _discard(action.discard)  # its connection goes back to the pool first
                clock.sleep(action.seconds)
                action = run.slept()
            else:
                action = _attempt(run, next, action.call, clock.monotonic())
        return action.result()

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """The asynchronous driver of the same `_start`, `_settled` and `_Run`.

        It awaits the sends and the waits. Cancellation (like Ctrl-C in `send`) ends
        the call and gives a budget token back.
        """
        first, began, deadline, template = _start(self, call)
        try:
            response = await next(first)
        except requests.RequestException as exc:
            run = _Run(self, call, began, deadline, template)
            action = run.observed(None, exc, began)
        else:
            outcome = _settled(self, response, call.clock)
            if outcome is None:
                return response
            run = _Run(self, call, began, deadline, template)
            action = run.observed(response, None, began, outcome)
        clock = call.clock
        while not isinstance(action, _Done):
            if isinstance(action, _Wait):
                if action.discard is not None:
                    await _discard_async(action.discard)
                await sleep_async(clock, action.seconds)
                action = run.slept()
            else:
                action = await _aattempt(run, next, action.call, clock.monotonic())
        return action.result()

    # -- helpers --------------------------------------------------------------------

    def _attempt_timeout(
        self, given: TimeoutValue, deadline: float | None, now: float
    ) -> TimeoutValue:
        own: float | None = self.attempt_timeout  # type: ignore[assignment]
        left = None if deadline is None else max(0.001, deadline - now)
        cap = own if left is None else (left if own is None else min(own, left))
        if cap is None:
            return given
        return cut_timeout(given, cap)

    def _patience(self) -> float:
        """The whole un-jittered backoff schedule: the longest a call waits for tokens."""
        initial = float(self.initial_delay)  # type: ignore[arg-type]
        cap = float(self.max_delay)  # type: ignore[arg-type]
        total = 0.0
        for n in range(self.max_attempts - 1):
            try:
                total += min(cap, initial * self.multiplier**n)
            except OverflowError:
                total += cap
        return total

    def _backoff(self, retry_number: int, previous: float, draw: float) -> float:
        initial = float(self.initial_delay)  # type: ignore[arg-type]
        cap = float(self.max_delay)  # type: ignore[arg-type]
        if self.jitter == "decorrelated":
            high = min(cap, max(initial, previous * 3.0))
            return min(cap, initial + (high - initial) * draw)
        exponent = min(retry_number - 1, 1000)
        try:
            base = min(cap, initial * self.multiplier**exponent)
        except OverflowError:
            base = cap
        if self.jitter == "full":
            return base * draw
        if self.jitter == "equal":
            return base / 2.0 + (base / 2.0) * draw
        return base

    @staticmethod
    def _server_wait(
        response: Response | None, error: BaseException | None, now: float
    ) -> float | None:
        if isinstance(error, CircuitOpenError):
            return max(0.0, error.retry_after)
        if response is None:
            return None
        wait = parse_retry_after(response.headers, now)
        if wait is None and response.status_code == 429:
            limits = parse_rate_limit_headers(response.headers)
            if limits is not None and limits.remaining == 0:
                wait = limits.reset_after(now)
        return wait

    def _report(
        self,
        call: Call,
        record: Attempt,
        *,
        wait: float,
        reason: str,
        response: Response | None,
        server_wait: float | None,
        start: float,
    ) -> None:
        request = call.request
        details = RetryDetails(
            policy=self.name,
            method=request.method or "",
            url=_safe_url(request.url),
            attempt=record.number,
            wait=wait,
            reason=reason,
            status_code=record.status_code,
            error=record.error,
            request_id=_redacted(call, request_id_of(response)) if response is not None else None,
            retry_after=server_wait,
            elapsed=call.clock.monotonic() - start,
        )
        retry_scheduled(details)
        for hook in self.on_retry:
            hook(details)

    def __repr__(self) -> str:
        parts = [
            f"max_attempts={self.max_attempts}",
            f"initial_delay={self.initial_delay}",
            f"multiplier={self.multiplier}",
            f"max_delay={self.max_delay}",
            f"jitter={self.jitter!r}",
            f"timeout={self.timeout}",
            f"max_retry_after={self.max_retry_after}",
        ]
        if self.attempt_timeout is not None:
            parts.append(f"attempt_timeout={self.attempt_timeout}")
        if self.add_idempotency_key:
            parts.append("add_idempotency_key=True")
        parts.append(f"budget={self.budget!r}")
        return f"Retry({', '.join(parts)})"


# -- the decisions, apart from I/O --------------------------------------------------------


def _attempt(run: _Run, next: Next, call: Call, began: float) -> _Send | _Wait | _Done:
    """Send one attempt (begun at `began`) and let `run` decide what follows."""
    try:
        response = next(call)
    except requests.RequestException as exc:  # APIError is one
        return run.observed(None, exc, began)
    except BaseException:
        run.interrupted()  # Ctrl-C: the call ends, its budget token goes back
        raise
    return run.observed(response, None, began)


async def _aattempt(run: _Run, next: AsyncNext, call: Call, began: float) -> _Send | _Wait | _Done:
    """`_attempt` for async pipelines (a cancellation ends the call like Ctrl-C)."""
    try:
        response = await next(call)
    except requests.RequestException as exc:
        return run.observed(None, exc, began)
    except BaseException:
        run.interrupted()
        raise
    return run.observed(response, None, began)


class _Send:
    """Send `call` (the next attempt) and report its result to `_Run.observed`."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call


class _Wait:
    """Drain and close `discard` (if any), sleep `seconds`, then call `_Run.slept`."""

    __slots__ = ("discard", "seconds")

    def __init__(self, seconds: float, discard: Response | None = None) -> None:
        self.seconds = seconds
        self.discard = discard


class _Done:
    """The call is over: return `response`, or raise `error`.

    (The three actions are plain slotted classes: one is made per attempt, and a
    frozen dataclass costs three times as much to build.)
    """

    __slots__ = ("error", "response")

    def __init__(
        self, response: Response | None = None, error: BaseException | None = None
    ) -> None:
        self.response = response
        self.error = error

    def result(self) -> Response:
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


#: The headers kept for the retries: `snapshot_headers` of the first attempt's.
_Template: TypeAlias = "tuple[tuple[str, str], ...] | CaseInsensitiveDict[str]"


def _start(policy: Retry, call: Call) -> tuple[Call, float, float | None, _Template]:
    """What a call's first attempt needs, decided before it is sent (no I/O).

    Returns the first attempt's `Call`, when the call began, its deadline (the policy's
    `timeout` or the caller's, whichever ends first) and the headers kept for the
    retries (the policies below may change the first attempt's in place). A call
    that should carry an idempotency key gets it here, once. Only when `_settled`
    says the first answer does not end the call is a `_Run` built on these, so a call
    that succeeds at once costs no more than this.
    """
    began = call.clock.monotonic()
    deadline = call.deadline
    if policy.timeout is not None:
        own = began + policy.timeout  # type: ignore[operator]
        if deadline is None or own < deadline:
            deadline = own
    request = call.request
    if (
        policy.add_idempotency_key
        and (request.method or "GET").upper() not in policy.idempotent_methods
        and policy.idempotency_header not in request.headers
    ):
        request.headers[policy.idempotency_header] = uuid.uuid4().hex
    template = request_snapshot(request) if policy.max_attempts > 1 else request.headers
    return _first_attempt(policy, call, deadline, began), began, deadline, template


def _settled(policy: Retry, response: Response, clock: Clock) -> Outcome | None:
    """Judge the first answer: None if it ends the call, else its outcome.

    A success ends it (the budget records it); any other outcome goes to
    `_Run.observed`.
    """
    classify = policy.classify
    if classify is not classify_outcome or response.status_code >= 400:
        outcome = classify(response, None)
        if outcome is not Outcome.SUCCESS:
            return outcome
    # else `classify_outcome`'s first answer, written out: a status under 400 succeeds
    budget = policy.budget
    if budget is not None:
        budget._record(clock.monotonic(), failed=False)
    return None


def _first_attempt(policy: Retry, call: Call, deadline: float | None, now: float) -> Call:
    """The first attempt's call: the deadline and the attempt timeout applied."""
    if policy.attempt_timeout is None and (
        deadline is None or within(call.timeout, deadline - now)
    ):
        # The caller's timeout is within the deadline: it is kept as it is.
        return call if deadline == call.deadline else with_deadline(call, deadline)
    return call.evolve(
        deadline=deadline, timeout=policy._attempt_timeout(call.timeout, deadline, now)
    )


class _Run:
    """One logical call's retry decisions: a state machine that does no I/O.

    A driver builds it from the `_start` of a call whose first attempt did not settle
    it, reports that attempt to `observed()`, sends what a `_Send` holds, reports each
    result to `observed()`, performs each `_Wait` and reports it to `slept()`, until a
    `_Done`. Every rule of the module
    docstring lives here, once: classification, the budget, Retry-After, the deadline,
    patience, and the history.
    """

    __slots__ = (
        "attempt",
        "blocked",
        "budget",
        "budgeted",
        "call",
        "cost",
        "deadline",
        "error",
        "history",
        "idempotent",
        "policy",
        "previous_wait",
        "record",
        "response",
        "rewindable",
        "server_wait",
        "start",
        "step",
        "template",
        "wait",
        "waited",
        "why_not",
    )

    def __init__(
        self,
        policy: Retry,
        call: Call,
        began: float,
        deadline: float | None,
        template: _Template,
    ) -> None:
        # Built only when the first attempt did not settle the call (see `_start`).
        self.policy = policy
        self.call = call
        self.start = began
        self.budget = policy.budget
        self.deadline = deadline
        self.template = restore_headers(template)
        self.attempt = 1
        self.cost: float | None = None  # what the current attempt's retry cost the budget
        self._retrying()

    def _retrying(self) -> None:
        """The state of a call that may retry: set when its first attempt fails."""
        policy, request = self.policy, self.call.request
        method = (request.method or "GET").upper()
        self.idempotent = method in policy.idempotent_methods or (
            policy.idempotency_header in self.template
        )
        self.rewindable, self.why_not = _rewindable(request)
        self.history: list[Attempt] = []
        self.step = 0  # waits so far: the backoff grows with each
        self.waited = 0.0
        self.wait = 0.0
        self.previous_wait = float(policy.initial_delay)  # type: ignore[arg-type]
        self.blocked = False  # the budget refused a token for the coming retry
        self.budgeted: RetryBudget | None = None
        self.server_wait: float | None = None

    def interrupted(self) -> None:
        """The attempt raised something that ends the call (Ctrl-C): give the token back."""
        if self.cost is not None and self.budget is not None:
            self.budget._refund(self.cost)

    def observed(
        self,
        response: Response | None,
        error: BaseException | None,
        began: float,
        outcome: Outcome | None = None,
    ) -> _Send | _Wait | _Done:
        """Take an attempt's result (classified, or to classify); return it, or retry."""
        policy, budget = self.policy, self.budget
        clock = self.call.clock
        if outcome is None:
            outcome = policy.classify(response, error)
        if outcome is Outcome.SUCCESS:
            if budget is not None:
                budget._record(clock.monotonic(), failed=False)
                if self.cost is not None:
                    budget._refund(self.cost)  # a retry that worked is free
            if self.attempt == 1:
                return _Done(response)  # nothing to record
        self.response, self.error = response, error
        self.blocked = False
        self.record = Attempt(
            number=self.attempt,
            status_code=response.status_code if response is not None else None,
            error=type(error).__name__ if error is not None else None,
            duration=clock.monotonic() - began,
        )
        if budget is not None and outcome is not Outcome.SUCCESS:
            if error is not None and refused_locally(error):
                # An open breaker, a full concurrency limit, a rate limit past the
                # deadline: the retry never reached the wire, its token goes back.
                if self.cost is not None:
                    budget._refund(self.cost)
            elif response is not None or isinstance(error, APIConnectionError):
                # The server's health, for the budget: a 4xx says it is up.
                budget._record(clock.monotonic(), failed=outcome is not Outcome.FATAL)
        stop = self._stop_reason(outcome)
        if stop is not None:
            return self._finish(stop)
        # After an open breaker's refusal the breaker rations the next attempt (it is
        # refused locally again, or admitted as its probe): it needs no token.
        self.budgeted = budget if not isinstance(error, CircuitOpenError) else None
        return self._next_wait()

    def slept(self) -> _Send | _Wait | _Done:
        """The wait is over: ask the budget (if any), then send the retry or wait more."""
        self.waited += self.wait
        budgeted = self.budgeted
        if budgeted is None:
            self.cost = None
            return self._next_send()
        if self.policy.fail_fast_on_budget:
            return self._next_send()  # its token was taken before the wait
        self.cost = budgeted._spend(self.call.clock.monotonic())
        if self.cost is not None:
            return self._next_send()
        self.blocked = True  # no token: keep our patience and wait for the next step
        self.server_wait = None
        return self._next_wait()

    # -- the rules ------------------------------------------------------------------

    def _stop_reason(self, outcome: Outcome) -> str | None:
        """Why this result is final, or None if it may be retried (sets `server_wait`)."""
        self.server_wait = None
        if outcome is Outcome.SUCCESS:
            return "success"
        if outcome is Outcome.FATAL:
            return "not retryable"
        if outcome is Outcome.UNKNOWN and not self.idempotent:
            return "not retried: outcome unknown and the request is not idempotent"
        if not self.rewindable:
            return self.why_not
        policy = self.policy
        wait = policy._server_wait(self.response, self.error, self.call.clock.time())
        self.server_wait = wait
        if wait is not None and wait > policy.max_retry_after:  # type: ignore[operator]
            return f"not retried: asked to wait {wait:g}s, over max_retry_after"
        return None

    def _wait_seconds(self) -> float:
        """How long the coming wait is: the server's, the breaker's, or the backoff."""
        policy, error = self.policy, self.error
        if isinstance(error, CircuitOpenError):
            # An open breaker's "retry after" is a floor, not a schedule: a call that
            # keeps meeting a busy half-open breaker must not burn its attempts in a few
            # milliseconds, so it waits its backoff step too.
            return max(
                self.server_wait or 0.0, policy._backoff(self.step, self.previous_wait, 1.0)
            )
        if self.server_wait is not None:
            return self.server_wait
        # A step that only waits for a budget token sends nothing, so it needs no
        # jitter: it waits the full backoff, keeping the caller's patience.
        draw = 1.0 if self.blocked else self.call.clock.random()
        wait = policy._backoff(self.step, self.previous_wait, draw)
        self.previous_wait = wait
        return wait

    def _next_wait(self) -> _Wait | _Done:
        """Decide the next wait, or stop: attempts, deadline, patience, a fail-fast budget."""
        policy = self.policy
        if self.attempt >= policy.max_attempts:
            return self._finish("attempts exhausted")
        self.step += 1
        wait = self._wait_seconds()
        now = self.call.clock.monotonic()
        if self.deadline is not None and now + wait > self.deadline:
            return self._finish("deadline would pass during the wait")
        if self.blocked and self.waited + wait > policy._patience():
            # Waited for a token as long as the whole schedule.
            return self._finish("retry budget empty")
        if self.budgeted is not None and policy.fail_fast_on_budget:
            self.cost = self.budgeted._spend(now)
            if self.cost is None:
                self.blocked = True
                return self._finish("retry budget empty")
        reason = (
            "retry budget empty"
            if self.blocked
            else _reason(self.response, self.error, self.server_wait)
        )
        self.record = _with_wait(self.record, self.record.wait + wait, reason)
        policy._report(
            self.call,
            self.record,
            wait=wait,
            reason=reason,
            response=self.response,
            server_wait=self.server_wait,
            start=self.start,
        )
        self.wait = wait
        discard = self.response if self.response is not None and not self.blocked else None
        return _Wait(wait, discard)

    def _next_send(self) -> _Send:
        """Record the attempt just made and build the call for the next one."""
        self.history.append(self.record)
        self.attempt += 1
        call = self.call
        request = call.request
        if (
            self.rewindable is True
            and request.body is not None
            and not isinstance(request.body, bytes | str)
        ):
            rewind_body(request)
        fresh = request.copy()
        fresh.headers = copy_headers(self.template)
        clock = call.clock
        return _Send(
            call.evolve(
                request=fresh,
                attempt=self.attempt,
                history=tuple(self.history),
                deadline=self.deadline,
                timeout=self.policy._attempt_timeout(
                    call.timeout, self.deadline, clock.monotonic()
                ),
            )
        )

    def _finish(self, reason: str) -> _Done:
        """The result of the call: the last response or error, with the history on it."""
        if self.blocked:  # the budget, not the server, stopped the call
            return self._budget_exhausted()
        self.history.append(_with_wait(self.record, self.record.wait, reason))
        final = tuple(self.history)
        error = self.error
        if error is not None:
            if isinstance(error, APIError):
                error.history = final
            return _Done(error=error)
        assert self.response is not None
        set_attempts(self.response, final)
        return _Done(self.response)

    def _budget_exhausted(self) -> _Done:
        record, response, error = self.record, self.response, self.error
        self.history.append(_with_wait(record, record.wait, "retry budget empty"))
        final = tuple(self.history)
        request = response.request if response is not None else getattr(error, "request", None)
        target = f" for {request.method} {_safe_url(request.url)}" if request is not None else ""
        exc = RetryBudgetExhaustedError(
            f"retry budget exhausted{target}: {len(final)} attempt(s), the last got "
            f"{record.outcome}; retries are capped while they keep failing, to spare the server",
            request=request,
            response=response,
        )
        exc.history = final
        if isinstance(error, APIError):
            error.history = final
        exc.__cause__ = error
        exc.__suppress_context__ = True
        return _Done(error=exc)


def _redacted(call: Call, text: str | None) -> str | None:
    return None if text is None else call.redactor.redact(text)


def _with_wait(record: Attempt, wait: float, reason: str) -> Attempt:
    return Attempt(
        number=record.number,
        status_code=record.status_code,
        error=record.error,
        duration=record.duration,
        wait=wait,
        reason=reason,
    )


def _reason(
    response: Response | None, error: BaseException | None, server_wait: float | None
) -> str:
    if isinstance(error, CircuitOpenError):
        return "circuit open"
    base = f"status {response.status_code}" if response is not None else type(error).__name__
    return f"{base}, retry-after" if server_wait is not None else base


def _rewindable(request: PreparedRequest) -> tuple[bool, str]:
    body = request.body
    if body is None or isinstance(body, bytes | str):
        return True, ""
    position = getattr(request, "_body_position", None)
    if hasattr(body, "seek") and isinstance(position, int):
        return True, ""
    return False, f"request body ({type(body).__name__}) cannot be rewound, so it is sent once"


def _discard(response: Response) -> None:
    """Drain (a little) and close a response we will not return: its connection is reused."""
    read_bounded(response, _DRAIN_LIMIT)
    response.close()


async def _discard_async(response: Response) -> None:
    """`_discard` for a response of an async transport."""
    await read_bounded_async(response, _DRAIN_LIMIT)
    response.close()

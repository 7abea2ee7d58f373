"""The `Hedging` policy: when an answer is late, ask again, and take the first good one.

A hedge is another attempt of the same request, sent while the first may still be on
its way. It trades a few extra requests for the tail of the latency: when 2% of the
answers take a second, a hedge sent after the usual answer time makes those calls
take about twice the usual time instead. The modes are Polly's:

===============================  ==============================================
``delay``                        a hedge is sent ...
===============================  ==============================================
seconds (> 0)                    when no acceptable answer came within it, or at
                                 once when an attempt fails ("latency mode")
`LatencyPercentile`              the same, the delay being a percentile of the
                                 latencies observed lately ("dynamic mode")
``0``                            at once: all attempts race ("parallel mode")
``None``                         only when an attempt fails ("fallback mode")
===============================  ==============================================

Rules:

- Only requests that are safe to send twice are hedged: an idempotent method, or an
  ``Idempotency-Key`` header; and only with a body in memory (bytes, str or none),
  since two attempts cannot read one stream. Any other request goes through once.
- At most `max_hedged_attempts` hedges per call, none after the call's deadline, and,
  while the `RetryBudget` judges the server to be failing, only with a token.
- The first *acceptable* answer wins: what `classify_outcome` calls a success or a
  fatal answer (2xx, 3xx, a 404): another attempt would not change it. A 5xx, 408,
  429 or a connection error is not: the call waits for the other attempts, and sends
  the next hedge at once if it may. When every attempt has failed, the call ends with
  the last response that came back (so an outer `Retry` sees its status and
  ``Retry-After``), else the last error (a local refusal, such as an open breaker's,
  last of all).
- The others are stopped: an asyncio task is cancelled (httpx closes its connection);
  a thread cannot be, so a synchronous attempt runs to its end in its worker, which
  then reads a little of its body and closes it, so its connection goes back to the
  pool. Until then it holds a worker and a connection: see `max_workers`.
- Every attempt runs through the policies inside: the breaker counts each hedge, the
  rate limit spends a token on each, `Tracing` gives each its own span, with its own
  attempt number and ``http.request.resend_count`` and ``requests_resilience.hedge``.

Where it goes (Polly's standard hedging pipeline): in place of `Retry`, inside
`StatusErrors` and outside the per-attempt policies::

    StatusErrors -> Hedging -> CircuitBreaker -> RateLimit -> APIKeyAuth -> Tracing

With a `Retry` too, put the retry outside: each retry then sends one hedged group.

The decisions (`_Run`) do no I/O; a synchronous driver runs the attempts on a bounded
thread pool owned by the policy, an asynchronous one as asyncio tasks. The delay is
measured on the pipeline's clock: with `SystemClock` a driver waits on the attempts
with a timeout; with any other clock (`testing.FakeClock`) it looks at the clock every
millisecond while it waits, so a fake clock moved on by another thread (a test
server's handler) sends the hedge at the same point of every run.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import contextvars
import math
import queue
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import requests

from requests_resilience._budget import RetryBudget
from requests_resilience._clock import SystemClock
from requests_resilience._copying import Rebuilt
from requests_resilience._errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    _safe_url,
    refused_locally,
)
from requests_resilience._events import HedgeDetails
from requests_resilience._forksafe import reinit_after_fork
from requests_resilience._headers import copy_headers
from requests_resilience._options import count as _count
from requests_resilience._options import seconds as _seconds
from requests_resilience._pipeline import Attempt, set_attempts
from requests_resilience._retry import (
    Classifier,
    Outcome,
    _discard,
    _discard_async,
    classify_outcome,
)
from requests_resilience._telemetry import hedge_launched, hedging_attempt

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._clock import Clock
    from requests_resilience._pipeline import AsyncNext, Call, Next

__all__ = ["Hedging", "LatencyPercentile"]

HedgeHook: TypeAlias = "Callable[[HedgeDetails], None]"

_DEFAULT_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: How often a driver looks at a clock other than `SystemClock` while it waits (seconds).
_POLL = 0.001
_DAY = 86_400.0
#: Outcomes that end the call: another attempt would not change them.
_ACCEPTABLE = frozenset({Outcome.SUCCESS, Outcome.FATAL})


# -- the adaptive delay -------------------------------------------------------------------


class LatencyPercentile(Rebuilt):
    """A hedging delay that follows the latency: a percentile of the recent attempts.

    Every attempt that gets a response records how long it took; one that lost the
    race and was cancelled, or failed after the call was over, records how long it had
    run (a lower bound: the slow tail stays in the sample). An error that ends an
    attempt while the call waits is not a latency (a refused connection is fast). The
    delay is the `percentile` of the last `window` records, kept between `min_delay`
    and `max_delay`; until `min_samples` records exist it is `initial`. One estimator
    serves every call of its policy: give an endpoint with its own latency its own
    policy.

    Args:
        percentile: which latency to hedge after; 0.5 to 0.999 (default 0.95: about
            5% of the calls are hedged while the latency holds still).
        window: how many recent latencies are kept; 10 to 100000 (default 1000).
        min_samples: latencies needed before the percentile is used; 1 to `window`
            (default 50).
        initial: the delay until then (seconds or timedelta); 0 to 86400 (default 1).
        min_delay: the least delay (default 0.001 s): never zero, so a burst of fast
            answers cannot turn hedging into parallel mode.
        max_delay: the most delay (default 60 s).

    Raises:
        ConfigurationError: an option is out of range (the message names it).

    Example:
        >>> hedging = Hedging(delay=LatencyPercentile(0.95, initial=0.2))
        >>> hedging.delay.current()  # no latency seen yet
        0.2
    """

    __slots__ = (
        "_initial",
        "_latest",
        "_lock",
        "_max",
        "_min",
        "_min_samples",
        "_percentile",
        "_sorted",
        "_window",
    )

    def __init__(
        self,
        percentile: float = 0.95,
        *,
        window: int = 1000,
        min_samples: int = 50,
        initial: float | timedelta = 1.0,
        min_delay: float | timedelta = 0.001,
        max_delay: float | timedelta = 60.0,
    ) -> None:
        owner = "LatencyPercentile"
        if (
            isinstance(percentile, bool)
            or not isinstance(percentile, int | float)
            or not 0.5 <= percentile <= 0.999
        ):
            msg = f"{owner} percentile must be from 0.5 to 0.999, got {percentile!r}"
            raise ConfigurationError(msg)
        self._percentile = float(percentile)
        self._window = _count(owner, "window", window, 10, 100_000)
        self._min_samples = _count(owner, "min_samples", min_samples, 1, self._window)
        self._min = _seconds(owner, "min_delay", min_delay, 0.0, _DAY)
        if self._min == 0:
            msg = f"{owner} min_delay must be more than 0 seconds, got {min_delay!r}"
            raise ConfigurationError(msg)
        self._max = _seconds(owner, "max_delay", max_delay, self._min, _DAY)
        self._initial = _seconds(owner, "initial", initial, 0.0, _DAY)
        self._lock = threading.Lock()
        self._latest: collections.deque[float] = collections.deque()
        self._sorted: list[float] = []

    @property
    def percentile(self) -> float:
        """Which latency the delay follows (0.95 = the 95th percentile)."""
        return self._percentile

    def record(self, seconds: float) -> None:
        """Record one attempt's latency (the policy calls this; tests may too)."""
        if not seconds >= 0.0:  # NaN too
            return
        with self._lock:
            latest, ordered = self._latest, self._sorted
            if len(latest) >= self._window:
                old = latest.popleft()
                del ordered[bisect.bisect_left(ordered, old)]
            latest.append(seconds)
            bisect.insort(ordered, seconds)

    def current(self) -> float:
        """The delay for a call starting now, in seconds."""
        with self._lock:
            ordered = self._sorted
            if len(ordered) < self._min_samples:
                return self._initial
            # The nearest-rank percentile: the smallest latency with at least that
            # share of the sample at or below it.
            rank = max(1, math.ceil(self._percentile * len(ordered)))
            value = ordered[rank - 1]
        return min(self._max, max(self._min, value))

    def __repr__(self) -> str:
        return (
            f"LatencyPercentile({self._percentile:g}, window={self._window}, "
            f"min_samples={self._min_samples}, initial={self._initial:g})"
        )


# -- the worker threads of the synchronous driver ----------------------------------------


class _Workers(Rebuilt):
    """A lazily started, bounded thread pool with a count of the attempts it runs.

    `submit` never queues: with every worker busy it refuses, and the caller runs the
    primary attempt in its own thread (or sends no hedge), instead of waiting behind
    attempts that are already late. Renewed in a forked child; closed by `close()`
    (it starts again when needed) or when the policy is collected.
    """

    __slots__ = ("__weakref__", "_busy", "_executor", "_lock", "max_workers")

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._lock = threading.Lock()
        self._busy = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        reinit_after_fork(self, _Workers._after_fork)

    @property
    def busy(self) -> int:
        """How many attempts the workers are running now."""
        return self._busy

    def submit(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on a free worker in a copy of the caller's context."""
        with self._lock:
            if self._busy >= self.max_workers:
                return False
            executor = self._executor
            if executor is None:
                executor = self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="requests-resilience-hedging"
                )
            self._busy += 1
        context = contextvars.copy_context()  # the caller's span and baggage
        try:
            executor.submit(context.run, self._run, fn, args)
        except RuntimeError:  # closed by another thread just now
            self._release()
            return False
        return True

    def _run(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1

    def close(self) -> None:
        """Let the idle workers go; running attempts finish (the pool restarts on use)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _after_fork(self) -> None:
        # The parent's threads do not exist in the child, nor do its attempts.
        self._lock = threading.Lock()
        self._busy = 0
        self._executor = None


# -- the policy ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hedging:
    """Send another attempt when the answer is late; the first acceptable answer wins.

    Place it in place of `Retry` (or inside it), outside the per-attempt policies::

        StatusErrors -> Hedging -> CircuitBreaker -> RateLimit -> APIKeyAuth -> Tracing

    Args:
        delay: when to send a hedge: seconds (or a timedelta) without an acceptable
            answer, 0 to 86400 (0: all attempts at once); a `LatencyPercentile` to
            follow the observed latency; or None to hedge only after a failure. A
            failed attempt starts the next hedge at once in every mode. Default 2 s,
            as Polly's.
        max_hedged_attempts: hedges per call at most, the first attempt not counted;
            1 to 10 (default 1).
        idempotent_methods: the methods that may be sent twice (as `Retry`'s).
        idempotency_header: the header that makes any request safe to send twice.
        classify: the outcome classification (default `classify_outcome`): an outcome
            it calls ``SUCCESS`` or ``FATAL`` is acceptable and wins; any other lets
            the other attempts go on.
        budget: a `RetryBudget` that rations hedges while the server is failing (each
            hedge then takes a token, as gRPC's hedging shares retry throttling), or
            None. Every attempt's outcome is recorded in it.
        max_workers: the threads of the synchronous driver, shared by every call of
            this policy; 1 to 1024 (default 32). A call takes one per attempt in
            flight; when none is free, the first attempt runs in the caller's thread
            unhedged and a hedge is not sent. Keep it within the adapter's
            ``pool_maxsize`` (32 by default): an attempt that lost the race keeps its
            worker and its connection until its answer is in. Async pipelines use no
            threads.
        on_hedge: functions called with a `HedgeDetails` before each hedge is sent.
        name: the policy's name in logs, spans and metrics.

    Raises:
        ConfigurationError: an option is out of range (the message names it).

    Example:
        >>> from requests_resilience import CircuitBreaker, Pipeline, StatusErrors
        >>> hedging = Hedging(delay=LatencyPercentile(0.95), max_hedged_attempts=2)
        >>> pipeline = Pipeline(StatusErrors(), hedging, CircuitBreaker())
    """

    delay: float | timedelta | LatencyPercentile | None = 2.0
    max_hedged_attempts: int = 1
    idempotent_methods: Collection[str] = _DEFAULT_IDEMPOTENT
    idempotency_header: str = "Idempotency-Key"
    classify: Classifier = classify_outcome
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    max_workers: int = 32
    on_hedge: tuple[HedgeHook, ...] = ()
    name: str = "hedging"
    _workers: _Workers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        delay = self.delay
        if delay is not None and not isinstance(delay, LatencyPercentile):
            set_(self, "delay", _seconds("Hedging", "delay", delay, 0.0, _DAY))
        _count("Hedging", "max_hedged_attempts", self.max_hedged_attempts, 1, 10)
        _count("Hedging", "max_workers", self.max_workers, 1, 1024)
        methods = self.idempotent_methods
        if (
            isinstance(methods, str)
            or not isinstance(methods, Collection)
            or not all(isinstance(m, str) and m for m in methods)
        ):
            msg = "Hedging idempotent_methods must be a collection of method names, not a string"
            raise ConfigurationError(msg)
        set_(self, "idempotent_methods", frozenset(m.upper() for m in methods))
        if not isinstance(self.idempotency_header, str) or not self.idempotency_header:
            msg = "Hedging idempotency_header must be a non-empty header name"
            raise ConfigurationError(msg)
        if not callable(self.classify):
            msg = "Hedging classify must be a function (response, error) -> Outcome"
            raise ConfigurationError(msg)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            msg = f"Hedging budget must be a RetryBudget or None, got {type(self.budget).__name__}"
            raise ConfigurationError(msg)
        hooks = (
            (self.on_hedge,)
            if callable(self.on_hedge)
            else tuple(self.on_hedge)
            if isinstance(self.on_hedge, Iterable)
            else (self.on_hedge,)
        )
        if not all(callable(h) for h in hooks):
            msg = "Hedging on_hedge must be a function or a tuple of functions"
            raise ConfigurationError(msg)
        set_(self, "on_hedge", hooks)
        if not isinstance(self.name, str) or not self.name:
            msg = f"Hedging name must be a non-empty string, got {self.name!r}"
            raise ConfigurationError(msg)
        set_(self, "_workers", _Workers(self.max_workers))

    # -- the drivers ----------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Send the call, hedging it as the module docstring describes (threads).

        `_Run` decides; this driver runs each attempt on a worker thread, waits for the
        first result or the delay, and returns what `_Run` chooses. Attempts still
        running when the call ends finish in their workers, which then drain and close
        their responses.
        """
        if not self.hedgeable(call):
            return next(call)
        clock = call.clock
        run = _Run(self, call, self._current_delay(), clock.monotonic())
        group = _Group(self, clock)
        action: _Launch | _Await | _Done = run.begin()
        try:
            while True:
                if isinstance(action, _Launch):
                    now = clock.monotonic()  # before the attempt can make time pass
                    if self._workers.submit(group.attempt, next, action.call, action.index):
                        action = run.launched(action.index, now)
                    elif action.index == 0:
                        return next(call)  # every worker is busy: sent once, unhedged
                    else:
                        action = run.not_launched(action.index)
                elif isinstance(action, _Await):
                    item = _receive(group.inbox, action.until, clock)
                    if item is None:
                        action = run.timed_out(clock.monotonic())
                    else:
                        action = run.observed(*_checked(item))
                else:
                    for response in action.discard:
                        _discard(response)
                    return action.result()
        finally:
            group.close()

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """The asynchronous driver of the same `_Run`: one task per attempt.

        The losers are cancelled, and awaited, before the call returns: a cancelled
        httpx request closes its connection; one that had answered is drained and
        closed. Cancelling the call cancels its attempts the same way.
        """
        if not self.hedgeable(call):
            return await next(call)
        clock = call.clock
        run = _Run(self, call, self._current_delay(), clock.monotonic())
        tasks: dict[asyncio.Future[_Result], tuple[int, float]] = {}
        action: _Launch | _Await | _Done = run.begin()
        try:
            while True:
                if isinstance(action, _Launch):
                    now = clock.monotonic()
                    task = asyncio.ensure_future(
                        self._attempt_async(next, action.call, action.index, clock)
                    )
                    tasks[task] = (action.index, now)
                    action = run.launched(action.index, now)
                elif isinstance(action, _Await):
                    done = await _first_done(tasks, action.until, clock)
                    if done is None:
                        action = run.timed_out(clock.monotonic())
                    else:
                        del tasks[done]
                        action = run.observed(*_checked(done.result()))
                else:
                    for response in action.discard:
                        await _discard_async(response)
                    return action.result()
        finally:
            await self._stop_async(tasks, clock)

    async def _attempt_async(
        self, next: AsyncNext, call: Call, index: int, clock: Clock
    ) -> _Result:
        if index:
            hedging_attempt.set(True)  # in this task's own copy of the context
        began = clock.monotonic()
        try:
            response = await next(call)
        except Exception as exc:  # reported to the run; CancelledError is not one
            ended = clock.monotonic()
            return (index, None, exc, began, ended)
        ended = clock.monotonic()
        self._observed_latency(ended - began)
        return (index, response, None, began, ended)

    async def _stop_async(
        self, tasks: dict[asyncio.Future[_Result], tuple[int, float]], clock: Clock
    ) -> None:
        """Cancel the attempts still running, wait for them, release what they got."""
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        now = clock.monotonic()
        for task, (_, began) in tasks.items():
            if task.cancelled():
                self._observed_latency(now - began)  # at least this slow
                continue
            if task.exception() is None:
                _, response, _, started, ended = task.result()
                if response is not None:
                    await _discard_async(response)
                else:
                    self._observed_latency(ended - started)  # it lost: at least this slow

    # -- helpers --------------------------------------------------------------------

    def hedgeable(self, call: Call) -> bool:
        """Whether `call` may be sent more than once at a time.

        Its method is idempotent or it has the idempotency header, and its body is
        in memory (a stream cannot be read by two attempts).
        """
        request = call.request
        if (request.method or "GET").upper() not in self.idempotent_methods and (
            self.idempotency_header not in request.headers
        ):
            return False
        return request.body is None or isinstance(request.body, bytes | str)

    def close(self) -> None:
        """Stop the idle worker threads of the synchronous driver.

        Attempts still running finish; a later call starts the workers again. A
        `requests.Session` does not close its policies (a pipeline may serve many
        sessions): call this when the pipeline is done with, or let the policy be
        collected, which stops them too.
        """
        self._workers.close()

    def _current_delay(self) -> float | None:
        delay = self.delay
        if isinstance(delay, LatencyPercentile):
            return delay.current()
        return delay  # type: ignore[return-value] # seconds since __post_init__

    def _observed_latency(self, seconds: float) -> None:
        delay = self.delay
        if isinstance(delay, LatencyPercentile):
            delay.record(seconds)

    def _report(self, details: HedgeDetails) -> None:
        hedge_launched(details)
        for hook in self.on_hedge:
            hook(details)

    def __repr__(self) -> str:
        delay = self.delay
        shown = repr(delay) if isinstance(delay, LatencyPercentile) else f"{delay}"
        parts = [
            f"delay={shown}",
            f"max_hedged_attempts={self.max_hedged_attempts}",
            f"max_workers={self.max_workers}",
            f"budget={self.budget!r}",
        ]
        return f"Hedging({', '.join(parts)})"


# -- what the drivers share ---------------------------------------------------------------

#: One finished attempt: (index, response, error, began, ended) on the pipeline clock.
_Result: TypeAlias = "tuple[int, Response | None, BaseException | None, float, float]"


def _checked(item: _Result) -> _Result:
    """`item`, unless its attempt raised something that is not a request failure."""
    error = item[2]
    if error is not None and not isinstance(error, requests.RequestException):
        raise error  # a bug below us, or an interruption: it ends the call
    return item


class _Group:
    """The attempts of one synchronous call: where their results go, and after the end.

    A worker puts its result in `inbox` while the call waits; once the call is over
    (`close`), a worker that finishes releases its own response instead.
    """

    __slots__ = ("clock", "closed", "inbox", "lock", "policy")

    def __init__(self, policy: Hedging, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.inbox: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.closed = False

    def attempt(self, next: Next, call: Call, index: int) -> None:
        """Run one attempt (in a worker, in a copy of the caller's context)."""
        if index:
            hedging_attempt.set(True)
        clock = self.clock
        began = clock.monotonic()
        response: Response | None = None
        error: BaseException | None = None
        try:
            response = next(call)
        except BaseException as exc:  # the caller's thread decides (see _checked)
            error = exc
        ended = clock.monotonic()
        with self.lock:
            late = self.closed
            if not late:
                self.inbox.put((index, response, error, began, ended))
        if response is not None or late:
            # A loser's time, however it ended, is a lower bound of its latency: the
            # slow tail stays in an adaptive delay's sample.
            self.policy._observed_latency(ended - began)
        if late and response is not None:
            _discard(response)  # the call is over: release the connection

    def close(self) -> None:
        """The call is over: release what arrived unread; later arrivals release theirs."""
        with self.lock:
            self.closed = True
        while True:
            try:
                response = self.inbox.get_nowait()[1]
            except queue.Empty:
                return
            if response is not None:
                _discard(response)


def _receive(inbox: queue.SimpleQueue[_Result], until: float | None, clock: Clock) -> Any:
    """The next result, or None once `clock` reads `until`."""
    if until is None:
        return inbox.get()
    if type(clock) is SystemClock:
        try:
            return inbox.get(timeout=max(0.0, until - clock.monotonic()))
        except queue.Empty:
            return None
    while True:
        try:
            return inbox.get(timeout=_POLL)
        except queue.Empty:
            if clock.monotonic() >= until:
                return None


async def _first_done(
    tasks: Collection[asyncio.Future[_Result]], until: float | None, clock: Clock
) -> asyncio.Future[_Result] | None:
    """A finished attempt, or None once `clock` reads `until`."""
    while True:
        finished = [t for t in tasks if t.done()]
        if finished:
            return finished[0]
        if until is None:
            step = None
        elif type(clock) is SystemClock:
            step = max(0.0, until - clock.monotonic())
        else:
            step = _POLL
        if tasks:
            await asyncio.wait(tasks, timeout=step, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(_POLL if step is None else step)
        if until is not None and clock.monotonic() >= until and not any(t.done() for t in tasks):
            return None


# -- the decisions, apart from I/O --------------------------------------------------------


class _Launch:
    """Start attempt `index` (0: the first) with `call`; report it to `_Run.launched`."""

    __slots__ = ("call", "index")

    def __init__(self, call: Call, index: int) -> None:
        self.call = call
        self.index = index


class _Await:
    """Wait for an attempt to finish, until `until` on the clock (None: no limit).

    A finished attempt goes to `_Run.observed`, the end of the wait to `_Run.timed_out`.
    The end is a point on the clock, not a length: time that passes before the driver
    starts waiting counts too.
    """

    __slots__ = ("until",)

    def __init__(self, until: float | None) -> None:
        self.until = until


class _Done:
    """The call is over: return `response` or raise `error`.

    The driver first releases the responses in `discard` and stops the attempts still
    in flight.
    """

    __slots__ = ("discard", "error", "response")

    def __init__(
        self,
        response: Response | None,
        error: BaseException | None,
        discard: list[Response],
    ) -> None:
        self.response = response
        self.error = error
        self.discard = discard

    def result(self) -> Response:
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


class _Run:
    """One logical call's hedging decisions: a state machine that does no I/O.

    A driver starts with `begin()`, starts what each `_Launch` holds and reports it to
    `launched()`, waits as each `_Await` says and reports a finished attempt to
    `observed()` or the end of the wait to `timed_out()`, until a `_Done`. The rules of
    the module docstring live here, once: when to hedge, what wins, the budget, the
    deadline, and the history.
    """

    __slots__ = (
        "best",
        "call",
        "costs",
        "delay",
        "discard",
        "history",
        "last_launch",
        "launched_count",
        "pending",
        "policy",
        "report",
        "start",
        "stopped",
        "template",
    )

    def __init__(self, policy: Hedging, call: Call, delay: float | None, now: float) -> None:
        self.policy = policy
        self.call = call
        self.delay = delay
        self.start = now
        # The headers before the policies inside change them: each hedge starts from them.
        self.template = copy_headers(call.request.headers)
        self.launched_count = 0
        self.last_launch = now
        self.pending: dict[int, float] = {}  # index -> when it started
        self.costs: dict[int, float] = {}  # index -> the budget tokens its hedge took
        self.history: list[Attempt] = []
        # The best unacceptable outcome so far: (rank, response, error, its record).
        self.best: tuple[int, Response | None, BaseException | None, int] | None = None
        self.discard: list[Response] = []
        self.stopped = False  # no more hedges: the budget or the workers said no
        self.report: HedgeDetails | None = None  # the hedge being launched

    def begin(self) -> _Launch:
        """The first attempt: the call, with a request of its own.

        The policies inside change an attempt's request (auth, trace headers) in the
        worker that sends it, while this thread may be copying the call's request for a
        hedge: no attempt is sent with the call's own.
        """
        call = self.call
        fresh = call.request.copy()
        fresh.headers = copy_headers(self.template)
        return _Launch(call.evolve(request=fresh), 0)

    def launched(self, index: int, now: float) -> _Launch | _Await | _Done:
        """Attempt `index` started at `now`."""
        report = self.report
        if report is not None:
            self.report = None
            self.policy._report(report)
        self.launched_count += 1
        self.pending[index] = now
        self.last_launch = now
        return self._next(now)

    def not_launched(self, index: int) -> _Launch | _Await | _Done:
        """The hedge `index` could not start (no free worker): send no more."""
        self.stopped = True
        self.report = None
        self._refund(index)
        return self._next(self.last_launch)

    def timed_out(self, now: float) -> _Launch | _Await | _Done:
        """The wait of the last `_Await` is over and nothing finished."""
        return self._next(now)

    def observed(
        self,
        index: int,
        response: Response | None,
        error: BaseException | None,
        began: float,
        ended: float,
    ) -> _Launch | _Await | _Done:
        """Attempt `index` finished with `response` or `error`: a winner, or go on."""
        self.pending.pop(index, None)
        outcome = self.policy.classify(response, error)
        self._budget_record(index, outcome, response, error, ended)
        self.history.append(_record(self._number(index), response, error, ended - began))
        if outcome in _ACCEPTABLE:
            return self._finish(response, error, len(self.history) - 1, "won")
        self._keep(response, error, len(self.history) - 1)
        if self._may_hedge(ended):
            return self._hedge(ended, "failure", response, error)
        return self._next(ended)

    # -- the rules ------------------------------------------------------------------

    def _number(self, index: int) -> int:
        return self.call.attempt + index

    def _may_hedge(self, now: float) -> bool:
        if self.stopped or self.launched_count > self.policy.max_hedged_attempts:
            return False
        deadline = self.call.deadline
        return deadline is None or now < deadline

    def _next(self, now: float) -> _Launch | _Await | _Done:
        """Hedge if the delay is over, else wait for it, or for the attempts in flight."""
        if self._may_hedge(now) and self.delay is not None:
            until = self.last_launch + self.delay
            if until <= now:
                return self._hedge(now, "parallel" if self.delay == 0 else "delay")
            return _Await(until)
        if self.pending:
            return _Await(None)
        return self._give_up()

    def _hedge(
        self,
        now: float,
        trigger: str,
        response: Response | None = None,
        error: BaseException | None = None,
    ) -> _Launch | _Await | _Done:
        """Send the next hedge, if the budget allows it."""
        index = self.launched_count
        budget = self.policy.budget
        if budget is not None:
            cost = budget._spend(now)
            if cost is None:
                self.stopped = True  # the server is failing and there is no token
                return self._next(now)
            self.costs[index] = cost
        call = self.call
        fresh = call.request.copy()
        fresh.headers = copy_headers(self.template)
        request = call.request
        # Reported once it has started (`launched`): a hedge with no free worker is not.
        self.report = HedgeDetails(
            policy=self.policy.name,
            method=request.method or "",
            url=_safe_url(request.url),
            attempt=self._number(index),
            hedge=index,
            trigger=trigger,
            delay=self.delay,
            elapsed=now - self.start,
            status_code=response.status_code if response is not None else None,
            error=type(error).__name__ if error is not None else None,
        )
        return _Launch(call.evolve(request=fresh, attempt=self._number(index)), index)

    def _keep(self, response: Response | None, error: BaseException | None, record: int) -> None:
        """Keep the better of this failure and the best so far; release the other.

        A response beats an error (its status and ``Retry-After`` tell an outer retry
        what to do), an error beats a local refusal (an open breaker, a full
        concurrency limit); a later one beats an earlier one of its kind.
        """
        if response is not None:
            rank = 2
        else:
            rank = 0 if error is not None and refused_locally(error) else 1
        best = self.best
        if best is not None and best[0] > rank:
            if response is not None:
                self.discard.append(response)
            return
        if best is not None and best[1] is not None:
            self.discard.append(best[1])
        self.best = (rank, response, error, record)

    def _give_up(self) -> _Done:
        """Every attempt failed and no hedge may follow: the best failure is the result."""
        assert self.best is not None
        _, response, error, record = self.best
        self.best = None
        return self._finish(response, error, record, "all attempts failed")

    def _finish(
        self, response: Response | None, error: BaseException | None, record: int, reason: str
    ) -> _Done:
        discard = self.discard
        best = self.best
        if best is not None and best[1] is not None:
            discard.append(best[1])  # a failure kept in case nothing better came
        if self.launched_count > 1:  # the hot path (one attempt) records nothing
            self._record_history(response, error, record, reason)
        return _Done(response, error, discard)

    def _record_history(
        self, response: Response | None, error: BaseException | None, record: int, reason: str
    ) -> None:
        history = self.history
        history[record] = _with_reason(history[record], reason)
        now = self.call.clock.monotonic()
        for index, began in self.pending.items():
            history.append(
                Attempt(number=self._number(index), duration=now - began, reason="lost")
            )
        final = tuple(sorted(history, key=lambda a: a.number))
        if error is not None:
            if isinstance(error, APIError):
                error.history = final
        elif response is not None:
            set_attempts(response, final)

    def _budget_record(
        self,
        index: int,
        outcome: Outcome,
        response: Response | None,
        error: BaseException | None,
        now: float,
    ) -> None:
        budget = self.policy.budget
        if budget is None:
            return
        if error is not None and refused_locally(error):
            self._refund(index)  # the hedge never reached the wire
            return
        if response is not None or isinstance(error, APIConnectionError):
            failed = outcome not in _ACCEPTABLE
            budget._record(now, failed=failed)
            if not failed:
                self._refund(index)  # a hedge that worked is free, as a retry is

    def _refund(self, index: int) -> None:
        cost = self.costs.pop(index, None)
        if cost is not None and self.policy.budget is not None:
            self.policy.budget._refund(cost)


def _record(
    number: int, response: Response | None, error: BaseException | None, duration: float
) -> Attempt:
    return Attempt(
        number=number,
        status_code=response.status_code if response is not None else None,
        error=type(error).__name__ if error is not None else None,
        duration=duration,
        reason=f"status {response.status_code}" if response is not None else type(error).__name__,
    )


def _with_reason(record: Attempt, reason: str) -> Attempt:
    return Attempt(
        number=record.number,
        status_code=record.status_code,
        error=record.error,
        duration=record.duration,
        reason=reason,
    )

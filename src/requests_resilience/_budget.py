"""`RetryBudget`: retries are free while the server is healthy, rationed while it fails.

The anchors, and what this budget takes from each:

- **gRPC retry throttling** keeps a token count that each failure lowers and each
  success raises by ``tokenRatio``, and stops retries at or below half: simple, but at
  a steady 20% of failures its tokens drain and it stops retrying calls that another
  attempt would save.
- **Finagle's RetryBudget** (``ttl`` 10 s, ``percentCanRetry`` 20%,
  ``minRetriesPerSec`` 10) and **Envoy's** ``budget_percent`` allow retries up to a
  share of recent requests: they bound a storm, but the same share caps retries at 30%
  random failures, where each call needs about 0.4 retries.
- **The SRE book's client-side throttling** rejects with probability
  ``max(0, (requests - K * accepts) / (requests + 1))`` over a window, K = 2: nothing is
  refused while at least half the requests succeed. Its window makes it slow to see an
  outage start after a healthy spell.

Ours judges the server from evidence, with stated confidence, then acts:

1. **Healthy** unless one of two tests says otherwise: retries cost nothing, so random
   failures are retried as urllib3's ``Retry`` would.
2. **Sustained failure**: over the last `window` seconds (ten buckets), at least
   `min_requests` attempts reached the server and, at 99.87% confidence (the Wilson
   score interval, z = 3), more than half of them failed: the SRE book's K = 2 point.
   At 30% random failures this verdict is wrong about once in two million windows of
   twenty attempts.
3. **A change**: the failures since the last success form a run that would happen with
   probability below 1e-5 at the failure rate the window measured before the run
   (Laplace's rule of succession, so a young window is judged cautiously), and at
   least three long. After sixty straight successes, three failures in a row are such
   a run; at 20% random failures it takes eight, which happens once in 400,000 places.
   This is what sees an outage begin within its first few failures.
4. **While failing**, a retry spends a token. The spell starts with none (the failures
   that revealed it are the retries it would have paid for); tokens come from successes
   (`ratio` each), from time (`min_per_second`, so a quiet client still probes), and
   back from every retry that succeeds or never reached the wire; at most `max_tokens`
   wait in the bucket. At 90% failures that is about 1.02 requests per call.

A refused call is not failed at once: `Retry` keeps its patience (it waits its next
backoff step and asks again), so a call that began in an outage still succeeds when
a probe shows the server back; one success ends a run, and successes in the window end
the sustained verdict.

Every method takes the pipeline clock's ``now`` and does no I/O: the decisions are
plain functions of the recorded outcomes, and one lock guards them.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from requests_resilience._copying import Rebuilt
from requests_resilience._errors import ConfigurationError
from requests_resilience._tally import Tally

__all__ = ["RetryBudget"]

#: z of the one-sided confidence bound for "more than half failed" (99.87%).
_Z = 3.0
#: The failure share above which retries add more load than they save (SRE's K = 2).
_FAILING_SHARE = 0.5
#: A run of failures less likely than this under the measured rate marks a change.
_RUN_SIGNIFICANCE = 1e-5
#: The shortest run that may mark a change: never a one- or two-sample verdict.
_MIN_RUN = 3
#: Buckets of the sliding window.
_BUCKETS = 10


def sustained_failure(attempts: int, failures: int, min_requests: int) -> bool:
    """Whether more than half of `attempts` failed, with 99.87% confidence.

    The lower bound of the Wilson score interval for the failure share must pass one
    half, and there must be at least `min_requests` attempts to judge.

    Example:
        >>> sustained_failure(20, 20, 20), sustained_failure(20, 12, 20)
        (True, False)
    """
    if attempts < max(1, min_requests):
        return False
    share = failures / attempts
    z2 = _Z * _Z
    centre = share + z2 / (2 * attempts)
    spread = _Z * math.sqrt(share * (1 - share) / attempts + z2 / (4 * attempts * attempts))
    return (centre - spread) / (1 + z2 / attempts) > _FAILING_SHARE


def improbable_run(run: int, attempts_before: int, failures_before: int) -> bool:
    """Whether `run` failures in a row are too unlikely to be bad luck.

    The failure rate before the run is estimated by Laplace's rule of succession,
    ``(failures + 1) / (attempts + 2)``, and the run is improbable when that rate to the
    power `run` is below 1e-5 (and the run is at least three long).

    Example:
        >>> improbable_run(3, 60, 0)  # three failures after sixty successes
        True
        >>> improbable_run(7, 1000, 200)  # seven in a row at 20%: it happens
        False
    """
    if run < _MIN_RUN:
        return False
    rate = (failures_before + 1) / (attempts_before + 2)
    return run * math.log(rate) < math.log(_RUN_SIGNIFICANCE)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    ratio: float
    min_per_second: float
    max_tokens: float
    window: float
    min_requests: int
    bucket_width: float = field(init=False)  # the window's buckets: window / _BUCKETS

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket_width", self.window / _BUCKETS)


@dataclass(eq=False, slots=True)
class _State:
    """The recorded evidence and the bucket; guarded by `lock`."""

    successes: list[int]  # per bucket of the window
    failures: list[int]
    bucket_start: float | None = None  # start time of the newest bucket
    newest: int = 0  # index of the newest bucket
    window_successes: int = 0
    window_failures: int = 0
    run: int = 0  # failures since the last success
    failing: bool = False
    tokens: float = 0.0
    refilled: float = 0.0  # when the floor last added tokens
    successes_total: int = 0
    failures_total: int = 0
    granted: int = 0
    spent: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Successes counted without the lock since the last locked step: the next locked
    #: step folds them in (`RetryBudget._fold`), see `_record`.
    pending: Tally = field(default_factory=Tally)


class RetryBudget(Rebuilt):
    """Rations retries while the server keeps failing; shared by every call of a `Retry`.

    While the server is healthy retries are free; while it is failing (most recent
    attempts failed, with confidence, or a run of failures too long to be bad luck)
    each retry needs a token, and tokens come slowly. The module docstring gives the
    rules, the anchors they come from, and the figures behind the defaults.

    Args:
        ratio: tokens each success earns while the server is failing; 0.0 to 1.0
            (default 0.2).
        min_per_second: tokens added per second while failing, so a quiet client
            still sends a probe now and then; 0.0 to 100.0 (default 0.5).
        max_tokens: the most tokens the bucket holds; 1.0 to 10000.0 (default 4.0).
        window: seconds of outcomes the verdict looks at; 1.0 to 3600.0 (default 10,
            Finagle's ``ttl``).
        min_requests: attempts the window needs before it may call the failure
            sustained; 1 to 100000 (default 20).

    Raises:
        ConfigurationError: an option is out of range or of the wrong type.

    Example:
        >>> budget = RetryBudget(ratio=0.1)
        >>> retry = Retry(budget=budget)  # every call through `retry` shares it
    """

    __slots__ = ("_settings", "_state")

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 0.5,
        max_tokens: float = 4.0,
        window: float = 10.0,
        min_requests: int = 20,
    ) -> None:
        _check("ratio", ratio, 0.0, 1.0)
        _check("min_per_second", min_per_second, 0.0, 100.0)
        _check("max_tokens", max_tokens, 1.0, 10_000.0)
        _check("window", window, 1.0, 3600.0)
        if isinstance(min_requests, bool) or not isinstance(min_requests, int):
            msg = f"RetryBudget min_requests must be an int from 1 to 100000, got {min_requests!r}"
            raise ConfigurationError(msg)
        _check("min_requests", min_requests, 1, 100_000)
        self._settings = _Settings(
            ratio=float(ratio),
            min_per_second=float(min_per_second),
            max_tokens=float(max_tokens),
            window=float(window),
            min_requests=min_requests,
        )
        self._state = _State(successes=[0] * _BUCKETS, failures=[0] * _BUCKETS)

    @property
    def ratio(self) -> float:
        """Tokens each success earns while the server is failing."""
        return self._settings.ratio

    @property
    def min_per_second(self) -> float:
        """Tokens added per second while the server is failing."""
        return self._settings.min_per_second

    @property
    def max_tokens(self) -> float:
        """The most tokens the bucket holds."""
        return self._settings.max_tokens

    @property
    def window(self) -> float:
        """Seconds of outcomes the verdict looks at."""
        return self._settings.window

    @property
    def min_requests(self) -> int:
        """Attempts the window needs before it may call the failure sustained."""
        return self._settings.min_requests

    @property
    def failing(self) -> bool:
        """Whether retries are rationed now (as of the last recorded outcome)."""
        return self._state.failing

    # -- what Retry calls ---------------------------------------------------------------

    def _record(self, now: float, *, failed: bool) -> None:
        """Record an attempt that reached the server: `failed` if a retry could fix it.

        Successes also include answers that no retry would change (a 404): the server
        is up. An attempt that never reached the server (an open breaker) is not
        recorded.
        """
        state = self._state
        if not failed and not state.failing:
            start = state.bucket_start
            if start is not None and now - start < self._settings.bucket_width:
                # The common case: a success while the server is healthy, in the
                # current bucket. It cannot start a failing spell, so it is only
                # counted, without the lock; the next locked step folds it in. (A
                # spell that begins meanwhile misses its 0.2 token: the safe way.)
                state.pending.add()
                return
        with state.lock:
            self._fold()
            start = state.bucket_start
            if start is None or now - start >= self._settings.bucket_width:
                self._advance(now)  # a new bucket (most calls land in the current one)
            bucket = state.newest
            if failed:
                state.failures[bucket] += 1
                state.window_failures += 1
                state.failures_total += 1
                state.run += 1
            else:
                state.successes[bucket] += 1
                state.window_successes += 1
                state.successes_total += 1
                state.run = 0
                if not state.failing:
                    return  # a success cannot start a failing spell: nothing to judge
                self._refill(now)
                state.tokens = min(self._settings.max_tokens, state.tokens + self._settings.ratio)
            self._judge(now)

    def _spend(self, now: float) -> float | None:
        """Admit one retry: its cost in tokens (0.0 while healthy), or None if refused."""
        state = self._state
        with state.lock:
            self._fold()
            self._advance(now)
            self._judge(now)
            if not state.failing:
                state.granted += 1
                state.spent += 1
                return 0.0
            self._refill(now)
            if state.tokens >= 1.0:
                state.tokens -= 1.0
                state.granted += 1
                state.spent += 1
                return 1.0
            state.refused += 1
            return None

    def _refund(self, cost: float) -> None:
        """Give back a retry's `cost`: it succeeded, or never reached the wire."""
        state = self._state
        with state.lock:
            state.tokens = min(self._settings.max_tokens, state.tokens + cost)
            state.spent -= 1

    # -- the rules ----------------------------------------------------------------------

    def _fold(self) -> None:
        """Count the successes recorded without the lock (called holding it)."""
        state = self._state
        count = state.pending.take()
        if count:
            state.successes[state.newest] += count
            state.window_successes += count
            state.successes_total += count
            state.run = 0

    def _advance(self, now: float) -> None:
        """Slide the window to `now`, dropping buckets older than `window`."""
        state = self._state
        width = self._settings.bucket_width
        if state.bucket_start is None:
            state.bucket_start = now
            return
        steps = int((now - state.bucket_start) // width)
        if steps <= 0:
            return
        for _ in range(min(steps, _BUCKETS)):
            state.newest = (state.newest + 1) % _BUCKETS
            state.window_successes -= state.successes[state.newest]
            state.window_failures -= state.failures[state.newest]
            state.successes[state.newest] = 0
            state.failures[state.newest] = 0
        state.bucket_start += steps * width

    def _judge(self, now: float) -> None:
        """Apply the two tests; entering a failing spell empties the bucket."""
        state = self._state
        attempts = state.window_successes + state.window_failures
        in_run = min(state.run, state.window_failures)
        failing = sustained_failure(
            attempts, state.window_failures, self._settings.min_requests
        ) or improbable_run(state.run, attempts - in_run, state.window_failures - in_run)
        if failing and not state.failing:
            state.tokens = 0.0
            state.refilled = now
        state.failing = failing

    def _refill(self, now: float) -> None:
        state = self._state
        if now > state.refilled:
            state.tokens = min(
                self._settings.max_tokens,
                state.tokens + (now - state.refilled) * self._settings.min_per_second,
            )
            state.refilled = now

    def snapshot(self) -> dict[str, float]:
        """The budget's state, for dashboards and tests.

        Keys: ``failing`` (1.0 or 0.0), ``tokens``, ``window_attempts`` and
        ``window_failures`` (in the current window), ``run`` (failures since the last
        success), ``successes`` and ``failures`` (recorded since the start), ``granted``
        (retries admitted), ``spent`` (admitted retries that failed on the wire) and
        ``refused``.
        """
        state = self._state
        with state.lock:
            self._fold()
            return {
                "failing": float(state.failing),
                "tokens": state.tokens,
                "window_attempts": float(state.window_successes + state.window_failures),
                "window_failures": float(state.window_failures),
                "run": float(state.run),
                "successes": float(state.successes_total),
                "failures": float(state.failures_total),
                "granted": float(state.granted),
                "spent": float(state.spent),
                "refused": float(state.refused),
            }

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"RetryBudget(ratio={s.ratio}, min_per_second={s.min_per_second}, "
            f"max_tokens={s.max_tokens}, window={s.window}, min_requests={s.min_requests})"
        )


def _check(option: str, value: float, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        msg = f"RetryBudget {option} must be a number from {low} to {high}, got {value!r}"
        raise ConfigurationError(msg)

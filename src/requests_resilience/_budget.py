"""`RetryBudget`: a token bucket that stops retries from multiplying an outage.

In the spirit of Finagle's ``RetryBudget`` and botocore's retry quota, with one
addition: the budget knows whether the server is *healthy*, from the outcomes of first
attempts, and spends differently in each case.

- Every retry takes a token; a retry that succeeds gives it back (botocore), so
  retries that work cost nothing. Each successful call deposits `ratio` of a token,
  and a floor of `min_per_second` tokens trickles in with time.
- While the server is healthy (most first attempts succeed, as with 20% random
  failures), any token may be spent: transient failures are retried at once.
- While it is failing (an exponentially weighted share of first attempts that
  succeeded has fallen below one half, as in an outage), a retry may only spend from
  a nearly full bucket (at least `max_tokens` - 1 tokens): a fleet of callers sends a
  retry or two per refill instead of one per caller per backoff step, and the tokens
  it keeps are there when the server comes back. One success ends the failing spell
  and earns a whole token, so waiting calls follow it at once.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from requests_resilience._copying import Rebuilt
from requests_resilience._errors import ConfigurationError

__all__ = ["RetryBudget"]

#: Weight of the newest first attempt in the health average: two failures in a row
#: from full health (0.7 x 0.7 = 0.49) are enough to call the server failing.
_HEALTH_WEIGHT = 0.3
_FAILING_BELOW = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    ratio: float
    min_per_second: float
    max_tokens: float


@dataclass(eq=False, slots=True)
class _State:
    tokens: float
    updated: float | None = None
    health: float = 1.0  # weighted share of first attempts that succeeded
    deposits: int = 0
    spent: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class RetryBudget(Rebuilt):
    """A thread-safe token bucket shared by every call that uses one retry policy.

    Args:
        ratio: tokens each successful call deposits: in a sustained partial failure,
            failed retries are capped at this share of successes; 0.0 to 1.0
            (default 0.2).
        min_per_second: tokens added per second regardless of traffic, so that a
            client with little traffic can still retry; 0.0 to 100.0 (default 0.5).
        max_tokens: the bucket's capacity, and its content at start; 1.0 to 10000.0
            (default 4.0). The most retries one burst of failures can use at once.

    Raises:
        ConfigurationError: an option is out of range.

    Example:
        >>> budget = RetryBudget(ratio=0.1)
        >>> retry = Retry(budget=budget)  # every call through `retry` shares it
    """

    __slots__ = ("_settings", "_state")

    def __init__(
        self, *, ratio: float = 0.2, min_per_second: float = 0.5, max_tokens: float = 4.0
    ) -> None:
        _check("ratio", ratio, 0.0, 1.0)
        _check("min_per_second", min_per_second, 0.0, 100.0)
        _check("max_tokens", max_tokens, 1.0, 10_000.0)
        self._settings = _Settings(
            ratio=float(ratio), min_per_second=float(min_per_second), max_tokens=float(max_tokens)
        )
        self._state = _State(tokens=float(max_tokens))

    @property
    def ratio(self) -> float:
        """Tokens deposited per successful call."""
        return self._settings.ratio

    @property
    def min_per_second(self) -> float:
        """Tokens added per second regardless of traffic."""
        return self._settings.min_per_second

    @property
    def max_tokens(self) -> float:
        """The bucket's capacity."""
        return self._settings.max_tokens

    @property
    def failing(self) -> bool:
        """Whether recent first attempts mostly failed (retries are then rationed)."""
        return self._state.health < _FAILING_BELOW

    def _refill(self, now: float) -> None:
        state = self._state
        if state.updated is not None and now > state.updated:
            state.tokens = min(
                self._settings.max_tokens,
                state.tokens + (now - state.updated) * self._settings.min_per_second,
            )
        state.updated = now

    def deposit(self, now: float, *, first_attempt: bool = True) -> None:
        """Credit a successful call: `ratio` of a token, or a whole one after failures.

        Args:
            now: the current time on the pipeline's clock.
            first_attempt: whether the success came on the call's first attempt (only
                first attempts measure the server's health).
        """
        state = self._state
        with state.lock:
            self._refill(now)
            credit = 1.0 if state.health < _FAILING_BELOW else self._settings.ratio
            state.tokens = min(self._settings.max_tokens, state.tokens + credit)
            if first_attempt:
                state.health += _HEALTH_WEIGHT * (1.0 - state.health)
            state.health = max(state.health, _FAILING_BELOW)  # one success ends a failing spell
            state.deposits += 1

    def first_attempt_failed(self) -> None:
        """Note that a call's first attempt failed in a way a retry could fix."""
        state = self._state
        with state.lock:
            state.health -= _HEALTH_WEIGHT * state.health

    def try_spend(self, now: float) -> bool:
        """Take a token for one retry; False (and nothing taken) when it may not.

        While the server is failing, a retry may only spend from a nearly full bucket
        (at least `max_tokens` - 1 tokens); the rest wait for the recovery.
        """
        state = self._state
        with state.lock:
            self._refill(now)
            if state.health < _FAILING_BELOW:  # most tokens wait for the recovery
                needed = max(1.0, self._settings.max_tokens - 1.0)
            else:
                needed = 1.0
            if state.tokens >= needed:
                state.tokens -= 1.0
                state.spent += 1
                return True
            state.refused += 1
            return False

    def refund(self) -> None:
        """Give back a retry's token: it succeeded, or never reached the wire."""
        state = self._state
        with state.lock:
            state.tokens = min(self._settings.max_tokens, state.tokens + 1.0)
            state.spent -= 1

    def snapshot(self) -> dict[str, float]:
        """Current ``tokens``, ``health`` and the ``deposits``/``spent``/``refused`` counts."""
        state = self._state
        with state.lock:
            return {
                "tokens": state.tokens,
                "health": state.health,
                "deposits": float(state.deposits),
                "spent": float(state.spent),
                "refused": float(state.refused),
            }

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"RetryBudget(ratio={s.ratio}, min_per_second={s.min_per_second}, "
            f"max_tokens={s.max_tokens})"
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

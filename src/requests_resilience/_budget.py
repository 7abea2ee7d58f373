"""`RetryBudget`: a token bucket that caps retries at a share of first attempts.

In the spirit of Finagle's ``RetryBudget`` and botocore's retry quota: every call that
succeeds deposits `ratio` of a token, a floor of `min_per_second` tokens trickles in
with time, and every retry takes a whole token. A retry that succeeds gives its token
back, as botocore's quota does. So retries are funded by successes and cost nothing
while they work; when they keep failing (an outage), they are capped at the bucket's
content plus the floor, instead of multiplying the load by the number of attempts; and
when the server recovers, one token lets the waiting calls through one after another.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from requests_resilience._errors import ConfigurationError

__all__ = ["RetryBudget"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    ratio: float
    min_per_second: float
    max_tokens: float


@dataclass(eq=False, slots=True)
class _State:
    tokens: float
    updated: float | None = None
    deposits: int = 0
    spent: int = 0
    refused: int = 0
    failing: bool = False  # the last retry that reached the wire failed
    lock: threading.Lock = field(default_factory=threading.Lock)


class RetryBudget:
    """A thread-safe token bucket shared by every call that uses one retry policy.

    Args:
        ratio: tokens each first attempt deposits, i.e. the share of first attempts
            that may be retried in a sustained failure; 0.0 to 1.0 (default 0.2).
        min_per_second: tokens added per second regardless of traffic, so that a
            client with little traffic can still retry; 0.0 to 100.0 (default 0.2).
        max_tokens: the bucket's capacity, and its content at start; 1.0 to 10000.0
            (default 2.0). Bounds the burst of retries an outage can cause at once.

    Raises:
        ConfigurationError: an option is out of range.

    Example:
        >>> budget = RetryBudget(ratio=0.1)
        >>> retry = Retry(budget=budget)  # every call through `retry` shares it
    """

    __slots__ = ("_settings", "_state")

    def __init__(
        self, *, ratio: float = 0.2, min_per_second: float = 0.2, max_tokens: float = 2.0
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
        """Tokens deposited per first attempt."""
        return self._settings.ratio

    @property
    def min_per_second(self) -> float:
        """Tokens added per second regardless of traffic."""
        return self._settings.min_per_second

    @property
    def max_tokens(self) -> float:
        """The bucket's capacity."""
        return self._settings.max_tokens

    def _refill(self, now: float) -> None:
        state = self._state
        if state.updated is not None and now > state.updated:
            state.tokens = min(
                self._settings.max_tokens,
                state.tokens + (now - state.updated) * self._settings.min_per_second,
            )
        state.updated = now

    def deposit(self, now: float) -> None:
        """Credit one successful call: `ratio` of a token, or a whole one after failures.

        The first success after retries failed is news that the server is back: it
        earns a whole token, so a waiting call can follow it at once.
        """
        state = self._state
        with state.lock:
            self._refill(now)
            credit = 1.0 if state.failing else self._settings.ratio
            state.tokens = min(self._settings.max_tokens, state.tokens + credit)
            state.failing = False
            state.deposits += 1

    def try_spend(self, now: float, *, last_attempt: bool = True) -> bool:
        """Take a token for one retry; False (and nothing taken) when too few are left.

        While retries are failing, the last token is kept for calls' *last* attempts:
        in an outage the few tokens go to the attempts most likely to land after the
        server recovers, not to early retries that would fail anyway.

        Args:
            now: the current time on the pipeline's clock.
            last_attempt: whether this retry is the call's last possible attempt.
        """
        state = self._state
        with state.lock:
            self._refill(now)
            keep = 1.0 if state.failing and not last_attempt else 0.0
            if state.tokens >= 1.0 + keep:
                state.tokens -= 1.0
                state.spent += 1
                return True
            state.refused += 1
            return False

    def refund(self, *, succeeded: bool) -> None:
        """Give back a retry's token: it succeeded, or never reached the wire."""
        state = self._state
        with state.lock:
            state.tokens = min(self._settings.max_tokens, state.tokens + 1.0)
            state.spent -= 1
            if succeeded:
                state.failing = False

    def retry_failed(self) -> None:
        """Note that a retry reached the wire and failed: tokens are now scarce."""
        self._state.failing = True

    def snapshot(self) -> dict[str, float]:
        """Current tokens and counters: ``tokens``, ``deposits``, ``spent``, ``refused``."""
        state = self._state
        with state.lock:
            return {
                "tokens": state.tokens,
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

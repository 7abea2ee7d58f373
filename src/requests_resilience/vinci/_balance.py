"""The balance pre-check: refuse a job locally when the balance cannot cover it.

The vendor advises checking the balance before costly jobs. `BalanceGuard` keeps the
balance last read from ``/billing/balance`` for a short time, takes each job's
estimated cost off it, and *reserves* a job's cost under a lock before the job is
sent, so two threads can never both spend the last dollar. The lock is never held
across network I/O: one thread fetches (the others wait for its answer), then the
result is reconciled under the lock.

It errs on the side of refusing: a fetch that overlaps a job's creation may already
include that job's charge, and the guard still takes it off. The server stays the
authority (a 402 from it also corrects the guard), and the cache expires quickly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Final

from requests_resilience._errors import InsufficientBalanceError

if TYPE_CHECKING:
    from requests_resilience._clock import Clock

__all__ = ["BalanceGuard", "Reservation", "balance_in_detail", "to_money"]

_CENT: Final = Decimal("0.01")
_CURRENT = re.compile(r"current balance:\s*\$?\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def to_money(value: float | Decimal) -> Decimal:
    """Dollars as a `Decimal` rounded to the cent."""
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def balance_in_detail(detail: str) -> Decimal | None:
    """The current balance a 402 detail states (``"Current balance: $1.25, ..."``)."""
    match = _CURRENT.search(detail or "")
    if match is None:
        return None
    try:
        return to_money(Decimal(match.group(1)))
    except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
        return None


@dataclass(eq=False, slots=True)
class Reservation:
    """A job's estimated cost, held against the balance until the job is settled."""

    cost: Decimal
    settled: bool = field(default=False)


class BalanceGuard:
    """A thread-safe, short-lived view of the balance, with reservations.

    Args:
        fetch: reads the balance from the server (dollars).
        clock: where the cache's age is measured.
        ttl: seconds a fetched balance is trusted (0 fetches before every job).

    Example:
        >>> guard = BalanceGuard(lambda: Decimal("1.00"), clock=SystemClock(), ttl=30)
        >>> reservation = guard.reserve(Decimal("0.25"))  # or InsufficientBalanceError
        >>> guard.commit(reservation, Decimal("0.25"))  # the job was created
    """

    __slots__ = (
        "_clock",
        "_committed",
        "_cond",
        "_fetch",
        "_fetched_at",
        "_fetching",
        "_known",
        "_reserved",
        "_ttl",
    )

    def __init__(self, fetch: Callable[[], Decimal], *, clock: Clock, ttl: float) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = float(ttl)
        self._cond = threading.Condition(threading.Lock())
        self._known: Decimal | None = None
        self._fetched_at: float | None = None
        self._reserved = Decimal(0)
        self._committed = Decimal(0)  # every cost ever committed, for reconciling fetches
        self._fetching = False

    @property
    def available(self) -> Decimal | None:
        """The known balance minus outstanding reservations (None before a fetch)."""
        with self._cond:
            return None if self._known is None else self._known - self._reserved

    def _fresh(self) -> bool:
        return (
            self._known is not None
            and self._fetched_at is not None
            and self._clock.monotonic() - self._fetched_at < self._ttl
        )

    def refresh(self, fetch: Callable[[], Decimal] | None = None) -> Decimal:
        """Fetch the balance now (after any fetch already under way) and store it.

        Args:
            fetch: fetch with this function instead of the guard's own.
        """
        return self._fetch_and_store(fetch or self._fetch)

    def _fetch_and_store(self, fetch: Callable[[], Decimal]) -> Decimal:
        with self._cond:
            while self._fetching:
                self._cond.wait()
            self._fetching = True
            snapshot = self._committed
        try:
            value = to_money(fetch())
        except BaseException:
            with self._cond:
                self._fetching = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._fetching = False
            # A job committed while the fetch was in flight may not be in `value`.
            self._known = value - (self._committed - snapshot)
            self._fetched_at = self._clock.monotonic()
            self._cond.notify_all()
        return value

    def reserve(self, cost: Decimal) -> Reservation:
        """Hold `cost` against the balance, fetching it first if the cache is stale.

        Raises:
            InsufficientBalanceError: the balance minus other reservations does not
                cover `cost` (``response`` is None: nothing was sent).
            APIError: fetching the balance failed.
        """
        fetched = False
        while True:
            with self._cond:
                while self._fetching:
                    self._cond.wait()
                if self._known is not None and (fetched or self._fresh()):
                    available = self._known - self._reserved
                    if cost > available:
                        raise _insufficient(available, cost)
                    self._reserved += cost
                    return Reservation(cost)
            self._fetch_and_store(self._fetch)
            fetched = True

    def commit(self, reservation: Reservation, actual: Decimal | None = None) -> None:
        """The job was created: take its cost (the server's estimate if given) off."""
        charged = reservation.cost if actual is None else to_money(actual)
        with self._cond:
            if reservation.settled:
                return
            reservation.settled = True
            self._reserved -= reservation.cost
            self._committed += charged
            if self._known is not None:
                self._known -= charged

    def release(self, reservation: Reservation, *, outcome_unknown: bool = False) -> None:
        """The job was not created (or may have been): give the reservation back.

        Args:
            reservation: the reservation to release.
            outcome_unknown: the server may have charged the job (a 5xx, a broken
                connection after sending): forget the cached balance so the next job
                reads the real one.
        """
        with self._cond:
            if not reservation.settled:
                reservation.settled = True
                self._reserved -= reservation.cost
            if outcome_unknown:
                self._fetched_at = None

    def observe(self, balance: Decimal | None) -> None:
        """The server said what the balance is (a 402's detail); None: just forget it."""
        with self._cond:
            if balance is None:
                self._fetched_at = None
                return
            self._known = to_money(balance)
            self._fetched_at = self._clock.monotonic()

    def __repr__(self) -> str:
        return f"BalanceGuard(ttl={self._ttl:g}, available={self.available})"


def _insufficient(available: Decimal, cost: Decimal) -> InsufficientBalanceError:
    shown = max(available, Decimal(0))
    detail = f"Insufficient balance. Current balance: ${shown:.2f}, required: ${cost:.2f}"
    return InsufficientBalanceError(
        f"402 (checked locally, nothing was sent): {detail}",
        status_code=402,
        detail=detail,
        response=None,
    )

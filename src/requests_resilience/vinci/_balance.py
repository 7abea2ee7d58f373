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

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Final, TypeVar

from requests_resilience._errors import (
    APIConnectionError,
    APIStatusError,
    CircuitOpenError,
    ConfigurationError,
    InsufficientBalanceError,
    ServerError,
)
from requests_resilience.vinci._errors import VinciInputError
from requests_resilience.vinci._models import Job

if TYPE_CHECKING:
    from requests_resilience._clock import Clock

__all__ = [
    "BalanceGuard",
    "FetchTicket",
    "Reservation",
    "arefresh",
    "areserve",
    "balance_in_detail",
    "settle_failure",
    "settling",
    "to_money",
]

T = TypeVar("T")

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


@dataclass(frozen=True, slots=True)
class FetchTicket:
    """One fetch under way: what had been committed when it started."""

    committed: Decimal


@dataclass(eq=False, slots=True)
class Reservation:
    """A job's estimated cost, held against the balance until the job is settled."""

    cost: Decimal
    settled: bool = field(default=False)


class BalanceGuard:
    """A thread-safe, short-lived view of the balance, with reservations.

    Args:
        fetch: reads the balance from the server (dollars); None when the caller
            drives every fetch itself (`begin_fetch` / `end_fetch`, as the async
            client does with `areserve` and `arefresh`).
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

    def __init__(self, fetch: Callable[[], Decimal] | None, *, clock: Clock, ttl: float) -> None:
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
        return self._fetch_and_store(fetch or self._sync_fetch())

    def _fetch_and_store(self, fetch: Callable[[], Decimal]) -> Decimal:
        with self._cond:
            while self._fetching:
                self._cond.wait()
        ticket = self.begin_fetch()
        assert ticket is not None  # one thread at a time gets here for this guard
        try:
            value = to_money(fetch())
        except BaseException:
            self.end_fetch(ticket, None)
            raise
        self.end_fetch(ticket, value)
        return value

    def begin_fetch(self) -> FetchTicket | None:
        """Start a fetch without waiting: a ticket, or None while another is under way.

        The driver of a fetch that is not a plain function (``await`` in
        `AsyncVinciClient`) calls this, fetches, then `end_fetch`; the guard never
        does the I/O or waits itself.
        """
        with self._cond:
            if self._fetching:
                return None
            self._fetching = True
            return FetchTicket(self._committed)

    def end_fetch(self, ticket: FetchTicket, value: Decimal | None) -> None:
        """Store a fetched balance (dollars), or None when the fetch failed."""
        with self._cond:
            self._fetching = False
            if value is not None:
                # A job committed while the fetch was in flight may not be in `value`.
                self._known = to_money(value) - (self._committed - ticket.committed)
                self._fetched_at = self._clock.monotonic()
            self._cond.notify_all()

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
            reservation = self.try_reserve(cost, fetched=fetched)
            if reservation is not None:
                return reservation
            self._fetch_and_store(self._sync_fetch())
            fetched = True

    def try_reserve(self, cost: Decimal, *, fetched: bool = False) -> Reservation | None:
        """Reserve `cost` from what is known, without fetching or waiting.

        Args:
            cost: the job's estimate.
            fetched: the caller has just fetched: use the balance even if the cache
                has already aged past `ttl` (a ttl of 0).

        Returns:
            The reservation, or None when the balance must be fetched first (unknown,
            stale, or a fetch is under way).

        Raises:
            InsufficientBalanceError: the known balance does not cover `cost`.
        """
        with self._cond:
            if self._fetching or self._known is None or not (fetched or self._fresh()):
                return None
            available = self._known - self._reserved
            if cost > available:
                raise _insufficient(available, cost)
            self._reserved += cost
            return Reservation(cost)

    def _sync_fetch(self) -> Callable[[], Decimal]:
        if self._fetch is None:
            msg = "this BalanceGuard has no fetch function: its client fetches with await"
            raise ConfigurationError(msg)
        return self._fetch

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


def settle_failure(guard: BalanceGuard, reservation: Reservation, exc: BaseException) -> None:
    """Give a job's reservation back after its creation raised `exc` (the decision).

    A 402 also tells the guard the server's balance. A failure that proves nothing was
    charged (a 4xx, an open breaker, a connection never made) just releases; otherwise
    (a 5xx, a reset after sending, an unreadable 2xx) the server may have charged the
    job, so the cached balance is forgotten and the real one read next time.
    """
    if isinstance(exc, InsufficientBalanceError):
        guard.release(reservation)
        guard.observe(balance_in_detail(exc.detail))
        return
    definite = (
        isinstance(exc, CircuitOpenError | VinciInputError)
        or (isinstance(exc, APIStatusError) and not isinstance(exc, ServerError))
        or (isinstance(exc, APIConnectionError) and not exc.request_sent)
    )
    guard.release(reservation, outcome_unknown=not definite)


async def arefresh(
    guard: BalanceGuard, fetch: Callable[[], Awaitable[Decimal]], lock: asyncio.Lock
) -> Decimal:
    """`BalanceGuard.refresh` for asyncio: the fetch is awaited, the guard only decides.

    Args:
        guard: the guard.
        fetch: reads the balance from the server (dollars).
        lock: one fetch at a time among the tasks of one client; the others wait for
            its answer without blocking the event loop.
    """
    async with lock:
        while (ticket := guard.begin_fetch()) is None:  # a thread sharing the guard
            await asyncio.sleep(0.01)
        try:
            value = to_money(await fetch())
        except BaseException:
            guard.end_fetch(ticket, None)
            raise
        guard.end_fetch(ticket, value)
        return value


async def areserve(
    guard: BalanceGuard,
    cost: Decimal,
    fetch: Callable[[], Awaitable[Decimal]],
    lock: asyncio.Lock,
) -> Reservation:
    """`BalanceGuard.reserve` for asyncio: reserve, fetching first (awaited) if needed.

    Raises:
        InsufficientBalanceError: the balance does not cover `cost`.
        APIError: fetching the balance failed.
    """
    reservation = guard.try_reserve(cost)
    while reservation is None:
        if lock.locked():  # another task is fetching: its answer may do
            async with lock:
                pass
            reservation = guard.try_reserve(cost)
            if reservation is not None:
                break
        await arefresh(guard, fetch, lock)
        reservation = guard.try_reserve(cost, fetched=True)
    return reservation


class Settler:
    """Commits a job's reservation once the job is created (see `settling`)."""

    __slots__ = ("_guard", "_reservation")

    def __init__(self, guard: BalanceGuard | None, reservation: Reservation | None) -> None:
        self._guard = guard
        self._reservation = reservation

    def __call__(self, result: T) -> T:
        """Commit the server's estimate of a created `Job`; return `result` as it is."""
        if self._guard is not None and self._reservation is not None and isinstance(result, Job):
            self._guard.commit(self._reservation, Decimal(str(result.estimated_cost_usd)))
        return result


@contextmanager
def settling(guard: BalanceGuard | None, reservation: Reservation | None) -> Iterator[Settler]:
    """Settle a reservation by how a job's creation ends: the decision, for both clients.

    The block hands its result to the yielded `Settler` (a created job commits its
    cost); an exception leaving the block gives the reservation back (`settle_failure`).
    With no guard or no reservation it does nothing.

    Example:
        >>> with settling(guard, guard.reserve(cost)) as settle:
        ...     job = settle(create_the_job())
    """
    try:
        yield Settler(guard, reservation)
    except BaseException as exc:
        if guard is not None and reservation is not None:
            settle_failure(guard, reservation, exc)
        raise

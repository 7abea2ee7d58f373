"""The one seam for time, sleep and randomness.

Every policy that waits, measures or jitters asks the pipeline's `Clock`, never the
`time` or `random` modules. Production pipelines use `SystemClock`; tests pass
`requests_resilience.testing.FakeClock`, whose `sleep()` advances virtual time at once,
so a test of a two-minute backoff schedule runs in microseconds.

`set_testing()` is the switch for users' own test suites (in the spirit of stamina's
`set_testing`): while it is on, `SystemClock.sleep()` returns at once, so code that goes
through a real pipeline does not wait in tests.
"""

from __future__ import annotations

import asyncio
import random as _random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "is_testing", "no_waits", "set_testing"]


@runtime_checkable
class Clock(Protocol):
    """Where policies get the time, wait, and draw random numbers.

    Implement these four methods to drive a pipeline from your own event loop or
    simulation; `SystemClock` is the real one and `testing.FakeClock` the virtual one.

    Example:
        >>> from requests_resilience.testing import FakeClock
        >>> isinstance(SystemClock(), Clock), isinstance(FakeClock(), Clock)
        (True, True)
        >>> pipeline = Pipeline(StatusErrors(), Retry(), clock=FakeClock())
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; used for deadlines and durations."""
        ...

    def time(self) -> float:
        """Wall-clock Unix time in seconds; used to read HTTP dates and reset stamps."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds`."""
        ...

    def random(self) -> float:
        """A float uniformly drawn from [0.0, 1.0); used for jitter."""
        ...


class _TestingState:
    __slots__ = ("active", "lock")

    def __init__(self) -> None:
        self.active = False
        self.lock = threading.Lock()


_TESTING = _TestingState()


class SystemClock:
    """The real clock: `time.monotonic`, `time.time`, `time.sleep` and `random.random`.

    While `set_testing(True)` is in force, `sleep()` returns immediately.

    Example:
        >>> from requests_resilience import Pipeline, SystemClock
        >>> Pipeline(clock=SystemClock()).clock
        SystemClock()
    """

    __slots__ = ()

    # `time.monotonic` and `time.time` themselves, not methods that call them: the
    # pipeline reads the clock several times per request.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        """Sleep for `seconds`, unless testing mode is on or `seconds` is not positive."""
        if seconds > 0 and not _TESTING.active:
            time.sleep(seconds)

    #: `random.random` (thread-safe in CPython; jitter, not cryptography).
    random = staticmethod(_random.random)

    async def asleep(self, seconds: float) -> None:
        """`sleep()` for async pipelines: `asyncio.sleep`, and the same testing mode."""
        if seconds > 0 and not _TESTING.active:
            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


async def sleep_async(clock: Clock, seconds: float) -> None:
    """Wait `seconds` on `clock` without blocking the event loop.

    A clock with an ``asleep`` coroutine method (`SystemClock`, `FakeClock`) is awaited;
    another clock's blocking ``sleep`` runs in a worker thread.
    """
    asleep = getattr(clock, "asleep", None)
    if asleep is not None:
        await asleep(seconds)
    else:
        await asyncio.to_thread(clock.sleep, seconds)


def set_testing(on: bool) -> None:
    """Turn testing mode on or off for the whole process.

    In testing mode `SystemClock.sleep()` does not wait, so retries, breaker waits and
    rate-limit waits in *your* test suite cost no time. Prefer the `no_waits()`
    context manager, which restores the previous state.

    Args:
        on: whether waits are skipped.

    Example:
        >>> set_testing(True)  # e.g. in your conftest.py
        >>> is_testing()
        True
        >>> set_testing(False)
    """
    with _TESTING.lock:
        _TESTING.active = bool(on)


def is_testing() -> bool:
    """Return whether testing mode is on.

    Example:
        >>> with no_waits():
        ...     is_testing()
        True
    """
    return _TESTING.active


@contextmanager
def no_waits() -> Iterator[None]:
    """Skip every `SystemClock` wait inside the `with` block.

    Example:
        >>> from requests_resilience import no_waits, SystemClock
        >>> with no_waits():
        ...     SystemClock().sleep(60)  # returns at once
    """
    with _TESTING.lock:
        previous = _TESTING.active
        _TESTING.active = True
    try:
        yield
    finally:
        with _TESTING.lock:
            _TESTING.active = previous

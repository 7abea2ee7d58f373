"""`FakeClock`: virtual time for tests, so waits cost nothing and runs are exact."""

from __future__ import annotations

import asyncio
import random
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A `Clock` whose `sleep()` advances virtual time instantly and records the wait.

    Thread-safe. Randomness comes from a seeded generator (deterministic runs), or
    from a fixed value, e.g. ``FakeClock(random_value=1.0 - 1e-9)`` for the largest
    jitter or ``0.0`` for none.

    Args:
        start: the initial `monotonic()` reading.
        wall: the initial `time()` reading (Unix seconds).
        seed: seed for `random()` when `random_value` is None.
        random_value: a constant returned by every `random()` call.

    Example:
        >>> clock = FakeClock()
        >>> clock.sleep(30)
        >>> clock.sleeps, clock.monotonic()
        ([30], 1030.0)
    """

    def __init__(
        self,
        *,
        start: float = 1000.0,
        wall: float = 1_750_000_000.0,
        seed: int = 0,
        random_value: float | None = None,
    ) -> None:
        if random_value is not None and not 0.0 <= random_value < 1.0:
            msg = f"random_value must be in [0.0, 1.0), got {random_value!r}"
            raise ValueError(msg)
        self._lock = threading.Lock()
        self._now = float(start)
        self._wall_offset = float(wall) - float(start)
        self._random = random.Random(seed)  # noqa: S311 - test jitter
        self._random_value = random_value
        self.sleeps: list[float] = []
        """Every wait asked of `sleep()`, in seconds, oldest first (negative ones too).

        Assert a backoff schedule with it: ``assert clock.sleeps == [0.5, 1.0]``. It is
        the clock's own list: read it, do not change it while the clock is in use.
        """

    def monotonic(self) -> float:
        """The virtual monotonic time."""
        with self._lock:
            return self._now

    def time(self) -> float:
        """The virtual wall-clock time; it moves with `monotonic()`."""
        with self._lock:
            return self._now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        """Record the wait and advance virtual time by it (negative waits count as 0)."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        """`sleep()` for async pipelines: records and advances, then yields to the loop."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward without recording a sleep."""
        if seconds < 0:
            msg = "time does not go back"
            raise ValueError(msg)
        with self._lock:
            self._now += seconds

    def random(self) -> float:
        """The fixed `random_value`, or the next number from the seeded generator."""
        if self._random_value is not None:
            return self._random_value
        with self._lock:
            return self._random.random()

    @property
    def slept(self) -> float:
        """Total seconds slept."""
        with self._lock:
            return sum(max(0.0, s) for s in self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleeps={len(self.sleeps)})"

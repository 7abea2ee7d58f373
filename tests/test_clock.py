"""The clock seam: SystemClock, the testing switch, and FakeClock."""

from __future__ import annotations

import asyncio
import time

import pytest

from requests_resilience import SystemClock, is_testing, no_waits, set_testing
from requests_resilience.testing import FakeClock


def test_no_waits_skips_real_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside no_waits(), SystemClock.sleep never calls time.sleep; the flag is restored."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    assert not is_testing()
    with no_waits():
        assert is_testing()
        SystemClock().sleep(30)
    assert slept == []
    SystemClock().sleep(0.25)  # outside: a real sleep (recorded, not slept, here)
    assert slept == [0.25]
    assert not is_testing()


def test_asleep_skips_waits_in_testing_mode() -> None:
    """SystemClock.asleep honours no_waits() too; FakeClock.asleep records and advances."""
    fake = FakeClock()

    async def main() -> None:
        with no_waits():
            await SystemClock().asleep(3600)  # returns at once, or the test would hang
        await fake.asleep(2.5)

    asyncio.run(main())
    assert fake.sleeps == [2.5]
    assert fake.monotonic() == FakeClock().monotonic() + 2.5


def test_set_testing_toggles() -> None:
    """set_testing switches the flag for the process."""
    try:
        set_testing(True)
        assert is_testing()
    finally:
        set_testing(False)
    assert not is_testing()


def test_system_clock_reads_real_time() -> None:
    """SystemClock returns the real clocks and a random float in [0, 1)."""
    clock = SystemClock()
    assert abs(clock.time() - time.time()) < 1
    assert 0.0 <= clock.random() < 1.0
    assert clock.monotonic() <= time.monotonic()


def test_fake_clock_sleep_advances_and_records() -> None:
    """FakeClock.sleep moves both clocks at once and records the wait."""
    clock = FakeClock(start=10.0, wall=1000.0)
    clock.sleep(2.5)
    clock.sleep(-1)
    assert clock.monotonic() == 12.5
    assert clock.time() == 1002.5
    assert clock.sleeps == [2.5, -1]
    assert clock.slept == 2.5


def test_fake_clock_randomness_is_deterministic() -> None:
    """The same seed gives the same draws; random_value fixes them."""
    assert [FakeClock(seed=3).random() for _ in range(2)] == [FakeClock(seed=3).random()] * 2
    assert FakeClock(random_value=0.25).random() == 0.25
    with pytest.raises(ValueError, match="random_value"):
        FakeClock(random_value=1.0)
    with pytest.raises(ValueError, match="back"):
        FakeClock().advance(-1)

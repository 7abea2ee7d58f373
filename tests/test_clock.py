"""The clock seam: SystemClock, the testing switch, and FakeClock."""

from __future__ import annotations

import time

import pytest

from requests_resilience import SystemClock, is_testing, no_waits, set_testing
from requests_resilience.testing import FakeClock


def test_no_waits_skips_real_sleeps() -> None:
    """Inside no_waits(), SystemClock.sleep returns at once and the flag is restored."""
    assert not is_testing()
    start = time.monotonic()
    with no_waits():
        assert is_testing()
        SystemClock().sleep(30)
    assert time.monotonic() - start < 1
    assert not is_testing()


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

"""The checks every policy's options go through, with one wording for every policy.

Each policy checks its options once, when it is built, and raises `ConfigurationError`
naming the policy, the option, the range and the value it got::

    Retry timeout must be from 0 to 86400 seconds, got -1
"""

from __future__ import annotations

import math
from datetime import timedelta

from requests_resilience._errors import ConfigurationError

__all__ = ["count", "number", "ratio", "seconds"]


def seconds(owner: str, option: str, value: object, low: float, high: float) -> float:
    """A duration in seconds (a number or a `timedelta`) from `low` to `high`."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{owner} {option} must be a number of seconds or a timedelta, got {value!r}"
        raise ConfigurationError(msg)
    if not low <= value <= high:
        msg = f"{owner} {option} must be from {low:g} to {high:g} seconds, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


def number(owner: str, option: str, value: object, low: float, high: float) -> float:
    """A finite number from `low` to `high` (no unit)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{owner} {option} must be a number, got {value!r}"
        raise ConfigurationError(msg)
    if not low <= value <= high:
        msg = f"{owner} {option} must be from {low:g} to {high:g}, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


def count(owner: str, option: str, value: object, low: int, high: int) -> int:
    """An int (not a bool) from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{owner} {option} must be an int from {low} to {high}, got {value!r}"
        raise ConfigurationError(msg)
    return value


def ratio(owner: str, option: str, value: object) -> float:
    """A share more than 0.0 and at most 1.0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        msg = f"{owner} {option} must be a number more than 0.0 and at most 1.0, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)

"""`LazyCounter`: one of the library's counters, made when first needed on a new provider.

The counters of `_telemetry` (retries, breaker changes) and of the rate limit each keep
a one-entry cache keyed by the meter provider; the policies that count one thing off
their happy path (a fallback used, a chaos injection) share this one small class
instead of a cache each.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from requests_resilience import _telemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, MeterProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["LazyCounter"]


class LazyCounter:
    """A counter on the global meter provider, made again when the provider changes.

    Nothing is made, and `add` costs one check, while no SDK is configured.

    Args:
        name: the metric's name, e.g. ``"requests_resilience.fallbacks"``.
        unit: its unit, e.g. ``"{response}"``.
        description: one sentence for the metric's description.
    """

    __slots__ = ("_cached", "_description", "_lock", "_name", "_unit")

    def __init__(self, name: str, *, unit: str, description: str) -> None:
        self._name = name
        self._unit = unit
        self._description = description
        self._cached: tuple[MeterProvider, Counter] | None = None
        self._lock = threading.Lock()

    def add(self, amount: int, attributes: dict[str, AttributeValue]) -> None:
        """Count `amount` with `attributes` (nothing while no meter provider records)."""
        provider = _telemetry._meter_provider()
        if _telemetry.is_noop_meter_provider(provider):
            return
        cached = self._cached
        if cached is None or cached[0] is not provider:
            with self._lock:
                cached = self._cached
                if cached is None or cached[0] is not provider:
                    meter = provider.get_meter(
                        _telemetry.INSTRUMENTATION_NAME,
                        _telemetry.INSTRUMENTATION_VERSION,
                        schema_url=_telemetry.SCHEMA_URL,
                    )
                    counter = meter.create_counter(
                        self._name, unit=self._unit, description=self._description
                    )
                    cached = self._cached = (provider, counter)
        cached[1].add(amount, attributes)

"""`LazyCounter`: one of the library's counters, made when first needed on a new provider.

The policies that count one thing off their happy path (a fallback used, a chaos
injection) share this one small class over `_telemetry.PerProvider`, the per-provider
cache that the other modules' instruments use too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from requests_resilience import _telemetry

if TYPE_CHECKING:
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

    __slots__ = ("_counter",)

    def __init__(self, name: str, *, unit: str, description: str) -> None:
        self._counter = _telemetry.PerProvider(
            lambda meter: meter.create_counter(name, unit=unit, description=description)
        )

    def add(self, amount: int, attributes: dict[str, AttributeValue]) -> None:
        """Count `amount` with `attributes` (nothing while no meter provider records)."""
        counter = self._counter.get()
        if counter is not None:
            counter.add(amount, attributes)

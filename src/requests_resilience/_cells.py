"""Per-key state with a bound: the cells of the circuit breaker and the rate limit.

Both policies keep one small cell per key (per origin by default, per endpoint or per
API key if asked), made on first use. Keyed by something the traffic decides (an
endpoint with ids in it, a tenant), the number of keys has no bound of its own, so the
cells are kept in a `Cells` map of at most `max_keys`: when a new key would pass it, the
least recently used tenth is dropped. A dropped key that comes back starts afresh (a
closed breaker, a full bucket), which for a key idle that long is what it would be
anyway. Recency is a counter stamped on the cell at each use: no lock on the way in.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["DEFAULT_MAX_KEYS", "Cells"]

#: The default bound on the keys a policy keeps state for.
DEFAULT_MAX_KEYS = 10_000


class _Stamped(Protocol):
    used: int


C = TypeVar("C", bound=_Stamped)


class Cells(Generic[C]):
    """A map key -> cell, made on first use, holding at most `max_keys` cells.

    Args:
        max_keys: the most cells kept; a new key beyond it evicts the least recently
            used tenth (at least one).
        make: builds the cell of a new key.
    """

    __slots__ = ("_cells", "_lock", "_make", "_max_keys", "_tick")

    def __init__(self, max_keys: int, make: Callable[[str], C]) -> None:
        self._cells: dict[str, C] = {}
        self._lock = threading.Lock()
        self._make = make
        self._max_keys = max_keys
        self._tick = itertools.count(1).__next__

    def get(self, key: str) -> C:
        """The cell of `key`, made (and the oldest evicted, if full) when it is new."""
        cell = self._cells.get(key)
        if cell is None:
            cell = self._add(key)
        cell.used = self._tick()
        return cell

    def _add(self, key: str) -> C:
        with self._lock:
            cell = self._cells.get(key)
            if cell is not None:
                return cell
            if len(self._cells) >= self._max_keys:
                self._evict(max(1, self._max_keys // 10))
            cell = self._cells[key] = self._make(key)
            return cell

    def _evict(self, count: int) -> None:
        oldest = sorted(self._cells.items(), key=lambda item: item[1].used)[:count]
        for key, _ in oldest:
            del self._cells[key]

    @property
    def max_keys(self) -> int:
        """The most cells kept."""
        return self._max_keys

    def __len__(self) -> int:
        return len(self._cells)

    def __contains__(self, key: object) -> bool:
        return key in self._cells

    def keys(self) -> list[str]:
        """The keys held now, sorted."""
        with self._lock:
            return sorted(self._cells)

    def items(self) -> list[tuple[str, C]]:
        """A snapshot of (key, cell) pairs."""
        with self._lock:
            return list(self._cells.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

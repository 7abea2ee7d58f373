"""`Tally`: a count that the per-request path adds to without taking a lock.

A policy counts what it did (attempts sent, for `stats()`) on every request, from
every thread; a lock and an increment cost as much as the rest of the count's step.
``list.append`` is atomic (in CPython under the GIL, and in the free-threaded build
by the list's own lock), so `add` appends a marker; reading the value, or a full list
of markers, folds them into a number under the tally's lock.
"""

from __future__ import annotations

import threading

__all__ = ["Tally"]

#: Markers kept before `add` folds them: bounds a tally's memory to a few KiB.
_FOLD_AT = 512


class Tally:
    """A lock-free count for the hot path, folded when read.

    Example:
        >>> sent = Tally()
        >>> sent.add()
        >>> sent.add()
        >>> sent.value
        2
    """

    __slots__ = ("_folded", "_lock", "_marks")

    def __init__(self) -> None:
        self._marks: list[None] = []
        self._folded = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        """Count one (no lock, except once every few hundred calls)."""
        marks = self._marks
        marks.append(None)
        if len(marks) >= _FOLD_AT:
            self._fold()

    @property
    def value(self) -> int:
        """The count so far."""
        return self._fold()

    def take(self) -> int:
        """The count since the last `take` (or since made); counting starts again at 0.

        For an owner that folds the count into state of its own, under its own lock
        (the retry budget's successes).
        """
        with self._lock:
            marks = self._marks
            count = len(marks)
            del marks[:count]  # atomic: markers appended meanwhile stay for the next take
            taken = self._folded + count
            self._folded = 0
            return taken

    def _fold(self) -> int:
        with self._lock:
            marks = self._marks
            count = len(marks)
            del marks[:count]  # atomic: markers appended meanwhile stay for the next fold
            self._folded += count
            return self._folded

    def __repr__(self) -> str:
        return f"Tally({self.value})"

"""`Tally`: a count added to without a lock, exact when read."""

from __future__ import annotations

import threading

from requests_resilience._tally import _FOLD_AT, Tally


def test_it_counts_every_add() -> None:
    tally = Tally()
    assert tally.value == 0
    for _ in range(3):
        tally.add()
    assert tally.value == 3
    assert repr(tally) == "Tally(3)"


def test_reading_it_does_not_lose_or_double_a_count() -> None:
    tally = Tally()
    for _ in range(5):
        tally.add()
    assert tally.value == 5
    assert tally.value == 5  # folded once, read again
    tally.add()
    assert tally.value == 6


def test_its_memory_stays_bounded() -> None:
    tally = Tally()
    for _ in range(_FOLD_AT * 3 + 7):
        tally.add()
    assert len(tally._marks) < _FOLD_AT  # folded as it went
    assert tally.value == _FOLD_AT * 3 + 7


def test_threads_adding_at_once_and_a_reader_lose_nothing() -> None:
    tally = Tally()
    threads, each = 8, 5_000
    start = threading.Barrier(threads + 2)
    seen: list[int] = []

    def add() -> None:
        start.wait()
        for _ in range(each):
            tally.add()

    def read() -> None:
        start.wait()
        for _ in range(200):
            seen.append(tally.value)  # folds while the others append

    workers = [threading.Thread(target=add) for _ in range(threads)]
    reader = threading.Thread(target=read)
    for worker in [*workers, reader]:
        worker.start()
    start.wait()
    for worker in [*workers, reader]:
        worker.join()
    assert tally.value == threads * each
    assert seen == sorted(seen)  # a count never goes back


def test_take_gives_the_count_since_the_last_take_and_starts_again() -> None:
    tally = Tally()
    for _ in range(_FOLD_AT + 3):  # some of it folded on the way
        tally.add()
    assert tally.take() == _FOLD_AT + 3
    assert tally.take() == 0
    tally.add()
    assert tally.value == 1
    assert tally.take() == 1

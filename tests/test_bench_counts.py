"""The counts benchmark's own arithmetic, and its child's calls on each transport.

The counts themselves need valgrind and minutes (``./dev bench counts``); what can go
wrong without either is checked here: reading callgrind's totals, the per-call
figures, the page's tables, and that the child makes its calls on every transport.
"""

from __future__ import annotations

import pytest
from benchmarks import bench_counts

OUTPUT = """\
desc: I1 cache:         32768 B, 64 B, 8-way associative
cmd: python -m benchmarks.bench_counts --child requests preset cold 50
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
fl=???
summary: 1000 10 1 500 20 2 300 30 3
"""


def test_totals_are_read_from_the_summary_line_by_event_name() -> None:
    """(callgrind writes a ``totals:`` line as well; cachegrind only ``summary:``.)"""
    totals = bench_counts._totals(OUTPUT)
    assert totals == {
        "Ir": 1000,
        "I1mr": 10,
        "ILmr": 1,
        "Dr": 500,
        "D1mr": 20,
        "DLmr": 2,
        "Dw": 300,
        "D1mw": 30,
        "DLmw": 3,
    }


def test_one_call_is_a_runs_totals_over_its_calls() -> None:
    totals = bench_counts._totals(OUTPUT)
    counts = bench_counts.per_call(totals, 10)
    assert counts == {"instructions": 100.0, "l1_misses": 6.0, "ll_misses": 0.6}


def test_trailing_zero_counts_left_out_by_callgrind_are_zeros() -> None:
    totals = bench_counts._totals("events: Ir I1mr ILmr\ntotals: 500 7\n")
    assert totals == {"Ir": 500, "I1mr": 7, "ILmr": 0}


def test_the_page_tables_carry_the_machine_and_every_row() -> None:
    data = {
        "machine": {"date": "2026-12-06 22:00 UTC", "platform": "Linux", "python": "3.11.7"},
        "calls": 300,
        "warmup": 50,
        "counts": {
            "requests cold": {
                "(bare stub)": {"instructions": 120000.4, "l1_misses": 3000.0, "ll_misses": 0.0},
                "preset": {"instructions": 82452.0, "l1_misses": 4120.0, "ll_misses": 1203.4},
            }
        },
    }
    text = bench_counts.markdown(data)
    assert "Run 2026-12-06 22:00 UTC on Linux, Python 3.11.7" in text
    assert "| preset | 82,452 | 4,120 | 1,203 |" in text
    assert "| the bare stub itself | 120,000 | 3,000 | 0 |" in text
    assert "| requests cold: per call above the bare stub | instructions | L1 misses |" in text


@pytest.mark.parametrize("transport", ["requests", "httpx", "httpx-async"])
@pytest.mark.parametrize("situation", ["hot", "cold"])
def test_the_child_makes_its_calls_on_every_transport(transport: str, situation: str) -> None:
    """What runs under valgrind runs without it: the preset, a few calls, no error."""
    bench_counts._child(transport, "preset", situation, 2)

"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (or ``./dev bench [NAME ...]``).

Each benchmark prints a table and writes ``benchmarks/results/NAME.json`` with the
machine and the date; all of them compare against bare ``requests`` or the anchors
(urllib3 Retry, tenacity, stamina, backoff, pybreaker, the vendor's sample loop) in the
same run, as ratios, because this kind of machine is noisy.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

import structlog

BENCHMARKS = {
    "library": "benchmarks.bench_library",
    "overhead": "benchmarks.bench_overhead",
    "retry": "benchmarks.bench_retry",
    "breaker": "benchmarks.bench_breaker",
    "ratelimit": "benchmarks.bench_ratelimit",
    "wire": "benchmarks.bench_wire",
    "concurrency": "benchmarks.bench_concurrency",
    "hedging": "benchmarks.bench_hedging",
    "counts": "benchmarks.bench_counts",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(BENCHMARKS)}; default: all")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    # The libraries under test log every retry; a benchmark reports numbers instead.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    for name in args.names or list(BENCHMARKS):
        print(f"\n=== {name} ===", flush=True)
        began = time.monotonic()
        module = importlib.import_module(BENCHMARKS[name])
        if name in {"overhead", "library", "wire", "counts"}:
            module.main([])  # its own flags are not ours
        else:
            module.main()
        print(f"({name} took {time.monotonic() - began:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Counts: instructions and cache misses per call, under valgrind's callgrind.

A timing on two shared cores moves by a microsecond from run to run; the number of
machine instructions a call executes, and the cache misses of a simulated core, do
not (to within a few per cent, with Python's hash seed fixed and its cyclic garbage
collector off). This benchmark counts them for each call made through the transport
(``PipelineAdapter.send``, ``ResilientTransport.handle_request``, the async one) and
for nothing else: the call goes through `operator.methodcaller`, and callgrind collects
only inside that C function (``--toggle-collect=methodcaller_call``), so neither the
start-up nor the application's own work around the calls is counted, while the
simulated caches see all of it. Two situations:

  hot    the calls back to back, as `bench_library` times them (the requests made
         beforehand): what the call touches is in the caches already
  cold   before each call, the application does the work of one other request
         (``Session.get`` of another session, ``Client.get`` of another httpx client,
         over a stub): the caches are as a call finds them in a real client, where
         the wait for the network and the application's own code come between two
         calls

The cold counts are the closest noise-free figure for the cost on the wire: there a
call runs with caches its predecessor did not leave warm, and every function, object
and branch it touches costs a miss as well as its instructions (`bench_wire` measures
the time; the benchmarks page shows both). The figures are per call, above the bare
stub's of the same transport and situation (the stub's own are shown too).

The simulated core: 32 KiB L1 instruction and data caches (8-way, 64-byte lines) and,
as the last level (callgrind simulates two), a 512 KiB cache: the second level of one
core of this machine's processor, which the application's work between two calls
evicts where an 8 MiB third level would not. Fixed, so that counts from different
machines compare. An async
call is driven inside the measured C call by ``coroutine.send(None)``: over the stub it
never waits, so it runs to its end there.

Run: ``./dev bench counts`` (installs Debian's valgrind when missing; about five
minutes on two cores); writes ``benchmarks/results/counts.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import operator
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import ensure_debian_binary, table, write
from benchmarks.plot import DOCS_ASSETS

CALLS = 300
WARMUP = 50
#: The simulated caches (size, associativity, line size): see the module docstring.
CACHES = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=524288,8,64")
#: (transport, situation, variants) run by default.
PLAN: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "requests",
        "cold",
        (
            "empty",
            "StatusErrors",
            "Retry",
            "CircuitBreaker",
            "RateLimit",
            "APIKeyAuth",
            "Tracing",
            "preset",
        ),
    ),
    ("requests", "hot", ("empty", "preset")),
    ("httpx", "cold", ("empty", "preset")),
    ("httpx", "hot", ("empty", "preset")),
    ("httpx-async", "cold", ("empty", "preset")),
)


# --- the child: one configuration, under valgrind ---------------------------------------


def _child(transport: str, variant: str, situation: str, calls: int) -> None:
    """Make WARMUP calls, then `calls` measured ones (run under valgrind)."""
    from benchmarks import bench_library as lib

    pipeline = None if variant == "bare" else lib.singles()[variant]()
    cold = situation == "cold"
    if transport == "requests":
        _requests_calls(lib, pipeline, cold, calls)
    elif transport == "httpx":
        _httpx_calls(lib, pipeline, cold, calls)
    else:
        asyncio.run(_async_calls(lib, pipeline, cold, calls))


def _requests_calls(lib: Any, pipeline: Any, cold: bool, calls: int) -> None:
    import requests

    stub = lib.StubAdapter()
    adapter = stub if pipeline is None else lib.PipelineAdapter(pipeline, transport=stub)
    session = requests.Session()
    session.trust_env = False  # no environment or netrc look-ups: the same work each call
    other = requests.Session()
    other.trust_env = False
    other.mount("https://", lib.StubAdapter())
    # Hot, every request is made before the calls: nothing runs between two of them.
    made = [] if cold else [_prepared(session) for _ in range(WARMUP + calls)]
    for number in range(WARMUP + calls):
        if cold:
            other.get(lib.URL)
        request = _prepared(session) if cold else made[number]
        if number < WARMUP:
            adapter.send(request, timeout=30)
        else:  # the measured call: counted inside methodcaller only
            operator.methodcaller("send", request, timeout=30)(adapter)


def _prepared(session: Any) -> Any:
    import requests

    from benchmarks.bench_library import URL

    return session.prepare_request(requests.Request("GET", URL))


def _httpx_calls(lib: Any, pipeline: Any, cold: bool, calls: int) -> None:
    import httpx

    from requests_resilience.httpx import ResilientTransport

    stub = lib.StubTransport()
    transport = stub if pipeline is None else ResilientTransport(pipeline, stub)
    client = httpx.Client()
    other = httpx.Client(transport=lib.StubTransport())
    made = [] if cold else [client.build_request("GET", lib.URL) for _ in range(WARMUP + calls)]
    for number in range(WARMUP + calls):
        if cold:
            other.get(lib.URL)
        request = client.build_request("GET", lib.URL) if cold else made[number]
        if number < WARMUP:
            transport.handle_request(request)
        else:
            operator.methodcaller("handle_request", request)(transport)


async def _async_calls(lib: Any, pipeline: Any, cold: bool, calls: int) -> None:
    import httpx

    from requests_resilience.httpx import AsyncResilientTransport

    stub = lib.StubTransport()
    transport = stub if pipeline is None else AsyncResilientTransport(pipeline, stub)
    client = httpx.AsyncClient()
    other = httpx.AsyncClient(transport=lib.StubTransport())
    step = operator.methodcaller("send", None)
    made = [] if cold else [client.build_request("GET", lib.URL) for _ in range(WARMUP + calls)]
    for number in range(WARMUP + calls):
        if cold:
            await other.get(lib.URL)
        request = client.build_request("GET", lib.URL) if cold else made[number]
        if number < WARMUP:
            await transport.handle_async_request(request)
            continue
        coroutine = transport.handle_async_request(request)
        try:
            step(coroutine)  # the measured call: the whole coroutine, over the stub
        except StopIteration:
            continue
        msg = "an async call over the stub waited: it cannot be counted whole"
        raise RuntimeError(msg)


# --- the parent: the runs, the differences ----------------------------------------------


def _run(valgrind: str, config: tuple[str, str, str]) -> dict[str, float]:
    """One child run's counts per measured call: instructions, L1 and LL misses."""
    transport, variant, situation = config
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            valgrind,
            "--tool=callgrind",
            "--cache-sim=yes",
            *CACHES,
            "--collect-atstart=no",
            "--toggle-collect=methodcaller_call",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.bench_counts",
            "--child",
            transport,
            variant,
            situation,
            str(CALLS),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, env=env, capture_output=True)
        return per_call(_totals(out.read_text()), CALLS)


def _totals(text: str) -> dict[str, int]:
    """The totals of a callgrind (or cachegrind) output: event name to count."""
    lines = text.splitlines()
    events = next(line for line in lines if line.startswith("events:")).split()[1:]
    summary = next(line for line in lines if line.startswith(("summary:", "totals:")))
    counts = list(map(int, summary.split()[1:]))
    counts += [0] * (len(events) - len(counts))  # trailing zero counts may be left out
    return dict(zip(events, counts, strict=True))


def per_call(totals: dict[str, int], calls: int) -> dict[str, float]:
    """What one call costs: a run's totals over its measured calls.

    Returns the instructions (``Ir``), the L1 misses (instruction and data, reads and
    writes) and the last-level misses per call.
    """

    def each(*names: str) -> float:
        return sum(totals.get(n, 0) for n in names) / calls

    return {
        "instructions": each("Ir"),
        "l1_misses": each("I1mr", "D1mr", "D1mw"),
        "ll_misses": each("ILmr", "DLmr", "DLmw"),
    }


def measure(valgrind: str, jobs: int = 2) -> dict[str, dict[str, dict[str, float]]]:
    """Every configuration of `PLAN` (bare stubs included): ``{row: {variant: counts}}``.

    A row is ``"transport situation"``; its variants' counts are above its bare stub's,
    and ``"(bare stub)"`` holds the stub's own (with the application's request, when
    cold).
    """
    configs = [
        (transport, variant, situation)
        for transport, situation, variants in PLAN
        for variant in ("bare", *variants)
    ]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {config: pool.submit(_run, valgrind, config) for config in configs}
        counts = {config: future.result() for config, future in futures.items()}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for transport, situation, variants in PLAN:
        bare = counts[(transport, "bare", situation)]
        row = out[f"{transport} {situation}"] = {"(bare stub)": bare}
        for variant in variants:
            mine = counts[(transport, variant, situation)]
            row[variant] = {key: mine[key] - bare[key] for key in mine}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_counts")
    parser.add_argument("--child", nargs=4, metavar=("TRANSPORT", "VARIANT", "SITUATION", "N"))
    args = parser.parse_args(argv)
    if args.child:
        transport, variant, situation, calls = args.child
        gc.disable()  # a collection would land on different calls in different runs
        _child(transport, variant, situation, int(calls))
        return {}
    valgrind = ensure_debian_binary("valgrind", ("valgrind",), why="bench counts")
    print(f"counts per call above the bare stub ({CALLS} calls, under callgrind):")
    rows = measure(valgrind)
    out = {"counts": rows, "calls": CALLS, "warmup": WARMUP, "caches": list(CACHES)}
    print(_report(rows))
    path = write("counts", out)
    tables = DOCS_ASSETS / "counts-tables.md"
    tables.write_text(markdown(json.loads(path.read_text())))
    print("wrote", path, tables)
    return out


def markdown(data: dict[str, Any]) -> str:
    """The benchmarks page's tables of a counts run, with its machine and date."""
    machine = data["machine"]
    lines = [
        f"Run {machine['date']} on {machine['platform']}, Python {machine['python']};"
        f" {data['calls']} calls counted per configuration after {data['warmup']},"
        " under callgrind.",
        "",
    ]
    for name, variants in data["counts"].items():
        lines += [
            f"| {name}: per call above the bare stub | instructions | L1 misses | L2 misses |",
            "|---|---|---|---|",
        ]
        for variant, c in variants.items():
            label = "the bare stub itself" if variant == "(bare stub)" else variant
            lines.append(
                f"| {label} | {c['instructions']:,.0f} | {c['l1_misses']:,.0f}"
                f" | {c['ll_misses']:,.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _report(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    for name, variants in rows.items():
        body = [
            [variant, round(c["instructions"]), round(c["l1_misses"]), round(c["ll_misses"], 1)]
            for variant, c in variants.items()
        ]
        lines += [table([name, "instructions", "L1 misses", "L2 misses"], body), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])

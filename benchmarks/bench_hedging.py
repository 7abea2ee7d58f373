"""Hedging against a heavy tail: 2% of the answers take a second, the rest a millisecond.

A threaded HTTP/1.1 server on loopback answers ``GET /item?id=N``. Whether an answer
is slow is decided by a hash of the call id and how many times the server has seen it
(``sha256("N:k")``): the same requests are slow in every scenario, and a hedge (the same
id, seen again) is slow only if its own hash says so, as a server's stalls (a GC pause,
a cold cache, a lost packet) strike requests, not calls. Slow: 1 s; fast: 1 ms.

Scenarios (the same ``CALLS`` ids in each; the server's counts are reset in between):
  requests, 1 thread     a requests.Session, calls back to back
  requests, 4 threads    four threads share one Session, the ids split between them
  httpx async, 1 task    an httpx.AsyncClient (AsyncResilientTransport), back to back
each without hedging, with a fixed delay (the 95th percentile of the fast path,
measured by a warm-up without hedging), and with ``LatencyPercentile(0.95)``; the
requests clients also with a delay of 0 (parallel mode: every call sent twice), the
other end of the trade. The server runs in a process of its own, as a real one would:
its threads would otherwise compete with the client's for one GIL.

Reported: p50, p99 and max of the calls' latency, p99 / p50 (its own, and over the p50
of the same client without hedging: the fast path), and the extra requests the server
saw (in % of the calls). The target (p99 within 1.5x of the fast path's p50 for at most
5% extra) is checked and printed as met or not. The fixed delay is the 95th percentile
of the fast answers of the same client without hedging, which runs first.

Run: ``python -m benchmarks hedging`` (or this file); about a minute and a half.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import multiprocessing
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import requests

from benchmarks._common import table, write
from requests_resilience import Hedging, LatencyPercentile, Pipeline, StatusErrors, mount
from requests_resilience.httpx import AsyncResilientTransport

CALLS = 1000
SLOW_SHARE = 0.02
SLOW = 1.0
FAST = 0.001
THREADS = 4


def _serve(port_out: Any) -> None:
    """The server process: its own interpreter, so its threads do not share our GIL."""
    seen: Counter[str] = Counter()
    counts = {"requests": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK

        def do_GET(self) -> None:
            path, _, call_id = self.path.partition("?id=")
            if path == "/_stats":
                self._answer(str(counts["requests"]).encode())
                return
            if path == "/_reset":
                with lock:
                    seen.clear()
                    counts["requests"] = 0
                self._answer(b"0")
                return
            with lock:
                counts["requests"] += 1
                seen[call_id] += 1
                nth = seen[call_id]
            time.sleep(SLOW if is_slow(call_id, nth) else FAST)
            self._answer(b'{"ok": true}')

        def _answer(self, body: bytes) -> None:
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # a hedged client gave up on this one (async: cancelled)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    port_out.send(server.server_address[1])
    server.serve_forever(0.05)


class TailServer:
    """The loopback server with a deterministic heavy tail, in a process of its own."""

    def __init__(self) -> None:
        receive, send = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(send,), daemon=True
        )
        self.process.start()
        self.port = int(receive.recv())
        self.control = requests.Session()

    def url(self, call_id: int | str) -> str:
        return f"http://127.0.0.1:{self.port}/item?id={call_id}"

    @property
    def requests(self) -> int:
        """Requests served since the last reset."""
        return int(self.control.get(f"http://127.0.0.1:{self.port}/_stats").text)

    def reset(self) -> None:
        self.control.get(f"http://127.0.0.1:{self.port}/_reset").raise_for_status()

    def close(self) -> None:
        self.control.close()
        self.process.terminate()
        self.process.join()


def is_slow(call_id: str, nth: int) -> bool:
    digest = hashlib.sha256(f"{call_id}:{nth}".encode()).digest()
    return int.from_bytes(digest[:4], "big") < SLOW_SHARE * 2**32


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(share * len(ordered) + 0.5) - 1))]


def _sync_run(server: TailServer, policy: Hedging | None, threads: int) -> list[float]:
    pipeline = Pipeline(StatusErrors(), *([policy] if policy is not None else []))
    latencies: list[float] = []
    lock = threading.Lock()
    with requests.Session() as session:
        mount(session, "http://", pipeline, pool_maxsize=64)

        def worker(ids: range) -> None:
            mine = []
            for call_id in ids:
                began = time.perf_counter()
                session.get(server.url(call_id)).raise_for_status()
                mine.append(time.perf_counter() - began)
            with lock:
                latencies.extend(mine)

        parts = [range(i, CALLS, threads) for i in range(threads)]
        workers = [threading.Thread(target=worker, args=(part,)) for part in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return latencies


def _async_run(server: TailServer, policy: Hedging | None, threads: int) -> list[float]:
    pipeline = Pipeline(StatusErrors(), *([policy] if policy is not None else []))

    async def main() -> list[float]:
        latencies = []
        transport = AsyncResilientTransport(pipeline)
        async with httpx.AsyncClient(transport=transport) as client:
            for call_id in range(CALLS):
                began = time.perf_counter()
                (await client.get(server.url(call_id))).raise_for_status()
                latencies.append(time.perf_counter() - began)
        return latencies

    return asyncio.run(main())


Runner = Callable[[TailServer, "Hedging | None", int], list[float]]


def _fast_p95(latencies: list[float]) -> float:
    """The 95th percentile of the fast answers of a run without hedging."""
    return percentile([x for x in latencies if x < SLOW / 2], 0.95)


def _scenario(
    server: TailServer,
    label: str,
    run: Runner,
    threads: int,
    hedging: str,
    delay: float,
    fast_p50: float,
) -> tuple[dict[str, Any], list[float]]:
    policy: Hedging | None = None
    if hedging == "fixed":
        policy = Hedging(delay=delay, budget=None, max_workers=32)
    elif hedging == "parallel":
        policy = Hedging(delay=0.0, budget=None, max_workers=32)
    elif hedging == "adaptive":
        policy = Hedging(delay=LatencyPercentile(0.95, initial=delay), budget=None, max_workers=32)
    server.reset()
    began = time.monotonic()
    latencies = run(server, policy, threads)
    took = time.monotonic() - began
    if policy is not None:
        policy.close()
    sent = server.requests
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    result: dict[str, Any] = {
        "client": label,
        "hedging": hedging,
        "delay_ms": None
        if policy is None
        else round(
            1000 * (delay if hedging == "fixed" else policy._current_delay() or 0.0),
            3,
        ),
        "calls": len(latencies),
        "p50_ms": round(1000 * p50, 3),
        "p99_ms": round(1000 * p99, 3),
        "max_ms": round(1000 * max(latencies), 3),
        "mean_ms": round(1000 * statistics.fmean(latencies), 3),
        "p99_over_p50": round(p99 / p50, 2),
        "p99_over_unhedged_p50": round(p99 / (fast_p50 or p50), 2),
        "extra_requests_pct": round(100 * (sent - CALLS) / CALLS, 2),
        "seconds": round(took, 1),
    }
    extra = 100 * (sent - CALLS) / CALLS
    result["target_met"] = p99 / (fast_p50 or p50) <= 1.5 and extra <= 5.0
    return result, latencies


def main() -> dict[str, Any]:
    server = TailServer()
    try:
        slow_calls = sum(is_slow(str(n), 1) for n in range(CALLS))
        print(
            f"{CALLS} calls, {slow_calls} slow first answers ({SLOW:g} s), fast {FAST * 1000:g} ms"
            " on the server; fixed delay = the client's own fast-path p95 without hedging",
            flush=True,
        )
        rows = []
        clients: list[tuple[str, Runner, int]] = [
            ("requests, 1 thread", _sync_run, 1),
            (f"requests, {THREADS} threads", _sync_run, THREADS),
            ("httpx async, 1 task", _async_run, 1),
        ]
        for label, run, threads in clients:
            kinds = ("none", "fixed", "adaptive") + (("parallel",) if run is _sync_run else ())
            delay = fast_p50 = 0.0
            for hedging in kinds:
                row, latencies = _scenario(server, label, run, threads, hedging, delay, fast_p50)
                if hedging == "none":  # the delay and the yardstick of this client
                    delay, fast_p50 = _fast_p95(latencies), percentile(latencies, 0.5)
                rows.append(row)
                print(
                    f"  {label:22} {hedging:9} p50 {row['p50_ms']:7.2f} ms  "
                    f"p99 {row['p99_ms']:8.2f} ms  extra {row['extra_requests_pct']:5.2f}%",
                    flush=True,
                )
    finally:
        server.close()
    headers = ["client", "hedging", "delay ms", "p50 ms", "p99 ms", "max ms", "p99/p50"]
    headers += ["p99/unhedged p50"]
    headers += ["extra %", "target"]
    print(
        table(
            headers,
            [
                [
                    r["client"],
                    r["hedging"],
                    "-" if r["delay_ms"] is None else r["delay_ms"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["max_ms"],
                    r["p99_over_p50"],
                    r["p99_over_unhedged_p50"],
                    r["extra_requests_pct"],
                    "met" if r["target_met"] else "not met",
                ]
                for r in rows
            ],
        )
    )
    data = {
        "calls": CALLS,
        "slow_share": SLOW_SHARE,
        "slow_seconds": SLOW,
        "fast_seconds": FAST,
        "slow_first_answers": slow_calls,
        "scenarios": rows,
    }
    path = write("hedging", data)
    print(f"wrote {path}")
    return data


if __name__ == "__main__":
    main()

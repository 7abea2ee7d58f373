"""The fleet-wide concurrency limit: 4 processes x 8 threads, 5 permits in a real Redis.

A threading HTTP server on loopback answers ``GET /work`` after 50 ms and records how
many requests it is serving at once. 4 processes x 8 threads send back to back for
``SECONDS`` each, through:

  limit (Redis)      ``StatusErrors, ConcurrencyLimit(5, redis_url=..., lease=3)``:
                     one set of 5 permits in a real ``redis-server`` for the fleet;
  limit, 0.1 s wait  the same with ``max_wait=0.1``: callers that cannot get a
                     permit in 0.1 s are refused locally (and send nothing);
  no limit           ``StatusErrors`` only: what the server would see without it.

Reported: the most requests in flight at once at the server (target: <= 5 with the
limit), the requests served per second (5 permits / 50 ms = 100/s at best), and the
local refusals. Then a process holding all 5 permits (on ``GET /hang``, which does not
answer) is killed with SIGKILL, and the bench measures how long until its permits are
free again in Redis and a new caller is admitted (target: <= the lease, 3 s).

Run: ``python -m benchmarks concurrency`` (or this file).
"""

from __future__ import annotations

import http.server
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import redis
import requests
import structlog

from benchmarks._common import table, write
from requests_resilience import (
    Call,
    ConcurrencyLimit,
    ConcurrencyLimitError,
    Next,
    Pipeline,
    StatusErrors,
)
from requests_resilience import mount as mount_pipeline

LIMIT = 5
PROCESSES = 4
THREADS = 8
SECONDS = 6.0
SERVICE = 0.05  # seconds the server takes per request
LEASE = 3.0
KEY = "bench"
REDIS_KEY = f"requests_resilience:concurrency:concurrency_limit:{{{KEY}}}"


# -- the server ------------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.served = 0
        self.hanging = 0
        self.release = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.now = self.most = self.served = 0


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 256
    stats: _Stats


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body meet a 40 ms delayed ACK
    server: _Server

    def do_GET(self) -> None:
        stats = self.server.stats
        if self.path == "/hang":
            with stats.lock:
                stats.hanging += 1
            stats.release.wait(120)
            with stats.lock:
                stats.hanging -= 1
        else:
            with stats.lock:
                stats.now += 1
                stats.most = max(stats.most, stats.now)
            time.sleep(SERVICE)
            with stats.lock:
                stats.now -= 1
                stats.served += 1
        body = b"ok"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the caller was killed (the SIGKILL test): nobody reads the answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def _start_server() -> tuple[_Server, str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stats = _Stats()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- a throwaway redis-server ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    executable = shutil.which("redis-server")
    if executable is None:
        msg = "redis-server not found: apt-get install redis-server"
        raise RuntimeError(msg)
    port = _free_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    msg = "redis-server did not start"
    raise RuntimeError(msg)


# -- the workers -------------------------------------------------------------------------


def _pipeline(redis_url: str | None, max_wait: float) -> Pipeline:
    if redis_url is None:
        return Pipeline(StatusErrors())
    limit = ConcurrencyLimit(
        LIMIT, key=KEY, redis_url=redis_url, lease=LEASE, max_wait=max_wait, max_queue=THREADS
    )
    return Pipeline(StatusErrors(), limit)


def _worker(job: tuple[str, str | None, float, float, float]) -> dict[str, int]:
    """8 threads sending back to back from `start` to `end` (wall clock); their counts."""
    url, redis_url, max_wait, start, end = job
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    session = requests.Session()
    mount_pipeline(session, "http://", _pipeline(redis_url, max_wait), pool_maxsize=THREADS)

    def loop() -> None:
        while time.time() < end:
            try:
                session.get(url + "/work", timeout=30).close()
                outcome = "ok"
            except ConcurrencyLimitError:
                outcome = "refused"
            with lock:
                counts[outcome] += 1

    time.sleep(max(0.0, start - time.time()))
    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    session.close()
    return dict(counts)


def _victim(url: str, redis_url: str) -> None:
    """Take every permit on ``/hang`` (which never answers) and wait to be killed."""
    session = requests.Session()
    mount_pipeline(session, "http://", _pipeline(redis_url, 60.0), pool_maxsize=THREADS)
    threads = [
        threading.Thread(target=lambda: session.get(url + "/hang", timeout=120), daemon=True)
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    threading.Event().wait()


# -- the scenarios -----------------------------------------------------------------------


def _scenario(
    name: str, pool: Any, server: _Server, url: str, redis_url: str | None, max_wait: float
) -> dict[str, Any]:
    if redis_url is not None:
        with redis.Redis.from_url(redis_url) as client:
            client.flushall()
    server.stats.reset()
    start = time.time() + 1.0
    end = start + SECONDS
    totals: Counter[str] = Counter()
    for counts in pool.map(_worker, [(url, redis_url, max_wait, start, end)] * PROCESSES):
        totals.update(counts)
    stats = server.stats
    return {
        "scenario": name,
        "max_in_flight": stats.most,
        "served": stats.served,
        "served_per_second": stats.served / SECONDS,
        "of_ideal": stats.served / SECONDS / (LIMIT / SERVICE) if redis_url else None,
        "ok_calls": totals.get("ok", 0),
        "refused_locally": totals.get("refused", 0),
    }


def _kill_one(server: _Server, url: str, redis_url: str) -> dict[str, Any]:
    """SIGKILL a process that holds every permit; time until they are free and reused."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    context = multiprocessing.get_context("spawn")
    victim = context.Process(target=_victim, args=(url, redis_url))
    victim.start()

    def live() -> int:
        return int(client.zcount(REDIS_KEY, f"({time.time()!r}", "+inf"))

    deadline = time.monotonic() + 30
    while (live() < LIMIT or server.stats.hanging < LIMIT) and time.monotonic() < deadline:
        time.sleep(0.005)
    held = live()
    time.sleep(LEASE / 2)  # at least one renewal of the victim's leases has happened
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.time()
    victim.join(10)

    admitted: list[float] = []

    def record(call: Call, next: Next) -> requests.Response:
        admitted.append(time.time())
        return next(call)

    probe_limit = ConcurrencyLimit(LIMIT, key=KEY, redis_url=redis_url, lease=LEASE, max_wait=30)
    session = requests.Session()
    mount_pipeline(session, "http://", Pipeline(StatusErrors(), probe_limit, record))
    probe = threading.Thread(target=lambda: session.get(url + "/work", timeout=30))
    probe.start()
    while live() > 0 and time.time() < killed_at + 30:
        time.sleep(0.002)
    freed_at = time.time()
    probe.join(30)
    session.close()
    server.stats.release.set()
    return {
        "permits_held_by_victim": held,
        "lease_s": LEASE,
        "permits_free_after_s": freed_at - killed_at,
        "next_caller_admitted_after_s": admitted[0] - killed_at if admitted else None,
        "within_lease": freed_at - killed_at <= LEASE,
    }


def main(selected: list[str] | None = None) -> dict[str, Any]:
    """Run the scenarios and the kill test, print tables, write results/concurrency.json."""
    del selected
    process, redis_url = _start_redis()
    server, url = _start_server()
    try:
        context = multiprocessing.get_context("spawn")
        with context.Pool(PROCESSES) as pool:
            pool.map(time.sleep, [0.0] * PROCESSES)  # warm the workers up
            rows = [
                _scenario("limit (Redis)", pool, server, url, redis_url, 10.0),
                _scenario("limit, 0.1 s wait", pool, server, url, redis_url, 0.1),
                _scenario("no limit", pool, server, url, None, 10.0),
            ]
        kill = _kill_one(server, url, redis_url)
    finally:
        server.stats.release.set()
        server.shutdown()
        process.terminate()
        process.wait(timeout=5)
    print(
        f"\nConcurrency limit: {PROCESSES} processes x {THREADS} threads, {LIMIT} permits "
        f"fleet-wide in Redis, {SERVICE * 1000:g} ms per request, {SECONDS:g} s each\n"
    )
    print(
        table(
            ["scenario", "max in flight", "served/s", "of ideal %", "ok calls", "refused"],
            [
                [
                    r["scenario"],
                    r["max_in_flight"],
                    r["served_per_second"],
                    "-" if r["of_ideal"] is None else 100 * r["of_ideal"],
                    r["ok_calls"],
                    r["refused_locally"],
                ]
                for r in rows
            ],
        )
    )
    print(
        f"\nSIGKILL of a process holding {kill['permits_held_by_victim']} permits "
        f"(lease {LEASE:g} s): free after {kill['permits_free_after_s']:.2f} s, the next "
        f"caller admitted after {kill['next_caller_admitted_after_s']:.2f} s"
    )
    data = {
        "limit": LIMIT,
        "processes": PROCESSES,
        "threads": THREADS,
        "seconds": SECONDS,
        "service_s": SERVICE,
        "targets": {"max_in_flight_at_most": LIMIT, "permits_back_within_s": LEASE},
        "results": rows,
        "kill": kill,
    }
    path = write("concurrency", data)
    print(f"\nwritten to {path}")
    return data


if __name__ == "__main__":
    main()

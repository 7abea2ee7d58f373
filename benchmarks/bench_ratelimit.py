"""The shared rate limit: a fleet on one API key, paced by one bucket in Redis.

Against the fake Vinci server on loopback, configured with ``R`` requests per second per
key (a fixed window of 1 s, ``X-RateLimit-*`` headers, 429 without ``Retry-After``, as
Vinci documents it). 4 processes x 4 threads share one key and send back to back for
10 s, through:

  shared limiter  ``StatusErrors, Retry, RateLimit.per_second(R, redis_url=...), auth``:
                  one bucket in a real ``redis-server`` for the whole fleet;
  shared, 2R      the same limiter told twice the real limit: it learns the real one
                  from ``X-RateLimit-Limit`` (and 429s, if any) and holds to it;
  2R, headers off the same, with ``follow_headers=False``: only the 429s teach it (the
                  CUBIC drop and climb), so some 429s are the price of learning;
  retry alone     ``StatusErrors, Retry, auth``: each caller finds the limit by hitting
                  it, and waits for ``X-RateLimit-Reset`` on its own.

Reported: the server's 429s as a share of the requests it received (target < 2 %), and
the 200s per second as a share of ``R`` (target >= 90 %).

Run: ``python -m benchmarks ratelimit`` (or this file).
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import socket
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
    APIError,
    APIKeyAuth,
    Call,
    Next,
    Pipeline,
    RateLimitError,
    Retry,
    StatusErrors,
)
from requests_resilience import mount as mount_pipeline
from requests_resilience._ratelimit import RateLimit, rate_limit_key_for
from requests_resilience.testing import FakeVinciServer, RateLimitConfig

R = 20  # requests per second per key, at the server
PROCESSES = 4
THREADS = 4
SECONDS = 10.0
PATH = "/billing/balance"


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
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
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


# -- one worker process ---------------------------------------------------------------


def _worker(job: tuple[str, str, str | None, float, bool, float, float]) -> dict[str, int]:
    """4 threads sending back to back from `start` to `end` (wall clock); their counts."""
    base_url, api_key, redis_url, configured, headers, start, end = job
    # The retry-alone runs log a warning per retry: keep the table readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(call: Call, next: Next) -> requests.Response:
        response = next(call)
        if time.time() < end:
            with lock:
                counts[str(response.status_code)] += 1
        return response

    policies: list[Any] = [
        StatusErrors(),
        Retry(max_attempts=5, initial_delay=0.05, max_delay=1.0, timeout=5.0),
    ]
    if redis_url is not None:
        policies.append(
            RateLimit.per_second(
                configured,
                key=rate_limit_key_for(api_key),
                redis_url=redis_url,
                follow_headers=headers,
            )
        )
    policies += [count, APIKeyAuth(api_key)]
    pipeline = Pipeline(*policies)
    session = requests.Session()
    mount_pipeline(session, base_url + "/", pipeline, pool_maxsize=THREADS * 2)

    def loop() -> None:
        while time.time() < end:
            try:
                session.get(base_url + PATH, timeout=5).close()
            except RateLimitError as exc:
                if exc.response is not None:
                    with lock:
                        counts["failed_calls"] += 1
                    continue
                # Refused locally (nothing sent): a well-behaved caller waits as told.
                with lock:
                    counts["refused_locally"] += 1
                time.sleep(min(exc.retry_after or 0.0, max(0.0, end - time.time())))
            except APIError:
                with lock:
                    counts["failed_calls"] += 1

    time.sleep(max(0.0, start - time.time()))
    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    session.close()
    return dict(counts)


def _scenario(
    name: str,
    pool: Any,
    redis_url: str | None,
    configured: float = R,
    *,
    headers: bool = True,
) -> dict[str, Any]:
    if redis_url is not None:
        with redis.Redis.from_url(redis_url) as client:
            client.flushall()  # each scenario starts with a fresh bucket: nothing learnt
    config = RateLimitConfig(requests=R, period=1.0)
    with FakeVinciServer(rate_limit=config) as server:
        start = time.time() + 1.0
        end = start + SECONDS
        job = (server.base_url, server.api_key, redis_url, configured, headers, start, end)
        jobs = [job] * PROCESSES
        totals: Counter[str] = Counter()
        for counts in pool.map(_worker, jobs):
            totals.update(counts)
    ok = totals.get("200", 0)
    throttled = totals.get("429", 0)
    sent = sum(v for k, v in totals.items() if k.isdigit())
    return {
        "scenario": name,
        "requests": sent,
        "ok": ok,
        "throttled_429": throttled,
        "share_429": throttled / sent if sent else 0.0,
        "ok_per_second": ok / SECONDS,
        "share_of_limit": ok / SECONDS / R,
        "failed_calls": totals.get("failed_calls", 0),
        "refused_locally": totals.get("refused_locally", 0),
    }


def main(selected: list[str] | None = None) -> dict[str, Any]:
    """Run both scenarios side by side, print a table, write results/ratelimit.json."""
    del selected  # one scenario pair only
    process, redis_url = _start_redis()
    try:
        context = multiprocessing.get_context("spawn")
        with context.Pool(PROCESSES) as pool:
            pool.map(time.sleep, [0.0] * PROCESSES)  # warm the workers up
            rows = [
                _scenario("shared limiter (Redis)", pool, redis_url),
                _scenario("shared, configured 2R", pool, redis_url, configured=2 * R),
                _scenario(
                    "shared, 2R, headers off", pool, redis_url, configured=2 * R, headers=False
                ),
                _scenario("retry alone", pool, None),
            ]
    finally:
        process.terminate()
        process.wait(timeout=5)
    print(
        f"\nRate limit: {PROCESSES} processes x {THREADS} threads on one key, server limit "
        f"{R}/s (fixed 1 s window), {SECONDS:g} s each\n"
    )
    print(
        table(
            [
                "scenario",
                "requests",
                "200",
                "429",
                "429 share %",
                "200/s",
                "of limit %",
                "failed calls",
                "refused locally",
            ],
            [
                [
                    r["scenario"],
                    r["requests"],
                    r["ok"],
                    r["throttled_429"],
                    100 * r["share_429"],
                    r["ok_per_second"],
                    100 * r["share_of_limit"],
                    r["failed_calls"],
                    r["refused_locally"],
                ]
                for r in rows
            ],
        )
    )
    data = {
        "server_limit_per_second": R,
        "processes": PROCESSES,
        "threads": THREADS,
        "seconds": SECONDS,
        "targets": {"share_429_below": 0.02, "share_of_limit_at_least": 0.9},
        "results": rows,
    }
    path = write("ratelimit", data)
    print(f"\nwritten to {path}")
    return data


if __name__ == "__main__":
    main()

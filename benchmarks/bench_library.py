"""Library time: what the pipeline itself costs per call, with no network at all.

Each transport is run over a stub that returns a canned ``200`` at once, so what is left
is the library's own time: the same stub is called bare in the same run, and the
figure is (pipeline - bare) per call. The request is what a client builds (a
`requests.Session`'s prepared request, an httpx client's request, with their default
headers) and the answer carries the headers the Vinci API sends with a balance,
``X-RateLimit-*`` included (a rate limit reads them on every answer). Three transports:

  requests      ``PipelineAdapter(pipeline, transport=stub).send(prepared)``
                vs ``stub.send(prepared)``
  httpx         ``ResilientTransport(pipeline, stub).handle_request(request)``
                vs ``stub.handle_request(request)``
  httpx-async   ``await AsyncResilientTransport(pipeline, stub).handle_async_request(request)``
                vs ``await stub.handle_async_request(request)``, in one event loop

Variants: the empty pipeline, each built-in policy alone (as the Vinci preset
configures it), and the full Vinci preset (``vinci.build_pipeline``: StatusErrors,
Retry, CircuitBreaker, RateLimit, APIKeyAuth, Tracing with only opentelemetry-api).
The preset's rate limit allows 10 calls a minute, which a benchmark passes in a
microsecond; here it allows 10**9 a second, through the same code.

Local refusals (requests transport, µs per call, nothing reaches the stub):

  open-breaker   the preset, its breaker forced open: `CircuitOpenError`
  rate-limited   the preset with a rate limit whose next token is an hour away and
                 a 2-minute deadline: `RateLimitExceededError` at once
  budget-empty   ``Retry(budget=...)`` in a failing spell with no tokens, a 503 stub
                 answer: the first attempt goes to the stub, the retry is refused
                 (so this row includes one stub attempt)

Threads: every variant on the requests transport at 1, 4 and 16 threads sharing one
adapter: wall time x threads / calls, the bare stub's subtracted the same way (the
target is the preset's at 16 threads against 1).

For scale: ``requests.Session.get`` over the same stub, bare and mounted with each
variant (µs per call above the stub's own send): what requests itself spends per call
in the same hot loop, and what each variant adds to it there. Between two calls
requests' own work runs through the processor's caches, so the same code costs more
there than over the bare adapter; `bench_wire` splits a call on the wire (in the
transport, outside it), where it runs colder still, after every wait for the network.

Method: rounds of batches; in every round each variant runs one batch, in a shuffled
order (a shared 2-core machine drifts; interleaving makes the drift hit all alike).
Reported: the median over rounds of µs per call above the bare stub of that round.

Run: ``./dev bench library`` (or ``python -m benchmarks library [--rounds N]``);
writes ``benchmarks/results/library.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter

from benchmarks._common import table, write
from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    Pipeline,
    PipelineAdapter,
    RateLimit,
    Retry,
    RetryBudget,
    StatusErrors,
    Tracing,
)
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.vinci import build_pipeline

URL = "https://tryvinci.com/api/v1/billing/balance"
KEY = "sk-bench-0123456789abcdef"
BODY = b'{"balance": 10.0}'
#: The refusal rows' answers: no rate-limit headers, which would teach their one-token
#: rate limit a higher limit (then it waits for a token instead of refusing), and
#: let time pass that earns the empty budget tokens.
PLAIN_HEADERS = {"Content-Type": "application/json", "Content-Length": str(len(BODY))}
#: The headers of the canned answer: what the Vinci API (and nginx in `bench_wire`)
#: sends with a balance, the rate-limit headers included, which `RateLimit` reads.
ANSWER_HEADERS = {
    "Server": "nginx",
    "Date": "Fri, 04 Dec 2026 18:00:00 GMT",
    "Content-Type": "application/json",
    "Content-Length": str(len(BODY)),
    "Connection": "keep-alive",
    "X-RateLimit-Limit": "1000000",
    "X-RateLimit-Remaining": "999999",
    "X-RateLimit-Reset": "1796407260",
}
TARGETS = {"preset": 10.0, "empty": 1.0, "policy": 3.0, "refusal": 50.0, "threads": 1.2}


# --- the stubs: a canned answer, at once ------------------------------------------------


class StubAdapter(BaseAdapter):
    """A requests transport that answers every request with one canned response."""

    def __init__(self, status: int = 200, headers: dict[str, str] = ANSWER_HEADERS) -> None:
        super().__init__()
        response = requests.Response()
        response.status_code = status
        response.reason = "OK" if status == 200 else "Service Unavailable"
        response.headers.update(headers)
        response._content = BODY
        response._content_consumed = True  # type: ignore[attr-defined]
        response.url = URL
        self.response = response

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.response.request = request
        return self.response

    def close(self) -> None:
        pass


class StubTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport (sync and async) answering with one canned response."""

    def __init__(self) -> None:
        self.response = httpx.Response(200, headers=ANSWER_HEADERS, content=BODY)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.response


# --- the pipelines ----------------------------------------------------------------------


def unlimited() -> RateLimit:
    """The preset's rate limit, allowing more than any benchmark sends."""
    return RateLimit(1_000_000, period=0.001, burst=1_000_000)


def preset() -> Pipeline:
    return build_pipeline(api_key=KEY, rate_limit=unlimited())


def singles() -> dict[str, Callable[[], Pipeline]]:
    """Each variant's pipeline factory (a fresh pipeline per transport)."""
    return {
        "empty": Pipeline,
        "StatusErrors": lambda: Pipeline(StatusErrors()),
        "Retry": lambda: Pipeline(Retry(max_attempts=5, initial_delay=1.0, timeout=120.0)),
        "CircuitBreaker": lambda: Pipeline(CircuitBreaker(minimum_calls=5, window=60.0)),
        "RateLimit": lambda: Pipeline(unlimited()),
        "APIKeyAuth": lambda: Pipeline(APIKeyAuth(KEY)),
        "Tracing": lambda: Pipeline(Tracing()),
        "preset": preset,
    }


# --- one batch on each transport --------------------------------------------------------


def _prepared() -> requests.PreparedRequest:
    """The request as a `requests.Session` prepares it (its default headers included)."""
    return requests.Session().prepare_request(requests.Request("GET", URL))


def requests_runner(pipeline: Pipeline | None) -> Callable[[int], float]:
    stub = StubAdapter()
    prepared = _prepared()
    send: Callable[..., Any] = (
        stub.send if pipeline is None else PipelineAdapter(pipeline, transport=stub).send
    )

    def batch(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            send(prepared, timeout=30)
        return time.perf_counter() - began

    return batch


def httpx_runner(pipeline: Pipeline | None) -> Callable[[int], float]:
    stub = StubTransport()
    request = httpx.Client().build_request("GET", URL)
    transport: httpx.BaseTransport = (
        stub if pipeline is None else ResilientTransport(pipeline, stub)
    )
    handle = transport.handle_request

    def batch(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            handle(request)
        return time.perf_counter() - began

    return batch


def async_runner(pipeline: Pipeline | None) -> Callable[[int], float]:
    stub = StubTransport()
    request = httpx.AsyncClient().build_request("GET", URL)
    transport: httpx.AsyncBaseTransport = (
        stub if pipeline is None else AsyncResilientTransport(pipeline, stub)
    )
    handle = transport.handle_async_request
    loop = asyncio.new_event_loop()

    async def run(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            await handle(request)
        return time.perf_counter() - began

    def batch(n: int) -> float:
        return loop.run_until_complete(run(n))

    return batch


RUNNERS = {"requests": requests_runner, "httpx": httpx_runner, "httpx-async": async_runner}


def interleaved(
    batches: dict[str, Callable[[int], float]], *, rounds: int, n: int
) -> dict[str, list[float]]:
    """µs per call of each batch, per round, the order shuffled every round."""
    per_round: dict[str, list[float]] = {name: [] for name in batches}
    names = list(batches)
    for batch in batches.values():
        batch(n)  # warm up: caches, first-call paths
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            gc.collect()
            per_round[name].append(batches[name](n) / n * 1e6)
    return per_round


def above(per_round: dict[str, list[float]], base: str) -> dict[str, float]:
    """The median over rounds of each variant's µs per call above `base`'s in that round."""
    return {
        name: statistics.median(v - b for v, b in zip(values, per_round[base], strict=True))
        for name, values in per_round.items()
        if name != base
    }


def library_time(*, rounds: int, n: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for transport, runner in RUNNERS.items():
        batches = {"bare": runner(None)}
        batches.update({name: runner(factory()) for name, factory in singles().items()})
        per_round = interleaved(batches, rounds=rounds, n=n)
        out[transport] = {"bare": statistics.median(per_round["bare"]), **above(per_round, "bare")}
        print(f"  {transport}: " + ", ".join(f"{k} {v:.2f}" for k, v in out[transport].items()))
    return out


# --- local refusals ---------------------------------------------------------------------


def _refusing_breaker() -> Pipeline:
    breaker = CircuitBreaker(minimum_calls=5, window=60.0, break_duration=3600.0)
    pipeline = build_pipeline(api_key=KEY, rate_limit=unlimited(), breaker=breaker)
    adapter = PipelineAdapter(pipeline, transport=StubAdapter(503, PLAIN_HEADERS))
    prepared = _prepared()
    for _ in range(10):  # five 503s (5 attempts each) open it
        try:
            adapter.send(prepared)
        except requests.RequestException:
            continue  # the 503s, then the refusals: what opens the breaker
    return pipeline


def _rate_limited() -> Pipeline:
    pipeline = build_pipeline(api_key=KEY, rate_limit=RateLimit(1, period=3600.0, burst=1))
    adapter = PipelineAdapter(pipeline, transport=StubAdapter(200, PLAIN_HEADERS))
    adapter.send(_prepared())  # spends the one token
    return pipeline


def _budget_empty() -> Pipeline:
    budget = RetryBudget()
    now = time.monotonic()
    for _ in range(40):  # a sustained failing spell: the budget refuses retries
        budget._record(now, failed=True)
    while budget._spend(now) is not None:
        pass
    return Pipeline(StatusErrors(), Retry(max_attempts=2, budget=budget, fail_fast_on_budget=True))


def refusal_runner(pipeline: Pipeline, status: int) -> Callable[[int], float]:
    adapter = PipelineAdapter(pipeline, transport=StubAdapter(status, PLAIN_HEADERS))
    prepared = _prepared()

    def batch(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            with contextlib.suppress(requests.RequestException):
                adapter.send(prepared, timeout=30)
        return time.perf_counter() - began

    return batch


def refusals(*, rounds: int, n: int) -> dict[str, float]:
    batches = {
        "open-breaker": refusal_runner(_refusing_breaker(), 200),
        "rate-limited": refusal_runner(_rate_limited(), 200),
        "budget-empty": refusal_runner(_budget_empty(), 503),
    }
    per_round = interleaved(batches, rounds=rounds, n=n)
    return {name: statistics.median(values) for name, values in per_round.items()}


# --- threads ----------------------------------------------------------------------------


def threaded_runner(pipeline: Pipeline | None, threads: int) -> Callable[[int], float]:
    """A batch of `n` calls per thread, all threads at once.

    Returns the wall time divided by the number of threads, so that dividing by `n`
    gives the wall time per call of all of them together.
    """
    send = requests_runner(pipeline)

    def batch(n: int) -> float:
        barrier = threading.Barrier(threads + 1)
        workers = [
            threading.Thread(target=lambda: (barrier.wait(), send(n))) for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        barrier.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        return (time.perf_counter() - began) / threads

    return batch


def threads(*, rounds: int, n: int) -> dict[str, dict[str, float]]:
    """Every variant (the empty pipeline, each policy, the preset) at 1, 4 and 16 threads.

    Returns ``{variant: {"1": µs, "4": µs, "16": µs}}``, each above the bare stub's
    figure at the same count, one shared adapter per variant and count.
    """
    out: dict[str, dict[str, float]] = {name: {} for name in singles()}
    for count in (1, 4, 16):
        batches = {"bare": threaded_runner(None, count)}
        batches.update(
            {name: threaded_runner(factory(), count) for name, factory in singles().items()}
        )
        per_round = interleaved(batches, rounds=rounds, n=max(n // count, 50))
        for name, value in above(per_round, "bare").items():
            out[name][str(count)] = value
    return out


# --- a reference: requests' own work ----------------------------------------------------


def session_runner(pipeline: Pipeline | None) -> Callable[[int], float]:
    """``requests.Session.get`` over the stub: the Session's own work around a send."""
    session = requests.Session()
    stub = StubAdapter()
    session.mount(
        "https://", stub if pipeline is None else PipelineAdapter(pipeline, transport=stub)
    )

    def batch(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            session.get(URL, timeout=30)
        return time.perf_counter() - began

    return batch


def reference(*, rounds: int, n: int) -> dict[str, float]:
    """µs per call of ``Session.get``, bare and with every variant, over the bare stub's send.

    For scale, and closer to real use: what requests itself spends per call (preparing
    the request, merging settings, cookies, hooks) in the same hot loop, and what each
    variant adds to that (``Session.get + <variant>`` minus ``Session.get``). Between
    two calls requests' own work runs through the processor's caches, so a variant costs
    more here than over the bare adapter loop; the more code and objects it touches,
    the more (see the benchmarks page).
    """
    batches = {"stub": requests_runner(None), "Session.get": session_runner(None)}
    batches.update(
        {f"Session.get + {name}": session_runner(factory()) for name, factory in singles().items()}
    )
    return above(interleaved(batches, rounds=rounds, n=n), "stub")


# --- the report -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_library")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args(argv)
    print("library time, µs per call above the bare stub (median of rounds):")
    library = library_time(rounds=args.rounds, n=args.batch)
    refused = refusals(rounds=args.rounds, n=args.batch // 4)
    threaded = threads(rounds=args.rounds, n=args.batch)
    scale = reference(rounds=args.rounds, n=args.batch // 4)
    out = {
        "library": library,
        "refusals": refused,
        "threads": threaded["preset"],  # the target's figures
        "threads_by_variant": threaded,
        "reference": scale,
        "targets": TARGETS,
    }
    print(_report(out))
    path = write("library", out)
    from benchmarks import plot  # matplotlib only when there is something to draw

    drawn = plot.library(plot.load(path.parent))
    print("wrote", path, *drawn)
    return out


def _report(out: dict[str, Any]) -> str:
    library = out["library"]
    names = [name for name in library["requests"] if name != "bare"]
    rows = [[name, *(library[t][name] for t in RUNNERS)] for name in names]
    rows.insert(0, ["(bare stub, µs)", *(library[t]["bare"] for t in RUNNERS)])
    lines = [table(["µs per call above bare", *RUNNERS], rows), ""]
    refused = [[name, value] for name, value in out["refusals"].items()]
    lines += [table(["local refusal (requests)", "µs per call"], refused), ""]
    rows = [
        [name, *by_count.values(), by_count["16"] / by_count["1"]]
        for name, by_count in out["threads_by_variant"].items()
    ]
    headers = ["threads (requests), µs per call", "1", "4", "16", "16 / 1"]
    lines.append(table(headers, rows))
    reference = out["reference"]
    base = reference["Session.get"]
    alone = out["library"]["requests"]
    scale = [
        [
            name.removeprefix("Session.get + "),
            value,
            value - base,
            alone[name.removeprefix("Session.get + ")],
        ]
        for name, value in reference.items()
        if name != "Session.get"
    ]
    headers = ["in a Session (requests)", "µs above the stub", "above Session.get", "alone"]
    lines += ["", f"Session.get alone: {base:.2f} µs per call above the stub"]
    lines.append(table(headers, scale))
    return "\n".join(lines)


if __name__ == "__main__":
    main()

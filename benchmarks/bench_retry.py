"""Retry side by side: requests-resilience, urllib3 Retry, tenacity, stamina, backoff, and the
vendor's sample loop, all against the fake Vinci server on loopback, under the same settings
(5 attempts, exponential backoff from 0.1 s capped at 1 s, jitter where the tool has it).
Only this project has a retry budget; the others retry every failure.

Scenarios:
  outage      a 2-second outage (503) while 4 threads share one session, each starting a call
              every 20 ms: requests per logical call started during the outage, and the share
              of those calls that failed.
  sweep       each request fails (503) with probability p = 0, 10, ..., 100 %, independently:
              1,000 logical calls from 4 threads per point; a hash of (call, attempt)
              decides each outcome, so every client meets the same ones (a paired
              comparison); the schedule is ten times faster (0.01 s capped at 0.1 s):
              success rate and requests per logical call.
  retry-after one 429 per form of Retry-After (fraction, integer, HTTP-date, retry-after-ms),
              then success, five times each: whether the client waited at least what the
              server asked; for this project also with its retry budget in a failing spell.

Run: ``./dev bench retry`` (or ``python -m benchmarks retry``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from benchmarks._common import table, write
from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    Pipeline,
    Retry,
    RetryBudget,
    RetryBudgetExhaustedError,
    StatusErrors,
    mount,
)
from requests_resilience.testing import FakeVinciServer, Fault

ATTEMPTS = 5
RETRY_STATUSES = (429, 500, 502, 503, 504)
PATH = "/billing/balance"


@dataclass(frozen=True)
class Backoff:
    """The schedule every client gets in one scenario: first wait and cap, in seconds."""

    initial: float
    cap: float


#: The outage and Retry-After scenarios: waits of 0.1, 0.2, 0.4, 0.8 s.
STANDARD = Backoff(initial=0.1, cap=1.0)
#: The failure-rate sweep: the same shape ten times faster, so that 11 points x 1,000
#: calls x 4 clients fit in minutes. The budget's floor is per second: if anything this
#: gives it less time to earn tokens per call than the standard schedule.
FAST = Backoff(initial=0.01, cap=0.1)


class Server(Protocol):
    """What a client needs of a server: the fake Vinci server or the sweep's dice server."""

    @property
    def api_key(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    def url(self, path: str) -> str: ...


Pair = tuple[Callable[[str], bool], Callable[[], None]]
# A client is built per run: (server, backoff) -> (call function, closer). The call
# function takes a call id (sent as X-Call-Id on every attempt, so the server can
# attribute requests to logical calls) and returns True on success.
Client = Callable[[Server, Backoff], Pair]


def _headers(server: Server, call_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}", "X-Call-Id": call_id}


def _succeeds(logical_call: Callable[[], object]) -> bool:
    """Run one logical call; True when it ended well."""
    try:
        logical_call()
    except (requests.RequestException, _RetryableStatusError):
        return False
    return True


def _ours(
    server: Server,
    backoff: Backoff,
    *inner: Any,
    budget: RetryBudget | None = None,
    no_budget: bool = False,
) -> Pair:
    session = requests.Session()
    retry = Retry(max_attempts=ATTEMPTS, initial_delay=backoff.initial, max_delay=backoff.cap)
    if budget is not None or no_budget:
        retry = dataclasses.replace(retry, budget=budget)
    pipeline = Pipeline(StatusErrors(), retry, *inner, APIKeyAuth(server.api_key))
    mount(session, server.base_url + "/", pipeline)
    return _OursCall(session, server.url(PATH)), session.close


class _OursCall:
    """Our call function; counts the calls that ended because the budget refused."""

    def __init__(self, session: requests.Session, url: str) -> None:
        self.session = session
        self.url = url
        self.lost_to_budget = 0
        self._lock = threading.Lock()

    def __call__(self, call_id: str) -> bool:
        try:
            self.session.get(self.url, headers={"X-Call-Id": call_id}, timeout=10).close()
        except RetryBudgetExhaustedError:
            with self._lock:
                self.lost_to_budget += 1
            return False
        except requests.RequestException:
            return False
        return True


def ours(server: Server, backoff: Backoff) -> Pair:
    """The Retry policy with its default budget."""
    return _ours(server, backoff)


def ours_without_budget(server: Server, backoff: Backoff) -> Pair:
    """The Retry policy with no budget: what the budget itself changes."""
    return _ours(server, backoff, budget=None, no_budget=True)


def ours_with_breaker(server: Server, backoff: Backoff) -> Pair:
    """The retry with a circuit breaker inside it, as the design puts them."""
    return _ours(server, backoff, CircuitBreaker(minimum_calls=5, window=2.0, break_duration=0.5))


def urllib3_retry(server: Server, backoff: Backoff) -> Pair:
    from urllib3.util.retry import Retry as U3Retry

    session = requests.Session()
    policy = U3Retry(
        total=ATTEMPTS - 1,
        backoff_factor=backoff.initial,
        backoff_max=backoff.cap,
        status_forcelist=RETRY_STATUSES,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=policy, pool_maxsize=32))
    url = server.url(PATH)

    def call(call_id: str) -> bool:
        try:
            response = session.get(url, headers=_headers(server, call_id), timeout=10)
        except requests.RequestException:
            return False
        response.close()
        return response.ok

    return call, session.close


class _RetryableStatusError(Exception):
    pass


def _once(session: requests.Session, server: Server, call_id: str) -> None:
    response = session.get(server.url(PATH), headers=_headers(server, call_id), timeout=10)
    response.close()
    if response.status_code in RETRY_STATUSES:
        raise _RetryableStatusError(response.status_code)
    response.raise_for_status()


def tenacity_retry(server: Server, backoff: Backoff) -> Pair:
    import tenacity

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=backoff.initial, max=backoff.cap),
        retry=tenacity.retry_if_exception_type((_RetryableStatusError, requests.ConnectionError)),
        reraise=True,
    )
    def attempt(call_id: str) -> None:
        _once(session, server, call_id)

    def call(call_id: str) -> bool:
        return _succeeds(lambda: attempt(call_id))

    return call, session.close


def stamina_retry(server: Server, backoff: Backoff) -> Pair:
    import stamina

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    def attempts(call_id: str) -> None:
        for attempt in stamina.retry_context(
            on=(_RetryableStatusError, requests.ConnectionError),
            attempts=ATTEMPTS,
            timeout=None,
            wait_initial=backoff.initial,
            wait_max=backoff.cap,
            wait_jitter=backoff.initial,
            wait_exp_base=2,
        ):
            with attempt:
                _once(session, server, call_id)

    def call(call_id: str) -> bool:
        return _succeeds(lambda: attempts(call_id))

    return call, session.close


def backoff_retry(server: Server, schedule: Backoff) -> Pair:
    import backoff

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    @backoff.on_exception(
        backoff.expo,
        (_RetryableStatusError, requests.ConnectionError),
        max_tries=ATTEMPTS,
        factor=schedule.initial,
        max_value=schedule.cap,
        jitter=backoff.full_jitter,
        logger=None,
    )
    def attempt(call_id: str) -> None:
        _once(session, server, call_id)

    def call(call_id: str) -> bool:
        return _succeeds(lambda: attempt(call_id))

    return call, session.close


def vendor_loop(server: Server, backoff: Backoff) -> Pair:
    """The sample from Vinci's error-handling page, with the same backoff as the others."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    def request_with_retries(method: str, url: str, headers: dict[str, str]) -> requests.Response:
        backoff_s = backoff.initial
        for attempt in range(ATTEMPTS):
            try:
                r = session.request(method, url, headers=headers, timeout=60)
                if r.status_code == 429 or 500 <= r.status_code < 600:
                    r.close()
                    time.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, backoff.cap)
                    continue
                r.raise_for_status()
                return r
            except requests.exceptions.RequestException:
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, backoff.cap)
        raise RuntimeError("Unreachable")

    def call(call_id: str) -> bool:
        try:
            request_with_retries("GET", server.url(PATH), _headers(server, call_id)).close()
        except (requests.RequestException, RuntimeError):
            return False
        return True

    return call, session.close


CLIENTS: dict[str, Client] = {
    "requests-resilience": ours,
    "requests-resilience, no budget": ours_without_budget,
    "requests-resilience + breaker": ours_with_breaker,
    "urllib3 Retry": urllib3_retry,
    "tenacity": tenacity_retry,
    "stamina": stamina_retry,
    "backoff": backoff_retry,
    "vendor sample loop": vendor_loop,
}


def outage(client: Client, *, rounds: int = 10) -> dict[str, Any]:
    """`_outage_round` `rounds` times (calls during one 2 s outage are few: sum them)."""
    runs = [_outage_round(client) for _ in range(rounds)]
    calls = sum(r["calls_during_outage"] for r in runs)
    sent = sum(r["requests_during_outage"] for r in runs)
    failed = sum(r["failed_during_outage"] for r in runs)
    return {
        "rounds": rounds,
        "calls_during_outage": calls,
        "requests_during_outage": sent,
        "requests_from_earlier_calls": sum(r["requests_from_earlier_calls"] for r in runs),
        "requests_per_call": sent / calls if calls else math.nan,
        "failed_share": failed / calls if calls else math.nan,
        "per_round": runs,
    }


def _outage_round(
    client: Client, *, threads: int = 4, down: float = 2.0, pace: float = 0.02
) -> dict[str, Any]:
    """Threads start a call every `pace` s; the server is down for `down` s in the middle.

    Counts the calls started while the server was down, the requests those calls sent
    while it was down (by their X-Call-Id), and how many of those calls failed in the end.
    """
    lead, tail = 0.3, 1.5
    with FakeVinciServer() as server:
        call, close = client(server, STANDARD)
        calls: list[tuple[str, float, bool]] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + lead + down + tail

        def worker(n: int) -> None:
            i = 0
            while time.monotonic() < stop_at:
                call_id = f"{n}-{i}"
                i += 1
                started = time.monotonic()
                ok = call(call_id)
                with lock:
                    calls.append((call_id, started, ok))
                time.sleep(max(0.0, pace - (time.monotonic() - started)))

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        time.sleep(lead)
        outage_start = time.monotonic()
        server.outage(down)
        outage_end = outage_start + down
        for t in pool:
            t.join()
        close()
        arrivals = [
            (r.time, r.headers.get("X-Call-Id")) for r in server.requests if r.path == PATH
        ]
    during = {cid: ok for cid, started, ok in calls if outage_start <= started < outage_end}
    while_down = [cid for t, cid in arrivals if outage_start <= t < outage_end]
    # What the calls started during the outage cost the server while it was down (the
    # calls started just before it also sent a little while it was down: counted apart).
    sent = sum(1 for cid in while_down if cid in during)
    failed = sum(1 for ok in during.values() if not ok)
    return {
        "calls_during_outage": len(during),
        "requests_during_outage": sent,
        "requests_from_earlier_calls": len(while_down) - sent,
        "failed_during_outage": failed,
        "calls_total": len(calls),
    }


#: The failure probabilities of the sweep.
SWEEP = tuple(round(0.1 * i, 1) for i in range(11))


def sweep(
    client: Client, *, calls: int = 1000, threads: int = 4, seed: int = 1
) -> list[dict[str, Any]]:
    """`_sweep_point` at each p of `SWEEP`."""
    return [_sweep_point(client, p, calls=calls, threads=threads, seed=seed) for p in SWEEP]


class DiceServer:
    """A loopback server whose every answer is decided by the call and attempt it serves.

    Attempt k of the call with id c fails (503) when a hash of (seed, p, c, k) falls
    below p, else succeeds (200): every client meets exactly the same outcomes, whatever
    the order its threads send in, so the comparison is paired.
    """

    api_key = "sk-dice"

    def __init__(self, p: float, seed: int) -> None:
        self.p = p
        self.seed = seed
        self.request_count = 0
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def fails(self, call_id: str, attempt: int) -> bool:
        digest = hashlib.blake2b(f"{self.seed}|{self.p}|{call_id}|{attempt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.p

    def _answer(self, call_id: str) -> int:
        with self._lock:
            self.request_count += 1
            attempt = self._attempts.get(call_id, 0) + 1
            self._attempts[call_id] = attempt
        return 503 if self.fails(call_id, attempt) else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                status = server._answer(self.headers.get("X-Call-Id", ""))
                body = b'{"detail": "unavailable"}' if status == 503 else b'{"balance": 1}'
                reason = b"Service Unavailable" if status == 503 else b"OK"
                head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" % (status, reason)
                head += b"Content-Length: %d\r\n\r\n" % len(body)
                self.wfile.write(head + body)  # one write: no Nagle / delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    def __enter__(self) -> DiceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


def _sweep_point(
    client: Client, p: float, *, calls: int, threads: int, seed: int
) -> dict[str, Any]:
    """`calls` logical calls from `threads` threads; each attempt fails with probability p."""
    with DiceServer(p, seed) as server:
        call, close = client(server, FAST)
        per_thread = calls // threads
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            results = list(
                pool.map(lambda n: [call(f"s-{n}-{i}") for i in range(per_thread)], range(threads))
            )
        elapsed = time.monotonic() - started
        close()
        sent = server.request_count
    done = [ok for chunk in results for ok in chunk]
    return {
        "p": p,
        "lost_to_budget": getattr(call, "lost_to_budget", None),
        "calls": len(done),
        "succeeded": sum(done),
        "success_rate": sum(done) / len(done),
        "requests_per_call": sent / len(done),
        "seconds": elapsed,
    }


def _http_date(seconds_from_now: float) -> str:
    when = datetime.fromtimestamp(math.ceil(time.time() + seconds_from_now), tz=timezone.utc)
    return format_datetime(when, usegmt=True)


RETRY_AFTER_FORMS: dict[str, Callable[[], tuple[dict[str, str], float]]] = {
    "fraction 0.3": lambda: ({"Retry-After": "0.3"}, 0.3),
    "integer 1": lambda: ({"Retry-After": "1"}, 1.0),
    "HTTP-date": lambda: (lambda d: ({"Retry-After": d}, 0.0))(_http_date(1.0)),
    "retry-after-ms 300": lambda: ({"retry-after-ms": "300"}, 0.3),
}


def _pressed_budget() -> RetryBudget:
    """A budget in a failing spell: 30 failures recorded, tokens only from time (2/s)."""
    budget = RetryBudget(min_per_second=2.0)
    with FakeVinciServer() as server:
        server.script(*[Fault.status(503)] * 30, path=PATH)
        session = requests.Session()
        single = Retry(max_attempts=1, budget=budget)
        mount(session, server.base_url + "/", Pipeline(single, APIKeyAuth(server.api_key)))
        for _ in range(30):
            session.get(server.url(PATH), timeout=10).close()
        session.close()
    assert budget.failing
    return budget


def retry_after(client: Client, *, reps: int = 5, pressure: bool = False) -> dict[str, Any]:
    """One 429 per form, `reps` times each; compliant when the re-send came no sooner than asked.

    With `pressure`, the client's retry budget is in a failing spell when the 429 comes
    (only for our clients: the others have no budget).
    """
    results: dict[str, Any] = {}
    for form, make in RETRY_AFTER_FORMS.items():
        runs: list[dict[str, Any]] = []
        for _ in range(reps):
            headers, asked = make()
            with FakeVinciServer() as server:
                server.script(Fault.status(429, headers=headers), path=PATH)
                if pressure:
                    call, close = _ours(server, STANDARD, budget=_pressed_budget())
                else:
                    call, close = client(server, STANDARD)
                ok = call("ra")
                close()
                sent = [r for r in server.requests if r.path == PATH]
            if form == "HTTP-date":  # the server asked until that second: measure against it
                target = datetime.strptime(headers["Retry-After"], "%a, %d %b %Y %H:%M:%S GMT")
                asked = target.replace(tzinfo=timezone.utc).timestamp() - (
                    time.time() - (time.monotonic() - sent[0].time)
                )
            waited = sent[1].time - sent[0].time if len(sent) > 1 else None
            runs.append(
                {
                    "succeeded": ok,
                    "waited": waited,
                    "asked": asked,
                    "compliant": bool(ok and waited is not None and waited + 0.005 >= asked),
                }
            )
        results[form] = {
            "runs": reps,
            "compliant": sum(r["compliant"] for r in runs),
            "shortest_margin": min(
                (r["waited"] - r["asked"] for r in runs if r["waited"] is not None),
                default=None,
            ),
            "per_run": runs,
        }
    return results


#: The clients of the sweep (the issue's anchors); the others run the other scenarios.
SWEEP_CLIENTS = ("requests-resilience", "urllib3 Retry", "tenacity", "stamina")


def main(selected: list[str] | None = None) -> dict[str, Any]:
    """Run every scenario for every client, print tables, write results/retry.json."""
    names = selected or list(CLIENTS)
    out: dict[str, Any] = {
        "settings": {
            "attempts": ATTEMPTS,
            "initial": STANDARD.initial,
            "cap": STANDARD.cap,
            "sweep_initial": FAST.initial,
            "sweep_cap": FAST.cap,
        },
        "clients": {},
    }
    for name in names:
        client = CLIENTS[name]
        result: dict[str, Any] = {
            "outage": outage(client),
            "retry_after": retry_after(client),
        }
        if name == "requests-resilience":
            result["retry_after_under_pressure"] = retry_after(client, pressure=True)
        if name in SWEEP_CLIENTS:
            result["sweep"] = sweep(client)
        out["clients"][name] = result
        print(f"  measured {name}", flush=True)
    print()
    print(_summary(out))
    sweeps = {n: r["sweep"] for n, r in out["clients"].items() if "sweep" in r}
    if sweeps:
        print()
        print(_sweep_table(sweeps))
    path = write("retry", out)
    print(f"\nwritten to {path}")
    return out


def _compliance(forms: dict[str, Any]) -> str:
    return (
        f"{sum(f['compliant'] for f in forms.values())}/{sum(f['runs'] for f in forms.values())}"
    )


def _summary(out: dict[str, Any]) -> str:
    rows = []
    for name, r in out["clients"].items():
        pressed = r.get("retry_after_under_pressure")
        rows.append(
            [
                name,
                r["outage"]["requests_per_call"],
                f"{r['outage']['failed_share']:.0%}",
                r["outage"]["calls_during_outage"],
                _compliance(r["retry_after"]),
                _compliance(pressed) if pressed else "n/a",
            ]
        )
    return table(
        [
            "client",
            "outage req/call",
            "outage failed",
            "outage calls",
            "Retry-After ok",
            "... budget failing",
        ],
        rows,
    )


def _sweep_table(sweeps: dict[str, list[dict[str, Any]]]) -> str:
    names = list(sweeps)
    rows = []
    for i, p in enumerate(SWEEP):
        row: list[Any] = [f"{p:.0%}"]
        for n in names:
            point = sweeps[n][i]
            row.append(f"{point['success_rate']:.1%} / {point['requests_per_call']:.2f}")
        rows.append(row)
    return table(["p", *(f"{n} (ok / req per call)" for n in names)], rows)


if __name__ == "__main__":
    main()

"""Retry side by side: requests-resilience, urllib3 Retry, tenacity, stamina, backoff, and the
vendor's sample loop, all against the fake Vinci server on loopback, under the same settings
(5 attempts, exponential backoff from 0.1 s capped at 1 s, jitter where the tool has it).

Scenarios:
  outage      a 2-second outage (503) while 4 threads share one session, each starting a call
              every 20 ms: requests per logical call started during the outage, and the share
              of those calls that failed.
  flaky       20% of requests get a random 503: requests per call and the failed share.
  retry-after one 429 per form of Retry-After (fraction, integer, HTTP-date, retry-after-ms),
              then success: whether the client waited at least what the server asked.

Run: ``./dev bench retry`` (or ``python -m benchmarks retry``).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from benchmarks._common import table, write
from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    Pipeline,
    Retry,
    StatusErrors,
    mount,
)
from requests_resilience.testing import FakeVinciServer, Fault

ATTEMPTS = 5
INITIAL = 0.1
CAP = 1.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
PATH = "/billing/balance"

# A client is built per run: (server) -> (call function, closer). The call function takes a
# call id (sent as X-Call-Id on every attempt, so the server can attribute requests to
# logical calls) and returns True on success.
Client = Callable[[FakeVinciServer], tuple[Callable[[str], bool], Callable[[], None]]]


def _headers(server: FakeVinciServer, call_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}", "X-Call-Id": call_id}


def _succeeds(logical_call: Callable[[], object]) -> bool:
    """Run one logical call; True when it ended well."""
    try:
        logical_call()
    except (requests.RequestException, _RetryableStatusError):
        return False
    return True


def _ours(
    server: FakeVinciServer, *inner: Any
) -> tuple[Callable[[str], bool], Callable[[], None]]:
    session = requests.Session()
    retry = Retry(max_attempts=ATTEMPTS, initial_delay=INITIAL, max_delay=CAP)
    pipeline = Pipeline(StatusErrors(), retry, *inner, APIKeyAuth(server.api_key))
    mount(session, server.base_url + "/", pipeline)
    url = server.url(PATH)

    def call(call_id: str) -> bool:
        return _succeeds(
            lambda: session.get(url, headers={"X-Call-Id": call_id}, timeout=10).close()
        )

    return call, session.close


def ours(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    """The Retry policy with its default budget."""
    return _ours(server)


def ours_with_breaker(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    """The retry with a circuit breaker inside it, as the design puts them."""
    return _ours(server, CircuitBreaker(minimum_calls=5, window=2.0, break_duration=0.5))


def urllib3_retry(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    from urllib3.util.retry import Retry as U3Retry

    session = requests.Session()
    policy = U3Retry(
        total=ATTEMPTS - 1,
        backoff_factor=INITIAL,
        backoff_max=CAP,
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


def _once(session: requests.Session, server: FakeVinciServer, call_id: str) -> None:
    response = session.get(server.url(PATH), headers=_headers(server, call_id), timeout=10)
    response.close()
    if response.status_code in RETRY_STATUSES:
        raise _RetryableStatusError(response.status_code)
    response.raise_for_status()


def tenacity_retry(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    import tenacity

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_random_exponential(multiplier=INITIAL, max=CAP),
        retry=tenacity.retry_if_exception_type((_RetryableStatusError, requests.ConnectionError)),
        reraise=True,
    )
    def attempt(call_id: str) -> None:
        _once(session, server, call_id)

    def call(call_id: str) -> bool:
        return _succeeds(lambda: attempt(call_id))

    return call, session.close


def stamina_retry(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    import stamina

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    def attempts(call_id: str) -> None:
        for attempt in stamina.retry_context(
            on=(_RetryableStatusError, requests.ConnectionError),
            attempts=ATTEMPTS,
            timeout=None,
            wait_initial=INITIAL,
            wait_max=CAP,
            wait_jitter=INITIAL,
            wait_exp_base=2,
        ):
            with attempt:
                _once(session, server, call_id)

    def call(call_id: str) -> bool:
        return _succeeds(lambda: attempts(call_id))

    return call, session.close


def backoff_retry(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    import backoff

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    @backoff.on_exception(
        backoff.expo,
        (_RetryableStatusError, requests.ConnectionError),
        max_tries=ATTEMPTS,
        factor=INITIAL,
        max_value=CAP,
        jitter=backoff.full_jitter,
        logger=None,
    )
    def attempt(call_id: str) -> None:
        _once(session, server, call_id)

    def call(call_id: str) -> bool:
        return _succeeds(lambda: attempt(call_id))

    return call, session.close


def vendor_loop(server: FakeVinciServer) -> tuple[Callable[[str], bool], Callable[[], None]]:
    """The sample from Vinci's error-handling page, with the same backoff as the others."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=32))

    def request_with_retries(method: str, url: str, headers: dict[str, str]) -> requests.Response:
        backoff_s = INITIAL
        for attempt in range(ATTEMPTS):
            try:
                r = session.request(method, url, headers=headers, timeout=60)
                if r.status_code == 429 or 500 <= r.status_code < 600:
                    r.close()
                    time.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, CAP)
                    continue
                r.raise_for_status()
                return r
            except requests.exceptions.RequestException:
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, CAP)
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
    "requests-resilience + breaker": ours_with_breaker,
    "urllib3 Retry": urllib3_retry,
    "tenacity": tenacity_retry,
    "stamina": stamina_retry,
    "backoff": backoff_retry,
    "vendor sample loop": vendor_loop,
}


def outage(client: Client, *, rounds: int = 5) -> dict[str, Any]:
    """`_outage_round` `rounds` times (calls during one 2 s outage are few: sum them)."""
    runs = [_outage_round(client) for _ in range(rounds)]
    calls = sum(r["calls_during_outage"] for r in runs)
    sent = sum(r["requests_during_outage"] for r in runs)
    failed = sum(r["failed_during_outage"] for r in runs)
    return {
        "rounds": rounds,
        "calls_during_outage": calls,
        "requests_during_outage": sent,
        "requests_per_call": sent / calls if calls else math.nan,
        "failed_share": failed / calls if calls else math.nan,
        "per_round": runs,
    }


def _outage_round(
    client: Client, *, threads: int = 4, down: float = 2.0, pace: float = 0.02
) -> dict[str, Any]:
    """Threads start a call every `pace` s; the server is down for `down` s in the middle.

    Counts the requests that reached the server while it was down, and the calls started
    while it was down (and how many of those failed in the end).
    """
    lead, tail = 0.3, 1.5
    with FakeVinciServer() as server:
        call, close = client(server)
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
        arrivals = [r.time for r in server.requests]
    during = [(cid, ok) for cid, started, ok in calls if outage_start <= started < outage_end]
    sent = sum(1 for t in arrivals if outage_start <= t < outage_end)
    failed = sum(1 for _, ok in during if not ok)
    return {
        "calls_during_outage": len(during),
        "requests_during_outage": sent,
        "failed_during_outage": failed,
        "calls_total": len(calls),
    }


def flaky(
    client: Client, *, calls: int = 300, share: float = 0.2, seed: int = 1
) -> dict[str, Any]:
    """A fraction `share` of requests get 503 at random."""
    rng = random.Random(seed)
    with FakeVinciServer() as server:
        faults = [
            Fault.status(503) if rng.random() < share else Fault.delay(0) for _ in range(calls * 6)
        ]
        server.script(*faults, path=PATH)
        call, close = client(server)
        start = time.monotonic()
        results = [call(f"f-{i}") for i in range(calls)]
        elapsed = time.monotonic() - start
        close()
        sent = server.request_count
    return {
        "requests_per_call": sent / calls,
        "failed_share": results.count(False) / calls,
        "seconds_per_call": elapsed / calls,
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


def retry_after(client: Client) -> dict[str, Any]:
    """One 429 per form; compliant when the next request came at least as late as asked."""
    results: dict[str, Any] = {}
    for form, make in RETRY_AFTER_FORMS.items():
        headers, asked = make()
        with FakeVinciServer() as server:
            server.script(Fault.status(429, headers=headers), path=PATH)
            call, close = client(server)
            ok = call("ra")
            close()
            sent = [r for r in server.requests if r.path == PATH]
        if form == "HTTP-date":  # the server asked until that second: measure against it
            target = datetime.strptime(headers["Retry-After"], "%a, %d %b %Y %H:%M:%S GMT")
            asked = target.replace(tzinfo=timezone.utc).timestamp() - (
                time.time() - (time.monotonic() - sent[0].time)
            )
        waited = sent[1].time - sent[0].time if len(sent) > 1 else None
        results[form] = {
            "succeeded": ok,
            "waited": waited,
            "asked": asked,
            "compliant": bool(ok and waited is not None and waited + 0.005 >= asked),
        }
    return results


def main(selected: list[str] | None = None) -> dict[str, Any]:
    """Run every scenario for every client, print tables, write results/retry.json."""
    names = selected or list(CLIENTS)
    out: dict[str, Any] = {
        "settings": {"attempts": ATTEMPTS, "initial": INITIAL, "cap": CAP},
        "clients": {},
    }
    for name in names:
        client = CLIENTS[name]
        out["clients"][name] = {
            "outage": outage(client),
            "flaky": flaky(client),
            "retry_after": retry_after(client),
        }
        print(f"  measured {name}", flush=True)
    rows = []
    for name, r in out["clients"].items():
        forms = r["retry_after"]
        compliant = sum(1 for f in forms.values() if f["compliant"])
        rows.append(
            [
                name,
                r["outage"]["requests_per_call"],
                f"{r['outage']['failed_share']:.0%}",
                r["outage"]["calls_during_outage"],
                r["flaky"]["requests_per_call"],
                f"{r['flaky']['failed_share']:.1%}",
                f"{compliant}/{len(forms)}",
            ]
        )
    print()
    print(
        table(
            [
                "client",
                "outage req/call",
                "outage failed",
                "outage calls",
                "flaky req/call",
                "flaky failed",
                "Retry-After ok",
            ],
            rows,
        )
    )
    path = write("retry", out)
    print(f"\nwritten to {path}")
    return out


if __name__ == "__main__":
    main()

"""Retry side by side: requests-resilience, urllib3 Retry, tenacity, stamina, backoff, and the
vendor's sample loop, all against the fake Vinci server on loopback, under the same settings
(5 attempts, exponential backoff from 0.1 s capped at 1 s, jitter where the tool has it).
Only this project has a retry budget; the others retry every failure.

This project's pipeline runs on each of its three transports, with the same policies:
mounted on a requests Session, as the transport of an httpx.Client, and as the transport
of an httpx.AsyncClient. The threaded clients call from 4 threads; the async one from 4
tasks in one event loop (its own thread), paced and fed the same call ids, so the three
rows meet the same outcomes and should agree within noise.

Scenarios:
  outage      a 2-second outage (503) while 4 workers (threads, or tasks) share one client,
              each starting a call every 20 ms: requests per logical call started during
              the outage, and the share of those calls that failed.
  sweep       each request fails (503) with probability p = 0, 10, ..., 100 %, independently:
              1,000 logical calls from 4 workers per point; a hash of (call, attempt)
              decides each outcome, so every client meets the same ones (a paired
              comparison); the schedule is ten times faster (0.01 s capped at 0.1 s):
              success rate and requests per logical call.
  retry-after one 429 per form of Retry-After (fraction, integer, HTTP-date, retry-after-ms),
              then success, five times each: whether the client waited at least what the
              server asked; for this project also with its retry budget in a failing spell.

Run: ``./dev bench retry`` (or ``python -m benchmarks retry``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol

import httpx
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
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.testing import FakeVinciServer, Fault

ATTEMPTS = 5
RETRY_STATUSES = (429, 500, 502, 503, 504)
PATH = "/billing/balance"
#: Concurrent callers (threads, or tasks for the async client) in the outage and the sweep.
WORKERS = 4


@dataclass(frozen=True)
class Backoff:
    """The schedule every client gets in one scenario: first wait and cap, in seconds."""

    initial: float
    cap: float


#: The outage and Retry-After scenarios: waits of 0.1, 0.2, 0.4, 0.8 s.
STANDARD = Backoff(initial=0.1, cap=1.0)
#: The failure-rate sweep: the same shape ten times faster, so that 11 points x 1,000
#: calls x 6 clients fit in minutes. The budget's floor is per second: if anything this
#: gives it less time to earn tokens per call than the standard schedule.
FAST = Backoff(initial=0.01, cap=0.1)


class Server(Protocol):
    """What a client needs of a server: the fake Vinci server or the sweep's dice server."""

    @property
    def api_key(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    def url(self, path: str) -> str: ...


#: One logical call as a worker saw it: its id, when it started (``time.monotonic()``),
#: and whether it ended well.
Outcome = tuple[str, float, bool]


class Running(Protocol):
    """Workers under way; `result` waits for them: one list of outcomes per worker."""

    def result(self) -> list[list[Outcome]]: ...


class Caller(Protocol):
    """A client built for one run, and the way its calls are driven.

    A call takes a call id (sent as X-Call-Id on every attempt, so the server can
    attribute requests to logical calls) and ends in success or failure. The scenarios
    only say which ids each worker calls and at what pace (`start`); the caller decides
    what a worker is (a thread, or a task in an event loop), so the scenario logic is
    the same for blocking and async clients.
    """

    @property
    def lost_to_budget(self) -> int | None:
        """Calls that ended because the retry budget refused (None: the client has none)."""

    def start(self, workers: Sequence[Iterable[str]], pace: float) -> Running:
        """Start one worker per iterable of call ids; each starts a call every `pace` s."""

    def close(self) -> None:
        """Release the client (its connections, its event loop)."""


#: A client is built per run: (server, backoff) -> caller.
Client = Callable[[Server, Backoff], Caller]


def _rest(started: float, pace: float) -> float:
    """How long a worker waits before its next call, to start one every `pace` s."""
    return max(0.0, pace - (time.monotonic() - started))


def _drive(call: Callable[[str], bool], ids: Iterable[str], pace: float) -> list[Outcome]:
    """One blocking worker: call each id in turn, one start every `pace` s at most."""
    outcomes: list[Outcome] = []
    for call_id in ids:
        started = time.monotonic()
        outcomes.append((call_id, started, call(call_id)))
        if pace > 0:
            time.sleep(_rest(started, pace))
    return outcomes


async def _adrive(
    call: Callable[[str], Awaitable[bool]], ids: Iterable[str], pace: float
) -> list[Outcome]:
    """`_drive` as a task: the same calls and pacing, awaiting instead of blocking."""
    outcomes: list[Outcome] = []
    for call_id in ids:
        started = time.monotonic()
        outcomes.append((call_id, started, await call(call_id)))
        if pace > 0:
            await asyncio.sleep(_rest(started, pace))
    return outcomes


class _Threads:
    """The workers of a `ThreadedCaller`: one future per thread."""

    def __init__(self, futures: list[Future[list[Outcome]]]) -> None:
        self._futures = futures

    def result(self) -> list[list[Outcome]]:
        return [f.result() for f in self._futures]


class ThreadedCaller:
    """A blocking call function, driven by one thread per worker.

    Every requests-based client and our httpx.Client row: a call returns True on
    success; `lost_to_budget` is the call function's own count, if it keeps one.
    """

    def __init__(self, call: Callable[[str], bool], close: Callable[[], None]) -> None:
        self._call = call
        self._close = close

    @property
    def lost_to_budget(self) -> int | None:
        count = getattr(self._call, "lost_to_budget", None)
        return count if isinstance(count, int) else None

    def start(self, workers: Sequence[Iterable[str]], pace: float) -> Running:
        pool = ThreadPoolExecutor(len(workers))
        futures = [pool.submit(_drive, self._call, ids, pace) for ids in workers]
        pool.shutdown(wait=False)  # the threads end with their workers
        return _Threads(futures)

    def close(self) -> None:
        self._close()


class AsyncCall(Protocol):
    """An async call function with its own closing (the client it calls through)."""

    @property
    def lost_to_budget(self) -> int | None: ...

    async def __call__(self, call_id: str) -> bool: ...

    async def aclose(self) -> None: ...


#: What `AsyncCaller`'s loop hands back once open: the call, its loop, the closing signal.
_Opened = tuple[AsyncCall, asyncio.AbstractEventLoop, asyncio.Event]


class AsyncCaller:
    """An async call function, driven by one task per worker in one event loop.

    The loop is ``asyncio.run`` in a thread of its own, for the caller's whole life:
    `opener` builds the call function (and its client) inside that loop, every `start`
    runs its workers there as concurrent tasks (``asyncio.gather``), and `close` closes
    the client in the same loop before the loop ends. The harness's threads only hand
    work over and wait, so the concurrency is the tasks', as in an async application.
    """

    def __init__(self, opener: Callable[[], AsyncCall]) -> None:
        self._opened: Future[_Opened] = Future()
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._life(opener),),
            name="bench-event-loop",
            daemon=True,  # a run that fails before `close` must not hang the process
        )
        self._thread.start()
        self._call, self._loop, self._closing = self._opened.result()

    async def _life(self, opener: Callable[[], AsyncCall]) -> None:
        """The loop's one job: open the call function, serve until `close`, close it."""
        try:
            call, closing = opener(), asyncio.Event()
        except BaseException as exc:
            self._opened.set_exception(exc)
            raise
        self._opened.set_result((call, asyncio.get_running_loop(), closing))
        try:
            await closing.wait()
        finally:
            await call.aclose()

    @property
    def lost_to_budget(self) -> int | None:
        return self._call.lost_to_budget

    def start(self, workers: Sequence[Iterable[str]], pace: float) -> Running:
        async def all_workers() -> list[list[Outcome]]:
            return list(await asyncio.gather(*(_adrive(self._call, w, pace) for w in workers)))

        return asyncio.run_coroutine_threadsafe(all_workers(), self._loop)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._closing.set)
        self._thread.join()


def _call_once(caller: Caller, call_id: str) -> bool:
    """One logical call through `caller`, from one worker; True when it ended well."""
    [outcomes] = caller.start([[call_id]], pace=0.0).result()
    return outcomes[0][2]


def _headers(server: Server, call_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}", "X-Call-Id": call_id}


def _succeeds(logical_call: Callable[[], object]) -> bool:
    """Run one logical call; True when it ended well."""
    try:
        logical_call()
    except (requests.RequestException, _RetryableStatusError):
        return False
    return True


Transport = Literal["requests", "httpx", "httpx async"]


@dataclass(frozen=True)
class Ours:
    """Our pipeline on one of its transports; called with (server, backoff), it builds one.

    Every transport gets the same policies (StatusErrors, Retry with the scenario's
    backoff, optionally a breaker inside it, APIKeyAuth) and its calls are judged the
    same way: the pipeline raises this library's errors (every one a
    `requests.RequestException`) on httpx as on requests.

    Attributes:
        transport: ``"requests"`` (mounted on a Session), ``"httpx"`` (the transport of
            an httpx.Client) or ``"httpx async"`` (of an httpx.AsyncClient).
        breaker: put a circuit breaker inside the retry, as the design puts them.
        budget: the retry budget: ``"default"`` for the Retry's own (a fresh default
            `RetryBudget`), None for none, or a given one (see `_pressed_budget`).
    """

    transport: Transport = "requests"
    breaker: bool = False
    budget: RetryBudget | Literal["default"] | None = "default"

    def pipeline(self, server: Server, backoff: Backoff) -> Pipeline:
        """The policies, built afresh (a new budget and breaker for each run)."""
        retry = Retry(max_attempts=ATTEMPTS, initial_delay=backoff.initial, max_delay=backoff.cap)
        if self.budget != "default":
            retry = dataclasses.replace(retry, budget=self.budget)
        inner = [CircuitBreaker(minimum_calls=5, window=2.0, break_duration=0.5)]
        return Pipeline(
            StatusErrors(), retry, *(inner if self.breaker else []), APIKeyAuth(server.api_key)
        )

    def pressed(self) -> Ours:
        """The same client with its budget in a failing spell (`_pressed_budget`)."""
        return dataclasses.replace(self, budget=_pressed_budget())

    def __call__(self, server: Server, backoff: Backoff) -> Caller:
        pipeline = self.pipeline(server, backoff)
        url = server.url(PATH)
        if self.transport == "httpx async":
            return AsyncCaller(lambda: _OursAsyncCall.opened(pipeline, url))
        if self.transport == "httpx":
            client = httpx.Client(transport=ResilientTransport(pipeline))
            return ThreadedCaller(_OursHttpxCall(client, url), client.close)
        session = requests.Session()
        mount(session, server.base_url + "/", pipeline)
        return ThreadedCaller(_OursCall(session, url), session.close)


class _Tally:
    """What our call functions share: the count of calls the budget ended."""

    def __init__(self) -> None:
        self.lost_to_budget = 0
        self._lock = threading.Lock()

    def _failed(self, error: requests.RequestException) -> Literal[False]:
        """Count `error` if it is the budget's refusal; a failed call either way."""
        if isinstance(error, RetryBudgetExhaustedError):
            with self._lock:
                self.lost_to_budget += 1
        return False


class _OursCall(_Tally):
    """Our call function on requests: a GET through the Session the pipeline is mounted on."""

    def __init__(self, session: requests.Session, url: str) -> None:
        super().__init__()
        self.session = session
        self.url = url

    def __call__(self, call_id: str) -> bool:
        try:
            self.session.get(self.url, headers={"X-Call-Id": call_id}, timeout=10).close()
        except requests.RequestException as exc:
            return self._failed(exc)
        return True


class _OursHttpxCall(_Tally):
    """Our call function on httpx.Client: the pipeline is the client's transport."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        super().__init__()
        self.client = client
        self.url = url

    def __call__(self, call_id: str) -> bool:
        try:
            self.client.get(self.url, headers={"X-Call-Id": call_id}, timeout=10)
        except requests.RequestException as exc:
            return self._failed(exc)
        return True


class _OursAsyncCall(_Tally):
    """Our call function on httpx.AsyncClient (its calls all run in one event loop)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        super().__init__()
        self.client = client
        self.url = url

    @classmethod
    def opened(cls, pipeline: Pipeline, url: str) -> _OursAsyncCall:
        """The call function on a new AsyncClient: made in the loop that will use it."""
        return cls(httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)), url)

    async def __call__(self, call_id: str) -> bool:
        try:
            await self.client.get(self.url, headers={"X-Call-Id": call_id}, timeout=10)
        except requests.RequestException as exc:
            return self._failed(exc)
        return True

    async def aclose(self) -> None:
        await self.client.aclose()


#: Our pipeline on each transport: the rows that must agree within noise.
OURS_BY_TRANSPORT: dict[str, Ours] = {
    "requests-resilience (requests)": Ours("requests"),
    "requests-resilience (httpx)": Ours("httpx"),
    "requests-resilience (httpx async)": Ours("httpx async"),
}


def urllib3_retry(server: Server, backoff: Backoff) -> Caller:
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

    return ThreadedCaller(call, session.close)


class _RetryableStatusError(Exception):
    pass


def _once(session: requests.Session, server: Server, call_id: str) -> None:
    response = session.get(server.url(PATH), headers=_headers(server, call_id), timeout=10)
    response.close()
    if response.status_code in RETRY_STATUSES:
        raise _RetryableStatusError(response.status_code)
    response.raise_for_status()


def tenacity_retry(server: Server, backoff: Backoff) -> Caller:
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

    return ThreadedCaller(call, session.close)


def stamina_retry(server: Server, backoff: Backoff) -> Caller:
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

    return ThreadedCaller(call, session.close)


def backoff_retry(server: Server, schedule: Backoff) -> Caller:
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

    return ThreadedCaller(call, session.close)


def vendor_loop(server: Server, backoff: Backoff) -> Caller:
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

    return ThreadedCaller(call, session.close)


CLIENTS: dict[str, Client] = {
    **OURS_BY_TRANSPORT,
    # What the budget itself changes, and the breaker inside the retry (on requests).
    "requests-resilience, no budget (requests)": Ours("requests", budget=None),
    "requests-resilience + breaker (requests)": Ours("requests", breaker=True),
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


def _ids_until(worker: int, stop_at: float) -> Iterator[str]:
    """Call ids ``worker-0``, ``worker-1``, ... for as long as ``time.monotonic() < stop_at``."""
    i = 0
    while time.monotonic() < stop_at:
        yield f"{worker}-{i}"
        i += 1


def _call_id(headers: Mapping[str, str]) -> str | None:
    """The X-Call-Id of a recorded request, however the client spelled the name."""
    return next((v for k, v in headers.items() if k.lower() == "x-call-id"), None)


def _outage_round(
    client: Client, *, workers: int = WORKERS, down: float = 2.0, pace: float = 0.02
) -> dict[str, Any]:
    """Workers start a call every `pace` s; the server is down for `down` s in the middle.

    Counts the calls started while the server was down, the requests those calls sent
    while it was down (by their X-Call-Id), and how many of those calls failed in the end.
    """
    lead, tail = 0.3, 1.5
    with FakeVinciServer() as server:
        caller = client(server, STANDARD)
        stop_at = time.monotonic() + lead + down + tail
        running = caller.start([_ids_until(n, stop_at) for n in range(workers)], pace)
        time.sleep(lead)
        outage_start = time.monotonic()
        server.outage(down)
        outage_end = outage_start + down
        calls = [outcome for worker in running.result() for outcome in worker]
        caller.close()
        arrivals = [(r.time, _call_id(r.headers)) for r in server.requests if r.path == PATH]
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
    client: Client, *, calls: int = 1000, workers: int = WORKERS, seed: int = 1
) -> list[dict[str, Any]]:
    """`_sweep_point` at each p of `SWEEP`."""
    return [_sweep_point(client, p, calls=calls, workers=workers, seed=seed) for p in SWEEP]


class DiceServer:
    """A loopback server whose every answer is decided by the call and attempt it serves.

    Attempt k of the call with id c fails (503) when a hash of (seed, p, c, k) falls
    below p, else succeeds (200): every client meets exactly the same outcomes, whatever
    the order its workers send in, so the comparison is paired.
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
    client: Client, p: float, *, calls: int, workers: int, seed: int
) -> dict[str, Any]:
    """`calls` logical calls from `workers` workers; each attempt fails with probability p."""
    with DiceServer(p, seed) as server:
        caller = client(server, FAST)
        per_worker = calls // workers
        ids = [[f"s-{n}-{i}" for i in range(per_worker)] for n in range(workers)]
        started = time.monotonic()
        results = caller.start(ids, pace=0.0).result()
        elapsed = time.monotonic() - started
        caller.close()
        sent = server.request_count
    done = [ok for worker in results for _, _, ok in worker]
    return {
        "p": p,
        "lost_to_budget": caller.lost_to_budget,
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


def _built(client: Client, server: Server, *, pressure: bool) -> Caller:
    """`client` on `server`; with `pressure`, its budget in a failing spell (ours only)."""
    if not pressure:
        return client(server, STANDARD)
    if not isinstance(client, Ours):
        msg = f"only our clients have a budget to press, not {client!r}"
        raise TypeError(msg)
    return client.pressed()(server, STANDARD)


def retry_after(client: Client, *, reps: int = 5, pressure: bool = False) -> dict[str, Any]:
    """One 429 per form, `reps` times each; compliant when the re-send came no sooner than asked.

    With `pressure`, the client's retry budget is in a failing spell when the 429 comes
    (only for our clients, `Ours`: the others have no budget).
    """
    results: dict[str, Any] = {}
    for form, make in RETRY_AFTER_FORMS.items():
        runs: list[dict[str, Any]] = []
        for _ in range(reps):
            headers, asked = make()
            with FakeVinciServer() as server:
                server.script(Fault.status(429, headers=headers), path=PATH)
                caller = _built(client, server, pressure=pressure)
                ok = _call_once(caller, "ra")
                caller.close()
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


#: The clients of the sweep (ours on each transport, the issue's anchors); the others run
#: the other scenarios.
SWEEP_CLIENTS = (*OURS_BY_TRANSPORT, "urllib3 Retry", "tenacity", "stamina")


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
        if name in OURS_BY_TRANSPORT:
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

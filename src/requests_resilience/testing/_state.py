"""The fake Vinci server's state: account, jobs, keys, rate limits, faults, observations.

Everything mutable lives in one :class:`VinciState` behind one ``threading.Lock``. The
lock is only held for bookkeeping: never while sleeping or doing socket I/O.
"""

from __future__ import annotations

import fnmatch
import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from requests_resilience.testing._faults import Fault

_CENT = Decimal("0.01")
DEFAULT_API_KEY = "sk-test-0123456789abcdef"
DEFAULT_KEY_RATE_LIMIT = 10
MAX_KEY_RATE_LIMIT = 100


def to_money(value: float | Decimal, *, option: str) -> Decimal:
    """Convert a dollar amount to a ``Decimal`` rounded to the cent.

    Raises:
        ValueError: If the amount is negative or not finite; the message names ``option``.
    """
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{option} must be a finite amount >= 0, got {value!r}")
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitConfig:
    """Per-API-key rate limiting of the fake server (a fixed window per key).

    When a server has a ``RateLimitConfig``, every authenticated answer carries
    ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix
    seconds), and a request over the limit gets ``429`` with
    ``{"detail": "Rate limit exceeded. Try again in N seconds."}``. The window of a key
    starts with its first request and lasts ``period`` seconds. Keys given to the server
    allow ``requests`` per window; keys created through ``POST /keys`` allow their own
    ``rate_limit`` per window (``period`` stands for the API's minute, so tests can shrink
    it).

    Example:
        >>> from requests_resilience.testing import FakeVinciServer, RateLimitConfig
        >>> server = FakeVinciServer(rate_limit=RateLimitConfig(requests=2, period=0.5))

    Attributes:
        requests: Requests allowed per window, at least 1.
        period: Window length in seconds (or a ``timedelta``), more than 0.
        send_retry_after: Add ``Retry-After`` to 429 answers; the real API does not
            document it, so it is off by default.
    """

    requests: int = DEFAULT_KEY_RATE_LIMIT
    period: float | timedelta = 60.0
    send_retry_after: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise TypeError(f"requests must be an int, got {self.requests!r}")
        if self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests!r}")
        seconds = (
            self.period.total_seconds()
            if isinstance(self.period, timedelta)
            else float(self.period)
        )
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"period must be a finite number of seconds > 0, got {self.period!r}")
        object.__setattr__(self, "period", seconds)

    @property
    def period_seconds(self) -> float:
        """The window length in seconds."""
        if isinstance(self.period, timedelta):  # pragma: no cover - converted in __post_init__
            return self.period.total_seconds()
        return self.period


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One request as the fake server received it.

    Attributes:
        method: The HTTP method, upper case.
        path: The path relative to the API base (``"/generate/text-to-video"``); a path
            outside the base is kept whole.
        query: The query parameters (the first value of each).
        headers: A plain copy of the request headers, names spelled as the client sent
            them (look up ``"Authorization"``, ``"traceparent"``...).
        body: The request body; empty if it was larger than ``max_upload_bytes``.
        time: When it arrived, on ``time.monotonic()``.
        fault: The name of the fault applied to it (a ``Fault.kind`` or ``"outage"``), or
            None.
        connection_id: The number of the TCP connection it came on (1, 2, ... per server),
            to tell a kept-alive connection from a new one.

    Example:
        >>> with FakeVinciServer() as server:
        ...     requests.get(server.url("/billing/balance"), headers=auth)
        ...     recorded = server.requests[-1]
        >>> recorded.method, recorded.path
        ('GET', '/billing/balance')
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = field(repr=False)
    time: float
    fault: str | None = None
    connection_id: int = 0

    def json(self) -> Any:
        """Decode the body as JSON.

        Raises:
            ValueError: If the body is not valid JSON.
        """
        return json.loads(self.body)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """The validated, frozen options of one fake server (see ``FakeVinciServer``)."""

    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    balance_usd: Decimal = Decimal("100.00")
    total_spent_usd: Decimal = Decimal("0.00")
    price_per_second: Decimal = Decimal("0.05")
    polls_to_complete: int = 3
    max_upload_bytes: int = 10 * 1024 * 1024
    rate_limit: RateLimitConfig | None = None
    send_request_id_header: bool = False
    port: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("api_keys must hold at least one key")
        for key in self.api_keys:
            if not isinstance(key, str) or not key or key != key.strip() or " " in key:
                raise ValueError(f"api_keys must be non-empty strings without spaces: {key!r}")
        if len(set(self.api_keys)) != len(self.api_keys):
            raise ValueError("api_keys must not repeat a key")
        for option in ("polls_to_complete", "max_upload_bytes"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be an int >= 1, got {value!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ValueError(f"port must be an int, got {self.port!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, got {self.port!r}")
        if not isinstance(self.host, str) or not self.host or self.host != self.host.strip():
            raise ValueError(f"host must be a non-empty address, got {self.host!r}")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimitConfig):
            raise ValueError(f"rate_limit must be a RateLimitConfig, got {self.rate_limit!r}")


@dataclass(slots=True)
class _Job:
    request_id: str
    duration_seconds: int
    cost: Decimal
    created_at: float
    error: str | None
    polls: int = 0


@dataclass(slots=True)
class _ApiKey:
    key_id: str
    name: str
    api_key: str
    rate_limit: int
    created_at: datetime
    last_used: datetime | None = None
    is_active: bool = True

    def describe(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "is_active": self.is_active,
            "created_at": self.created_at.isoformat(),
            "last_used": None if self.last_used is None else self.last_used.isoformat(),
            "key_preview": f"{self.api_key[:5]}...{self.api_key[-4:]}",
            "rate_limit": self.rate_limit,
        }


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0


@dataclass(frozen=True, slots=True)
class _ScriptEntry:
    fault: Fault
    path: str | None
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True, slots=True)
class Outage:
    """An outage in force: the status to answer and its ``Retry-After``, if any."""

    status: int
    retry_after: str | None


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the state decided for a request when it arrived."""

    fault: Fault | None
    outage: Outage | None
    latency: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The rate-limit verdict for one request of one key."""

    limit: int
    remaining: int
    reset_unix: int
    retry_in: int
    exceeded: bool


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """A job just created (and charged)."""

    request_id: str
    duration_seconds: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class Insufficient:
    """A job refused for lack of balance."""

    balance: Decimal
    required: Decimal


def _now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _new_key_id() -> str:
    return f"vinci_{secrets.token_hex(8)}"


class VinciState:
    """The account, jobs, keys, rate-limit windows, fault script and observations."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.lock = threading.Lock()
        self._balance = options.balance_usd
        self._spent = options.total_spent_usd
        self._jobs: dict[str, _Job] = {}
        self._fail_next: deque[str] = deque()
        default_limit = (
            options.rate_limit.requests
            if options.rate_limit is not None
            else DEFAULT_KEY_RATE_LIMIT
        )
        created = _now_utc()
        self._keys: dict[str, _ApiKey] = {}
        for index, key in enumerate(options.api_keys, start=1):
            name = "default" if index == 1 else f"key-{index}"
            record = _ApiKey(_new_key_id(), name, key, default_limit, created)
            self._keys[record.key_id] = record
        self._by_secret: dict[str, _ApiKey] = {k.api_key: k for k in self._keys.values()}
        self._windows: dict[str, _Window] = {}
        self._script: deque[_ScriptEntry] = deque()
        self._outage_until: float | None = None
        self._outage = Outage(503, None)
        self._latency = 0.0
        self._request_count = 0
        self._requests: list[RecordedRequest] = []
        self._jobs_created = 0

    # -- arrival, faults and observation ------------------------------------------------

    def arrive(
        self,
        *,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        connection_id: int,
    ) -> Arrival:
        """Count and record a request; take its scripted fault; report outage and latency."""
        now = time.monotonic()
        with self.lock:
            self._request_count += 1
            fault = self._take_fault(method, path)
            outage: Outage | None = None
            if fault is None and self._outage_until is not None:
                if now < self._outage_until:
                    outage = self._outage
                else:
                    self._outage_until = None
            name = fault.name if fault is not None else ("outage" if outage else None)
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    query=query,
                    headers=headers,
                    body=body,
                    time=now,
                    fault=name,
                    connection_id=connection_id,
                )
            )
            return Arrival(fault=fault, outage=outage, latency=self._latency)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for index, entry in enumerate(self._script):
            if entry.matches(method, path):
                del self._script[index]
                return entry.fault
        return None

    def script(self, faults: Iterable[Fault], path: str | None, method: str | None) -> None:
        """Queue faults for the next requests matching ``path`` and ``method``."""
        entries = [_ScriptEntry(fault, path, method) for fault in faults]
        with self.lock:
            self._script.extend(entries)

    def outage(self, seconds: float, status: int, retry_after: str | None) -> None:
        """Answer every request with ``status`` for the next ``seconds``."""
        with self.lock:
            self._outage_until = time.monotonic() + seconds
            self._outage = Outage(status, retry_after)

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` of latency to every request."""
        with self.lock:
            self._latency = seconds

    def clear_faults(self) -> None:
        """Drop the fault script, the outage, the latency and pending job failures."""
        with self.lock:
            self._script.clear()
            self._outage_until = None
            self._latency = 0.0
            self._fail_next.clear()

    def fail_next_jobs(self, n: int, error: str) -> None:
        """Make the next ``n`` created jobs end ``failed`` with ``error``."""
        with self.lock:
            self._fail_next.extend([error] * n)

    @property
    def pending_faults(self) -> int:
        """Scripted faults not consumed yet."""
        with self.lock:
            return len(self._script)

    @property
    def request_count(self) -> int:
        """Requests received."""
        with self.lock:
            return self._request_count

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests."""
        with self.lock:
            return list(self._requests)

    @property
    def jobs_created(self) -> int:
        """Jobs created (and charged)."""
        with self.lock:
            return self._jobs_created

    def reset_stats(self) -> None:
        """Forget the counters and the recorded requests."""
        with self.lock:
            self._request_count = 0
            self._requests.clear()
            self._jobs_created = 0

    # -- account ------------------------------------------------------------------------

    @property
    def balance(self) -> Decimal:
        """The current balance."""
        with self.lock:
            return self._balance

    @balance.setter
    def balance(self, value: Decimal) -> None:
        with self.lock:
            self._balance = value

    @property
    def spent(self) -> Decimal:
        """The total spent."""
        with self.lock:
            return self._spent

    def authenticate(self, secret: str) -> tuple[str, int] | None:
        """Return ``(key_id, rate_limit)`` of an active key and mark it used, else None."""
        with self.lock:
            key = self._by_secret.get(secret)
            if key is None or not key.is_active:
                return None
            key.last_used = _now_utc()
            return key.key_id, key.rate_limit

    def consume_rate(self, key_id: str, limit: int, period: float) -> RateDecision:
        """Count one request of ``key_id`` in its fixed window and return the verdict."""
        now = time.monotonic()
        wall = time.time()
        with self.lock:
            window = self._windows.get(key_id)
            if window is None or now >= window.start + period:
                window = self._windows[key_id] = _Window(start=now)
            exceeded = window.count >= limit
            if not exceeded:
                window.count += 1
            remaining = limit - window.count
            left = window.start + period - now
        return RateDecision(
            limit=limit,
            remaining=max(remaining, 0),
            reset_unix=math.ceil(wall + left),
            retry_in=max(math.ceil(left), 1),
            exceeded=exceeded,
        )

    def create_job(self, duration_seconds: int) -> CreatedJob | Insufficient:
        """Charge for and create a job, or refuse it for lack of balance."""
        cost = (self.options.price_per_second * duration_seconds).quantize(
            _CENT, rounding=ROUND_HALF_UP
        )
        request_id = f"req_{secrets.token_hex(12)}"
        with self.lock:
            if self._balance < cost:
                return Insufficient(balance=self._balance, required=cost)
            self._balance -= cost
            self._spent += cost
            error = self._fail_next.popleft() if self._fail_next else None
            self._jobs[request_id] = _Job(
                request_id, duration_seconds, cost, time.time(), error=error
            )
            self._jobs_created += 1
        return CreatedJob(request_id=request_id, duration_seconds=duration_seconds, cost=cost)

    def poll(self, request_id: str) -> dict[str, object] | None:
        """Advance a job by one poll and return its status body, or None if unknown."""
        total = self.options.polls_to_complete
        with self.lock:
            job = self._jobs.get(request_id)
            if job is None:
                return None
            job.polls += 1
            polls = job.polls
        if polls >= total:
            if job.error is not None:
                return {"request_id": request_id, "status": "failed", "error": job.error}
            return {
                "request_id": request_id,
                "status": "completed",
                "video_url": f"https://videos.vinci.invalid/{request_id}.mp4",
                "duration_seconds": float(job.duration_seconds),
                "cost_usd": float(job.cost),
            }
        body: dict[str, object] = {
            "request_id": request_id,
            "status": "pending" if polls == 1 else "processing",
            "estimated_cost_usd": float(job.cost),
        }
        if polls > 1:
            body["progress"] = min(max((polls - 1) * 100 // (total - 1), 1), 99)
        return body

    def usage(self, days: int) -> dict[str, object]:
        """Summarise the jobs created in the last ``days`` days."""
        since = time.time() - days * 86400
        with self.lock:
            jobs = [job for job in self._jobs.values() if job.created_at >= since]
            balance, spent = self._balance, self._spent
        return {
            "period_days": days,
            "total_requests": len(jobs),
            "total_seconds": sum(job.duration_seconds for job in jobs),
            "total_cost_usd": float(sum((job.cost for job in jobs), Decimal(0))),
            "current_balance_usd": float(balance),
            "total_spent_usd": float(spent),
        }

    # -- API keys -----------------------------------------------------------------------

    def create_key(self, name: str, rate_limit: int) -> dict[str, object]:
        """Create an active key and return the creation body (with the secret)."""
        record = _ApiKey(
            _new_key_id(), name, f"sk-{secrets.token_hex(20)}", rate_limit, _now_utc()
        )
        with self.lock:
            self._keys[record.key_id] = record
            self._by_secret[record.api_key] = record
        return {
            "key_id": record.key_id,
            "name": record.name,
            "api_key": record.api_key,
            "rate_limit": record.rate_limit,
            "created_at": record.created_at.isoformat(),
        }

    def list_keys(self) -> list[dict[str, object]]:
        """Describe every key, revoked ones included."""
        with self.lock:
            return [key.describe() for key in self._keys.values()]

    def revoke_key(self, key_id: str) -> bool:
        """Deactivate a key; return False if there is no such key."""
        with self.lock:
            key = self._keys.get(key_id)
            if key is None:
                return False
            key.is_active = False
            return True

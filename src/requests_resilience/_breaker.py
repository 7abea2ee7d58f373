"""The `CircuitBreaker` policy: fail fast while a server is failing, then probe it.

Built on pybreaker's states and storages (memory, or Redis to share state across
processes), but never on ``pybreaker.CircuitBreaker.call()``: that method holds a lock
for the whole guarded call, so threads sharing a breaker would run one at a time, and
it opens on N *consecutive* failures. This policy drives the state itself around
``next(call)`` with short critical sections of its own (see `_breaker_storage`), and
opens on a failure *ratio* over a sliding time window, given a minimum of calls::

                    failure ratio >= failure_ratio over `window`,
                    with at least `minimum_calls` calls
        ┌────────┐ ─────────────────────────────────────────▶ ┌──────┐
        │ closed │                                             │ open │ ◀─┐
        └────────┘ ◀──────────┐                                └──────┘   │
                              │ half_open_probes successes         │      │ a probe
                              │                    break_duration  │      │ fails
                        ┌───────────┐ ◀────────────────────────────┘      │
                        │ half_open │ ────────────────────────────────────┘
                        └───────────┘
"""

from __future__ import annotations

import functools
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import requests
import structlog

from requests_resilience._breaker_storage import (
    ADMITTED,
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    Admission,
    AsyncBreakerStorage,
    BreakerStorage,
    FailoverStorage,
    MemoryBreakerStorage,
    Rules,
    Transition,
)
from requests_resilience._cells import DEFAULT_MAX_KEYS, Cells
from requests_resilience._clock import Clock, SystemClock
from requests_resilience._copying import Rebuilt
from requests_resilience._errors import (
    APIConnectionError,
    APIStatusError,
    CircuitOpenError,
    ConfigurationError,
    _safe_url,
    refused_locally,
)
from requests_resilience._events import BreakerStateChange
from requests_resilience._options import count, ratio, seconds
from requests_resilience._redis import REDIS_TIMEOUT, connect
from requests_resilience._tally import Tally
from requests_resilience._telemetry import breaker_state_changed

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis
    from requests import Response

    from requests_resilience._pipeline import AsyncNext, Call, Next

__all__ = [
    "BreakerListener",
    "BreakerStatus",
    "CircuitBreaker",
    "breaker_key_by_endpoint",
    "breaker_key_by_host",
    "is_breaker_failure",
]

_log = structlog.get_logger("requests_resilience")

_DAY = 86_400.0
_BUCKETS = 10  # the window slides a tenth at a time
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PUBLIC_STATES = {
    STATE_CLOSED: "closed",
    STATE_OPEN: "open",
    STATE_HALF_OPEN: "half_open",
}

#: A function called with every state change of a `CircuitBreaker`.
BreakerListener: TypeAlias = "Callable[[BreakerStateChange], None]"


# -- what counts, and how calls are grouped -----------------------------------------


def _now(clock: Clock, shared: bool) -> float:
    # Shared (Redis) state needs a time that all hosts agree on; local state, a clock
    # that never goes back.
    return clock.time() if shared else clock.monotonic()


def is_breaker_failure(outcome: Response | BaseException) -> bool:
    """The default answer to "does this outcome count against the server?".

    Failures: a 5xx response (or an `APIStatusError` with a 5xx status, if a
    `StatusErrors` policy sits inside the breaker), a connection error or a timeout
    (the `APIConnectionError` family, or plain ``requests.ConnectionError`` /
    ``requests.Timeout``). Not failures: 1xx-4xx responses, 429 included (the server is
    answering, and the rate limit is the retry's business), and every other exception.
    A `CircuitOpenError` from an inner breaker never reaches this function, nor does
    a local refusal (an `APIStatusError` without a response, e.g. from an inner rate
    limit): the policy ignores them (neither a failure nor a success).

    Replace it with ``CircuitBreaker(is_failure=...)``, usually delegating to it::

        def is_failure(outcome):
            if isinstance(outcome, requests.Response) and outcome.status_code == 501:
                return False  # "not implemented" is not an outage
            return is_breaker_failure(outcome)

    Args:
        outcome: the response that came back, or the exception that was raised.

    Returns:
        True when the outcome counts as a failure.
    """
    if isinstance(outcome, BaseException):
        if isinstance(outcome, APIStatusError):
            return outcome.status_code >= 500
        return isinstance(
            outcome, (APIConnectionError, requests.ConnectionError, requests.Timeout)
        )
    return bool(outcome.status_code >= 500)


#: URLs up to this long have their (origin, path) cached: the same URLs come back (a
#: status poll, a balance), and parsing one costs more than the rest of a breaker's work.
_CACHED_URL_LENGTH = 512


def _origin(url: str) -> tuple[str, str]:
    """``("https://host:443", "/path")`` for a URL (cached for URLs that are not long)."""
    if len(url) <= _CACHED_URL_LENGTH:
        return _cached_origin(url)
    return _parse_origin(url)


def _parse_origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    origin = f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"
    return origin, parts.path or "/"


_cached_origin = functools.lru_cache(maxsize=1024)(_parse_origin)


@functools.lru_cache(maxsize=1024)
def _cached_host_key(url: str) -> str:
    return _parse_origin(url)[0]


def breaker_key_by_host(call: Call) -> str:
    """One breaker per origin: ``"https://api.example.com:443"`` (the default key).

    Example:
        >>> CircuitBreaker(key=breaker_key_by_host)  # doctest: +SKIP
    """
    url = call.request.url or ""
    if len(url) <= _CACHED_URL_LENGTH:
        return _cached_host_key(url)  # a breaker and a rate limit ask for it on every call
    return _parse_origin(url)[0]


def breaker_key_by_endpoint(call: Call) -> str:
    """One breaker per origin and path: ``"https://api.example.com:443/v1/jobs"``.

    The query is left out. Use it when endpoints fail independently, so that one
    failing endpoint does not cut off the others; paths with ids in them make one
    breaker per resource, so map those to a pattern in your own key function.

    Example:
        >>> CircuitBreaker(key=breaker_key_by_endpoint)  # doctest: +SKIP
    """
    origin, path = _origin(call.request.url or "")
    return origin + path


# -- options ---------------------------------------------------------------------------


_seconds = functools.partial(seconds, "CircuitBreaker")
_ratio = functools.partial(ratio, "CircuitBreaker")
_int = functools.partial(count, "CircuitBreaker")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    rules: Rules
    slow_call_duration: float | None  # None: calls are not timed
    key: Callable[[Call], str]
    is_failure: Callable[[Response | BaseException], bool]
    listeners: tuple[BreakerListener, ...]
    namespace: str
    storage: str  # "memory", or the Redis location without its password


# -- inspection ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStatus:
    """A read-only picture of one key's breaker, from `CircuitBreaker.status()`.

    The state and the window come from the storage (shared, with Redis); the totals
    count what *this* process's policy did since it was built.

    Attributes:
        key: the breaker's key (e.g. ``"https://api.example.com:443"``).
        state: ``"closed"``, ``"open"`` or ``"half_open"``.
        window_calls: calls counted in the current window (closed state only; the
            window starts empty each time the breaker closes).
        window_failures: of those, how many failed.
        window_slow_calls: of those, how many were slow (0 unless `slow_call_duration`
            is set).
        retry_after: when open, seconds until a probe is let through; else None.
        probes_in_flight: when half-open, probes sent and not yet back.
        sent: calls this policy let through to the server.
        failed: of those, how many counted as failures.
        rejected: calls this policy failed fast with `CircuitOpenError`.
        opened: how many times this policy opened the breaker.
        shared: whether the state is shared between processes (Redis).

    Example:
        >>> breaker = CircuitBreaker()
        >>> status = breaker.status("https://api.example.com:443")
        >>> status.state, status.rejected
        ('closed', 0)
    """

    key: str
    state: str
    window_calls: int
    window_failures: int
    retry_after: float | None
    probes_in_flight: int
    sent: int
    failed: int
    rejected: int
    opened: int
    shared: bool
    window_slow_calls: int = 0

    @property
    def failure_ratio(self) -> float | None:
        """Failures / calls in the window, or None for an empty window."""
        return self.window_failures / self.window_calls if self.window_calls else None


class _Cell:
    """One key's storage, and what this process did with it (under a short lock)."""

    __slots__ = (
        "async_storage",
        "clock",
        "failed",
        "lock",
        "opened",
        "rejected",
        "sent",
        "shared",
        "storage",
        "used",
    )

    def __init__(self, storage: BreakerStorage) -> None:
        self.used = 0  # recency, stamped by `Cells`
        self.storage = storage
        self.shared = storage.shared  # its time is wall-clock time (Redis), else monotonic
        self.async_storage: AsyncBreakerStorage | None = None  # built on first async use
        self.lock = threading.Lock()
        self.clock: Clock = SystemClock()
        self.sent = Tally()  # counted on every attempt: no lock
        self.failed = 0
        self.rejected = 0
        self.opened = 0


# -- the policy ------------------------------------------------------------------------


class CircuitBreaker(Rebuilt):
    """Fail fast, without touching the network, while a server keeps failing.

    While **closed**, every outcome lands in a sliding window; when a failure brings
    the last `window` seconds to at least `minimum_calls` calls that failed in a share
    of at least `failure_ratio`, the breaker **opens** (as Polly's and resilience4j's
    do, it is a failure that trips it, never a success): calls fail at once with `CircuitOpenError`
    (in microseconds, no I/O), whose ``retry_after`` says when a probe will be let
    through. After `break_duration` it is **half-open**: `half_open_probes` calls go out
    as probes, at the same time; when they all succeed it closes, when one fails it
    opens for another `break_duration`. Other calls meanwhile get `CircuitOpenError`
    with a short ``retry_after``.

    What counts as a failure is `is_failure` (default `is_breaker_failure`: 5xx,
    connection errors, timeouts; never 4xx or 429). Responses pass through unchanged,
    5xx included (the outer `StatusErrors` raises for them); exceptions are re-raised
    after being counted. Breakers are made lazily per `key` (default: per origin), so
    one failing host or endpoint does not cut off the others.

    Threads share a breaker without waiting on each other: no lock is held while the
    request is on the wire. Time comes from the pipeline's clock (``monotonic()``; with
    Redis, ``time()``, so that hosts agree), so tests run on a `FakeClock`.

    Where it goes, and how it plays with `Retry`::

        StatusErrors ─▶ Retry ─▶ CircuitBreaker ─▶ APIKeyAuth ─▶ Tracing ─▶ transport
                          ▲            │
                          │            ├─ closed / probe: next(call); count the outcome
                          │            └─ open: raise CircuitOpenError(retry_after), no I/O
                          └─ waits retry_after if the call's deadline allows it and it
                             is under max_retry_after, else fails at once

    Inside the retry, every wire attempt is counted; an open breaker's
    ``retry_after`` is treated like a server's ``Retry-After``, so during an outage a
    fleet sends a few probes per `break_duration` instead of a request per caller per
    backoff step. A rate limit, if any, goes right after the breaker: an open circuit
    then spends no token, and a local rate-limit refusal is not a server failure.
    Outside a retry, `CircuitOpenError` simply reaches the caller.

    With `redis_url` (or `redis_client`) the state is shared by every process that uses
    the same Redis, `name` and `namespace`: when one process opens the breaker, the
    others fail fast too. pybreaker's ``CircuitRedisStorage`` keys hold the state; the
    window and the probe permits sit next to them, updated by Lua scripts (one round
    trip per step). If Redis fails, calls go on with each process's own state in
    memory; this is logged once, and Redis is tried again every few seconds.

    The wait an open breaker announces (``CircuitOpenError.retry_after``) is never more
    than `break_duration`, even when the shared state in Redis says the break lasts
    longer (written by a process with a longer one): `break_duration` is this
    process's bound on that hint.

    Args:
        failure_ratio: the share of failed calls in the window that opens the breaker;
            more than 0.0, at most 1.0 (default 0.5).
        minimum_calls: calls the window must hold before the ratio is judged; 1 to
            1,000,000 (default 10).
        window: the sliding window, in seconds or a timedelta; 0.001 to 86400 (default
            10). It slides a tenth at a time.
        break_duration: how long the breaker stays open before probing, in seconds or
            a timedelta; 0.001 to 86400 (default 30).
        half_open_probes: probes let through at once when half-open, all of which must
            succeed to close it; 1 to 1000 (default 1).
        slow_call_duration: an attempt that takes at least this long (seconds or a
            timedelta, on the pipeline's clock) is a *slow call*, whatever its outcome;
            None (the default) times nothing. 0.001 to 86400.
        slow_call_ratio: with `slow_call_duration`, the share of slow calls in the
            window that opens the breaker too, with the same `minimum_calls`, as
            resilience4j's ``slowCallRateThreshold`` does: a server that answers, but
            slowly, is failing its callers' deadlines. A slow probe reopens the breaker.
            More than 0.0, at most 1.0 (default 1.0: every call in the window slow).
        key: ``Call -> str``, which breaker a call belongs to (default
            `breaker_key_by_host`; see also `breaker_key_by_endpoint`).
        is_failure: ``Response | BaseException -> bool`` (default `is_breaker_failure`).
        listeners: functions called with a `BreakerStateChange` on every state change
            this process makes (after the telemetry hook). A listener that raises is
            logged and ignored.
        redis_url: share the state through this Redis (``redis://``, ``rediss://`` or
            ``unix://``); needs the ``redis`` extra.
        redis_client: or share it through this `redis.Redis` client.
        async_redis: the `redis.asyncio.Redis` client for async callers (the same
            state, keys and scripts). Optional: without it one is built on first
            async use from `redis_url` or from `redis_client`'s connection settings;
            given alone, it serves both faces (the sync client is built from it).
            Each async Redis step is bounded by `redis_timeout`, whatever the client.
        redis_timeout: seconds to connect to Redis and for each command, for the client
            made from `redis_url`; 0.001 to 60 (default 0.5). A frozen Redis costs a
            call at most this, once, before the policy falls back to local state for a
            few seconds. Every Redis key of a breaker expires when idle (four times the
            longer of `window` and `break_duration`, at least a minute).
        max_keys: the most keys whose state is kept in memory; 1 to 10,000,000
            (default 10,000). A new key beyond it drops the least recently used tenth
            (a dropped key that comes back starts closed; with Redis, its shared state
            is still there).
        namespace: the prefix of the Redis keys.
        name: the policy's name in descriptions, logs and Redis keys.

    Raises:
        ConfigurationError: an option is out of range or of the wrong type (the
            message names it and its range), or both `redis_url` and `redis_client`
            are given.
        ImportError: Redis is asked for but the ``redis`` package is not installed.

    Example:
        >>> from requests_resilience import CircuitBreaker, Pipeline, Retry, StatusErrors
        >>> breaker = CircuitBreaker(failure_ratio=0.5, minimum_calls=20, break_duration=15)
        >>> pipeline = Pipeline(StatusErrors(), Retry(timeout=60), breaker)
        >>> breaker.state("https://api.example.com:443")
        'closed'
    """

    __slots__ = ("_cells", "_link", "_name", "_secrets", "_settings")

    def __init__(
        self,
        *,
        failure_ratio: float = 0.5,
        minimum_calls: int = 10,
        window: float | timedelta = 10.0,
        break_duration: float | timedelta = 30.0,
        half_open_probes: int = 1,
        slow_call_duration: float | timedelta | None = None,
        slow_call_ratio: float = 1.0,
        key: Callable[[Call], str] = breaker_key_by_host,
        is_failure: Callable[[Response | BaseException], bool] = is_breaker_failure,
        listeners: BreakerListener | Iterable[BreakerListener] = (),
        redis_url: str | None = None,
        redis_client: Redis | None = None,
        async_redis: AsyncRedis | None = None,
        redis_timeout: float | timedelta = REDIS_TIMEOUT,
        max_keys: int = DEFAULT_MAX_KEYS,
        namespace: str = "requests_resilience:breaker",
        name: str = "circuit_breaker",
    ) -> None:
        failure_ratio = _ratio("failure_ratio", failure_ratio)
        slow_ratio = _ratio("slow_call_ratio", slow_call_ratio)
        slow_s = (
            None
            if slow_call_duration is None
            else _seconds("slow_call_duration", slow_call_duration, 0.001, _DAY)
        )
        minimum_calls = _int("minimum_calls", minimum_calls, 1, 1_000_000)
        window_s = _seconds("window", window, 0.001, _DAY)
        break_s = _seconds("break_duration", break_duration, 0.001, _DAY)
        half_open_probes = _int("half_open_probes", half_open_probes, 1, 1000)
        timeout_s = _seconds("redis_timeout", redis_timeout, 0.001, 60.0)
        max_keys = _int("max_keys", max_keys, 1, 10_000_000)
        if not callable(key):
            msg = "CircuitBreaker key must be a function Call -> str"
            raise ConfigurationError(msg)
        if not callable(is_failure):
            msg = "CircuitBreaker is_failure must be a function (response or exception) -> bool"
            raise ConfigurationError(msg)
        hooks: tuple[Any, ...]
        try:
            hooks = (listeners,) if callable(listeners) else tuple(listeners)
        except TypeError:
            hooks = (listeners,)  # not iterable: refused below
        if not all(callable(h) for h in hooks):
            msg = (
                "CircuitBreaker listeners must be a function, or functions, taking a "
                "BreakerStateChange"
            )
            raise ConfigurationError(msg)
        for option, text in (("namespace", namespace), ("name", name)):
            if not isinstance(text, str) or not text.strip():
                msg = f"CircuitBreaker {option} must be a non-empty string, got {text!r}"
                raise ConfigurationError(msg)
        link, storage, secrets = connect(
            redis_url,
            redis_client,
            owner="CircuitBreaker",
            name=name,
            event="circuit_breaker",
            async_redis=async_redis,
            fallback="local memory state, per process",
            timeout=timeout_s,
        )

        self._settings = _Settings(
            rules=Rules(
                failure_ratio=float(failure_ratio),
                minimum_calls=minimum_calls,
                window=window_s,
                buckets=_BUCKETS,
                break_duration=break_s,
                half_open_probes=half_open_probes,
                probe_retry_after=min(1.0, break_s / 10),
                slow_call_ratio=None if slow_s is None else slow_ratio,
            ),
            slow_call_duration=slow_s,
            key=key,
            is_failure=is_failure,
            listeners=hooks,
            namespace=namespace,
            storage=storage,
        )
        self._name = name
        self._secrets = secrets
        self._link = link
        self._cells: Cells[_Cell] = Cells(max_keys, self._new_cell)

    # -- settings ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The policy's name in descriptions, logs, spans and Redis keys."""
        return self._name

    @property
    def secrets(self) -> tuple[str, ...]:
        """The Redis password, if any, for the pipeline's redactor."""
        return self._secrets

    @property
    def failure_ratio(self) -> float:
        """The share of failed calls in the window that opens the breaker."""
        return self._settings.rules.failure_ratio

    @property
    def minimum_calls(self) -> int:
        """Calls the window must hold before the ratio is judged."""
        return self._settings.rules.minimum_calls

    @property
    def window(self) -> float:
        """The sliding window, in seconds."""
        return self._settings.rules.window

    @property
    def break_duration(self) -> float:
        """Seconds the breaker stays open before probing."""
        return self._settings.rules.break_duration

    @property
    def half_open_probes(self) -> int:
        """Probes let through at once when half-open."""
        return self._settings.rules.half_open_probes

    @property
    def max_keys(self) -> int:
        """The most keys whose state is kept in memory."""
        return self._cells.max_keys

    @property
    def shared(self) -> bool:
        """Whether the state is shared between processes through Redis."""
        return self._link is not None

    # -- the policy ----------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Send the call unless the breaker is open; count its outcome."""
        key = self._settings.key(call)
        cell = self._cells.get(key)
        clock = call.clock
        cell.clock = clock
        probe = self._admit(key, cell, call)
        began = 0.0 if self._settings.slow_call_duration is None else clock.monotonic()
        try:
            response = next(call)
        except BaseException as exc:
            self._record(key, cell, exc, probe, clock, began=began)
            raise
        if not self._recorded_at_once(cell, response, probe, clock):
            self._record(key, cell, response, probe, clock, began=began)
        return response

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines: the same decisions, the state stepped by awaiting.

        With Redis, the state is read and written through redis-py's asyncio client
        (the same keys and scripts as `send`, the same fallback); without, the same
        memory state. Sync and async callers of one breaker share it.
        """
        key = self._settings.key(call)
        cell = self._cells.get(key)
        clock = call.clock
        cell.clock = clock
        if self._link is None:  # the state is in memory: stepped at once, nothing to await
            probe = self._admit(key, cell, call)
            began = self._started(clock)
            try:
                response = await next(call)
            except BaseException as exc:
                self._record(key, cell, exc, probe, clock, began=began)
                raise
            if not self._recorded_at_once(cell, response, probe, clock):
                self._record(key, cell, response, probe, clock, began=began)
            return response
        storage = self._async_face(key, cell)
        admission = await storage.admit(_now(clock, storage.shared), self._settings.rules)
        probe = self._admitted(key, cell, admission, call)
        began = self._started(clock)
        try:
            response = await next(call)
        except BaseException as exc:
            await self._arecord(key, cell, exc, storage, probe=probe, clock=clock, began=began)
            raise
        await self._arecord(key, cell, response, storage, probe=probe, clock=clock, began=began)
        return response

    def _recorded_at_once(
        self, cell: _Cell, response: Response, probe: bool, clock: Clock
    ) -> bool:
        """Record the common answer in one step; False if `response` is not one.

        The common answer: a fast success (untimed calls, the default failure rule, a
        status under 500) outside a probe, for a breaker in memory. It opens and closes
        nothing: it is only counted (`_record` does the same, in more steps).
        """
        settings = self._settings
        storage = cell.storage
        if (
            probe
            or settings.slow_call_duration is not None
            or settings.is_failure is not is_breaker_failure
            or response.status_code >= 500
            or type(storage) is not MemoryBreakerStorage
        ):
            return False
        storage.record_success(clock.monotonic(), settings.rules)
        cell.sent.add()
        return True

    def _started(self, clock: Clock) -> float:
        """When an attempt started, if calls are timed (a slow-call threshold is set)."""
        return 0.0 if self._settings.slow_call_duration is None else clock.monotonic()

    def _slow(self, clock: Clock, began: float) -> bool:
        """Whether the attempt that started at `began` was slow (always False if untimed)."""
        threshold = self._settings.slow_call_duration
        return threshold is not None and clock.monotonic() - began >= threshold

    def _async_face(self, key: str, cell: _Cell) -> AsyncBreakerStorage:
        face = cell.async_storage
        if face is None:  # a race builds two equal faces: harmless
            face = cell.async_storage = self._async_storage(key)
        return face

    async def _arecord(
        self,
        key: str,
        cell: _Cell,
        outcome: Response | BaseException,
        storage: AsyncBreakerStorage,
        *,
        probe: bool,
        clock: Clock,
        began: float,
    ) -> None:
        """`_record` for the async face."""
        now = _now(clock, storage.shared)
        try:
            failed = self._failure_of(outcome)
        except BaseException:
            await storage.release(now, probe=probe)
            self._counted(key, cell, None, None)
            raise
        if failed is None:
            await storage.release(now, probe=probe)
            return
        transition = await storage.record(
            now, self._settings.rules, failed=failed, probe=probe, slow=self._slow(clock, began)
        )
        self._counted(key, cell, failed, transition)

    def _admit(self, key: str, cell: _Cell, call: Call) -> bool:
        """Ask the (sync) storage to admit the call: refuse it, or say if it is the probe."""
        clock = call.clock
        now = clock.time() if cell.shared else clock.monotonic()  # see _now
        admission = cell.storage.admit(now, self._settings.rules)
        if admission is ADMITTED:
            return False  # closed: no transition, no probe (most calls)
        return self._admitted(key, cell, admission, call)

    def _admitted(self, key: str, cell: _Cell, admission: Admission, call: Call) -> bool:
        """Act on an admission: announce its transition, refuse, or say if it is the probe."""
        if admission.transition is not None:
            self._announce(key, admission.transition)
        if not admission.allowed:
            with cell.lock:
                cell.rejected += 1
            raise self._open_error(key, admission, call)
        return admission.probe

    def _failure_of(self, outcome: Response | BaseException) -> bool | None:
        """Whether an attempt's outcome is a failure, a success, or nothing to record.

        None for an attempt that reached no server: an inner breaker's or rate limit's
        local refusal, or an interruption (KeyboardInterrupt, cancellation); a probe
        that ends so stays unanswered and is released. `is_failure` may raise.
        """
        is_failure = self._settings.is_failure
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception) or refused_locally(outcome):
                return None
        elif is_failure is is_breaker_failure:
            return outcome.status_code >= 500  # the default rule for an answer, inlined
        return bool(is_failure(outcome))

    def _record(
        self,
        key: str,
        cell: _Cell,
        outcome: Response | BaseException,
        probe: bool,
        clock: Clock,
        *,
        began: float,
    ) -> None:
        """Record the outcome in the storage (or release the attempt), and count it."""
        storage = cell.storage
        now = clock.time() if cell.shared else clock.monotonic()  # see _now
        try:
            failed = self._failure_of(outcome)
        except BaseException:
            storage.release(now, probe=probe)
            self._counted(key, cell, None, None)
            raise
        if failed is None:
            storage.release(now, probe=probe)
            return
        transition = storage.record(
            now, self._settings.rules, failed=failed, probe=probe, slow=self._slow(clock, began)
        )
        self._counted(key, cell, failed, transition)

    def _counted(
        self, key: str, cell: _Cell, failed: bool | None, transition: Transition | None
    ) -> None:
        """This process's counts of a recorded attempt (`failed` None: is_failure raised)."""
        cell.sent.add()
        if failed or transition is not None:
            with cell.lock:
                if failed:
                    cell.failed += 1
                if transition is not None and transition.new == STATE_OPEN:
                    cell.opened += 1
        if transition is not None:
            self._announce(key, transition)

    def _async_storage(self, key: str) -> AsyncBreakerStorage:
        """The asyncio face of `key`'s state, for the async driver.

        It steps the same state as `send` does: with Redis, the same keys and scripts
        through redis-py's asyncio client, with the same `RedisLink` (one health for
        both faces) and the same local fallback object; without Redis, the same
        `MemoryBreakerStorage`, called directly (it does no I/O). So a breaker opened
        by sync callers refuses async ones, and the other way round.

        Example:
            >>> breaker = CircuitBreaker()
            >>> storage = breaker._async_storage("https://api.example.com:443")
            >>> storage.shared
            False
        """
        storage = self._cells.get(key).storage
        assert isinstance(storage, FailoverStorage | MemoryBreakerStorage)  # see _new_cell
        return storage.async_face()

    def _new_cell(self, key: str) -> _Cell:
        storage: BreakerStorage
        if self._link is not None:
            namespace = f"{self._settings.namespace}:{self._name}:{{{key}}}"
            storage = FailoverStorage(self._link, namespace, _BUCKETS, self._settings.rules.ttl_ms)
        else:
            storage = MemoryBreakerStorage(_BUCKETS)
        return _Cell(storage)

    def _open_error(self, key: str, admission: Admission, call: Call) -> CircuitOpenError:
        request = call.request
        target = f"{request.method} {_safe_url(request.url)}"
        wait = admission.retry_after
        if admission.state == STATE_HALF_OPEN:
            probes = self._settings.rules.half_open_probes
            why = (
                f"is half-open and its {probes} probe{'s' if probes > 1 else ''} "
                f"{'are' if probes > 1 else 'is'} in flight"
            )
            when = f"try again in {wait:.3g}s"
        else:
            why = "is open after sustained server failures"
            when = f"it lets a probe through in {wait:.3g}s"
        message = f"circuit breaker {key!r} {why}: {target} was not sent; {when}"
        return CircuitOpenError(
            call.redactor.redact(message), breaker=key, retry_after=wait, request=request
        )

    def _announce(self, key: str, transition: Transition) -> None:
        calls, failures = transition.calls, transition.failures
        change = BreakerStateChange(
            breaker=key,
            old_state=_PUBLIC_STATES.get(transition.old, transition.old),
            new_state=_PUBLIC_STATES.get(transition.new, transition.new),
            failure_ratio=failures / calls if calls and failures is not None else None,
            slow_call_ratio=(
                transition.slow_calls / calls if calls and transition.slow_calls else None
            ),
            calls=calls,
            retry_after=self.break_duration if transition.new == STATE_OPEN else None,
        )
        for hook in (breaker_state_changed, *self._settings.listeners):
            try:
                hook(change)
            except Exception:  # a broken listener must not fail the call
                _log.exception(
                    "circuit_breaker_listener_failed",
                    policy=self._name,
                    listener=getattr(hook, "__qualname__", repr(hook)),
                    breaker=key,
                )

    # -- inspection ----------------------------------------------------------------

    def state(self, key: str) -> str:
        """The state of `key`'s breaker: ``"closed"``, ``"open"`` or ``"half_open"``.

        With Redis this is the shared state, even for a key this process has not used.
        """
        return self.status(key).state

    def status(self, key: str) -> BreakerStatus:
        """A read-only picture of `key`'s breaker (see `BreakerStatus`).

        Time is read from the clock of the last call through that key.
        """
        cell = self._cells.get(key)
        clock = cell.clock
        storage = cell.storage
        stored = storage.read(_now(clock, storage.shared), self._settings.rules)
        with cell.lock:
            sent, failed, rejected, opened = (
                cell.sent.value,
                cell.failed,
                cell.rejected,
                cell.opened,
            )
        return BreakerStatus(
            key=key,
            state=_PUBLIC_STATES.get(stored.state, stored.state),
            window_calls=stored.calls,
            window_failures=stored.failures,
            retry_after=stored.retry_after,
            probes_in_flight=stored.probes_in_flight,
            sent=sent,
            failed=failed,
            rejected=rejected,
            opened=opened,
            shared=storage.shared,
            window_slow_calls=stored.slow_calls,
        )

    def snapshot(self) -> Mapping[str, BreakerStatus]:
        """The status of every key this policy has seen, by key (a read-only mapping)."""
        keys = self._cells.keys()
        return MappingProxyType({key: self.status(key) for key in keys})

    def __repr__(self) -> str:
        s = self._settings
        r = s.rules
        parts = [
            f"failure_ratio={r.failure_ratio}",
            f"minimum_calls={r.minimum_calls}",
            f"window={r.window}",
            f"break_duration={r.break_duration}",
            f"half_open_probes={r.half_open_probes}",
            f"key={_func_name(s.key)}",
        ]
        if s.slow_call_duration is not None:
            parts.insert(5, f"slow_call_duration={s.slow_call_duration}")
            parts.insert(6, f"slow_call_ratio={r.slow_call_ratio}")
        if s.is_failure is not is_breaker_failure:
            parts.append(f"is_failure={_func_name(s.is_failure)}")
        if s.listeners:
            parts.append(f"listeners=<{len(s.listeners)}>")
        parts.append(f"storage={s.storage!r}")
        if self._name != "circuit_breaker":
            parts.append(f"name={self._name!r}")
        return f"CircuitBreaker({', '.join(parts)})"


def _func_name(func: Any) -> str:
    return str(getattr(func, "__qualname__", None) or type(func).__name__)

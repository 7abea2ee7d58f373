"""The `ConcurrencyLimit` policy (a bulkhead): at most N calls in flight per key.

A call takes a permit before it goes on and gives it back when it returns (or raises,
or is interrupted). When all `max_concurrent` permits are taken, it waits in a bounded
FIFO queue, for at most `max_wait` and never past the call's deadline; a call that
cannot wait (the queue is full, no time is left) fails at once with a local
`ConcurrencyLimitError`, and nothing is sent. With Redis the permits are leases shared
by every process (see `_concurrency_storage`): a process that dies holding permits
loses them when their lease runs out::

    StatusErrors ─▶ ConcurrencyLimit ─▶ Retry ─▶ CircuitBreaker ─▶ RateLimit ─▶ ...
                          │
       take a permit ─────┤   (the gate's lock, or one Lua script in Redis)
       or queue, FIFO ────┤   woken by a release; the head asks Redis again meanwhile
       the whole call ────┤   its retries, their waits, the breaker's: one permit
       give it back ──────┘   on return, error, KeyboardInterrupt or cancellation

It sits outside the retry, as Polly's concurrency limiter sits outermost in its standard
pipeline: one logical call holds one permit for all its attempts, so N permits mean N
operations at the server at once (a retry never runs beside its own first attempt), and
a retry does not queue behind other callers half way through its call. A refusal is
final: the call already waited what it could.

The decisions (enter, queue, hand over, leave, release) are the gate's short locked
steps in `_concurrency_storage`; `send` and `asend` are the drivers that wait and talk
to Redis around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace

from requests_resilience import _telemetry
from requests_resilience._breaker import breaker_key_by_host
from requests_resilience._cells import DEFAULT_MAX_KEYS, Cells
from requests_resilience._clock import Clock, SystemClock, sleep_async
from requests_resilience._concurrency_storage import (
    AsyncRedisPermits,
    Gate,
    LeaseRenewer,
    RedisPermits,
    Waiter,
    new_holder_id,
)
from requests_resilience._copying import Rebuilt
from requests_resilience._errors import ConcurrencyLimitError, ConfigurationError, _safe_url
from requests_resilience._forksafe import reinit_after_fork
from requests_resilience._options import count, seconds
from requests_resilience._redis import REDIS_TIMEOUT, AsyncFailover, connect

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis
    from requests import Response

    from requests_resilience._pipeline import AsyncNext, Call, Next
    from requests_resilience._redis import RedisLink

__all__ = ["ConcurrencyLimit", "ConcurrencyLimitStatus"]

_DAY = 86_400.0
#: The head of a queue asks Redis again after this, doubling up to `_LAST_POLL`.
_FIRST_POLL = 0.002
_LAST_POLL = 0.05
#: On a clock other than `SystemClock` (a `FakeClock`), a waiter sleeps on that clock in
#: steps of at most this, looking for its permit after each.
_CLOCK_STEP = 0.05
_WAIT_ATTRIBUTE = "requests_resilience.concurrency_limit.wait"

QUEUE_FULL = "queue full"
NO_WAIT = "no wait allowed"
TIMED_OUT = "timed out"


_number = functools.partial(seconds, "ConcurrencyLimit")
_integer = functools.partial(count, "ConcurrencyLimit")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    max_concurrent: int
    max_queue: int
    max_wait: float
    lease: float
    max_keys: int
    key: str | Callable[[Call], str]
    namespace: str
    storage: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyLimitStatus:
    """A read-only picture of one key's permits, from `ConcurrencyLimit.status()`.

    Attributes:
        key: the key.
        max_concurrent: the most calls allowed in flight at once.
        in_flight: calls holding a permit now: fleet-wide with Redis (live leases),
            this process's otherwise.
        held_here: of those, the ones held by this process.
        queued: callers of this process waiting for a permit now.
        admitted: calls this process let through since the policy was built.
        waited: of those, how many queued first.
        refused: calls refused locally (`ConcurrencyLimitError`).
        mean_hold: the running average of the seconds a permit is held, or None before
            any was released.
        shared: whether the permits are shared between processes (Redis).

    Example:
        >>> limit = ConcurrencyLimit(4, key="vinci")
        >>> limit.status("vinci").in_flight
        0
    """

    key: str
    max_concurrent: int
    in_flight: int
    held_here: int
    queued: int
    admitted: int
    waited: int
    refused: int
    mean_hold: float | None
    shared: bool


class _Cell:
    """One key's gate, its Redis faces (built on first use) and the clock last used."""

    __slots__ = ("async_permits", "clock", "gate", "permits", "used")

    def __init__(self, gate: Gate) -> None:
        self.used = 0  # recency, stamped by `Cells`
        self.gate = gate
        self.permits: RedisPermits | None = None
        self.async_permits: _AsyncPermits | None = None
        self.clock: Clock = SystemClock()


class _AsyncPermits(AsyncFailover[AsyncRedisPermits, Gate]):
    """The async face of one key's permits: Redis through its asyncio client, or the gate."""

    def __init__(self, gate: Gate, link: RedisLink, key: str) -> None:
        super().__init__(gate, link, lambda client: AsyncRedisPermits(client, key))

    async def acquire(
        self, now: float, lease: float, holder: str, waiter: Waiter | None
    ) -> tuple[bool, bool]:
        """(granted, in Redis): a permit from Redis, or the gate's own if Redis fails."""
        gate = self.fallback

        async def on_redis(permits: AsyncRedisPermits) -> tuple[bool, bool]:
            granted, _, _ = await permits.acquire(now, lease, gate.limit, holder)
            return granted, True

        return await self._run(now, on_redis, lambda g: (g.take_local(waiter), False))

    async def release(self, now: float, holder: str) -> None:
        """Give a Redis permit back; if Redis fails its lease runs out instead."""
        await self._run(now, lambda permits: permits.release(holder), lambda _: None)


class _Permit:
    """A permit held by one call: where it came from, since when, and what it waited."""

    __slots__ = ("cell", "holder", "key", "started", "waited")

    def __init__(
        self, cell: _Cell, key: str, holder: str | None, started: float, waited: float
    ) -> None:
        self.cell, self.key, self.holder = cell, key, holder  # holder: a Redis lease
        self.started, self.waited = started, waited


class _Plan:
    """Where a call asks for its permit, and how long it may wait for it."""

    __slots__ = ("allowed", "by_deadline", "call", "cell", "key")

    def __init__(self, call: Call, key: str, cell: _Cell, allowed: float, by_deadline: bool):
        self.call, self.key, self.cell = call, key, cell
        self.allowed, self.by_deadline = allowed, by_deadline


class _Step(enum.Enum):
    """What a queued caller does next, besides waiting some seconds or giving up."""

    GO = "go"  # a release handed it a permit
    ASK = "ask"  # it heads a shared queue: ask Redis now


class _Turn:
    """One queued caller's wait, as decisions: go, ask Redis, wait N seconds, or give up.

    No I/O and no sleeping here: `next()` reads the gate and the clock and says what to
    do; the sync and async drivers do it. At the head of a shared queue the caller
    alternates between asking Redis and a jittered pause that doubles from 2 ms to
    50 ms (a release in this process wakes it sooner); elsewhere in the queue it waits
    to be woken, until its time is up.
    """

    __slots__ = ("asked", "began", "clock", "end", "gate", "poll", "waiter")

    def __init__(self, gate: Gate, waiter: Waiter, clock: Clock, allowed: float) -> None:
        self.gate, self.waiter, self.clock = gate, waiter, clock
        self.began = clock.monotonic()
        self.end = self.began + allowed
        self.poll = _FIRST_POLL
        self.asked = False

    def waited(self) -> float:
        """Seconds since the caller joined the queue."""
        return self.clock.monotonic() - self.began

    def next(self) -> _Step | float | None:
        """The next step: GO, ASK, seconds to wait (until woken), or None: time is up."""
        if self.waiter.granted:
            return _Step.GO
        pause: float | None = None
        if self.gate.shared and self.gate.is_head(self.waiter):
            if not self.asked:
                self.asked = True
                return _Step.ASK
            self.asked = False
            pause = self.poll * (0.5 + 0.5 * self.clock.random())
            self.poll = min(self.poll * 2, _LAST_POLL)
        left = self.end - self.clock.monotonic()
        if left <= 0:
            return None
        return left if pause is None else min(left, pause)


class ConcurrencyLimit(Rebuilt):
    """Allow at most `max_concurrent` calls in flight per key; queue the rest, briefly.

    A bulkhead (resilience4j's name; Polly calls it a concurrency limiter): it keeps a
    slow or overloaded dependency from taking every thread, task and connection of the
    caller, and caps how many calls a fleet has open at a server that charges for them
    or breaks under them. Each call takes a permit and gives it back when it is done.
    When none is free it waits in a FIFO queue (`max_queue` long) for at most
    `max_wait`, and never past the call's deadline; a call that cannot wait fails at
    once with `ConcurrencyLimitError` (``reason``, ``waited``, and ``retry_after``, an
    estimate of the wait it would need), and no request is sent.

    Place it outside the retry (the first policy after `StatusErrors`), so that one
    logical call holds one permit through all its attempts and waits::

        StatusErrors -> ConcurrencyLimit -> Retry -> CircuitBreaker -> RateLimit -> ...

    Its refusal is a local one: a breaker does not count it as a failure, a retry
    does not retry it, a retry budget does not see it.

    With `redis_url` (or `redis_client`), every process using the same Redis, `name`,
    `namespace` and key shares the `max_concurrent` permits: each is a lease in a Redis
    sorted set, taken by one Lua script, renewed every third of `lease` while its call
    runs, and given back with one ``ZREM``. A process that dies holding permits (a
    SIGKILL, a lost host) loses them when their lease runs out. Leases are scored on
    the callers' wall clock (``clock.time()``), so hosts must keep their clocks in
    sync. Each process's waiters queue in order; the first of them asks Redis again
    after a short jittered backoff (2 ms doubling to 50 ms) or as soon as a permit of
    its own process comes back. If Redis fails, each process allows itself
    `max_concurrent` calls of its own (logged once) and tries Redis again every few
    seconds.

    A waiter blocks on an event that a release sets (an ``asyncio.Event`` in async
    pipelines: other tasks run meanwhile); its limit is read on the pipeline's clock.
    On a clock other than `SystemClock` (a `FakeClock`) it sleeps on that clock in
    steps of 50 ms instead, looking for its permit after each, so tests run in virtual
    time. `set_testing` does not shorten the wait: it waits for another call, not for
    a timer.

    The permit is given back when the pipeline returns the response: with
    ``stream=True`` (and with httpx, which reads the body after its transport), while
    its body may still be arriving.

    Args:
        max_concurrent: the most calls in flight at once per key; 1 to 100,000.
        max_queue: the most callers that may wait for a permit per key (in each
            process); 0 to 1,000,000 (default 100). 0: never wait.
        max_wait: the longest wait for a permit, in seconds or a timedelta, even when
            the call's deadline would allow more; 0 to 86400 (default 60).
        key: which permits a call takes: a fixed string (one limit for everything the
            pipeline sends, e.g. ``"vinci"``), or a function ``Call -> str`` (default:
            one limit per origin, ``breaker_key_by_host``).
        redis_url: share the permits through this Redis (``redis://``, ``rediss://`` or
            ``unix://``); needs the ``redis`` extra.
        redis_client: or share them through this `redis.Redis` client.
        async_redis: the `redis.asyncio.Redis` client for async callers (the same keys
            and script); else one is built on first async use.
        lease: seconds (or a timedelta) a permit in Redis outlives a holder that stops
            renewing it (a dead process); 1 to 3600 (default 10). Renewed every third of
            it while the call runs.
        redis_timeout: seconds to connect to Redis and for each command; 0.001 to 60
            (default 0.5).
        max_keys: the most keys whose gates are kept in memory; 1 to 10,000,000
            (default 10,000). A new key beyond it drops the least recently used tenth;
            a key dropped while its calls run starts afresh when it comes back, so in
            memory it may briefly admit up to twice `max_concurrent` (keep it above the
            number of keys in use).
        namespace: the prefix of the Redis keys.
        name: the policy's name in descriptions, logs, metrics and Redis keys.

    Raises:
        ConfigurationError: an option is out of range or of the wrong type (the
            message names it), or both `redis_url` and `redis_client` are given.
        ImportError: Redis is asked for but the ``redis`` package is not installed.

    Example:
        >>> from requests_resilience import Pipeline, Retry, StatusErrors
        >>> limit = ConcurrencyLimit(5, key="vinci", max_wait=30)
        >>> pipeline = Pipeline(StatusErrors(), limit, Retry(timeout=120))
        >>> limit.max_concurrent, limit.max_queue
        (5, 100)
    """

    __slots__ = ("__weakref__", "_cells", "_link", "_name", "_renewer", "_secrets", "_settings")

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 100,
        max_wait: float | timedelta = 60.0,
        key: str | Callable[[Call], str] = breaker_key_by_host,
        redis_url: str | None = None,
        redis_client: Redis | None = None,
        async_redis: AsyncRedis | None = None,
        lease: float | timedelta = 10.0,
        redis_timeout: float | timedelta = REDIS_TIMEOUT,
        max_keys: int = DEFAULT_MAX_KEYS,
        namespace: str = "requests_resilience:concurrency",
        name: str = "concurrency_limit",
    ) -> None:
        max_concurrent = _integer("max_concurrent", max_concurrent, 1, 100_000)
        max_queue = _integer("max_queue", max_queue, 0, 1_000_000)
        max_wait_s = _number("max_wait", max_wait, 0.0, _DAY)
        lease_s = _number("lease", lease, 1.0, 3600.0)
        timeout_s = _number("redis_timeout", redis_timeout, 0.001, 60.0)
        max_keys = _integer("max_keys", max_keys, 1, 10_000_000)
        if isinstance(key, str):
            if not key.strip():
                msg = "ConcurrencyLimit key must be a non-empty string or a function Call -> str"
                raise ConfigurationError(msg)
        elif not callable(key):
            msg = "ConcurrencyLimit key must be a non-empty string or a function Call -> str"
            raise ConfigurationError(msg)
        for option, text in (("namespace", namespace), ("name", name)):
            if not isinstance(text, str) or not text.strip():
                msg = f"ConcurrencyLimit {option} must be a non-empty string, got {text!r}"
                raise ConfigurationError(msg)
        link, storage, secrets = connect(
            redis_url,
            redis_client,
            owner="ConcurrencyLimit",
            name=name,
            event="concurrency_limit",
            async_redis=async_redis,
            fallback="local permits, per process",
            timeout=timeout_s,
        )
        self._settings = _Settings(
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            max_wait=max_wait_s,
            lease=lease_s,
            max_keys=max_keys,
            key=key.strip() if isinstance(key, str) else key,
            namespace=namespace,
            storage=storage,
        )
        self._name = name
        self._secrets = secrets
        self._link = link
        self._renewer = None if link is None else LeaseRenewer(link, lease_s, name)
        self._cells: Cells[_Cell] = Cells(max_keys, self._new_cell)
        reinit_after_fork(self, ConcurrencyLimit._after_fork)
        _LIVE.add(self)

    def _after_fork(self) -> None:
        # The parent's calls in flight are not this child's: it starts with every permit
        # free (in memory) and holds no lease (in Redis).
        self._cells = Cells(self._settings.max_keys, self._new_cell)

    # -- settings ------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The policy's name in descriptions, logs, metrics and Redis keys."""
        return self._name

    @property
    def secrets(self) -> tuple[str, ...]:
        """The Redis password, if any, for the pipeline's redactor."""
        return self._secrets

    @property
    def max_concurrent(self) -> int:
        """The most calls in flight at once per key."""
        return self._settings.max_concurrent

    @property
    def max_queue(self) -> int:
        """The most callers waiting for a permit per key, in each process."""
        return self._settings.max_queue

    @property
    def max_wait(self) -> float:
        """The longest wait for a permit, in seconds."""
        return self._settings.max_wait

    @property
    def lease(self) -> float:
        """Seconds a Redis permit outlives a holder that stopped renewing it."""
        return self._settings.lease

    @property
    def shared(self) -> bool:
        """Whether the permits are shared between processes through Redis."""
        return self._link is not None

    # -- the drivers ---------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Take a permit (queueing for it if allowed), run the rest, give it back."""
        plan = self._plan(call)
        permit = self._acquire(plan)
        try:
            return next(call)
        finally:
            self._release(call.clock, permit)

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines: the same gate and Redis keys, awaited waits."""
        plan = self._plan(call)
        permit = await self._aacquire(plan)
        try:
            return await next(call)
        finally:
            await self._arelease(call.clock, permit)

    def _acquire(self, plan: _Plan) -> _Permit:
        gate, clock = plan.cell.gate, plan.call.clock
        entered = gate.enter()
        if entered:
            return self._permit(plan, None, 0.0)
        if entered is None:
            permit = self._try_redis(plan, None, 0.0)
            if permit is not None:
                return permit
        waiter = self._queue(plan, Waiter())
        if waiter.granted:
            return self._permit(plan, None, 0.0)
        turn = _Turn(gate, waiter, clock, plan.allowed)
        try:
            while (step := turn.next()) is not None:
                if step is _Step.GO:
                    return self._permit(plan, None, turn.waited())
                if step is _Step.ASK:
                    permit = self._try_redis(plan, waiter, turn.waited())
                    if permit is not None:
                        return permit
                else:
                    _block(waiter, clock, step)
        except BaseException:
            if gate.leave(waiter):
                self._release(clock, self._permit(plan, None, 0.0))
            raise
        if gate.leave(waiter):  # handed a permit as it gave up: it goes on
            return self._permit(plan, None, turn.waited())
        raise self._refusal(plan, TIMED_OUT, turn.waited())

    async def _aacquire(self, plan: _Plan) -> _Permit:
        gate, clock = plan.cell.gate, plan.call.clock
        entered = gate.enter()
        if entered:
            return self._permit(plan, None, 0.0)
        if entered is None:
            permit = await self._atry_redis(plan, None, 0.0)
            if permit is not None:
                return permit
        waiter = self._queue(plan, Waiter(asyncio.get_running_loop()))
        if waiter.granted:
            return self._permit(plan, None, 0.0)
        turn = _Turn(gate, waiter, clock, plan.allowed)
        try:
            while (step := turn.next()) is not None:
                if step is _Step.GO:
                    return self._permit(plan, None, turn.waited())
                if step is _Step.ASK:
                    permit = await self._atry_redis(plan, waiter, turn.waited())
                    if permit is not None:
                        return permit
                else:
                    await _ablock(waiter, clock, step)
        except BaseException:
            if gate.leave(waiter):
                await self._arelease(clock, self._permit(plan, None, 0.0))
            raise
        if gate.leave(waiter):
            return self._permit(plan, None, turn.waited())
        raise self._refusal(plan, TIMED_OUT, turn.waited())

    def _try_redis(self, plan: _Plan, waiter: Waiter | None, waited: float) -> _Permit | None:
        """One ask of Redis (or of the gate, while Redis is down); the permit, or None."""
        link = self._link
        assert link is not None  # a shared gate has a link
        cell, clock = plan.cell, plan.call.clock
        gate = cell.gate
        now = clock.time()
        holder = new_holder_id()

        def on_redis() -> tuple[bool, bool]:
            permits = cell.permits
            if permits is None:
                permits = cell.permits = RedisPermits(link.client, self._redis_key(plan.key))
            granted, _, _ = permits.acquire(now, self._settings.lease, gate.limit, holder)
            return granted, True

        granted, in_redis = link.run(now, on_redis, lambda: (gate.take_local(waiter), False))
        return self._granted(plan, waiter, waited, holder, granted=granted, in_redis=in_redis)

    async def _atry_redis(
        self, plan: _Plan, waiter: Waiter | None, waited: float
    ) -> _Permit | None:
        cell, clock = plan.cell, plan.call.clock
        now = clock.time()
        holder = new_holder_id()
        granted, in_redis = await self._async_permits(plan.key, cell).acquire(
            now, self._settings.lease, holder, waiter
        )
        return self._granted(plan, waiter, waited, holder, granted=granted, in_redis=in_redis)

    def _granted(
        self,
        plan: _Plan,
        waiter: Waiter | None,
        waited: float,
        holder: str,
        *,
        granted: bool,
        in_redis: bool,
    ) -> _Permit | None:
        if not granted:
            return None
        if not in_redis:  # the gate's own permit, counted by take_local
            return self._permit(plan, None, waited)
        plan.cell.gate.taken(waiter)
        renewer = self._renewer
        assert renewer is not None
        renewer.add(holder, self._redis_key(plan.key), plan.call.clock)
        return self._permit(plan, holder, waited)

    def _release(self, clock: Clock, permit: _Permit) -> None:
        holder = permit.holder
        if holder is not None:
            link, renewer, permits = self._link, self._renewer, permit.cell.permits
            assert link is not None
            assert renewer is not None
            assert permits is not None
            renewer.discard(holder)
            link.run(clock.time(), lambda: permits.release(holder), lambda: None)
        permit.cell.gate.release(clock.monotonic() - permit.started)

    async def _arelease(self, clock: Clock, permit: _Permit) -> None:
        holder = permit.holder
        if holder is not None:
            renewer = self._renewer
            assert renewer is not None
            renewer.discard(holder)
            await self._async_permits(permit.key, permit.cell).release(clock.time(), holder)
        permit.cell.gate.release(clock.monotonic() - permit.started)

    # -- the decisions ---------------------------------------------------------------

    def _plan(self, call: Call) -> _Plan:
        settings = self._settings
        key = settings.key if isinstance(settings.key, str) else settings.key(call)
        cell = self._cells.get(key)
        clock = call.clock
        cell.clock = clock
        allowed, by_deadline = settings.max_wait, False
        deadline = call.deadline
        if deadline is not None:
            left = deadline - clock.monotonic()
            if left < allowed:
                allowed, by_deadline = max(0.0, left), True
        _instruments()  # registers the in-flight gauge once a meter provider records
        return _Plan(call, key, cell, allowed, by_deadline)

    def _queue(self, plan: _Plan, waiter: Waiter) -> Waiter:
        """Queue `waiter`, or refuse: no time to wait, or the queue is full."""
        if plan.allowed <= 0:
            raise self._refusal(plan, NO_WAIT, 0.0)
        if not plan.cell.gate.join(waiter, self._settings.max_queue):
            raise self._refusal(plan, QUEUE_FULL, 0.0)
        return waiter

    def _permit(self, plan: _Plan, holder: str | None, waited: float) -> _Permit:
        if waited > 0:
            _on_span(waited)
        return _Permit(plan.cell, plan.key, holder, plan.call.clock.monotonic(), waited)

    def _refusal(self, plan: _Plan, reason: str, waited: float) -> ConcurrencyLimitError:
        gate, key, call = plan.cell.gate, plan.key, plan.call
        gate.count_refusal()
        retry_after = gate.estimate(len(gate.queue))
        request = call.request
        target = f"{request.method} {_safe_url(request.url)}"
        limit = self._settings.max_concurrent
        if reason == QUEUE_FULL:
            why = f"the queue is full ({self._settings.max_queue} waiting)"
        elif plan.by_deadline:
            why = "no permit came free before the call's deadline"
        else:
            why = f"no permit came free within max_wait ({self._settings.max_wait:g}s)"
        message = (
            f"concurrency limit {key!r} refused locally: {target} was not sent; "
            f"all {limit} permits are taken and {why}"
        )
        _refused(self._name, key, reason, waited, _safe_url(request.url))
        return ConcurrencyLimitError(
            call.redactor.redact(message),
            limit=self._name,
            key=key,
            max_concurrent=limit,
            reason=reason,
            waited=waited,
            retry_after=retry_after,
            request=request,
        )

    # -- storage ---------------------------------------------------------------------

    def _redis_key(self, key: str) -> str:
        return f"{self._settings.namespace}:{self._name}:{{{key}}}"

    def _new_cell(self, key: str) -> _Cell:
        return _Cell(Gate(self._settings.max_concurrent, shared=self._link is not None))

    def _async_permits(self, key: str, cell: _Cell) -> _AsyncPermits:
        face = cell.async_permits
        if face is None:  # a race builds two equal faces: harmless
            link = self._link
            assert link is not None
            face = cell.async_permits = _AsyncPermits(cell.gate, link, self._redis_key(key))
        return face

    # -- inspection ------------------------------------------------------------------

    def status(self, key: str) -> ConcurrencyLimitStatus:
        """A read-only picture of `key`'s permits (see `ConcurrencyLimitStatus`).

        With Redis, ``in_flight`` is read from Redis (one round trip; this process's
        count if Redis fails).

        Example:
            >>> ConcurrencyLimit(2, key="k").status("k").max_concurrent
            2
        """
        cell = self._cells.get(key)
        gate = cell.gate
        with gate.lock:
            held, queued = gate.held, len(gate.queue)
            admitted, waited, refused = gate.admitted, gate.waited, gate.refused
            mean = gate.mean_hold
        in_flight = held
        link = self._link
        if link is not None:
            now = cell.clock.time()
            permits = cell.permits or RedisPermits(link.client, self._redis_key(key))
            cell.permits = permits
            in_flight = link.run(now, lambda: permits.in_flight(now), lambda: held)
        return ConcurrencyLimitStatus(
            key=key,
            max_concurrent=self._settings.max_concurrent,
            in_flight=in_flight,
            held_here=held,
            queued=queued,
            admitted=admitted,
            waited=waited,
            refused=refused,
            mean_hold=mean,
            shared=link is not None,
        )

    def snapshot(self) -> Mapping[str, ConcurrencyLimitStatus]:
        """The status of every key this policy has used, by key (a read-only mapping)."""
        return MappingProxyType({key: self.status(key) for key in self._cells.keys()})  # noqa: SIM118 - a locked snapshot, not a dict

    def __repr__(self) -> str:
        s = self._settings
        key = repr(s.key) if isinstance(s.key, str) else _func_name(s.key)
        parts = [
            f"max_concurrent={s.max_concurrent}",
            f"max_queue={s.max_queue}",
            f"max_wait={s.max_wait:g}",
            f"key={key}",
            f"storage={s.storage!r}",
        ]
        if self._link is not None:
            parts.append(f"lease={s.lease:g}")
        if self._name != "concurrency_limit":
            parts.append(f"name={self._name!r}")
        return f"ConcurrencyLimit({', '.join(parts)})"

    def _held(self) -> Iterable[tuple[str, int, int]]:
        return [(key, cell.gate.held, len(cell.gate.queue)) for key, cell in self._cells.items()]


def _func_name(func: Any) -> str:
    return str(getattr(func, "__qualname__", None) or type(func).__name__)


# -- waiting ---------------------------------------------------------------------------


def _block(waiter: Waiter, clock: Clock, seconds: float) -> None:
    """Wait until `waiter` is woken or `seconds` pass on `clock`."""
    event = waiter.event
    assert isinstance(event, threading.Event)
    if type(clock) is SystemClock:
        event.wait(seconds)
    else:
        clock.sleep(min(seconds, _CLOCK_STEP))
    event.clear()


async def _ablock(waiter: Waiter, clock: Clock, seconds: float) -> None:
    """`_block` for async callers: other tasks run meanwhile."""
    event = waiter.event
    assert isinstance(event, asyncio.Event)
    if type(clock) is SystemClock:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
    else:
        await sleep_async(clock, min(seconds, _CLOCK_STEP))
    event.clear()


# -- telemetry -------------------------------------------------------------------------
#
# The permits held (and callers queued) per key are gauges read when metrics are
# collected (no work per request); refusals are a counter and an info event; the time a
# call waited for its permit is set on the current span (the operation's, or the
# caller's own).

_LIVE: weakref.WeakSet[ConcurrencyLimit] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class _Instruments:
    refusals: metrics.Counter
    in_flight: metrics.ObservableGauge
    queued: metrics.ObservableGauge


def _attributes(policy: str, key: str) -> dict[str, str]:
    return {
        "requests_resilience.concurrency_limit.policy": policy,
        "requests_resilience.concurrency_limit.key": key,
    }


def _observe(index: int) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
    def observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [
            metrics.Observation(counts[index], _attributes(policy.name, counts[0]))  # type: ignore[arg-type]
            for policy in list(_LIVE)
            for counts in policy._held()
        ]

    return observe


def _build_instruments(meter: metrics.Meter) -> _Instruments:
    return _Instruments(
        refusals=meter.create_counter(
            "requests_resilience.concurrency_limit.refusals",
            unit="{request}",
            description="Calls a concurrency limit refused locally (not sent).",
        ),
        in_flight=meter.create_observable_gauge(
            "requests_resilience.concurrency_limit.in_flight",
            callbacks=[_observe(1)],
            unit="{request}",
            description="Permits of a concurrency limit held by this process.",
        ),
        queued=meter.create_observable_gauge(
            "requests_resilience.concurrency_limit.queued",
            callbacks=[_observe(2)],
            unit="{request}",
            description="Callers of this process waiting for a concurrency permit.",
        ),
    )


_INSTRUMENTS = _telemetry.PerProvider(_build_instruments)


def _instruments() -> _Instruments | None:
    return _INSTRUMENTS.get()


def _on_span(wait: float) -> None:
    current = context.get_current()
    if not current:
        return  # no span in the context: nothing to annotate
    span = trace.get_current_span(current)
    if span.is_recording():
        span.set_attribute(_WAIT_ATTRIBUTE, wait)


def _refused(policy: str, key: str, reason: str, waited: float, url: str) -> None:
    _telemetry.logger.info(
        "concurrency_limit_refused",
        policy=policy,
        key=key,
        reason=reason,
        waited=round(waited, 6),
        url=url,
    )
    instruments = _instruments()
    if instruments is not None:
        attributes = _attributes(policy, key)
        attributes["requests_resilience.concurrency_limit.reason"] = reason
        instruments.refusals.add(1, attributes)

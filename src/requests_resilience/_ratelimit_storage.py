"""Where a `RateLimit` keeps its buckets: in memory, or in Redis shared by a fleet.

A bucket is kept as GCRA (the "generic cell rate algorithm", a token bucket written as
one timestamp): ``tat``, the theoretical arrival time of the next request. A caller
that reserves at `now` gets the slot ``max(now, tat - tolerance, paused_until)``, where
``tolerance = (burst - 1) / rate``, and moves ``tat`` one interval (``1 / rate``) past
it. So callers are handed consecutive slots in the order they reserve (first come,
first served, nobody starves), and sleep *after* the reservation, holding no lock; a
reservation that would wait longer than the caller may is refused and changes nothing.

The rate adapts as botocore's adaptive retry mode does, with a CUBIC curve (RFC 8312),
but scaled to the bucket instead of botocore's fixed constants (which assume rates of
several requests a second): when the server throttles at rate ``w_max``, the rate drops
to ``beta * w_max`` and then climbs back along::

    rate(t) = w_max * (1 + (1 - beta) * ((t - throttled_at) / recovery - 1) ** 3)

which is ``beta * w_max`` at the throttle, flat near ``w_max`` after `recovery`
seconds (the quiet period), and above ``w_max`` beyond that (probing for more), always
clamped between a floor (a twentieth of the target) and the target rate. The target is
the configured rate, or the ceiling the server announced (``X-RateLimit-Limit``). A
``429`` only drops the rate if its request was sent after the last drop and one
`cooldown` (the server's window) has passed since: a fixed-window server refuses
everything until its window resets, and those 429s are one episode, not one each.

Each step is one short critical section: a `threading.Lock` in memory, one Lua script
(atomic, one round trip) in Redis. Redis time is the *caller's wall clock*
(`Clock.time()`, passed to each script) rather than Redis ``TIME``: every step of a
policy then uses one clock, a `FakeClock` drives Redis-backed tests, and hosts must
keep their clocks in sync (NTP), as for the breaker.

A pause the server asked for (``Retry-After``, ``X-RateLimit-Reset``) is bounded by
``params.max_pause`` twice: when it is learnt, and whenever a bucket is read or
reserved from. The bucket keeps when the pause was learnt (``paused_at``) next to when
it ends, so a reader bounds it to ``paused_at + max_pause``: a pause written to Redis
by a process with a larger bound (or a bug, or a hand) holds this process back for at
most its own bound, once, not a fresh bound at every look. A reservation whose
caller gives up before its slot (an interrupt during the wait) is handed back with
``release()``, so the next caller does not wait for a slot that nobody uses.

`FailoverBucket` puts a memory bucket behind the Redis one: when Redis fails, each
process carries on with its own bucket (logged once) and tries Redis again every few
seconds.

For asyncio callers `AsyncRedisBucket` and `AsyncFailoverBucket` step the same hash
with the same Lua scripts through redis-py's asyncio client (the arguments and the
parsing are plain functions both faces call). A key's async face shares the sync
face's `RedisLink` (one health for both) and its fallback (the same `MemoryBucket`),
so a token taken by an async caller is gone for a sync one, with Redis or without.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from requests_resilience._redis import AsyncFailover, RedisLink
from requests_resilience._telemetry import logger

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = [
    "AsyncBucketStorage",
    "AsyncFailoverBucket",
    "AsyncRedisBucket",
    "BucketParams",
    "BucketState",
    "BucketStorage",
    "FailoverBucket",
    "MemoryBucket",
    "RedisBucket",
    "Reservation",
]

#: The lowest rate adaptation goes to, as a share of the target rate.
FLOOR_SHARE = 0.05

_log = logger


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketParams:
    """What a bucket step needs to know of the policy's options.

    Attributes:
        rate: the configured target rate, requests per second (headroom applied).
        burst: requests that may go at once after a quiet spell (the bucket's size).
        recovery: seconds for the rate to climb back to where it was throttled.
        beta: the share of the rate kept on a throttle (0.7: a 30 % drop).
        cooldown: seconds after a drop during which further 429s do not drop the rate
            again (the server's window: its 429s until the reset are one episode).
        ttl: milliseconds Redis keeps an idle bucket.
        max_pause: the longest pause, in seconds, that a server's hint may impose.
    """

    rate: float
    burst: int
    recovery: float
    beta: float
    cooldown: float
    ttl: int
    max_pause: float = 60.0


_new_tuple = tuple.__new__


class Reservation(NamedTuple):
    """The answer of `reserve()` (a named tuple: one is made per request).

    Attributes:
        granted: a slot was reserved; sleep `wait` seconds, then send.
        wait: seconds until the slot (or, when refused, until a slot would be free).
        rate: the bucket's current rate, requests per second.
    """

    granted: bool
    wait: float
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketState:
    """A picture of one bucket, from `read()`."""

    rate: float
    target: float
    tokens: float
    paused_for: float
    throttled_at: float | None


class BucketStorage(Protocol):
    """The steps a `RateLimit` takes on one key's bucket (see the module doc)."""

    @property
    def shared(self) -> bool:
        """Whether the bucket is shared between processes (wall-clock time is used)."""
        ...

    def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """Reserve the next slot unless it is more than `max_wait` seconds away."""
        ...

    def paused_for(self, now: float) -> float:
        """Seconds until a pause the server asked for ends (0.0 when none)."""
        ...

    def release(self, now: float, interval: float) -> None:
        """Hand back a granted slot that will not be used (its caller gave up waiting)."""
        ...

    def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """Learn from a response; return the rate afterwards."""
        ...

    def read(self, now: float, params: BucketParams) -> BucketState:
        """The bucket's current rate, tokens and pause."""
        ...


def cubic_rate(
    now: float,
    *,
    target: float,
    w_max: float | None,
    throttled_at: float | None,
    params: BucketParams,
) -> float:
    """The rate at `now`: the target, or the CUBIC climb since the last throttle."""
    if w_max is None or throttled_at is None:
        return target
    t = max(0.0, now - throttled_at) / params.recovery
    rate = w_max * (1.0 + (1.0 - params.beta) * (t - 1.0) ** 3)
    return min(target, max(target * FLOOR_SHARE, rate))


# -- memory ---------------------------------------------------------------------------


class MemoryBucket:
    """A bucket in this process, under one short lock. `now` is ``monotonic()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: float | None = None
        self._tat_rate: float | None = None  # the rate the slots up to `_tat` were spaced at
        self._paused_until = 0.0
        self._paused_at = 0.0
        self._ceiling: float | None = None
        self._w_max: float | None = None
        self._throttled_at: float | None = None

    @property
    def shared(self) -> bool:
        """False: this bucket lives in this process only."""
        return False

    def async_face(self) -> AsyncFailoverBucket:
        """The asyncio face of this bucket: it calls this object directly (no I/O)."""
        return AsyncFailoverBucket(self)

    def _rate(self, now: float, params: BucketParams) -> tuple[float, float]:
        target = params.rate if self._ceiling is None else self._ceiling
        if self._w_max is None:
            return target, target  # never throttled: no climb to compute
        rate = cubic_rate(
            now, target=target, w_max=self._w_max, throttled_at=self._throttled_at, params=params
        )
        return rate, target

    def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """Reserve the next slot unless it is more than `max_wait` seconds away."""
        # (Per request: the lock is taken by hand, and the comparisons are written out,
        # because ``with`` and ``max()`` each cost as much again as what they do here.)
        lock = self._lock
        lock.acquire()
        try:
            if self._w_max is None:  # never throttled: the target is the rate
                rate = params.rate if self._ceiling is None else self._ceiling
            else:
                rate, _ = self._rate(now, params)
            interval = 1.0 / rate
            tat = self._tat
            if tat is None:
                tat = now
            elif tat > now and self._tat_rate is not None and self._tat_rate != rate:
                # The rate changed since the slots ahead were spaced (a higher ceiling
                # learnt from X-RateLimit-Limit, a throttle, the climb after it): what
                # is owed is those slots, so they are re-spaced at the new rate.
                tat = now + (tat - now) * self._tat_rate / rate
            slot = tat - (params.burst - 1) * interval
            slot = now if slot < now else slot
            if self._paused_until > slot:  # a pause the server asked for, bounded
                slot = max(slot, min(self._paused_until, self._paused_at + params.max_pause))
            wait = slot - now
            if wait > max_wait:
                return _new_tuple(Reservation, (False, wait, rate))
            self._tat = (tat if tat > slot else slot) + interval
            self._tat_rate = rate
            # (A named tuple's own constructor costs twice as much; one per request.)
            return _new_tuple(Reservation, (True, wait, rate))
        finally:
            lock.release()

    def paused_for(self, now: float) -> float:
        """Seconds until a pause the server asked for ends (0.0 when none)."""
        return max(0.0, self._paused_until - now)

    def release(self, now: float, interval: float) -> None:
        """Hand back a granted slot: the next reservation moves up by one interval."""
        with self._lock:
            if self._tat is not None:
                self._tat -= interval

    def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """Learn from a response: ceiling, pause, and a drop on a fresh throttle."""
        with self._lock:
            if ceiling is not None:
                self._ceiling = ceiling
            if pause_until is not None:
                pause_until = min(pause_until, now + params.max_pause)
                if pause_until > self._paused_until:
                    self._paused_until = pause_until
                    self._paused_at = now
            rate, _ = self._rate(now, params)
            last = self._throttled_at
            if throttled and (last is None or (sent_at >= last and now - last >= params.cooldown)):
                self._w_max = rate
                self._throttled_at = now
                rate = rate * params.beta
            return rate

    def read(self, now: float, params: BucketParams) -> BucketState:
        """The bucket's current rate, tokens and pause."""
        with self._lock:
            rate, target = self._rate(now, params)
            tokens = _tokens(now, self._tat, rate, params.burst)
            return BucketState(
                rate=rate,
                target=target,
                tokens=tokens,
                paused_for=_paused_for(now, self._paused_until, self._paused_at, params.max_pause),
                throttled_at=self._throttled_at,
            )


def _paused_for(now: float, until: float, since: float | None, max_pause: float) -> float:
    """Seconds of pause left, the pause bounded to `max_pause` from when it was learnt."""
    if since is not None:
        until = min(until, since + max_pause)
    return min(max_pause, max(0.0, until - now))


def _tokens(now: float, tat: float | None, rate: float, burst: int) -> float:
    if tat is None:
        return float(burst)
    return max(0.0, min(float(burst), burst - (tat - now) * rate))


# -- redis ----------------------------------------------------------------------------

# The CUBIC rate, shared by the scripts (see cubic_rate).
# Hash fields: tat, paused_until, paused_at, ceiling, w_max, throttled_at.
_RATE = """
local function num(x) return string.format('%.17g', x) end
local function field(name)
  return tonumber(redis.call('HGET', KEYS[1], name) or '')
end
local function current_rate(now, configured, recovery, beta, floor_share)
  local target = field('ceiling') or configured
  local w_max = field('w_max')
  local at = field('throttled_at')
  if w_max == nil or at == nil then return target, target end
  local t = math.max(0, now - at) / recovery
  local rate = w_max * (1 + (1 - beta) * (t - 1) ^ 3)
  return math.min(target, math.max(target * floor_share, rate)), target
end
"""

# KEYS: the bucket hash
# ARGV: now, rate, burst, recovery, beta, floor share, max_wait, ttl (ms), max_pause
# -> {granted (0/1), wait, rate}
_RESERVE = (
    _RATE
    + """
local now = tonumber(ARGV[1])
local rate = current_rate(now, tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]))
local interval = 1 / rate
local tat = field('tat') or now
local tat_rate = field('tat_rate')
if tat > now and tat_rate ~= nil and tat_rate ~= rate then
  tat = now + (tat - now) * tat_rate / rate  -- the tokens owed stay, not their time
end
local paused_until = math.min(field('paused_until') or 0,
  (field('paused_at') or now) + tonumber(ARGV[9]))
local slot = math.max(now, tat - (tonumber(ARGV[3]) - 1) * interval, paused_until)
local wait = slot - now
if wait > tonumber(ARGV[7]) then return {0, num(wait), num(rate)} end
redis.call('HSET', KEYS[1], 'tat', num(math.max(tat, slot) + interval), 'tat_rate', num(rate))
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {1, num(wait), num(rate)}
"""
)

# KEYS: the bucket hash
# ARGV: now, rate, recovery, beta, floor share, sent_at, throttled (0/1),
#       pause_until ('' = none), ceiling ('' = none), ttl (ms), cooldown, max_pause
# -> the rate afterwards
_OBSERVE = (
    _RATE
    + """
local now = tonumber(ARGV[1])
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'ceiling', ARGV[9]) end
if ARGV[8] ~= '' then
  local pause = math.min(tonumber(ARGV[8]), now + tonumber(ARGV[12]))
  if pause > (field('paused_until') or 0) then
    redis.call('HSET', KEYS[1], 'paused_until', num(pause), 'paused_at', ARGV[1])
  end
end
local rate = current_rate(now, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]))
if ARGV[7] == '1' then
  local at = field('throttled_at')
  if at == nil or (tonumber(ARGV[6]) >= at and now - at >= tonumber(ARGV[11])) then
    redis.call('HSET', KEYS[1], 'w_max', num(rate), 'throttled_at', ARGV[1])
    rate = rate * tonumber(ARGV[4])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[10])
return num(rate)
"""
)

# KEYS: the bucket hash; ARGV: the interval to hand back
_RELEASE = """
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '')
if tat ~= nil then
  redis.call('HSET', KEYS[1], 'tat', string.format('%.17g', tat - tonumber(ARGV[1])))
end
return 0
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- what both Redis faces send and parse ---------------------------------------------
#
# `RedisBucket` (redis-py's client) and `AsyncRedisBucket` (its asyncio client) run the
# same scripts on the same hash; only the round trip differs. What goes into a script
# and what comes out are these plain functions, which both call.


def _reserve_args(now: float, params: BucketParams, max_wait: float) -> list[str | int]:
    return [
        repr(now),
        repr(params.rate),
        params.burst,
        repr(params.recovery),
        repr(params.beta),
        repr(FLOOR_SHARE),
        repr(min(max_wait, 1e12)),
        params.ttl,
        repr(params.max_pause),
    ]


def _reservation(raw: list[object]) -> Reservation:
    """The `Reservation` that the reserve script's answer means."""
    granted, wait, rate = raw
    return Reservation(
        granted=int(_text(granted)) == 1,
        wait=max(0.0, float(_text(wait))),
        rate=float(_text(rate)),
    )


def _observe_args(
    now: float,
    params: BucketParams,
    *,
    sent_at: float,
    throttled: bool,
    pause_until: float | None,
    ceiling: float | None,
) -> list[str | int]:
    return [
        repr(now),
        repr(params.rate),
        repr(params.recovery),
        repr(params.beta),
        repr(FLOOR_SHARE),
        repr(sent_at),
        "1" if throttled else "0",
        "" if pause_until is None else repr(pause_until),
        "" if ceiling is None else repr(ceiling),
        params.ttl,
        repr(params.cooldown),
        repr(params.max_pause),
    ]


def _pause_left(raw: object, now: float) -> float:
    """Seconds of pause left, from the hash's ``paused_until`` field (None: no pause)."""
    if raw is None:
        return 0.0
    return max(0.0, float(_text(raw)) - now)


def _bucket_state(raw: dict[Any, Any], now: float, params: BucketParams) -> BucketState:
    """The `BucketState` from an HGETALL of the bucket's hash."""
    fields = {_text(k): float(_text(v)) for k, v in raw.items()}
    target = fields.get("ceiling", params.rate)
    rate = cubic_rate(
        now,
        target=target,
        w_max=fields.get("w_max"),
        throttled_at=fields.get("throttled_at"),
        params=params,
    )
    return BucketState(
        rate=rate,
        target=target,
        tokens=_tokens(now, fields.get("tat"), rate, params.burst),
        paused_for=_paused_for(
            now, fields.get("paused_until", 0.0), fields.get("paused_at"), params.max_pause
        ),
        throttled_at=fields.get("throttled_at"),
    )


class RedisBucket:
    """A bucket kept in one Redis hash, stepped by Lua scripts. `now` is ``time()``.

    Args:
        client: a `redis.Redis` client.
        key: the hash's key; it should contain a ``{hash tag}`` (Redis Cluster).
    """

    def __init__(self, client: Redis, key: str) -> None:
        self._client = client
        self._keys = [key]
        self._reserve, self._observe, self._release = (
            client.register_script(script) for script in (_RESERVE, _OBSERVE, _RELEASE)
        )

    @property
    def shared(self) -> bool:
        """True: the bucket lives in Redis."""
        return True

    def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """Reserve the next slot unless it is more than `max_wait` seconds away."""
        args = _reserve_args(now, params, max_wait)
        return _reservation(self._reserve(keys=self._keys, args=args))

    def paused_for(self, now: float) -> float:
        """Seconds until a pause the server asked for ends (0.0 when none)."""
        return _pause_left(self._client.hget(self._keys[0], "paused_until"), now)

    def release(self, now: float, interval: float) -> None:
        """Hand back a granted slot (one round trip)."""
        self._release(keys=self._keys, args=[repr(interval)])

    def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """Learn from a response (one round trip); return the rate afterwards."""
        args = _observe_args(
            now,
            params,
            sent_at=sent_at,
            throttled=throttled,
            pause_until=pause_until,
            ceiling=ceiling,
        )
        return float(_text(self._observe(keys=self._keys, args=args)))

    def read(self, now: float, params: BucketParams) -> BucketState:
        """The bucket's current rate, tokens and pause (one round trip)."""
        raw: dict[Any, Any] = self._client.hgetall(self._keys[0])
        return _bucket_state(raw, now, params)


# -- failover -------------------------------------------------------------------------


_T = TypeVar("_T")


class FailoverBucket:
    """A Redis bucket for one key, with a memory bucket to fall back on.

    Building it does no I/O. A Redis error never fails a call: the step runs on the
    fallback instead, with the same `now` (wall-clock time).
    """

    def __init__(self, link: RedisLink, key: str) -> None:
        self._link = link
        self._key = key
        self._redis: RedisBucket | None = None
        self._async: AsyncFailoverBucket | None = None
        self.fallback = MemoryBucket()

    @property
    def shared(self) -> bool:
        """True: the bucket lives in Redis (while Redis works)."""
        return True

    def async_face(self) -> AsyncFailoverBucket:
        """The asyncio face of this bucket: the same key, link and fallback."""
        if self._async is None:  # a race makes two equal faces: harmless
            self._async = AsyncFailoverBucket(self.fallback, self._link, self._key)
        return self._async

    def _run(self, now: float, step: Callable[[BucketStorage], _T]) -> _T:
        return self._link.run(now, lambda: step(self._shared()), lambda: step(self.fallback))

    def _shared(self) -> RedisBucket:
        if self._redis is None:
            self._redis = RedisBucket(self._link.client, self._key)
        return self._redis

    def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """`reserve` on Redis, or on the fallback when Redis fails."""
        return self._run(now, lambda bucket: bucket.reserve(now, params, max_wait))

    def paused_for(self, now: float) -> float:
        """`paused_for` on Redis, or on the fallback when Redis fails."""
        return self._run(now, lambda bucket: bucket.paused_for(now))

    def release(self, now: float, interval: float) -> None:
        """`release` on Redis, or on the fallback when Redis fails."""
        self._run(now, lambda bucket: bucket.release(now, interval))

    def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """`observe` on Redis, or on the fallback when Redis fails."""
        return self._run(
            now,
            lambda bucket: bucket.observe(
                now,
                params,
                sent_at=sent_at,
                throttled=throttled,
                pause_until=pause_until,
                ceiling=ceiling,
            ),
        )

    def read(self, now: float, params: BucketParams) -> BucketState:
        """`read` on Redis, or on the fallback when Redis fails."""
        return self._run(now, lambda bucket: bucket.read(now, params))


# -- asyncio --------------------------------------------------------------------------


class AsyncBucketStorage(Protocol):
    """`BucketStorage` for the async driver: the same steps, awaited."""

    @property
    def shared(self) -> bool:
        """Whether the bucket is shared between processes (wall-clock time is used)."""
        ...

    async def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """Reserve the next slot unless it is more than `max_wait` seconds away."""
        ...

    async def paused_for(self, now: float) -> float:
        """Seconds until a pause the server asked for ends (0.0 when none)."""
        ...

    async def release(self, now: float, interval: float) -> None:
        """Hand back a granted slot that will not be used (its caller gave up waiting)."""
        ...

    async def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """Learn from a response; return the rate afterwards."""
        ...

    async def read(self, now: float, params: BucketParams) -> BucketState:
        """The bucket's current rate, tokens and pause."""
        ...


class AsyncRedisBucket:
    """`RedisBucket` on redis-py's asyncio client: the same hash, the same scripts.

    Each step sends what the sync bucket sends and parses the answer with the same
    functions (`_reserve_args`, `_reservation`, ...), so the two faces cannot drift.

    Args:
        client: a `redis.asyncio.Redis` client.
        key: the hash's key (see `RedisBucket`).
    """

    def __init__(self, client: AsyncRedis, key: str) -> None:
        self._client = client
        self._keys = [key]
        self._reserve, self._observe, self._release = (
            client.register_script(script) for script in (_RESERVE, _OBSERVE, _RELEASE)
        )

    @property
    def shared(self) -> bool:
        """True: the bucket lives in Redis."""
        return True

    async def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """Reserve the next slot unless it is more than `max_wait` seconds away."""
        args = _reserve_args(now, params, max_wait)
        return _reservation(await self._reserve(keys=self._keys, args=args))

    async def paused_for(self, now: float) -> float:
        """Seconds until a pause the server asked for ends (0.0 when none)."""
        return _pause_left(await self._client.hget(self._keys[0], "paused_until"), now)

    async def release(self, now: float, interval: float) -> None:
        """Hand back a granted slot (one round trip)."""
        await self._release(keys=self._keys, args=[repr(interval)])

    async def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """Learn from a response (one round trip); return the rate afterwards."""
        args = _observe_args(
            now,
            params,
            sent_at=sent_at,
            throttled=throttled,
            pause_until=pause_until,
            ceiling=ceiling,
        )
        return float(_text(await self._observe(keys=self._keys, args=args)))

    async def read(self, now: float, params: BucketParams) -> BucketState:
        """The bucket's current rate, tokens and pause (one round trip)."""
        raw: dict[Any, Any] = await self._client.hgetall(self._keys[0])
        return _bucket_state(raw, now, params)


class AsyncFailoverBucket(AsyncFailover[AsyncRedisBucket, MemoryBucket]):
    """The async face of one key's bucket: Redis, or the local fallback.

    It shares everything but the client with the sync `FailoverBucket` of the same
    key: the `RedisLink` (one health for both faces), the Redis key and scripts, and
    the fallback itself, the *same* `MemoryBucket`, called directly (a short lock, no
    I/O). Without a link (a rate limit without Redis) every step runs on that memory
    bucket. Each Redis step is bounded by the link's ``timeout`` (``redis_timeout``).

    Args:
        fallback: the memory bucket that the sync face uses too.
        link: the policy's Redis link, or None for a memory bucket only.
        key: the bucket's Redis key.
    """

    def __init__(
        self, fallback: MemoryBucket, link: RedisLink | None = None, key: str = ""
    ) -> None:
        super().__init__(fallback, link, lambda client: AsyncRedisBucket(client, key))

    async def reserve(self, now: float, params: BucketParams, max_wait: float) -> Reservation:
        """`reserve` on Redis, or on the fallback when Redis fails."""
        return await self._run(
            now,
            lambda redis: redis.reserve(now, params, max_wait),
            lambda local: local.reserve(now, params, max_wait),
        )

    async def paused_for(self, now: float) -> float:
        """`paused_for` on Redis, or on the fallback when Redis fails."""
        return await self._run(
            now, lambda redis: redis.paused_for(now), lambda local: local.paused_for(now)
        )

    async def release(self, now: float, interval: float) -> None:
        """`release` on Redis, or on the fallback when Redis fails."""
        await self._run(
            now,
            lambda redis: redis.release(now, interval),
            lambda local: local.release(now, interval),
        )

    async def observe(
        self,
        now: float,
        params: BucketParams,
        *,
        sent_at: float,
        throttled: bool,
        pause_until: float | None,
        ceiling: float | None,
    ) -> float:
        """`observe` on Redis, or on the fallback when Redis fails."""

        def step(bucket: BucketStorage | AsyncRedisBucket) -> Any:
            return bucket.observe(
                now,
                params,
                sent_at=sent_at,
                throttled=throttled,
                pause_until=pause_until,
                ceiling=ceiling,
            )

        rate: float = await self._run(now, step, step)
        return rate

    async def read(self, now: float, params: BucketParams) -> BucketState:
        """`read` on Redis, or on the fallback when Redis fails."""
        return await self._run(
            now, lambda redis: redis.read(now, params), lambda local: local.read(now, params)
        )


def ttl_ms(period: float, recovery: float) -> int:
    """How long Redis keeps an idle bucket: long enough to remember a throttle."""
    return max(60_000, math.ceil(max(period, recovery) * 4000))

"""Where a `ConcurrencyLimit` keeps its permits: a gate in this process, and Redis leases.

A key's **gate** is this process's view of it, under one short lock (never held across
I/O): how many permits this process holds, and its FIFO queue of waiting callers. The
gate's steps are plain state transitions, no I/O and no sleeping; the policy's sync and
async drivers do the waiting and the Redis round trips around them.

In memory (no Redis) the gate *is* the limit: a caller enters while fewer than
`limit` permits are held and nobody queues; else it queues, bounded by `max_queue`.
A release hands the permit straight to the first waiter (no caller can barge past the
queue), so waiters are served strictly first come, first served.

Through Redis the permits of the whole fleet are one sorted set per key, whose members
are holder ids (unique per permit) scored by their lease's expiry, on the callers' wall
clock (`Clock.time()`, as the breaker and the rate limit use)::

    ZREMRANGEBYSCORE key -inf now      leases that ran out: their holders died
    ZCARD key < limit ?                then ZADD key (now + lease) holder

in one Lua script (`_ACQUIRE`), so the count and the add are atomic. A release is a
``ZREM``. A holder that dies without releasing (SIGKILL, a lost host) holds its permit
until its lease runs out, and no longer; a live holder's lease is renewed every third
of a lease by the process's `LeaseRenewer` (a daemon thread, running only while the
process holds permits), so a long call keeps its permit. The gate still orders this
process's waiters (FIFO within the process) and bounds its queue; only the head of the
queue asks Redis, again after a short jittered backoff or at once when a permit of this
process is released. Across processes waiters are not ordered: the heads of the
processes' queues race for a freed permit.

If Redis fails, the policy falls back to the gate alone (`FailoverBucket`'s way, with
the `RedisLink` shared by the sync and async faces): each process then allows itself
`limit` permits until Redis answers again. A permit remembers where it was taken, and
is released there.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import threading
from typing import TYPE_CHECKING, Any

from requests_resilience._forksafe import reinit_after_fork
from requests_resilience._telemetry import logger

if TYPE_CHECKING:
    import asyncio

    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from requests_resilience._clock import Clock
    from requests_resilience._redis import RedisLink

__all__ = [
    "AsyncRedisPermits",
    "Gate",
    "LeaseRenewer",
    "RedisPermits",
    "Waiter",
    "new_holder_id",
]

#: The weight of the newest hold time in a gate's running average.
_HOLD_SMOOTHING = 0.2

# KEYS: the permits' sorted set
# ARGV: now, the new lease's expiry, the limit, the holder id, the key's ttl (ms)
# -> {granted (0/1), permits held after the step, the earliest lease expiry or ''}
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
if held < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, held + 1, ''}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, held, first[2] or ''}
"""


# -- the gate: this process's view of one key ------------------------------------------


class Waiter:
    """One queued caller: woken when it is handed a permit or becomes the queue's head.

    A sync caller waits on a `threading.Event`; an async one on an `asyncio.Event` of
    its own loop, set through ``call_soon_threadsafe`` (a release may come from any
    thread or loop).
    """

    __slots__ = ("event", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.granted = False  # handed a permit by a release (memory gates only)
        self.loop = loop
        self.event: threading.Event | asyncio.Event
        if loop is None:
            self.event = threading.Event()
        else:
            import asyncio  # noqa: PLC0415 - only async callers get here

            self.event = asyncio.Event()

    def wake(self) -> None:
        """Wake the caller (from any thread)."""
        loop = self.loop
        if loop is None:
            self.event.set()
            return
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
            loop.call_soon_threadsafe(self.event.set)


class Gate:
    """One key's permits and queue in this process (see the module docstring).

    Args:
        limit: the most permits held at once (in memory: by this process; through
            Redis: also the most this process takes while Redis is down).
        shared: whether the permits live in Redis (the gate then orders and bounds the
            queue, and counts the permits this process holds).
    """

    __slots__ = (
        "admitted",
        "held",
        "limit",
        "lock",
        "mean_hold",
        "queue",
        "refused",
        "shared",
        "used",
        "waited",
    )

    def __init__(self, limit: int, *, shared: bool) -> None:
        self.used = 0  # recency, stamped by `Cells`
        self.lock = threading.Lock()
        self.limit = limit
        self.shared = shared
        self.held = 0
        self.queue: collections.deque[Waiter] = collections.deque()
        self.mean_hold: float | None = None
        self.admitted = 0
        self.waited = 0
        self.refused = 0

    # Each step takes the lock once and returns at once.

    def enter(self) -> bool | None:
        """A new caller: True, a memory permit is taken; None, ask Redis; False, queue.

        A caller never passes the queue: with waiters queued it queues too.
        """
        with self.lock:
            if self.queue:
                return False
            if self.shared:
                return None
            if self.held < self.limit:
                self.held += 1
                self.admitted += 1
                return True
            return False

    def join(self, waiter: Waiter, max_queue: int) -> bool:
        """Queue `waiter` unless `max_queue` callers already wait; whether it was queued.

        In memory a permit may have come free since `enter`: the waiter is then handed
        it at once (``granted``), so it never waits for a release that already happened.
        """
        with self.lock:
            if len(self.queue) >= max_queue:
                return False
            if not self.shared and not self.queue and self.held < self.limit:
                self.held += 1
                self.admitted += 1
                waiter.granted = True
                return True
            self.queue.append(waiter)
            return True

    def is_head(self, waiter: Waiter) -> bool:
        """Whether `waiter` is first in the queue (the one that asks Redis)."""
        queue = self.queue
        return bool(queue) and queue[0] is waiter

    def taken(self, waiter: Waiter | None) -> None:
        """A permit was taken in Redis by a new caller or by the queue's head.

        The head leaves the queue, and the next waiter (now the head) is woken to ask
        Redis at once: more permits may be free.
        """
        with self.lock:
            self._take(waiter)

    def take_local(self, waiter: Waiter | None) -> bool:
        """The fallback while Redis is down: a permit of this process's own, if one is free."""
        with self.lock:
            if self.held >= self.limit:
                return False
            self._take(waiter)
            return True

    def _take(self, waiter: Waiter | None) -> None:
        self.held += 1
        self.admitted += 1
        if waiter is not None:
            self.waited += 1
            self._remove(waiter)
            if self.queue:
                self.queue[0].wake()

    def leave(self, waiter: Waiter) -> bool:
        """`waiter` stops waiting (timed out, interrupted); whether it holds a permit.

        A memory waiter may have been handed a permit just as it gave up: it then keeps
        it (its caller decides to use or release it). Leaving the head wakes the next.
        """
        with self.lock:
            if waiter.granted:
                return True
            was_head = self.is_head(waiter)
            self._remove(waiter)
            if was_head and self.queue:
                self.queue[0].wake()
            return False

    def release(self, held_for: float) -> None:
        """A permit of this process is released after `held_for` seconds.

        In memory it goes straight to the first waiter; through Redis (released there
        already) the head is woken to ask for it.
        """
        with self.lock:
            mean = self.mean_hold
            held_for = max(0.0, held_for)
            self.mean_hold = (
                held_for if mean is None else mean + _HOLD_SMOOTHING * (held_for - mean)
            )
            queue = self.queue
            if not self.shared and queue:
                waiter = queue.popleft()
                waiter.granted = True
                self.admitted += 1
                self.waited += 1
                waiter.wake()  # the permit changes hands: `held` stays
                return
            self.held -= 1
            if queue:
                queue[0].wake()

    def count_refusal(self) -> None:
        """Count a caller refused locally."""
        with self.lock:
            self.refused += 1

    def estimate(self, position: int) -> float | None:
        """Seconds until a permit would be free for the `position`-th caller in line (0 = next).

        The running average of hold times, times the rounds of `limit` permits ahead;
        None before any permit was released.
        """
        mean = self.mean_hold
        if mean is None:
            return None
        return mean * (position // self.limit + 1)

    def _remove(self, waiter: Waiter) -> None:
        with contextlib.suppress(ValueError):
            self.queue.remove(waiter)


# -- Redis -------------------------------------------------------------------------------

_process_prefix = ""
_sequence = itertools.count()


def _new_prefix() -> None:
    global _process_prefix, _sequence  # noqa: PLW0603 - renewed in a forked child
    _process_prefix = f"{os.getpid()}-{os.urandom(4).hex()}"
    _sequence = itertools.count()


_new_prefix()
if hasattr(os, "register_at_fork"):  # a child must not reuse its parent's holder ids
    os.register_at_fork(after_in_child=_new_prefix)


def new_holder_id() -> str:
    """A holder id unique in the fleet: this process's pid and random tag, and a count."""
    return f"{_process_prefix}-{next(_sequence)}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _acquire_args(now: float, lease: float, limit: int, holder: str) -> list[str | int]:
    return [repr(now), repr(now + lease), limit, holder, max(1000, int(lease * 2000))]


def _answer(raw: list[object]) -> tuple[bool, int, float | None]:
    granted, held, first = raw
    text = _text(first)
    return int(_text(granted)) == 1, int(_text(held)), float(text) if text else None


class RedisPermits:
    """One key's permits in a Redis sorted set, on redis-py's sync client.

    Args:
        client: a `redis.Redis` client.
        key: the sorted set's key; it should contain a ``{hash tag}`` (Redis Cluster).
    """

    def __init__(self, client: Redis, key: str) -> None:
        self._client = client
        self.key = key
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(
        self, now: float, lease: float, limit: int, holder: str
    ) -> tuple[bool, int, float | None]:
        """Take a permit for `holder` if fewer than `limit` live leases are held.

        Returns:
            Whether it was taken, the permits held afterwards, and (when refused) the
            earliest expiry of a held lease.
        """
        raw = self._acquire(keys=[self.key], args=_acquire_args(now, lease, limit, holder))
        return _answer(raw)

    def release(self, holder: str) -> None:
        """Give `holder`'s permit back (one round trip)."""
        self._client.zrem(self.key, holder)

    def in_flight(self, now: float) -> int:
        """The permits held by live leases, fleet-wide."""
        return int(self._client.zcount(self.key, f"({now!r}", "+inf"))


class AsyncRedisPermits:
    """`RedisPermits` on redis-py's asyncio client: the same key, the same script."""

    def __init__(self, client: AsyncRedis, key: str) -> None:
        self._client = client
        self.key = key
        self._acquire = client.register_script(_ACQUIRE)

    async def acquire(
        self, now: float, lease: float, limit: int, holder: str
    ) -> tuple[bool, int, float | None]:
        """`RedisPermits.acquire`, awaited."""
        raw = await self._acquire(keys=[self.key], args=_acquire_args(now, lease, limit, holder))
        return _answer(raw)

    async def release(self, holder: str) -> None:
        """`RedisPermits.release`, awaited."""
        await self._client.zrem(self.key, holder)


class LeaseRenewer:
    """Renews the leases this process holds, from one daemon thread per policy.

    The thread runs while the process holds a Redis permit of the policy: every third
    of a lease it moves each held lease's expiry to ``now + lease`` (one pipelined
    round trip for all of them, ``ZADD XX`` so a lease that already ran out is not
    brought back; that one is logged as lost). It renews through the sync client for
    sync and async holders alike. A forked child starts with no leases and no thread.

    Args:
        link: the policy's Redis link (its sync client and health).
        lease: the lease, in seconds.
        policy: the policy's name, for the log.
    """

    def __init__(self, link: RedisLink, lease: float, policy: str) -> None:
        self._link = link
        self._lease = lease
        self._policy = policy
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, Clock]] = {}  # holder -> (key, clock)
        self._thread: threading.Thread | None = None
        reinit_after_fork(self, LeaseRenewer._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._held = {}
        self._thread = None

    def add(self, holder: str, key: str, clock: Clock) -> None:
        """Keep `holder`'s lease on `key` alive until `discard`; time is read from `clock`."""
        with self._lock:
            self._held[holder] = (key, clock)
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name=f"requests-resilience {self._policy} leases"
                )
                thread.daemon = True
                self._thread = thread
                thread.start()

    def discard(self, holder: str) -> None:
        """Stop renewing `holder`'s lease (it was released)."""
        with self._lock:
            self._held.pop(holder, None)

    @property
    def holders(self) -> int:
        """How many leases are being renewed."""
        return len(self._held)

    def _run(self) -> None:
        interval = self._lease / 3
        idle = threading.Event()
        while True:
            idle.wait(interval)
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
            self.renew_once()

    def renew_once(self) -> int:
        """Renew every held lease now (one round trip); how many were still held.

        Called by the thread; tests call it directly. A Redis error is reported to the
        link (the policy falls back) and the leases are tried again next time.
        """
        with self._lock:
            held = list(self._held.items())
        if not held:
            return 0
        link = self._link
        clock = held[0][1][1]
        now = clock.time()
        if not link.usable(now):
            return 0
        try:
            pipe = link.client.pipeline(transaction=False)
            for holder, (key, clock) in held:
                pipe.zadd(key, {holder: clock.time() + self._lease}, xx=True)
                pipe.zscore(key, holder)
                pipe.pexpire(key, max(1000, int(self._lease * 2000)))
            answers: list[Any] = pipe.execute()
        except link.errors as exc:
            link.failed(now, exc)
            return 0
        link.succeeded()
        kept = 0
        for (holder, (key, _)), score in zip(held, answers[1::3], strict=True):
            if score is not None:
                kept += 1
                continue
            with self._lock:
                lost = self._held.pop(holder, None) is not None
            if lost:
                logger.warning(
                    "concurrency_limit_lease_lost",
                    policy=self._policy,
                    key=key,
                    lease=self._lease,
                )
        return kept

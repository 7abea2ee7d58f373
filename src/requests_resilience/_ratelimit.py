"""The `RateLimit` policy: a client-side token bucket that learns from the server's 429s.

One token per wire attempt, taken (or waited for) before the request leaves; a wait
that would pass the call's deadline or `max_wait` is not started, and the call fails at
once with a local `RateLimitError` (no request is sent). The rate adapts: a ``429``
drops it (CUBIC-style, as botocore's adaptive retry mode does, see `_ratelimit_storage`)
and no token is granted before its ``Retry-After``; ``X-RateLimit-Limit`` sets the
ceiling, ``X-RateLimit-Remaining: 0`` pauses the bucket until ``X-RateLimit-Reset``;
after a quiet period the rate climbs back. With Redis, every process using the same
key draws from one bucket::

    StatusErrors ─▶ Retry ─▶ CircuitBreaker ─▶ RateLimit ─▶ APIKeyAuth ─▶ Tracing ─▶ transport
                                                   │
                     reserve the next slot ────────┤  (one Lua script in Redis, or a lock)
                     sleep until it, no lock held ─┤
                     send; learn from the answer ──┘  (429, Retry-After, X-RateLimit-*)

Callers get consecutive slots in the order they ask (a reservation scheme), so
threads are served first come, first served and none starves. A caller that slept for
its slot checks the bucket again before sending: a pause the server asked for meanwhile
is waited out, and if the rate dropped meanwhile (a 429, or a lower limit learnt from
the first answers) it queues again at the new rate, so a fleet that started too fast
does not send its whole queue at the old pace.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context, metrics, trace

from requests_resilience import _telemetry
from requests_resilience._breaker import breaker_key_by_host
from requests_resilience._cells import DEFAULT_MAX_KEYS, Cells
from requests_resilience._clock import Clock, SystemClock, sleep_async
from requests_resilience._copying import Rebuilt
from requests_resilience._errors import ConfigurationError, RateLimitError, _safe_url
from requests_resilience._headers import header, response_headers
from requests_resilience._options import number, seconds
from requests_resilience._parsing import parse_rate_limit_headers, parse_retry_after
from requests_resilience._ratelimit_storage import (
    AsyncBucketStorage,
    BucketParams,
    BucketState,
    BucketStorage,
    FailoverBucket,
    MemoryBucket,
    Reservation,
    ttl_ms,
)
from requests_resilience._redis import REDIS_TIMEOUT, connect
from requests_resilience._tally import Tally

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis
    from requests import Response

    from requests_resilience._pipeline import AsyncNext, Call, Next

__all__ = ["RateLimit", "RateLimitStatus", "rate_limit_key_for"]

_DAY = 86_400.0
_RECHECKS = 8  # a caller re-queues at most this many times after its slot came
_RATE_DROPPED = 0.95  # a caller whose rate dropped below this share re-queues
_RATE_ATTRIBUTE = "requests_resilience.rate_limit.rate"
_WAIT_ATTRIBUTE = "requests_resilience.rate_limit.wait"


def rate_limit_key_for(api_key: str) -> str:
    """A bucket key for an API key that does not reveal it: ``"key-"`` + 16 hex digits.

    Every process that uses the same API key gets the same bucket key, so they share
    one bucket in Redis, and the key itself never reaches Redis, logs or metrics.

    Args:
        api_key: the API key (surrounding white space is ignored).

    Example:
        >>> rate_limit_key_for("sk-live-abc123def456")
        'key-cda935b720e48ea1'
    """
    digest = hashlib.sha256(api_key.strip().encode("utf-8")).hexdigest()
    return f"key-{digest[:16]}"


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    requests: float
    period: float
    burst: int
    headroom: float
    recovery: float
    max_wait: float
    max_pause: float
    max_keys: int
    keep_on_throttle: float
    follow_headers: bool
    key: str | Callable[[Call], str]
    namespace: str
    storage: str
    params: BucketParams


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitStatus:
    """A read-only picture of one key's bucket, from `RateLimit.status()`.

    The rate, tokens and pause come from the bucket (shared, with Redis); the totals
    count what *this* process's policy did since it was built.

    Attributes:
        key: the bucket's key.
        rate: the current rate, requests per second.
        target: the rate it climbs back to: the configured one, or the server's
            ``X-RateLimit-Limit`` per period (both times `headroom`).
        tokens: requests that could go at once now (0 while callers are queued).
        paused_for: seconds until a pause the server asked for ends (0.0 when none).
        sent: attempts this policy let through.
        waited: of those, how many waited for their slot.
        refused: attempts refused locally (the wait would pass the deadline).
        throttled: 429 answers seen.
        shared: whether the bucket is shared between processes (Redis).

    Example:
        >>> limit = RateLimit(10)
        >>> status = limit.status("https://api.example.com:443")
        >>> status.rate, status.throttled
        (9.5, 0)
    """

    key: str
    rate: float
    target: float
    tokens: float
    paused_for: float
    sent: int
    waited: int
    refused: int
    throttled: int
    shared: bool

    @property
    def per_minute(self) -> float:
        """The current rate in requests per minute."""
        return self.rate * 60.0


class _Cell:
    """One key's bucket, and what this process did with it (under a short lock)."""

    __slots__ = (
        "async_bucket",
        "bucket",
        "ceiling",
        "ceiling_text",
        "clock",
        "lock",
        "rate",
        "refused",
        "sent",
        "shared",
        "throttled",
        "used",
        "waited",
    )

    def __init__(self, bucket: BucketStorage, rate: float) -> None:
        self.used = 0  # recency, stamped by `Cells`
        self.bucket = bucket
        self.shared = bucket.shared  # its time is wall-clock time (Redis), else monotonic
        self.async_bucket: AsyncBucketStorage | None = None  # built on first async use
        self.ceiling_text: str | None = None  # the X-RateLimit-Limit that gave `ceiling`
        self.lock = threading.Lock()
        self.clock: Clock = SystemClock()
        self.rate = rate  # the last rate this process saw, for the gauge
        self.ceiling: float | None = None  # the last ceiling sent to the bucket
        self.sent = Tally()  # counted on every attempt: no lock
        self.waited = 0
        self.refused = 0
        self.throttled = 0


# -- the policy ------------------------------------------------------------------------


_T = TypeVar("_T")


class _Op:
    """One step of bucket I/O that a decision asks its driver for: ``bucket.name(...)``."""

    __slots__ = ("args", "cell", "key", "kwargs", "name")

    def __init__(
        self,
        key: str,
        cell: _Cell,
        name: str,  # read, release or observe
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.key, self.cell, self.name, self.args, self.kwargs = key, cell, name, args, kwargs


_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})

#: A decision that needs bucket I/O: it yields `_Op`s, is sent their results, returns T.
_Steps = Generator[_Op, Any, _T]


def _drive(steps: _Steps[_T]) -> _T:
    """Run `steps` against the sync face of each cell's bucket."""
    try:
        op = next(steps)
        while True:
            op = steps.send(
                getattr(op.cell.bucket, op.name)(*op.args, **(op.kwargs or _NO_KWARGS))
            )
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _adrive(limit: RateLimit, steps: _Steps[_T]) -> _T:
    """Run `steps` against the asyncio face (redis.asyncio, or the same memory bucket)."""
    try:
        op = next(steps)
        while True:
            face = limit._async_face(op.key, op.cell)
            op = steps.send(await getattr(face, op.name)(*op.args, **(op.kwargs or _NO_KWARGS)))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class _Ticket:
    """One attempt's place in the queue: its key and cell, the waits so far, the rate.

    Made only when the attempt must wait for its slot, or is refused: from what
    `RateLimit._plan` decided (where the slot is asked for, how long the attempt may
    wait for it); `RateLimit._ticket` fills in the bucket's answer. An attempt whose
    slot is free at once needs none.
    """

    __slots__ = ("allowed", "call", "cell", "checks", "key", "now_of", "rate", "waited")

    def __init__(
        self, call: Call, key: str, cell: _Cell, now_of: Callable[[], float], allowed: float
    ) -> None:
        self.call = call
        self.key = key
        self.cell = cell
        self.now_of = now_of
        self.allowed = allowed
        self.waited = 0.0  # the reserved slot's wait counts from the start
        self.rate = 0.0
        self.checks = 0

    def next_wait(self, limit: RateLimit) -> float | None:
        """The first wait (the reserved slot's), or None to send at once."""
        return self.waited if self.waited > 0 else None

    def slept(self, limit: RateLimit, wait: float) -> _Steps[float | None]:
        """A wait is over: the next one (a pause, a re-reserved slot) or None to send."""
        if self.checks >= _RECHECKS:
            return None
        first = self.checks == 0
        self.checks += 1
        if not first:
            self.waited += wait
        return (yield from limit._recheck(self))

    def abandon(self, exc: BaseException) -> _Steps[None]:
        """Interrupted before sending (Ctrl-C, cancellation): the slot goes back."""
        if not isinstance(exc, RateLimitError) and self.waited > 0:
            yield _Op(self.key, self.cell, "release", (self.now_of(), 1.0 / self.rate))


class RateLimit(Rebuilt):
    """Pace requests with a token bucket that adapts to the server, shared through Redis.

    Each wire attempt takes a token, waiting for one on the pipeline's clock when
    none is left. A wait that would pass the call's deadline (``call.deadline``) or
    `max_wait` is not started: the attempt fails at once with `RateLimitError`
    (``response`` None, ``retry_after`` the wait that would have been needed), and no
    request is sent. Waiting callers are served in the order they arrived.

    The rate adapts to what the server says:

    - a ``429`` drops the rate to `keep_on_throttle` times what it was (at most once
      per `period`: a window's 429s are one episode), and no token is granted before
      its ``Retry-After`` (else, before its ``X-RateLimit-Reset`` when
      ``X-RateLimit-Remaining`` is 0);
    - ``X-RateLimit-Limit`` (requests per `period`) becomes the target rate, above or
      below the configured one; ``X-RateLimit-Remaining: 0`` pauses the bucket until
      ``X-RateLimit-Reset``;
    - after a throttle the rate climbs back along a CUBIC curve: to where it was after
      `recovery` seconds without another 429, then slowly above it, up to the target.

    Place it inside the retry and the breaker, outside auth and tracing, so that every
    wire attempt spends a token, an open circuit spends none, and a local refusal is
    not a server failure for the breaker::

        StatusErrors -> Retry -> CircuitBreaker -> RateLimit -> APIKeyAuth -> Tracing

    With `redis_url` (or `redis_client`), every process using the same Redis, `name`,
    `namespace` and key draws from one bucket, stepped by Lua scripts (one round trip
    to reserve a slot; one more only after a 429 or a rate-limit header that changes
    something). Time in Redis is the callers' wall clock (``clock.time()``), so hosts
    must keep their clocks in sync. If Redis fails, each process carries on with a
    bucket of its own (logged once) and tries Redis again every few seconds.

    Args:
        requests: requests allowed per `period`; more than 0, at most 1,000,000.
        period: the period of `requests`, and of the server's ``X-RateLimit-Limit``, in
            seconds or a timedelta; 0.001 to 86400 (default 1.0). See `per_minute`.
        burst: requests that may go at once after a quiet spell (the bucket's size);
            1 to 1,000,000 (default 1: evenly spaced).
        headroom: the share of the limit to use, so that timing jitter does not cross
            the server's window boundary; 0.1 to 1.0 (default 0.95).
        recovery: seconds (or a timedelta) to climb back to the rate of the last
            throttle; 0.001 to 86400, or None for three `period` (default): slow
            enough that the climb does not overshoot again in the server's next window.
        max_wait: the longest wait for a token, in seconds or a timedelta, even when
            the call's deadline would allow more; 0 to 86400 (default 60).
        max_pause: the longest pause a server can impose with one answer
            (``Retry-After`` on a 429, ``X-RateLimit-Reset``), in seconds or a
            timedelta; 0 to 86400 (default 60). A longer hint is cut to it, when it is
            learnt and again whenever a shared bucket is read: a ``Retry-After:
            99999999`` holds this process, and every process sharing the bucket through
            Redis, for at most `max_pause` (theirs, each).
        max_keys: the most keys whose buckets are kept in memory; 1 to 10,000,000
            (default 10,000). A new key beyond it drops the least recently used tenth
            (a dropped key that comes back starts with a full bucket; with Redis, its
            shared state is still there).
        keep_on_throttle: the share of the rate kept on a 429; 0.1 to 0.99
            (default 0.7, as botocore).
        follow_headers: learn the limit and pauses from ``X-RateLimit-*`` headers
            (default True).
        key: which bucket a call draws from: a fixed string (for example
            `rate_limit_key_for` of the API key), or a function ``Call -> str``
            (default: one bucket per origin, ``breaker_key_by_host``).
        redis_url: share the buckets through this Redis (``redis://``, ``rediss://`` or
            ``unix://``); needs the ``redis`` extra.
        redis_client: or share them through this `redis.Redis` client.
        async_redis: the `redis.asyncio.Redis` client for async callers (the same
            buckets, keys and scripts). Optional: without it one is built on first
            async use from `redis_url` or from `redis_client`'s connection settings;
            given alone, it serves both faces (the sync client is built from it).
            Each async Redis step is bounded by `redis_timeout`, whatever the client.
        redis_timeout: seconds to connect to Redis and for each command, for the client
            made from `redis_url`; 0.001 to 60 (default 0.5). A frozen Redis costs a
            call at most this, once, before the policy falls back to a local bucket
            for a few seconds. Redis keys expire when idle (a few `period`, at least a
            minute).
        namespace: the prefix of the Redis keys.
        name: the policy's name in descriptions, logs, metrics and Redis keys.

    Raises:
        ConfigurationError: an option is out of range or of the wrong type (the
            message names it and its range), or both `redis_url` and `redis_client`
            are given.
        ImportError: Redis is asked for but the ``redis`` package is not installed.

    Example:
        >>> from requests_resilience import Pipeline, Retry, StatusErrors
        >>> limit = RateLimit.per_minute(10, key=rate_limit_key_for("sk-live-abc123"))
        >>> pipeline = Pipeline(StatusErrors(), Retry(timeout=60), limit)
        >>> round(limit.rate * 60, 2)
        9.5
    """

    __slots__ = ("__weakref__", "_cells", "_link", "_name", "_secrets", "_settings")

    def __init__(
        self,
        requests: float,
        *,
        period: float | timedelta = 1.0,
        burst: int = 1,
        headroom: float = 0.95,
        recovery: float | timedelta | None = None,
        max_wait: float | timedelta = 60.0,
        max_pause: float | timedelta = 60.0,
        max_keys: int = DEFAULT_MAX_KEYS,
        keep_on_throttle: float = 0.7,
        follow_headers: bool = True,
        key: str | Callable[[Call], str] = breaker_key_by_host,
        redis_url: str | None = None,
        redis_client: Redis | None = None,
        async_redis: AsyncRedis | None = None,
        redis_timeout: float | timedelta = REDIS_TIMEOUT,
        namespace: str = "requests_resilience:rate_limit",
        name: str = "rate_limit",
    ) -> None:
        requests_n = number("RateLimit", "requests", requests, 0.0, 1_000_000.0)
        if requests_n <= 0:
            msg = f"RateLimit requests must be more than 0 and at most 1000000, got {requests!r}"
            raise ConfigurationError(msg)
        period_s = seconds("RateLimit", "period", period, 0.001, _DAY)
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000:
            msg = f"RateLimit burst must be an int from 1 to 1000000, got {burst!r}"
            raise ConfigurationError(msg)
        headroom_f = number("RateLimit", "headroom", headroom, 0.1, 1.0)
        recovery_s = (
            3 * period_s
            if recovery is None
            else seconds("RateLimit", "recovery", recovery, 0.001, _DAY)
        )
        max_wait_s = seconds("RateLimit", "max_wait", max_wait, 0.0, _DAY)
        max_pause_s = seconds("RateLimit", "max_pause", max_pause, 0.0, _DAY)
        if (
            isinstance(max_keys, bool)
            or not isinstance(max_keys, int)
            or not 1 <= max_keys <= 10_000_000
        ):
            msg = f"RateLimit max_keys must be an int from 1 to 10000000, got {max_keys!r}"
            raise ConfigurationError(msg)
        timeout_s = seconds("RateLimit", "redis_timeout", redis_timeout, 0.001, 60.0)
        keep = number("RateLimit", "keep_on_throttle", keep_on_throttle, 0.1, 0.99)
        if not isinstance(follow_headers, bool):
            msg = f"RateLimit follow_headers must be True or False, got {follow_headers!r}"
            raise ConfigurationError(msg)
        if isinstance(key, str):
            if not key.strip():
                msg = "RateLimit key must be a non-empty string or a function Call -> str"
                raise ConfigurationError(msg)
        elif not callable(key):
            msg = "RateLimit key must be a non-empty string or a function Call -> str"
            raise ConfigurationError(msg)
        for option, text in (("namespace", namespace), ("name", name)):
            if not isinstance(text, str) or not text.strip():
                msg = f"RateLimit {option} must be a non-empty string, got {text!r}"
                raise ConfigurationError(msg)
        if redis_url is not None and redis_client is not None:
            msg = "RateLimit takes redis_url or redis_client, not both"
            raise ConfigurationError(msg)

        link, storage, secrets = connect(
            redis_url,
            redis_client,
            owner="RateLimit",
            name=name,
            event="rate_limit",
            async_redis=async_redis,
            fallback="local bucket, per process",
            timeout=timeout_s,
        )
        self._settings = _Settings(
            requests=requests_n,
            period=period_s,
            burst=burst,
            headroom=headroom_f,
            recovery=recovery_s,
            max_wait=max_wait_s,
            max_pause=max_pause_s,
            max_keys=max_keys,
            keep_on_throttle=keep,
            follow_headers=follow_headers,
            key=key.strip() if isinstance(key, str) else key,
            namespace=namespace,
            storage=storage,
            params=BucketParams(
                rate=requests_n / period_s * headroom_f,
                burst=burst,
                recovery=recovery_s,
                beta=keep,
                cooldown=period_s,
                ttl=ttl_ms(period_s, recovery_s),
                max_pause=max_pause_s,
            ),
        )
        self._name = name
        self._secrets = secrets
        self._link = link
        self._cells: Cells[_Cell] = Cells(max_keys, self._new_cell)
        _LIVE.add(self)

    @classmethod
    def per_minute(cls, requests: float, **options: Any) -> RateLimit:
        """A limit of `requests` per minute (``period=60``), as Vinci documents its keys.

        Args:
            requests: requests allowed per minute.
            **options: any other option of `RateLimit`.

        Raises:
            ConfigurationError: an option is out of range.

        Example:
            >>> RateLimit.per_minute(10, burst=10).period
            60.0
        """
        return cls(requests, period=60.0, **options)

    @classmethod
    def per_second(cls, requests: float, **options: Any) -> RateLimit:
        """A limit of `requests` per second (``period=1``).

        Args:
            requests: requests allowed per second.
            **options: any other option of `RateLimit`.

        Raises:
            ConfigurationError: an option is out of range.

        Example:
            >>> RateLimit.per_second(20).requests
            20.0
        """
        return cls(requests, period=1.0, **options)

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
    def requests(self) -> float:
        """Requests allowed per `period`, as configured."""
        return self._settings.requests

    @property
    def period(self) -> float:
        """The period of `requests`, in seconds."""
        return self._settings.period

    @property
    def burst(self) -> int:
        """Requests that may go at once after a quiet spell."""
        return self._settings.burst

    @property
    def rate(self) -> float:
        """The configured target rate, requests per second (`headroom` applied)."""
        return self._settings.params.rate

    @property
    def max_wait(self) -> float:
        """The longest wait for a token, in seconds."""
        return self._settings.max_wait

    @property
    def max_pause(self) -> float:
        """The longest pause one server answer can impose, in seconds."""
        return self._settings.max_pause

    @property
    def max_keys(self) -> int:
        """The most keys whose buckets are kept in memory."""
        return self._settings.max_keys

    @property
    def shared(self) -> bool:
        """Whether the buckets are shared between processes through Redis."""
        return self._link is not None

    # -- the policy ----------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Take a token (waiting for it if the deadline allows), send, learn from the answer."""
        key, cell, now_of, allowed = self._plan(call)
        reservation = cell.bucket.reserve(now_of(), self._settings.params, allowed)
        rate, waited = reservation.rate, reservation.wait
        if waited > 0 or not reservation.granted:  # a wait, or a refusal: the slow path
            ticket = self._ticket(_Ticket(call, key, cell, now_of, allowed), reservation)
            try:
                wait = ticket.next_wait(self)
                while wait is not None:
                    call.clock.sleep(wait)
                    wait = _drive(ticket.slept(self, wait))
            except BaseException as exc:
                _drive(ticket.abandon(exc))
                raise
            rate, waited = ticket.rate, ticket.waited
        else:
            cell.rate = rate
        sent_at = _depart(cell, rate, waited, now_of)
        response = next(call)
        lesson = self._lesson(call, cell, response)
        if lesson is not None:
            _drive(self._learn(call, cell, key, lesson, sent_at))
        return response

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines: the same decisions, awaited waits and bucket I/O.

        A shared bucket is stepped through redis-py's asyncio client (the same hash and
        scripts as `send`); other tasks run while this one waits.
        """
        key, cell, now_of, allowed = self._plan(call)
        params = self._settings.params
        if self._link is None:  # a bucket in memory: reserved at once, nothing to await
            reservation = cell.bucket.reserve(now_of(), params, allowed)
        else:
            face = self._async_face(key, cell)
            reservation = await face.reserve(now_of(), params, allowed)
        rate, waited = reservation.rate, reservation.wait
        if waited > 0 or not reservation.granted:
            ticket = self._ticket(_Ticket(call, key, cell, now_of, allowed), reservation)
            try:
                wait = ticket.next_wait(self)
                while wait is not None:
                    await sleep_async(call.clock, wait)
                    wait = await _adrive(self, ticket.slept(self, wait))
            except BaseException as exc:
                await _adrive(self, ticket.abandon(exc))
                raise
            rate, waited = ticket.rate, ticket.waited
        else:
            cell.rate = rate
        sent_at = _depart(cell, rate, waited, now_of)
        response = await next(call)
        lesson = self._lesson(call, cell, response)
        if lesson is not None:
            await _adrive(self, self._learn(call, cell, key, lesson, sent_at))
        return response

    def _async_face(self, key: str, cell: _Cell) -> AsyncBucketStorage:
        face = cell.async_bucket
        if face is None:  # a race builds two equal faces: harmless
            face = cell.async_bucket = self._async_bucket(key)
        return face

    def _plan(self, call: Call) -> tuple[str, _Cell, Callable[[], float], float]:
        """Where this attempt's slot is asked for, and how long it may wait for it.

        The key, its cell, the clock of its bucket (wall-clock time for a shared one)
        and the longest wait allowed (`max_wait`, or less before the deadline).
        """
        settings = self._settings
        key = settings.key if isinstance(settings.key, str) else settings.key(call)
        cell = self._cells.get(key)
        clock = call.clock
        cell.clock = clock
        allowed = settings.max_wait
        deadline = call.deadline
        if deadline is not None:
            left = deadline - clock.monotonic()
            if left < allowed:
                allowed = max(0.0, left)
        _INSTRUMENTS.get()  # registers the rate gauge once a meter provider records
        return key, cell, clock.time if cell.shared else clock.monotonic, allowed

    def _ticket(self, ticket: _Ticket, reservation: Reservation) -> _Ticket:
        """Give `ticket` the bucket's answer (its wait and rate), or refuse it locally."""
        cell = ticket.cell
        cell.rate = ticket.rate = reservation.rate
        if not reservation.granted:
            by_deadline = ticket.allowed < self._settings.max_wait
            self._refuse(ticket.call, cell, ticket.key, reservation.wait, by_deadline=by_deadline)
        ticket.waited = reservation.wait
        return ticket

    def _recheck(self, ticket: _Ticket) -> _Steps[float | None]:
        """After a wait: the next wait (a pause, a lower rate begun meanwhile), or None.

        A caller reserved its slot at the rate of that moment; if the server has since
        asked for a pause, it waits for it, and if the rate has since dropped (a 429, or
        a lower ``X-RateLimit-Limit`` learnt from the first answers), it gives up its
        slot and reserves a new one at the new rate, behind the callers already queued.
        """
        settings = self._settings
        call, cell, key = ticket.call, ticket.cell, ticket.key
        by_deadline = ticket.allowed < settings.max_wait
        state: BucketState = yield _Op(key, cell, "read", (ticket.now_of(), settings.params))
        wait: float
        if state.paused_for > 0:
            wait = state.paused_for
        elif state.rate < ticket.rate * _RATE_DROPPED:
            reservation: Reservation = yield _Op(
                key,
                cell,
                "reserve",
                (ticket.now_of(), settings.params, ticket.allowed - ticket.waited),
            )
            if not reservation.granted:
                self._refuse(call, cell, key, reservation.wait, by_deadline=by_deadline)
            wait, ticket.rate = reservation.wait, reservation.rate
            if wait <= 0:
                return None
        else:
            return None
        if ticket.waited + wait > ticket.allowed:
            self._refuse(call, cell, key, wait, by_deadline=by_deadline)
        return wait

    def _lesson(
        self, call: Call, cell: _Cell, response: Response
    ) -> tuple[bool, float | None, float | None] | None:
        """What an answer teaches (throttled, pause, ceiling), or None: nothing new.

        The common case (not a 429, no pause asked, a ceiling already known) is None, and
        then the bucket is not touched at all.
        """
        settings = self._settings
        throttled = response.status_code == 429
        if not throttled and (not settings.follow_headers or _nothing_new(cell, response)):
            return None
        headers = response.headers
        pause: float | None = None
        ceiling: float | None = None
        if settings.follow_headers:  # throttled, or headers with something new
            limits = parse_rate_limit_headers(headers)
            if limits is not None:
                if limits.limit is not None and limits.limit >= 1:
                    ceiling = limits.limit / settings.period * settings.headroom
                if limits.remaining == 0 and limits.reset is not None:
                    pause = _reset_pause(
                        limits.reset, call.clock.time(), settings.period, throttled
                    )
        if throttled:
            retry_after = parse_retry_after(headers, call.clock.time())
            if retry_after is not None:
                pause = retry_after
        if pause is not None:
            pause = min(pause, settings.max_pause)  # a server's hint, bounded
        if ceiling is not None and ceiling == cell.ceiling:
            ceiling = None  # already known: spare the round trip, and the next parse
            cell.ceiling_text = header(headers, "x-ratelimit-limit")
        if not throttled and pause is None and ceiling is None:
            return None
        return throttled, pause, ceiling

    def _learn(
        self,
        call: Call,
        cell: _Cell,
        key: str,
        lesson: tuple[bool, float | None, float | None],
        sent_at: float,
    ) -> _Steps[None]:
        """Tell the bucket what an answer taught (`_lesson`), and count it."""
        settings = self._settings
        throttled, pause, ceiling = lesson
        clock = call.clock
        now = clock.time() if cell.bucket.shared else clock.monotonic()
        observed = {
            "sent_at": sent_at,
            "throttled": throttled,
            "pause_until": None if pause is None else now + pause,
            "ceiling": ceiling,
        }
        rate: float = yield _Op(key, cell, "observe", (now, settings.params), observed)
        with cell.lock:
            cell.rate = rate
            if ceiling is not None:
                cell.ceiling = ceiling
            if throttled:
                cell.throttled += 1
        if throttled:
            _throttled(self._name, key, rate, pause, _safe_url(call.request.url))

    def _refuse(
        self, call: Call, cell: _Cell, key: str, wait: float, *, by_deadline: bool
    ) -> None:
        with cell.lock:
            cell.refused += 1
        _refused(self._name, key)
        request = call.request
        target = f"{request.method} {_safe_url(request.url)}"
        limit = "the call's deadline" if by_deadline else f"max_wait ({self.max_wait:g}s)"
        message = (
            f"rate limit {key!r} refused locally: {target} was not sent; the next token "
            f"is {wait:.3g}s away, past {limit}"
        )
        raise RateLimitError(
            call.redactor.redact(message),
            retry_after=wait,
            detail="refused locally by the client's rate limit",
            request=request,
        )

    def _async_bucket(self, key: str) -> AsyncBucketStorage:
        """The asyncio face of `key`'s bucket, for the async driver.

        It steps the same bucket as `send` does: with Redis, the same hash and scripts
        through redis-py's asyncio client, with the same `RedisLink` (one health for
        both faces) and the same local fallback; without Redis, the same
        `MemoryBucket`, called directly (it does no I/O). So a token taken by an async
        caller is gone for a sync one, and the other way round.

        Example:
            >>> RateLimit.per_second(5, key="k")._async_bucket("k").shared
            False
        """
        bucket = self._cells.get(key).bucket
        assert isinstance(bucket, FailoverBucket | MemoryBucket)  # see _new_cell
        return bucket.async_face()

    def _new_cell(self, key: str) -> _Cell:
        bucket: BucketStorage
        if self._link is not None:
            redis_key = f"{self._settings.namespace}:{self._name}:{{{key}}}"
            bucket = FailoverBucket(self._link, redis_key)
        else:
            bucket = MemoryBucket()
        return _Cell(bucket, self._settings.params.rate)

    # -- inspection ----------------------------------------------------------------

    def status(self, key: str) -> RateLimitStatus:
        """A read-only picture of `key`'s bucket (see `RateLimitStatus`).

        Time is read from the clock of the last call through that key.

        Example:
            >>> RateLimit.per_second(5, key="k").status("k").rate
            4.75
        """
        cell = self._cells.get(key)
        bucket = cell.bucket
        clock = cell.clock
        state = bucket.read(
            clock.time() if bucket.shared else clock.monotonic(), self._settings.params
        )
        with cell.lock:
            cell.rate = state.rate
            return RateLimitStatus(
                key=key,
                rate=state.rate,
                target=state.target,
                tokens=state.tokens,
                paused_for=state.paused_for,
                sent=cell.sent.value,
                waited=cell.waited,
                refused=cell.refused,
                throttled=cell.throttled,
                shared=bucket.shared,
            )

    def snapshot(self) -> Mapping[str, RateLimitStatus]:
        """The status of every key this policy has used, by key (a read-only mapping).

        Example:
            >>> {key: s.rate for key, s in limit.snapshot().items()}  # doctest: +SKIP
            {'key-cda935b720e48ea1': 0.158}
        """
        return MappingProxyType({key: self.status(key) for key in self._cells.keys()})  # noqa: SIM118 - a locked snapshot, not a dict

    def __repr__(self) -> str:
        s = self._settings
        key = repr(s.key) if isinstance(s.key, str) else _func_name(s.key)
        parts = [
            f"requests={s.requests:g}",
            f"period={s.period:g}",
            f"burst={s.burst}",
            f"headroom={s.headroom:g}",
            f"recovery={s.recovery:g}",
            f"max_wait={s.max_wait:g}",
            f"max_pause={s.max_pause:g}",
            f"key={key}",
            f"storage={s.storage!r}",
        ]
        if s.keep_on_throttle != 0.7:
            parts.append(f"keep_on_throttle={s.keep_on_throttle:g}")
        if not s.follow_headers:
            parts.append("follow_headers=False")
        if self._name != "rate_limit":
            parts.append(f"name={self._name!r}")
        return f"RateLimit({', '.join(parts)})"

    def _rates(self) -> Iterable[tuple[str, float]]:
        return [(key, cell.rate) for key, cell in self._cells.items()]


def _reset_pause(reset: float, wall: float, period: float, throttled: bool) -> float:
    """How long ``X-RateLimit-Remaining: 0`` pauses the bucket, from ``X-RateLimit-Reset``.

    A whole-second Reset is rounded: the window really resets during the second before
    it. After a success (the window is used up, nothing was refused yet) the pause ends
    at the start of that second, the earliest the window can reset; after a 429 it ends
    at the stated Reset, the latest. A window resets within one `period`, so a Reset
    further away is clock skew between client and server (or garbage), and is capped.
    """
    if not throttled and reset == int(reset):
        reset -= 1.0
    return min(max(0.0, reset - wall), period)


def _func_name(func: Any) -> str:
    return str(getattr(func, "__qualname__", None) or type(func).__name__)


# -- telemetry -------------------------------------------------------------------------
#
# The rate is a gauge read when metrics are collected (no work per request); throttles
# and refusals are counters; a 429 is logged as a warning (like a retry); the rate and
# the wait are set on the current span (the operation's, or the caller's own).

_LIVE: weakref.WeakSet[RateLimit] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class _Instruments:
    throttles: metrics.Counter
    refusals: metrics.Counter
    rate: metrics.ObservableGauge


def _observe_rates(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    observations = []
    for policy in list(_LIVE):
        for key, rate in policy._rates():
            observations.append(
                metrics.Observation(
                    rate,
                    {
                        "requests_resilience.rate_limit.policy": policy.name,
                        "requests_resilience.rate_limit.key": key,
                    },
                )
            )
    return observations


def _build_instruments(meter: metrics.Meter) -> _Instruments:
    return _Instruments(
        throttles=meter.create_counter(
            "requests_resilience.rate_limit.throttles",
            unit="{response}",
            description="429 answers seen by a rate-limit policy, by policy and key.",
        ),
        refusals=meter.create_counter(
            "requests_resilience.rate_limit.refusals",
            unit="{request}",
            description="Attempts a rate-limit policy refused locally (not sent).",
        ),
        rate=meter.create_observable_gauge(
            "requests_resilience.rate_limit.rate",
            callbacks=[_observe_rates],
            unit="{request}/s",
            description="The current rate of a rate-limit bucket, requests per second.",
        ),
    )


_INSTRUMENTS = _telemetry.PerProvider(_build_instruments)


def _instruments() -> _Instruments | None:
    return _INSTRUMENTS.get()


def ensure_rate_gauge() -> None:
    """Register the rate gauge with the current meter provider, if it records."""
    _instruments()


def _nothing_new(cell: _Cell, response: Response) -> bool:
    """The common answer: the same ``X-RateLimit-Limit`` as before, tokens remaining.

    Then the headers teach nothing (the ceiling is known; no pause without
    ``Remaining: 0``), and they are not parsed at all.
    """
    if cell.ceiling_text is None:
        return False
    limit, remaining = response_headers(response, "x-ratelimit-limit", "x-ratelimit-remaining")
    if limit != cell.ceiling_text:
        return False
    return remaining is None or (remaining.isdigit() and remaining.strip("0") != "")


def _depart(cell: _Cell, rate: float, waited: float, now_of: Callable[[], float]) -> float:
    """Count the attempt as sent (after waiting, or not); the time it leaves."""
    cell.sent.add()
    if waited > 0:
        with cell.lock:
            cell.waited += 1
    current = _telemetry.current_context()
    if current:  # else no span in the context: nothing to annotate
        _on_span(current, rate, waited)
    return now_of()


def _on_span(current: context.Context, rate: float, wait: float) -> None:
    span = trace.get_current_span(current)
    if span.is_recording():
        span.set_attribute(_RATE_ATTRIBUTE, rate)
        span.set_attribute(_WAIT_ATTRIBUTE, wait)


def _throttled(policy: str, key: str, rate: float, pause: float | None, url: str) -> None:
    fields: dict[str, Any] = {"policy": policy, "key": key, "rate": round(rate, 6), "url": url}
    if pause is not None:
        fields["pause"] = round(pause, 6)
    _telemetry.logger.warning("rate_limit_throttled", **fields)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(_RATE_ATTRIBUTE, rate)
    instruments = _instruments()
    if instruments is not None:
        instruments.throttles.add(
            1,
            {
                "requests_resilience.rate_limit.policy": policy,
                "requests_resilience.rate_limit.key": key,
            },
        )


def _refused(policy: str, key: str) -> None:
    instruments = _instruments()
    if instruments is not None:
        instruments.refusals.add(
            1,
            {
                "requests_resilience.rate_limit.policy": policy,
                "requests_resilience.rate_limit.key": key,
            },
        )

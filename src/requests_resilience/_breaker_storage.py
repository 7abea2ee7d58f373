"""Where a `CircuitBreaker` keeps its state: pybreaker's storages, plus atomic steps.

pybreaker's storages hold a breaker's state (``closed``, ``open``, ``half-open``), when
it opened, and its failure and success counters; `pybreaker.CircuitRedisStorage` keeps
them in Redis under ``<namespace>:pybreaker:<field>``, so that processes share them.
What pybreaker lacks is what a ratio breaker that never serialises threads needs: a
sliding window of outcomes, a count of half-open probes in flight, and transitions
that happen *atomically* with the read that decides them, so that two threads (or two
processes) that see the same failure do not both open the breaker. So each storage
here extends a pybreaker storage with four steps:

- ``admit(now, rules)``: may a call go out? Moves ``open`` to ``half-open`` when the
  break is over and hands out probe permits.
- ``record(now, rules, failed=..., probe=...)``: count an outcome, and open or close the
  breaker when the rules say so.
- ``release(now, probe=...)``: a call ended without an outcome that counts (its permit
  is given back).
- ``read(now, rules)``: the state and the window's counts, for inspection.

Each step is one short critical section: a `threading.Lock` in memory, one Lua script
(a single round trip, atomic in Redis) for Redis. No lock is ever held while the
request itself is on the wire.

The window is a ring of ``rules.buckets`` time buckets: an outcome leaves it a bucket
(a tenth of the window by default) at a time. In Redis the buckets are fields of one
hash per breaker, summed and pruned by the same script that counts the outcome.

Every Redis key of a breaker expires when idle (`Rules.ttl_ms`: four times the longer
of the window and the break, at least a minute), refreshed by each step that writes
it; a key that expired reads as a closed breaker with an empty window, which is what
an idle breaker is. The wait that an open state in Redis announces is cut to this
process's ``break_duration``, whoever wrote it.

`FailoverStorage` puts a memory storage behind the Redis one: when Redis fails, each
process carries on with its own state (logged once), and retries Redis every few
seconds.

For asyncio callers each Redis class has an async twin on redis-py's asyncio client
(`AsyncRedisBreakerStorage`, `AsyncFailoverStorage`), with the same keys and the same
Lua scripts: what goes into a script and what comes out are plain functions both
faces call. A key's async face shares its sync face's `RedisLink` (one health for
both) and its fallback (the same memory object), so sync and async callers in one
process see one breaker whether Redis works or not.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import pybreaker

from requests_resilience._redis import AsyncFailover, RedisLink
from requests_resilience._telemetry import logger

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = [
    "ADMITTED",
    "STATE_CLOSED",
    "STATE_HALF_OPEN",
    "STATE_OPEN",
    "Admission",
    "AsyncBreakerStorage",
    "AsyncFailoverStorage",
    "AsyncRedisBreakerStorage",
    "BreakerStorage",
    "FailoverStorage",
    "MemoryBreakerStorage",
    "RedisBreakerStorage",
    "Rules",
    "StoredState",
    "Transition",
]

STATE_CLOSED: str = pybreaker.STATE_CLOSED
STATE_OPEN: str = pybreaker.STATE_OPEN
STATE_HALF_OPEN: str = pybreaker.STATE_HALF_OPEN

_log = logger


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """The settings a storage needs to decide admissions and transitions."""

    failure_ratio: float
    minimum_calls: int
    window: float
    buckets: int
    break_duration: float
    half_open_probes: int
    probe_retry_after: float
    slow_call_ratio: float | None = None  # None: slow calls do not open the breaker
    #: Seconds covered by one bucket of the window (``window / buckets``).
    bucket_width: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket_width", self.window / self.buckets)

    @property
    def ttl_ms(self) -> int:
        """Milliseconds Redis keeps an idle breaker's keys (longer than any break)."""
        return max(60_000, math.ceil(max(self.window, self.break_duration) * 4000))

    def bucket(self, now: float) -> int:
        """The id of the bucket that `now` falls in."""
        return math.floor(now / self.bucket_width)

    def trips(self, calls: int, failures: int, slow: int = 0) -> bool:
        """Whether these window counts open the breaker: failures, or slow calls."""
        if calls < self.minimum_calls:
            return False
        if failures > 0 and failures / calls >= self.failure_ratio:
            return True
        ratio = self.slow_call_ratio
        return ratio is not None and slow > 0 and slow / calls >= ratio


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A state change that a storage step made (exactly one caller gets it).

    ``calls``, ``failures`` and ``slow_calls`` are the window's counts when the breaker
    tripped.
    """

    old: str
    new: str
    calls: int | None = None
    failures: int | None = None
    slow_calls: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """The answer of `admit()`: whether the call may go, and what the caller must report.

    Attributes:
        allowed: the call may be sent.
        probe: the call is a half-open probe (its outcome decides the state).
        state: the state the decision was made in.
        retry_after: for a refused call, seconds until it is worth trying again.
        transition: the change this step made (open -> half-open), if any.
    """

    allowed: bool
    probe: bool = False
    state: str = STATE_CLOSED
    retry_after: float = 0.0
    transition: Transition | None = None


#: The answer for the common case: closed, go ahead.
ADMITTED = Admission(allowed=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredState:
    """What `read()` returns: the state and the window's counts right now."""

    state: str
    calls: int
    failures: int
    retry_after: float | None
    probes_in_flight: int
    slow_calls: int = 0


class BreakerStorage(Protocol):
    """The steps a `CircuitBreaker` takes on the state of one key (see the module doc)."""

    @property
    def shared(self) -> bool:
        """Whether the state is shared between processes (wall-clock time is used)."""
        ...

    def admit(self, now: float, rules: Rules) -> Admission:
        """Decide whether a call may go out now."""
        ...

    def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """Count an outcome; return the transition it caused, if any."""
        ...

    def release(self, now: float, *, probe: bool) -> None:
        """Give back the permit of a call whose outcome does not count."""
        ...

    def read(self, now: float, rules: Rules) -> StoredState:
        """The state and the window's counts."""
        ...


# -- memory ---------------------------------------------------------------------------


class _Window:
    """A ring of time buckets with call, failure and slow-call counts (guarded by its owner)."""

    __slots__ = ("calls", "failures", "ids", "slow")

    def __init__(self, buckets: int) -> None:
        self.ids = [-1] * buckets
        self.calls = [0] * buckets
        self.failures = [0] * buckets
        self.slow = [0] * buckets

    def add(self, bucket: int, failed: bool, slow: bool = False) -> None:
        ids = self.ids
        slot = bucket % len(ids)
        if ids[slot] != bucket:
            ids[slot] = bucket
            self.calls[slot] = 0
            self.failures[slot] = 0
            self.slow[slot] = 0
        self.calls[slot] += 1
        if failed:
            self.failures[slot] += 1
        if slow:
            self.slow[slot] += 1

    def counts(self, bucket: int) -> tuple[int, int, int]:
        """Calls, failures and slow calls in the window that ends with `bucket`."""
        oldest = bucket - len(self.ids) + 1
        calls = failures = slow = 0
        for slot, ident in enumerate(self.ids):
            if oldest <= ident <= bucket:
                calls += self.calls[slot]
                failures += self.failures[slot]
                slow += self.slow[slot]
        return calls, failures, slow

    def clear(self) -> None:
        for slot in range(len(self.ids)):
            self.ids[slot] = -1
            self.calls[slot] = 0
            self.failures[slot] = 0
            self.slow[slot] = 0


class MemoryBreakerStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's `CircuitMemoryStorage` with the atomic steps, under one short lock.

    `now` is the pipeline clock's ``monotonic()``.
    """

    def __init__(self, buckets: int) -> None:
        super().__init__(STATE_CLOSED)
        self._current = STATE_CLOSED
        self._failures_in_row = 0
        self._lock = threading.Lock()
        self._window = _Window(buckets)
        self._open_until = 0.0
        self._half_open_at = 0.0
        self._probes = 0

    # pybreaker's storage interface for the state and the failure counter, kept in this
    # class's own attributes: the steps below read them directly, as every answer does.

    @property
    def state(self) -> str:
        """The breaker's state (pybreaker's ``"closed"``, ``"open"``, ``"half-open"``)."""
        return self._current

    @state.setter
    def state(self, state: str) -> None:
        self._current = state

    @property
    def counter(self) -> int:
        """Consecutive failures (pybreaker's counter)."""
        return self._failures_in_row

    def increment_counter(self) -> None:
        """Count one more consecutive failure."""
        self._failures_in_row += 1

    def reset_counter(self) -> None:
        """A success: no consecutive failures."""
        self._failures_in_row = 0

    @property
    def shared(self) -> bool:
        """False: this state lives in this process only."""
        return False

    def async_face(self) -> AsyncFailoverStorage:
        """The asyncio face of this state: it calls this object directly (no I/O)."""
        return AsyncFailoverStorage(self)

    def admit(self, now: float, rules: Rules) -> Admission:
        """Decide whether a call may go out now (closed: no lock taken)."""
        # Reading the state without the lock is deliberate: a call that slips through
        # as the breaker opens is the same as one that started a moment earlier.
        if self._current == STATE_CLOSED:
            return ADMITTED
        with self._lock:
            state = self.state
            transition = None
            if state == STATE_CLOSED:
                return ADMITTED
            if state == STATE_OPEN:
                if now < self._open_until:
                    return Admission(
                        allowed=False, state=STATE_OPEN, retry_after=self._open_until - now
                    )
                self._enter_half_open(now)
                transition = Transition(old=STATE_OPEN, new=STATE_HALF_OPEN)
            if self._probes >= rules.half_open_probes:
                if now - self._half_open_at < rules.break_duration:
                    return Admission(
                        allowed=False,
                        state=STATE_HALF_OPEN,
                        retry_after=rules.probe_retry_after,
                        transition=transition,
                    )
                self._enter_half_open(now)  # the probes never reported back: new ones
            self._probes += 1
            return Admission(
                allowed=True, probe=True, state=STATE_HALF_OPEN, transition=transition
            )

    def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """Count an outcome; open or close the breaker when the rules say so."""
        if not (failed or probe or slow):
            self.record_success(now, rules)  # the common answer: only counted
            return None
        with self._lock:
            if failed:
                self.increment_counter()
            else:
                self.reset_counter()
            state = self.state
            if probe and state == STATE_HALF_OPEN:
                if failed or (slow and rules.slow_call_ratio is not None):
                    self._open(now, rules)
                    return Transition(old=STATE_HALF_OPEN, new=STATE_OPEN)
                self.increment_success_counter()
                if self.success_counter >= rules.half_open_probes:
                    self.state = STATE_CLOSED
                    self.reset_success_counter()
                    self._probes = 0
                    self._window.clear()
                    return Transition(old=STATE_HALF_OPEN, new=STATE_CLOSED)
                return None
            if state != STATE_CLOSED:
                return None  # sent before the breaker opened: old news
            bucket = rules.bucket(now)
            self._window.add(bucket, failed, slow)
            if not failed and not slow:
                return None  # a fast success never trips the breaker: no need to count
            calls, failures, slow_calls = self._window.counts(bucket)
            if rules.trips(calls, failures, slow_calls):
                self._open(now, rules)
                return Transition(
                    old=STATE_CLOSED,
                    new=STATE_OPEN,
                    calls=calls,
                    failures=failures,
                    slow_calls=slow_calls,
                )
            return None

    def record_success(self, now: float, rules: Rules) -> None:
        """Count a fast success outside a probe: it opens and closes nothing.

        `record` with ``failed``, ``probe`` and ``slow`` all False, in one short step
        (the breaker calls it for most answers).
        """
        lock = self._lock
        lock.acquire()  # by hand: a ``with`` costs as much again, on every answer
        try:
            self._failures_in_row = 0  # `reset_counter`, `state` and `rules.bucket`, inline
            if self._current == STATE_CLOSED:
                self._window.add(math.floor(now / rules.bucket_width), False)
        finally:
            lock.release()

    def release(self, now: float, *, probe: bool) -> None:
        """Give back a probe permit (nothing to do for an ordinary call)."""
        if not probe:
            return
        with self._lock:
            if self.state == STATE_HALF_OPEN and self._probes > 0:
                self._probes -= 1

    def read(self, now: float, rules: Rules) -> StoredState:
        """The state and the window's counts."""
        with self._lock:
            calls, failures, slow_calls = self._window.counts(rules.bucket(now))
            state = self.state
            return StoredState(
                state=state,
                calls=calls,
                failures=failures,
                slow_calls=slow_calls,
                retry_after=max(0.0, self._open_until - now) if state == STATE_OPEN else None,
                probes_in_flight=self._probes if state == STATE_HALF_OPEN else 0,
            )

    def _open(self, now: float, rules: Rules) -> None:
        self.state = STATE_OPEN
        self._open_until = now + rules.break_duration
        self.reset_success_counter()
        self._probes = 0
        self._window.clear()

    def _enter_half_open(self, now: float) -> None:
        self.state = STATE_HALF_OPEN
        self.reset_success_counter()
        self._probes = 0
        self._half_open_at = now


# -- redis ----------------------------------------------------------------------------

# KEYS: state, open_until, opened_at, probes, half_open_at, success_counter
# ARGV: now, break_duration, half_open_probes, ttl (ms)
# -> {state, allowed (0/1), probe (0/1), retry_after ('' = the probe wait), changed (0/1)}
_ADMIT = """
local state = redis.call('GET', KEYS[1])
if state == false or state == 'closed' then return {'closed', 1, 0, '0', 0} end
local function touch()
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
end
local now = tonumber(ARGV[1])
local pause = tonumber(ARGV[2])
local changed = 0
if state == 'open' then
  local open_until = tonumber(redis.call('GET', KEYS[2]) or '')
  if open_until == nil then
    open_until = (tonumber(redis.call('GET', KEYS[3]) or '') or 0) + pause
  end
  if now < open_until then return {'open', 0, 0, tostring(open_until - now), 0} end
  redis.call('SET', KEYS[1], 'half-open')
  redis.call('SET', KEYS[4], 0)
  redis.call('SET', KEYS[5], ARGV[1])
  redis.call('SET', KEYS[6], 0)
  changed = 1
  touch()
elseif state ~= 'half-open' then
  return {state, 1, 0, '0', 0}
end
local probes = tonumber(redis.call('GET', KEYS[4]) or '') or 0
if probes >= tonumber(ARGV[3]) then
  local since = tonumber(redis.call('GET', KEYS[5]) or '') or 0
  if now - since < pause then return {'half-open', 0, 0, '', changed} end
  redis.call('SET', KEYS[4], 0)
  redis.call('SET', KEYS[5], ARGV[1])
  redis.call('SET', KEYS[6], 0)
end
redis.call('INCR', KEYS[4])
touch()
return {'half-open', 1, 1, '0', changed}
"""

# KEYS: state, open_until, opened_at, probes, success_counter, fail_counter, window
# ARGV: now, failed, probe, bucket, oldest bucket, minimum_calls, failure_ratio,
#       open_until if it opens now, half_open_probes, window ttl (ms), keys ttl (ms),
#       slow (0/1), slow_call_ratio ('' = slow calls do not count)
# -> {} or {old, new, calls, failures, slow calls}
_RECORD = """
local state = redis.call('GET', KEYS[1]) or 'closed'
local failed = ARGV[2] == '1'
local slow_ratio = tonumber(ARGV[13])
local slow = ARGV[12] == '1' and slow_ratio ~= nil
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[11]) end
local function trip()
  redis.call('SET', KEYS[1], 'open')
  redis.call('SET', KEYS[2], ARGV[8])
  redis.call('SET', KEYS[3], math.floor(tonumber(ARGV[1])))
  redis.call('SET', KEYS[5], 0)
  redis.call('DEL', KEYS[4], KEYS[7])
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[11]) end
end
if failed then redis.call('INCR', KEYS[6]) else redis.call('SET', KEYS[6], 0) end
redis.call('PEXPIRE', KEYS[6], ARGV[11])
if ARGV[3] == '1' and state == 'half-open' then
  if failed or slow then
    trip()
    return {'half-open', 'open', '', '', ''}
  end
  redis.call('INCR', KEYS[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[11])
  if tonumber(redis.call('GET', KEYS[5])) >= tonumber(ARGV[9]) then
    redis.call('SET', KEYS[1], 'closed')
    redis.call('SET', KEYS[5], 0)
    redis.call('DEL', KEYS[4], KEYS[7])
    return {'half-open', 'closed', '', '', ''}
  end
  return {}
end
if state ~= 'closed' then return {} end
local bucket = ARGV[4]
redis.call('HINCRBY', KEYS[7], bucket .. ':c', 1)
if failed then redis.call('HINCRBY', KEYS[7], bucket .. ':f', 1) end
if slow then redis.call('HINCRBY', KEYS[7], bucket .. ':s', 1) end
redis.call('PEXPIRE', KEYS[7], ARGV[10])
local oldest = tonumber(ARGV[5])
local fields = redis.call('HGETALL', KEYS[7])
local calls, failures, slow_calls = 0, 0, 0
for i = 1, #fields, 2 do
  local name = fields[i]
  local id = tonumber(string.sub(name, 1, -3))
  local kind = string.sub(name, -1)
  if id == nil or id < oldest then
    redis.call('HDEL', KEYS[7], name)
  elseif kind == 'c' then
    calls = calls + tonumber(fields[i + 1])
  elseif kind == 's' then
    slow_calls = slow_calls + tonumber(fields[i + 1])
  else
    failures = failures + tonumber(fields[i + 1])
  end
end
if calls >= tonumber(ARGV[6]) and (
  (failed and failures / calls >= tonumber(ARGV[7]))
  or (slow and slow_calls / calls >= slow_ratio)
) then
  trip()
  return {'closed', 'open', tostring(calls), tostring(failures), tostring(slow_calls)}
end
return {}
"""

# KEYS: state, probes
_RELEASE = """
-- (the probes key keeps the expiry its admit step gave it)
if redis.call('GET', KEYS[1]) == 'half-open' then
  if (tonumber(redis.call('GET', KEYS[2]) or '') or 0) > 0 then redis.call('DECR', KEYS[2]) end
end
return 0
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- what both Redis faces send and parse ---------------------------------------------
#
# The sync storage (`RedisBreakerStorage`, redis-py's client) and the async one
# (`AsyncRedisBreakerStorage`, redis-py's asyncio client) run the same scripts on the
# same keys; only the round trip differs. So what goes into a script and what comes
# out of it are plain functions that both call.

#: The keys pybreaker's storage creates when it is built, and their initial values.
_INITIAL = (("fail_counter", "0"), ("success_counter", "0"), ("state", STATE_CLOSED))


@dataclass(frozen=True, slots=True)
class _Keys:
    """The Redis keys of one breaker, in the order each script takes them."""

    admit: list[str]
    record: list[str]
    release: list[str]
    read: list[str]
    window: str
    initial: dict[str, str]

    @classmethod
    def of(cls, namespace: str) -> _Keys:
        """The keys under ``<namespace>:pybreaker:`` (pybreaker's own layout)."""

        def key(name: str) -> str:
            return f"{namespace}:{pybreaker.CircuitRedisStorage.BASE_NAMESPACE}:{name}"

        admit = ("state", "open_until", "opened_at", "probes", "half_open_at", "success_counter")
        record = (
            "state",
            "open_until",
            "opened_at",
            "probes",
            "success_counter",
            "fail_counter",
            "window",
        )
        return cls(
            admit=[key(n) for n in admit],
            record=[key(n) for n in record],
            release=[key("state"), key("probes")],
            read=[key(n) for n in ("state", "open_until", "opened_at", "probes")],
            window=key("window"),
            initial={key(n): value for n, value in _INITIAL},
        )


def _admit_args(now: float, rules: Rules) -> list[str | int]:
    return [repr(now), repr(rules.break_duration), rules.half_open_probes, rules.ttl_ms]


def _admission(raw: list[object], rules: Rules) -> Admission:
    """The `Admission` that the admit script's answer means."""
    state, allowed, probe, wait, changed = (_text(item) for item in raw)
    transition = Transition(old=STATE_OPEN, new=STATE_HALF_OPEN) if changed == "1" else None
    if state == STATE_CLOSED and transition is None:
        return ADMITTED
    return Admission(
        allowed=allowed == "1",
        probe=probe == "1",
        state=state,
        retry_after=(
            rules.probe_retry_after
            if wait == ""
            else min(rules.break_duration, max(0.0, float(wait)))  # a bound on the hint
        ),
        transition=transition,
    )


def _record_args(
    now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
) -> list[str | int]:
    bucket = rules.bucket(now)
    return [
        repr(now),
        "1" if failed else "0",
        "1" if probe else "0",
        bucket,
        bucket - rules.buckets + 1,
        rules.minimum_calls,
        repr(rules.failure_ratio),
        repr(now + rules.break_duration),
        rules.half_open_probes,
        max(1000, math.ceil(rules.window * 2000)),
        rules.ttl_ms,
        "1" if slow else "0",
        "" if rules.slow_call_ratio is None else repr(rules.slow_call_ratio),
    ]


def _transition(raw: list[object]) -> Transition | None:
    """The `Transition` that the record script's answer means (None: no change)."""
    if not raw:
        return None
    old, new, calls, failures, slow_calls = (_text(item) for item in raw)
    return Transition(
        old=old,
        new=new,
        calls=int(calls) if calls else None,
        failures=int(failures) if failures else None,
        slow_calls=int(slow_calls) if slow_calls else None,
    )


def _stored_state(
    values: list[object], fields: dict[object, object], now: float, rules: Rules
) -> StoredState:
    """The `StoredState` from an MGET of the read keys and an HGETALL of the window."""
    state_raw, open_until_raw, opened_at_raw, probes_raw = values
    state = _text(state_raw) if state_raw is not None else STATE_CLOSED
    retry_after = None
    if state == STATE_OPEN:
        if open_until_raw is not None:
            open_until = float(_text(open_until_raw))
        else:
            opened_at = float(_text(opened_at_raw)) if opened_at_raw is not None else 0.0
            open_until = opened_at + rules.break_duration
        retry_after = min(rules.break_duration, max(0.0, open_until - now))
    calls, failures, slow_calls = _window_counts(fields, rules.bucket(now) - rules.buckets + 1)
    return StoredState(
        state=state,
        calls=calls,
        failures=failures,
        slow_calls=slow_calls,
        retry_after=retry_after,
        probes_in_flight=(
            int(_text(probes_raw)) if state == STATE_HALF_OPEN and probes_raw is not None else 0
        ),
    )


def _window_counts(fields: dict[object, object], oldest: int) -> tuple[int, int, int]:
    """Calls, failures and slow calls in the window hash's buckets from `oldest` on."""
    counts = {"c": 0, "f": 0, "s": 0}
    for name_raw, count_raw in fields.items():
        ident, _, kind = _text(name_raw).rpartition(":")
        if not ident.lstrip("-").isdigit() or int(ident) < oldest or kind not in counts:
            continue
        counts[kind] += int(_text(count_raw))
    return counts["c"], counts["f"], counts["s"]


class RedisBreakerStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's `CircuitRedisStorage`, with the atomic steps as Lua scripts.

    The state, ``opened_at`` (whole seconds, as pybreaker writes it), ``fail_counter``
    (consecutive failures) and ``success_counter`` stay in pybreaker's keys, so a plain
    `pybreaker.CircuitBreaker` on the same namespace sees the same state. Next to them:
    ``open_until`` (exact), ``probes`` (permits handed out), ``half_open_at`` and
    ``window`` (a hash of bucketed counts). `now` is the pipeline clock's ``time()``, so
    that processes on different hosts agree on it.

    Unlike pybreaker's own methods, which log and swallow `redis.RedisError`, these
    steps raise it, so that `FailoverStorage` can fall back to local state.

    Args:
        client: a `redis.Redis` client.
        namespace: the prefix of this breaker's keys; it should contain a ``{hash
            tag}`` so that all of them live in one Redis Cluster slot.
    """

    def __init__(self, client: Redis, namespace: str, ttl_ms: int = 60_000) -> None:
        super().__init__(STATE_CLOSED, client, namespace=namespace)  # SETNX the initial state
        client.pexpire(f"{namespace}:{self.BASE_NAMESPACE}:state", ttl_ms)
        self._keys = _Keys.of(namespace)
        self._client = client
        self._admit_script, self._record_script, self._release_script = (
            client.register_script(script) for script in (_ADMIT, _RECORD, _RELEASE)
        )

    @property
    def shared(self) -> bool:
        """True: the state lives in Redis."""
        return True

    def admit(self, now: float, rules: Rules) -> Admission:
        """Decide whether a call may go out now (one round trip)."""
        raw = self._admit_script(keys=self._keys.admit, args=_admit_args(now, rules))
        return _admission(raw, rules)

    def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """Count an outcome; open or close the breaker when the rules say so (one round trip)."""
        args = _record_args(now, rules, failed=failed, probe=probe, slow=slow)
        return _transition(self._record_script(keys=self._keys.record, args=args))

    def release(self, now: float, *, probe: bool) -> None:
        """Give back a probe permit (nothing to do for an ordinary call)."""
        if probe:
            self._release_script(keys=self._keys.release, args=[])

    def read(self, now: float, rules: Rules) -> StoredState:
        """The state and the window's counts (one pipelined round trip)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.mget(self._keys.read)
        pipe.hgetall(self._keys.window)
        values, fields = pipe.execute()
        return _stored_state(values, fields, now, rules)


# -- failover -------------------------------------------------------------------------


_T = TypeVar("_T")


class FailoverStorage:
    """Redis storage for one key, with a memory storage to fall back on.

    The Redis storage is built on first use (it writes pybreaker's initial keys), so
    building this object does no I/O. A Redis error never fails a call: the step runs
    on the fallback instead. The fallback is used with the same `now` (wall-clock
    time), and its state is not merged back when Redis returns.
    """

    def __init__(
        self, link: RedisLink, namespace: str, buckets: int, ttl_ms: int = 60_000
    ) -> None:
        self._link = link
        self._namespace = namespace
        self._ttl_ms = ttl_ms
        self._redis: RedisBreakerStorage | None = None
        self._async: AsyncFailoverStorage | None = None
        self.fallback = MemoryBreakerStorage(buckets)

    @property
    def shared(self) -> bool:
        """True: the state lives in Redis (while Redis works)."""
        return True

    def async_face(self) -> AsyncFailoverStorage:
        """The asyncio face of this key's state: the same keys, link and fallback."""
        if self._async is None:  # a race makes two equal faces: harmless
            self._async = AsyncFailoverStorage(
                self.fallback, self._link, self._namespace, self._ttl_ms
            )
        return self._async

    def _run(self, now: float, step: Callable[[BreakerStorage], _T]) -> _T:
        return self._link.run(now, lambda: step(self._shared()), lambda: step(self.fallback))

    def _shared(self) -> RedisBreakerStorage:
        if self._redis is None:  # built on first use: it writes pybreaker's initial keys
            self._redis = RedisBreakerStorage(self._link.client, self._namespace, self._ttl_ms)
        return self._redis

    def admit(self, now: float, rules: Rules) -> Admission:
        """`admit` on Redis, or on the fallback when Redis fails."""
        return self._run(now, lambda storage: storage.admit(now, rules))

    def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """`record` on Redis, or on the fallback when Redis fails."""
        return self._run(
            now, lambda storage: storage.record(now, rules, failed=failed, probe=probe, slow=slow)
        )

    def release(self, now: float, *, probe: bool) -> None:
        """`release` on Redis, or on the fallback when Redis fails."""
        if probe:
            self._run(now, lambda storage: storage.release(now, probe=probe))

    def read(self, now: float, rules: Rules) -> StoredState:
        """`read` on Redis, or on the fallback when Redis fails."""
        return self._run(now, lambda storage: storage.read(now, rules))


# -- asyncio --------------------------------------------------------------------------


class AsyncBreakerStorage(Protocol):
    """`BreakerStorage` for the async driver: the same steps, awaited."""

    @property
    def shared(self) -> bool:
        """Whether the state is shared between processes (wall-clock time is used)."""
        ...

    async def admit(self, now: float, rules: Rules) -> Admission:
        """Decide whether a call may go out now."""
        ...

    async def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """Count an outcome; return the transition it caused, if any."""
        ...

    async def release(self, now: float, *, probe: bool) -> None:
        """Give back the permit of a call whose outcome does not count."""
        ...

    async def read(self, now: float, rules: Rules) -> StoredState:
        """The state and the window's counts."""
        ...


class AsyncRedisBreakerStorage:
    """`RedisBreakerStorage` on redis-py's asyncio client: same keys, same scripts.

    Each step sends what the sync storage sends and parses the answer with the same
    functions (`_admit_args`, `_admission`, ...), so the two faces cannot drift. The
    scripts are registered from the module's Lua text (``EVALSHA``, loaded on first
    use), and pybreaker's initial keys are written (``SET NX``, as pybreaker's
    constructor does) before the first step, which is when the sync storage writes
    them too.

    Args:
        client: a `redis.asyncio.Redis` client.
        namespace: the prefix of this breaker's keys (see `RedisBreakerStorage`).
        ttl_ms: the expiry given to the state key when it is created.
    """

    def __init__(self, client: AsyncRedis, namespace: str, ttl_ms: int = 60_000) -> None:
        self._client = client
        self._keys = _Keys.of(namespace)
        self._ttl_ms = ttl_ms
        self._ready = False
        self._admit_script, self._record_script, self._release_script = (
            client.register_script(script) for script in (_ADMIT, _RECORD, _RELEASE)
        )

    @property
    def shared(self) -> bool:
        """True: the state lives in Redis."""
        return True

    async def _initialise(self) -> None:
        if self._ready:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, value in self._keys.initial.items():
            pipe.set(key, value, nx=True)
        pipe.pexpire(self._keys.read[0], self._ttl_ms)
        await pipe.execute()
        self._ready = True

    async def admit(self, now: float, rules: Rules) -> Admission:
        """Decide whether a call may go out now (one round trip)."""
        await self._initialise()
        raw = await self._admit_script(keys=self._keys.admit, args=_admit_args(now, rules))
        return _admission(raw, rules)

    async def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """Count an outcome; open or close the breaker when the rules say so."""
        await self._initialise()
        args = _record_args(now, rules, failed=failed, probe=probe, slow=slow)
        return _transition(await self._record_script(keys=self._keys.record, args=args))

    async def release(self, now: float, *, probe: bool) -> None:
        """Give back a probe permit (nothing to do for an ordinary call)."""
        if probe:
            await self._release_script(keys=self._keys.release, args=[])

    async def read(self, now: float, rules: Rules) -> StoredState:
        """The state and the window's counts (one pipelined round trip)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.mget(self._keys.read)
        pipe.hgetall(self._keys.window)
        values, fields = await pipe.execute()
        return _stored_state(values, fields, now, rules)


class AsyncFailoverStorage(AsyncFailover[AsyncRedisBreakerStorage, MemoryBreakerStorage]):
    """The async face of one key's breaker state: Redis, or the local fallback.

    It shares everything but the client with the sync `FailoverStorage` of the same
    key: the `RedisLink` (so a Redis failure seen on either face sends both to the
    fallback, and a success on either brings both back), the namespace (the same keys
    and scripts), and the fallback itself, the *same* `MemoryBreakerStorage` object,
    which the async face calls directly: memory steps take a short lock and do no I/O,
    so they never block the event loop for long. Without a link (a breaker without
    Redis) every step runs on that memory storage.

    Each Redis step is bounded by the link's ``timeout`` (``redis_timeout``): a frozen
    Redis costs an async caller at most that once, then the fallback for a few seconds.

    Args:
        fallback: the memory storage that the sync face uses too.
        link: the policy's Redis link, or None for memory state only.
        namespace: the prefix of the key's Redis keys.
        ttl_ms: the expiry of the state key when the async face creates it.
    """

    def __init__(
        self,
        fallback: MemoryBreakerStorage,
        link: RedisLink | None = None,
        namespace: str = "",
        ttl_ms: int = 60_000,
    ) -> None:
        super().__init__(
            fallback, link, lambda client: AsyncRedisBreakerStorage(client, namespace, ttl_ms)
        )

    async def admit(self, now: float, rules: Rules) -> Admission:
        """`admit` on Redis, or on the fallback when Redis fails."""
        return await self._run(
            now, lambda redis: redis.admit(now, rules), lambda local: local.admit(now, rules)
        )

    async def record(
        self, now: float, rules: Rules, *, failed: bool, probe: bool, slow: bool = False
    ) -> Transition | None:
        """`record` on Redis, or on the fallback when Redis fails."""
        return await self._run(
            now,
            lambda redis: redis.record(now, rules, failed=failed, probe=probe, slow=slow),
            lambda local: local.record(now, rules, failed=failed, probe=probe, slow=slow),
        )

    async def release(self, now: float, *, probe: bool) -> None:
        """`release` on Redis, or on the fallback when Redis fails."""
        if probe:
            await self._run(
                now,
                lambda redis: redis.release(now, probe=probe),
                lambda local: local.release(now, probe=probe),
            )

    async def read(self, now: float, rules: Rules) -> StoredState:
        """`read` on Redis, or on the fallback when Redis fails."""
        return await self._run(
            now, lambda redis: redis.read(now, rules), lambda local: local.read(now, rules)
        )

"""The asyncio face of the circuit breaker's state, against a real redis-server.

`CircuitBreaker._async_storage(key)` is what the async driver will step: the same keys
and Lua scripts as the sync face through redis-py's asyncio client, one `RedisLink`
health for both faces, and the same memory fallback object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
import redis
import redis.asyncio

from requests_resilience import CircuitBreaker, ConfigurationError
from requests_resilience._breaker_storage import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    AsyncBreakerStorage,
    BreakerStorage,
    FailoverStorage,
    Rules,
)
from requests_resilience._redis import REDIS_RETRY_INTERVAL
from tests.integration.conftest import RedisServer, _free_port
from tests.storage_faces import TwoFaces

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

KEY = "https://api.example.com:443"


class Faces(TwoFaces):
    """One breaker key seen through its sync and its async face."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker._link)
        self.sync: BreakerStorage = breaker._cells.get(KEY).storage
        self.aio: AsyncBreakerStorage = breaker._async_storage(KEY)
        self.rules: Rules = breaker._settings.rules


def _breaker(url: str | None, **options: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {
        "minimum_calls": 2,
        "failure_ratio": 0.5,
        "break_duration": 10,
        "window": 10,
        "redis_url": url,
        **options,
    }
    return CircuitBreaker(**settings)


@pytest.fixture
async def faces(redis_server: RedisServer) -> AsyncIterator[Faces]:
    """A Redis-backed breaker's two faces for `KEY`; its asyncio client closed after."""
    pair = Faces(_breaker(redis_server.url, redis_timeout=0.2))
    yield pair
    await pair.close()


async def test_a_breaker_opened_through_the_sync_face_refuses_async_callers(
    faces: Faces,
) -> None:
    """Two failures recorded sync trip the breaker; the async admit is refused, wait <= 10 s."""
    for _ in range(2):
        transition = faces.sync.record(faces.now(), faces.rules, failed=True, probe=False)
    assert transition is not None
    assert (transition.old, transition.new) == (STATE_CLOSED, STATE_OPEN)
    admission = await faces.aio.admit(faces.now(), faces.rules)
    assert not admission.allowed
    assert admission.state == STATE_OPEN
    assert 0.0 < admission.retry_after <= 10.0


async def test_a_breaker_opened_async_refuses_sync_callers_and_one_probe_closes_it(
    faces: Faces,
) -> None:
    """Trip async; sync refused; after the break one async probe, sync waits; success closes."""
    for failed in (True, True):
        await faces.aio.admit(faces.now(), faces.rules)
        transition = await faces.aio.record(faces.now(), faces.rules, failed=failed, probe=False)
    assert transition is not None
    assert transition.new == STATE_OPEN
    assert (transition.calls, transition.failures) == (2, 2)
    assert not faces.sync.admit(faces.now(), faces.rules).allowed

    faces.clock.advance(10)
    probe = await faces.aio.admit(faces.now(), faces.rules)
    assert probe.allowed
    assert probe.probe
    assert probe.transition is not None
    assert probe.transition.new == STATE_HALF_OPEN
    second = faces.sync.admit(faces.now(), faces.rules)  # the one permit is out
    assert not second.allowed
    assert second.retry_after == faces.rules.probe_retry_after
    assert faces.sync.read(faces.now(), faces.rules).probes_in_flight == 1

    closed = await faces.aio.record(faces.now(), faces.rules, failed=False, probe=True)
    assert closed is not None
    assert closed.new == STATE_CLOSED
    assert faces.sync.read(faces.now(), faces.rules).state == STATE_CLOSED
    assert (await faces.aio.read(faces.now(), faces.rules)).state == STATE_CLOSED


async def test_a_probe_released_async_is_given_back_for_sync_callers(faces: Faces) -> None:
    """A half-open probe released on the async face frees the permit for the sync face."""
    for _ in range(2):
        faces.sync.record(faces.now(), faces.rules, failed=True, probe=False)
    faces.clock.advance(10)
    assert (await faces.aio.admit(faces.now(), faces.rules)).probe
    await faces.aio.release(faces.now(), probe=True)
    assert faces.sync.admit(faces.now(), faces.rules).probe


async def _steps_async(face: AsyncBreakerStorage, rules: Rules, now: float) -> None:
    await face.admit(now, rules)
    await face.record(now, rules, failed=True, probe=False)
    await face.record(now, rules, failed=True, probe=False)
    await face.admit(now, rules)


def _steps_sync(face: BreakerStorage, rules: Rules, now: float) -> None:
    face.admit(now, rules)
    face.record(now, rules, failed=True, probe=False)
    face.record(now, rules, failed=True, probe=False)
    face.admit(now, rules)


async def test_both_faces_write_the_same_keys_all_with_a_ttl(redis_server: RedisServer) -> None:
    """The same steps, sync under one name and async under another: same keys, all expire."""
    sync_side = Faces(_breaker(redis_server.url, name="sync"))
    async_side = Faces(_breaker(redis_server.url, name="async"))
    try:
        _steps_sync(sync_side.sync, sync_side.rules, sync_side.now())
        await _steps_async(async_side.aio, async_side.rules, async_side.now())
        assert async_side.sync.read(async_side.now(), async_side.rules).state == STATE_OPEN
    finally:
        await sync_side.close()
        await async_side.close()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        prefix = "requests_resilience:breaker"
        fields: dict[str, dict[str, int]] = {"sync": {}, "async": {}}
        for key in client.scan_iter(match=f"{prefix}:*"):
            name, _, rest = key.removeprefix(f"{prefix}:").partition(":")
            fields[name][rest] = client.pttl(key)
    finally:
        client.close()
    assert sorted(fields["async"]) == sorted(fields["sync"])
    assert {rest.rpartition(":")[2] for rest in fields["sync"]} == {
        "fail_counter",
        "open_until",
        "opened_at",
        "state",
        "success_counter",
    }
    ttl_ms = sync_side.rules.ttl_ms
    for name in ("sync", "async"):
        assert all(0 < ttl <= ttl_ms for ttl in fields[name].values()), fields[name]


async def test_an_async_client_given_is_used_and_the_sync_face_is_built_from_it(
    redis_server: RedisServer,
) -> None:
    """async_redis alone: the async face uses it; the sync face's twin shares the state."""
    client = redis.asyncio.Redis(port=redis_server.port)
    try:
        breaker = CircuitBreaker(minimum_calls=1, async_redis=client)
        pair = Faces(breaker)
        assert pair.link.async_client is client
        await pair.aio.record(pair.now(), pair.rules, failed=True, probe=False)
        assert pair.sync.read(pair.now(), pair.rules).state == STATE_OPEN
        assert pair.link.client.connection_pool.connection_kwargs["port"] == redis_server.port
        pair.link.client.close()
    finally:
        await client.aclose()


async def test_the_async_client_is_built_from_a_sync_client_on_first_async_use(
    redis_server: RedisServer,
) -> None:
    """redis_client=redis.Redis(...): no asyncio client until the async face takes a step."""
    sync_client = redis.Redis(port=redis_server.port, db=2, socket_timeout=0.3)
    pair = Faces(CircuitBreaker(minimum_calls=1, redis_client=sync_client))
    try:
        assert pair.link._made == {}
        pair.sync.record(pair.now(), pair.rules, failed=True, probe=False)
        assert not (await pair.aio.admit(pair.now(), pair.rules)).allowed
        made = pair.link.async_client
        assert isinstance(made, redis.asyncio.Redis)
        kwargs = made.connection_pool.connection_kwargs
        assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (
            redis_server.port,
            2,
            0.3,
        )
    finally:
        await pair.close()
        sync_client.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"async_redis": object()}, "async_redis must be a redis.asyncio.Redis", id="object"
        ),
        pytest.param(
            {"async_redis": redis.Redis()}, "async_redis must be a redis.asyncio.Redis", id="sync"
        ),
        pytest.param(
            {"redis_client": redis.asyncio.Redis()},
            "pass an asyncio client as async_redis=",
            id="asyncio-as-redis_client",
        ),
    ],
)
def test_a_client_of_the_wrong_flavour_is_refused(options: dict[str, Any], message: str) -> None:
    """A non-client, or a sync/asyncio client in the other's place: ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        CircuitBreaker(**options)


async def test_on_a_dead_redis_the_async_face_uses_the_sync_face_s_fallback_then_recovers(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """Server stopped: both faces share one local state (one warning); restarted: Redis again."""
    pair = Faces(_breaker(redis_server.url, redis_timeout=0.2))
    try:
        assert (await pair.aio.admit(pair.now(), pair.rules)).allowed  # warm: Redis answers
        redis_server.stop()
        for _ in range(2):
            await pair.aio.record(pair.now(), pair.rules, failed=True, probe=False)
        assert isinstance(pair.sync, FailoverStorage)
        assert pair.sync.fallback.state == STATE_OPEN  # the same memory object
        assert not pair.sync.admit(pair.now(), pair.rules).allowed
        assert not pair.link.usable(pair.now())
        lost = [e for e in logs if e["event"] == "circuit_breaker_redis_unavailable"]
        assert len(lost) == 1

        redis_server.start()
        pair.clock.advance(REDIS_RETRY_INTERVAL)
        admission = await pair.aio.admit(pair.now(), pair.rules)
        assert admission.allowed  # the fresh Redis holds a closed breaker
        assert [e["event"] for e in logs].count("circuit_breaker_redis_recovered") == 1
        assert pair.sync.read(pair.now(), pair.rules).state == STATE_CLOSED
    finally:
        await pair.close()


async def test_a_closed_port_falls_back_at_once_for_both_faces() -> None:
    """Nothing listens: the async step falls back, and the sync face skips Redis too."""
    pair = Faces(_breaker(f"redis://127.0.0.1:{_free_port()}/0", minimum_calls=1))
    try:
        await pair.aio.record(pair.now(), pair.rules, failed=True, probe=False)
        assert not pair.link.usable(pair.now())
        assert pair.sync.read(pair.now(), pair.rules).state == STATE_OPEN
    finally:
        await pair.close()


@contextlib.asynccontextmanager
async def _frozen(server: RedisServer, redis_timeout: float) -> AsyncIterator[Faces]:
    """Faces on an asyncio client without socket timeouts, warmed, then the server frozen."""
    client = redis.asyncio.Redis(port=server.port, socket_timeout=None)
    pair = Faces(_breaker(server.url, redis_timeout=redis_timeout, async_redis=client))
    try:
        assert (await pair.aio.admit(pair.now(), pair.rules)).allowed  # warm
        server.freeze()
        yield pair
    finally:
        server.thaw()
        pair.link.client.close()
        await client.aclose()


async def test_a_frozen_redis_costs_an_async_caller_one_redis_timeout(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """SIGSTOP'd, client without socket timeout: the first step < 2 s, then no Redis at all."""
    async with _frozen(redis_server, redis_timeout=0.2) as pair:
        assert (await pair.aio.admit(pair.now(), pair.rules)).allowed
        for _ in range(10):
            await pair.aio.record(pair.now(), pair.rules, failed=False, probe=False)
    lost = [e for e in logs if e["event"] == "circuit_breaker_redis_unavailable"]
    assert len(lost) == 1
    assert "TimeoutError" in lost[0]["error"]


async def test_a_cancelled_async_step_is_not_a_redis_failure(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """Cancelling a step stuck on a frozen Redis raises CancelledError; the link stays up."""
    async with _frozen(redis_server, redis_timeout=30) as pair:
        task = asyncio.ensure_future(pair.aio.admit(pair.now(), pair.rules))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pair.link.usable(pair.now())
    assert not [e for e in logs if e["event"].endswith("_redis_unavailable")]


async def test_without_redis_the_async_face_steps_the_sync_face_s_memory_state() -> None:
    """No Redis: a trip recorded async is the sync face's state (one memory object)."""
    breaker = CircuitBreaker(minimum_calls=1)
    pair = Faces(breaker)
    assert not pair.aio.shared
    now = pair.clock.monotonic()
    await pair.aio.record(now, pair.rules, failed=True, probe=False)
    assert breaker.state(KEY) == "open"
    assert not pair.sync.admit(now, pair.rules).allowed


def test_each_event_loop_gets_its_own_asyncio_client(redis_server: RedisServer) -> None:
    """Two asyncio.run() in a row: each loop its own client, both see the same Redis state."""
    breaker = _breaker(redis_server.url, minimum_calls=1)
    pair = Faces(breaker)
    clients: list[object] = []

    async def trip() -> None:
        await pair.aio.record(pair.now(), pair.rules, failed=True, probe=False)
        clients.append(pair.link.async_client)
        await pair.link.aclose()

    async def look() -> bool:
        clients.append(pair.link.async_client)
        allowed = (await pair.aio.admit(pair.now(), pair.rules)).allowed
        await pair.link.aclose()
        return allowed

    asyncio.run(trip())
    assert asyncio.run(look()) is False
    assert clients[0] is not clients[1]
    assert pair.link.usable(pair.now())  # no step failed
    pair.link.client.close()


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_a_success_never_trips_the_breaker(redis_server: RedisServer, shared: bool) -> None:
    """One failure then one success (2 calls, ratio 0.5): closed; the next failure opens.

    Memory and Redis state decide alike: the window is judged when a failure lands.
    """
    pair = Faces(_breaker(redis_server.url if shared else None))
    try:
        first = pair.sync.record(pair.now(), pair.rules, failed=True, probe=False)
        success = await pair.aio.record(pair.now(), pair.rules, failed=False, probe=False)
        assert (first, success) == (None, None)
        assert pair.sync.read(pair.now(), pair.rules).state == STATE_CLOSED
        tripped = pair.sync.record(pair.now(), pair.rules, failed=True, probe=False)
        assert tripped is not None
        assert (tripped.new, tripped.calls, tripped.failures) == (STATE_OPEN, 3, 2)
    finally:
        await pair.close()


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
async def test_slow_calls_open_the_breaker_alike_in_memory_and_redis(
    redis_server: RedisServer, shared: bool
) -> None:
    """A fast and a slow success (ratio 0.5, minimum 2) trip it; read() counts the slow one."""
    url = redis_server.url if shared else None
    pair = Faces(_breaker(url, slow_call_duration=1.0, slow_call_ratio=0.5))
    try:
        assert pair.sync.record(pair.now(), pair.rules, failed=False, probe=False) is None
        seen = await pair.aio.read(pair.now(), pair.rules)
        assert (seen.calls, seen.failures, seen.slow_calls) == (1, 0, 0)
        tripped = await pair.aio.record(
            pair.now(), pair.rules, failed=False, probe=False, slow=True
        )
        assert tripped is not None
        assert (tripped.new, tripped.calls, tripped.failures, tripped.slow_calls) == (
            STATE_OPEN,
            2,
            0,
            1,
        )
    finally:
        await pair.close()

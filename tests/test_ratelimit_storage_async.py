"""The asyncio face of the rate limit's buckets, against a real redis-server.

`RateLimit._async_bucket(key)` is what the async driver will step: the same hash and
Lua scripts as the sync face through redis-py's asyncio client, one `RedisLink` health
for both faces, and the same `MemoryBucket` fallback object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
import redis

from requests_resilience import RateLimit
from requests_resilience._ratelimit_storage import (
    AsyncBucketStorage,
    BucketParams,
    BucketStorage,
    FailoverBucket,
)
from requests_resilience._redis import REDIS_RETRY_INTERVAL
from tests.integration.conftest import RedisServer, _free_port
from tests.storage_faces import TwoFaces

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

KEY = "tenant-1"


class Faces(TwoFaces):
    """One bucket seen through its sync and its async face."""

    def __init__(self, limit: RateLimit) -> None:
        super().__init__(limit._link)
        self.sync: BucketStorage = limit._cells.get(KEY).bucket
        self.aio: AsyncBucketStorage = limit._async_bucket(KEY)
        self.params: BucketParams = limit._settings.params


def _limit(url: str, **options: Any) -> RateLimit:
    """Two requests per 10 s with a burst of 2: the third slot is ~10 s away."""
    settings: dict[str, Any] = {"period": 10, "burst": 2, "redis_url": url, **options}
    return RateLimit(2, **settings)


@pytest.fixture
async def faces(redis_server: RedisServer) -> AsyncIterator[Faces]:
    """A Redis-backed bucket's two faces for `KEY`; its asyncio client closed after."""
    pair = Faces(_limit(redis_server.url, redis_timeout=0.2))
    yield pair
    await pair.close()


async def test_tokens_taken_async_are_gone_for_sync_callers(faces: Faces) -> None:
    """Two async reservations empty the burst; the sync one is refused, a slot ~10 s away."""
    for _ in range(2):
        reservation = await faces.aio.reserve(faces.now(), faces.params, 0.0)
        assert reservation.granted
        assert reservation.wait == 0.0
    refused = faces.sync.reserve(faces.now(), faces.params, 0.0)
    assert not refused.granted
    assert 5.0 < refused.wait <= 11.0
    assert faces.sync.read(faces.now(), faces.params).tokens < 1.0


async def test_tokens_taken_sync_are_gone_for_async_callers(faces: Faces) -> None:
    """The other way round, read through the async face too."""
    for _ in range(2):
        assert faces.sync.reserve(faces.now(), faces.params, 0.0).granted
    assert not (await faces.aio.reserve(faces.now(), faces.params, 0.0)).granted
    assert (await faces.aio.read(faces.now(), faces.params)).tokens < 1.0


async def test_a_slot_released_async_moves_the_sync_queue_up(faces: Faces) -> None:
    """Release one interval on the async face: the sync face gets the slot at once."""
    for _ in range(2):
        await faces.aio.reserve(faces.now(), faces.params, 0.0)
    await faces.aio.release(faces.now(), 1.0 / faces.params.rate)
    assert faces.sync.reserve(faces.now(), faces.params, 0.0).granted


async def test_a_throttle_and_a_pause_learnt_async_hold_sync_callers(faces: Faces) -> None:
    """A 429 with Retry-After 30 observed async: the rate drops, the sync face is paused."""
    now = faces.now()
    rate = await faces.aio.observe(
        now, faces.params, sent_at=now, throttled=True, pause_until=now + 30, ceiling=None
    )
    assert rate == pytest.approx(faces.params.rate * faces.params.beta)
    assert faces.sync.paused_for(now) == pytest.approx(30.0)
    state = faces.sync.read(now, faces.params)
    assert state.throttled_at == pytest.approx(now)
    assert await faces.aio.paused_for(now) == pytest.approx(30.0)


async def test_both_faces_write_the_same_hash_with_a_ttl(redis_server: RedisServer) -> None:
    """The same steps, sync under one name and async under another: same fields, both expire."""
    sync_side = Faces(_limit(redis_server.url, name="sync"))
    async_side = Faces(_limit(redis_server.url, name="async"))
    try:
        now = sync_side.now()
        sync_side.sync.reserve(now, sync_side.params, 0.0)
        sync_side.sync.observe(
            now, sync_side.params, sent_at=now, throttled=True, pause_until=now + 5, ceiling=1.0
        )
        await async_side.aio.reserve(now, async_side.params, 0.0)
        await async_side.aio.observe(
            now, async_side.params, sent_at=now, throttled=True, pause_until=now + 5, ceiling=1.0
        )
    finally:
        await sync_side.close()
        await async_side.close()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = sorted(client.scan_iter(match="requests_resilience:rate_limit:*"))
        fields = {key: sorted(client.hkeys(key)) for key in keys}
        ttls = {key: client.pttl(key) for key in keys}
    finally:
        client.close()
    assert keys == [
        "requests_resilience:rate_limit:async:{tenant-1}",
        "requests_resilience:rate_limit:sync:{tenant-1}",
    ]
    assert fields[keys[0]] == fields[keys[1]]
    assert fields[keys[0]] == sorted(
        ["tat", "tat_rate", "ceiling", "paused_until", "paused_at", "w_max", "throttled_at"]
    )
    assert all(0 < ttl <= sync_side.params.ttl for ttl in ttls.values()), ttls


async def test_on_a_dead_redis_both_faces_share_one_local_bucket_then_recover(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """Server stopped: both faces draw from one MemoryBucket (one warning); restarted: Redis."""
    pair = Faces(_limit(redis_server.url, redis_timeout=0.2))
    try:
        assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted  # warm
        redis_server.stop()
        for _ in range(2):
            assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted
        assert isinstance(pair.sync, FailoverBucket)
        assert not pair.sync.reserve(pair.now(), pair.params, 0.0).granted  # same bucket
        assert not pair.link.usable(pair.now())
        lost = [e for e in logs if e["event"] == "rate_limit_redis_unavailable"]
        assert len(lost) == 1

        redis_server.start()
        pair.clock.advance(REDIS_RETRY_INTERVAL)
        assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted  # a fresh hash
        assert [e["event"] for e in logs].count("rate_limit_redis_recovered") == 1
        assert (await pair.aio.read(pair.now(), pair.params)).tokens == pytest.approx(1.0)
    finally:
        await pair.close()


async def test_a_closed_port_falls_back_at_once_for_both_faces() -> None:
    """Nothing listens: the async step falls back, and the sync face skips Redis too."""
    pair = Faces(_limit(f"redis://127.0.0.1:{_free_port()}/0", burst=1))
    try:
        assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted
        assert not pair.link.usable(pair.now())
        assert not pair.sync.reserve(pair.now(), pair.params, 0.0).granted
    finally:
        await pair.close()


async def test_a_frozen_redis_costs_an_async_caller_one_redis_timeout(
    redis_server: RedisServer, logs: list[MutableMapping[str, Any]]
) -> None:
    """SIGSTOP'd: the first async step < 2 s (redis_timeout 0.2 s), the next ten < 1 s."""
    pair = Faces(_limit(redis_server.url, redis_timeout=0.2, burst=100))
    try:
        assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted  # warm
        redis_server.freeze()
        assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted
        for _ in range(10):
            assert (await pair.aio.reserve(pair.now(), pair.params, 0.0)).granted
    finally:
        redis_server.thaw()
        await pair.close()
    lost = [e for e in logs if e["event"] == "rate_limit_redis_unavailable"]
    assert len(lost) == 1
    assert "TimeoutError" in lost[0]["error"]


async def test_without_redis_the_async_face_steps_the_sync_face_s_memory_bucket() -> None:
    """No Redis: a token taken async is gone from the sync face's MemoryBucket."""
    limit = RateLimit(1, period=10, key=KEY)
    pair = Faces(limit)
    assert not pair.aio.shared
    now = pair.clock.monotonic()
    assert (await pair.aio.reserve(now, pair.params, 0.0)).granted
    assert not pair.sync.reserve(now, pair.params, 0.0).granted

"""What the policies that share state through Redis have in common.

The circuit breaker and the rate limit each keep their state in Redis when given a
``redis_url`` (or a client), and in memory otherwise. Both connect the same way (short
timeouts, one immediate retry after a broken connection but none after a timeout, the
URL's password kept out of every text) and both
degrade the same way: a Redis error never fails a call, the policy carries on with a
per-process fallback, tries Redis again after `REDIS_RETRY_INTERVAL`, and logs the loss
and the recovery once each.

Each policy has one `RedisLink` and two faces on it: the sync storages step state with
the `redis.Redis` client, the asyncio storages with a `redis.asyncio.Redis` client.
Both faces use the same keys and Lua scripts, fall back to the same per-process state,
and share the link's health: a timeout seen by an async caller sends the sync callers
to the fallback too, and the next success on either face brings both back. The asyncio
client is built on first async use (from the URL, or from the sync client's connection
settings) unless one is given, so a sync-only program never imports ``redis.asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from requests_resilience._errors import ConfigurationError
from requests_resilience._telemetry import logger

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

__all__ = [
    "REDIS_RETRY_INTERVAL",
    "AsyncFailover",
    "RedisLink",
    "connect",
    "import_redis",
    "import_redis_asyncio",
    "redacted_url",
    "twin_client",
]

#: Seconds a policy keeps to its local fallback after a Redis error before trying again.
REDIS_RETRY_INTERVAL = 5.0
#: Seconds to connect to Redis, and for each command: a call must not hang on Redis.
#: The default of the policies' ``redis_timeout`` option.
REDIS_TIMEOUT = 0.5

_log = logger
_T = TypeVar("_T")
_R = TypeVar("_R")
_F = TypeVar("_F")


def import_redis(purpose: str) -> Any:
    """Import the optional ``redis`` package, or explain how to install it.

    Args:
        purpose: what needs it, for the message (e.g. "sharing a rate limit").
    """
    try:
        import redis  # noqa: PLC0415 - an optional extra, imported when asked for
        import redis.backoff  # noqa: PLC0415
        import redis.retry  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            f"{purpose} through Redis needs the redis package: "
            "pip install 'requests-resilience[redis]'"
        )
        raise ImportError(msg) from exc
    return redis


def import_redis_asyncio() -> Any:
    """`import_redis`, with redis-py's asyncio client (for the async faces only)."""
    import_redis("sharing state with asyncio")
    import redis.asyncio  # noqa: PLC0415 - only for the async face
    import redis.asyncio.retry  # noqa: PLC0415

    return redis


def redacted_url(url: str) -> str:
    """`url` with its password replaced by ``***``: safe for reprs and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class RedisLink:
    """One Redis client shared by all the keys of a policy, and whether it works now.

    After an error every key uses its local fallback for `REDIS_RETRY_INTERVAL`
    seconds; then one call tries Redis again while the others keep to the fallback.
    The loss and the recovery are each logged once (structlog, logger
    ``requests_resilience``), not once per call, as ``{event}_redis_unavailable`` and
    ``{event}_redis_recovered``.

    The health is one state for both faces of the policy: `run` (sync, with `client`)
    and `run_async` (asyncio, with `async_client`) read and update the same
    `usable`/`failed`/`succeeded`, under a lock that is never held across I/O or an
    ``await``.

    Args:
        client: the `redis.Redis` client.
        where: the Redis location to show in logs, without its password.
        policy: the policy's name, for the logs.
        errors: the exception types that mean "Redis is unavailable".
        event: the prefix of the log events (e.g. ``"rate_limit"``).
        fallback: what the policy falls back to, for the log.
        timeout: the most seconds an async step may take before it counts as a
            failure (``redis_timeout``); asyncio can cancel a step that a frozen
            Redis never answers, whatever the client's own socket timeouts.
        async_client: the `redis.asyncio.Redis` client for the async face, if given.
        make_async: else, what builds it, called once, on first async use (by
            default `twin_client` of `client`).
    """

    def __init__(
        self,
        client: Redis,
        *,
        where: str,
        policy: str,
        errors: tuple[type[BaseException], ...],
        event: str,
        fallback: str,
        timeout: float = REDIS_TIMEOUT,
        async_client: AsyncRedis | None = None,
        make_async: Callable[[], AsyncRedis] | None = None,
    ) -> None:
        self.client = client
        self.errors = errors
        self.timeout = timeout
        self.async_errors: tuple[type[BaseException], ...] = (*errors, asyncio.TimeoutError)
        self._async_client = async_client
        self._make_async = make_async
        self._made: dict[int, tuple[asyncio.AbstractEventLoop, AsyncRedis]] = {}
        self._where = where
        self._policy = policy
        self._event = event
        self._fallback = fallback
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._logged = False

    @property
    def async_client(self) -> AsyncRedis:
        """The asyncio client for the running event loop.

        A client that was given is used as it is, from any loop (its owner chose it).
        One this link makes is made per event loop, on first use in that loop, since
        an asyncio connection belongs to the loop that opened it: a program that calls
        ``asyncio.run()`` twice, or runs loops in two threads, gets a client for each,
        and the clients of loops that have closed are dropped. Making one does no I/O
        (redis-py connects on the first command).

        Raises:
            RuntimeError: no event loop is running in this thread.
            ConfigurationError: no asyncio client was given and none can be built
                from the sync client (it is not a `redis.Redis`).
        """
        if self._async_client is not None:
            return self._async_client
        loop = asyncio.get_running_loop()
        entry = self._made.get(id(loop))
        if entry is not None and entry[0] is loop:
            return entry[1]
        with self._lock:
            for ident, (old, _) in list(self._made.items()):
                if old.is_closed():
                    del self._made[ident]
            make = self._make_async
            made = (
                make()
                if make is not None
                else twin_client(self.client, to_async=True, timeout=self.timeout)
            )
            self._made[id(loop)] = (loop, made)
        return made

    async def aclose(self) -> None:
        """Close the asyncio client this link made for the running loop, if any.

        For whoever owns the loop's lifetime (an async transport's ``aclose()``, a
        test): its connections are closed while their loop still runs. A client that
        was given is left to its owner.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._made.pop(id(loop), None)
        if entry is not None and entry[0] is loop:
            await entry[1].aclose()

    def usable(self, now: float) -> bool:
        """Whether to try Redis for a step happening at `now`."""
        if self._down_until is None:
            return True
        with self._lock:
            if self._down_until is None:
                return True
            if now < self._down_until:
                return False
            self._down_until = now + REDIS_RETRY_INTERVAL  # this caller tries; others wait
            return True

    def failed(self, now: float, error: BaseException) -> None:
        """Redis failed a step: fall back for a while, and log it if it is news."""
        with self._lock:
            self._down_until = now + REDIS_RETRY_INTERVAL
            first = not self._logged
            self._logged = True
        if first:
            _log.warning(
                f"{self._event}_redis_unavailable",
                policy=self._policy,
                redis=self._where,
                error=f"{type(error).__name__}: {error}",
                fallback=self._fallback,
                retry_in=REDIS_RETRY_INTERVAL,
            )

    def run(self, now: float, on_redis: Callable[[], _T], on_fallback: Callable[[], _T]) -> _T:
        """`on_redis()` while Redis works, else (or when it fails now) `on_fallback()`."""
        if self.usable(now):
            with self._attempt(now, self.errors):
                return on_redis()
        return on_fallback()

    async def run_async(
        self, now: float, on_redis: Callable[[], Awaitable[_T]], on_fallback: Callable[[], _T]
    ) -> _T:
        """`run` for the async face: ``await on_redis()``, bounded by `timeout`.

        `on_fallback` is a plain function: the fallback is memory state, which does no
        I/O. A cancelled caller (`asyncio.CancelledError`) is not a Redis failure: the
        cancellation goes up and the link's health is left as it was.
        """
        if self.usable(now):
            with self._attempt(now, self.async_errors):
                return await asyncio.wait_for(on_redis(), self.timeout)
        return on_fallback()

    @contextlib.contextmanager
    def _attempt(self, now: float, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
        """Around one Redis step: a success or an error in `errors` updates the health.

        An error in `errors` is swallowed (the caller goes on to its fallback); any
        other exception, and a cancellation, go up with the health left as it was.
        """
        try:
            yield
        except errors as exc:
            self.failed(now, exc)
        else:
            self.succeeded()

    def succeeded(self) -> None:
        """Redis answered a step: back to shared state, and log it if it was down."""
        if self._down_until is None and not self._logged:
            return
        with self._lock:
            was_down = self._logged
            self._down_until = None
            self._logged = False
        if was_down:
            _log.info(f"{self._event}_redis_recovered", policy=self._policy, redis=self._where)


class AsyncFailover(Generic[_R, _F]):
    """What an async face of a key's state does: step Redis, or else the local fallback.

    Subclassed by the async faces of the breaker storage and of the rate-limit bucket,
    which add the steps. Without a link every step runs on `fallback` (a memory
    storage: it does no I/O, so it is called directly). With one, a step goes through
    `RedisLink.run_async` (the health that the sync face shares, bounded by
    ``redis_timeout``) on the Redis storage that `make` builds for the link's
    asyncio client, rebuilt when that client changes (one per event loop).

    Args:
        fallback: the memory storage that the sync face of the key falls back to.
        link: the policy's Redis link, or None for memory state only.
        make: builds the Redis storage of the key on an asyncio client.
    """

    def __init__(
        self, fallback: _F, link: RedisLink | None, make: Callable[[AsyncRedis], _R]
    ) -> None:
        self.fallback = fallback
        self._link = link
        self._make = make
        self._redis: tuple[AsyncRedis, _R] | None = None

    @property
    def shared(self) -> bool:
        """Whether the state lives in Redis (while Redis works)."""
        return self._link is not None

    async def _run(
        self,
        now: float,
        on_redis: Callable[[_R], Awaitable[_T]],
        on_fallback: Callable[[_F], _T],
    ) -> _T:
        link = self._link
        if link is None:
            return on_fallback(self.fallback)
        return await link.run_async(
            now, lambda: on_redis(self._storage(link)), lambda: on_fallback(self.fallback)
        )

    def _storage(self, link: RedisLink) -> _R:
        client = link.async_client
        made = self._redis
        if made is None or made[0] is not client:
            made = self._redis = (client, self._make(client))
        return made[1]


#: Connection settings that hold objects of one flavour of redis-py (sync or asyncio)
#: and so cannot be handed to the other: the twin gets its own.
_FLAVOURED = frozenset({"retry", "maint_notifications_pool_handler", "himport_registry"})


def _client_options(redis: Any, *, to_async: bool, timeout: float) -> dict[str, Any]:
    """The options of a client this library makes: short timeouts, a single retry.

    Short timeouts and one immediate retry for a pooled connection that went stale,
    none for a timeout: redis-py's default of 10 retries with backoff, or even one
    retry of a timed-out command, would hold every call for a multiple of the timeout
    while Redis is frozen.
    """
    retry_class = redis.asyncio.retry.Retry if to_async else redis.retry.Retry
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": retry_class(
            redis.backoff.NoBackoff(), 1, supported_errors=(redis.ConnectionError,)
        ),
        "retry_on_timeout": False,
    }


def _accepted(cls: type) -> set[str]:
    """The keyword arguments that `cls` (a redis-py connection class) takes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


def twin_client(client: Any, *, to_async: bool, timeout: float = REDIS_TIMEOUT) -> Any:
    """A client of the other flavour on the same Redis: asyncio for sync, or sync for asyncio.

    The twin takes the connection settings of `client`'s pool (host and port or socket
    path, database, credentials, TLS, socket timeouts, decoding) and its connection
    class of the same name (``Connection``, ``SSLConnection``,
    ``UnixDomainSocketConnection``), with this library's retry (one immediate retry
    on a broken connection, none after a timeout), since redis-py's retry objects
    belong to one flavour.

    Args:
        client: a `redis.Redis` (for an asyncio twin) or a `redis.asyncio.Redis`.
        to_async: build a `redis.asyncio.Redis` (True) or a `redis.Redis` (False).
        timeout: the socket timeouts when `client` has none.

    Raises:
        ConfigurationError: `client` is not a redis-py client with a connection pool.
    """
    redis = import_redis_asyncio() if to_async else import_redis("sharing state")
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        flavour = "redis.asyncio.Redis" if to_async else "redis.Redis"
        msg = (
            f"cannot build a {flavour} client from {type(client).__name__}: "
            f"pass one as {'async_redis' if to_async else 'redis_client'}="
        )
        raise ConfigurationError(msg)
    module = redis.asyncio.connection if to_async else redis.connection
    name = getattr(getattr(pool, "connection_class", None), "__name__", "Connection")
    connection_class = getattr(module, name, module.Connection)
    accepted = _accepted(connection_class)
    own = {k: v for k, v in kwargs.items() if k in accepted and k not in _FLAVOURED}
    options = {**_client_options(redis, to_async=to_async, timeout=timeout), **own}
    flavour_module = redis.asyncio if to_async else redis
    new_pool = flavour_module.ConnectionPool(connection_class=connection_class, **options)
    # The twin owns its pool: closing it (``await client.aclose()``) closes the
    # connections, which an asyncio client must do before its event loop ends.
    from_pool = getattr(flavour_module.Redis, "from_pool", None)  # redis >= 5.0.1
    if from_pool is None:
        return flavour_module.Redis(connection_pool=new_pool)
    return from_pool(new_pool)


def connect(
    redis_url: str | None,
    redis_client: Redis | None,
    *,
    owner: str,
    name: str,
    event: str,
    fallback: str,
    timeout: float = REDIS_TIMEOUT,
    async_redis: AsyncRedis | None = None,
) -> tuple[RedisLink | None, str, tuple[str, ...]]:
    """The Redis link of a policy (None without Redis), where it points, its secrets.

    A Redis that stops answering (a frozen process, a partition) costs a call at most
    `timeout` per step before the policy falls back: a timed-out command is not
    retried (only a broken pooled connection is, at once), and after the failure the
    policy keeps to its local state for `REDIS_RETRY_INTERVAL`, as with a dead Redis.

    The async face's client is `async_redis` when given; else it is built on first
    async use, from `redis_url` with the same options, or from `redis_client` with
    `twin_client`. With `async_redis` alone, the sync client is its twin.

    Args:
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL, or None.
        redis_client: a ready client instead of a URL (kept with its own settings).
        owner: the policy's class name, for messages (e.g. ``"RateLimit"``).
        name: the policy's name, for the logs.
        event: the prefix of its log events.
        fallback: what it falls back to when Redis is down, for the log.
        timeout: seconds to connect and for each command, for a client made from
            `redis_url` (a client passed in keeps its own); every async step is
            bounded by it too.
        async_redis: a ready `redis.asyncio.Redis` client for the async face.

    Returns:
        The link, the location to show (``"memory"`` without Redis, the URL without
        its password with one), and the password as a secret for the redactor.

    Raises:
        ConfigurationError: both a URL and a client, a URL of another scheme, a
            client that is not a Redis client, or an asyncio client passed as
            `redis_client` (or a sync one as `async_redis`).
        ImportError: the ``redis`` extra is not installed.
    """
    if redis_url is not None and redis_client is not None:
        msg = f"{owner} takes redis_url or redis_client, not both"
        raise ConfigurationError(msg)
    if redis_url is None and redis_client is None and async_redis is None:
        return None, "memory", ()
    redis = import_redis(f"sharing {owner} state")
    _check_clients(owner, redis_client, async_redis)
    secrets: tuple[str, ...] = ()
    make_async: Callable[[], AsyncRedis] | None = None
    if redis_url is not None:
        where, secrets = _check_url(owner, redis_url)
        redis_client = redis.Redis.from_url(
            redis_url, **_client_options(redis, to_async=False, timeout=timeout)
        )
        if async_redis is None:
            url = redis_url

            def make_async() -> AsyncRedis:
                redis = import_redis_asyncio()
                options = _client_options(redis, to_async=True, timeout=timeout)
                client: AsyncRedis = redis.asyncio.Redis.from_url(url, **options)
                return client

    else:
        where = "redis (client)"
        if redis_client is None:  # async_redis alone: the sync face uses its twin
            redis_client = twin_client(async_redis, to_async=False, timeout=timeout)
    link = RedisLink(
        redis_client,
        where=where,
        policy=name,
        errors=(redis.RedisError, OSError),
        event=event,
        fallback=fallback,
        timeout=timeout,
        async_client=async_redis,
        make_async=make_async,
    )
    return link, where, secrets


def _check_clients(owner: str, redis_client: object, async_redis: object) -> None:
    """Refuse a client that is not a redis-py client, or of the wrong flavour."""
    for option, client, wants_async in (
        ("redis_client", redis_client, False),
        ("async_redis", async_redis, True),
    ):
        if client is None:
            continue
        flavour = "redis.asyncio.Redis" if wants_async else "redis.Redis"
        is_async = type(client).__module__.startswith("redis.asyncio")
        if not callable(getattr(client, "register_script", None)) or is_async != wants_async:
            kind = type(client).__name__
            msg = f"{owner} {option} must be a {flavour} client, got {kind}"
            if is_async and not wants_async:
                msg += " (pass an asyncio client as async_redis=)"
            raise ConfigurationError(msg)


def _check_url(owner: str, redis_url: object) -> tuple[str, tuple[str, ...]]:
    """The URL's location without its password, and the password as a secret."""
    if not isinstance(redis_url, str) or not redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        msg = (
            f"{owner} redis_url must start with redis://, rediss:// or unix://, "
            f"got {redacted_url(str(redis_url))!r}"
        )
        raise ConfigurationError(msg)
    password = urllib.parse.urlsplit(redis_url).password
    return redacted_url(redis_url), (urllib.parse.unquote(password),) if password else ()

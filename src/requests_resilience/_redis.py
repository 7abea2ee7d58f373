"""What the policies that share state through Redis have in common.

The circuit breaker and the rate limit each keep their state in Redis when given a
``redis_url`` (or a client), and in memory otherwise. Both connect the same way (short
timeouts, one immediate retry after a broken connection but none after a timeout, the
URL's password kept out of every text) and both
degrade the same way: a Redis error never fails a call, the policy carries on with a
per-process fallback, tries Redis again after `REDIS_RETRY_INTERVAL`, and logs the loss
and the recovery once each.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from requests_resilience._errors import ConfigurationError
from requests_resilience._telemetry import logger

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["REDIS_RETRY_INTERVAL", "RedisLink", "connect", "import_redis", "redacted_url"]

#: Seconds a policy keeps to its local fallback after a Redis error before trying again.
REDIS_RETRY_INTERVAL = 5.0
#: Seconds to connect to Redis, and for each command: a call must not hang on Redis.
#: The default of the policies' ``redis_timeout`` option.
REDIS_TIMEOUT = 0.5

_log = logger
_T = TypeVar("_T")


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

    Args:
        client: the `redis.Redis` client.
        where: the Redis location to show in logs, without its password.
        policy: the policy's name, for the logs.
        errors: the exception types that mean "Redis is unavailable".
        event: the prefix of the log events (e.g. ``"rate_limit"``).
        fallback: what the policy falls back to, for the log.
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
    ) -> None:
        self.client = client
        self.errors = errors
        self._where = where
        self._policy = policy
        self._event = event
        self._fallback = fallback
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._logged = False

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
            try:
                result = on_redis()
            except self.errors as exc:
                self.failed(now, exc)
            else:
                self.succeeded()
                return result
        return on_fallback()

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


def connect(
    redis_url: str | None,
    redis_client: Redis | None,
    *,
    owner: str,
    name: str,
    event: str,
    fallback: str,
    timeout: float = REDIS_TIMEOUT,
) -> tuple[RedisLink | None, str, tuple[str, ...]]:
    """The Redis link of a policy (None without Redis), where it points, its secrets.

    A Redis that stops answering (a frozen process, a partition) costs a call at most
    `timeout` per step before the policy falls back: a timed-out command is not
    retried (only a broken pooled connection is, at once), and after the failure the
    policy keeps to its local state for `REDIS_RETRY_INTERVAL`, as with a dead Redis.

    Args:
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL, or None.
        redis_client: a ready client instead of a URL (kept with its own settings).
        owner: the policy's class name, for messages (e.g. ``"RateLimit"``).
        name: the policy's name, for the logs.
        event: the prefix of its log events.
        fallback: what it falls back to when Redis is down, for the log.
        timeout: seconds to connect and for each command, for a client made from
            `redis_url` (a client passed in keeps its own).

    Returns:
        The link, the location to show (``"memory"`` without Redis, the URL without
        its password with one), and the password as a secret for the redactor.

    Raises:
        ConfigurationError: both a URL and a client, a URL of another scheme, or a
            client that is not a Redis client.
        ImportError: the ``redis`` extra is not installed.
    """
    if redis_url is not None and redis_client is not None:
        msg = f"{owner} takes redis_url or redis_client, not both"
        raise ConfigurationError(msg)
    if redis_url is None and redis_client is None:
        return None, "memory", ()
    redis = import_redis(f"sharing {owner} state")
    if redis_client is not None and not callable(getattr(redis_client, "register_script", None)):
        kind = type(redis_client).__name__
        msg = f"{owner} redis_client must be a redis.Redis client, got {kind}"
        raise ConfigurationError(msg)
    secrets: tuple[str, ...] = ()
    if redis_url is not None:
        if not isinstance(redis_url, str) or not redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            msg = (
                f"{owner} redis_url must start with redis://, rediss:// or unix://, "
                f"got {redacted_url(str(redis_url))!r}"
            )
            raise ConfigurationError(msg)
        where = redacted_url(redis_url)
        password = urllib.parse.urlsplit(redis_url).password
        secrets = (urllib.parse.unquote(password),) if password else ()
        # Short timeouts and one immediate retry for a pooled connection that went
        # stale, none for a timeout: redis-py's default of 10 retries with backoff,
        # or even one retry of a timed-out command, would hold every call for a
        # multiple of the timeout while Redis is frozen.
        redis_client = redis.Redis.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=redis.retry.Retry(
                redis.backoff.NoBackoff(), 1, supported_errors=(redis.ConnectionError,)
            ),
            retry_on_timeout=False,
        )
    else:
        where = "redis (client)"
    link = RedisLink(
        redis_client,  # type: ignore[arg-type]
        where=where,
        policy=name,
        errors=(redis.RedisError, OSError),
        event=event,
        fallback=fallback,
    )
    return link, where, secrets

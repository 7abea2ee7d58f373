"""The Vinci preset: the one place where the Vinci pipeline is put together.

::

    session.post("https://tryvinci.com/api/v1/generate/text-to-video", ...)
      └─ PipelineAdapter              mounted on "https://tryvinci.com/api/v1/"
          ├─ fallback                 (seam, none by default) outermost: it answers the
          │                           final outcome, a CircuitOpenError included
          ├─ StatusErrors             the final 4xx/5xx -> a typed APIStatusError
          ├─ concurrency              (seam, off by default) at most N calls in flight,
          │                           one permit per call for all its attempts; shared
          │                           through Redis leases when given a redis_url
          ├─ retry                    (seam) waits and re-sends; see below
          ├─ hedging                  (seam, off by default) a late read is sent again,
          │                           the first good answer wins; each hedge an attempt
          ├─ *extra_policies          once per attempt, outside the breaker: they see
          │                           every attempt, a CircuitOpenError included
          ├─ breaker                  (seam) fails fast while the API is down
          ├─ rate_limit               (seam) one token per attempt, per API key, adapts
          │                           to 429s; shared through Redis with `redis_url`
          ├─ APIKeyAuth               Authorization: Bearer <VINCI_API_KEY>
          ├─ tracing                  (seam) one span per wire attempt
          ├─ *chaos                   (seam, none by default) innermost: an injected
          │                           fault is an attempt like any other, retried,
          │                           counted by the breaker, with its own span
          └─ transport                requests' HTTPAdapter (pool, TLS, proxies)

The optional places follow Polly: a fallback outermost (inside the retry it would
answer the first failure and leave the retry nothing to do), hedging where its standard
hedging pipeline has it, outside the breaker and rate limit so that every hedge is an
attempt to them (and inside the retry, which then sends hedged groups), chaos
strategies last, next to the callback.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit

import requests

from requests_resilience._adapter import mount as _mount
from requests_resilience._auth import APIKeyAuth
from requests_resilience._breaker import CircuitBreaker
from requests_resilience._errors import ConfigurationError
from requests_resilience._pipeline import Pipeline, PolicyLike
from requests_resilience._ratelimit import RateLimit, rate_limit_key_for
from requests_resilience._retry import Retry
from requests_resilience._status_errors import StatusErrors
from requests_resilience._tracing import Tracing

if TYPE_CHECKING:
    import httpx

    from requests_resilience._clock import Clock

__all__ = [
    "API_KEY_ENV_VAR",
    "DEFAULT",
    "DEFAULT_BASE_URL",
    "Default",
    "PolicySeam",
    "build_pipeline",
    "mount",
    "normalise_base_url",
]

#: The API's base URL, as documented.
DEFAULT_BASE_URL: Final = "https://tryvinci.com/api/v1"
#: Where the API key is read from when none is passed.
API_KEY_ENV_VAR: Final = "VINCI_API_KEY"


class Default(enum.Enum):
    """The type of `DEFAULT`: "use the preset's tuned policy".

    Example:
        >>> build_pipeline(retry=DEFAULT).names == build_pipeline().names
        True
    """

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


#: Passed for a policy seam (or left out), it means "the preset's tuned policy";
#: pass None to leave the policy out, or a policy of your own to replace it.
DEFAULT: Final = Default.DEFAULT

#: What a policy seam of the preset accepts.
PolicySeam: TypeAlias = "PolicyLike | Literal[Default.DEFAULT] | None"

#: What `mount` takes and gives back: a requests session, or an httpx client.
_ClientT = TypeVar("_ClientT", "requests.Session", "httpx.Client", "httpx.AsyncClient")


def _default_retry() -> PolicyLike | None:
    # The vendor's advice (exponential backoff capped at 30 s, at most 5 attempts), with
    # full jitter, Retry-After honoured, a 2-minute deadline for the whole call, and no
    # POST re-sent when its outcome is unknown (the API documents no Idempotency-Key).
    return Retry(max_attempts=5, initial_delay=1.0, max_delay=30.0, timeout=120.0)


def _default_breaker(redis_url: str | None = None) -> PolicyLike | None:
    # Vinci keys allow 10 to 100 requests a minute, so the window is a minute long and
    # five calls are enough to judge; a 15 s break is one probe per 15 s while it is down.
    return CircuitBreaker(
        failure_ratio=0.5,
        minimum_calls=5,
        window=60.0,
        break_duration=15.0,
        redis_url=redis_url,
    )


def _default_rate_limit(api_key: str, redis_url: str | None = None) -> PolicyLike | None:
    # New keys allow 10 requests a minute (the documented default). The server counts a
    # fixed minute per key, so a burst of 10 costs nothing it would not allow; its
    # X-RateLimit-Limit raises the target for keys allowed more (up to 100/min). The
    # bucket is keyed by a hash of the key, never the key itself.
    return RateLimit.per_minute(10, burst=10, key=rate_limit_key_for(api_key), redis_url=redis_url)


def _default_tracing() -> PolicyLike | None:
    # One CLIENT span per wire attempt under the client's operation span; costs almost
    # nothing until the application configures an OpenTelemetry SDK.
    return Tracing()


def _resolve(
    name: str, value: PolicySeam, default: Callable[[], PolicyLike | None]
) -> PolicyLike | None:
    if value is DEFAULT:
        return default()
    if value is None or callable(value) or callable(getattr(value, "send", None)):
        return value
    msg = f"{name} must be a policy, None (leave it out) or DEFAULT, got {type(value).__name__}"
    raise ConfigurationError(msg)


def build_pipeline(
    *,
    api_key: str | None = None,
    clock: Clock | None = None,
    retry: PolicySeam = DEFAULT,
    breaker: PolicySeam = DEFAULT,
    rate_limit: PolicySeam = DEFAULT,
    tracing: PolicySeam = DEFAULT,
    extra_policies: Iterable[PolicyLike] = (),
    redis_url: str | None = None,
    origin: str | None = None,
    fallback: PolicyLike | None = None,
    chaos: Iterable[PolicyLike] = (),
    concurrency: PolicySeam = None,
    hedging: PolicySeam = None,
) -> Pipeline:
    """Build the Vinci pipeline (see the module docstring for the order).

    Args:
        api_key: the key; else the ``VINCI_API_KEY`` environment variable.
        clock: the clock every policy uses (default `SystemClock`).
        retry: the retry policy; `DEFAULT` for the preset's, None for none.
        breaker: the circuit breaker; `DEFAULT` for the preset's, None for none.
        rate_limit: the rate limit; `DEFAULT` for the preset's (10 requests a minute
            per API key, adapting to the server's 429s and ``X-RateLimit-*``
            headers), None for none.
        tracing: the tracing policy; `DEFAULT` for the preset's, None for none.
        extra_policies: policies that run once per attempt, inside the retry and
            outside the breaker (for example a metrics or header policy).
        redis_url: a Redis that the preset's breaker and rate limit share with every
            process using it (``redis://...``; needs the ``redis`` extra); None to
            keep their state in this process. Policies you pass are left as they are.
        origin: the only origin the key is sent to (see `APIKeyAuth`); `mount` passes
            its base URL. None binds the key to the first request's origin.
        fallback: a `Fallback` (or another policy) to run outermost, before
            `StatusErrors`; None (the default) for none.
        chaos: chaos policies (`ChaosFault`, `ChaosLatency`, ...) to run innermost,
            after tracing; none by default, and each is off until enabled.
        concurrency: a `ConcurrencyLimit` to cap the calls in flight, placed first
            after `StatusErrors` (one permit per call, for all its attempts), e.g.
            ``ConcurrencyLimit(5, key="vinci", redis_url=...)`` to cap the paid
            generate calls of every worker. Vinci documents no concurrency cap, so the
            preset has none: None and `DEFAULT` both leave it out.
        hedging: a `Hedging` policy, placed right after the retry (or in its place with
            ``retry=None``, as Polly's standard hedging pipeline does). It hedges only
            requests safe to send twice: Vinci's paid POSTs carry no idempotency key and
            are never hedged, and every hedge spends a rate-limit token, so the preset
            has none: None and `DEFAULT` both leave it out.

    Returns:
        The frozen pipeline.

    Raises:
        MissingAPIKeyError: no key was passed and ``VINCI_API_KEY`` is unset or blank.
        ConfigurationError: a seam got something that is not a policy, or a bad
            `redis_url`.

    Example:
        >>> from requests_resilience.vinci import build_pipeline
        >>> pipeline = build_pipeline(api_key="sk-test-123456789", retry=None, breaker=None)
        >>> pipeline.names
        ('status_errors', 'rate_limit', 'auth', 'tracing')
    """
    auth = APIKeyAuth(api_key, env_var=API_KEY_ENV_VAR, origin=origin)
    policies: list[PolicyLike] = [] if fallback is None else [fallback]
    policies.append(StatusErrors())
    # Outside the retry, as Polly's concurrency limiter is outermost: a permit per call.
    chosen_concurrency = _resolve("concurrency", concurrency, lambda: None)
    if chosen_concurrency is not None:
        policies.append(chosen_concurrency)
    chosen_retry = _resolve("retry", retry, _default_retry)
    if chosen_retry is not None:
        policies.append(chosen_retry)
    # Inside the retry, outside the breaker: each hedge is an attempt to the policies below.
    chosen_hedging = _resolve("hedging", hedging, lambda: None)
    if chosen_hedging is not None:
        policies.append(chosen_hedging)
    policies.extend(extra_policies)
    chosen_breaker = _resolve("breaker", breaker, lambda: _default_breaker(redis_url))
    if chosen_breaker is not None:
        policies.append(chosen_breaker)
    chosen_rate_limit = _resolve(
        "rate_limit", rate_limit, lambda: _default_rate_limit(auth.secrets[0], redis_url)
    )
    if chosen_rate_limit is not None:
        policies.append(chosen_rate_limit)
    policies.append(auth)
    chosen_tracing = _resolve("tracing", tracing, _default_tracing)
    if chosen_tracing is not None:
        policies.append(chosen_tracing)
    policies.extend(chaos)
    return Pipeline(*policies, clock=clock)


def normalise_base_url(base_url: str) -> str:
    """Check an API base URL and return it without a trailing slash.

    Raises:
        ConfigurationError: it is not an http(s) URL with a host, or it has a query or
            a fragment.
    """
    if not isinstance(base_url, str):
        msg = f"base_url must be a string, got {type(base_url).__name__}"
        raise ConfigurationError(msg)
    parts = urlsplit(base_url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        msg = f"base_url must be an http:// or https:// URL with a host, got {base_url!r}"
        raise ConfigurationError(msg)
    if parts.query or parts.fragment or parts.username or parts.password:
        msg = "base_url must not carry a query, a fragment or credentials"
        raise ConfigurationError(msg)
    return base_url.strip().rstrip("/")


def mount(
    session: _ClientT,
    *,
    api_key: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    clock: Clock | None = None,
    retry: PolicySeam = DEFAULT,
    breaker: PolicySeam = DEFAULT,
    rate_limit: PolicySeam = DEFAULT,
    tracing: PolicySeam = DEFAULT,
    extra_policies: Iterable[PolicyLike] = (),
    redis_url: str | None = None,
    pool_maxsize: int = 32,
    fallback: PolicyLike | None = None,
    chaos: Iterable[PolicyLike] = (),
    concurrency: PolicySeam = None,
    hedging: PolicySeam = None,
) -> _ClientT:
    """Send `session`'s requests under `base_url` through the Vinci pipeline.

    Other URLs keep going where they went, so the same session or client can talk to
    other hosts (and to other paths of the API's host) as before.

    **A requests.Session** is changed in place: a `PipelineAdapter` is mounted on
    ``base_url + "/"``, and the same session is returned.

    **An httpx.Client or httpx.AsyncClient** cannot be changed once made (httpx reads
    its mounts in ``__init__``, and they match an origin, never a path), so a *new*
    client is returned; use it instead of the given one. It keeps the given client's
    options (base URL, headers, cookies, auth, params, timeout, redirects, event
    hooks) and takes over its transports: the pool, HTTP/2, proxies, limits and TLS
    you configured stay as they were, wrapped for the API's URLs by
    `ResilientTransport` (`AsyncResilientTransport` for an `AsyncClient`, whose
    pipeline then runs its policies' async forms). Closing the returned client closes
    those shared transports, so close that one. httpx is imported only here, when an
    httpx client is given (the ``httpx`` extra).

    Args:
        session: a `requests.Session` (changed in place), or an `httpx.Client` /
            `httpx.AsyncClient` (left as it is; a new client is returned).
        api_key: the key; else the ``VINCI_API_KEY`` environment variable.
        base_url: the API's base URL; requests under it plus ``/`` take the pipeline.
        clock: see `build_pipeline`.
        retry: see `build_pipeline`.
        breaker: see `build_pipeline`.
        rate_limit: see `build_pipeline`.
        tracing: see `build_pipeline`.
        extra_policies: see `build_pipeline`; in an `AsyncClient` each needs an async
            form (``asend`` or an ``async def`` function).
        redis_url: see `build_pipeline`.
        pool_maxsize: connections a requests session keeps to the API; at least the
            number of threads that share it. An httpx client keeps its own ``limits``.
        fallback: see `build_pipeline`.
        chaos: see `build_pipeline`.
        concurrency: see `build_pipeline`.
        hedging: see `build_pipeline`.

    Returns:
        The same session; or, for an httpx client, a new client of the same kind.

    Raises:
        MissingAPIKeyError: no key was found.
        ConfigurationError: a bad base URL or option, a closed httpx client, a policy
            without an async form in an `AsyncClient`, or httpx is not installed.

    Example:
        >>> import requests
        >>> from requests_resilience import vinci
        >>> session = vinci.mount(requests.Session(), api_key="sk-...")
        >>> session.get("https://tryvinci.com/api/v1/billing/balance").json()
        {'balance_usd': 25.5, 'total_spent_usd': 134.75}

        With httpx, keep the client that `mount` returns:

        >>> import httpx
        >>> client = vinci.mount(httpx.Client(http2=True), api_key="sk-...")
        >>> client.get("https://tryvinci.com/api/v1/billing/balance").json()
        {'balance_usd': 25.5, 'total_spent_usd': 134.75}
    """
    base = normalise_base_url(base_url)
    # Checked before the pipeline is built: a wrong type is reported before a missing key.
    mounter = None if isinstance(session, requests.Session) else _httpx_mounter(session)
    pipeline = build_pipeline(
        api_key=api_key,
        clock=clock,
        retry=retry,
        breaker=breaker,
        rate_limit=rate_limit,
        tracing=tracing,
        extra_policies=extra_policies,
        redis_url=redis_url,
        origin=base,
        fallback=fallback,
        chaos=chaos,
        concurrency=concurrency,
        hedging=hedging,
    )
    if mounter is None:
        return _mount(session, base + "/", pipeline, pool_maxsize=pool_maxsize)
    return mounter(session, base, pipeline)  # type: ignore[return-value]


def _httpx_mounter(client: object) -> Callable[..., object]:
    """The function that mounts the pipeline on an httpx `client` (httpx imported here).

    Raises:
        ConfigurationError: `client` is neither a requests session nor an httpx
            client, or httpx is not installed.
    """
    kind = type(client).__name__
    if not type(client).__module__.startswith("httpx"):
        msg = f"mount() takes a requests.Session, httpx.Client or httpx.AsyncClient, got {kind}"
        raise ConfigurationError(msg)
    try:
        import httpx  # noqa: PLC0415 - the httpx extra, needed only for httpx clients

        from requests_resilience.vinci import _httpx_mount  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        msg = "mount() of an httpx client needs httpx: pip install 'requests-resilience[httpx]'"
        raise ConfigurationError(msg) from exc
    if isinstance(client, httpx.AsyncClient):
        return _httpx_mount.mount_async_client
    if isinstance(client, httpx.Client):
        return _httpx_mount.mount_client
    msg = f"mount() takes a requests.Session, httpx.Client or httpx.AsyncClient, got {kind}"
    raise ConfigurationError(msg)

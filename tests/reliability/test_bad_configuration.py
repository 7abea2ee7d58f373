"""Bad configuration fails when built, with a message that names the option and its range.

One table: every option of every public policy and class, with an out-of-range (or
wrongly typed) value; each must raise `ConfigurationError` (a `ValueError`) or, for a
value of the wrong kind of object, `TypeError`, at construction, and the message must
name the option and say what is allowed. For `APIKeyAuth`, `CircuitBreaker` and
`RateLimit` a wrong type is a `ConfigurationError` too (never an `AttributeError` or a
`TypeError` from deep inside, never accepted): `test_policies_refuse_wrong_types_...`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
import requests

from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    ConfigurationError,
    Pipeline,
    PipelineAdapter,
    RateLimit,
    Retry,
    RetryBudget,
    StatusErrors,
    Tracing,
    mount,
    operation,
    route,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault, RateLimitConfig
from requests_resilience.vinci import PollSchedule, VinciClient, build_pipeline
from tests.reliability.conftest import KEY

NAN = math.nan
INF = math.inf


def bad(value: object) -> Any:
    """A value of the wrong type, passed on past the type checker on purpose."""
    return value


def _enter(factory: Callable[[], AbstractContextManager[object]]) -> Callable[[], object]:
    """For context managers: building one is not enough, entering it is the check."""

    def build() -> object:
        with factory():
            pass
        return None

    return build


def _mount(**options: Any) -> Callable[[], object]:
    def build() -> object:
        with requests.Session() as session:
            return mount(session, "https://api.example.com/", Pipeline(), **options)

    return build


def _client(**options: Any) -> Callable[[], object]:
    def build() -> object:
        with VinciClient(api_key=KEY, **options) as client:
            return client

    return build


# (build, the words the message must contain); ids name the class and the option.
CASES = [
    # Retry
    pytest.param(
        lambda: Retry(max_attempts=0), ("max_attempts", "1 to 100"), id="Retry.max_attempts-0"
    ),
    pytest.param(
        lambda: Retry(max_attempts=101), ("max_attempts", "1 to 100"), id="Retry.max_attempts-101"
    ),
    pytest.param(
        lambda: Retry(max_attempts=True),
        ("max_attempts", "1 to 100"),
        id="Retry.max_attempts-bool",
    ),
    pytest.param(
        lambda: Retry(max_attempts=bad(2.5)),
        ("max_attempts", "1 to 100"),
        id="Retry.max_attempts-float",
    ),
    pytest.param(
        lambda: Retry(initial_delay=-1),
        ("initial_delay", "0 to 3600"),
        id="Retry.initial_delay-negative",
    ),
    pytest.param(
        lambda: Retry(initial_delay=NAN),
        ("initial_delay", "seconds"),
        id="Retry.initial_delay-nan",
    ),
    pytest.param(
        lambda: Retry(initial_delay=timedelta(hours=2)),
        ("initial_delay", "0 to 3600"),
        id="Retry.initial_delay-timedelta",
    ),
    pytest.param(
        lambda: Retry(multiplier=0.5), ("multiplier", "1.0 to 10.0"), id="Retry.multiplier-low"
    ),
    pytest.param(
        lambda: Retry(multiplier=11), ("multiplier", "1.0 to 10.0"), id="Retry.multiplier-high"
    ),
    pytest.param(
        lambda: Retry(initial_delay=5, max_delay=1),
        ("max_delay", "5 to 86400"),
        id="Retry.max_delay-below-initial",
    ),
    pytest.param(lambda: Retry(max_delay=INF), ("max_delay", "seconds"), id="Retry.max_delay-inf"),
    pytest.param(
        lambda: Retry(jitter=bad("lots")),
        ("jitter", "full, equal, decorrelated, none"),
        id="Retry.jitter",
    ),
    pytest.param(lambda: Retry(timeout=0), ("timeout", "more than 0"), id="Retry.timeout-0"),
    pytest.param(lambda: Retry(timeout=86401), ("timeout", "0 to 86400"), id="Retry.timeout-high"),
    pytest.param(
        lambda: Retry(attempt_timeout=-1),
        ("attempt_timeout", "0 to 86400"),
        id="Retry.attempt_timeout",
    ),
    pytest.param(
        lambda: Retry(max_retry_after=-1),
        ("max_retry_after", "0 to 86400"),
        id="Retry.max_retry_after",
    ),
    pytest.param(
        lambda: Retry(idempotent_methods="GET"),
        ("idempotent_methods", "collection"),
        id="Retry.idempotent_methods-str",
    ),
    pytest.param(
        lambda: Retry(idempotency_header=""),
        ("idempotency_header", "non-empty"),
        id="Retry.idempotency_header",
    ),
    pytest.param(lambda: Retry(classify=bad(3)), ("classify", "function"), id="Retry.classify"),
    pytest.param(
        lambda: Retry(idempotent_methods=bad([1])),
        ("idempotent_methods", "method names"),
        id="Retry.idempotent_methods-ints",
    ),
    pytest.param(
        lambda: Retry(add_idempotency_key=bad(1)),
        ("add_idempotency_key", "True or False"),
        id="Retry.add_idempotency_key",
    ),
    pytest.param(
        lambda: Retry(fail_fast_on_budget=bad("yes")),
        ("fail_fast_on_budget", "True or False"),
        id="Retry.fail_fast_on_budget",
    ),
    pytest.param(lambda: Retry(name=bad(3)), ("name", "non-empty string"), id="Retry.name"),
    pytest.param(
        lambda: Retry(on_retry=bad(3)), ("on_retry", "function"), id="Retry.on_retry-int"
    ),
    pytest.param(
        lambda: RetryBudget(window=bad("10")), ("window", "1.0 to 3600.0"), id="RetryBudget.window"
    ),
    pytest.param(
        lambda: RetryBudget(min_requests=bad(2.5)),
        ("min_requests", "int from 1"),
        id="RetryBudget.min_requests",
    ),
    pytest.param(
        lambda: Retry(budget=bad(5)), ("budget", "RetryBudget or None"), id="Retry.budget"
    ),
    pytest.param(lambda: Retry(on_retry=bad((1,))), ("on_retry", "function"), id="Retry.on_retry"),
    # RetryBudget
    pytest.param(
        lambda: RetryBudget(ratio=-0.1), ("ratio", "0.0 to 1.0"), id="RetryBudget.ratio-low"
    ),
    pytest.param(
        lambda: RetryBudget(ratio=1.5), ("ratio", "0.0 to 1.0"), id="RetryBudget.ratio-high"
    ),
    pytest.param(
        lambda: RetryBudget(ratio=NAN), ("ratio", "0.0 to 1.0"), id="RetryBudget.ratio-nan"
    ),
    pytest.param(
        lambda: RetryBudget(min_per_second=101),
        ("min_per_second", "0.0 to 100.0"),
        id="RetryBudget.min_per_second",
    ),
    pytest.param(
        lambda: RetryBudget(max_tokens=0.5),
        ("max_tokens", "1.0 to 10000.0"),
        id="RetryBudget.max_tokens",
    ),
    # CircuitBreaker
    pytest.param(
        lambda: CircuitBreaker(failure_ratio=0),
        ("failure_ratio", "more than 0.0", "1.0"),
        id="CircuitBreaker.failure_ratio-0",
    ),
    pytest.param(
        lambda: CircuitBreaker(failure_ratio=1.01),
        ("failure_ratio", "more than 0.0", "1.0"),
        id="CircuitBreaker.failure_ratio-high",
    ),
    pytest.param(
        lambda: CircuitBreaker(minimum_calls=0),
        ("minimum_calls", "1 to 1000000"),
        id="CircuitBreaker.minimum_calls",
    ),
    pytest.param(
        lambda: CircuitBreaker(window=0), ("window", "0.001 to 86400"), id="CircuitBreaker.window"
    ),
    pytest.param(
        lambda: CircuitBreaker(break_duration=-1),
        ("break_duration", "0.001 to 86400"),
        id="CircuitBreaker.break_duration",
    ),
    pytest.param(
        lambda: CircuitBreaker(break_duration=NAN),
        ("break_duration", "seconds"),
        id="CircuitBreaker.break_duration-nan",
    ),
    pytest.param(
        lambda: CircuitBreaker(half_open_probes=0),
        ("half_open_probes", "1 to 1000"),
        id="CircuitBreaker.half_open_probes",
    ),
    pytest.param(
        lambda: CircuitBreaker(key=bad("host")), ("key", "function"), id="CircuitBreaker.key"
    ),
    pytest.param(
        lambda: CircuitBreaker(is_failure=bad(1)),
        ("is_failure", "function"),
        id="CircuitBreaker.is_failure",
    ),
    pytest.param(
        lambda: CircuitBreaker(listeners=bad([1])),
        ("listeners", "function"),
        id="CircuitBreaker.listeners",
    ),
    pytest.param(
        lambda: CircuitBreaker(namespace=" "),
        ("namespace", "non-empty"),
        id="CircuitBreaker.namespace",
    ),
    pytest.param(lambda: CircuitBreaker(name=""), ("name", "non-empty"), id="CircuitBreaker.name"),
    pytest.param(
        lambda: CircuitBreaker(redis_url="http://x"),
        ("redis_url", "redis://"),
        id="CircuitBreaker.redis_url",
    ),
    pytest.param(
        lambda: CircuitBreaker(listeners=bad(5)),
        ("listeners", "function"),
        id="CircuitBreaker.listeners-not-iterable",
    ),
    pytest.param(
        lambda: CircuitBreaker(redis_client=bad(object())),
        ("redis_client", "redis.Redis"),
        id="CircuitBreaker.redis_client",
    ),
    pytest.param(
        lambda: CircuitBreaker(redis_timeout=0),
        ("redis_timeout", "0.001 to 60"),
        id="CircuitBreaker.redis_timeout",
    ),
    pytest.param(
        lambda: CircuitBreaker(max_keys=0),
        ("max_keys", "1 to 10000000"),
        id="CircuitBreaker.max_keys-0",
    ),
    pytest.param(
        lambda: CircuitBreaker(max_keys=bad(1e3)),
        ("max_keys", "1 to 10000000"),
        id="CircuitBreaker.max_keys-float",
    ),
    # RateLimit
    pytest.param(lambda: RateLimit(0), ("requests", "more than 0"), id="RateLimit.requests-0"),
    pytest.param(
        lambda: RateLimit(bad("10")), ("requests", "a number"), id="RateLimit.requests-str"
    ),
    pytest.param(
        lambda: RateLimit(bad(True)), ("requests", "a number"), id="RateLimit.requests-bool"
    ),
    pytest.param(
        lambda: RateLimit(10, period=0), ("period", "0.001 to 86400"), id="RateLimit.period"
    ),
    pytest.param(
        lambda: RateLimit(10, burst=bad(1.5)), ("burst", "1 to 1000000"), id="RateLimit.burst"
    ),
    pytest.param(
        lambda: RateLimit(10, headroom=2), ("headroom", "0.1 to 1"), id="RateLimit.headroom"
    ),
    pytest.param(
        lambda: RateLimit(10, recovery=NAN), ("recovery", "a number"), id="RateLimit.recovery"
    ),
    pytest.param(
        lambda: RateLimit(10, max_wait=-1), ("max_wait", "0 to 86400"), id="RateLimit.max_wait"
    ),
    pytest.param(
        lambda: RateLimit(10, max_pause=timedelta(days=2)),
        ("max_pause", "0 to 86400"),
        id="RateLimit.max_pause",
    ),
    pytest.param(
        lambda: RateLimit(10, max_keys=0), ("max_keys", "1 to 10000000"), id="RateLimit.max_keys"
    ),
    pytest.param(
        lambda: RateLimit(10, keep_on_throttle=1),
        ("keep_on_throttle", "0.1 to 0.99"),
        id="RateLimit.keep_on_throttle",
    ),
    pytest.param(
        lambda: RateLimit(10, follow_headers=bad("yes")),
        ("follow_headers", "True or False"),
        id="RateLimit.follow_headers",
    ),
    pytest.param(
        lambda: RateLimit(10, key=" "), ("key", "non-empty string"), id="RateLimit.key-blank"
    ),
    pytest.param(lambda: RateLimit(10, key=bad(5)), ("key", "function"), id="RateLimit.key-int"),
    pytest.param(
        lambda: RateLimit(10, redis_url="http://x"),
        ("redis_url", "redis://"),
        id="RateLimit.redis_url",
    ),
    pytest.param(
        lambda: RateLimit(10, redis_client=bad("redis://x")),
        ("redis_client", "redis.Redis"),
        id="RateLimit.redis_client",
    ),
    pytest.param(
        lambda: RateLimit(10, redis_timeout=61),
        ("redis_timeout", "0.001 to 60"),
        id="RateLimit.redis_timeout",
    ),
    pytest.param(
        lambda: RateLimit(10, namespace=bad(5)),
        ("namespace", "non-empty"),
        id="RateLimit.namespace",
    ),
    pytest.param(lambda: RateLimit(10, name=""), ("name", "non-empty"), id="RateLimit.name"),
    # StatusErrors
    pytest.param(
        lambda: StatusErrors(table=bad({600: StatusErrors})),
        ("table", "400 to 599"),
        id="StatusErrors.table-code",
    ),
    pytest.param(
        lambda: StatusErrors(table=bad({418: ValueError})),
        ("table", "APIStatusError"),
        id="StatusErrors.table-class",
    ),
    # APIKeyAuth
    pytest.param(lambda: APIKeyAuth(""), ("API key", "api_key"), id="APIKeyAuth.api_key-blank"),
    pytest.param(
        lambda: APIKeyAuth(None, env_var="NO_SUCH_VAR_42"),
        ("api_key", "NO_SUCH_VAR_42"),
        id="APIKeyAuth.env_var-unset",
    ),
    pytest.param(
        lambda: APIKeyAuth("sk-a\nb"), ("api_key", "line break"), id="APIKeyAuth.api_key-newline"
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, header=""), ("header", "non-empty"), id="APIKeyAuth.header-empty"
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, header="X Key"),
        ("header", "header name"),
        id="APIKeyAuth.header-space",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, scheme="Bear\r\ner"),
        ("scheme", "without white space"),
        id="APIKeyAuth.scheme-newline",
    ),
    pytest.param(
        lambda: APIKeyAuth(bad(KEY.encode())), ("api_key", "str"), id="APIKeyAuth.api_key-bytes"
    ),
    pytest.param(
        lambda: APIKeyAuth(bad(12345678)), ("api_key", "str"), id="APIKeyAuth.api_key-int"
    ),
    pytest.param(
        lambda: APIKeyAuth("sk-clé-0123456789"),
        ("api_key", "ASCII"),
        id="APIKeyAuth.api_key-non-ascii",
    ),
    pytest.param(
        lambda: APIKeyAuth("sk-a\tb"), ("api_key", "printable"), id="APIKeyAuth.api_key-tab"
    ),
    pytest.param(
        lambda: APIKeyAuth(None, env_var=bad(5)),
        ("env_var", "environment variable"),
        id="APIKeyAuth.env_var-int",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, header=bad(5)),
        ("header", "header name"),
        id="APIKeyAuth.header-int",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, header="X-Clé"),
        ("header", "header name"),
        id="APIKeyAuth.header-non-ascii",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, scheme=bad(5)),
        ("scheme", "without white space"),
        id="APIKeyAuth.scheme-int",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, origin="ftp://api.example.com"),
        ("origin", "http://"),
        id="APIKeyAuth.origin-scheme",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, origin="api.example.com"),
        ("origin", "with a host"),
        id="APIKeyAuth.origin-no-scheme",
    ),
    pytest.param(
        lambda: APIKeyAuth(KEY, origin=bad(443)), ("origin", "http://"), id="APIKeyAuth.origin-int"
    ),
    # Pipeline, PipelineAdapter, mount
    pytest.param(
        lambda: Pipeline(clock=bad(object())), ("clock", "monotonic()"), id="Pipeline.clock"
    ),
    pytest.param(
        lambda: Pipeline(bad(42)), ("policy", "send(call, next)"), id="Pipeline.policies"
    ),
    pytest.param(
        lambda: PipelineAdapter(Pipeline(), pool_maxsize=0),
        ("pool_maxsize", "1 to 10000"),
        id="PipelineAdapter.pool_maxsize-0",
    ),
    pytest.param(
        lambda: PipelineAdapter(Pipeline(), pool_connections=10_001),
        ("pool_connections", "1 to 10000"),
        id="PipelineAdapter.pool_connections",
    ),
    pytest.param(
        lambda: PipelineAdapter(bad(object())),
        ("pipeline", "Pipeline"),
        id="PipelineAdapter.pipeline",
    ),
    pytest.param(_mount(pool_maxsize=-3), ("pool_maxsize", "1 to 10000"), id="mount.pool_maxsize"),
    pytest.param(
        lambda: mount(requests.Session(), "ftp://x/", Pipeline()),
        ("prefix", "http://"),
        id="mount.prefix",
    ),
    # Tracing, operation, route
    pytest.param(
        lambda: Tracing(tracer_provider=bad(object())),
        ("tracer_provider", "TracerProvider"),
        id="Tracing.tracer_provider",
    ),
    pytest.param(
        lambda: Tracing(meter_provider=bad(object())),
        ("meter_provider", "MeterProvider"),
        id="Tracing.meter_provider",
    ),
    pytest.param(
        lambda: Tracing(request_hook=bad(1)),
        ("request_hook", "function"),
        id="Tracing.request_hook",
    ),
    pytest.param(
        lambda: Tracing(response_hook=bad("x")),
        ("response_hook", "function"),
        id="Tracing.response_hook",
    ),
    pytest.param(
        lambda: Tracing(request_id_attribute=" "),
        ("request_id_attribute", "non-empty"),
        id="Tracing.request_id_attribute",
    ),
    pytest.param(
        _enter(lambda: operation("")), ("operation name", "non-empty"), id="operation.name"
    ),
    pytest.param(_enter(lambda: route("")), ("route template", "non-empty"), id="route.template"),
    # the Vinci preset and client
    pytest.param(
        lambda: build_pipeline(api_key=KEY, retry=bad(3)),
        ("retry", "policy"),
        id="build_pipeline.retry",
    ),
    pytest.param(
        lambda: build_pipeline(api_key=KEY, breaker=bad("on")),
        ("breaker", "policy"),
        id="build_pipeline.breaker",
    ),
    pytest.param(
        build_pipeline, ("api_key", "VINCI_API_KEY"), id="build_pipeline.api_key-missing"
    ),
    pytest.param(_client(base_url="ftp://x"), ("base_url", "http://"), id="VinciClient.base_url"),
    pytest.param(
        _client(request_timeout=0),
        ("request_timeout", "more than 0", "86400"),
        id="VinciClient.request_timeout-0",
    ),
    pytest.param(
        _client(request_timeout=(1.0, -1.0)),
        ("request_timeout", "more than 0"),
        id="VinciClient.request_timeout-pair",
    ),
    pytest.param(
        _client(request_timeout=(1.0, 2.0, 3.0)),
        ("request_timeout", "(connect, read)"),
        id="VinciClient.request_timeout-triple",
    ),
    pytest.param(
        _client(balance_ttl=-1), ("balance_ttl", "0 to 86400"), id="VinciClient.balance_ttl"
    ),
    pytest.param(
        _client(price_per_second=1e9),
        ("price_per_second", "0 to 1000"),
        id="VinciClient.price_per_second",
    ),
    pytest.param(
        _client(max_upload_bytes=0),
        ("max_upload_bytes", "at least 1"),
        id="VinciClient.max_upload_bytes",
    ),
    pytest.param(
        _client(pool_maxsize=0), ("pool_maxsize", "1 to 10000"), id="VinciClient.pool_maxsize"
    ),
    pytest.param(_client(clock=object()), ("clock", "monotonic()"), id="VinciClient.clock"),
    pytest.param(
        lambda: PollSchedule(timeout=0), ("timeout", "more than 0"), id="PollSchedule.timeout"
    ),
    pytest.param(
        lambda: PollSchedule(poll_interval=-1),
        ("poll_interval", "more than 0"),
        id="PollSchedule.poll_interval",
    ),
    pytest.param(
        lambda: PollSchedule(max_poll_interval=1),
        ("max_poll_interval", "from poll_interval"),
        id="PollSchedule.max_poll_interval",
    ),
    pytest.param(
        lambda: PollSchedule(multiplier=0.5),
        ("multiplier", "1 to 10"),
        id="PollSchedule.multiplier",
    ),
    pytest.param(lambda: PollSchedule(jitter=2), ("jitter", "0 to 1"), id="PollSchedule.jitter"),
]

# The testing helpers are not policies: a plain ValueError (or TypeError) is enough.
TESTING_CASES = [
    pytest.param(
        lambda: FakeClock(random_value=1.0),
        ("random_value", "[0.0, 1.0)"),
        id="FakeClock.random_value",
    ),
    pytest.param(
        lambda: FakeClock(random_value=-0.1),
        ("random_value", "[0.0, 1.0)"),
        id="FakeClock.random_value-negative",
    ),
    pytest.param(
        lambda: FakeVinciServer(polls_to_complete=0),
        ("polls_to_complete", ">= 1"),
        id="FakeVinciServer.polls_to_complete",
    ),
    pytest.param(
        lambda: FakeVinciServer(max_upload_bytes=0),
        ("max_upload_bytes", ">= 1"),
        id="FakeVinciServer.max_upload_bytes",
    ),
    pytest.param(
        lambda: FakeVinciServer(port=70_000), ("port", "0 to 65535"), id="FakeVinciServer.port"
    ),
    pytest.param(
        lambda: FakeVinciServer(balance_usd=NAN),
        ("balance_usd",),
        id="FakeVinciServer.balance_usd",
    ),
    pytest.param(
        lambda: FakeVinciServer(price_per_second=-1),
        ("price_per_second", ">= 0"),
        id="FakeVinciServer.price_per_second",
    ),
    pytest.param(
        lambda: FakeVinciServer(api_keys=()),
        ("api_keys", "at least one"),
        id="FakeVinciServer.api_keys",
    ),
    pytest.param(
        lambda: RateLimitConfig(requests=0), ("requests", ">= 1"), id="RateLimitConfig.requests"
    ),
    pytest.param(
        lambda: RateLimitConfig(period=0), ("period", "> 0"), id="RateLimitConfig.period"
    ),
    pytest.param(lambda: Fault.status(700), ("status_code", "200 to 599"), id="Fault.status"),
    pytest.param(lambda: Fault.delay(-1), ("seconds", ">= 0"), id="Fault.delay"),
    pytest.param(
        lambda: Fault.stall_after_headers(INF), ("seconds", ">= 0"), id="Fault.stall_after_headers"
    ),
]


@pytest.mark.parametrize(("build", "words"), CASES)
def test_a_bad_option_fails_when_built_and_says_what_is_allowed(
    build: Callable[[], object], words: tuple[str, ...]
) -> None:
    """Construction raises, and the message names the option and the allowed values."""
    with pytest.raises((ConfigurationError, TypeError, ValueError)) as caught:
        build()
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    if isinstance(caught.value, ValueError):
        assert isinstance(caught.value, ConfigurationError), "a bad value is a ConfigurationError"


@pytest.mark.parametrize(("build", "words"), TESTING_CASES)
def test_a_bad_testing_option_fails_when_built_and_says_what_is_allowed(
    build: Callable[[], object], words: tuple[str, ...]
) -> None:
    """The testing helpers refuse bad options at construction, naming option and range."""
    with pytest.raises((TypeError, ValueError)) as caught:
        build()
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


_TYPED_POLICIES = ("APIKeyAuth.", "CircuitBreaker.", "RateLimit.", "Retry.", "RetryBudget.")


@pytest.mark.parametrize(
    ("build", "words"), [case for case in CASES if str(case.id).startswith(_TYPED_POLICIES)]
)
def test_policies_refuse_wrong_types_with_a_configuration_error(
    build: Callable[[], object], words: tuple[str, ...]
) -> None:
    """APIKeyAuth, CircuitBreaker, RateLimit, Retry, RetryBudget: any bad option, even of
    the wrong type, is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        build()


def test_a_bytes_key_is_never_sent_as_its_repr() -> None:
    """APIKeyAuth(b"sk-...") fails when built instead of sending ``Bearer b'sk-...'``."""
    with pytest.raises(ConfigurationError, match="api_key must be a str, got bytes"):
        APIKeyAuth(bad(b"sk-live-0123456789"))

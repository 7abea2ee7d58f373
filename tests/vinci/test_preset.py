"""build_pipeline() and mount(): the Vinci pipeline, its order, seams and prefix."""

from __future__ import annotations

import pytest
import requests
from requests.adapters import HTTPAdapter

from requests_resilience import (
    AuthenticationError,
    Call,
    CircuitBreaker,
    ConfigurationError,
    MissingAPIKeyError,
    Next,
    NotFoundError,
    PipelineAdapter,
    Retry,
)
from requests_resilience._ratelimit import RateLimit, rate_limit_key_for
from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import DEFAULT, DEFAULT_BASE_URL, build_pipeline, mount

KEY = "sk-test-0123456789abcdef"


def tag(call: Call, next: Next) -> requests.Response:
    """A function policy used to check placement."""
    return next(call)


class Named:
    """A policy object with a name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, call: Call, next: Next) -> requests.Response:
        return next(call)


def test_default_pipeline_order() -> None:
    """The preset: StatusErrors outermost, then retry, breaker, rate limit, auth, tracing."""
    pipeline = build_pipeline(api_key=KEY)
    assert pipeline.names == (
        "status_errors",
        "retry",
        "circuit_breaker",
        "rate_limit",
        "auth",
        "tracing",
    )


def test_default_rate_limit_is_ten_a_minute_keyed_by_a_hash_of_the_key() -> None:
    """The preset's rate limit: 10/min, burst 10, one bucket per API key hash, no key in it."""
    limit = build_pipeline(api_key=KEY).policies[3]
    assert isinstance(limit, RateLimit)
    assert (limit.requests, limit.period, limit.burst) == (10.0, 60.0, 10)
    assert f"key={rate_limit_key_for(KEY)!r}" in repr(limit)
    assert KEY not in repr(limit)
    assert not limit.shared


def test_redis_url_is_shared_by_the_breaker_and_the_rate_limit() -> None:
    """redis_url= makes the preset's breaker and rate limit share state (no I/O at build)."""
    pipeline = build_pipeline(api_key=KEY, redis_url="redis://:pw-secret@127.0.0.1:1/0")
    breaker, limit = pipeline.policies[2], pipeline.policies[3]
    assert isinstance(breaker, CircuitBreaker)
    assert isinstance(limit, RateLimit)
    assert breaker.shared
    assert limit.shared
    assert "pw-secret" not in pipeline.describe()


def test_default_retry_follows_the_vendor_advice() -> None:
    """At most 5 attempts, backoff capped at 30 s, POSTs never re-sent blindly."""
    retry = build_pipeline(api_key=KEY).policies[1]
    assert isinstance(retry, Retry)
    assert retry.max_attempts == 5
    assert retry.max_delay == 30.0
    assert retry.add_idempotency_key is False


def test_seams_take_policies_in_their_places() -> None:
    """retry, extra policies, breaker, rate limit, auth, tracing: in the documented order."""
    pipeline = build_pipeline(
        api_key=KEY,
        retry=Named("retry"),
        breaker=Named("breaker"),
        rate_limit=Named("limit"),
        tracing=Named("tracing"),
        extra_policies=(tag,),
    )
    assert pipeline.names == (
        "status_errors",
        "retry",
        "tag",
        "breaker",
        "limit",
        "auth",
        "tracing",
    )


def test_none_leaves_a_seam_out_and_default_is_accepted() -> None:
    """None skips a policy; DEFAULT asks for the preset's."""
    assert build_pipeline(
        api_key=KEY, retry=None, breaker=DEFAULT, rate_limit=None, tracing=None
    ).names == ("status_errors", "circuit_breaker", "auth")
    assert build_pipeline(api_key=KEY, retry=None, breaker=None, tracing=None).names == (
        "status_errors",
        "rate_limit",
        "auth",
    )


def test_a_seam_rejects_what_is_not_a_policy() -> None:
    """A wrong value fails when the pipeline is built, naming the seam."""
    with pytest.raises(ConfigurationError, match="retry"):
        build_pipeline(api_key=KEY, retry=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="rate_limit"):
        build_pipeline(api_key=KEY, rate_limit="10/min")  # type: ignore[arg-type]


def test_the_clock_is_the_pipelines() -> None:
    """The clock passed is the one every policy gets."""
    clock = FakeClock()
    assert build_pipeline(api_key=KEY, clock=clock).clock is clock


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without api_key, VINCI_API_KEY is used."""
    monkeypatch.setenv("VINCI_API_KEY", KEY)
    assert "auth" in build_pipeline().names


def test_a_missing_key_fails_when_built() -> None:
    """No key anywhere: MissingAPIKeyError, whose message says how to set it."""
    with pytest.raises(MissingAPIKeyError, match="VINCI_API_KEY"):
        build_pipeline()


def test_the_key_is_not_in_the_description() -> None:
    """describe() and repr() show no secret."""
    pipeline = build_pipeline(api_key=KEY)
    assert KEY not in pipeline.describe()
    assert KEY not in repr(pipeline)


def test_mount_uses_the_base_url_prefix_and_leaves_others(session: requests.Session) -> None:
    """Only URLs under the base URL go through the pipeline."""
    assert mount(session, api_key=KEY) is session
    assert isinstance(session.get_adapter(DEFAULT_BASE_URL + "/status/x"), PipelineAdapter)
    assert isinstance(session.get_adapter("https://tryvinci.com/other"), HTTPAdapter)
    assert isinstance(session.get_adapter("https://example.com/"), HTTPAdapter)
    assert DEFAULT_BASE_URL + "/" in session.adapters


def test_mount_strips_a_trailing_slash(session: requests.Session) -> None:
    """base_url with or without a trailing slash mounts on the same prefix."""
    mount(session, api_key=KEY, base_url="https://vinci.example/api/v1/")
    assert "https://vinci.example/api/v1/" in session.adapters


@pytest.mark.parametrize(
    "base_url", ["ftp://x/api", "tryvinci.com/api/v1", "https://x/api?a=1", "https://u:p@x/"]
)
def test_mount_rejects_a_bad_base_url(session: requests.Session, base_url: str) -> None:
    """A base URL that is not plain http(s) is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        mount(session, api_key=KEY, base_url=base_url)


def test_a_mounted_session_talks_to_the_api(
    session: requests.Session, fake_vinci: FakeVinciServer
) -> None:
    """Plain session calls get auth and typed errors from the mounted pipeline."""
    mount(session, api_key=fake_vinci.api_key, base_url=fake_vinci.base_url)
    with session.get(fake_vinci.url("/billing/balance"), timeout=5) as response:
        assert response.json()["balance_usd"] == 100.0
    with pytest.raises(NotFoundError):
        session.get(fake_vinci.url("/status/req_missing"), timeout=5)
    assert fake_vinci.requests[0].headers["Authorization"] == f"Bearer {fake_vinci.api_key}"


def test_a_wrong_key_is_an_authentication_error(
    session: requests.Session, fake_vinci: FakeVinciServer
) -> None:
    """The server's 401 becomes AuthenticationError."""
    mount(session, api_key="sk-wrong-key-000000", base_url=fake_vinci.base_url)
    with pytest.raises(AuthenticationError):
        session.get(fake_vinci.url("/billing/balance"), timeout=5)


def test_pool_maxsize_reaches_the_adapter(session: requests.Session) -> None:
    """pool_maxsize is passed to the mounted adapter's transport."""
    mount(session, api_key=KEY, pool_maxsize=7)
    adapter = session.get_adapter(DEFAULT_BASE_URL + "/")
    assert isinstance(adapter, PipelineAdapter)
    transport = adapter.transport
    assert isinstance(transport, HTTPAdapter)
    assert transport._pool_maxsize == 7  # type: ignore[attr-defined]

"""requests-resilience: a resilience pipeline mounted on a `requests.Session`.

Policies (typed status errors, auth, retry, circuit breaker, tracing, ...) run in
order inside a transport adapter, first = outermost::

    import requests
    from requests_resilience import APIKeyAuth, Pipeline, StatusErrors, mount

    session = mount(
        requests.Session(),
        "https://api.example.com/",
        Pipeline(StatusErrors(), APIKeyAuth(env_var="EXAMPLE_API_KEY")),
    )

Everything public is importable from here; the modules starting with ``_`` are
private.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from requests_resilience._adapter import PipelineAdapter, mount
from requests_resilience._auth import APIKeyAuth
from requests_resilience._breaker import (
    BreakerStatus,
    CircuitBreaker,
    breaker_key_by_endpoint,
    breaker_key_by_host,
    is_breaker_failure,
)
from requests_resilience._budget import RetryBudget
from requests_resilience._chaos import (
    ChaosBehaviour,
    ChaosFault,
    ChaosLatency,
    ChaosOutcome,
    connection_failure,
    service_unavailable,
)
from requests_resilience._clock import Clock, SystemClock, is_testing, no_waits, set_testing
from requests_resilience._concurrency import ConcurrencyLimit, ConcurrencyLimitStatus
from requests_resilience._errors import (
    DEFAULT_STATUS_ERRORS,
    APIChunkedEncodingError,
    APIConnectionError,
    APIConnectTimeoutError,
    APIContentDecodingError,
    APIError,
    APIProxyError,
    APIReadTimeoutError,
    APISSLError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConcurrencyLimitError,
    ConfigurationError,
    InsufficientBalanceError,
    MissingAPIKeyError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RetryBudgetExhaustedError,
    ServerError,
)
from requests_resilience._events import BreakerStateChange, HedgeDetails, RetryDetails
from requests_resilience._fallback import Fallback, FallbackDetails, fallback_of, is_fallback
from requests_resilience._hedging import Hedging, LatencyPercentile
from requests_resilience._pipeline import (
    AsyncNext,
    Attempt,
    Call,
    Next,
    Pipeline,
    Policy,
    PolicyLike,
    attempts_of,
)
from requests_resilience._ratelimit import RateLimit, RateLimitStatus, rate_limit_key_for
from requests_resilience._responses import make_response
from requests_resilience._retry import Outcome, Retry, classify_outcome
from requests_resilience._status_errors import StatusErrors
from requests_resilience._tracing import RequestHook, ResponseHook, Tracing, operation, route

try:
    __version__: str = _distribution_version("requests-resilience")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree, not installed
    __version__ = "0.0.0+unknown"
"""The installed distribution's version (PEP 440), e.g. ``"0.1.0"``.

Read from the package metadata, so it is the version pip installed; ``"0.0.0+unknown"``
when the package is imported from a source tree that was never installed.
"""

__all__ = [
    "DEFAULT_STATUS_ERRORS",
    "APIChunkedEncodingError",
    "APIConnectTimeoutError",
    "APIConnectionError",
    "APIContentDecodingError",
    "APIError",
    "APIKeyAuth",
    "APIProxyError",
    "APIReadTimeoutError",
    "APISSLError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncNext",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BreakerStateChange",
    "BreakerStatus",
    "Call",
    "ChaosBehaviour",
    "ChaosFault",
    "ChaosLatency",
    "ChaosOutcome",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConcurrencyLimit",
    "ConcurrencyLimitError",
    "ConcurrencyLimitStatus",
    "ConfigurationError",
    "Fallback",
    "FallbackDetails",
    "HedgeDetails",
    "Hedging",
    "InsufficientBalanceError",
    "LatencyPercentile",
    "MissingAPIKeyError",
    "Next",
    "NotFoundError",
    "Outcome",
    "PayloadTooLargeError",
    "Pipeline",
    "PipelineAdapter",
    "Policy",
    "PolicyLike",
    "RateLimit",
    "RateLimitError",
    "RateLimitStatus",
    "RequestHook",
    "ResponseHook",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryDetails",
    "ServerError",
    "StatusErrors",
    "SystemClock",
    "Tracing",
    "attempts_of",
    "breaker_key_by_endpoint",
    "breaker_key_by_host",
    "classify_outcome",
    "connection_failure",
    "fallback_of",
    "is_breaker_failure",
    "is_fallback",
    "is_testing",
    "make_response",
    "mount",
    "no_waits",
    "operation",
    "rate_limit_key_for",
    "route",
    "service_unavailable",
    "set_testing",
]

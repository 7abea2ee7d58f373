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

from requests_resilience._adapter import PipelineAdapter, mount
from requests_resilience._auth import APIKeyAuth
from requests_resilience._clock import Clock, SystemClock, is_testing, no_waits, set_testing
from requests_resilience._errors import (
    DEFAULT_STATUS_ERRORS,
    APIConnectionError,
    APIConnectTimeoutError,
    APIError,
    APIReadTimeoutError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    InsufficientBalanceError,
    MissingAPIKeyError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
)
from requests_resilience._pipeline import Attempt, Call, Next, Pipeline, Policy, PolicyLike
from requests_resilience._status_errors import StatusErrors

__all__ = [
    "DEFAULT_STATUS_ERRORS",
    "APIConnectTimeoutError",
    "APIConnectionError",
    "APIError",
    "APIKeyAuth",
    "APIReadTimeoutError",
    "APIStatusError",
    "APITimeoutError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "Call",
    "CircuitOpenError",
    "Clock",
    "ConfigurationError",
    "InsufficientBalanceError",
    "MissingAPIKeyError",
    "Next",
    "NotFoundError",
    "PayloadTooLargeError",
    "Pipeline",
    "PipelineAdapter",
    "Policy",
    "PolicyLike",
    "RateLimitError",
    "ServerError",
    "StatusErrors",
    "SystemClock",
    "is_testing",
    "mount",
    "no_waits",
    "set_testing",
]

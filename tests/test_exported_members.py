"""The public surface: __all__ is sorted, complete and importable."""

from __future__ import annotations

import requests_resilience
import requests_resilience.testing


def _isort_key(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions (ruff's RUF022 order)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_importable() -> None:
    """Every name in __all__ exists, and the list is sorted (upper-case constants first)."""
    for module in (requests_resilience, requests_resilience.testing):
        names = module.__all__
        assert names == sorted(names, key=_isort_key)
        for name in names:
            assert getattr(module, name) is not None


def test_public_names_are_defined_in_private_modules() -> None:
    """Public classes and functions live in _private modules, re-exported here."""
    for name in requests_resilience.__all__:
        obj = getattr(requests_resilience, name)
        module = getattr(obj, "__module__", None)
        if module is not None and module not in ("typing", "collections.abc", "builtins"):
            assert module.startswith("requests_resilience._"), (name, module)


def test_exported_members() -> None:
    """The top-level API is exactly this list (update it on purpose, not by accident)."""
    assert sorted(requests_resilience.__all__) == [
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
        "Attempt",
        "AuthenticationError",
        "BadRequestError",
        "BreakerStateChange",
        "BreakerStatus",
        "Call",
        "CircuitBreaker",
        "CircuitOpenError",
        "Clock",
        "ConfigurationError",
        "DEFAULT_STATUS_ERRORS",
        "InsufficientBalanceError",
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
        "is_breaker_failure",
        "is_testing",
        "mount",
        "no_waits",
        "operation",
        "rate_limit_key_for",
        "route",
        "set_testing",
    ]

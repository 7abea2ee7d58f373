"""The public surface: __all__ is sorted, complete and importable."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
        "DEFAULT_STATUS_ERRORS",
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


# -- the API reference -------------------------------------------------------------------

REFERENCE = Path(__file__).parent.parent / "docs" / "reference"
_DIRECTIVE = re.compile(r"^::: (\S+)\n((?:    .*\n)*)", re.MULTILINE)
PACKAGES = (
    "requests_resilience",
    "requests_resilience.httpx",
    "requests_resilience.testing",
    "requests_resilience.vinci",
)


def _directives() -> dict[str, str]:
    """Every ``::: identifier`` of docs/reference, with the options block under it."""
    found: dict[str, str] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for match in _DIRECTIVE.finditer(page.read_text(encoding="utf-8")):
            found[match.group(1)] = match.group(2)
    return found


def _private(identifier: str) -> bool:
    return any(
        part.startswith("_") and not part.startswith("__") for part in identifier.split(".")
    )


def test_the_reference_is_found() -> None:
    """The directive pattern finds the reference's entries (a broken regex finds none)."""
    assert len(_directives()) > 90


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_reference_entry(package: str) -> None:
    """Each name in the package's __all__ is documented under its public import path."""
    module = importlib.import_module(package)
    documented = _directives()
    missing = [name for name in module.__all__ if f"{package}.{name}" not in documented]
    assert missing == []


def test_no_reference_heading_shows_a_private_path() -> None:
    """An entry named by a private module path is rendered without its heading."""
    for identifier, options in _directives().items():
        if _private(identifier):
            assert "show_root_heading: false" in options, identifier


def test_every_reference_entry_exists() -> None:
    """Each documented identifier imports: the reference names nothing that is gone."""
    for identifier in _directives():
        parts = identifier.split(".")
        for split in range(len(parts), 0, -1):
            try:
                obj: object = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
            break
        else:  # pragma: no cover - a failure message
            pytest.fail(f"{identifier} does not import")


def test_version_is_the_installed_distributions() -> None:
    """__version__ is the version pip installed (from the package metadata)."""
    assert requests_resilience.__version__ == importlib.metadata.version("requests-resilience")
    assert re.fullmatch(
        r"\d+\.\d+(\.\d+)?((a|b|rc|\.dev|\.post)\d+)*", requests_resilience.__version__
    )


def test_version_falls_back_when_the_metadata_is_missing() -> None:
    """Imported from a source tree that was never installed, __version__ says unknown."""
    code = (
        "import importlib.metadata as metadata\n"
        "def missing(name):\n"
        "    raise metadata.PackageNotFoundError(name)\n"
        "metadata.version = missing\n"
        "import requests_resilience\n"
        "print(requests_resilience.__version__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "0.0.0+unknown"

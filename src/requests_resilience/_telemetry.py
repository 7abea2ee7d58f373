"""Where policies report what happened: structlog events, span events and metrics.

STUB: the observability work (issue 5) implements these functions. Policies call
them only off the happy path (a retry, a breaker change, a final error), so their
cost does not matter to the per-request path; the per-attempt span and duration
metric belong to the `Tracing` policy itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from requests_resilience._errors import APIError
    from requests_resilience._events import BreakerStateChange, RetryDetails

__all__ = ["breaker_state_changed", "call_failed", "retry_scheduled"]


def retry_scheduled(details: RetryDetails) -> None:
    """A retry policy is about to wait `details.wait` and send again."""


def breaker_state_changed(change: BreakerStateChange) -> None:
    """A circuit breaker changed state."""


def call_failed(error: APIError) -> None:
    """A logical call ended with `error` (raised by the outermost StatusErrors policy)."""

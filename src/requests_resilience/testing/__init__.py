"""Helpers for testing code that uses requests-resilience.

- `FakeClock`: virtual time for pipelines under test (``Pipeline(..., clock=FakeClock())``).
- `no_waits()` / `set_testing()`: skip every real wait of `SystemClock`.
- `FakeVinciServer`, `Fault`, `RateLimitConfig`, `RecordedRequest`: a real HTTP server
  on loopback that implements the Vinci API and fails on demand. It needs the
  ``testing`` extra (``pip install requests-resilience[testing]``, which brings
  werkzeug). With that extra installed, pytest also gets a ``fake_vinci`` fixture.

Example:
    >>> from requests_resilience.testing import FakeVinciServer, Fault
    >>> with FakeVinciServer() as server:
    ...     server.script(Fault.status(503, retry_after="0.2"))
    ...     ...  # point your client at server.base_url
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from requests_resilience._clock import no_waits, set_testing
from requests_resilience.testing._clock import FakeClock

if TYPE_CHECKING:
    from requests_resilience.testing._server import (
        FakeVinciServer,
        Fault,
        RateLimitConfig,
        RecordedRequest,
    )

__all__ = [
    "FakeClock",
    "FakeVinciServer",
    "Fault",
    "RateLimitConfig",
    "RecordedRequest",
    "no_waits",
    "set_testing",
]

_SERVER_NAMES = frozenset({"FakeVinciServer", "Fault", "RateLimitConfig", "RecordedRequest"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        try:
            from requests_resilience.testing import _server  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the environment
            msg = (
                f"requests_resilience.testing.{name} needs werkzeug: "
                "pip install 'requests-resilience[testing]'"
            )
            raise ImportError(msg) from exc
        return getattr(_server, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)

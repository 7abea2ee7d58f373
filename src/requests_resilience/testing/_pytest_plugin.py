"""pytest plugin of requests-resilience: the ``fake_vinci`` and ``fake_clock`` fixtures.

Registered through the ``pytest11`` entry point, so it loads in every pytest run where the
package is installed: it imports nothing heavy at module level (the server and werkzeug
are imported when a test asks for the fixture).

Example:
    >>> def test_balance(fake_vinci):  # doctest: +SKIP
    ...     fake_vinci.balance_usd = 1.25
    ...     ...  # point the client at fake_vinci.base_url with fake_vinci.api_key

    >>> @pytest.mark.fake_vinci(polls_to_complete=1, balance_usd=0.0)  # doctest: +SKIP
    ... def test_no_money(fake_vinci): ...

    >>> def test_backoff(fake_clock):  # doctest: +SKIP
    ...     pipeline = Pipeline(Retry(), clock=fake_clock)
    ...     ...
    ...     assert fake_clock.sleeps == [0.5, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from requests_resilience.testing._clock import FakeClock

if TYPE_CHECKING:
    from requests_resilience.testing._server import FakeVinciServer

__all__ = ["fake_clock", "fake_vinci", "new_fake_server"]

_EXTRA_HINT = "pip install 'requests-resilience[testing]'"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fake_vinci`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "fake_vinci(**options): keyword options for the FakeVinciServer of the fake_vinci fixture",
    )


def new_fake_server(options: Mapping[str, Any]) -> FakeVinciServer:
    """A `FakeVinciServer` with `options`, not started yet.

    Raises:
        ImportError: werkzeug (the ``testing`` extra) is not installed; the message
            says how to install it.
    """
    try:
        from requests_resilience.testing._server import FakeVinciServer  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            "the fake_vinci fixture needs werkzeug, which the 'testing' extra brings: "
            f"{_EXTRA_HINT} ({exc})"
        )
        raise ImportError(msg) from exc
    return FakeVinciServer(**options)


@pytest.fixture
def fake_vinci(request: pytest.FixtureRequest) -> Iterator[FakeVinciServer]:
    """A started fake Vinci server for one test, stopped after it.

    Options for ``FakeVinciServer`` come from the closest ``@pytest.mark.fake_vinci(...)``
    marker, if any. Without werkzeug the test errors with an `ImportError` that names
    the extra to install (``pip install 'requests-resilience[testing]'``).
    """
    marker = request.node.get_closest_marker("fake_vinci")
    options = dict(marker.kwargs) if marker is not None else {}
    with new_fake_server(options) as server:
        yield server


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fresh `FakeClock` for one test: waits are instant and recorded in ``.sleeps``.

    Pass it to a ``Pipeline(..., clock=fake_clock)`` (or a client's ``clock=``); its
    randomness is seeded, so jittered waits are the same on every run. Build a
    ``FakeClock(random_value=0.0)`` yourself for no jitter at all.
    """
    return FakeClock()

"""pytest plugin of requests-resilience: the ``fake_vinci`` fixture.

Registered through the ``pytest11`` entry point, so it loads in every pytest run where the
package is installed: it imports nothing heavy at module level (the server and werkzeug
are imported when a test asks for the fixture).

Example:
    >>> def test_balance(fake_vinci):  # doctest: +SKIP
    ...     fake_vinci.balance_usd = 1.25
    ...     ...  # point the client at fake_vinci.base_url with fake_vinci.api_key

    >>> @pytest.mark.fake_vinci(polls_to_complete=1, balance_usd=0.0)  # doctest: +SKIP
    ... def test_no_money(fake_vinci): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from requests_resilience.testing._server import FakeVinciServer


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``fake_vinci`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "fake_vinci(**options): keyword options for the FakeVinciServer of the fake_vinci fixture",
    )


@pytest.fixture
def fake_vinci(request: pytest.FixtureRequest) -> Iterator[FakeVinciServer]:
    """A started fake Vinci server for one test, stopped after it.

    Options for ``FakeVinciServer`` come from the closest ``@pytest.mark.fake_vinci(...)``
    marker, if any.
    """
    from requests_resilience.testing._server import FakeVinciServer  # noqa: PLC0415

    marker = request.node.get_closest_marker("fake_vinci")
    options = dict(marker.kwargs) if marker is not None else {}
    with FakeVinciServer(**options) as server:
        yield server

"""pytest plugin of requests-resilience: fixtures for the fake Vinci server and FakeClock.

Registered through the ``pytest11`` entry point, so it loads in every pytest run where the
package is installed: it imports nothing heavy at module level (the server and werkzeug,
the Vinci client and httpx are imported when a test asks for a fixture).

Every fixture is a plain (sync) fixture, so async tests use them as they are, under
anyio's ``@pytest.mark.anyio`` or pytest-asyncio's ``@pytest.mark.asyncio`` (strict mode
included): the server serves from its own threads, and `FakeClock.asleep` advances
virtual time and yields to the event loop, without waiting.

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

    >>> @pytest.mark.anyio  # doctest: +SKIP
    ... async def test_job(make_async_vinci_client):
    ...     async with make_async_vinci_client() as client:
    ...         done = await client.wait(await client.text_to_video("a fox"))
    ...     assert done.status == "completed"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

from requests_resilience.testing._clock import FakeClock

if TYPE_CHECKING:
    from requests_resilience.testing._server import FakeVinciServer
    from requests_resilience.vinci import AsyncVinciClient, VinciClient

__all__ = [
    "fake_clock",
    "fake_vinci",
    "make_async_vinci_client",
    "make_vinci_client",
    "new_fake_server",
]

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


@pytest.fixture
def make_vinci_client(
    fake_vinci: FakeVinciServer, fake_clock: FakeClock
) -> Iterator[Callable[..., VinciClient]]:
    """Make `VinciClient` objects that talk to `fake_vinci` and wait on `fake_clock`.

    The synchronous twin of `make_async_vinci_client`, with the same defaults (the
    server's ``base_url`` and key, the preset's pipeline on the test's `fake_clock`)
    and the same keyword arguments; the clients it made are closed after the test::

        def test_balance(make_vinci_client):
            client = make_vinci_client()
            assert client.balance().balance_usd == 100.0
    """
    from requests_resilience.vinci import VinciClient  # noqa: PLC0415 - loaded when used

    made: list[VinciClient] = []

    def make(**options: Any) -> VinciClient:
        options.setdefault("base_url", fake_vinci.base_url)
        options.setdefault("clock", fake_clock)
        if "pipeline" not in options:
            options.setdefault("api_key", fake_vinci.api_key)
        client = VinciClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def make_async_vinci_client(
    fake_vinci: FakeVinciServer, fake_clock: FakeClock
) -> Iterator[Callable[..., AsyncVinciClient]]:
    """Make `AsyncVinciClient` objects that talk to `fake_vinci` and wait on `fake_clock`.

    Call it in the test, and open what it returns with ``async with``::

        async with make_async_vinci_client() as client:
            job = await client.text_to_video("a fox")

    A client it makes has the server's ``base_url``, and the Vinci preset's pipeline
    with the server's key, both on the test's `fake_clock`: retry backoff, ``Retry-After``
    waits, rate-limit waits and `wait()`'s polls take no time and are recorded in
    ``fake_clock.sleeps``. Keyword arguments go to `AsyncVinciClient` and replace those
    defaults (``balance_check=False``, ``api_key="sk-revoked"``; give ``pipeline=``
    a pipeline built with ``clock=fake_clock`` for other policies). The server's
    options come from ``@pytest.mark.fake_vinci(...)``, as for `fake_vinci`.

    It is a factory rather than an open client because a sync fixture cannot await
    ``aclose()``, and an async fixture would need one async plugin's decorator: this
    way it works under anyio and pytest-asyncio alike. The price is that closing is the
    test's job: a client left open (its connections would warn when collected) fails
    the test at teardown, with a message saying so.
    """
    from requests_resilience.vinci import AsyncVinciClient  # noqa: PLC0415 - needs httpx

    made: list[AsyncVinciClient] = []

    def make(**options: Any) -> AsyncVinciClient:
        options.setdefault("base_url", fake_vinci.base_url)
        options.setdefault("clock", fake_clock)
        if "pipeline" not in options:
            options.setdefault("api_key", fake_vinci.api_key)
        client = AsyncVinciClient(**options)
        made.append(client)
        return client

    yield make
    left_open = sum(not client.http_client.is_closed for client in made)
    if left_open:
        pytest.fail(
            f"make_async_vinci_client: {left_open} of {len(made)} clients left open; "
            "open each with `async with make_async_vinci_client() as client:` "
            "(or await client.aclose())",
            pytrace=False,
        )

"""vinci.mount() of an httpx.Client / httpx.AsyncClient: a new client, the preset on the prefix."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import requests

from requests_resilience import (
    AuthenticationError,
    Call,
    ConfigurationError,
    Next,
    NotFoundError,
    Retry,
)
from requests_resilience.httpx import AsyncResilientTransport
from requests_resilience.testing import FakeVinciServer, Fault
from requests_resilience.vinci import mount

KEY = "sk-test-0123456789abcdef"
FAST = Retry(max_attempts=3, initial_delay=0.01, max_delay=0.05)


def sync_only(call: Call, next: Next) -> requests.Response:
    """A custom policy without an async form."""
    return next(call)


def test_a_mounted_client_talks_to_the_api(fake_vinci: FakeVinciServer) -> None:
    """The new client adds the key, retries and maps errors under the base URL only."""
    fake_vinci.script(Fault.status(503, retry_after="0"), path="/billing/balance")
    given = httpx.Client(headers={"X-App": "demo"}, timeout=5)
    with mount(
        given, api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, retry=FAST
    ) as client:
        assert isinstance(client, httpx.Client)
        assert client is not given
        assert client.get(fake_vinci.url("/billing/balance")).json()["balance_usd"] == 100.0
        with pytest.raises(NotFoundError):
            client.get(fake_vinci.url("/status/req_missing"))
        outside = client.get(f"http://{fake_vinci.host}:{fake_vinci.port}/elsewhere")
    assert outside.status_code == 404  # a plain response: no pipeline, no typed error
    first, second, _, last = fake_vinci.requests
    assert (first.fault, second.fault) == ("status", None)  # the 503 was retried
    assert second.headers["Authorization"] == f"Bearer {fake_vinci.api_key}"
    sent = {name.lower(): value for name, value in second.headers.items()}
    assert sent["x-app"] == "demo"  # the given client's options are kept
    assert "Authorization" not in last.headers  # the key never leaves the prefix


def test_a_mounted_async_client_talks_to_the_api(fake_vinci: FakeVinciServer) -> None:
    """The same for httpx.AsyncClient, through AsyncResilientTransport."""
    fake_vinci.script(Fault.rate_limited(retry_after=0), path="/billing/balance")

    async def main() -> tuple[float, int]:
        given = httpx.AsyncClient(timeout=5)
        async with mount(
            given, api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, retry=FAST
        ) as client:
            assert isinstance(client, httpx.AsyncClient)
            balance = (await client.get(fake_vinci.url("/billing/balance"))).json()
            with pytest.raises(NotFoundError):
                await client.get(fake_vinci.url("/status/req_missing"))
            outside = await client.get(f"http://{fake_vinci.host}:{fake_vinci.port}/x")
            return balance["balance_usd"], outside.status_code

    assert asyncio.run(main()) == (100.0, 404)
    assert [r.fault for r in fake_vinci.requests] == ["status", None, None, None]
    assert "Authorization" not in fake_vinci.requests[-1].headers


def test_a_wrong_key_is_an_authentication_error(fake_vinci: FakeVinciServer) -> None:
    """The server's 401 becomes AuthenticationError on an httpx client too."""
    with (
        mount(
            httpx.Client(timeout=5), api_key="sk-wrong-key-000000", base_url=fake_vinci.base_url
        ) as client,
        pytest.raises(AuthenticationError),
    ):
        client.get(fake_vinci.url("/billing/balance"))


def test_the_given_clients_transport_and_options_are_reused() -> None:
    """The wrapped transport is the given client's own; its base URL and hooks stay."""
    seen: list[httpx.Request] = []
    hooked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    given = httpx.Client(
        transport=httpx.MockTransport(handler),
        base_url="https://tryvinci.com",
        event_hooks={"request": [lambda request: hooked.append(request.url.path)]},
    )
    client = mount(given, api_key=KEY, retry=None, breaker=None, rate_limit=None)
    assert client.base_url == given.base_url
    client.get("/api/v1/billing/balance")
    client.get("/pricing")  # same origin, outside the API prefix
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in seen[1].headers
    assert hooked == ["/api/v1/billing/balance", "/pricing"]
    client.close()


def test_an_async_client_refuses_a_policy_without_an_async_form() -> None:
    """A sync-only extra policy cannot run under AsyncClient: refused when mounted."""
    with pytest.raises(ConfigurationError, match="async"):
        mount(httpx.AsyncClient(), api_key=KEY, extra_policies=[sync_only])


def test_a_sync_client_takes_a_sync_only_policy() -> None:
    """The same policy is fine in an httpx.Client (the sync pipeline)."""
    client = mount(httpx.Client(), api_key=KEY, extra_policies=[sync_only])
    assert isinstance(client, httpx.Client)
    client.close()


def test_the_async_transport_is_mounted_for_the_origin() -> None:
    """The API's origin gets the router; the preset runs in AsyncResilientTransport."""
    client = mount(httpx.AsyncClient(), api_key=KEY)
    router = client._transport_for_url(httpx.URL("https://tryvinci.com/api/v1/status/x"))
    assert isinstance(router._resilient, AsyncResilientTransport)  # type: ignore[attr-defined]
    asyncio.run(client.aclose())


@pytest.mark.parametrize("thing", [object(), "https://tryvinci.com"])
def test_mount_rejects_what_is_not_a_session_or_client(thing: object) -> None:
    """Anything else is a ConfigurationError naming what it takes."""
    with pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient"):
        mount(thing, api_key=KEY)  # type: ignore[type-var]


def test_mount_rejects_a_closed_client() -> None:
    """A closed client cannot lend its transports."""
    given = httpx.Client()
    given.close()
    with pytest.raises(ConfigurationError, match="closed"):
        mount(given, api_key=KEY)

"""`vinci.mount` for httpx: a new client whose Vinci requests go through the preset.

An httpx client cannot be re-mounted once made (its ``mounts`` are read in
``__init__``), and httpx mounts match a scheme, a host and a port, never a path. So
`mount` builds a *new* client from the given one::

    vinci.mount(httpx.Client(http2=True, headers=...))
      └─ httpx.Client(**the given client's options, transport=..., mounts={...})
          └─ mounts["https://tryvinci.com"] = _PrefixRouter
              ├─ URL under "https://tryvinci.com/api/v1/"   -> ResilientTransport
              │                                               (the preset pipeline)
              │                                                 └─ the given client's
              │                                                    transport for the URL
              └─ any other URL of that origin                 -> that same transport

The new client takes over the given client's transports (its pool, HTTP/2, proxies,
limits, TLS), so nothing is configured twice and no connection is opened twice; the
given client's options (base URL, headers, cookies, auth, params, timeout, redirects,
event hooks, ``trust_env``, default encoding) are copied. Use the returned client in
its place: closing it closes the transports the two share.

This module imports httpx at import time; `_preset.mount` imports it only when given
an httpx client, so ``import requests_resilience.vinci`` does not need the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from requests_resilience._errors import ConfigurationError
from requests_resilience._httpx import AsyncResilientTransport, ResilientTransport

if TYPE_CHECKING:
    from requests_resilience._pipeline import Pipeline

__all__ = ["mount_async_client", "mount_client"]


def _prefix_of(base: str) -> tuple[str, str]:
    """The normalised URL prefix under the base (``.../api/v1/``) and its origin pattern.

    Both go through `httpx.URL`, so they compare equal to the URLs httpx sends: a
    lower-cased host and no default port.
    """
    url = httpx.URL(base + "/")
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    return str(url), origin


class _PrefixRouter(httpx.BaseTransport):
    """Send URLs under `prefix` through `resilient`, the rest of the origin to `plain`."""

    def __init__(self, prefix: str, resilient: ResilientTransport, plain: httpx.BaseTransport):
        self._prefix = prefix
        self._resilient = resilient
        self._plain = plain

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(self._prefix):
            return self._resilient.handle_request(request)
        return self._plain.handle_request(request)

    def close(self) -> None:
        self._resilient.close()  # closes `plain`, the transport it wraps


class _AsyncPrefixRouter(httpx.AsyncBaseTransport):
    """`_PrefixRouter` for `httpx.AsyncClient`."""

    def __init__(
        self, prefix: str, resilient: AsyncResilientTransport, plain: httpx.AsyncBaseTransport
    ):
        self._prefix = prefix
        self._resilient = resilient
        self._plain = plain

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(self._prefix):
            return await self._resilient.handle_async_request(request)
        return await self._plain.handle_async_request(request)

    async def aclose(self) -> None:
        await self._resilient.aclose()  # closes `plain` and the pipeline's asyncio Redis


def _options_of(client: httpx.Client | httpx.AsyncClient) -> dict[str, Any]:
    """The given client's options, as the keyword arguments of a new client.

    The transports are httpx's private attributes (``_transport``, ``_mounts``): no
    public accessor exists, and reusing them is what keeps the pool, HTTP/2, proxies
    and limits exactly as the user configured them.
    """
    if client.is_closed:
        msg = "mount() needs an open httpx client; this one is closed"
        raise ConfigurationError(msg)
    return {
        "auth": client.auth,
        "params": client.params,
        "headers": client.headers,
        "cookies": client.cookies,
        "timeout": client.timeout,
        "follow_redirects": client.follow_redirects,
        "max_redirects": client.max_redirects,
        "event_hooks": client.event_hooks,
        "base_url": client.base_url,
        "trust_env": client.trust_env,
        "default_encoding": getattr(client, "_default_encoding", "utf-8"),
        "transport": client._transport,  # private to httpx: see the docstring
    }


def _mounts_of(client: httpx.Client | httpx.AsyncClient) -> dict[str, Any]:
    """The given client's mounts, keyed by their patterns' text (as httpx takes them)."""
    mounts = client._mounts  # private to httpx: see `_options_of`
    return {pattern.pattern: transport for pattern, transport in mounts.items()}


def mount_client(client: httpx.Client, base: str, pipeline: Pipeline) -> httpx.Client:
    """A new `httpx.Client` like `client`, sending URLs under `base` through `pipeline`."""
    prefix, origin = _prefix_of(base)
    plain = client._transport_for_url(httpx.URL(prefix))  # private to httpx: see `_options_of`
    router = _PrefixRouter(prefix, ResilientTransport(pipeline, plain), plain)
    return httpx.Client(**_options_of(client), mounts={**_mounts_of(client), origin: router})


def mount_async_client(
    client: httpx.AsyncClient, base: str, pipeline: Pipeline
) -> httpx.AsyncClient:
    """`mount_client` for `httpx.AsyncClient` (every policy needs its async form)."""
    prefix, origin = _prefix_of(base)
    plain = client._transport_for_url(httpx.URL(prefix))  # private to httpx: see `_options_of`
    router = _AsyncPrefixRouter(prefix, AsyncResilientTransport(pipeline, plain), plain)
    return httpx.AsyncClient(**_options_of(client), mounts={**_mounts_of(client), origin: router})

"""One call through a pipeline on each of the three transports, returning the response.

`tests/test_transports.py` asserts status codes; the fallback and chaos tests need the
response itself (its body, its fallback mark), so `Transport.send` returns it, read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import requests

from requests_resilience import Pipeline, mount
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport

KINDS = ("requests", "httpx", "httpx-async")


class Transport:
    """requests.Session + PipelineAdapter, httpx.Client, or httpx.AsyncClient."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def send(
        self, pipeline: Pipeline, method: str, url: str, json: dict[str, Any] | None = None
    ) -> requests.Response | httpx.Response:
        """Send one call; the response with its body read (an error raises)."""
        if self.kind == "requests":
            with requests.Session() as session:
                mount(session, "http://", pipeline)
                response = session.request(method, url, json=json)
                response.content  # noqa: B018 - read while the session is open
                return response
        if self.kind == "httpx":
            with httpx.Client(transport=ResilientTransport(pipeline)) as client:
                return client.request(method, url, json=json)

        async def main() -> httpx.Response:
            async with httpx.AsyncClient(transport=AsyncResilientTransport(pipeline)) as client:
                return await client.request(method, url, json=json)

        return asyncio.run(main())

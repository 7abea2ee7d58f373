"""Write your own policy: a function (call, next) -> Response, in about ten lines.

This one adds a correlation header to each attempt and answers repeated GETs from a
small cache without touching the network. Runs against the embedded fake server:

    python examples/custom_policy.py
"""

from __future__ import annotations

import uuid

import requests

from requests_resilience import APIKeyAuth, Call, Next, Pipeline, StatusErrors, mount
from requests_resilience.testing import FakeVinciServer


def correlation_id(call: Call, next: Next) -> requests.Response:
    """Tag every attempt with a fresh X-Correlation-ID."""
    call.request.headers["X-Correlation-ID"] = uuid.uuid4().hex
    return next(call)


class GetCache:
    """Serve repeated GETs of the same URL from memory (a policy class: name + send)."""

    name = "get_cache"

    def __init__(self) -> None:
        self._store: dict[str, requests.Response] = {}

    def send(self, call: Call, next: Next) -> requests.Response:
        if call.request.method != "GET":
            return next(call)
        key = call.request.url or ""
        if key not in self._store:
            self._store[key] = next(call)
        return self._store[key]

    def __repr__(self) -> str:
        return f"GetCache(<{len(self._store)} cached>)"


def main() -> None:
    with FakeVinciServer() as server, requests.Session() as session:
        pipeline = Pipeline(StatusErrors(), GetCache(), correlation_id, APIKeyAuth(server.api_key))
        mount(session, server.base_url + "/", pipeline)
        print(pipeline.describe())
        for _ in range(3):
            session.get(server.url("/billing/balance"))
        print("requests that reached the server:", server.request_count)
        print("correlation id sent:", server.requests[-1].headers["X-Correlation-ID"])


if __name__ == "__main__":
    main()

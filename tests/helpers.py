"""Small builders shared by the unit tests (no network)."""

from __future__ import annotations

import http
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

import requests
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from requests.structures import CaseInsensitiveDict

from requests_resilience import Call, Next, Pipeline
from requests_resilience.testing import FakeClock


def prepared(
    method: str = "GET", url: str = "https://api.example.com/v1/things", **kwargs: Any
) -> requests.PreparedRequest:
    """A prepared request, as Session.send would pass it."""
    return requests.Request(method, url, **kwargs).prepare()


def response(
    status: int = 200,
    body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
    headers: Mapping[str, str] | None = None,
    request: requests.PreparedRequest | None = None,
    reason: str | None = None,
) -> requests.Response:
    """A requests.Response with an unread, in-memory body."""
    r = requests.Response()
    r.status_code = status
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    r.reason = reason
    r.headers = CaseInsensitiveDict(headers or {})
    raw: bytes
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    elif body is None:
        raw = b""
    else:
        raw = json.dumps(body).encode()
        r.headers.setdefault("Content-Type", "application/json")
    r.raw = io.BytesIO(raw)
    r.request = request if request is not None else prepared()
    r.url = r.request.url or ""
    return r


class ScriptedTransport:
    """A terminal step that returns (or raises) scripted outcomes and records calls."""

    def __init__(self, *outcomes: requests.Response | BaseException | Callable[[Call], Any]):
        self.outcomes = list(outcomes)
        self.calls: list[Call] = []

    def __call__(self, call: Call) -> requests.Response:
        self.calls.append(call)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, requests.Response):
            outcome.request = call.request
            return outcome
        result = outcome(call)
        assert isinstance(result, requests.Response)
        return result


def run(
    pipeline: Pipeline,
    transport: Next,
    request: requests.PreparedRequest | None = None,
    clock: FakeClock | None = None,
) -> requests.Response:
    """Run one call through `pipeline` with `transport` as the innermost step."""
    call = Call(
        request=request if request is not None else prepared(),
        clock=clock if clock is not None else pipeline.clock,
        redactor=pipeline.redactor,
    )
    return pipeline.wrap(transport)(call)


def points(reader: InMemoryMetricReader, name: str) -> list[NumberDataPoint]:
    """The data points of metric `name` that `reader` has collected."""
    data = reader.get_metrics_data()
    found: list[NumberDataPoint] = []
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)  # type: ignore[arg-type]
    return found

"""The API key never shows: not in exceptions, logs, spans, reprs, whatever the server sends.

With a distinctive key, the fault-matrix rows, a server that echoes the key back (in an
error ``detail``, in ``X-Request-ID``, in a JSON ``request_id``) and a short soak run
while structlog's ``capture_logs`` captures every event and an OpenTelemetry SDK
`InMemorySpanExporter` records every span. Then the key, or any 8-character piece of
it, must appear in none of: the events, the spans (as JSON), the exceptions' ``str``,
``repr``, ``traceback.format_exception``, ``detail``, ``request_id`` and history, and the
``repr``/``str`` of every public object that holds the key.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from requests_resilience import (
    APIKeyAuth,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    Call,
    Pipeline,
    PipelineAdapter,
    RateLimitError,
    ServerError,
    Tracing,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import VinciClient, build_pipeline, mount
from tests.reliability.conftest import HANG, KEY, within
from tests.reliability.test_fault_matrix import ROWS, Row, run_row
from tests.reliability.test_soak import MIX, run_soak

PIECE = 8
BALANCE = "/billing/balance"


def leaks(text: str, secret: str = KEY) -> list[str]:
    """The pieces of `secret` (the whole, or any 8 characters of it) found in `text`."""
    pieces = {secret} | {secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1)}
    return sorted(piece for piece in pieces if piece in text)


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Everything an application might print or log about an exception."""
    yield str(exc)
    yield repr(exc)
    yield "".join(traceback.format_exception(exc))
    for name in ("detail", "request_id", "message", "history", "retry_after", "breaker"):
        yield repr(getattr(exc, name, None))


class Recorder:
    """Captured structlog events and recorded spans, and the check that none leaks."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = Tracing(tracer_provider=self.provider)
        self.events: list[MutableMapping[str, Any]] = []

    def texts(self) -> Iterator[str]:
        """Every captured event and every finished span, as text."""
        yield from (repr(event) for event in self.events)
        yield from (span.to_json() for span in self.exporter.get_finished_spans())

    def assert_clean(self, extra: Iterable[str] = ()) -> None:
        """No text holds the key; and the capture did capture something."""
        assert self.events or self.exporter.get_finished_spans(), "nothing was recorded"
        for text in [*self.texts(), *extra]:
            assert leaks(text) == [], f"the key leaked into: {text[:300]}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Captures structlog events and OpenTelemetry spans for one test."""
    rec = Recorder()
    with capture_logs() as events:
        rec.events = events
        yield rec
    rec.provider.shutdown()


@pytest.mark.parametrize("row", ROWS)
def test_no_matrix_row_leaks_the_key(
    row: Row, server: FakeVinciServer, clock: FakeClock, recorder: Recorder
) -> None:
    """Under every fault of the matrix, no log event, span or exception text holds the key."""
    outcome = run_row(row, server, clock, tracing=recorder.tracing)
    texts = list(exception_texts(outcome.error)) if outcome.error is not None else []
    recorder.assert_clean(texts)


ECHOES = [
    pytest.param(
        Fault.status(
            500,
            headers={"X-Request-ID": KEY},
            body={"detail": f"upstream rejected Bearer {KEY}", "request_id": KEY},
        ),
        ServerError,
        id="500-key-in-detail-header-and-body-id",
    ),
    pytest.param(
        Fault.status(401, body={"detail": f"Invalid API key: {KEY[:14]}...", "request_id": KEY}),
        AuthenticationError,
        id="401-key-prefix-in-detail-key-as-body-id",
    ),
    pytest.param(
        Fault.body(400, f"bad header Authorization: Bearer {KEY}", content_type="text/plain"),
        BadRequestError,
        id="400-key-in-a-text-body",
    ),
    pytest.param(
        Fault.status(429, retry_after="0", headers={"X-Request-ID": f"req-{KEY[3:]}"}),
        RateLimitError,
        id="429-key-in-request-id-header",
    ),
]


@pytest.mark.parametrize(("fault", "error"), ECHOES)
@pytest.mark.parametrize("operation", ["session.get", "client.text_to_video", "client.status"])
def test_a_server_that_echoes_the_key_does_not_leak_it(
    fault: Fault,
    error: type[APIStatusError],
    operation: str,
    server: FakeVinciServer,
    clock: FakeClock,
    recorder: Recorder,
) -> None:
    """A key echoed in detail, X-Request-ID or request_id is redacted everywhere."""
    server.script(*(fault,) * 5)
    with requests.Session() as session:
        mount(
            session, api_key=KEY, base_url=server.base_url, clock=clock, tracing=recorder.tracing
        )
        with VinciClient(session, base_url=server.base_url, balance_check=False) as client:
            calls = {
                "session.get": lambda: session.get(server.url(BALANCE), timeout=5),
                "client.text_to_video": lambda: client.text_to_video("a fox"),
                "client.status": lambda: client.status("req_123"),
            }
            with pytest.raises(error) as caught:
                within(HANG, calls[operation])
    texts = list(exception_texts(caught.value))
    # What the server echoed did reach the exception, the log events and the spans.
    assert "[REDACTED]" in "".join(texts)
    assert "[REDACTED]" in "".join(recorder.texts())
    recorder.assert_clean(texts)


def test_the_soak_mix_does_not_leak_the_key(recorder: Recorder) -> None:
    """A short soak with key-echoing faults in the mix: no event, span or error leaks it."""
    echo = Fault.status(502, headers={"X-Request-ID": KEY}, body={"detail": f"key {KEY}"})
    with FakeVinciServer(api_keys=(KEY,), balance_usd=1_000_000.0) as server:
        report = run_soak(
            server,
            0.5,
            threads=8,
            tracing=recorder.tracing,
            keep_errors=True,
            mix=(*MIX, (echo, 10)),
        )
    assert report.unexpected == []
    assert report.errors
    texts = [text for exc in report.errors for text in exception_texts(exc)]
    recorder.assert_clean(texts)


def test_no_public_object_shows_the_key(server: FakeVinciServer, clock: FakeClock) -> None:
    """repr() and str() of everything that holds the key (or a new key) hide it."""
    auth = APIKeyAuth(KEY)
    pipeline = build_pipeline(api_key=KEY, clock=clock)
    adapter = PipelineAdapter(pipeline)
    call = Call(request=requests.Request("GET", server.url(BALANCE)).prepare(), clock=clock)
    auth.send(call, lambda c: requests.Response())
    objects: list[object] = [
        auth,
        pipeline,
        pipeline.redactor,
        adapter,
        call,
        call.request,
        Pipeline(auth),
        *pipeline.policies,
    ]
    texts = [pipeline.describe()]
    with requests.Session() as session:
        mount(session, api_key=KEY, base_url=server.base_url, clock=clock)
        objects.extend(session.adapters.values())
        with VinciClient(session, base_url=server.base_url, clock=clock) as client:
            objects.append(client)
            new_key = client.create_key("ci", rate_limit=20)
            objects.append(new_key)
            listed = client.list_keys()
            objects.extend(listed)
        adapter.close()
    texts.extend(text for obj in objects for text in (repr(obj), str(obj)))
    for text in texts:
        assert leaks(text) == [], f"the key shows in: {text[:200]}"
        assert leaks(text, new_key.api_key) == [], f"a new key shows in: {text[:200]}"
    with pytest.raises(TypeError, match="cannot be pickled"):
        auth.__reduce__()

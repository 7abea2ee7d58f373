"""The Tracing policy: one CLIENT span per attempt, operation() and route(), metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from opentelemetry import baggage, context, metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from requests_resilience import (
    APIKeyAuth,
    Attempt,
    Call,
    ConfigurationError,
    Pipeline,
    Retry,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience import _tracing as tracing_module
from requests_resilience._secrets import NO_SECRETS
from requests_resilience._tracing import Tracing, full_url, operation, route
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from tests.helpers import ScriptedTransport, prepared, response, run

BALANCE = "/billing/balance"
GENERATE = "/generate/text-to-video"
KEY = "sk-live-0123456789abcdef"


# -- fixtures ------------------------------------------------------------------------------


class Traces:
    """A fresh TracerProvider that keeps finished spans in memory."""

    def __init__(self, **options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**options)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_scope(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.instrumentation_scope.name == name]  # type: ignore[union-attr]

    @property
    def attempts(self) -> list[ReadableSpan]:
        return [s for s in self.by_scope("requests_resilience") if s.kind is SpanKind.CLIENT]


@pytest.fixture
def traces() -> Iterator[Traces]:
    """An isolated tracer provider (never the global one)."""
    t = Traces()
    yield t
    t.provider.shutdown()


@pytest.fixture
def reader() -> Iterator[tuple[InMemoryMetricReader, MeterProvider]]:
    """An isolated meter provider with an in-memory reader."""
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    yield metric_reader, provider
    provider.shutdown()


def no_metrics() -> metrics.MeterProvider:
    return metrics.NoOpMeterProvider()


def wire_session(
    server: FakeVinciServer, session: requests.Session, tracing: Tracing, **retry: Any
) -> requests.Session:
    """Mount StatusErrors -> Retry -> APIKeyAuth -> tracing on a fake clock (no waits)."""
    pipeline = Pipeline(
        StatusErrors(),
        Retry(budget=None, **retry),
        APIKeyAuth(server.api_key),
        tracing,
        clock=FakeClock(),
    )
    return mount(session, server.base_url + "/", pipeline)


def attr(span: ReadableSpan, name: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(name)


def span_id_of(traceparent: str | None) -> int:
    assert traceparent is not None
    return int(traceparent.split("-")[2], 16)


def durations(metric_reader: InMemoryMetricReader) -> list[HistogramDataPoint]:
    data = metric_reader.get_metrics_data()
    assert data is not None
    points: list[HistogramDataPoint] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "http.client.request.duration":
                    assert metric.unit == "s"
                    points.extend(metric.data.data_points)  # type: ignore[arg-type]
    return points


# -- three attempts over real HTTP ---------------------------------------------------------


def test_503_503_200_over_http_gives_three_client_spans_with_resend_counts(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """Each wire attempt gets a CLIENT span; resend_count is absent, then 1, then 2."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path=BALANCE)
    with session.get(fake_vinci.url(BALANCE)) as got:
        assert got.status_code == 200
    spans = traces.attempts
    assert [s.name for s in spans] == ["GET", "GET", "GET"]
    assert [attr(s, "http.request.resend_count") for s in spans] == [None, 1, 2]
    assert [attr(s, "http.response.status_code") for s in spans] == [503, 503, 200]
    assert [attr(s, "error.type") for s in spans] == ["503", "503", None]
    assert [s.status.status_code for s in spans] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    first = spans[0]
    assert attr(first, "http.request.method") == "GET"
    assert attr(first, "server.address") == "127.0.0.1"
    assert attr(first, "server.port") == fake_vinci.port
    assert attr(first, "url.full") == fake_vinci.url(BALANCE)
    assert attr(first, "network.protocol.version") == "1.1"


def test_each_attempt_carries_a_traceparent_naming_its_own_span(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """The server sees one traceparent per attempt, each naming that attempt's span."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path=BALANCE)
    session.get(fake_vinci.url(BALANCE)).close()
    sent = [span_id_of(r.headers.get("traceparent")) for r in fake_vinci.requests]
    assert sent == [s.context.span_id for s in traces.attempts]
    assert len(set(sent)) == 3


@pytest.mark.fake_vinci(send_request_id_header=True)
def test_request_id_header_goes_on_each_attempt_span(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """The X-Request-ID of every answer, failures included, lands on its attempt's span."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    fake_vinci.script(Fault.status(503), path=BALANCE)
    session.get(fake_vinci.url(BALANCE)).close()
    ids = [attr(s, "vinci.request_id") for s in traces.attempts]
    assert len(ids) == 2
    assert all(isinstance(i, str) and len(i) == 32 for i in ids)
    assert ids[0] != ids[1]


def test_request_id_from_a_creation_body_goes_on_the_span_and_the_operation(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """A JSON body's request_id is read (not streamed) and lands on both spans."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    with (
        operation("vinci.text_to_video", tracer_provider=traces.provider),
        session.post(fake_vinci.url(GENERATE), json={"prompt": "a fox"}) as got,
    ):
        request_id = got.json()["request_id"]
    (attempt,) = traces.attempts
    (parent,) = traces.by_scope("requests_resilience")[-1:]
    assert attr(attempt, "vinci.request_id") == request_id
    assert parent.name == "vinci.text_to_video"
    assert attr(parent, "vinci.request_id") == request_id


def test_operation_is_the_parent_of_every_attempt_and_holds_the_retry_waits(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """Inside operation(), one INTERNAL span sits over the three attempts, with two waits."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path=BALANCE)
    with operation("vinci.balance", tracer_provider=traces.provider, **{"vinci.kind": "read"}):
        session.get(fake_vinci.url(BALANCE)).close()
    parents = [s for s in traces.spans if s.name == "vinci.balance"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.kind is SpanKind.INTERNAL
    assert attr(parent, "vinci.kind") == "read"
    assert parent.parent is None
    assert all(s.parent is not None for s in traces.attempts)
    assert {s.parent.span_id for s in traces.attempts} == {parent.context.span_id}  # type: ignore[union-attr]
    waits = [e for e in parent.events if e.name == "requests_resilience.retry"]
    assert len(waits) == 2
    assert [e.attributes["requests_resilience.retry.attempt"] for e in waits] == [1, 2]  # type: ignore[index]
    assert {e.attributes["requests_resilience.retry.reason"] for e in waits} == {"status 503"}  # type: ignore[index]
    assert all(e.attributes["requests_resilience.retry.wait"] >= 0 for e in waits)  # type: ignore[index, operator]


def test_final_error_is_recorded_on_the_operation_span(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """When every attempt fails, the operation span records the ServerError and is ERROR."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
        max_attempts=2,
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path=BALANCE)
    with pytest.raises(ServerError), operation("vinci.balance", tracer_provider=traces.provider):
        session.get(fake_vinci.url(BALANCE))
    (parent,) = [s for s in traces.spans if s.name == "vinci.balance"]
    assert parent.status.status_code is StatusCode.ERROR
    assert attr(parent, "error.type") == "ServerError"
    (event,) = [e for e in parent.events if e.name == "exception"]
    assert "503" in str(event.attributes["exception.message"])  # type: ignore[index]
    assert [attr(s, "error.type") for s in traces.attempts] == ["503", "503"]


def test_route_names_the_span_and_sets_url_template(
    fake_vinci: FakeVinciServer, session: requests.Session, traces: Traces
) -> None:
    """Inside route(), the span is named "{METHOD} {template}" and carries url.template."""
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    with session.post(fake_vinci.url(GENERATE), json={"prompt": "a fox"}) as created:
        job = created.json()["request_id"]
    with route("/status/{request_id}"):
        session.get(fake_vinci.url(f"/status/{job}")).close()
    session.get(fake_vinci.url(BALANCE)).close()
    spans = traces.attempts
    assert [s.name for s in spans] == ["POST", "GET /status/{request_id}", "GET"]
    assert attr(spans[1], "url.template") == "/status/{request_id}"
    assert attr(spans[2], "url.template") is None


def test_duration_metric_is_recorded_per_attempt_with_semconv_attributes(
    fake_vinci: FakeVinciServer,
    session: requests.Session,
    traces: Traces,
    reader: tuple[InMemoryMetricReader, MeterProvider],
) -> None:
    """http.client.request.duration gets one point per attempt, 503s with error.type."""
    metric_reader, meter_provider = reader
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=meter_provider),
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path=BALANCE)
    session.get(fake_vinci.url(BALANCE)).close()
    points = {
        p.attributes["http.response.status_code"]: p  # type: ignore[index]
        for p in durations(metric_reader)
    }
    assert points[503].count == 2
    assert points[200].count == 1
    assert dict(points[503].attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": fake_vinci.port,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert "error.type" not in (points[200].attributes or {})


# -- unit tests on a scripted transport -----------------------------------------------------


def tracing_pipeline(tracing: Tracing, *policies: Any) -> Pipeline:
    return Pipeline(*policies, APIKeyAuth(KEY), tracing, clock=FakeClock())


def test_exception_sets_error_type_and_records_a_scrubbed_exception(traces: Traces) -> None:
    """A transport exception: error.type is its type name; no query or key in the event."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    leak = f"boom for https://api.example.com/v1/things?api_key={KEY} with {KEY}"
    transport = ScriptedTransport(requests.ConnectionError(leak))
    with pytest.raises(requests.ConnectionError):
        run(tracing_pipeline(tracing), transport)
    (span,) = traces.attempts
    assert attr(span, "error.type") == "ConnectionError"
    assert span.status.status_code is StatusCode.ERROR
    assert KEY not in (span.status.description or "")
    (event,) = span.events
    assert event.name == "exception"
    for value in (event.attributes or {}).values():
        assert KEY not in str(value)
        assert KEY[:8] not in str(value)


def test_url_full_hides_credentials_secret_query_values_and_pipeline_secrets(
    traces: Traces,
) -> None:
    """url.full: userinfo and secret-looking query values become REDACTED; keys vanish."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    url = f"https://bob:hunter2@api.example.com/v1/x?page=2&api_key=abc&Signature=s&q={KEY}#f"
    run(tracing_pipeline(tracing), ScriptedTransport(response(200)), prepared(url=url))
    (span,) = traces.attempts
    assert attr(span, "url.full") == (
        "https://REDACTED:REDACTED@api.example.com/v1/x"
        "?page=2&api_key=REDACTED&Signature=REDACTED&q=[REDACTED]"
    )
    assert attr(span, "server.address") == "api.example.com"
    assert attr(span, "server.port") == 443


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/p", "http://h/p"),
        ("http://h/p?a=1&b", "http://h/p?a=1&b"),
        ("http://h/p?access-token=x&X-Goog-Signature=y", "http://h/p?access-token=REDACTED&X-Goog-Signature=REDACTED"),
        ("http://h/p?sig=x&code=y&zip=1", "http://h/p?sig=REDACTED&code=REDACTED&zip=1"),
        ("http://u@h:8080/p", "http://REDACTED:REDACTED@h:8080/p"),
    ],
)  # fmt: skip
def test_full_url_redaction_cases(url: str, expected: str) -> None:
    """full_url() redacts what the semantic conventions ask, and only that."""
    assert full_url(url, NO_SECRETS) == expected


@pytest.mark.parametrize(
    ("attempt", "history", "expected"),
    [
        (2, (Attempt(number=1, status_code=503),), 1),
        (3, (Attempt(number=1, status_code=503), Attempt(number=2, error="CircuitOpenError")), 1),
        (2, (Attempt(number=1, error="CircuitOpenError"),), None),
        (3, (), 2),
    ],
)
def test_resend_count_leaves_out_attempts_an_open_breaker_kept_off_the_wire(
    traces: Traces, attempt: int, history: tuple[Attempt, ...], expected: int | None
) -> None:
    """resend_count counts earlier wire attempts; CircuitOpenError ones never left."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    handler = tracing_pipeline(tracing).wrap(ScriptedTransport(response(200)))
    handler(Call(request=prepared(), attempt=attempt, history=history))
    (span,) = traces.attempts
    assert attr(span, "http.request.resend_count") == expected


def test_unknown_method_is_reported_as_other(traces: Traces) -> None:
    """A method outside the known set: name "HTTP", method "_OTHER", original kept."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    run(tracing_pipeline(tracing), ScriptedTransport(response(200)), prepared("PURGE"))
    (span,) = traces.attempts
    assert span.name == "HTTP"
    assert attr(span, "http.request.method") == "_OTHER"
    assert attr(span, "http.request.method_original") == "PURGE"


def test_streamed_or_non_json_bodies_are_not_parsed_for_a_request_id(traces: Traces) -> None:
    """The request id is read from a body only when it was read and is JSON."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    text = response(200, '{"request_id": "abc"}', headers={"Content-Type": "text/plain"})
    run(tracing_pipeline(tracing), ScriptedTransport(text))
    unread = response(200, {"request_id": "abc"})  # never read: as with stream=True
    run(tracing_pipeline(tracing), ScriptedTransport(unread))
    read = response(200, {"request_id": "abc"})
    read.content  # noqa: B018
    run(tracing_pipeline(tracing), ScriptedTransport(read))
    assert [attr(s, "vinci.request_id") for s in traces.attempts] == [None, None, "abc"]


def test_request_id_attribute_is_an_option(traces: Traces) -> None:
    """request_id_attribute renames the attribute; None leaves it out."""
    headers = {"X-Request-ID": "req-1"}
    named = Tracing(
        tracer_provider=traces.provider,
        meter_provider=no_metrics(),
        request_id_attribute="acme.request_id",
    )
    run(tracing_pipeline(named), ScriptedTransport(response(200, headers=headers)))
    off = Tracing(
        tracer_provider=traces.provider, meter_provider=no_metrics(), request_id_attribute=None
    )
    run(tracing_pipeline(off), ScriptedTransport(response(200, headers=headers)))
    first, second = traces.attempts
    assert attr(first, "acme.request_id") == "req-1"
    assert not any("request_id" in k for k in (second.attributes or {}))


def test_hooks_see_the_span_request_and_response(traces: Traces) -> None:
    """request_hook(span, request) and response_hook(span, request, response) run."""
    seen: list[str] = []

    def on_request(span: trace.Span, request: requests.PreparedRequest) -> None:
        span.set_attribute("app.tenant", "acme")
        seen.append(f"request {request.method}")

    def on_response(
        span: trace.Span, request: requests.PreparedRequest, got: requests.Response
    ) -> None:
        seen.append(f"response {got.status_code}")

    tracing = Tracing(
        tracer_provider=traces.provider,
        meter_provider=no_metrics(),
        request_hook=on_request,
        response_hook=on_response,
    )
    run(tracing_pipeline(tracing), ScriptedTransport(response(201)))
    assert seen == ["request GET", "response 201"]
    assert attr(traces.attempts[0], "app.tenant") == "acme"


def test_a_failing_hook_does_not_break_the_request(traces: Traces) -> None:
    """A hook that raises is ignored: the response still comes back."""

    def broken(span: trace.Span, request: requests.PreparedRequest) -> None:
        raise RuntimeError

    tracing = Tracing(
        tracer_provider=traces.provider, meter_provider=no_metrics(), request_hook=broken
    )
    got = run(tracing_pipeline(tracing), ScriptedTransport(response(200)))
    assert got.status_code == 200
    assert len(traces.attempts) == 1


def test_without_an_sdk_no_attribute_is_computed_but_context_is_propagated(
    traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API only: no span work at all, yet the caller's span and baggage reach the wire."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError

    monkeypatch.setattr(tracing_module, "full_url", forbidden)
    monkeypatch.setattr(tracing_module, "_add_server", forbidden)
    monkeypatch.setattr(tracing_module, "debug_enabled", lambda: False)
    tracing = Tracing(tracer_provider=trace.NoOpTracerProvider(), meter_provider=no_metrics())
    transport = ScriptedTransport(response(200))
    user_tracer = traces.provider.get_tracer("app")
    with user_tracer.start_as_current_span("handler") as handler:
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            run(tracing_pipeline(tracing), transport)
        finally:
            context.detach(token)
    headers = transport.calls[0].request.headers
    assert span_id_of(headers["traceparent"]) == handler.get_span_context().span_id
    assert headers["baggage"] == "tenant=acme"
    assert traces.attempts == []


def test_a_sampled_out_span_costs_no_attribute_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-recording span: no url.full is built, the unsampled traceparent still goes."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError

    monkeypatch.setattr(tracing_module, "full_url", forbidden)
    monkeypatch.setattr(tracing_module, "debug_enabled", lambda: False)
    sampled_out = Traces(sampler=ALWAYS_OFF)
    tracing = Tracing(tracer_provider=sampled_out.provider, meter_provider=no_metrics())
    transport = ScriptedTransport(response(503))
    run(tracing_pipeline(tracing), transport)
    flags = transport.calls[0].request.headers["traceparent"].rsplit("-", 1)[1]
    assert int(flags, 16) & 1 == 0  # not sampled
    assert sampled_out.spans == []
    sampled_out.provider.shutdown()


def test_the_global_provider_is_looked_up_lazily(
    traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Tracing built before the SDK was configured starts tracing once it is."""
    tracing = Tracing(meter_provider=no_metrics())
    pipeline = tracing_pipeline(tracing)
    run(pipeline, ScriptedTransport(response(200)))
    # What trace.set_tracer_provider() does, which a process may do only once.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", traces.provider)
    run(pipeline, ScriptedTransport(response(200)))
    assert len(traces.attempts) == 1


def test_a_given_provider_is_used_whatever_its_truth_value(
    traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The given provider is the one used, not the global, even one that is "falsy"."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", traces.provider)  # the global one

    class Empty(TracerProvider):
        def __len__(self) -> int:  # a provider that is also an (empty) container
            return 0

    provider = Empty()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(tracer_provider=provider, meter_provider=no_metrics())
    run(tracing_pipeline(tracing), ScriptedTransport(response(200)))
    run(tracing_pipeline(tracing), ScriptedTransport(response(200)))  # the cached recorders
    assert len(exporter.get_finished_spans()) == 2
    assert traces.attempts == []  # the global one got none


def test_suppress_instrumentation_turns_spans_off(traces: Traces) -> None:
    """Inside suppress_instrumentation() (an exporter's own request) nothing is recorded."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    token = context.attach(context.set_value(tracing_module._SUPPRESS, True))
    try:
        run(tracing_pipeline(tracing), ScriptedTransport(response(200)))
    finally:
        context.detach(token)
    assert traces.spans == []


def test_an_application_suppressing_http_instrumentation_gets_no_span(traces: Traces) -> None:
    """suppress_http_instrumentation() without an HTTP span above us is honoured."""
    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    token = context.attach(context.set_value(tracing_module._SUPPRESS_HTTP, True))
    try:
        run(tracing_pipeline(tracing), ScriptedTransport(response(200)))
    finally:
        context.detach(token)
    assert traces.spans == []


def test_instrumentations_below_see_http_instrumentation_suppressed(traces: Traces) -> None:
    """While an attempt runs, the suppress-HTTP key is set, so urllib3 adds no span."""
    seen: list[object] = []

    def transport(call: Any) -> requests.Response:
        seen.append(context.get_value(tracing_module._SUPPRESS_HTTP))
        return response(200, request=call.request)

    tracing = Tracing(tracer_provider=traces.provider, meter_provider=no_metrics())
    run(tracing_pipeline(tracing), transport)
    assert seen == [True]
    assert context.get_value(tracing_module._SUPPRESS_HTTP) is None


# -- with opentelemetry-instrumentation-requests also active -------------------------------


@pytest.fixture
def requests_instrumented(traces: Traces) -> Iterator[Any]:
    """opentelemetry-instrumentation-requests, active for one test, same provider."""
    import opentelemetry.instrumentation.requests as instrumentation

    instrumentor = instrumentation.RequestsInstrumentor()
    yield lambda **options: instrumentor.instrument(tracer_provider=traces.provider, **options)
    instrumentor.uninstrument()


def test_with_the_requests_instrumentation_attempts_nest_under_its_span(
    fake_vinci: FakeVinciServer,
    session: requests.Session,
    traces: Traces,
    requests_instrumented: Any,
) -> None:
    """Its one span per Session.send becomes the parent; the wire sees only our spans."""
    requests_instrumented()
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    fake_vinci.script(Fault.status(503), Fault.status(503), path=BALANCE)
    session.get(fake_vinci.url(BALANCE)).close()
    (theirs,) = traces.by_scope("opentelemetry.instrumentation.requests")
    ours = traces.attempts
    assert len(ours) == 3
    assert {s.parent.span_id for s in ours} == {theirs.context.span_id}  # type: ignore[union-attr]
    sent = [span_id_of(r.headers.get("traceparent")) for r in fake_vinci.requests]
    assert sent == [s.context.span_id for s in ours]


def test_excluding_the_mounted_api_from_the_requests_instrumentation_leaves_only_ours(
    fake_vinci: FakeVinciServer,
    session: requests.Session,
    traces: Traces,
    requests_instrumented: Any,
) -> None:
    """With excluded_urls covering the API, each attempt has exactly one span: ours."""
    requests_instrumented(excluded_urls="127.0.0.1")
    wire_session(
        fake_vinci,
        session,
        Tracing(tracer_provider=traces.provider, meter_provider=no_metrics()),
    )
    fake_vinci.script(Fault.status(503), path=BALANCE)
    session.get(fake_vinci.url(BALANCE)).close()
    assert traces.by_scope("opentelemetry.instrumentation.requests") == []
    assert len(traces.attempts) == 2


# -- construction -----------------------------------------------------------------------------


def test_name_and_repr_show_the_settings() -> None:
    """The policy is named "tracing" and its repr lists its options."""

    def tag(span: trace.Span, request: requests.PreparedRequest) -> None: ...

    tracing = Tracing(tracer_provider=TracerProvider(), request_hook=tag)
    assert tracing.name == "tracing"
    assert repr(tracing) == (
        "Tracing(tracer_provider=<TracerProvider>, meter_provider=<global>, "
        "request_id_attribute='vinci.request_id', request_hook=tag, response_hook=None)"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"request_hook": 3},
        {"response_hook": "no"},
        {"request_id_attribute": " "},
        {"tracer_provider": object()},
        {"meter_provider": object()},
    ],
)
def test_bad_options_fail_when_the_pipeline_is_built(options: dict[str, Any]) -> None:
    """A bad option raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        Tracing(**options)


def test_operation_and_route_reject_empty_names() -> None:
    """operation("") and route("") fail at once."""
    with pytest.raises(ConfigurationError), operation(""):
        pass
    with pytest.raises(ConfigurationError), route(""):
        pass


def test_operation_without_an_sdk_yields_a_non_recording_span() -> None:
    """With only the API, operation() works and records nothing."""
    with operation("vinci.balance", tracer_provider=trace.NoOpTracerProvider()) as span:
        assert not span.is_recording()

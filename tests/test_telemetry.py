"""What policies report: structlog events, span events and metrics, never a secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import requests
import structlog
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from requests_resilience import (
    APIKeyAuth,
    BreakerStateChange,
    NotFoundError,
    Pipeline,
    Retry,
    RetryDetails,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience import _telemetry as telemetry
from requests_resilience._telemetry import breaker_state_changed, retry_scheduled
from requests_resilience._tracing import Tracing, operation
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from tests.helpers import ScriptedTransport, points, response, run

BALANCE = "/billing/balance"
KEY = "sk-live-0123456789abcdef"

RETRY = RetryDetails(
    policy="retry",
    method="GET",
    url="https://api.example.com/v1/things",
    attempt=1,
    wait=0.25,
    reason="status 503",
    status_code=503,
    request_id="req-1",
    elapsed=0.01,
)
OPENED = BreakerStateChange(
    breaker="api.example.com",
    old_state="closed",
    new_state="open",
    failure_ratio=0.6,
    calls=10,
    retry_after=30.0,
)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog with its built-in defaults (as in an app that never configured it)."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**saved)


@pytest.fixture
def tracer_provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An isolated tracer provider with an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def counters(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The reports' meter provider, swapped for an isolated one with an in-memory reader."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(telemetry, "_meter_provider", lambda: provider)
    yield reader
    provider.shutdown()


def no_secret_in(entries: list[MutableMapping[str, Any]], *secrets: str) -> None:
    text = repr(entries)
    for secret in secrets:
        assert secret not in text
    assert "Authorization" not in text
    assert "Bearer" not in text


# -- the three reports ----------------------------------------------------------------------


def test_retry_scheduled_logs_a_warning_with_attempt_wait_reason_and_request_id(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """retry_scheduled() logs one warning with what the on-call engineer needs."""
    retry_scheduled(RETRY)
    assert logs == [
        {
            "event": "retry_scheduled",
            "log_level": "warning",
            "policy": "retry",
            "method": "GET",
            "url": "https://api.example.com/v1/things",
            "attempt": 1,
            "wait": 0.25,
            "reason": "status 503",
            "status_code": 503,
            "request_id": "req-1",
            "elapsed": 0.01,
        }
    ]


def test_retry_scheduled_adds_an_event_to_the_current_span(
    tracer_provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The wait and its reason become a span event on the span around the call."""
    provider, exporter = tracer_provider
    with operation("vinci.balance", tracer_provider=provider):
        retry_scheduled(RETRY)
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "requests_resilience.retry"
    assert dict(event.attributes or {}) == {
        "requests_resilience.retry.policy": "retry",
        "requests_resilience.retry.attempt": 1,
        "requests_resilience.retry.wait": 0.25,
        "requests_resilience.retry.reason": "status 503",
        "http.request.method": "GET",
        "url.full": "https://api.example.com/v1/things",
        "http.response.status_code": 503,
        "requests_resilience.request_id": "req-1",
    }


def test_retry_scheduled_counts_retries_by_reason(counters: InMemoryMetricReader) -> None:
    """requests_resilience.retries goes up by one per retry, with the reason."""
    retry_scheduled(RETRY)
    retry_scheduled(RETRY)
    (point,) = points(counters, "requests_resilience.retries")
    assert point.value == 2
    assert dict(point.attributes or {}) == {
        "requests_resilience.retry.policy": "retry",
        "requests_resilience.retry.reason": "status 503",
        "http.request.method": "GET",
        "server.address": "api.example.com",
    }


def test_breaker_state_changed_logs_adds_an_event_and_counts(
    logs: list[MutableMapping[str, Any]],
    tracer_provider: tuple[TracerProvider, InMemorySpanExporter],
    counters: InMemoryMetricReader,
) -> None:
    """A breaker change is a warning, a span event and a counted change."""
    provider, exporter = tracer_provider
    with operation("vinci.balance", tracer_provider=provider):
        breaker_state_changed(OPENED)
    assert logs == [
        {
            "event": "breaker_state_changed",
            "log_level": "warning",
            "breaker": "api.example.com",
            "old_state": "closed",
            "new_state": "open",
            "failure_ratio": 0.6,
            "calls": 10,
            "retry_after": 30.0,
        }
    ]
    (event,) = exporter.get_finished_spans()[0].events
    assert event.name == "requests_resilience.breaker"
    assert event.attributes is not None
    assert event.attributes["requests_resilience.breaker.state"] == "open"
    (point,) = points(counters, "requests_resilience.breaker.state_changes")
    assert point.value == 1
    assert dict(point.attributes or {}) == {
        "requests_resilience.breaker.name": "api.example.com",
        "requests_resilience.breaker.previous_state": "closed",
        "requests_resilience.breaker.state": "open",
    }


def test_call_failed_logs_an_error_with_the_request_id(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """A final error is logged once, at error level, with request_id and attempts."""
    transport = ScriptedTransport(
        response(404, {"detail": "no such job"}, headers={"X-Request-ID": "req-9"})
    )
    with pytest.raises(NotFoundError):
        run(Pipeline(StatusErrors()), transport)
    (entry,) = [e for e in logs if e["event"] == "call_failed"]
    assert entry["log_level"] == "error"
    assert entry["error"] == "NotFoundError"
    assert entry["status_code"] == 404
    assert entry["request_id"] == "req-9"
    assert entry["attempts"] == 1
    assert entry["url"] == "https://api.example.com/v1/things"
    assert "no such job" in entry["message"]


def test_reports_without_a_span_or_an_sdk_do_nothing_but_log(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """With only the API (no span, no meter provider), the reports only log."""
    assert telemetry._counters() is None
    retry_scheduled(RETRY)
    breaker_state_changed(OPENED)
    assert [e["event"] for e in logs] == ["retry_scheduled", "breaker_state_changed"]


# -- quiet by default --------------------------------------------------------------------------


def test_unconfigured_structlog_logs_through_stdlib_at_its_levels(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Until structlog is configured: attempts at DEBUG, final errors at INFO, through stdlib."""
    pipeline = Pipeline(StatusErrors(), Tracing(meter_provider=metrics.NoOpMeterProvider()))
    with caplog.at_level(logging.WARNING, logger="requests_resilience"):
        assert telemetry.debug_enabled() is False
        with pytest.raises(ServerError):
            run(pipeline, ScriptedTransport(response(500)))
    assert [r for r in caplog.records if r.name == "requests_resilience"] == []
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="requests_resilience"):
        assert telemetry.debug_enabled() is True
        with pytest.raises(ServerError):
            run(pipeline, ScriptedTransport(response(500)))
    seen = [(r.levelno, r.requests_resilience["event"]) for r in caplog.records]  # type: ignore[attr-defined]
    assert seen == [(logging.DEBUG, "attempt"), (logging.INFO, "call_failed")]


def test_unconfigured_structlog_still_gets_the_retry_warning(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries and breaker changes are stdlib warnings: shown even with nothing configured."""
    with caplog.at_level(logging.WARNING, logger="requests_resilience"):
        retry_scheduled(RETRY)
        breaker_state_changed(OPENED)
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (logging.WARNING, "retry_scheduled"),
        (logging.WARNING, "breaker_state_changed"),
    ]


# -- end to end, over real HTTP ----------------------------------------------------------------


def test_a_retried_call_logs_every_attempt_and_retry_without_any_secret(
    fake_vinci: FakeVinciServer, session: requests.Session, logs: list[MutableMapping[str, Any]]
) -> None:
    """503, 503, 200: three attempt events, two retry warnings, no key anywhere."""
    key = fake_vinci.api_key
    echo = {"detail": f"upstream rejected key {key}", "request_id": "req-503"}
    fake_vinci.script(Fault.status(503, body=echo), Fault.status(503, body=echo), path=BALANCE)
    pipeline = Pipeline(
        StatusErrors(),
        Retry(budget=None),
        APIKeyAuth(key),
        Tracing(meter_provider=metrics.NoOpMeterProvider()),
        clock=FakeClock(),
    )
    mount(session, fake_vinci.base_url + "/", pipeline)
    session.get(fake_vinci.url(BALANCE), params={"api_key": key, "page": "1"}).close()
    attempts = [e for e in logs if e["event"] == "attempt"]
    retries = [e for e in logs if e["event"] == "retry_scheduled"]
    assert [e["status_code"] for e in attempts] == [503, 503, 200]
    assert [e["attempt"] for e in attempts] == [1, 2, 3]
    assert {e["log_level"] for e in attempts} == {"debug"}
    assert [e["request_id"] for e in attempts[:2]] == ["req-503", "req-503"]
    assert [(e["attempt"], e["reason"]) for e in retries] == [(1, "status 503"), (2, "status 503")]
    assert all(e["wait"] >= 0 for e in retries)
    assert [e["request_id"] for e in retries] == ["req-503", "req-503"]
    assert attempts[0]["url"] == fake_vinci.url(BALANCE)
    no_secret_in(logs, key, key[:8], key[-8:])


def test_a_failed_call_logs_the_final_error_without_any_secret(
    fake_vinci: FakeVinciServer, session: requests.Session, logs: list[MutableMapping[str, Any]]
) -> None:
    """Every attempt fails: one call_failed error event, whose message holds no key."""
    key = fake_vinci.api_key
    echo = {"detail": f"bad key {key}"}
    fake_vinci.script(Fault.status(503, body=echo), Fault.status(503, body=echo), path=BALANCE)
    pipeline = Pipeline(
        StatusErrors(),
        Retry(budget=None, max_attempts=2),
        APIKeyAuth(key),
        Tracing(meter_provider=metrics.NoOpMeterProvider()),
        clock=FakeClock(),
    )
    mount(session, fake_vinci.base_url + "/", pipeline)
    with pytest.raises(ServerError):
        session.get(fake_vinci.url(BALANCE), params={"token": key})
    (failed,) = [e for e in logs if e["event"] == "call_failed"]
    assert failed["attempts"] == 2
    assert failed["status_code"] == 503
    assert "[REDACTED]" in failed["message"]
    no_secret_in(logs, key, key[:8], key[-8:])


def test_no_span_attribute_or_event_holds_a_secret(
    fake_vinci: FakeVinciServer,
    session: requests.Session,
    tracer_provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Spans of a retried, failing call: the key is in no attribute and no event."""
    provider, exporter = tracer_provider
    key = fake_vinci.api_key
    fake_vinci.script(
        Fault.status(503, body={"detail": f"bad key {key}", "request_id": "req-503"}),
        Fault.reset(),
        path=BALANCE,
    )
    pipeline = Pipeline(
        StatusErrors(),
        Retry(budget=None, max_attempts=2),
        APIKeyAuth(key),
        Tracing(tracer_provider=provider, meter_provider=metrics.NoOpMeterProvider()),
        clock=FakeClock(),
    )
    mount(session, fake_vinci.base_url + "/", pipeline)
    with pytest.raises(requests.ConnectionError), operation("op", tracer_provider=provider):
        session.get(fake_vinci.url(BALANCE), params={"api_key": key})
    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    text = repr(
        [
            (dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events], s.status)
            for s in spans
        ]
    )
    assert key not in text
    assert key[:8] not in text
    assert "Bearer" not in text


def test_a_request_id_echoing_the_key_is_redacted_in_retry_reports(
    fake_vinci: FakeVinciServer, session: requests.Session, logs: list[MutableMapping[str, Any]]
) -> None:
    """A server that echoes the key as its request id does not leak it through a retry."""
    key = fake_vinci.api_key
    fake_vinci.script(Fault.status(503, body={"request_id": f"req {key}"}), path=BALANCE)
    pipeline = Pipeline(StatusErrors(), Retry(budget=None), APIKeyAuth(key), clock=FakeClock())
    mount(session, fake_vinci.base_url + "/", pipeline)
    session.get(fake_vinci.url(BALANCE)).close()
    assert [e["event"] for e in logs] == ["retry_scheduled"]
    no_secret_in(logs, key)


@pytest.mark.parametrize(("level", "expected"), [(logging.INFO, False), (logging.DEBUG, True)])
def test_debug_events_are_not_built_when_the_level_filters_them(
    level: int, expected: bool
) -> None:
    """With structlog configured above debug, the per-attempt event costs nothing."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    try:
        assert telemetry.debug_enabled() is expected
    finally:
        structlog.reset_defaults()
    assert telemetry.debug_enabled() is False  # unconfigured: quiet

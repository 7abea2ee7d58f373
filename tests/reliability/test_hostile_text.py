"""A hostile server's text never carries the key anywhere, and a redirect never takes it away.

Hand-written loopback servers (``http.server``, every byte of the status line and the
headers chosen by the test) echo the key in the reason phrase, in headers and in the
body, and redirect to a URL whose path holds the key. The full pipeline runs against
them (StatusErrors, Retry, CircuitBreaker, RateLimit, APIKeyAuth, Tracing, inside an
`operation` span) while structlog's ``capture_logs`` (or, unconfigured, the stdlib
logger through ``caplog``) records every event and an OpenTelemetry SDK
`InMemorySpanExporter` every span. Then the key, and every 8-character piece of it, is
searched for in the exception's ``str``, ``repr``, ``args``, traceback and pickled
bytes, in the request the exception keeps, in every log event and in every span.

Measured before the change (commit a1dc275): the key was in all eight of those texts in
each of the three scenarios below, and a redirect from host A to host B, mounted on
``"http://"``, delivered ``Authorization: Bearer <key>`` to B. After: none, and B gets
no Authorization header.
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from requests_resilience import (
    APIConnectionError,
    APIError,
    APIKeyAuth,
    AuthenticationError,
    CircuitBreaker,
    Pipeline,
    RateLimit,
    Retry,
    ServerError,
    StatusErrors,
    Tracing,
    mount,
    operation,
)
from requests_resilience.testing import FakeClock
from tests.reliability.conftest import HANG, within

#: A key distinctive enough that any 8-character piece of it in output is a leak.
KEY = "sk-hostile-Zq8Wm3Rt7Yb2Kx9Lp4NdV6"
PIECE = 8

#: A route's answer: status, reason phrase, headers, body.
Answer = tuple[int, str, dict[str, str], bytes]


def leaks(text: str) -> list[str]:
    """The pieces of the key (the whole, or any 8 characters of it) found in `text`."""
    pieces = {KEY} | {KEY[i : i + PIECE] for i in range(len(KEY) - PIECE + 1)}
    return sorted(piece for piece in pieces if piece in text)


@dataclass
class Server:
    """A loopback HTTP server that answers from `route` and records what it received."""

    route: Callable[[str], Answer]
    received: list[dict[str, str]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return int(self.httpd.server_address[1])

    def start(self) -> Server:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.received.append({"path": self.path, **dict(self.headers)})
                status, reason, headers, body = server.route(self.path)
                self.send_response(status, reason)  # the reason phrase, verbatim
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEAD = _dead_port()


def hostile(path: str) -> Answer:
    """The routes of a server that puts the key in everything it controls."""
    if path == "/reason":
        return 401, f"Bad key {KEY}", {"Content-Type": "application/json"}, b'{"detail": "no"}'
    if path == "/redirect":
        return 302, "Found", {"Location": f"/k/{KEY}/x"}, b""
    if path == "/redirect-dead":
        return 302, "Found", {"Location": f"http://127.0.0.1:{DEAD}/k/{KEY}/x"}, b""
    if path.startswith("/k/"):
        headers = {"X-Echo": KEY, "Set-Cookie": f"s={KEY}", "Content-Type": "text/plain"}
        return 500, f"Oops {KEY}", headers, f"you sent {KEY}".encode()
    return 200, "OK", {}, b"ok"


@pytest.fixture
def server() -> Iterator[Server]:
    """The hostile server, started on loopback."""
    s = Server(hostile).start()
    yield s
    s.stop()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """An exporter that keeps every finished span."""
    return InMemorySpanExporter()


def full_pipeline(exporter: InMemorySpanExporter) -> tuple[Pipeline, TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = Pipeline(
        StatusErrors(),
        Retry(max_attempts=2, initial_delay=0.01, timeout=HANG),
        CircuitBreaker(),
        RateLimit(1000),
        APIKeyAuth(KEY),
        Tracing(tracer_provider=provider),
        clock=FakeClock(),
    )
    return pipeline, provider


def call_failing(url: str, exporter: InMemorySpanExporter) -> APIError:
    """GET `url` through the full pipeline, mounted on ``http://``; return its error."""
    pipeline, provider = full_pipeline(exporter)

    def go() -> None:
        with requests.Session() as session:
            mount(session, "http://", pipeline)
            with operation("hostile", tracer_provider=provider):
                session.get(url)

    with pytest.raises(APIError) as caught:
        within(HANG, go)
    return caught.value


def exception_texts(error: APIError) -> dict[str, str]:
    """Every text of an exception that an application might print, log or ship."""
    request = error.request
    return {
        "str": str(error),
        "repr": repr(error),
        "args": repr(error.args),
        "traceback": "".join(traceback.format_exception(error)),
        "pickle": pickle.dumps(error).decode("latin-1"),
        "request headers": repr(dict(request.headers)) if request is not None else "",
    }


SCENARIOS = [
    pytest.param("/reason", AuthenticationError, id="reason-phrase"),
    pytest.param("/redirect", ServerError, id="redirect-with-key-in-path"),
    pytest.param("/redirect-dead", APIConnectionError, id="redirect-to-dead-host"),
]


@pytest.mark.parametrize(("path", "kind"), SCENARIOS)
def test_no_exception_text_holds_the_key(
    server: Server, spans: InMemorySpanExporter, path: str, kind: type[APIError]
) -> None:
    """str, repr, args, traceback, pickled bytes and the kept request: no piece of the key."""
    error = call_failing(f"http://127.0.0.1:{server.port}{path}", spans)
    assert isinstance(error, kind)
    found = {name: leaks(text) for name, text in exception_texts(error).items()}
    assert found == {name: [] for name in found}
    assert any(r.get("Authorization") == f"Bearer {KEY}" for r in server.received)


@pytest.mark.parametrize(("path", "kind"), SCENARIOS)
def test_no_log_event_or_span_holds_the_key(
    server: Server,
    spans: InMemorySpanExporter,
    logs: list[MutableMapping[str, Any]],
    path: str,
    kind: type[APIError],
) -> None:
    """Every structlog event (retry_scheduled, call_failed, ...) and every span: no key."""
    call_failing(f"http://127.0.0.1:{server.port}{path}", spans)
    events = {entry["event"] for entry in logs}
    assert "call_failed" in events
    assert leaks(json.dumps(logs, default=str)) == []
    finished = spans.get_finished_spans()
    assert len(finished) >= 2  # the operation and at least one attempt
    assert leaks(" ".join(span.to_json() for span in finished)) == []


def test_event_urls_after_a_redirect_show_the_path_without_the_key(
    server: Server, spans: InMemorySpanExporter, logs: list[MutableMapping[str, Any]]
) -> None:
    """The url fields of retry_scheduled and call_failed and url.full: [REDACTED] in the path."""
    call_failing(f"http://127.0.0.1:{server.port}/redirect", spans)
    expected = f"http://127.0.0.1:{server.port}/k/[REDACTED]/x"
    urls = {e["event"]: e["url"] for e in logs if e["event"] in {"retry_scheduled", "call_failed"}}
    assert urls == {"retry_scheduled": expected, "call_failed": expected}
    full = {
        span.attributes["url.full"]
        for span in spans.get_finished_spans()
        if span.attributes is not None and "url.full" in span.attributes
    }
    assert expected in full
    assert all(leaks(str(url)) == [] for url in full)


def test_stdlib_log_records_hold_no_key(
    server: Server, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """With structlog unconfigured the events are stdlib records: their text holds no key."""
    structlog.reset_defaults()
    assert not structlog.is_configured()
    with caplog.at_level(logging.DEBUG, logger="requests_resilience"):
        call_failing(f"http://127.0.0.1:{server.port}/redirect", spans)
    records = [r for r in caplog.records if r.name == "requests_resilience"]
    fields = [getattr(r, "requests_resilience", {}) for r in records]
    assert {f.get("event") for f in fields} >= {"retry_scheduled", "call_failed"}
    text = " ".join(r.getMessage() for r in records) + json.dumps(fields)
    assert leaks(text) == []


def test_an_unpickled_error_keeps_its_evidence_but_no_credential(
    server: Server, spans: InMemorySpanExporter
) -> None:
    """Pickled and back: type, message, status, history kept; Authorization reads [REDACTED]."""
    error = call_failing(f"http://127.0.0.1:{server.port}/redirect", spans)
    assert isinstance(error, ServerError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ServerError
    assert (str(copy), copy.status_code, copy.history) == (
        str(error),
        500,
        error.history,
    )
    assert copy.request is not None
    assert copy.request.headers["Authorization"] == "[REDACTED]"
    assert copy.response is not None
    assert copy.response.status_code == 500
    assert copy.response.reason == "Oops [REDACTED]"
    assert copy.response.headers["X-Echo"] == "[REDACTED]"
    assert copy.response.headers["Set-Cookie"] == "[REDACTED]"
    assert copy.response.content == b"you sent [REDACTED]"


# -- credentials bound to their origin ----------------------------------------------------


@pytest.fixture
def host_b() -> Iterator[Server]:
    """Another origin: answers 200 to everything and records the headers it got."""
    s = Server(lambda path: (200, "OK", {}, b"landed")).start()
    yield s
    s.stop()


@pytest.fixture
def host_a(host_b: Server) -> Iterator[Server]:
    """An origin whose /away redirects to `host_b` (another host name, another port)."""

    def route(path: str) -> Answer:
        if path == "/away":
            return 302, "Found", {"Location": f"http://localhost:{host_b.port}/land"}, b""
        return 200, "OK", {}, b"home"

    s = Server(route).start()
    yield s
    s.stop()


@pytest.mark.parametrize("prefix", ["http://", "http://127.0.0.1"])
def test_a_redirect_to_another_host_never_gets_the_key(
    host_a: Server, host_b: Server, prefix: str
) -> None:
    """Mounted on a broad prefix, A's redirect to B reaches B without Authorization."""
    with requests.Session() as session:
        mount(session, prefix, Pipeline(APIKeyAuth(KEY)))
        response = session.get(f"http://127.0.0.1:{host_a.port}/away")
    assert response.status_code == 200
    assert [r["path"] for r in host_a.received] == ["/away"]
    assert host_a.received[0]["Authorization"] == f"Bearer {KEY}"
    assert [(r["path"], r.get("Authorization")) for r in host_b.received] == [("/land", None)]


def test_an_explicit_origin_refuses_every_other_origin(host_a: Server, host_b: Server) -> None:
    """With origin=A, even a first request straight to B goes without the key."""
    auth = APIKeyAuth(KEY, origin=f"http://127.0.0.1:{host_a.port}")
    with requests.Session() as session:
        mount(session, "http://", Pipeline(auth))
        session.get(f"http://localhost:{host_b.port}/direct")
        session.get(f"http://127.0.0.1:{host_a.port}/home")
    assert [r.get("Authorization") for r in host_b.received] == [None]
    assert [r.get("Authorization") for r in host_a.received] == [f"Bearer {KEY}"]


def test_a_header_kept_by_requests_is_taken_off_for_another_origin(host_b: Server) -> None:
    """A request to another origin that still carries the policy's header loses it."""
    auth = APIKeyAuth(KEY, origin="https://api.example.com")
    with requests.Session() as session:
        mount(session, "http://", Pipeline(auth))
        session.get(
            f"http://localhost:{host_b.port}/kept", headers={"Authorization": f"Bearer {KEY}"}
        )
    assert [r.get("Authorization") for r in host_b.received] == [None]

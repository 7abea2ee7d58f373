"""Print the trace of a call that is retried twice, as an indented tree.

Runs anywhere: no API key, no network (a fake Vinci server on loopback answers 503,
503, then creates the job), and no collector (spans go to an in-memory exporter).

    python examples/trace_tree.py

Shows one ``operation`` span over three CLIENT spans, one per wire attempt, with
``http.request.resend_count``, the statuses, ``error.type``, the server's request id,
the retry waits as events, and the ``traceparent`` each attempt sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import requests
import structlog
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from requests_resilience import (
    APIKeyAuth,
    Pipeline,
    Retry,
    StatusErrors,
    Tracing,
    mount,
    operation,
    route,
)
from requests_resilience.testing import FakeVinciServer, Fault

SHOWN = (
    "http.response.status_code",
    "http.request.resend_count",
    "error.type",
    "vinci.request_id",
    "url.template",
    "server.port",
)


def render(spans: Sequence[ReadableSpan]) -> str:
    """An indented tree of `spans`, children and events in time order."""
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children[parent if parent in ids else None].append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + describe(span))
        below = prefix + ("" if root else ("   " if last else "│  "))
        assert span.context is not None
        items: list[tuple[int, ReadableSpan | Event]] = [(e.timestamp, e) for e in span.events]
        items += [(c.start_time or 0, c) for c in children[span.context.span_id]]
        items.sort(key=lambda item: item[0])
        for index, (_, item) in enumerate(items):
            is_last = index == len(items) - 1
            if isinstance(item, Event):
                mark = "└─ " if is_last else "├─ "
                lines.append(below + mark + describe_event(item, span))
            else:
                walk(item, below, is_last, root=False)

    for top in sorted(children[None], key=lambda s: s.start_time or 0):
        walk(top, "", True, root=True)
    return "\n".join(lines)


def describe(span: ReadableSpan) -> str:
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    kind = span.kind.name
    status = span.status.status_code.name
    attributes = span.attributes or {}
    shown = "  ".join(f"{k}={attributes[k]!s}" for k in SHOWN if k in attributes)
    return f"{span.name}  [{kind}, {status}, {duration:.1f} ms]  {shown}".rstrip()


def describe_event(event: Event, span: ReadableSpan) -> str:
    at = (event.timestamp - (span.start_time or 0)) / 1e6
    attributes = event.attributes or {}
    if event.name == "requests_resilience.retry":
        wait = float(attributes.get("requests_resilience.retry.wait", 0.0))  # type: ignore[arg-type]
        reason = attributes.get("requests_resilience.retry.reason")
        return f"· retry at +{at:.1f} ms: wait {wait * 1000:.0f} ms ({reason})"
    return f"· {event.name} at +{at:.1f} ms"


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    # Show every event of the library, debug included (it never configures structlog).
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    )
    with FakeVinciServer() as server, requests.Session() as session:
        pipeline = Pipeline(
            StatusErrors(),
            Retry(initial_delay=0.05, max_delay=0.2, add_idempotency_key=True, budget=None),
            APIKeyAuth(server.api_key),
            Tracing(tracer_provider=provider),
        )
        mount(session, server.base_url + "/", pipeline)
        server.script(Fault.status(503), Fault.status(503), path="/generate/text-to-video")

        with (
            operation(
                "vinci.text_to_video", tracer_provider=provider, **{"vinci.duration_seconds": 5}
            ),
            route("/generate/text-to-video"),
            session.post(
                server.url("/generate/text-to-video"),
                json={"prompt": "a red fox in fresh snow", "duration_seconds": 5},
            ) as created,
        ):
            job = created.json()
        print(f"job {job['request_id']}: {job['status']}\n")
        print(render(exporter.get_finished_spans()))
        print("\ntraceparent sent by each attempt:")
        for recorded in server.requests:
            print(f"  {recorded.method} {recorded.path}  {recorded.headers.get('traceparent')}")
    provider.shutdown()


if __name__ == "__main__":
    main()

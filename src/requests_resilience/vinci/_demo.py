"""``vinci demo``: a batch of jobs through the real pipeline against a misbehaving server.

The embedded fake Vinci server (``requests_resilience.testing``) is started on
loopback with a fault script: 429s with ``Retry-After``, a burst of 5xx, a reset
connection, a short outage, a job that fails, and a balance that runs out part-way.
Several threads then create and wait for jobs through one `VinciClient`, and the
report counts what happened at each layer: logical calls, wire attempts and their
outcomes, retries and waits by reason, calls refused by an open breaker, and the
requests the server actually received.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import requests

from requests_resilience._breaker import CircuitBreaker
from requests_resilience._errors import (
    APIError,
    CircuitOpenError,
    InsufficientBalanceError,
    refused_locally,
)
from requests_resilience._retry import Retry
from requests_resilience._tracing import Tracing
from requests_resilience.vinci._client import VinciClient
from requests_resilience.vinci._errors import JobFailedError
from requests_resilience.vinci._preset import DEFAULT, PolicySeam, build_pipeline

if TYPE_CHECKING:
    from requests import Response
    from rich.console import Console

    from requests_resilience._clock import Clock
    from requests_resilience._pipeline import Call, Next
    from requests_resilience.testing import FakeVinciServer

__all__ = ["AttemptStats", "DemoReport", "print_report", "run_demo", "trace_one_job"]

_PROMPTS = (
    "Calm ocean at sunrise",
    "Forest in fog",
    "A fox crossing a snowy field",
    "Neon city in the rain",
    "Hot air balloons over a valley",
    "A lighthouse in a storm",
)
_DURATION = 5
_PRICE = 0.05
_NO_ID = "-"  # the server's answer carried no request id
_NOT_SENT = "not sent"  # refused locally: there was no request, so no id


class AttemptStats:
    """A policy that counts every attempt it sees, by outcome, and the retries before it.

    Placed inside the retry and outside the breaker (``extra_policies`` of the
    preset), it sees each attempt once: a status code, an exception type, or a
    `CircuitOpenError` for an attempt that an open breaker refused.

    Example:
        >>> stats = AttemptStats()
        >>> pipeline = build_pipeline(api_key="sk-...", extra_policies=(stats,))
        >>> stats.snapshot()["outcomes"]
        {}
    """

    name: ClassVar[str] = "demo_stats"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.attempts = 0
        self.wire_attempts = 0
        self.breaker_rejections = 0
        self.outcomes: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.retry_waits: defaultdict[str, float] = defaultdict(float)

    def send(self, call: Call, next: Next) -> Response:
        """Count the attempt (and the retry that led to it), then send it."""
        with self._lock:
            self.attempts += 1
            if call.attempt == 1:
                self.calls += 1
            elif call.history:
                previous = call.history[-1]
                reason = previous.reason or "unknown"
                self.retries[reason] += 1
                self.retry_waits[reason] += previous.wait
        try:
            response = next(call)
        except CircuitOpenError:
            self._record("CircuitOpenError", wire=False)
            raise
        except requests.RequestException as exc:
            self._record(type(exc).__name__, wire=True)
            raise
        self._record(str(response.status_code), wire=True)
        return response

    def _record(self, outcome: str, *, wire: bool) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if wire:
                self.wire_attempts += 1
            else:
                self.breaker_rejections += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters, copied."""
        with self._lock:
            return {
                "calls": self.calls,
                "attempts": self.attempts,
                "wire_attempts": self.wire_attempts,
                "breaker_rejections": self.breaker_rejections,
                "outcomes": dict(self.outcomes),
                "retries": dict(self.retries),
                "retry_waits": dict(self.retry_waits),
            }

    def __repr__(self) -> str:
        return "AttemptStats()"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(mapping.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    """What happened in one demo run.

    Example:
        >>> report = run_demo(jobs=8, threads=2)
        >>> report.completed + report.failed + report.refused_locally + report.errored
        8

    Attributes:
        jobs: jobs attempted.
        threads: threads that shared the client.
        completed: jobs that completed.
        failed: jobs that ended ``failed`` (`JobFailedError`).
        refused_locally: jobs the balance pre-check refused without a request.
        errored: jobs lost to another error while creating or waiting.
        errored_by_type: the errored jobs by error type.
        jobs_seen: jobs whose creation answer the client read (it knew their id);
            ``server_jobs_created - jobs_seen`` were created and charged although
            their answer was lost (a 500 after the server acted).
        calls: logical calls that entered the pipeline (creates, polls, balance reads).
        attempts: attempts the stats policy saw (retries included).
        wire_attempts: attempts that went to the transport.
        outcomes: attempts by outcome: ``"200"``, ``"503"``, ``"APIConnectionError"``...
        retries: retries by the retry policy's reason.
        retry_waits: seconds waited before retries, by reason.
        breaker_rejections: attempts refused by an open circuit breaker.
        server_requests: requests the server received (its own counter).
        server_by_endpoint: the server's requests by ``"METHOD /path"``.
        server_jobs_created: jobs the server created (and charged).
        errors: error type -> the request ids involved: ``"-"`` where the server's
            answer carried none, ``"not sent"`` where a policy refused the call
            locally (there was no request, so no id).
        start_balance_usd: the account's balance before the run.
        end_balance_usd: the account's balance after the run.
        elapsed: wall-clock seconds the run took (the retry waits are summed over
            the threads, so they can add up to more).
        pipeline: the pipeline's description.
    """

    jobs: int
    threads: int
    completed: int
    failed: int
    refused_locally: int
    errored: int
    errored_by_type: Mapping[str, int]
    jobs_seen: int
    calls: int
    attempts: int
    wire_attempts: int
    outcomes: Mapping[str, int]
    retries: Mapping[str, int]
    retry_waits: Mapping[str, float]
    breaker_rejections: int
    server_requests: int
    server_by_endpoint: Mapping[str, int]
    server_jobs_created: int
    errors: Mapping[str, tuple[str, ...]]
    start_balance_usd: float
    end_balance_usd: float
    elapsed: float
    pipeline: str = field(repr=False)

    @property
    def retry_policy_present(self) -> bool:
        """Whether the demo's pipeline had a retry policy."""
        return "retry" in self.pipeline.lower()


class _Tally:
    """Job outcomes of a run, counted from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: defaultdict[str, list[str]] = defaultdict(list)
        self.errored: Counter[str] = Counter()
        self.seen = 0

    def saw_job(self) -> None:
        """The client read a job's creation answer (it knows the job's id)."""
        with self.lock:
            self.seen += 1

    def count(self, kind: str, error: BaseException | None = None) -> None:
        if error is not None and refused_locally(error):
            marker = _NOT_SENT
        else:
            marker = getattr(error, "request_id", None) or _NO_ID
        with self.lock:
            self.counts[kind] += 1
            if error is not None:
                self.errors[type(error).__name__].append(marker)
                if kind == "errored":
                    self.errored[type(error).__name__] += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """One demo run's shared pieces; `job()` runs in the worker threads."""

    client: VinciClient
    server: FakeVinciServer
    tally: _Tally
    outage_at: int
    outage_seconds: float
    poll_interval: float

    def job(self, index: int) -> None:
        if index == self.outage_at and self.outage_seconds > 0:
            self.server.outage(self.outage_seconds, retry_after="0.2")
        if index == self.outage_at // 2:
            self.server.fail_next_jobs(1, error="Content policy violation")
        prompt = _PROMPTS[index % len(_PROMPTS)]
        try:
            job = self.client.text_to_video(prompt, duration_seconds=_DURATION)
        except InsufficientBalanceError as exc:
            self.tally.count("refused" if exc.response is None else "errored", exc)
            return
        except APIError as exc:
            self.tally.count("errored", exc)
            return
        self.tally.saw_job()
        try:
            self.client.wait(
                job,
                timeout=60.0,
                poll_interval=self.poll_interval,
                max_poll_interval=max(self.poll_interval, 0.5),
            )
        except JobFailedError as exc:
            self.tally.count("failed", exc)
        except APIError as exc:
            self.tally.count("errored", exc)
        else:
            self.tally.count("completed")


def _script_faults(server: FakeVinciServer, jobs: int) -> None:
    from requests_resilience.testing import Fault  # noqa: PLC0415 - needs werkzeug

    server.script(
        Fault.status(429, retry_after="0.2"),
        Fault.status(429, retry_after="0.2"),
        Fault.status(503, retry_after="0.1"),
        Fault.status(503),
        Fault.status(500, after=True),  # the job is made, the answer lost: not re-sent
        path="/generate/text-to-video",
    )
    server.script(
        Fault.status(502),
        Fault.status(502),
        Fault.status(502),
        Fault.reset(),
        path="/status/*",
    )


def demo_retry() -> Retry:
    """The preset's retry as a time-lapse, every wait 20 times shorter.

    So the demo shows minutes of a bad day in seconds.
    """
    return Retry(max_attempts=5, initial_delay=0.05, max_delay=1.5, timeout=6.0)


def demo_breaker() -> CircuitBreaker:
    """The preset's breaker as a time-lapse (a 0.75 s break instead of 15 s)."""
    return CircuitBreaker(failure_ratio=0.5, minimum_calls=5, window=3.0, break_duration=0.75)


def run_demo(
    *,
    jobs: int = 24,
    threads: int = 4,
    clock: Clock | None = None,
    poll_interval: float = 0.05,
    outage_seconds: float = 0.4,
    retry: PolicySeam = DEFAULT,
    breaker: PolicySeam = DEFAULT,
    tracing: PolicySeam = DEFAULT,
) -> DemoReport:
    """Run the demo and return its report (no key and no network needed).

    Args:
        jobs: how many jobs to attempt, 1 to 1000.
        threads: how many threads share the client, 1 to 64.
        clock: the clock of the pipeline and the client (a `FakeClock` makes every
            wait instant; the server's outage still runs on real time).
        poll_interval: the first wait between status polls.
        outage_seconds: how long the outage lasts (it starts half-way through).
        retry: the retry policy (default: the preset's).
        breaker: the circuit breaker (default: the preset's).
        tracing: the tracing policy (default: the preset's).

    Returns:
        The report; print it with `print_report`.

    Raises:
        ImportError: werkzeug (the ``testing`` extra) is not installed.
        ValueError: `jobs` or `threads` is out of range.

    Example:
        >>> from requests_resilience.testing import FakeClock
        >>> report = run_demo(jobs=4, threads=2, clock=FakeClock(), outage_seconds=0.1)
        >>> print_report(report)
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 1000:
        msg = f"jobs must be an integer from 1 to 1000, got {jobs!r}"
        raise ValueError(msg)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
        msg = f"threads must be an integer from 1 to 64, got {threads!r}"
        raise ValueError(msg)
    from requests_resilience.testing import FakeVinciServer  # noqa: PLC0415 - needs werkzeug

    # The money runs out about three quarters of the way through.
    start_balance = round(jobs * _DURATION * _PRICE * 0.75, 2)
    stats = AttemptStats()
    tally = _Tally()
    with FakeVinciServer(balance_usd=start_balance, polls_to_complete=3) as server:
        _script_faults(server, jobs)
        if retry is DEFAULT:
            retry = demo_retry()
        if breaker is DEFAULT:
            breaker = demo_breaker()
        pipeline = build_pipeline(
            api_key=server.api_key,
            clock=clock,
            retry=retry,
            breaker=breaker,
            rate_limit=None,  # the demo's server has no rate limit; keep its timing
            tracing=tracing,
            extra_policies=(stats,),
        )
        client = VinciClient(
            base_url=server.base_url,
            pipeline=pipeline,
            clock=clock,
            request_timeout=(2.0, 10.0),
            pool_maxsize=max(threads, 2),
        )
        run = _Run(
            client=client,
            server=server,
            tally=tally,
            outage_at=jobs // 2,
            outage_seconds=outage_seconds,
            poll_interval=poll_interval,
        )
        began = time.monotonic()
        with client, ThreadPoolExecutor(threads, thread_name_prefix="vinci-demo") as pool:
            list(pool.map(run.job, range(jobs)))
        elapsed = time.monotonic() - began
        by_endpoint = Counter(
            _endpoint(request.method, request.path) for request in server.requests
        )
        counts = stats.snapshot()
        return DemoReport(
            jobs=jobs,
            threads=threads,
            completed=tally.counts["completed"],
            failed=tally.counts["failed"],
            refused_locally=tally.counts["refused"],
            errored=tally.counts["errored"],
            errored_by_type=_frozen(tally.errored),
            jobs_seen=tally.seen,
            calls=counts["calls"],
            attempts=counts["attempts"],
            wire_attempts=counts["wire_attempts"],
            outcomes=_frozen(counts["outcomes"]),
            retries=_frozen(counts["retries"]),
            retry_waits=_frozen(counts["retry_waits"]),
            breaker_rejections=counts["breaker_rejections"],
            server_requests=server.request_count,
            server_by_endpoint=_frozen(by_endpoint),
            server_jobs_created=server.jobs_created,
            errors=_frozen({k: tuple(v) for k, v in tally.errors.items()}),
            start_balance_usd=start_balance,
            end_balance_usd=server.balance_usd,
            elapsed=elapsed,
            pipeline=pipeline.describe(),
        )


def _endpoint(method: str, path: str) -> str:
    if path.startswith("/status/"):
        path = "/status/{request_id}"
    return f"{method} {path}"


def _counts(mapping: Mapping[str, int]) -> str:
    if not mapping:
        return "none"
    return ", ".join(f"{key}: {value}" for key, value in mapping.items())


def _ids(ids: tuple[str, ...], limit: int = 3) -> str:
    """The request ids of one error type, and why the others have none."""
    known = [i for i in ids if i not in (_NO_ID, _NOT_SENT)]
    parts: list[tuple[int, str]] = []
    if known:
        shown = ", ".join(known[:limit])
        more = f" (+{len(known) - limit} more)" if len(known) > limit else ""
        parts.append((len(known), shown + more))
    if ids.count(_NOT_SENT):
        why = "refused locally, nothing was sent: no request id exists"
        parts.append((ids.count(_NOT_SENT), why))
    if ids.count(_NO_ID):
        parts.append((ids.count(_NO_ID), "the server's error answer carried no request id"))
    if len(parts) == 1:
        return parts[0][1]
    return "; ".join(f"{count}: {text}" for count, text in parts)


def _jobs_row(report: DemoReport) -> str:
    errored = ""
    if report.errored:
        kinds = ", ".join(f"{name} x{n}" for name, n in report.errored_by_type.items())
        errored = f" ({kinds})"
    return (
        f"{report.completed} completed, {report.failed} failed (the job ended 'failed' at "
        f"the server), {report.refused_locally} refused locally by the balance pre-check "
        f"(nothing sent), {report.errored} errored{errored}"
    )


def _charged_row(report: DemoReport) -> str:
    """The jobs the server charged for, and which of the client's jobs they were."""
    spent = report.start_balance_usd - report.end_balance_usd
    parts = [f"{report.completed} completed", f"{report.failed} failed"]
    lost_waiting = report.jobs_seen - report.completed - report.failed
    if lost_waiting > 0:
        parts.append(f"{lost_waiting} created, then lost while waiting")
    unseen = report.server_jobs_created - report.jobs_seen
    if unseen > 0:
        parts.append(
            f"{unseen} created whose answer the client never read (a 500 after the "
            "server acted: charged, and not re-sent, since a POST with an unknown "
            "outcome is not retried)"
        )
    return (
        f"{report.server_jobs_created}, ${spent:.2f} in all (balance "
        f"${report.start_balance_usd:.2f} -> ${report.end_balance_usd:.2f}): " + " + ".join(parts)
    )


def _retries_row(report: DemoReport) -> str:
    if not report.retries:
        if report.retry_policy_present:
            return "none"
        return "none: no retry policy in this pipeline, every fault reached the caller"
    total = sum(report.retry_waits.values())
    each = ", ".join(
        f"{reason}: {count} (waited {report.retry_waits.get(reason, 0.0):.2f}s)"
        for reason, count in report.retries.items()
    )
    return (
        f"{sum(report.retries.values())}; waits summed over the {report.threads} threads, "
        f"{total:.2f}s in all, while the run took {report.elapsed:.2f}s: {each}"
    )


def _attempts_row(report: DemoReport) -> str:
    refused = report.attempts - report.wire_attempts
    return (
        f"{report.attempts}: {report.wire_attempts} on the wire + {refused} refused by "
        "the open breaker before sending"
    )


def _server_row(report: DemoReport) -> str:
    if report.server_requests == report.wire_attempts:
        return f"{report.server_requests}, the server's own count: one per attempt on the wire"
    return (
        f"{report.server_requests}, the server's own count, against "
        f"{report.wire_attempts} attempts on the wire"
    )


def report_rows(report: DemoReport) -> list[tuple[str, str]]:
    """The report as ``(measure, value)`` rows, each figure explained where it stands.

    Example:
        >>> dict(report_rows(report))["jobs charged by the server"]
        '18, $4.50 in all (balance $4.50 -> $0.00): 16 completed + 1 failed + 1 created ...'
    """
    rows = [
        ("jobs", _jobs_row(report)),
        ("logical calls", f"{report.calls} (creates, polls, balance reads)"),
        ("attempts", _attempts_row(report)),
        ("attempt outcomes", _counts(report.outcomes)),
        ("retries by reason", _retries_row(report)),
        (
            "refused by open breaker",
            f"{report.breaker_rejections} attempts (checked locally, nothing was sent)",
        ),
        ("requests at the server", _server_row(report)),
        ("  by endpoint", _counts(report.server_by_endpoint)),
        ("jobs charged by the server", _charged_row(report)),
    ]
    if report.errors:
        rows.extend(
            (f"error {name}", f"x{len(ids)}: {_ids(ids)}") for name, ids in report.errors.items()
        )
    else:
        rows.append(("errors", "none"))
    rows.append(("time taken", f"{report.elapsed:.2f}s of wall-clock time"))
    return rows


def print_report(report: DemoReport, console: Console | None = None) -> None:
    """Print the report as a rich table, then the pipeline's description.

    Args:
        report: what `run_demo` returned.
        console: where to print (default: a new console on standard output).

    Raises:
        ImportError: rich (the ``cli`` extra) is not installed.

    Example:
        >>> print_report(run_demo(jobs=8, threads=2))
    """
    from rich.console import Console  # noqa: PLC0415 - optional dependency
    from rich.table import Table  # noqa: PLC0415

    console = console or Console()
    table = Table(
        title=(
            f"vinci demo: {report.jobs} jobs from {report.threads} threads "
            "against the fake Vinci server"
        ),
        show_header=True,
        header_style="bold",
    )
    table.add_column("measure", style="bold")
    table.add_column("value", overflow="fold")
    for measure, value in report_rows(report):
        table.add_row(measure, value)
    console.print(table)
    console.print(report.pipeline, highlight=False, soft_wrap=True, markup=False)


# -- --trace --------------------------------------------------------------------------


def trace_one_job(*, poll_interval: float = 0.05) -> list[str] | None:
    """Run one job (with one 503 on a poll) and return its trace tree as lines.

    Returns:
        The lines, or None when the OpenTelemetry SDK is not installed.
    """
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional dependency
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
            InMemorySpanExporter,
        )

        from requests_resilience.testing import FakeVinciServer, Fault  # noqa: PLC0415
    except ImportError:
        return None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the client's operation spans use the global one
    tracing = Tracing(tracer_provider=provider)
    with FakeVinciServer() as server:
        server.script(Fault.status(503, retry_after="0.1"), path="/status/*")
        pipeline = build_pipeline(api_key=server.api_key, rate_limit=None, tracing=tracing)
        with VinciClient(base_url=server.base_url, pipeline=pipeline) as client:
            job = client.text_to_video("Calm ocean at sunrise", duration_seconds=3)
            client.wait(job, poll_interval=poll_interval)
    provider.force_flush()
    return _tree(exporter.get_finished_spans())


def _tree(spans: Any) -> list[str]:
    children: defaultdict[int | None, list[Any]] = defaultdict(list)
    ids = {span.context.span_id for span in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children[parent if parent in ids else None].append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: s.start_time or 0):
            took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            attrs = span.attributes or {}
            status = attrs.get("http.response.status_code") or attrs.get("error.type") or ""
            lines.append(f"{'  ' * depth}{span.name}  {took:.1f} ms  {status}".rstrip())
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines

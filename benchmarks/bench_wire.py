"""The Vinci preset on the wire, against nginx: bare clients vs the preset, median and p99.

The server is nginx (Debian's package, installed with apt-get when the ``nginx`` binary
is missing), started by this benchmark on a free loopback port from a generated config
in a temporary folder (one worker, no access log, keep-alive for the whole run) and
stopped at the end. It answers ``GET /billing/balance`` from memory with a fixed JSON
body and the ``X-RateLimit-*`` headers the Vinci API sends, in a few microseconds, so a
slow server does not dilute the figure: what is left of a call's latency is the client,
the loopback and the kernel. For the issue's on-the-wire and SDK targets this supersedes
``bench_overhead``, whose Python fake server spends a large share of the denominator
itself (bare requests takes about 0.3 ms longer per call against it than against
nginx here); that benchmark stays, for its pipeline-without-rate-limit variants.

The preset is ``vinci.build_pipeline(...)``: StatusErrors, Retry, CircuitBreaker,
RateLimit, APIKeyAuth and Tracing, with only the OpenTelemetry API at work in the first
phase (no SDK object exists in the process then). Its rate limit is the preset's
policy set to the limit the server announces in ``X-RateLimit-Limit`` (a million a
minute, the most it takes), as for a key allowed that many, instead of the documented
10 a minute it would otherwise start from; it still reads the headers of every answer.
The run checks that no measured attempt waited for a token. The bare variants set the same
``Authorization`` header by hand. Each transport's bare and preset variants share one
connection pool (requests' ``HTTPAdapter``, httpx's transport), so they use the same
keep-alive connection; the ``bare (A/A)`` variant is a second bare client on that pool:
its ratio to bare is the resolution of the instrument on this machine. On that shared
pool the preset's deadline holds per read only (a transport of the caller's own has no
deadline-keeping connections); ``preset (own pool)`` is the preset mounted as users
mount it, ``mount(session, prefix, preset)``, on the adapter's own pool, whose
connections keep the call's deadline on every read (on a keep-alive connection of its
own to the same nginx).

Phase ``wire`` (the issue's targets: the preset <= 1.02x bare on the median and <= 1.05x
on p99), for three transports:

  requests      requests.Session vs the same mounted with the preset
  httpx         httpx.Client vs httpx.Client(transport=ResilientTransport(preset))
  httpx-async   httpx.AsyncClient vs AsyncClient(transport=AsyncResilientTransport(preset)),
                the calls awaited one after another in one event loop

Phase ``sdk`` (target: the preset <= 10 µs per attempt above the SDK's floor), requests
only, with a real SDK: TracerProvider(BatchSpanProcessor(InMemorySpanExporter)) and
MeterProvider(InMemoryMetricReader), given to Tracing(tracer_provider=...,
meter_provider=...). Every call here is one attempt. Variants:

  bare          bare requests, no instrumentation
  bare+floor    bare requests plus the least any per-attempt instrumentation does with
                the SDK, in a wrapping adapter (as instrumentations wrap ``send``): one
                CLIENT span with method, host and port, made current, ``traceparent``
                injected, the status code set, one histogram record, the span ended
  preset+floor  the preset with that floor in the tracing seam instead of Tracing
  preset+sdk    the preset with Tracing recording through the SDK

The target's figure is ``preset+sdk - bare+floor``; ``preset+sdk - preset+floor`` is
what Tracing adds over the floor, and ``bare+floor - bare`` the SDK floor itself.
This is measured on the wire too, not on a stub transport: the cost in question is CPU
in this process, which the wire does not change, and the interleaving removes the wire's
drift from the differences (the A/A row of phase ``wire`` shows how well).

How the figures are made on a noisy shared 2-core machine:

- The variants run finely interleaved: a round is 20 slices, and in each slice every
  variant of the phase sends 10 calls, in a shuffled order; so every variant samples
  the same moments of the machine, a few milliseconds apart, and the contention of
  other processes (the noise here) hits them all alike. A round's statistics are over
  its 200 calls per variant. (Batches of 200 in a row, the overhead benchmark's way,
  left the A/A median ratio off by up to 15 % here; slices of 10 bring it within 1 %.)
- Between slices a full garbage collection runs, unmeasured (after ``gc.freeze()`` of
  everything built before the measurement, so it costs microseconds), so that a
  generation-2 pass provoked by one variant's allocations does not land in another's
  slice; the young generations are collected inside the slices, as in an
  application, and charged to whoever allocates.
- Median: the median of all the calls of a variant (pooled), over the pooled median of
  its bare; the median of the per-round ratios is given too.
- p99: a pooled p99 is dominated by incidents (another tenant's burst, a page fault)
  that land on whichever variant is running then, so it moves by several percent from
  run to run even between identical variants. Each round's p99 ratio pairs a variant
  with its bare over the same second or so; the reported p99 ratio, on which the
  target is judged, is the **median of the per-round p99 ratios** (a round's p99 lies
  between its second- and third-slowest call of 200). The pooled p99 and its ratio are reported
  beside it, and the A/A variant's ratios say how far apart identical clients come.

Run: ``python -m benchmarks.bench_wire [--rounds N] [--sdk-rounds N]`` (or ``./dev
bench wire``: about two minutes); writes ``benchmarks/results/wire.json`` and redraws
``docs/assets/wire.png`` and ``docs/assets/wire-tables.md`` (``--plot`` only redraws
them from the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import requests
from opentelemetry import context, trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from requests.adapters import BaseAdapter, HTTPAdapter

from benchmarks._common import RESULTS, ensure_debian_binary, table, write
from requests_resilience import Pipeline, RateLimit, Tracing, mount, rate_limit_key_for
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.vinci import build_pipeline

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from requests_resilience import Call, Next

PATH = "/billing/balance"
BODY = '{"balance_usd": 25.5, "total_spent_usd": 134.75}'
API_KEY = "sk-bench-0123456789abcdef"
# Requests per minute the server announces, and the preset's rate limit is set to (the
# most RateLimit takes): 15,800 a second after the headroom, so no attempt waits.
ANNOUNCED_LIMIT = 1_000_000
TARGETS = {"median_ratio": 1.02, "p99_ratio": 1.05, "sdk_us_above_floor": 10.0}
TRANSPORTS = ("requests", "httpx", "httpx-async")


# -- nginx -----------------------------------------------------------------------------


def ensure_nginx() -> str:
    """The nginx binary; installed from Debian's packages (apt-get) when missing.

    Debian 12 and later ship the binary in "nginx" (nginx-light only adds modules);
    older releases in nginx-core or nginx-light, which "nginx" then depends on.

    Raises:
        RuntimeError: nginx is missing and cannot be installed here.
    """
    return ensure_debian_binary("nginx", ("nginx", "nginx-light"), why="bench wire")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_config(folder: Path, port: int, modules: str) -> str:
    """A minimal nginx.conf: one worker, keep-alive for the whole run, the one route."""
    temp = "\n".join(
        f"    {name}_temp_path {folder / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        if name == "client_body" or f"--without-http_{name}_module" not in modules
    )
    reset = int(time.time()) + 60
    return f"""
worker_processes 1;
daemon off;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
{temp}
    server {{
        listen 127.0.0.1:{port};
        location = {PATH} {{
            default_type application/json;
            add_header X-RateLimit-Limit {ANNOUNCED_LIMIT} always;
            add_header X-RateLimit-Remaining {ANNOUNCED_LIMIT - 1} always;
            add_header X-RateLimit-Reset {reset} always;
            return 200 '{BODY}';
        }}
        location / {{ return 404; }}
    }}
}}
"""


@contextmanager
def nginx() -> Iterator[tuple[str, str]]:
    """Run an nginx of our own on a free loopback port; yield (base URL, version)."""
    binary = ensure_nginx()
    built = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    version = built.splitlines()[0].removeprefix("nginx version: ") if built else "nginx"
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    with tempfile.TemporaryDirectory(prefix="bench-wire-nginx-") as tmp:
        folder = Path(tmp)
        conf, log, stderr = folder / "nginx.conf", folder / "error.log", folder / "stderr"
        command = [binary, "-p", str(folder), "-c", str(conf)]
        if numbers >= (1, 19, 5):  # -e: not even the compiled-in error log is opened
            command += ["-e", str(log)]
        for attempt in range(3):  # the free port may be taken before nginx binds it
            port = free_port()
            conf.write_text(nginx_config(folder, port, built))
            with stderr.open("wb") as errors:
                server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
            base_url = f"http://127.0.0.1:{port}"
            if _wait_ready(server, base_url + PATH):
                break
            server.wait(timeout=10)
            if attempt == 2:
                detail = " ".join(p.read_text().strip() for p in (stderr, log) if p.exists())
                msg = f"bench wire: nginx did not start: {detail}"
                raise RuntimeError(msg)
        try:
            yield base_url, version
        finally:
            server.send_signal(signal.SIGTERM)  # fast shutdown: the master stops its worker
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


def _wait_ready(server: subprocess.Popen[bytes], url: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return True
        except requests.ConnectionError:
            time.sleep(0.05)
    server.kill()
    return False


# -- the variants ----------------------------------------------------------------------


class Wrapping(BaseAdapter):
    """A requests adapter that runs `around` each send of the `HTTPAdapter` it wraps."""

    def __init__(self, inner: HTTPAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(  # the signature requests calls
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        inner = self.inner
        return self.around(
            request, lambda: inner.send(request, stream, timeout, verify, cert, proxies)
        )

    def around(
        self, request: requests.PreparedRequest, send: Callable[[], requests.Response]
    ) -> requests.Response:
        raise NotImplementedError

    def close(self) -> None:
        pass  # the inner adapter is closed with the phase


class TimedAdapter(Wrapping):
    """The shared `HTTPAdapter`, with the seconds each call spends inside it recorded.

    Each requests variant of phase ``wire`` sends through one of these (bare and preset
    alike, one frame more for each), so that a call's latency splits into the time in
    the transport (urllib3, the socket, the server) and the time outside it (the
    Session's own work, and the pipeline's).
    """

    def __init__(self, inner: HTTPAdapter) -> None:
        super().__init__(inner)
        self.spent: list[float] = []

    def around(
        self, request: requests.PreparedRequest, send: Callable[[], requests.Response]
    ) -> requests.Response:
        clock = time.perf_counter
        began = clock()
        try:
            return send()
        finally:
            self.spent.append(clock() - began)


class Variant:
    """One way of sending the request, and its latencies.

    `run` sends `n` calls and returns their latencies in seconds; `timed`, if given,
    records the time each of them spent in the transport.
    """

    def __init__(
        self,
        name: str,
        transport: str,
        run: Callable[[int], list[float]],
        reset: Callable[[], None] | None = None,
        timed: TimedAdapter | None = None,
    ) -> None:
        self.name = name
        self.transport = transport
        self.run = run
        self.reset = reset
        self.timed = timed
        self.samples: list[float] = []
        self.round_medians: list[float] = []
        self.round_p99s: list[float] = []


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _requests_runner(session: requests.Session, url: str) -> Callable[[int], list[float]]:
    def run(n: int) -> list[float]:
        latencies = []
        clock = time.perf_counter
        for _ in range(n):
            began = clock()
            response = session.get(url, timeout=10)
            response.content  # noqa: B018 - read the body, as every variant does
            response.close()
            latencies.append(clock() - began)
            if response.status_code != 200:
                msg = f"unexpected status {response.status_code}"
                raise RuntimeError(msg)
        return latencies

    return run


def _httpx_runner(client: httpx.Client, url: str) -> Callable[[int], list[float]]:
    def run(n: int) -> list[float]:
        latencies = []
        clock = time.perf_counter
        for _ in range(n):
            began = clock()
            response = client.get(url)  # reads the body
            latencies.append(clock() - began)
            if response.status_code != 200:
                msg = f"unexpected status {response.status_code}"
                raise RuntimeError(msg)
        return latencies

    return run


def _async_runner(
    loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient, url: str
) -> Callable[[int], list[float]]:
    async def batch(n: int) -> list[float]:
        latencies = []
        clock = time.perf_counter
        for _ in range(n):
            began = clock()
            response = await client.get(url)  # reads the body
            latencies.append(clock() - began)
            if response.status_code != 200:
                msg = f"unexpected status {response.status_code}"
                raise RuntimeError(msg)
        return latencies

    def run(n: int) -> list[float]:
        return loop.run_until_complete(batch(n))

    return run


def _preset(base_url: str, **seams: Any) -> Pipeline:
    """The Vinci preset, its rate limit set to the limit the server announces.

    The shipped rate limit (10 a minute, burst 10) would learn that limit from the first
    answer, but the GCRA slot it reserved for the first request is spaced at the old
    rate, so the second request waits 6.3 s: set from the start, the limit is the
    same policy on the same path without that stall.
    """
    rate_limit = RateLimit.per_minute(ANNOUNCED_LIMIT, burst=10, key=rate_limit_key_for(API_KEY))
    return build_pipeline(api_key=API_KEY, origin=base_url, rate_limit=rate_limit, **seams)


class Closer:
    """What to close at the end of a phase, and the presets whose rate limits to check."""

    def __init__(self) -> None:
        self.closers: list[Callable[[], object]] = []
        self.presets: dict[str, Pipeline] = {}

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()


def wire_variants(base_url: str, loop: asyncio.AbstractEventLoop, closer: Closer) -> list[Variant]:
    """Phase ``wire``: bare, bare (A/A) and the preset, for each transport."""
    url = base_url + PATH
    auth = {"Authorization": f"Bearer {API_KEY}"}
    variants: list[Variant] = []

    adapter = HTTPAdapter(max_retries=0)
    closer.closers.append(adapter.close)
    for name in ("bare", "bare (A/A)"):
        timed = TimedAdapter(adapter)
        session = requests.Session()
        session.headers.update(auth)
        session.mount(base_url + "/", timed)
        variants.append(Variant(name, "requests", _requests_runner(session, url), timed=timed))
    preset = closer.presets["requests"] = _preset(base_url)
    timed = TimedAdapter(adapter)
    session = mount(requests.Session(), base_url + "/", preset, transport=timed)
    variants.append(Variant("preset", "requests", _requests_runner(session, url), timed=timed))
    own = closer.presets["requests (own pool)"] = _preset(base_url)
    session = mount(requests.Session(), base_url + "/", own)
    closer.closers.append(session.close)
    variants.append(Variant("preset (own pool)", "requests", _requests_runner(session, url)))

    inner = httpx.HTTPTransport()
    closer.closers.append(inner.close)
    for name in ("bare", "bare (A/A)"):
        client = httpx.Client(transport=inner, headers=auth)
        variants.append(Variant(name, "httpx", _httpx_runner(client, url)))
    preset = closer.presets["httpx"] = _preset(base_url)
    client = httpx.Client(transport=ResilientTransport(preset, transport=inner))
    variants.append(Variant("preset", "httpx", _httpx_runner(client, url)))

    async_inner = httpx.AsyncHTTPTransport()
    closer.closers.append(lambda: loop.run_until_complete(async_inner.aclose()))
    for name in ("bare", "bare (A/A)"):
        aclient = httpx.AsyncClient(transport=async_inner, headers=auth)
        variants.append(Variant(name, "httpx-async", _async_runner(loop, aclient, url)))
    preset = closer.presets["httpx-async"] = _preset(base_url)
    aclient = httpx.AsyncClient(transport=AsyncResilientTransport(preset, transport=async_inner))
    variants.append(Variant("preset", "httpx-async", _async_runner(loop, aclient, url)))
    return variants


class Floor:
    """The least a per-attempt span and duration metric cost with the SDK (a reference)."""

    def __init__(
        self, tracer_provider: TracerProvider, meter_provider: MeterProvider, base_url: str
    ) -> None:
        self.tracer = tracer_provider.get_tracer("bench.floor")
        meter = meter_provider.get_meter("bench.floor")
        self.histogram = meter.create_histogram("http.client.request.duration", unit="s")
        parts = httpx.URL(base_url)
        self.host = parts.host
        self.port = parts.port or 80

    def attempt(
        self,
        method: str,
        headers: Any,
        send: Callable[[], requests.Response],
    ) -> requests.Response:
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "server.address": self.host,
            "server.port": self.port,
        }
        span = self.tracer.start_span(method, kind=trace.SpanKind.CLIENT, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        try:
            inject(headers)
            began = time.monotonic()
            response = send()
            status = response.status_code
            span.set_attribute("http.response.status_code", status)
            attributes["http.response.status_code"] = status
            self.histogram.record(time.monotonic() - began, attributes)
            return response
        finally:
            context.detach(token)
            span.end()

    def policy(self) -> Callable[[Call, Next], requests.Response]:
        """The floor as a policy, for the preset's tracing seam."""

        def floor(call: Call, next: Next) -> requests.Response:
            request = call.request
            return self.attempt(request.method or "GET", request.headers, lambda: next(call))

        return floor


class FloorAdapter(Wrapping):
    """A bare session's adapter with the floor around every send (as instrumentations do)."""

    def __init__(self, inner: HTTPAdapter, floor: Floor) -> None:
        super().__init__(inner)
        self.floor = floor

    def around(
        self, request: requests.PreparedRequest, send: Callable[[], requests.Response]
    ) -> requests.Response:
        return self.floor.attempt(request.method or "GET", request.headers, send)


def sdk_variants(base_url: str, closer: Closer) -> list[Variant]:
    """Phase ``sdk``: bare, bare+floor, preset+floor, preset+sdk (requests only)."""
    url = base_url + PATH
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    # As production set-ups do: spans are exported off the request path, in batches.
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    closer.closers += [tracer_provider.shutdown, meter_provider.shutdown]
    floor = Floor(tracer_provider, meter_provider, base_url)

    adapter = HTTPAdapter(max_retries=0)
    closer.closers.append(adapter.close)
    bare = requests.Session()
    bare.headers["Authorization"] = f"Bearer {API_KEY}"
    bare.mount(base_url + "/", adapter)
    bare_floor = requests.Session()
    bare_floor.headers["Authorization"] = f"Bearer {API_KEY}"
    bare_floor.mount(base_url + "/", FloorAdapter(adapter, floor))
    preset_floor = closer.presets["preset+floor"] = _preset(base_url, tracing=floor.policy())
    tracing = Tracing(tracer_provider=tracer_provider, meter_provider=meter_provider)
    preset_sdk = closer.presets["preset+sdk"] = _preset(base_url, tracing=tracing)
    prefix = base_url + "/"
    return [
        Variant("bare", "requests", _requests_runner(bare, url)),
        Variant("bare+floor", "requests", _requests_runner(bare_floor, url), exporter.clear),
        Variant(
            "preset+floor",
            "requests",
            _requests_runner(
                mount(requests.Session(), prefix, preset_floor, transport=adapter), url
            ),
            exporter.clear,
        ),
        Variant(
            "preset+sdk",
            "requests",
            _requests_runner(
                mount(requests.Session(), prefix, preset_sdk, transport=adapter), url
            ),
            exporter.clear,
        ),
    ]


# -- the measurement -------------------------------------------------------------------


def warm_up(variants: list[Variant], warmup: int) -> None:
    """Unrecorded calls: connections made, caches warm, rate limits taught the limit."""
    for variant in variants:
        variant.run(warmup)


def run_rounds(variants: list[Variant], rounds: int, slices: int, calls: int, seed: int) -> float:
    """Run the interleaved rounds; return the seconds taken.

    A round is `slices` slices; in each slice every variant sends `calls` calls, in a
    shuffled order. A round's statistics are over its slices' calls.
    """
    order = random.Random(seed)
    gc.collect()
    gc.freeze()  # what was built so far is not re-scanned by every full collection
    began = time.monotonic()
    try:
        for _ in range(rounds):
            this_round: dict[int, list[float]] = {id(v): [] for v in variants}
            for _ in range(slices):
                shuffled = variants[:]
                order.shuffle(shuffled)
                for variant in shuffled:
                    gc.collect()
                    this_round[id(variant)] += variant.run(calls)
                    if variant.reset is not None:
                        variant.reset()
            for variant in variants:
                latencies = this_round[id(variant)]
                variant.samples += latencies
                variant.round_medians.append(statistics.median(latencies))
                variant.round_p99s.append(p99(latencies))
    finally:
        gc.unfreeze()
    return time.monotonic() - began


def waits(presets: dict[str, Pipeline], minus: dict[str, int] | None = None) -> dict[str, int]:
    """How many attempts waited for a rate-limit token (or were refused one), per preset.

    The measured rounds must have none: a wait would be a sleep inside a sample.
    """
    counts = {}
    for name, pipeline in presets.items():
        limits = [p for p in pipeline.policies if isinstance(p, RateLimit)]
        count = sum(s.waited + s.refused for p in limits for s in p.snapshot().values())
        counts[name] = count - (minus or {}).get(name, 0)
    return counts


def summarise(variants: list[Variant]) -> dict[str, dict[str, Any]]:
    """Per transport: each variant's latencies and its ratios to that transport's bare."""
    out: dict[str, dict[str, Any]] = {}
    for transport in dict.fromkeys(v.transport for v in variants):
        group = [v for v in variants if v.transport == transport]
        bare = group[0]
        bare_median = statistics.median(bare.samples)
        bare_p99 = p99(bare.samples)
        rows: dict[str, Any] = {}
        for variant in group:
            median = statistics.median(variant.samples)
            pooled_p99 = p99(variant.samples)
            round_median_ratios = [
                v / b for v, b in zip(variant.round_medians, bare.round_medians, strict=True)
            ]
            round_p99_ratios = [
                v / b for v, b in zip(variant.round_p99s, bare.round_p99s, strict=True)
            ]
            round_median_diffs = [
                v - b for v, b in zip(variant.round_medians, bare.round_medians, strict=True)
            ]
            rows[variant.name] = {
                **_split(variant),
                "calls": len(variant.samples),
                "median_us": round(median * 1e6, 1),
                "p99_us": round(pooled_p99 * 1e6, 1),
                "over_bare_us": round((median - bare_median) * 1e6, 1),
                "median_round_median_diff_us": round(
                    statistics.median(round_median_diffs) * 1e6, 1
                ),
                "median_ratio": round(median / bare_median, 4),
                "median_round_median_ratio": round(statistics.median(round_median_ratios), 4),
                "p99_ratio": round(statistics.median(round_p99_ratios), 4),
                "pooled_p99_ratio": round(pooled_p99 / bare_p99, 4),
                "p99_9_us": round(statistics.quantiles(variant.samples, n=1000)[998] * 1e6, 1),
                # The 1st to 99th percentiles, for the plot's distribution curves.
                "percentiles_us": [
                    round(q * 1e6, 1) for q in statistics.quantiles(variant.samples, n=100)
                ],
            }
        out[transport] = rows
    return out


def _split(variant: Variant) -> dict[str, float]:
    """A timed variant's median µs per call in the transport and outside it."""
    if variant.timed is None:
        return {}
    inside = variant.timed.spent[-len(variant.samples) :]  # the warm-up's came first
    if len(inside) != len(variant.samples):
        return {}  # an attempt more than calls (a retry): no one-to-one split
    outside = [total - part for total, part in zip(variant.samples, inside, strict=True)]
    return {
        "in_transport_us": round(statistics.median(inside) * 1e6, 1),
        "outside_transport_us": round(statistics.median(outside) * 1e6, 1),
    }


def sdk_figures(rows: dict[str, Any]) -> dict[str, Any]:
    """The µs per attempt of phase ``sdk`` (pooled medians, and medians of round diffs)."""

    def diff(a: str, b: str) -> dict[str, float]:
        return {
            "pooled_us": round(rows[a]["median_us"] - rows[b]["median_us"], 1),
            "per_round_us": round(
                rows[a]["median_round_median_diff_us"] - rows[b]["median_round_median_diff_us"], 1
            ),
        }

    above = diff("preset+sdk", "bare+floor")
    return {
        "preset_sdk_above_bare_floor": above,
        "tracing_above_floor": diff("preset+sdk", "preset+floor"),
        "preset_floor_above_bare_floor": diff("preset+floor", "bare+floor"),
        "floor_above_bare": diff("bare+floor", "bare"),
        "target_us": TARGETS["sdk_us_above_floor"],
        "meets_target": above["pooled_us"] <= TARGETS["sdk_us_above_floor"],
    }


def measure(
    rounds: int, sdk_rounds: int, slices: int, calls: int, warmup: int, seed: int
) -> dict[str, Any]:
    """Both phases against one nginx; the results, as written to wire.json."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    with nginx() as (base_url, version):
        print(f"{version} on {base_url}", flush=True)
        loop = asyncio.new_event_loop()
        closer = Closer()
        try:
            variants = wire_variants(base_url, loop, closer)
            warm_up(variants, warmup)
            wire_warmup_waits = waits(closer.presets)
            wire_seconds = run_rounds(variants, rounds, slices, calls, seed)
            wire_waits = waits(closer.presets, minus=wire_warmup_waits)
        finally:
            closer.close()
        sdk_closer = Closer()
        try:
            sdk = sdk_variants(base_url, sdk_closer)
            warm_up(sdk, warmup)
            sdk_warmup_waits = waits(sdk_closer.presets)
            sdk_seconds = run_rounds(sdk, sdk_rounds, slices, calls, seed)
            sdk_waits = waits(sdk_closer.presets, minus=sdk_warmup_waits)
        finally:
            sdk_closer.close()
            loop.close()
    wire = summarise(variants)
    for transport, rows in wire.items():
        for name, row in rows.items():
            key = transport if name == "preset" else f"{transport} {name.removeprefix('preset ')}"
            if key not in wire_waits:
                continue  # a bare variant
            row["meets_median_target"] = row["median_ratio"] <= TARGETS["median_ratio"]
            row["meets_p99_target"] = row["p99_ratio"] <= TARGETS["p99_ratio"]
            row["rate_limit_waits"] = wire_waits[key]
            row["rate_limit_waits_in_warmup"] = wire_warmup_waits[key]
    sdk_rows = summarise(sdk)["requests"]
    for name in ("preset+floor", "preset+sdk"):
        sdk_rows[name]["rate_limit_waits"] = sdk_waits[name]
        sdk_rows[name]["rate_limit_waits_in_warmup"] = sdk_warmup_waits[name]
    return {
        "benchmark": "wire",
        "server": f"{version}, one worker, loopback, keep-alive",
        "request": f"GET {PATH} -> 200, {len(BODY)} bytes of JSON and X-RateLimit-* headers",
        "preset": list(closer.presets["requests"].names),
        "settings": {
            "rounds": rounds,
            "sdk_rounds": sdk_rounds,
            "slices_per_round": slices,
            "calls_per_slice": calls,
            "warmup": warmup,
            "seed": seed,
            "wire_seconds": round(wire_seconds, 1),
            "sdk_seconds": round(sdk_seconds, 1),
            # 1, 5 and 15-minute load averages: other processes on a shared machine.
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "targets": TARGETS,
        "wire": wire,
        "sdk": {"variants": sdk_rows, **sdk_figures(sdk_rows)},
    }


def report(data: dict[str, Any]) -> None:
    """Print the tables of a run."""
    print(f"preset: {' -> '.join(data['preset'])}")
    headers = ["transport", "variant", "n", "median µs", "p99 µs", "over bare µs"]
    headers += ["median ratio", "per round", "p99 ratio (rounds)", "pooled p99 ratio", "met"]
    rows = []
    for transport, variants in data["wire"].items():
        for name, v in variants.items():
            met = ""
            if "meets_median_target" in v:
                met = "yes" if v["meets_median_target"] and v["meets_p99_target"] else "NO"
            rows.append(
                [
                    transport,
                    name,
                    v["calls"],
                    v["median_us"],
                    v["p99_us"],
                    v["over_bare_us"],
                    f"{v['median_ratio']:.3f}",
                    f"{v['median_round_median_ratio']:.3f}",
                    f"{v['p99_ratio']:.3f}",
                    f"{v['pooled_p99_ratio']:.3f}",
                    met,
                ]
            )
    targets = data["targets"]
    print(
        f"\non the wire (targets: median <= {targets['median_ratio']}x,"
        f" p99 <= {targets['p99_ratio']}x bare)"
    )
    print(table(headers, rows))
    split = [
        [name, v["in_transport_us"], v["outside_transport_us"]]
        for name, v in data["wire"]["requests"].items()
        if "in_transport_us" in v
    ]
    if split:
        print("\nrequests: where a call's time goes (median µs per call)")
        print(table(["variant", "in HTTPAdapter.send", "outside it (Session, pipeline)"], split))
    sdk = data["sdk"]
    rows = [
        [name, v["calls"], v["median_us"], v["p99_us"], v["over_bare_us"]]
        for name, v in sdk["variants"].items()
    ]
    print("\nwith the OpenTelemetry SDK recording (requests)")
    print(table(["variant", "n", "median µs", "p99 µs", "over bare µs"], rows))
    for key, label in (
        ("preset_sdk_above_bare_floor", "preset+sdk above bare+floor (target)"),
        ("tracing_above_floor", "preset+sdk above preset+floor (Tracing over the floor)"),
        ("floor_above_bare", "bare+floor above bare (the SDK floor)"),
    ):
        f = sdk[key]
        print(f"  {label}: {f['pooled_us']:+.1f} µs (per round {f['per_round_us']:+.1f} µs)")
    verdict = "met" if sdk["meets_target"] else "NOT met"
    print(f"  target <= {sdk['target_us']:.0f} µs per attempt above the floor: {verdict}")
    waited = {
        f"{phase}: {transport} {name}": v["rate_limit_waits"]
        for phase, group in (("wire", data["wire"]), ("sdk", {"requests": sdk["variants"]}))
        for transport, variants in group.items()
        for name, v in variants.items()
        if v.get("rate_limit_waits")
    }
    if waited:
        print(f"\nWARNING: calls waited for a rate-limit token (sleeps in samples): {waited}")


def redraw(path: Path) -> None:
    """Redraw docs/assets/wire.png and wire-tables.md from `path` (needs matplotlib)."""
    from benchmarks import plot  # matplotlib is imported by the function called

    try:
        written = plot.wire(plot.load(path.parent))
    except ImportError as exc:  # pragma: no cover - matplotlib is in the bench extra
        print(f"not redrawn (needs matplotlib): {exc}")
        return
    print("redrawn: " + ", ".join(str(p) for p in written))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, write results/wire.json; return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40, help="rounds of phase wire")
    parser.add_argument("--sdk-rounds", type=int, default=40, help="rounds of phase sdk")
    parser.add_argument("--slices", type=int, default=20, help="slices per round")
    parser.add_argument("--calls", type=int, default=10, help="calls per variant per slice")
    parser.add_argument("--warmup", type=int, default=200, help="unrecorded calls per variant")
    parser.add_argument("--seed", type=int, default=1, help="seed of the shuffled order")
    parser.add_argument("--plot", action="store_true", help="only redraw from wire.json")
    args = parser.parse_args(argv)
    path = RESULTS / "wire.json"
    if args.plot:
        redraw(path)
        return {}
    try:
        data = measure(
            args.rounds, args.sdk_rounds, args.slices, args.calls, args.warmup, args.seed
        )
    except RuntimeError as exc:  # no nginx, and none could be installed or started
        if not str(exc).startswith("bench wire:"):
            raise
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None
    report(data)
    path = write("wire", data)
    print(f"\nwritten to {path}")
    redraw(path)
    return data


if __name__ == "__main__":
    main()

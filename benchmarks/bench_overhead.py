"""Per-request overhead of the full pipeline against a bare ``requests.Session``.

Every variant sends ``GET /billing/balance`` to the fake Vinci server, which runs in a
child process (so that the server does not compete for this process's GIL), over
keep-alive loopback HTTP. All variants share one ``HTTPAdapter``, hence one connection
and one server thread: two sessions with connections of their own differ by up to
20 µs in an A/A test here, more than the differences measured. The variants run in one
process, interleaved: each round runs every variant for a batch of requests, in a
shuffled order, so drifts of a shared machine hit them all alike. Reported: the median
latency per request, the overhead over the bare session and over the pipeline without
tracing, and the ratio (also the median of per-round ratios).

Variants:
  bare          requests.Session with the Authorization header set by hand
  pipeline      StatusErrors -> Retry -> CircuitBreaker -> APIKeyAuth (whatever exists),
                no Tracing
  api-only      the same plus Tracing(), with only opentelemetry-api (no SDK provider
                configured): the target is <= 5% over bare
  sdk           the same with Tracing(tracer_provider=SDK, meter_provider=SDK), spans to
                an in-memory exporter and metrics to an in-memory reader: target <= 15%
  sdk-floor     reference: the pipeline plus the least any per-attempt instrumentation
                must do with the same SDK (start a span with three attributes, make it
                current, inject, set two attributes, record the duration, end it), to
                tell the SDK's own cost from what Tracing adds

Run: ``python -m benchmarks.bench_overhead [--rounds N] [--batch N]``; writes
``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests
from opentelemetry import context, trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from requests.adapters import HTTPAdapter

from benchmarks._common import table, write
from requests_resilience import (
    APIKeyAuth,
    CircuitBreaker,
    Pipeline,
    Retry,
    StatusErrors,
    Tracing,
    mount,
)

PATH = "/billing/balance"
if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from requests_resilience import Call, Next
TARGETS = {"api-only": 1.05, "sdk": 1.15}

_SERVER = """
import sys
from requests_resilience.testing import FakeVinciServer
with FakeVinciServer() as server:
    print(server.base_url, server.api_key, flush=True)
    sys.stdin.read()
"""


def _policies(api_key: str) -> list[Any]:
    """The measured pipeline, in the documented order (Tracing is added per variant)."""
    return [StatusErrors(), Retry(), CircuitBreaker(), APIKeyAuth(api_key)]


def sdk_floor(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Any:
    """The least a per-attempt span and duration metric cost with the SDK (a reference)."""
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram("floor.duration", unit="s")

    def floor(call: Call, next: Next) -> requests.Response:
        attributes: dict[str, AttributeValue] = {
            "http.request.method": "GET",
            "server.address": "h",
            "server.port": 1,
        }
        span = tracer.start_span("GET", kind=trace.SpanKind.CLIENT, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        try:
            inject(call.request.headers)
            began = time.monotonic()
            response = next(call)
            span.set_attributes(
                {"http.response.status_code": response.status_code, "url.full": "u"}
            )
            histogram.record(time.monotonic() - began, {**attributes, "status": 200})
            return response
        finally:
            context.detach(token)
            span.end()

    return floor


class Variant:
    """One way of sending the request: a session, and what to do between rounds."""

    def __init__(
        self, name: str, session: requests.Session, reset: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.session = session
        self.reset = reset
        self.samples: list[float] = []
        self.round_medians: list[float] = []


def build(base_url: str, api_key: str, phase: str) -> tuple[list[Variant], list[str]]:
    """The variants of one phase, and the names of the policies in the full pipeline.

    Phase ``"api"`` measures Tracing with only the API at work (no SDK object exists in
    the process yet: an SDK's span processor thread would tax every variant); phase
    ``"sdk"`` measures it recording through the SDK. Each has its own bare baseline.
    """
    prefix = base_url + "/"
    shared = HTTPAdapter(max_retries=0)
    bare = requests.Session()
    bare.headers["Authorization"] = f"Bearer {api_key}"
    bare.mount(prefix, shared)

    def session(pipeline: Pipeline) -> requests.Session:
        return mount(requests.Session(), prefix, pipeline, transport=shared)

    plain = session(Pipeline(*_policies(api_key)))
    names = [*Pipeline(*_policies(api_key)).names, "tracing"]
    if phase == "api":
        api_only = session(Pipeline(*_policies(api_key), Tracing()))
        return [
            Variant("bare", bare),
            Variant("pipeline", plain),
            Variant("api-only", api_only),
        ], names

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    # As production set-ups do: spans are exported off the request path, in batches.
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracing = Tracing(tracer_provider=tracer_provider, meter_provider=meter_provider)
    sdk_pipeline = Pipeline(*_policies(api_key), tracing)
    sdk = session(sdk_pipeline)
    floor = session(Pipeline(*_policies(api_key), sdk_floor(tracer_provider, meter_provider)))
    variants = [
        Variant("bare", bare),
        Variant("pipeline", plain),
        Variant("sdk", sdk, reset=exporter.clear),
        Variant("sdk-floor", floor, reset=exporter.clear),
    ]
    return variants, names


def run_batch(variant: Variant, url: str, batch: int, record: bool) -> None:
    """Send `batch` requests; keep the per-request latencies if `record`."""
    session = variant.session
    latencies: list[float] = []
    for _ in range(batch):
        began = time.perf_counter()
        response = session.get(url, timeout=10)
        response.content  # noqa: B018 - read the body, as every variant does
        response.close()
        latencies.append(time.perf_counter() - began)
        if response.status_code != 200:
            msg = f"{variant.name}: unexpected status {response.status_code}"
            raise RuntimeError(msg)
    if record:
        variant.samples.extend(latencies)
        variant.round_medians.append(statistics.median(latencies))
    if variant.reset is not None:
        variant.reset()


def measure(rounds: int, batch: int, warmup: int, seed: int) -> dict[str, Any]:
    """Both phases (API only first, then the SDK); `variants` merges them."""
    api = measure_phase("api", rounds, batch, warmup, seed)
    sdk = measure_phase("sdk", rounds, batch, warmup, seed)
    merged = {**api, "variants": {**api["variants"]}, "phases": {"api": api, "sdk": sdk}}
    for name in ("sdk", "sdk-floor"):
        merged["variants"][name] = sdk["variants"][name]
    return merged


def measure_phase(phase: str, rounds: int, batch: int, warmup: int, seed: int) -> dict[str, Any]:
    """Start the server, run the interleaved rounds of one phase, return the results."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url, api_key = server.stdout.readline().split()
        url = base_url + PATH
        variants, policies = build(base_url, api_key, phase)
        order = random.Random(seed)
        for variant in variants:
            run_batch(variant, url, warmup, record=False)
        for _ in range(rounds):
            shuffled = variants[:]
            order.shuffle(shuffled)
            for variant in shuffled:
                run_batch(variant, url, batch, record=True)
        for variant in variants:
            variant.session.close()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    return summarise(variants, policies, rounds=rounds, batch=batch)


def summarise(
    variants: list[Variant], policies: list[str], *, rounds: int, batch: int
) -> dict[str, Any]:
    bare = variants[0]
    bare_median = statistics.median(bare.samples)
    pipeline_median = statistics.median(variants[1].samples)
    results: dict[str, Any] = {}
    for variant in variants:
        median = statistics.median(variant.samples)
        per_round = [v / b for v, b in zip(variant.round_medians, bare.round_medians, strict=True)]
        target = TARGETS.get(variant.name)
        ratio = median / bare_median
        results[variant.name] = {
            "requests": len(variant.samples),
            "median_us": round(median * 1e6, 1),
            "p90_us": round(statistics.quantiles(variant.samples, n=10)[-1] * 1e6, 1),
            "overhead_us": round((median - bare_median) * 1e6, 1),
            "over_pipeline_us": round((median - pipeline_median) * 1e6, 1),
            "ratio": round(ratio, 4),
            "median_round_ratio": round(statistics.median(per_round), 4),
            "target_ratio": target,
            "meets_target": None if target is None else ratio <= target,
        }
    return {
        "benchmark": "overhead",
        "request": f"GET {PATH} on the fake Vinci server (child process, loopback, keep-alive)",
        "pipeline": policies,
        "rounds": rounds,
        "batch": batch,
        "variants": results,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table, write results/overhead.json; return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=20, help="requests per variant per round")
    parser.add_argument("--warmup", type=int, default=50, help="unrecorded requests per variant")
    parser.add_argument("--seed", type=int, default=1, help="seed of the shuffled order")
    args = parser.parse_args(argv)
    data = measure(args.rounds, args.batch, args.warmup, args.seed)
    rows = [
        [
            name,
            v["requests"],
            v["median_us"],
            v["p90_us"],
            v["overhead_us"],
            v["over_pipeline_us"],
            f"{(v['ratio'] - 1) * 100:+.1f}%",
            f"{(v['median_round_ratio'] - 1) * 100:+.1f}%",
            "" if v["target_ratio"] is None else f"<= {(v['target_ratio'] - 1) * 100:.0f}%",
            "" if v["meets_target"] is None else ("yes" if v["meets_target"] else "NO"),
        ]
        for name, v in data["variants"].items()
    ]
    print(f"pipeline: {' -> '.join(data['pipeline'])}")
    headers = ["variant", "n", "median µs", "p90 µs", "overhead µs", "over pipeline µs"]
    headers += ["ratio-1", "per round"]
    print(table([*headers, "target", "met"], rows))
    path = write("overhead", data)
    print(f"\nwritten to {path}")
    return data


if __name__ == "__main__":
    main()

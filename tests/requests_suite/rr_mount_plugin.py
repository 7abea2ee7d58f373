"""A pytest plugin for requests' own suite: every new Session gets a `PipelineAdapter`.

Loaded with ``-p rr_mount_plugin``; the configuration comes from the environment
variable ``RR_REQUESTS_SUITE``:

- ``empty``: ``Pipeline()``, nothing but the adapter itself;
- ``policies``: ``Retry()``, ``CircuitBreaker()``, a ``RateLimit`` far above anything
  the suite sends, and ``Tracing()`` recording into an OpenTelemetry SDK tracer
  provider (set as the global one) with an in-memory exporter. Waits are switched off with
  `requests_resilience.set_testing` (the retries still happen, without sleeping).

Each Session gets a pipeline of its own, so breaker and budget state never leak from
one test into another, as a new Session's HTTPAdapter has a pool of its own.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import requests_resilience as rr

EXPORTER = InMemorySpanExporter()


def build_pipeline(mode: str) -> rr.Pipeline:
    """The pipeline for one configuration of the run."""
    if mode == "empty":
        return rr.Pipeline()
    if mode == "policies":
        return rr.Pipeline(
            rr.Retry(),
            rr.CircuitBreaker(),
            rr.RateLimit(1_000_000, burst=100_000),
            rr.Tracing(),  # the global SDK provider set in pytest_configure
        )
    msg = f"RR_REQUESTS_SUITE must be 'empty' or 'policies', got {mode!r}"
    raise pytest.UsageError(msg)


def pytest_configure(config: pytest.Config) -> None:
    """Patch `requests.Session.__init__` to mount the pipeline on http:// and https://."""
    mode = os.environ.get("RR_REQUESTS_SUITE", "empty")
    build_pipeline(mode)  # a bad mode fails here, before any test runs
    if mode == "policies":
        rr.set_testing(True)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    original = requests.Session.__init__

    def mounted_init(self: requests.Session, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        # One adapter per prefix, as requests mounts one HTTPAdapter each.
        self.mount("https://", rr.PipelineAdapter(build_pipeline(mode)))
        self.mount("http://", rr.PipelineAdapter(build_pipeline(mode)))

    requests.Session.__init__ = mounted_init  # type: ignore[method-assign]

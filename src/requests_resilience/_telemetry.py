"""Where policies report what happened: structlog events, span events and metrics.

Policies call the three reporting functions only off the happy path (a retry is
scheduled, a breaker changes state, a logical call fails), so their cost does not
matter to the per-request path; the per-attempt span, duration metric and debug event
belong to the `Tracing` policy, which uses the helpers at the bottom of this module.

What each report becomes (structlog logger ``requests_resilience``; span events go on
the current span; metrics through the global meter provider):

- `retry_scheduled`: warning ``retry_scheduled``; span event
  ``requests_resilience.retry``; counter ``requests_resilience.retries`` (by reason).
- `breaker_state_changed`: warning ``breaker_state_changed``; span event
  ``requests_resilience.breaker``; counter ``requests_resilience.breaker.state_changes``.
- `hedge_launched`: info ``hedge_launched``; span event ``requests_resilience.hedge``;
  counter ``requests_resilience.hedges`` (by trigger). The hedged attempt's own span
  (from ``Tracing``) carries ``requests_resilience.hedge = true``.
- `call_failed`: error ``call_failed`` (the exception itself reaches the caller, and
  `operation` records it on its span).
- each wire attempt, from the ``Tracing`` policy: debug ``attempt``; its own CLIENT
  span; histogram ``http.client.request.duration``.

Logging: the library never writes to stdout and never configures logging. Until the
application configures structlog (``structlog.is_configured()`` is False), every event
goes through the stdlib logger ``requests_resilience``, as urllib3's do: its levels and
handlers apply, and an application that configured nothing sees the warnings on
stderr through Python's last-resort handler. The record's message is
``"<event> key=value ..."``, and ``record.requests_resilience`` holds the event's
name (``"event"``) and fields as a dict, for formatters and filters. ``call_failed``
is logged at INFO there (the caller gets the exception itself; a library that both
raises and logs an error prints every failure twice). Once the application has
configured structlog, the same events go through ``structlog.get_logger(
"requests_resilience")`` with the same names and fields (``call_failed`` at error),
so its processors apply. No event ever holds the API key or a header: URLs are logged
without query, fragment or credentials, and messages were redacted by the pipeline.

Spans and metrics go through ``opentelemetry-api`` only: without an SDK they cost
next to nothing. The span events land on the span that is current where the policy
runs: the `operation` span (or your own span) around the call, since retry and breaker
sit outside the per-attempt `Tracing` span. The counters use the global meter provider,
looked up when they are first needed after it changes, so a provider configured after
import is used.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.metadata
import logging
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

import structlog
import structlog.stdlib
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context

from requests_resilience._errors import _safe_url

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from requests_resilience._errors import APIError
    from requests_resilience._events import BreakerStateChange, HedgeDetails, RetryDetails
    from requests_resilience._secrets import Redactor

_T = TypeVar("_T")

__all__ = [
    "INSTRUMENTATION_NAME",
    "SCHEMA_URL",
    "breaker_state_changed",
    "call_failed",
    "hedge_launched",
    "hedging_attempt",
    "retry_scheduled",
]

#: The instrumentation scope of every tracer and meter of this library.
INSTRUMENTATION_NAME = "requests_resilience"
#: The semantic-conventions version the spans and metrics follow.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"


def _version() -> str:
    try:
        return importlib.metadata.version("requests-resilience")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0"


INSTRUMENTATION_VERSION = _version()


class _Fields:
    """``key=value ...``, rendered only if a handler formats the record."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{key}={_text(value)}" for key, value in self.fields.items())


def _text(value: object) -> str:
    if isinstance(value, str) and (not value or any(c in value for c in " \t\n'\"=")):
        return repr(value)
    return str(value)


class EventLogger:
    """The library's logger: structlog once the application configured it, else stdlib.

    Each method takes the event name and its fields, like a structlog logger.
    """

    __slots__ = ("_stdlib", "_structlog")

    def __init__(self, name: str) -> None:
        self._stdlib = logging.getLogger(name)
        # As urllib3 and requests do: with no logging configured, Python's last-resort
        # handler would print our warnings to stderr; a library leaves that to the
        # application (the logging HOWTO, "Configuring Logging for a Library").
        if not any(isinstance(h, logging.NullHandler) for h in self._stdlib.handlers):
            self._stdlib.addHandler(logging.NullHandler())
        # A lazy proxy: the application's structlog configuration applies once made.
        self._structlog: Any = structlog.get_logger(name)

    def is_enabled_for(self, level: int) -> bool:
        """Whether the stdlib logger takes `level` (the path used before structlog is set up)."""
        return self._stdlib.isEnabledFor(level)

    def emit(
        self, level: int, event: str, fields: dict[str, Any], *, stdlib_level: int = 0
    ) -> None:
        """Log `event` with `fields` at `level` (at `stdlib_level` on the stdlib path if set)."""
        if structlog.is_configured():
            getattr(self._structlog, _METHODS[level])(event, **fields)
            return
        level = stdlib_level or level
        if self._stdlib.isEnabledFor(level):
            self._stdlib.log(
                level,
                "%s %s",
                event,
                _Fields(fields),
                extra={"requests_resilience": {"event": event, **fields}},
            )

    def debug(self, event: str, **fields: Any) -> None:
        """Log a debug event."""
        self.emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log an info event."""
        self.emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log a warning event."""
        self.emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log an error event."""
        self.emit(logging.ERROR, event, fields)


_METHODS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}

#: The library's logger (see the module docstring for where its events go).
logger = EventLogger(INSTRUMENTATION_NAME)


# -- the three reports --------------------------------------------------------------------


def retry_scheduled(details: RetryDetails) -> None:
    """A retry policy is about to wait `details.wait` and send again.

    Logs a warning ``retry_scheduled`` (attempt, wait, reason, request_id, ...), adds a
    ``requests_resilience.retry`` event to the current span and counts one
    ``requests_resilience.retries`` with the reason.
    """
    fields = _without_none(
        policy=details.policy,
        method=details.method,
        url=details.url,
        attempt=details.attempt,
        wait=round(details.wait, 6),
        reason=details.reason,
        status_code=details.status_code,
        error=details.error,
        request_id=details.request_id,
        retry_after=details.retry_after,
        elapsed=round(details.elapsed, 6),
    )
    logger.warning("retry_scheduled", **fields)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            "requests_resilience.retry",
            _attributes(
                {
                    "requests_resilience.retry.policy": details.policy,
                    "requests_resilience.retry.attempt": details.attempt,
                    "requests_resilience.retry.wait": details.wait,
                    "requests_resilience.retry.reason": details.reason,
                    "requests_resilience.retry.retry_after": details.retry_after,
                    "http.request.method": details.method,
                    "url.full": details.url,
                    "http.response.status_code": details.status_code,
                    "error.type": details.error,
                    "requests_resilience.request_id": details.request_id,
                }
            ),
        )
    counters = _counters()
    if counters is not None:
        host = _host_of(details.url)
        counters.retries.add(
            1,
            _attributes(
                {
                    "requests_resilience.retry.policy": details.policy,
                    "requests_resilience.retry.reason": details.reason,
                    "http.request.method": details.method,
                    "server.address": host,
                }
            ),
        )


def breaker_state_changed(change: BreakerStateChange) -> None:
    """A circuit breaker changed state.

    Logs a warning ``breaker_state_changed``, adds a ``requests_resilience.breaker``
    event to the current span and counts one
    ``requests_resilience.breaker.state_changes``.
    """
    fields = _without_none(
        breaker=change.breaker,
        old_state=change.old_state,
        new_state=change.new_state,
        failure_ratio=change.failure_ratio,
        slow_call_ratio=change.slow_call_ratio,
        calls=change.calls,
        retry_after=change.retry_after,
    )
    logger.warning("breaker_state_changed", **fields)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            "requests_resilience.breaker",
            _attributes(
                {
                    "requests_resilience.breaker.name": change.breaker,
                    "requests_resilience.breaker.previous_state": change.old_state,
                    "requests_resilience.breaker.state": change.new_state,
                    "requests_resilience.breaker.failure_ratio": change.failure_ratio,
                    "requests_resilience.breaker.slow_call_ratio": change.slow_call_ratio,
                    "requests_resilience.breaker.calls": change.calls,
                    "requests_resilience.breaker.retry_after": change.retry_after,
                }
            ),
        )
    counters = _counters()
    if counters is not None:
        counters.breaker_changes.add(
            1,
            {
                "requests_resilience.breaker.name": change.breaker,
                "requests_resilience.breaker.previous_state": change.old_state,
                "requests_resilience.breaker.state": change.new_state,
            },
        )


#: True in the context of an attempt that a hedging policy sent as a hedge (it sets it
#: in the attempt's own copy of the context); the Tracing policy marks the span.
hedging_attempt: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "requests_resilience_hedge", default=False
)


def hedge_launched(details: HedgeDetails) -> None:
    """A hedging policy is about to send another attempt of a call.

    Logs an info ``hedge_launched`` (attempt, hedge, trigger, delay, elapsed, ...): a
    hedge is the policy working as meant, not a warning. Adds a
    ``requests_resilience.hedge`` event to the current span and counts one
    ``requests_resilience.hedges`` with the trigger.
    """
    fields = _without_none(
        policy=details.policy,
        method=details.method,
        url=details.url,
        attempt=details.attempt,
        hedge=details.hedge,
        trigger=details.trigger,
        delay=None if details.delay is None else round(details.delay, 6),
        elapsed=round(details.elapsed, 6),
        status_code=details.status_code,
        error=details.error,
    )
    logger.info("hedge_launched", **fields)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            "requests_resilience.hedge",
            _attributes(
                {
                    "requests_resilience.hedge.policy": details.policy,
                    "requests_resilience.hedge.attempt": details.attempt,
                    "requests_resilience.hedge.number": details.hedge,
                    "requests_resilience.hedge.trigger": details.trigger,
                    "requests_resilience.hedge.delay": details.delay,
                    "requests_resilience.hedge.elapsed": details.elapsed,
                    "http.request.method": details.method,
                    "url.full": details.url,
                    "http.response.status_code": details.status_code,
                    "error.type": details.error,
                }
            ),
        )
    counters = _counters()
    if counters is not None:
        counters.hedges.add(
            1,
            _attributes(
                {
                    "requests_resilience.hedge.policy": details.policy,
                    "requests_resilience.hedge.trigger": details.trigger,
                    "http.request.method": details.method,
                    "server.address": _host_of(details.url),
                }
            ),
        )


def call_failed(error: APIError) -> None:
    """A logical call ended with `error` (raised by the outermost StatusErrors policy).

    Logs an error ``call_failed`` with the error's type, message (already redacted by
    the pipeline), status, request_id and attempt count (at INFO on the stdlib path).
    The exception itself reaches the caller, and `operation` records it on its span.
    """
    request = error.request
    if request is None and error.response is not None:
        request = error.response.request
    fields = _without_none(
        error=type(error).__qualname__,
        message=error.message,
        status_code=getattr(error, "status_code", None),
        request_id=getattr(error, "request_id", None),
        attempts=error.attempts,
        method=getattr(request, "method", None),
        url=_safe_url(getattr(request, "url", None)) or None,
    )
    logger.emit(logging.ERROR, "call_failed", fields, stdlib_level=logging.INFO)


# -- helpers for the Tracing policy and operation() ---------------------------------------


_NATIVE_DEBUG: dict[type, bool] = {}
_DEBUG = logging.DEBUG
#: `debug_enabled` while structlog is unconfigured (the stdlib logger's level), as one
#: call: the logger's own method, bound (the logger lives as long as the process).
stdlib_debug_enabled: Callable[[], bool] = functools.partial(logger._stdlib.isEnabledFor, _DEBUG)


def debug_enabled() -> bool:
    """Whether per-attempt debug events would be emitted, checked before building one.

    While structlog is unconfigured, and with structlog's stdlib integration, the
    ``requests_resilience`` stdlib logger's level decides; with structlog's own
    filtering loggers, the configured level does (cached per logger class). An unknown
    wrapper class is assumed to want the events.
    """
    if not structlog.is_configured():
        return logger._stdlib.isEnabledFor(_DEBUG)  # `is_enabled_for`, one call fewer
    wrapper = structlog.get_config()["wrapper_class"]
    known = _NATIVE_DEBUG.get(wrapper)
    if known is not None:
        return known
    if isinstance(wrapper, type) and issubclass(wrapper, structlog.stdlib.BoundLogger):
        return logging.getLogger(INSTRUMENTATION_NAME).isEnabledFor(logging.DEBUG)
    check = getattr(wrapper, "is_enabled_for", None)
    if check is None:
        return True
    try:
        enabled = bool(check(None, logging.DEBUG))  # structlog's native: level >= min_level
    except Exception:
        return True
    _NATIVE_DEBUG[wrapper] = enabled
    return enabled


def log_attempt(**fields: Any) -> None:
    """Log the outcome of one wire attempt at debug level (None values left out)."""
    logger.debug("attempt", **_without_none(**fields))


_QUERY = re.compile(r"\?[^\s'\")\]]*")


def scrub(text: str, redactor: Redactor | None = None) -> str:
    """Remove query strings (``?...``) and the pipeline's secrets from `text`."""
    if "?" in text:
        text = _QUERY.sub("?…", text)
    return redactor.redact(text) if redactor is not None else text


def exception_attributes(
    exc: BaseException, redactor: Redactor | None = None
) -> dict[str, AttributeValue]:
    """Attributes for ``span.record_exception`` with the message and stack trace scrubbed.

    The SDK would record ``str(exc)`` and the whole cause chain as they are; a chained
    urllib3 error names the full URL, query included, so both go through `scrub`.
    """
    return {
        "exception.message": scrub(str(exc), redactor),
        "exception.stacktrace": scrub(
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), redactor
        ),
    }


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _attributes(values: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class _Counters:
    retries: metrics.Counter
    breaker_changes: metrics.Counter
    hedges: metrics.Counter


# -- the global providers, without an environment look-up per request -------------------
#
# `trace.get_tracer_provider()` and `metrics.get_meter_provider()` look the environment
# up (``OTEL_PYTHON_*_PROVIDER``) on every call until an application sets a provider:
# three look-ups per request for this library. The API keeps the provider that was set
# in a module global; it is read here directly, and the environment only once, when
# nothing is set: if it names a provider, the API's own getter loads it (and sets the
# global); if not, the getter's answer is the API's proxy provider, which is then kept.
# Should a later version of the API keep the global elsewhere, every call goes to its
# public getter, as before.

_TRACE_GLOBALS: dict[str, Any] = vars(trace)
_METRICS_GLOBALS: dict[str, Any] = vars(getattr(metrics, "_internal", metrics))
_READABLE = "_TRACER_PROVIDER" in _TRACE_GLOBALS and "_METER_PROVIDER" in _METRICS_GLOBALS
_unset: dict[str, Any] = {}  # the getters' answers while no provider is set


def global_tracer_provider() -> trace.TracerProvider:
    """The global tracer provider, as `trace.get_tracer_provider()` returns it."""
    # Set by the application, else the API's answer kept while unset (see `_while_unset`).
    provider = _TRACE_GLOBALS.get("_TRACER_PROVIDER") or _unset.get("trace")
    if provider is not None:
        return provider  # type: ignore[no-any-return]
    return _while_unset("trace", trace.get_tracer_provider)  # type: ignore[no-any-return]


def global_meter_provider() -> metrics.MeterProvider:
    """The global meter provider, as `metrics.get_meter_provider()` returns it."""
    provider = _METRICS_GLOBALS.get("_METER_PROVIDER") or _unset.get("metrics")
    if provider is not None:
        return provider  # type: ignore[no-any-return]
    return _while_unset("metrics", metrics.get_meter_provider)  # type: ignore[no-any-return]


def _while_unset(kind: str, getter: Any) -> Any:
    if not _READABLE:
        return getter()
    answer = _unset.get(kind)
    if answer is None:
        answer = getter()  # reads the environment (and may load and set a provider)
        globals_, name = (
            (_TRACE_GLOBALS, "_TRACER_PROVIDER")
            if kind == "trace"
            else (_METRICS_GLOBALS, "_METER_PROVIDER")
        )
        if globals_.get(name) is None:  # nothing loaded: the answer is the API's proxy
            _unset[kind] = answer
    return answer


#: The tracer and meter providers the application set, None while unset, read without
#: a Python call (a C method bound to the API's module global): the key of what a
#: policy made for the providers (`Tracing` asks on every attempt). Where the API keeps
#: its globals elsewhere, the getters themselves.
set_tracer_provider: Callable[[], object] = (
    functools.partial(_TRACE_GLOBALS.get, "_TRACER_PROVIDER")
    if _READABLE
    else global_tracer_provider
)
set_meter_provider: Callable[[], object] = (
    functools.partial(_METRICS_GLOBALS.get, "_METER_PROVIDER")
    if _READABLE
    else global_meter_provider
)


#: The meter provider of the reports: the global one (tests swap this name). The
#: function itself, not a wrapper: `PerProvider.get` calls it on every attempt.
_meter_provider: Callable[[], metrics.MeterProvider] = global_meter_provider

#: `opentelemetry.context.get_current()` without its wrapper: the API's runtime
#: context's own method (the policies read the context on every attempt).
current_context: Callable[[], Context] = (
    getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "get_current", None)
    or otel_context.get_current
)


def is_noop_meter_provider(provider: metrics.MeterProvider) -> bool:
    """Whether `provider` records nothing (the API's default, before an SDK is set)."""
    return isinstance(provider, _NOOP_METER_PROVIDERS)


class PerProvider(Generic[_T]):
    """Instruments on the global meter provider, made once per provider.

    `get()` returns None while no SDK records (the API's no-op provider: one check),
    else what `build` made with that provider's meter, made again when the
    application switches providers (the cache holds the provider, so a new one is
    never mistaken for it). Each module that records metrics keeps one.

    Args:
        build: makes the instruments from the library's `Meter`.

    Example:
        >>> _COUNTERS = PerProvider(lambda meter: meter.create_counter("x", unit="1"))
        >>> counter = _COUNTERS.get()
    """

    __slots__ = ("_build", "_cached", "_lock")

    def __init__(self, build: Callable[[metrics.Meter], _T]) -> None:
        self._build = build
        self._cached: tuple[metrics.MeterProvider, _T | None] | None = None
        self._lock = threading.Lock()

    def get(self) -> _T | None:
        """The instruments of the current provider, or None while nothing records."""
        provider = _meter_provider()
        cached = self._cached
        if cached is not None and cached[0] is provider:
            return cached[1]  # the hot path: the provider of the last call (no-op or not)
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] is not provider:
                built: _T | None = None
                if not is_noop_meter_provider(provider):
                    meter = provider.get_meter(
                        INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION, schema_url=SCHEMA_URL
                    )
                    built = self._build(meter)
                cached = self._cached = (provider, built)
            return cached[1]


def _build_counters(meter: metrics.Meter) -> _Counters:
    return _Counters(
        retries=meter.create_counter(
            "requests_resilience.retries",
            unit="{retry}",
            description="Retries scheduled by a retry policy, by reason.",
        ),
        breaker_changes=meter.create_counter(
            "requests_resilience.breaker.state_changes",
            unit="{change}",
            description="Circuit breaker state changes, by breaker and new state.",
        ),
        hedges=meter.create_counter(
            "requests_resilience.hedges",
            unit="{hedge}",
            description="Hedged attempts sent by a hedging policy, by trigger.",
        ),
    )


_COUNTERS: PerProvider[_Counters] = PerProvider(_build_counters)


def _counters() -> _Counters | None:
    return _COUNTERS.get()


def _noop_meter_providers() -> tuple[type[metrics.MeterProvider], ...]:
    kinds: list[type[metrics.MeterProvider]] = [metrics.NoOpMeterProvider]
    proxy = getattr(metrics, "_internal", None)
    proxy_type = getattr(proxy, "_ProxyMeterProvider", None)
    if isinstance(proxy_type, type):
        kinds.append(proxy_type)
    return tuple(kinds)


_NOOP_METER_PROVIDERS = _noop_meter_providers()

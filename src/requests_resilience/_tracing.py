"""The `Tracing` policy (one CLIENT span per wire attempt), `operation()` and `route()`.

HTTP instrumentations that wrap ``Session.send`` see one request where the wire saw
several: the retries happen below them. `Tracing` sits inside the retry, so it sees
every attempt and gives each its own span, as the HTTP semantic conventions ask;
`operation()` opens the span of the logical call above them::

    vinci.text_to_video                      INTERNAL  operation(...)
    │  event requests_resilience.retry       wait=0.4 reason="status 503"
    ├─ POST /generate/text-to-video          CLIENT    503  error.type=503
    ├─ POST /generate/text-to-video          CLIENT    503  http.request.resend_count=1
    └─ POST /generate/text-to-video          CLIENT    200  http.request.resend_count=2
                                                            vinci.request_id=...

Each attempt's request carries a ``traceparent`` (and whatever else the globally
configured propagator injects) naming that attempt's own span, so the server's spans
hang under the attempt that reached them.

With ``opentelemetry-instrumentation-requests`` also active, its span (one per
``Session.send``) is current when the pipeline runs: the attempt spans become its
children, so it plays the part of the logical call, and the ``traceparent`` on the
wire is the attempt's. To have only this library's spans for a mounted API, exclude
it from that instrumentation: ``RequestsInstrumentor().instrument(excluded_urls=
"api.example.com")``. `Tracing` also marks its attempts the way that instrumentation
does, so HTTP instrumentations below it (urllib3, http.client) add no third span, and
it honours ``suppress_instrumentation()`` and an application's own
``suppress_http_instrumentation()`` (no span, no metric).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeAlias
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

import structlog
from opentelemetry import context, metrics, trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode
from requests import Response

from requests_resilience._copying import Rebuilt
from requests_resilience._errors import ConfigurationError, _safe_url
from requests_resilience._headers import header
from requests_resilience._parsing import request_id_in_headers, request_id_of
from requests_resilience._telemetry import (
    INSTRUMENTATION_NAME,
    INSTRUMENTATION_VERSION,
    SCHEMA_URL,
    current_context,
    debug_enabled,
    exception_attributes,
    global_meter_provider,
    global_tracer_provider,
    hedging_attempt,
    is_noop_meter_provider,
    log_attempt,
    logger,
    scrub,
    set_meter_provider,
    set_tracer_provider,
    stdlib_debug_enabled,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue
    from requests import PreparedRequest

    from requests_resilience._pipeline import AsyncNext, Call, Next
    from requests_resilience._secrets import Redactor

__all__ = ["RequestHook", "ResponseHook", "Tracing", "operation", "route"]

#: ``request_hook(span, request)``: called when an attempt's span starts (if recording).
RequestHook = Callable[["Span", "PreparedRequest"], None]
#: ``response_hook(span, request, response)``: called when an attempt got a response.
ResponseHook = Callable[["Span", "PreparedRequest", "Response"], None]

#: The default span attribute for the server's request id.
DEFAULT_REQUEST_ID_ATTRIBUTE = "vinci.request_id"

# The semantic conventions' known methods; others are reported as "_OTHER".
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The semantic conventions' advised buckets for HTTP durations, in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# How many URLs the per-URL caches keep (they are emptied when full).
_URL_CACHE_SIZE = 256
# The request id is looked for in a JSON body only up to this size.
_MAX_ID_BODY = 64 * 1024
# Query parameters whose value is replaced by "REDACTED" in url.full (compared in lower
# case, without "-" and "_"): exact names, then parts of names.
_SECRET_PARAMS = frozenset({"sig", "pwd", "pass", "code"})
_SECRET_PARTS = ("key", "token", "secret", "passw", "signature", "credential", "auth", "session")
# Attempts with these errors never reached the wire, so they are no resend.
_NOT_SENT_ERRORS = frozenset({"CircuitOpenError"})


_SUPPRESS = getattr(context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")
_SUPPRESS_HTTP = getattr(
    context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", "suppress_http_instrumentation"
)
_NOOP_TRACER_PROVIDERS = (trace.NoOpTracerProvider, trace.ProxyTracerProvider)

_ROUTE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "requests_resilience_route", default=None
)
_OPERATION: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "requests_resilience_operation", default=None
)


@dataclass(eq=False, slots=True)
class _OpenAttempt:
    """One attempt's span, context token and metric attributes, while it runs."""

    base: dict[str, AttributeValue]
    histogram: metrics.Histogram | None
    log: bool
    span: Span | None = None
    recording: bool = False
    token: contextvars.Token[context.Context] | None = None
    began: float = 0.0

    def end(self) -> None:
        """Detach the context and end the span (both at most once)."""
        if self.token is not None:
            context.detach(self.token)
            self.token = None
        if self.span is not None:
            self.span.end()
            self.span = None


def _propagate(call: Call, current: context.Context) -> None:
    """Inject the caller's context (a span, baggage) into the attempt's headers.

    An empty context has nothing for a propagator to carry (W3C trace context and
    baggage inject from the context only), so the propagators are not run for it.
    """
    if current:
        inject(call.request.headers, context=current)


class Tracing(Rebuilt):
    """One OpenTelemetry CLIENT span, duration metric and debug event per wire attempt.

    Place it last (innermost), inside the retry, so that it runs once per attempt::

        StatusErrors -> Retry -> CircuitBreaker -> APIKeyAuth -> Tracing -> transport

    Each span follows the stable HTTP client conventions: named ``{METHOD}`` (or
    ``{METHOD} {template}`` inside `route`), with ``http.request.method``,
    ``server.address``, ``server.port``, ``url.full`` (credentials and secret-looking
    query values replaced by ``REDACTED``, the pipeline's secrets removed),
    ``http.response.status_code``, ``error.type`` (the status for >= 400, the
    exception's type name for an exception) with status ERROR, and
    ``http.request.resend_count`` from the second wire attempt on (a `Hedging`
    policy's hedges also get ``requests_resilience.hedge = true``). The server's request id
    (``X-Request-ID`` / ``Request-Id``, else ``request_id`` in a small JSON body that
    was not streamed) goes in `request_id_attribute`, on the attempt's span and on the
    enclosing `operation` span. The current context is injected into each attempt's
    headers by the global propagator (``traceparent``).

    Every attempt also records ``http.client.request.duration`` (seconds, on the
    pipeline's clock) and, once structlog is configured, logs a debug ``attempt``
    event. Without an OpenTelemetry SDK, and with structlog unconfigured, the policy
    only injects the context: no span, attribute or string is built.

    With ``opentelemetry-instrumentation-requests`` also active, the attempt spans
    become children of its one span per ``Session.send`` (see the module docstring):
    no attempt gets two spans, and the ``traceparent`` sent is the attempt's.

    Args:
        tracer_provider: where spans go; default: the global provider, looked up on
            each attempt, so one configured after the pipeline was built is used.
        meter_provider: where the duration metric goes; default: the global one, also
            looked up on each attempt.
        request_hook: ``hook(span, request)``, called as each recording span starts.
        response_hook: ``hook(span, request, response)``, called when a recording
            attempt got a response. A hook that raises is logged and ignored.
        request_id_attribute: the span attribute for the server's request id (default
            ``"vinci.request_id"``: this library was built for Vinci; name your API's
            own, e.g. ``"acme.request_id"``), or None to leave it out (and never look
            in the body). There is no semantic convention for it, and the ``http.*``
            namespace is reserved to them.

    Raises:
        ConfigurationError: a hook is not callable, a provider lacks
            ``get_tracer``/``get_meter``, or `request_id_attribute` is empty.

    Example:
        >>> from requests_resilience import APIKeyAuth, Pipeline, Retry, StatusErrors
        >>> def add_tenant(span, request):
        ...     span.set_attribute("app.tenant", "acme")
        >>> tracing = Tracing(request_hook=add_tenant)
        >>> pipeline = Pipeline(StatusErrors(), Retry(), APIKeyAuth("sk-example-key"), tracing)
    """

    __slots__ = (
        "_full_urls",
        "_meter_provider",
        "_recorders_cache",
        "_request_hook",
        "_request_id_attribute",
        "_response_hook",
        "_servers",
        "_tracer_provider",
    )
    name: ClassVar[str] = "tracing"

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        request_hook: RequestHook | None = None,
        response_hook: ResponseHook | None = None,
        request_id_attribute: str | None = DEFAULT_REQUEST_ID_ATTRIBUTE,
    ) -> None:
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            msg = "Tracing tracer_provider must be an OpenTelemetry TracerProvider or None"
            raise ConfigurationError(msg)
        if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
            msg = "Tracing meter_provider must be an OpenTelemetry MeterProvider or None"
            raise ConfigurationError(msg)
        for option, hook in (("request_hook", request_hook), ("response_hook", response_hook)):
            if hook is not None and not callable(hook):
                msg = f"Tracing {option} must be a function or None, got {type(hook).__name__}"
                raise ConfigurationError(msg)
        if request_id_attribute is not None and (
            not isinstance(request_id_attribute, str) or not request_id_attribute.strip()
        ):
            msg = (
                "Tracing request_id_attribute must be a non-empty attribute name or None, "
                f"got {request_id_attribute!r}"
            )
            raise ConfigurationError(msg)
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._request_hook = request_hook
        self._response_hook = response_hook
        self._request_id_attribute = request_id_attribute
        self._recorders_cache: tuple[object, object, _Recorders] | None = None
        self._servers: dict[str, dict[str, AttributeValue]] = {}
        self._full_urls: dict[tuple[str, Redactor], str] = {}

    @property
    def request_id_attribute(self) -> str | None:
        """The span attribute that holds the server's request id, or None."""
        return self._request_id_attribute

    # -- the policy -------------------------------------------------------------------

    def send(self, call: Call, next: Next) -> Response:
        """Send one attempt inside its own CLIENT span, with the context injected."""
        # Calls of the API-only path are written out here (`debug_enabled`'s stdlib
        # branch, `_propagate`): every function a call touches costs again on the wire,
        # where it runs with the caches cold (see the benchmarks page).
        current = current_context()
        if current.get(_SUPPRESS):
            return next(call)  # suppress_instrumentation(): an exporter's own request
        tracer, histogram = self._recorders()
        log = debug_enabled() if structlog.is_configured() else stdlib_debug_enabled()
        if tracer is None and histogram is None and not log:
            if current:  # else nothing to propagate (`_propagate`)
                inject(call.request.headers, context=current)
            return next(call)  # the API-only hot path: nothing else to do
        return self._observe(
            call, next, current=current, tracer=tracer, histogram=histogram, log=log
        )

    async def asend(self, call: Call, next: AsyncNext) -> Response:
        """`send` for async pipelines: the span is current in this task while it awaits."""
        current = context.get_current()
        if current.get(_SUPPRESS):
            return await next(call)
        tracer, histogram = self._recorders()
        log = debug_enabled()
        if tracer is None and histogram is None and not log:
            _propagate(call, current)
            return await next(call)
        attempt = self._begin(call, current, tracer, histogram, log)
        try:
            try:
                response = await next(call)
            except BaseException as exc:
                self._attempt_failed(attempt, exc, call)
                raise
            return self._attempt_answered(attempt, response, call)
        finally:
            attempt.end()

    def _observe(
        self,
        call: Call,
        next: Next,
        *,
        current: context.Context,
        tracer: Tracer | None,
        histogram: metrics.Histogram | None,
        log: bool,
    ) -> Response:
        attempt = self._begin(call, current, tracer, histogram, log)
        try:
            try:
                response = next(call)
            except BaseException as exc:
                self._attempt_failed(attempt, exc, call)
                raise
            return self._attempt_answered(attempt, response, call)
        finally:
            attempt.end()

    def _begin(
        self,
        call: Call,
        current: context.Context,
        tracer: Tracer | None,
        histogram: metrics.Histogram | None,
        log: bool,
    ) -> _OpenAttempt:
        """Start the attempt's span (current from now on) and inject its context."""
        if current.get(_SUPPRESS_HTTP) and not _outer_http_span(current):
            tracer = histogram = None  # the application suppressed HTTP instrumentation
        request = call.request
        raw_method = (request.method or "GET").upper()
        base: dict[str, AttributeValue] = {
            "http.request.method": raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
        }
        if tracer is not None or histogram is not None:
            base.update(self._server_of(request.url or ""))
        attempt = _OpenAttempt(base=base, histogram=histogram, log=log)
        if tracer is not None:
            span = self._start_span(tracer, call, current, base, raw_method)
            attempt.span = span
            attempt.recording = span.is_recording()
            # Our span is current while the attempt runs, and the HTTP instrumentations
            # below us (urllib3, http.client) are told that this request is covered.
            attempt.token = context.attach(
                context.set_value(_SUPPRESS_HTTP, True, trace.set_span_in_context(span, current))
            )
        try:
            inject(request.headers)
        except BaseException:
            attempt.end()
            raise
        attempt.began = call.clock.monotonic()
        return attempt

    def _attempt_failed(self, attempt: _OpenAttempt, exc: BaseException, call: Call) -> None:
        self._failed(
            exc,
            call,
            span=attempt.span if attempt.recording else None,
            histogram=attempt.histogram,
            base=attempt.base,
            duration=call.clock.monotonic() - attempt.began,
            log=attempt.log,
        )

    def _attempt_answered(self, attempt: _OpenAttempt, response: Response, call: Call) -> Response:
        duration = call.clock.monotonic() - attempt.began
        status = response.status_code
        attribute = self._request_id_attribute
        request_id: str | None = None
        if (attempt.recording and attribute is not None) or attempt.log:
            request_id = _request_id(response, call, look_in_body=attribute is not None)
        if attempt.recording:
            assert attempt.span is not None
            self._record_response(attempt.span, response, call, request_id)
        if attempt.histogram is not None:
            base = attempt.base
            base["http.response.status_code"] = status
            if status >= 400:
                base["error.type"] = str(status)
            attempt.histogram.record(duration, base)
        if attempt.log:
            _log(call, duration, status_code=status, request_id=request_id)
        return response

    def _start_span(
        self,
        tracer: Tracer,
        call: Call,
        current: context.Context,
        base: dict[str, AttributeValue],
        raw_method: str,
    ) -> Span:
        # Only the cheap attributes that samplers may look at are computed before we
        # know that the span records; url.full (parsing, redaction) waits for that.
        template = _ROUTE.get()
        attributes = base.copy()
        if attributes["http.request.method"] == "_OTHER":
            attributes["http.request.method_original"] = raw_method
            name = f"HTTP {template}" if template else "HTTP"
        else:
            name = f"{raw_method} {template}" if template else raw_method
        if template:
            attributes["url.template"] = template
        if call.attempt > 1:
            resends = _resends(call)
            if resends:
                attributes["http.request.resend_count"] = resends
            if hedging_attempt.get():
                attributes["requests_resilience.hedge"] = True
        span = tracer.start_span(
            name, context=current, kind=SpanKind.CLIENT, attributes=attributes
        )
        if self._request_hook is not None and span.is_recording():
            _run_hook("request_hook", self._request_hook, span, call.request)
        return span

    def _failed(
        self,
        exc: BaseException,
        call: Call,
        *,
        span: Span | None,
        histogram: metrics.Histogram | None,
        base: dict[str, AttributeValue],
        duration: float,
        log: bool,
    ) -> None:
        error_type = type(exc).__qualname__
        redactor = call.redactor
        if span is not None:
            url = self._full_url_of(call.request.url or "", redactor)
            span.set_attributes({"url.full": url, "error.type": error_type})
            span.record_exception(exc, attributes=exception_attributes(exc, redactor))
            description = scrub(f"{error_type}: {exc}", redactor)
            span.set_status(Status(StatusCode.ERROR, description[:300]))
        if histogram is not None:
            base["error.type"] = error_type
            histogram.record(duration, base)
        if log:
            _log(call, duration, error=error_type)

    def _record_response(
        self,
        span: Span,
        response: Response,
        call: Call,
        request_id: str | None,
    ) -> None:
        # One set_attributes call: the SDK takes its lock and checks values once.
        status = response.status_code
        attributes: dict[str, AttributeValue] = {
            "url.full": self._full_url_of(call.request.url or "", call.redactor),
            "http.response.status_code": status,
        }
        version = _protocol_version(response)
        if version is not None:
            attributes["network.protocol.version"] = version
        attribute = self._request_id_attribute
        if request_id is not None and attribute is not None:
            attributes[attribute] = request_id
            parent = _OPERATION.get()
            if parent is not None and parent.is_recording():
                parent.set_attribute(attribute, request_id)
        if status >= 400:
            attributes["error.type"] = str(status)
            span.set_attributes(attributes)
            span.set_status(Status(StatusCode.ERROR))
        else:
            span.set_attributes(attributes)
        if self._response_hook is not None:
            _run_hook("response_hook", self._response_hook, span, call.request, response)

    # -- per-URL facts, cached: a client talks to few URLs, often ------------------------

    def _server_of(self, url: str) -> dict[str, AttributeValue]:
        server = self._servers.get(url)
        if server is None:
            server = {}
            parts = _split(url)
            if parts is not None:
                _add_server(server, parts)
            if len(self._servers) >= _URL_CACHE_SIZE:
                self._servers.clear()
            self._servers[url] = server
        return server

    def _full_url_of(self, url: str, redactor: Redactor) -> str:
        key = (url, redactor)
        full = self._full_urls.get(key)
        if full is None:
            full = full_url(url, redactor)
            if len(self._full_urls) >= _URL_CACHE_SIZE:
                self._full_urls.clear()
            self._full_urls[key] = full
        return full

    # -- providers, looked up lazily and cached per provider ---------------------------

    def _recorders(self) -> _Recorders:
        """The tracer and the duration histogram (None where the provider is a no-op).

        Made once per pair of providers (the given ones, else the global ones), so that
        a call costs two look-ups (C calls, no Python frame) and two identity checks.
        """
        given_tracer, given_meter = self._tracer_provider, self._meter_provider
        cached = self._recorders_cache
        if (
            cached is None
            or cached[0] is not (set_tracer_provider() if given_tracer is None else given_tracer)
            or cached[1] is not (set_meter_provider() if given_meter is None else given_meter)
        ):
            cached = self._recorders_for()
        return cached[2]

    def _recorders_for(self) -> tuple[object, object, _Recorders]:
        """Make the recorders of the current providers, and remember them.

        The key is what `send` compares: the given provider, else the one set in the
        API's global (None while unset: then the API's proxy makes the recorders).
        """
        tracer_provider, meter_provider = self._tracer_provider, self._meter_provider
        tracer_key: object = tracer_provider
        meter_key: object = meter_provider
        if tracer_provider is None:
            tracer_key, tracer_provider = set_tracer_provider(), global_tracer_provider()
        if meter_provider is None:
            meter_key, meter_provider = set_meter_provider(), global_meter_provider()
        histogram: metrics.Histogram | None = None
        if not is_noop_meter_provider(meter_provider):
            meter = meter_provider.get_meter(
                INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION, schema_url=SCHEMA_URL
            )
            histogram = _duration_histogram(meter)
        cached = (tracer_key, meter_key, (_tracer_of(tracer_provider), histogram))
        self._recorders_cache = cached
        return cached

    def __repr__(self) -> str:
        def shown(value: object) -> str:
            if value is None:
                return "<global>"
            return f"<{type(value).__name__}>"

        def hook(value: object) -> str:
            return "None" if value is None else getattr(value, "__name__", type(value).__name__)

        return (
            f"Tracing(tracer_provider={shown(self._tracer_provider)}, "
            f"meter_provider={shown(self._meter_provider)}, "
            f"request_id_attribute={self._request_id_attribute!r}, "
            f"request_hook={hook(self._request_hook)}, "
            f"response_hook={hook(self._response_hook)})"
        )


# -- operation() and route() --------------------------------------------------------------


@contextmanager
def operation(
    name: str,
    /,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    **attributes: AttributeValue,
) -> Iterator[Span]:
    """Open the INTERNAL span of one logical call, so its attempts hang under it.

    The span is current inside the block: the `Tracing` policy's attempt spans become
    its children, the retry waits and breaker changes become its events, and the
    server's request id of each attempt lands on it too (last one wins). An exception
    that leaves the block is recorded on it (message and stack trace without query
    strings), with ``error.type`` and status ERROR, and re-raised.

    Args:
        name: the span name, e.g. ``"vinci.text_to_video"``.
        tracer_provider: where the span goes; default: the global provider.
        **attributes: span attributes; dotted names through a dict, e.g.
            ``**{"vinci.duration_seconds": 5}``.

    Yields:
        The span, to add attributes once they are known.

    Example:
        >>> with operation("vinci.text_to_video", **{"vinci.duration_seconds": 5}) as span:
        ...     job = session.post(url, json={"prompt": "a fox", "duration_seconds": 5}).json()
        ...     span.set_attribute("vinci.job_id", job["request_id"])
    """
    if not isinstance(name, str) or not name:
        msg = f"operation name must be a non-empty string, got {name!r}"
        raise ConfigurationError(msg)
    provider = tracer_provider if tracer_provider is not None else global_tracer_provider()
    tracer = provider.get_tracer(
        INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION, schema_url=SCHEMA_URL
    )
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.INTERNAL,
        attributes=attributes or None,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        token = _OPERATION.set(span)
        try:
            yield span
        except Exception as exc:
            if span.is_recording():
                error_type = type(exc).__qualname__
                span.set_attribute("error.type", error_type)
                span.record_exception(exc, attributes=exception_attributes(exc))
                span.set_status(Status(StatusCode.ERROR, scrub(f"{error_type}: {exc}")[:300]))
            raise
        finally:
            _OPERATION.reset(token)


@contextmanager
def route(template: str) -> Iterator[None]:
    """Name the URL template of the requests sent inside the block.

    The attempt spans are then named ``{METHOD} {template}`` (instead of only
    ``{METHOD}``, since a raw path has unbounded cardinality) and carry
    ``url.template``. It is a context variable: it applies to this thread or task only.

    Args:
        template: the path template, e.g. ``"/status/{request_id}"``.

    Example:
        >>> with route("/status/{request_id}"):
        ...     session.get(f"{base}/status/{request_id}")  # span "GET /status/{request_id}"
    """
    if not isinstance(template, str) or not template.strip():
        msg = f"route template must be a non-empty string, got {template!r}"
        raise ConfigurationError(msg)
    token = _ROUTE.set(template)
    try:
        yield
    finally:
        _ROUTE.reset(token)


# -- helpers --------------------------------------------------------------------------------


def full_url(url: str, redactor: Redactor) -> str:
    """``url.full`` for a span: no credentials, no secret-looking query values, no secrets.

    Credentials become ``REDACTED:REDACTED@`` and the values of query parameters whose
    name looks secret (``key``, ``token``, ``sig``, ``signature``, ``password``, ...)
    become ``REDACTED``, as the semantic conventions ask; the fragment is dropped (it
    is never sent). The result then goes through the pipeline's `redactor`.

    Example:
        >>> from requests_resilience._secrets import NO_SECRETS
        >>> full_url("https://u:p@api.example.com/v1?api_key=abc&page=2", NO_SECRETS)
        'https://REDACTED:REDACTED@api.example.com/v1?api_key=REDACTED&page=2'
    """
    parts = _split(url)
    if parts is None:
        return redactor.redact(_safe_url(url))
    netloc = parts.netloc
    query = parts.query
    if "@" not in netloc and not query and not parts.fragment:
        return redactor.redact(url)  # the common case: nothing to take out
    if "@" in netloc:
        netloc = "REDACTED:REDACTED@" + netloc.rpartition("@")[2]
    if query:
        query = "&".join(_redact_param(pair) for pair in query.split("&"))
    return redactor.redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _redact_param(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    if not eq:
        return pair
    key = unquote_plus(name).lower().replace("-", "").replace("_", "")
    if key in _SECRET_PARAMS or any(part in key for part in _SECRET_PARTS):
        return f"{name}=REDACTED"
    return pair


def _add_server(attributes: dict[str, AttributeValue], parts: SplitResult) -> None:
    try:
        host = parts.hostname
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port out of range
        return
    if host:
        attributes["server.address"] = host
    if port:
        attributes["server.port"] = port


def _log(call: Call, duration: float, **outcome: object) -> None:
    request = call.request
    log_attempt(
        method=request.method,
        url=call.redactor.redact(_safe_url(request.url)),
        attempt=call.attempt,
        duration=round(duration, 6),
        **outcome,
    )


def _request_id(response: Response, call: Call, *, look_in_body: bool) -> str | None:
    """The attempt's request id (redacted): from the headers, else from a JSON body.

    The body is looked in only if it was read already, is small, and holds the word:
    the byte tests come first, being the cheapest (most answers carry no id).
    """
    request_id = request_id_in_headers(response)
    if request_id is None and look_in_body and not call.stream:
        content = getattr(response, "_content", False)  # unread: False (`body_is_read`)
        if (
            type(content) is bytes
            and len(content) <= _MAX_ID_BODY
            and b"request_id" in content
            and "json" in (header(response.headers, "content-type") or "")
        ):
            request_id = request_id_of(response)
    return call.redactor.redact(request_id) if request_id is not None else None


def _resends(call: Call) -> int:
    """How many times this request went on the wire before (an open breaker sends none)."""
    blocked = sum(1 for attempt in call.history if attempt.error in _NOT_SENT_ERRORS)
    return max(0, call.attempt - 1 - blocked)


def _protocol_version(response: Response) -> str | None:
    """``network.protocol.version``: urllib3's ``raw.version``, or the httpx view's."""
    if type(response) is not Response:
        given = getattr(response, "protocol_version", None)  # the httpx view's
        if given is not None:
            return given if isinstance(given, str) else None
    return _VERSIONS.get(getattr(response.raw, "version", None))


_VERSIONS: dict[object, str] = {11: "1.1", 10: "1.0", 20: "2"}


def _outer_http_span(current: context.Context) -> bool:
    """Whether the current span was made by an HTTP instrumentation above the pipeline.

    The requests instrumentation makes its CLIENT span current and sets the "suppress
    HTTP instrumentation" key before it calls the real ``Session.send``. A sampled-out
    span cannot tell its kind; nesting under it costs nothing (ours are dropped too).
    """
    span = trace.get_current_span(current)
    kind = getattr(span, "kind", None)
    if kind is not None:
        return bool(kind is SpanKind.CLIENT)
    return not span.is_recording() and span.get_span_context().is_valid


_Recorders: TypeAlias = "tuple[Tracer | None, metrics.Histogram | None]"


def _tracer_of(provider: trace.TracerProvider) -> Tracer | None:
    if isinstance(provider, _NOOP_TRACER_PROVIDERS):
        return None
    return provider.get_tracer(
        INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION, schema_url=SCHEMA_URL
    )


def _duration_histogram(meter: metrics.Meter) -> metrics.Histogram:
    name = "http.client.request.duration"
    description = "Duration of HTTP client requests (one per wire attempt)."
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
    except TypeError:  # pragma: no cover - opentelemetry-api < 1.23 has no advisory
        return meter.create_histogram(name, unit="s", description=description)


def _run_hook(option: str, hook: Callable[..., object], *args: object) -> None:
    try:
        hook(*args)
    except Exception as exc:  # a hook must not break the request
        logger.warning("tracing_hook_failed", hook=option, error=type(exc).__qualname__)

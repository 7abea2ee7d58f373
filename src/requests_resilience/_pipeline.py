"""The policy contract, the per-attempt `Call`, and the `Pipeline` that chains policies.

A policy is anything with ``send(call, next) -> Response``, or a plain function of that
shape. ``next(call)`` runs the rest of the pipeline, down to the real transport; a policy
may change the call on the way in (``call.evolve(...)``, or headers on
``call.request``), look at the response or exception on the way out, call ``next``
again (a retry), or not call it at all (an open breaker, a cache)::

    session.get(url)
      └─ Session.send                 redirects, cookies and hooks stay with requests
          └─ PipelineAdapter.send     builds the Call
              ├─ policy 1             first = outermost
              ├─ policy 2
              ├─ ...
              └─ transport            a real requests HTTPAdapter

A ten-line custom policy::

    def add_client_header(call: Call, next: Next) -> requests.Response:
        call.request.headers["X-Client"] = "billing-worker/2"
        return next(call)

    pipeline = Pipeline(StatusErrors(), add_client_header, APIKeyAuth("sk-..."))
"""

from __future__ import annotations

import copy
import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, runtime_checkable

from requests_resilience._clock import Clock, SystemClock
from requests_resilience._errors import ConfigurationError
from requests_resilience._secrets import NO_SECRETS, Redactor

if TYPE_CHECKING:
    import urllib3.util
    from requests import PreparedRequest, Response

__all__ = [
    "AsyncNext",
    "Attempt",
    "Call",
    "Next",
    "Pipeline",
    "Policy",
    "PolicyLike",
    "TimeoutValue",
    "attempts_of",
    "set_attempts",
]

#: What `Session.send` passes as ``timeout``: seconds, ``(connect, read)`` (either part
#: may be None), a `urllib3.util.Timeout`, or None.
TimeoutValue: TypeAlias = "float | tuple[float | None, float | None] | urllib3.util.Timeout | None"


class _Keep(enum.Enum):
    """The type of `_KEEP`: "leave this field as it is" in `Call.evolve`."""

    KEEP = "KEEP"


_KEEP: Final = _Keep.KEEP


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """What happened on one wire attempt, kept in `Call.history` and on final errors.

    Attributes:
        number: 1 for the first attempt, 2 for the first retry, and so on.
        status_code: the response status, or None when the attempt raised.
        error: the exception's type name when the attempt raised (e.g.
            ``"APIReadTimeoutError"``), else None.
        duration: seconds the attempt took on the pipeline's clock.
        wait: seconds waited after this attempt before the next one (0.0 for the last).
        reason: why the next attempt was made or not (e.g. ``"status 503"``,
            ``"retry-after"``, ``"not idempotent"``).

    Example:
        >>> for attempt in attempts_of(session.get(url)):
        ...     print(attempt.number, attempt.status_code, attempt.wait, attempt.reason)
        1 503 0.41 status 503
        2 200 0.0 success
    """

    number: int
    status_code: int | None = None
    error: str | None = None
    duration: float = 0.0
    wait: float = 0.0
    reason: str = ""

    @property
    def outcome(self) -> str:
        """``"503"`` or ``"APIConnectionError"``: the attempt's result in one word."""
        if self.status_code is not None:
            return str(self.status_code)
        return self.error or "unknown"


@dataclass(frozen=True, kw_only=True, init=False)
class Call:
    """One attempt to send a request, as the pipeline's policies see it.

    The adapter builds the first `Call` from what `requests.Session.send` passed. A
    policy that needs a variant makes one with `evolve()`; the request object itself
    may be changed in place (headers) by a policy for its own attempt, since the retry
    gives each attempt a fresh copy.

    Attributes:
        request: the prepared request for this attempt.
        stream: ``stream=`` as passed to `Session.send`.
        timeout: ``timeout=`` for this attempt (a retry cuts it to the time left).
        verify: ``verify=`` as passed to `Session.send`.
        cert: ``cert=`` as passed to `Session.send`.
        proxies: ``proxies=`` as passed to `Session.send`.
        clock: the pipeline's clock; policies take time, sleep and jitter from it.
        redactor: removes the pipeline's secrets from text meant for humans.
        deadline: when the whole logical call must be over, on ``clock.monotonic()``;
            None when unbounded.
        attempt: 1 for the first wire attempt, 2 for the first retry, ...
        history: the attempts made before this one.

    Example:
        >>> def log_attempts(call: Call, next: Next) -> Response:
        ...     print(call.request.method, call.request.url, "attempt", call.attempt)
        ...     return next(call)
        >>> pipeline = Pipeline(StatusErrors(), Retry(), log_attempts)
    """

    request: PreparedRequest
    stream: bool = False
    timeout: TimeoutValue = None
    verify: bool | str = True
    cert: bytes | str | tuple[bytes | str, bytes | str] | None = None
    proxies: Mapping[str, str] | None = None
    clock: Clock = field(default_factory=SystemClock)
    redactor: Redactor = NO_SECRETS
    deadline: float | None = None
    attempt: int = 1
    history: tuple[Attempt, ...] = ()

    def __init__(
        self,
        *,
        request: PreparedRequest,
        stream: bool = False,
        timeout: TimeoutValue = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        redactor: Redactor = NO_SECRETS,
        deadline: float | None = None,
        attempt: int = 1,
        history: tuple[Attempt, ...] = (),
    ) -> None:
        # The frozen dataclass's generated __init__ goes through object.__setattr__
        # eleven times; setting the instance's dict whole does the same work in a
        # fraction of the time, and a call is built for every request.
        _fill(
            self,
            request,
            stream,
            timeout,
            verify,
            cert,
            proxies,
            SystemClock() if clock is None else clock,
            redactor,
            deadline,
            attempt,
            history,
        )

    def evolve(
        self,
        *,
        request: PreparedRequest | _Keep = _KEEP,
        stream: bool | _Keep = _KEEP,
        timeout: TimeoutValue | _Keep = _KEEP,
        verify: bool | str | _Keep = _KEEP,
        cert: bytes | str | tuple[bytes | str, bytes | str] | _Keep | None = _KEEP,
        proxies: Mapping[str, str] | _Keep | None = _KEEP,
        clock: Clock | _Keep = _KEEP,
        redactor: Redactor | _Keep = _KEEP,
        deadline: float | _Keep | None = _KEEP,
        attempt: int | _Keep = _KEEP,
        history: tuple[Attempt, ...] | _Keep = _KEEP,
    ) -> Call:
        """Return a copy of this call with the given fields changed.

        The same result as ``dataclasses.replace(call, ...)``, at a fraction of the
        cost (a retry makes one per attempt).

        Example:
            >>> later = call.evolve(timeout=5.0)
        """
        new: Call = _NEW(Call)
        fields = new.__dict__
        fields.update(self.__dict__)
        for name, value in (
            ("request", request),
            ("stream", stream),
            ("timeout", timeout),
            ("verify", verify),
            ("cert", cert),
            ("proxies", proxies),
            ("clock", clock),
            ("redactor", redactor),
            ("deadline", deadline),
            ("attempt", attempt),
            ("history", history),
        ):
            if value is not _KEEP:
                fields[name] = value
        return new

    def time_left(self) -> float | None:
        """Seconds until the deadline (may be negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return self.deadline - self.clock.monotonic()


_NEW = object.__new__
_SET = object.__setattr__


def with_deadline(call: Call, deadline: float | None) -> Call:
    """``call.evolve(deadline=deadline)``, without the keyword handling (the hot path)."""
    new: Call = _NEW(Call)
    fields = new.__dict__  # (an attribute: cheaper than vars())
    fields.update(call.__dict__)
    fields["deadline"] = deadline
    return new


def first_call(  # noqa: PLR0917 - Session.send's arguments, positional for speed
    request: PreparedRequest,
    stream: bool,
    timeout: TimeoutValue,
    verify: bool | str,
    cert: bytes | str | tuple[bytes | str, bytes | str] | None,
    proxies: Mapping[str, str] | None,
    clock: Clock,
    redactor: Redactor,
) -> Call:
    """The `Call` of a request's first attempt, as a transport adapter builds it.

    The same object as ``Call(request=..., ...)`` with no deadline, attempt 1 and no
    history, without the keyword parsing: a transport makes one per request.
    """
    call: Call = _NEW(Call)
    # `_fill`, written out: the call to it is a measurable share of the empty pipeline's
    # cost (`tests/test_hot_path.py` pins that both build the same Call). The deadline,
    # attempt and history of a first attempt are the dataclass's defaults, which are
    # its class attributes: the instance's own dict need not hold them.
    _SET(
        call,
        "__dict__",
        {
            "request": request,
            "stream": stream,
            "timeout": timeout,
            "verify": verify,
            "cert": cert,
            "proxies": proxies,
            "clock": clock,
            "redactor": redactor,
        },
    )
    return call


def _fill(  # noqa: PLR0917 - one argument per field, positional for speed
    call: Call,
    request: PreparedRequest,
    stream: bool,
    timeout: TimeoutValue,
    verify: bool | str,
    cert: bytes | str | tuple[bytes | str, bytes | str] | None,
    proxies: Mapping[str, str] | None,
    clock: Clock,
    redactor: Redactor,
    deadline: float | None,
    attempt: int,
    history: tuple[Attempt, ...],
) -> None:
    """Set every field of a new `Call` (frozen: its ``__dict__`` is set whole, at once)."""
    _SET(
        call,
        "__dict__",
        {
            "request": request,
            "stream": stream,
            "timeout": timeout,
            "verify": verify,
            "cert": cert,
            "proxies": proxies,
            "clock": clock,
            "redactor": redactor,
            "deadline": deadline,
            "attempt": attempt,
            "history": history,
        },
    )


_HISTORY_ATTR = "_requests_resilience_attempts"

#: The attribute of a policy-made response whose mapping an httpx transport gives the
#: httpx response as its ``extensions`` (how `Fallback` marks its answers for httpx).
HTTPX_EXTENSIONS_ATTR = "_requests_resilience_httpx_extensions"


def attempts_of(response: Response) -> tuple[Attempt, ...]:
    """The attempts a retry policy made to get `response` (empty when none ran).

    Example:
        >>> response = session.get(url)
        >>> [a.outcome for a in attempts_of(response)]
        ['503', '503', '200']
    """
    history = getattr(response, _HISTORY_ATTR, ())
    return history if isinstance(history, tuple) else ()


def set_attempts(response: Response, history: tuple[Attempt, ...]) -> None:
    """Record `history` on `response` for `attempts_of()` (used by the retry policy)."""
    setattr(response, _HISTORY_ATTR, history)


#: The rest of the pipeline, as a policy sees it.
Next: TypeAlias = "Callable[[Call], Response]"


@runtime_checkable
class Policy(Protocol):
    """The one contract every policy implements.

    A class with a ``send(call, next)`` method is a policy. An optional ``name``
    attribute names it in descriptions, logs, spans and metrics (else the class
    name is used); an optional ``secrets`` attribute (a tuple of strings) lists
    credentials that must never appear in any message.

    Example:
        >>> class Tag:
        ...     name = "tag"
        ...     def send(self, call, next):
        ...         call.request.headers["X-Tag"] = "1"
        ...         return next(call)
    """

    def send(self, call: Call, next: Next) -> Response:
        """Handle one attempt: call `next(call)` zero or more times, return a response."""
        ...


#: A policy object, or a plain function ``(call, next) -> Response``, or an ``async def``
#: one ``(call, next) -> Response`` (async pipelines only).
PolicyLike: TypeAlias = (
    "Policy | Callable[[Call, Next], Response] | Callable[[Call, AsyncNext], Awaitable[Response]]"
)


#: The rest of an async pipeline, as an async policy sees it.
AsyncNext: TypeAlias = "Callable[[Call], Awaitable[Response]]"


class _FunctionPolicy:
    """Adapts a plain ``(call, next)`` function (or ``async def``) to the `Policy` contract."""

    __slots__ = ("func", "is_async", "name")

    def __init__(self, func: Callable[[Call, Next], Response]) -> None:
        self.func = func
        self.name: str = getattr(func, "__name__", type(func).__name__)
        self.is_async = inspect.iscoroutinefunction(func)

    def send(self, call: Call, next: Next) -> Response:
        return self.func(call, next)

    def __repr__(self) -> str:
        return f"<function {self.name}>"


def _as_policy(obj: object) -> Policy:
    if isinstance(obj, Policy):
        return obj
    if callable(obj):
        return _FunctionPolicy(obj)
    msg = (
        f"a policy must have a send(call, next) method or be a function (call, next); "
        f"got {type(obj).__name__}"
    )
    raise TypeError(msg)


def policy_name(policy: object) -> str:
    """The name a policy shows in descriptions, logs, spans and metrics."""
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) and name else type(policy).__name__


def _link(policy: Policy, next_step: Next) -> Next:
    if _async_only(policy):
        msg = (
            f"policy {policy_name(policy)!r} is async (async def): it runs in async "
            f"pipelines only (httpx.AsyncClient); give it a synchronous send() as well"
        )
        raise ConfigurationError(msg)
    send = policy.send

    def step(call: Call) -> Response:
        return send(call, next_step)

    return step


def _async_only(policy: Policy) -> bool:
    if isinstance(policy, _FunctionPolicy):
        return policy.is_async
    return inspect.iscoroutinefunction(policy.send)


def _link_async(policy: Policy, next_step: AsyncNext) -> AsyncNext:
    """One async step: the policy's ``asend``, or its ``send`` if that is ``async def``.

    A policy with only a synchronous ``send`` cannot run here: its ``next(call)`` would
    be a coroutine it does not await. That is refused when the pipeline is built.
    """
    asend = getattr(policy, "asend", None)
    if asend is None and _async_only(policy):
        asend = policy.func if isinstance(policy, _FunctionPolicy) else policy.send
    if asend is None:
        msg = (
            f"policy {policy_name(policy)!r} has only a synchronous send(): an async "
            f"pipeline (httpx.AsyncClient) needs `async def asend(call, next)` on it, "
            f"or an `async def (call, next)` function in its place"
        )
        raise ConfigurationError(msg)

    def step(call: Call) -> Awaitable[Response]:
        # The policy's coroutine itself, for the caller to await: no coroutine of
        # our own around it (one frame less per policy and attempt).
        return asend(call, next_step)  # type: ignore[no-any-return]

    return step


class Pipeline:
    """An ordered, frozen chain of policies; the first policy is the outermost.

    A pipeline holds no per-request state: mount it on as many sessions as you like.
    It carries the clock that its policies use and the redactor built from their
    secrets.

    Args:
        *policies: the policies in order, outermost first. Functions
            ``(call, next) -> Response`` are accepted as policies.
        clock: the source of time, sleep and randomness (default `SystemClock`).

    Example:
        >>> from requests_resilience import Pipeline, StatusErrors, APIKeyAuth
        >>> pipeline = Pipeline(StatusErrors(), APIKeyAuth("sk-test-123456789"))
        >>> print(pipeline.describe())
        Pipeline (first = outermost):
          1. status_errors  StatusErrors(table=<6 statuses>)
          2. auth           APIKeyAuth(header='Authorization', scheme='Bearer', api_key=<redacted>)
          -> transport
    """

    __slots__ = ("_clock", "_policies", "_redactor")

    def __init__(self, *policies: PolicyLike, clock: Clock | None = None) -> None:
        resolved = tuple(_as_policy(p) for p in policies)
        if clock is None:
            clock = SystemClock()
        elif not isinstance(clock, Clock):
            msg = "clock must implement monotonic(), time(), sleep() and random()"
            raise TypeError(msg)
        secrets: list[str] = []
        for policy in resolved:
            secrets.extend(_secrets_of(policy))
        self._policies = resolved
        self._clock = clock
        self._redactor = Redactor(secrets)

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    @property
    def clock(self) -> Clock:
        """The clock that every policy in this pipeline uses."""
        return self._clock

    @property
    def redactor(self) -> Redactor:
        """Removes this pipeline's secrets from text."""
        return self._redactor

    @property
    def names(self) -> tuple[str, ...]:
        """The policies' names, outermost first."""
        return tuple(policy_name(p) for p in self._policies)

    def evolve(
        self, *, policies: Iterable[PolicyLike] | None = None, clock: Clock | None = None
    ) -> Pipeline:
        """Return a new pipeline with other policies or another clock.

        Example:
            >>> bigger = pipeline.evolve(policies=[*pipeline.policies, my_policy])
        """
        return Pipeline(
            *(self._policies if policies is None else tuple(policies)),
            clock=self._clock if clock is None else clock,
        )

    def wrap(self, transport: Next) -> Next:
        """Chain the policies around `transport` and return the outermost step.

        The chain is built once (the adapter does it when created), so a request
        costs one function call per policy.
        """
        handler = transport
        for policy in reversed(self._policies):
            handler = _link(policy, handler)
        return handler

    def wrap_async(self, transport: AsyncNext) -> AsyncNext:
        """Chain the policies' async forms around `transport` (an async function).

        Every policy needs an ``asend(call, next)`` coroutine method (all the built-in
        ones have one) or must itself be ``async def``; a synchronous-only custom
        policy raises `ConfigurationError` here, naming it.
        """
        handler = transport
        for policy in reversed(self._policies):
            handler = _link_async(policy, handler)
        return handler

    def describe(self) -> str:
        """A multi-line description of the policies in order, with their settings."""
        names = self.names
        width = max((len(n) for n in names), default=0)
        lines = ["Pipeline (first = outermost):"]
        for index, (name, policy) in enumerate(zip(names, self._policies, strict=True), 1):
            lines.append(f"  {index}. {name.ljust(width)}  {policy!r}")
        lines.append("  -> transport")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(self.names)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_pipeline, (self._policies, self._clock))

    def __deepcopy__(self, memo: dict[int, Any]) -> Pipeline:
        # The policies are copied (their state is fresh), the clock is shared.
        copied = Pipeline(*(copy.deepcopy(p, memo) for p in self._policies), clock=self._clock)
        memo[id(self)] = copied
        return copied

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            msg = "a Pipeline is frozen; use evolve() to make a changed copy"
            raise AttributeError(msg)
        object.__setattr__(self, name, value)


def _rebuild_pipeline(policies: tuple[Policy, ...], clock: Clock) -> Pipeline:
    return Pipeline(*policies, clock=clock)


def _secrets_of(policy: object) -> tuple[str, ...]:
    secrets = getattr(policy, "secrets", ())
    if isinstance(secrets, str):
        return (secrets,)
    return tuple(s for s in secrets if isinstance(s, str))

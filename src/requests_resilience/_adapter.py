"""`PipelineAdapter`, which runs a pipeline inside `requests`, and `mount()`."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.sessions import REDIRECT_STATI

from requests_resilience._bodies import MAX_ERROR_BODY, guard_stream, read_body
from requests_resilience._deadline import (
    deadline_error,
    deadline_passed,
    install_pool_classes,
    wire,
)
from requests_resilience._errors import (
    APIConnectTimeoutError,
    APIError,
    ConfigurationError,
    translate_transport_error,
)
from requests_resilience._forksafe import reinit_after_fork, renew_locks, renew_queue
from requests_resilience._pipeline import Call, Pipeline, TimeoutValue, first_call
from requests_resilience._retry import cut_timeout, within

if TYPE_CHECKING:
    from requests import PreparedRequest, Response

__all__ = ["PipelineAdapter", "mount"]

#: The least time an attempt is given on the wire (seconds), as `Retry` gives it.
_MIN_ATTEMPT = 0.001
_monotonic = time.monotonic


class PipelineAdapter(HTTPAdapter):
    """A transport adapter that sends every request through a `Pipeline`.

    It *is* a `requests.adapters.HTTPAdapter`: ``poolmanager``, ``proxy_manager``,
    ``build_response``, ``cert_verify``, ``close`` and an overridden
    ``init_poolmanager`` (custom TLS contexts, source addresses) behave as on one,
    and by default its own `HTTPAdapter.send` is the innermost step, so pooling, TLS
    verification, proxies, ``stream=True`` and timeouts work as usual, and the
    `Session` around it keeps handling redirects, cookies and hooks. Pass
    ``transport=`` to put another adapter under the pipeline instead
    (``requests_mock.Adapter()``, betamax's adapter, an `HTTPAdapter` subclass of
    yours).

    The adapter translates transport failures into this library's
    `APIConnectionError` family at that one boundary (each still an instance of the
    requests exception plain requests raises). It reads a non-streamed body inside
    the pipeline, once the status is known: a success body whole (so that a body that
    breaks off is seen, and can be retried, by the policies), an error body (status
    >= 400) only up to its first MiB, decompressed (``MAX_ERROR_BODY``; the connection
    of a longer one is closed, not drained), so a 2 GiB gzip bomb in a 500 costs one
    MiB. A streamed body, read later by the caller, raises this library's errors too.

    A call's deadline (``Retry(timeout=...)``, or any policy's ``call.deadline``)
    holds on the wire: connect, request, headers and body, streamed or not, end by the
    deadline whatever the server's pace, with `APIReadTimeoutError` (see
    ``_deadline.py`` for how, and for what it cannot bound, such as DNS).

    Copies are independent: `copy.deepcopy` and pickling (of the adapter, or of a
    Session it is mounted on) keep the configuration and give the copy its own
    connection pool and fresh policy state, as `HTTPAdapter` does. So is a forked
    child's adapter: after `os.fork()` it gets new pools (the parent's pooled sockets
    stay the parent's) and its policies fresh locks.

    Args:
        pipeline: the policies to run.
        transport: the adapter that does the I/O. Default: this adapter's own
            `HTTPAdapter` machinery, with the pool settings below and no retries of its
            own.
        pool_connections: how many per-host pools to keep.
        pool_maxsize: connections kept per host; set it to at least the number of
            threads that share the session, or connections are discarded under load.
        pool_block: wait for a free connection instead of opening an extra one.

    Example:
        >>> adapter = PipelineAdapter(Pipeline(StatusErrors()), pool_maxsize=32)
        >>> session.mount("https://api.example.com/", adapter)
    """

    __attrs__ = [*HTTPAdapter.__attrs__, "_pipeline", "_custom_transport"]  # noqa: RUF012 - requests' own name

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        transport: BaseAdapter | None = None,
        pool_connections: int = 10,
        pool_maxsize: int = 32,
        pool_block: bool = False,
    ) -> None:
        if not isinstance(pipeline, Pipeline):
            msg = f"pipeline must be a Pipeline, got {type(pipeline).__name__}"
            raise TypeError(msg)
        if transport is not None and not isinstance(transport, BaseAdapter):
            msg = f"transport must be a requests BaseAdapter, got {type(transport).__name__}"
            raise TypeError(msg)
        for option, value in (
            ("pool_connections", pool_connections),
            ("pool_maxsize", pool_maxsize),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                msg = f"{option} must be an int from 1 to 10000, got {value!r}"
                raise ConfigurationError(msg)
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=0,
            pool_block=pool_block,
        )
        self._pipeline = pipeline
        self._custom_transport = transport
        self._build()

    def _build(self) -> None:
        """Chain the pipeline around the transport (once; copies build their own)."""
        pipeline = self._pipeline
        self._clock = pipeline.clock
        self._redactor = pipeline.redactor
        self._handler = pipeline.wrap(self._send_on_transport)
        transport = self._custom_transport
        # Bound once: the per-request path makes no super() call and no lookup.
        self._transport_send = (
            HTTPAdapter.send.__get__(self) if transport is None else transport.send
        )
        reinit_after_fork(self, PipelineAdapter._renew_after_fork)

    def _renew_after_fork(self) -> None:
        """In a child after `os.fork()`: new pools, and fresh locks for the policies.

        The parent's pooled sockets stay the parent's: the child closes only its own
        copies of them (the parent's connections go on), without taking the old pools'
        locks, which a thread of the parent may have held at the fork.
        """
        renew_locks(self._pipeline)
        adapters: list[HTTPAdapter] = [self]
        if isinstance(self._custom_transport, HTTPAdapter):
            adapters.append(self._custom_transport)
        for adapter in adapters:
            for manager in (adapter.poolmanager, *adapter.proxy_manager.values()):
                _drop_pools(manager)
            adapter.init_poolmanager(
                adapter._pool_connections,  # type: ignore[attr-defined] # HTTPAdapter's own
                adapter._pool_maxsize,  # type: ignore[attr-defined]
                block=adapter._pool_block,  # type: ignore[attr-defined]
            )
            adapter.proxy_manager = {}

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this adapter runs."""
        return self._pipeline

    @property
    def transport(self) -> BaseAdapter:
        """The adapter that does the I/O (this adapter itself unless one was given)."""
        return self if self._custom_transport is None else self._custom_transport

    def send(  # noqa: PLR0917 - the signature requests calls
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: TimeoutValue = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Run the pipeline for one request, as `requests.Session.send` asks."""
        call = first_call(
            request, stream, timeout, verify, cert, proxies, self._clock, self._redactor
        )
        response = self._handler(call)
        response.connection = self  # re-sends (e.g. digest auth) go through the pipeline
        return response

    def _send_on_transport(self, call: Call) -> Response:
        if call.deadline is None:
            return self._exchange(call, call.timeout, None)
        # The deadline on the wire is real time, whatever the pipeline's clock. An
        # attempt that starts with no time left still gets the millisecond that Retry
        # gives it, as it did before the deadline held on the wire.
        clock = call.clock
        now = clock.monotonic()
        left = call.deadline - now
        if left > _MIN_ATTEMPT:
            # On the real clock the call's deadline is the wire's (one reading fewer).
            deadline = call.deadline if clock.monotonic is _monotonic else _monotonic() + left
        else:
            left = _MIN_ATTEMPT
            deadline = _monotonic() + left
        timeout = call.timeout
        if not within(timeout, left):
            timeout = cut_timeout(timeout, left)
        previous = wire.deadline
        wire.deadline = deadline
        try:
            return self._exchange(call, timeout, deadline)
        finally:
            wire.deadline = previous

    def _exchange(self, call: Call, timeout: TimeoutValue, deadline: float | None) -> Response:
        """One request on the transport, and the body that is the pipeline's to read.

        A success body of a non-streamed call is read whole, an error body (status
        >= 400) up to `MAX_ERROR_BODY`; a streamed body, or a redirect's (requests
        drains it), is left to the caller, guarded (`guard_stream`). A failure is
        translated to this library's errors here, at the one boundary.
        """
        response: Response | None = None
        try:
            response = self._transport_send(
                call.request,
                stream=call.stream,  # the body is read below either way
                timeout=timeout,  # type: ignore[arg-type] # requests takes a urllib3 Timeout too
                verify=call.verify,
                cert=call.cert,
                proxies=call.proxies,
            )
            if call.stream or (response.status_code in REDIRECT_STATI and response.is_redirect):
                guard_stream(response, call, deadline)
            elif getattr(response, "_content", False) is False:  # requests' "not read"
                read_body(response, MAX_ERROR_BODY if response.status_code >= 400 else None)
        except requests.RequestException as exc:
            error = self._translated(exc, call, response, deadline)
            if error is exc:
                raise
            raise error from exc
        return response

    @staticmethod
    def _translated(
        exc: requests.RequestException,
        call: Call,
        response: Response | None,
        deadline: float | None,
    ) -> requests.RequestException:
        """The library's error for a transport failure (`exc` itself for a caller's error)."""
        if response is not None:
            response.close()
        if isinstance(exc, APIError):
            return exc
        request = call.request
        error = translate_transport_error(exc, request, call.redactor)
        if not isinstance(error, APIConnectTimeoutError) and deadline_passed(deadline, exc):
            received = len(response._content or b"") if response is not None else 0
            error = deadline_error(
                call, request, call.redactor, response=response, received=received
            )
        return exc if error is None else error

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        """`HTTPAdapter.init_poolmanager`, with pools that keep a call's deadline."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        install_pool_classes(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        """`HTTPAdapter.proxy_manager_for`, with pools that keep a call's deadline."""
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        install_pool_classes(manager)
        return manager

    def close(self) -> None:
        """Close the connection pools (and the custom transport's, if one was given)."""
        super().close()
        if self._custom_transport is not None:
            self._custom_transport.close()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # HTTPAdapter's: the configuration, a new pool; then a chain of our own.
        super().__setstate__(state)  # type: ignore[misc] # HTTPAdapter's, missing from its stubs
        self._build()

    def __repr__(self) -> str:
        return f"PipelineAdapter({self._pipeline!r})"


def _drop_pools(manager: urllib3.PoolManager) -> None:
    """Close a child's copies of a pool manager's connections, with fresh locks first."""
    pools: Any = manager.pools
    pools.lock = threading.RLock()  # RecentlyUsedContainer's own lock
    for pool in list(pools._container.values()):
        connections = getattr(pool, "pool", None)
        if isinstance(connections, queue.Queue):
            renew_queue(connections)
    manager.clear()


def mount(
    session: requests.Session,
    prefix: str,
    pipeline: Pipeline,
    *,
    transport: BaseAdapter | None = None,
    pool_connections: int = 10,
    pool_maxsize: int = 32,
    pool_block: bool = False,
) -> requests.Session:
    """Mount `pipeline` on `session` for URLs that start with `prefix`.

    Other prefixes on the session keep their adapters; requests picks the longest
    matching prefix, so ``https://api.example.com/v1/`` wins over ``https://``.

    Args:
        session: your existing session; it is changed in place and returned.
        prefix: a URL prefix such as ``"https://tryvinci.com/api/v1/"``.
        pipeline: the policies to run for those URLs.
        transport: see `PipelineAdapter`.
        pool_connections: see `PipelineAdapter`.
        pool_maxsize: see `PipelineAdapter`.
        pool_block: see `PipelineAdapter`.

    Returns:
        The same session, for chaining.

    Example:
        >>> import requests
        >>> from requests_resilience import APIKeyAuth, Pipeline, StatusErrors, mount
        >>> session = mount(
        ...     requests.Session(),
        ...     "https://api.example.com/",
        ...     Pipeline(StatusErrors(), APIKeyAuth("sk-example-key")),
        ... )
    """
    if not isinstance(session, requests.Session):
        msg = f"session must be a requests.Session, got {type(session).__name__}"
        raise TypeError(msg)
    if not isinstance(prefix, str) or not prefix.lower().startswith(("http://", "https://")):
        msg = f"prefix must start with http:// or https://, got {prefix!r}"
        raise ConfigurationError(msg)
    adapter = PipelineAdapter(
        pipeline,
        transport=transport,
        pool_connections=pool_connections,
        pool_maxsize=pool_maxsize,
        pool_block=pool_block,
    )
    session.mount(prefix, adapter)
    return session

"""`PipelineAdapter`, which runs a pipeline inside `requests`, and `mount()`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

from requests_resilience._errors import ConfigurationError, translate_transport_error
from requests_resilience._pipeline import Call, Pipeline

if TYPE_CHECKING:
    from requests import PreparedRequest, Response

__all__ = ["PipelineAdapter", "mount"]


class PipelineAdapter(BaseAdapter):
    """A transport adapter that sends every request through a `Pipeline`.

    The innermost step is a real `requests.adapters.HTTPAdapter` (or the `transport`
    you pass), so connection pooling, TLS verification, proxies, ``stream=True`` and
    timeouts work as usual, and the `Session` around it keeps handling redirects,
    cookies and hooks. The adapter translates transport failures into this library's
    `APIConnectionError` family at that one boundary, and reads a non-streamed body
    inside the pipeline, so that a body that breaks off is seen (and can be retried)
    by the policies.

    Args:
        pipeline: the policies to run.
        transport: the adapter that does the I/O. Default: an `HTTPAdapter` with
            the pool settings below and no retries of its own.
        pool_connections: how many per-host pools to keep (default transport only).
        pool_maxsize: connections kept per host; set it to at least the number of
            threads that share the session, or connections are discarded under load.
        pool_block: wait for a free connection instead of opening an extra one.

    Example:
        >>> adapter = PipelineAdapter(Pipeline(StatusErrors()), pool_maxsize=32)
        >>> session.mount("https://api.example.com/", adapter)
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        transport: BaseAdapter | None = None,
        pool_connections: int = 10,
        pool_maxsize: int = 32,
        pool_block: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(pipeline, Pipeline):
            msg = f"pipeline must be a Pipeline, got {type(pipeline).__name__}"
            raise TypeError(msg)
        for option, value in (
            ("pool_connections", pool_connections),
            ("pool_maxsize", pool_maxsize),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                msg = f"{option} must be an int from 1 to 10000, got {value!r}"
                raise ConfigurationError(msg)
        if transport is None:
            transport = HTTPAdapter(
                pool_connections=pool_connections,
                pool_maxsize=pool_maxsize,
                max_retries=0,
                pool_block=pool_block,
            )
        self._pipeline = pipeline
        self._transport = transport
        self._clock = pipeline.clock
        self._redactor = pipeline.redactor
        self._handler = pipeline.wrap(self._send_on_transport)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this adapter runs."""
        return self._pipeline

    @property
    def transport(self) -> BaseAdapter:
        """The adapter that does the I/O."""
        return self._transport

    def send(  # noqa: PLR0917 - the signature requests calls
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Run the pipeline for one request, as `requests.Session.send` asks."""
        call = Call(
            request=request,
            stream=stream,
            timeout=timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
            clock=self._clock,
            redactor=self._redactor,
        )
        response = self._handler(call)
        response.connection = self  # type: ignore[assignment] # re-sends (e.g. digest auth) go through the pipeline
        return response

    def _send_on_transport(self, call: Call) -> Response:
        request = call.request
        response: Response | None = None
        try:
            response = self._transport.send(
                request,
                stream=call.stream,
                timeout=call.timeout,
                verify=call.verify,
                cert=call.cert,
                proxies=call.proxies,
            )
            if not call.stream:
                response.content  # noqa: B018 - read here so a broken body is the pipeline's to see
        except requests.RequestException as exc:
            if response is not None:
                response.close()
            error = translate_transport_error(exc, request, call.redactor)
            if error is None:
                raise
            raise error from exc
        return response

    def close(self) -> None:
        """Close the transport's connection pools."""
        self._transport.close()

    def __repr__(self) -> str:
        return f"PipelineAdapter({self._pipeline!r})"


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

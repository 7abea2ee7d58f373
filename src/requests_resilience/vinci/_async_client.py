"""`AsyncVinciClient`: the Vinci client for asyncio, over `httpx.AsyncClient`.

It sends the same operations as `VinciClient` (built and read by `_operations`), through
the same pipeline (`AsyncResilientTransport`), with the same balance decisions
(`BalanceGuard`, fetched with ``await``) and the same polling decisions (`WaitState`,
one task per job). Only the I/O differs: ``await`` instead of a blocking call.
httpx is imported when a client is made (the ``httpx`` extra), not with the package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar, overload

import requests
import requests.structures

from requests_resilience._errors import APIError, ConfigurationError
from requests_resilience._pipeline import Pipeline
from requests_resilience.vinci import _operations as ops
from requests_resilience.vinci._balance import (
    BalanceGuard,
    Reservation,
    arefresh,
    areserve,
    settling,
)
from requests_resilience.vinci._client import _operation, _route
from requests_resilience.vinci._models import (
    APIKey,
    AspectRatio,
    Balance,
    Job,
    JobStatus,
    KeyInfo,
    RevokedKey,
    Usage,
)
from requests_resilience.vinci._operations import MIB, ImageInput, Operation, TimeoutOption
from requests_resilience.vinci._preset import DEFAULT_BASE_URL, build_pipeline
from requests_resilience.vinci._wait import PollSchedule, ProgressCallback, apoll_until_done

if TYPE_CHECKING:
    import httpx

    from requests_resilience._clock import Clock

__all__ = ["AsyncVinciClient"]

T = TypeVar("T")


class AsyncVinciClient:
    """The typed Vinci client for asyncio: `VinciClient`'s methods, each ``async def``.

    The options, results and errors are `VinciClient`'s (see it for each); the
    differences are in the I/O. Requests go through an `httpx.AsyncClient` whose
    transport is `AsyncResilientTransport` over the Vinci pipeline, so retry waits,
    rate-limit waits and polls sleep with the event loop. `wait_all` follows each job
    in its own task (at most `max_concurrency` polls in flight); cancelling the task
    that awaits it cancels them all. The balance pre-check's fetch is awaited, one at
    a time per client. A client belongs to one event loop.

    A `Pipeline` may be shared with a `VinciClient` (``build_pipeline()`` once, passed
    to both): its breaker, rate limit and retry budget then count the calls of both.

    Args:
        api_key: the key, when the client builds the pipeline; else ``VINCI_API_KEY``.
        base_url: the API's base URL.
        pipeline: a pipeline to use instead of the preset's (``build_pipeline()``).
        clock: time, sleep and jitter for waiting and the balance cache; default the
            pipeline's clock.
        request_timeout: the HTTP timeout of one request, seconds or
            ``(connect, read)``.
        balance_check: check the balance before sending a job.
        balance_ttl: seconds a fetched balance is trusted.
        price_per_second: dollars per second of video, for the estimate.
        max_upload_bytes: the largest image accepted (10 MiB by default).
        pool_maxsize: connections kept to the API.
        transport: the httpx transport under the pipeline (default
            ``httpx.AsyncHTTPTransport`` with `pool_maxsize` connections), e.g. to
            enable HTTP/2 or a proxy.
        max_concurrency: the most status polls `wait_all` has in flight at once.

    Raises:
        MissingAPIKeyError: the client builds the pipeline and no key was found.
        ConfigurationError: an option is out of range, or httpx is not installed.

    Example:
        >>> async with AsyncVinciClient() as client:  # the key from VINCI_API_KEY
        ...     jobs = [await client.text_to_video(p) for p in ("a fox", "an owl")]
        ...     done = await client.wait_all(jobs, on_progress=print)
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        pipeline: Pipeline | None = None,
        clock: Clock | None = None,
        request_timeout: TimeoutOption = (10.0, 60.0),
        balance_check: bool = True,
        balance_ttl: float = 30.0,
        price_per_second: float = 0.05,
        max_upload_bytes: int = 10 * MIB,
        pool_maxsize: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        max_concurrency: int = 16,
    ) -> None:
        options = ops.check_options(
            base_url=base_url,
            request_timeout=request_timeout,
            balance_ttl=balance_ttl,
            price_per_second=price_per_second,
            max_upload_bytes=max_upload_bytes,
            clock=clock,
        )
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            msg = f"max_concurrency must be an int, got {max_concurrency!r}"
            raise ConfigurationError(msg)
        if max_concurrency < 1:
            msg = f"max_concurrency must be at least 1, got {max_concurrency!r}"
            raise ConfigurationError(msg)
        self._options = options
        self._pipeline = _pipeline_of(pipeline, api_key, clock, options.base_url)
        self._http = _http_client(self._pipeline, options.timeout, transport, pool_maxsize)
        self._clock: Clock = clock or self._pipeline.clock
        self._max_concurrency = max_concurrency
        self._fetch_lock = asyncio.Lock()
        self._guard = (
            BalanceGuard(None, clock=self._clock, ttl=options.balance_ttl)
            if balance_check
            else None
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The `httpx.AsyncClient` the client sends through."""
        return self._http

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline the requests go through."""
        return self._pipeline

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._options.base_url

    @property
    def clock(self) -> Clock:
        """The clock used for waiting and for the balance cache."""
        return self._clock

    @property
    def balance_guard(self) -> BalanceGuard | None:
        """The balance pre-check's state, or None when it is off."""
        return self._guard

    async def aclose(self) -> None:
        """Close the httpx client and release its connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncVinciClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        checked = self._guard is not None
        return f"AsyncVinciClient(base_url={self.base_url!r}, balance_check={checked})"

    # -- the driver: every endpoint goes through here -----------------------------------

    async def _perform(self, op: Operation[T]) -> T:
        """Run one operation: its span, the balance pre-check of a job, the request."""
        with _operation(op.name, **op.attributes):
            reservation = await self._reserve(op.cost_seconds)
            with settling(self._guard, reservation) as settle:
                return settle(await self._exchange(op))

    async def _exchange(self, op: Operation[T]) -> T:
        """Send one request (inside the current operation) and read its typed result."""
        with op.errors_noted():
            with _route(op.route):
                response = await self._http.request(
                    op.method,
                    self.base_url + op.path,
                    json=op.json,
                    params=op.params,
                    content=op.content,
                    headers=op.headers,
                )
            view = _view_of(response)
            return ops.read_result(op, view, self._pipeline.redactor, self._clock.time())

    async def _reserve(self, cost_seconds: int | None) -> Reservation | None:
        if cost_seconds is None or self._guard is None:
            return None
        cost = self._options.estimate(cost_seconds)
        try:
            return await areserve(self._guard, cost, self._fetch_balance_amount, self._fetch_lock)
        except APIError as exc:
            ops.unless_final(exc)
            return None

    # -- generation ---------------------------------------------------------------------

    async def text_to_video(
        self,
        prompt: str,
        *,
        duration_seconds: int = 5,
        aspect_ratio: AspectRatio = "16:9",
        seed: int | None = None,
    ) -> Job:
        """Start a text-to-video job (see `VinciClient.text_to_video`).

        Example:
            >>> job = await client.text_to_video("Forest in fog", duration_seconds=4)
        """
        return await self._perform(ops.text_to_video(prompt, duration_seconds, aspect_ratio, seed))

    async def image_to_video(
        self, image: ImageInput, prompt: str, *, duration_seconds: int = 5
    ) -> Job:
        """Start an image-to-video job (see `VinciClient.image_to_video`).

        The image is read in a worker thread, so a file on a slow disk does not stall
        the event loop.

        Example:
            >>> job = await client.image_to_video("cat.png", "The cat waves")
        """
        limit = self._options.max_upload_bytes
        op = await asyncio.to_thread(
            ops.image_to_video, image, prompt, duration_seconds, max_upload_bytes=limit
        )
        return await self._perform(op)

    # -- jobs ---------------------------------------------------------------------------

    async def status(self, job: Job | JobStatus | str) -> JobStatus:
        """Fetch a job's status (see `VinciClient.status`).

        Example:
            >>> (await client.status(job)).status
            'processing'
        """
        return await self._perform(ops.status(job))

    async def wait(
        self,
        job: Job | JobStatus | str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        on_progress: ProgressCallback | None = None,
    ) -> JobStatus:
        """Poll a job until it completes (see `VinciClient.wait`), sleeping with the loop.

        Raises:
            JobFailedError: the job failed.
            JobTimeoutError: the deadline passed first.
            APIError: a poll failed for good.

        Example:
            >>> done = await client.wait(job, timeout=300, on_progress=print)
        """
        (result,) = await self.wait_all(
            [job],
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            on_progress=on_progress,
        )
        return result

    @overload
    async def wait_all(
        self,
        jobs: Iterable[Job | JobStatus | str],
        *,
        timeout: float | None = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[JobStatus]: ...

    @overload
    async def wait_all(
        self,
        jobs: Iterable[Job | JobStatus | str],
        *,
        timeout: float | None = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: Literal[True],
    ) -> list[JobStatus | APIError]: ...

    async def wait_all(
        self,
        jobs: Iterable[Job | JobStatus | str],
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        on_progress: ProgressCallback | None = None,
        return_exceptions: bool = False,
    ) -> list[JobStatus] | list[JobStatus | APIError]:
        """Wait for many jobs concurrently, one task each; results in job order.

        The schedule, the deadline (over the whole batch), the progress callback and
        the errors are `VinciClient.wait_all`'s. The first error (unless
        `return_exceptions`) cancels the other jobs' tasks; so does cancelling the
        task that awaits this. Every task has ended when it returns or raises.

        Example:
            >>> jobs = [await client.text_to_video(p) for p in prompts]
            >>> results = await client.wait_all(jobs, return_exceptions=True)
        """
        request_ids = [ops.id_of(job) for job in jobs]
        schedule = PollSchedule(
            timeout=timeout, poll_interval=poll_interval, max_poll_interval=max_poll_interval
        )
        name = "vinci.wait" if len(request_ids) == 1 else "vinci.wait_all"
        with _operation(name, **{"vinci.jobs": len(request_ids)}):
            return await apoll_until_done(
                request_ids,
                self.status,
                clock=self._clock,
                schedule=schedule,
                on_progress=on_progress,
                return_exceptions=return_exceptions,
                max_concurrency=self._max_concurrency,
            )

    # -- billing ------------------------------------------------------------------------

    async def _fetch_balance_amount(self) -> Decimal:
        return Decimal(str((await self._perform(ops.balance())).balance_usd))

    async def balance(self) -> Balance:
        """Fetch the balance (see `VinciClient.balance`); it also refreshes the pre-check.

        Example:
            >>> (await client.balance()).balance_usd
            25.5
        """
        if self._guard is None:
            return await self._perform(ops.balance())
        fetched: list[Balance] = []

        async def fetch() -> Decimal:
            fetched.append(await self._perform(ops.balance()))
            return Decimal(str(fetched[-1].balance_usd))

        await arefresh(self._guard, fetch, self._fetch_lock)
        return fetched[-1]

    async def usage(self, days: int = 30) -> Usage:
        """Fetch usage over the last `days` days, 1 to 90 (see `VinciClient.usage`)."""
        return await self._perform(ops.usage(days))

    # -- API keys -----------------------------------------------------------------------

    async def create_key(self, name: str, *, rate_limit: int = 10) -> APIKey:
        """Create an API key; its secret is shown only this once (`VinciClient.create_key`)."""
        return await self._perform(ops.create_key(name, rate_limit))

    async def list_keys(self) -> list[KeyInfo]:
        """List the account's keys, revoked ones included (see `VinciClient.list_keys`)."""
        return await self._perform(ops.list_keys())

    async def revoke_key(self, key_id: str) -> RevokedKey:
        """Revoke a key (see `VinciClient.revoke_key`)."""
        return await self._perform(ops.revoke_key(key_id))


def _pipeline_of(
    pipeline: Pipeline | None, api_key: str | None, clock: Clock | None, base_url: str
) -> Pipeline:
    if pipeline is None:
        return build_pipeline(api_key=api_key, clock=clock, origin=base_url)
    if api_key is not None:
        msg = "pass api_key to build_pipeline(), not with pipeline="
        raise ConfigurationError(msg)
    if not isinstance(pipeline, Pipeline):
        msg = f"pipeline must be a Pipeline, got {type(pipeline).__name__}"
        raise ConfigurationError(msg)
    return pipeline


def _http_client(
    pipeline: Pipeline,
    timeout: TimeoutOption,
    transport: httpx.AsyncBaseTransport | None,
    pool_maxsize: int,
) -> httpx.AsyncClient:
    """The httpx client: the pipeline as its transport, over `transport`."""
    try:
        import httpx  # noqa: PLC0415 - the httpx extra, needed only by this client

        from requests_resilience._httpx import AsyncResilientTransport  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        msg = "AsyncVinciClient needs httpx: pip install 'requests-resilience[httpx]'"
        raise ConfigurationError(msg) from exc
    limits = httpx.Limits(max_connections=pool_maxsize, max_keepalive_connections=pool_maxsize)
    wire = transport or httpx.AsyncHTTPTransport(limits=limits)
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return httpx.AsyncClient(
        transport=AsyncResilientTransport(pipeline, wire),
        timeout=httpx.Timeout(read, connect=connect),
    )


def _view_of(response: httpx.Response) -> requests.Response:
    """A read httpx response as the `requests.Response` the shared reader takes."""
    view = requests.Response()
    view.status_code = response.status_code
    view.headers = requests.structures.CaseInsensitiveDict(response.headers.multi_items())
    view.reason = response.reason_phrase
    view.url = str(response.url)
    view.encoding = response.encoding
    view._content = response.content
    return view

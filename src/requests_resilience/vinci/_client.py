"""`VinciClient`: one typed method per endpoint of the Vinci API, over requests.

What each method sends and how its answer is read is written once, without I/O, in
`_operations` (shared with `AsyncVinciClient`); this class only sends through its
`requests.Session` and waits on its clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import requests

from requests_resilience._adapter import PipelineAdapter
from requests_resilience._clock import Clock
from requests_resilience._errors import APIError, ConfigurationError
from requests_resilience._tracing import operation, route
from requests_resilience.vinci import _operations as ops
from requests_resilience.vinci._balance import BalanceGuard, Reservation, settling
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
from requests_resilience.vinci._preset import DEFAULT_BASE_URL, mount
from requests_resilience.vinci._wait import (
    PollSchedule,
    ProgressCallback,
    poll_until_done,
)

if TYPE_CHECKING:
    from requests_resilience._pipeline import Pipeline

__all__ = ["ImageInput", "VinciClient"]

T = TypeVar("T")


@contextmanager
def _operation(name: str, **attributes: Any) -> Iterator[None]:
    """The parent span of one logical operation (seam).

    Args:
        name: the operation, e.g. ``"vinci.text_to_video"``.
        **attributes: span attributes (never secrets, never the prompt).
    """
    with operation(name, tracer_provider=None, **attributes):
        yield


@contextmanager
def _route(template: str) -> Iterator[None]:
    """Name the attempt spans of the requests sent inside the block (seam).

    Args:
        template: the path template, e.g. ``"/status/{request_id}"``.
    """
    with route(template):
        yield


class VinciClient:
    """A typed client of the Vinci API over a `requests.Session` with the Vinci pipeline.

    Every method checks its arguments before sending anything (`VinciInputError`),
    returns a frozen result, and raises the library's typed errors: the HTTP ones
    (`BadRequestError`, `AuthenticationError`, `InsufficientBalanceError`,
    `NotFoundError`, `PayloadTooLargeError`, `RateLimitError`, `ServerError`), the
    connection ones, `UnexpectedResponseError` for a 2xx body it cannot read, and
    `JobFailedError` / `JobTimeoutError` from `wait()`. A client can be shared by
    threads.

    Before a job is sent, the client checks that the balance covers it (the vendor's
    advice): the balance is read from ``/billing/balance`` at most every
    `balance_ttl` seconds, each job's estimate is reserved against it, and a job it
    cannot cover raises `InsufficientBalanceError` without a request. If the balance
    cannot be read for a transient reason (5xx, 429, connection, open breaker), the
    job is sent anyway and the server, which enforces the balance, decides.

    Args:
        session: a session to use. If it has no `PipelineAdapter` on `base_url`, the
            Vinci pipeline is mounted on it; it stays open when the client closes.
            Default: a new session, closed with the client.
        api_key: the key, when the client mounts the pipeline; else the
            ``VINCI_API_KEY`` environment variable. Never shown in any repr.
        base_url: the API's base URL.
        pipeline: a pipeline to mount instead of the preset's (``build_pipeline()``).
        clock: time, sleep and jitter for waiting and the balance cache; default the
            mounted pipeline's clock.
        request_timeout: the HTTP timeout of one request, seconds or
            ``(connect, read)``.
        balance_check: check the balance before sending a job.
        balance_ttl: seconds a fetched balance is trusted.
        price_per_second: dollars per second of video, for the estimate.
        max_upload_bytes: the largest image accepted (the API's limit is not
            documented; 10 MiB by default).
        pool_maxsize: connections kept, when the client mounts the pipeline.

    Raises:
        MissingAPIKeyError: the client mounts the pipeline and no key was found.
        ConfigurationError: an option is out of range.

    Example:
        >>> from requests_resilience.vinci import VinciClient
        >>> with VinciClient() as client:  # the key from VINCI_API_KEY
        ...     job = client.text_to_video("Calm ocean at sunrise", duration_seconds=5)
        ...     done = client.wait(job, on_progress=lambda s: print(f"{s.progress:.0f}%"))
        ...     print(done.video_url)
    """

    def __init__(
        self,
        session: requests.Session | None = None,
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
    ) -> None:
        options = ops.check_options(
            base_url=base_url,
            request_timeout=request_timeout,
            balance_ttl=balance_ttl,
            price_per_second=price_per_second,
            max_upload_bytes=max_upload_bytes,
            clock=clock,
        )
        self._options = options
        self._base_url = options.base_url
        if session is not None and not isinstance(session, requests.Session):
            msg = f"session must be a requests.Session, got {type(session).__name__}"
            raise TypeError(msg)
        self._owns_session = session is None
        own = requests.Session() if session is None else session
        try:
            adapter = own.get_adapter(self._base_url + "/")
            if not isinstance(adapter, PipelineAdapter):
                if pipeline is not None:
                    if api_key is not None:
                        msg = "pass api_key to build_pipeline(), not with pipeline="
                        raise ConfigurationError(msg)
                    own.mount(
                        self._base_url + "/", PipelineAdapter(pipeline, pool_maxsize=pool_maxsize)
                    )
                else:
                    mount(
                        own,
                        api_key=api_key,
                        base_url=self._base_url,
                        clock=clock,
                        pool_maxsize=pool_maxsize,
                    )
            elif api_key is not None or pipeline is not None:
                msg = (
                    "the session already has a pipeline mounted on the base URL; "
                    "api_key and pipeline apply only when the client mounts one"
                )
                raise ConfigurationError(msg)
        except BaseException:
            if self._owns_session:
                own.close()
            raise
        self._session = own
        mounted = own.get_adapter(self._base_url + "/")
        assert isinstance(mounted, PipelineAdapter)
        self._adapter = mounted
        self._clock: Clock = clock or mounted.pipeline.clock
        self._guard = (
            BalanceGuard(self._fetch_balance_amount, clock=self._clock, ttl=options.balance_ttl)
            if balance_check
            else None
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        """The session the client sends through."""
        return self._session

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._base_url

    @property
    def clock(self) -> Clock:
        """The clock used for waiting and for the balance cache."""
        return self._clock

    @property
    def balance_guard(self) -> BalanceGuard | None:
        """The balance pre-check's state, or None when it is off."""
        return self._guard

    def close(self) -> None:
        """Close the session, if the client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> VinciClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VinciClient(base_url={self._base_url!r}, balance_check={self._guard is not None})"

    # -- the driver: every endpoint goes through here -----------------------------------

    def _perform(self, op: Operation[T]) -> T:
        """Run one operation: its span, the balance pre-check of a job, the request.

        Args:
            op: what to send and how to read it (built by `_operations`).
        """
        with _operation(op.name, **op.attributes):
            reservation = self._reserve(op.cost_seconds)
            with settling(self._guard, reservation) as settle:
                return settle(self._exchange(op))

    def _exchange(self, op: Operation[T]) -> T:
        """Send one request (inside the current operation) and read its typed result."""
        with op.errors_noted():
            with _route(op.route):
                response = self._session.request(
                    op.method,
                    self._base_url + op.path,
                    timeout=self._options.timeout,
                    json=op.json,
                    params=op.params,
                    data=op.content,
                    headers=op.headers,
                )
            try:
                redactor = self._adapter.pipeline.redactor
                return ops.read_result(op, response, redactor, self._clock.time())
            finally:
                response.close()

    def _reserve(self, cost_seconds: int | None) -> Reservation | None:
        """Reserve a job's estimate (None: not a job, no pre-check, or not readable now)."""
        if cost_seconds is None or self._guard is None:
            return None
        try:
            return self._guard.reserve(self._options.estimate(cost_seconds))
        except APIError as exc:
            ops.unless_final(exc)
            return None

    # -- generation ---------------------------------------------------------------------

    def text_to_video(
        self,
        prompt: str,
        *,
        duration_seconds: int = 5,
        aspect_ratio: AspectRatio = "16:9",
        seed: int | None = None,
    ) -> Job:
        """Start a text-to-video job.

        Args:
            prompt: what to generate (the docs advise under 200 characters).
            duration_seconds: 1 to 10.
            aspect_ratio: ``"16:9"``, ``"9:16"`` or ``"1:1"``.
            seed: for reproducible results; None for a random one.

        Returns:
            The job; poll it with `status()` or `wait()`.

        Raises:
            VinciInputError: an argument is invalid (nothing was sent).
            InsufficientBalanceError: the balance does not cover the job (checked
                locally, or by the server).
            APIError: the request failed.

        Example:
            >>> job = client.text_to_video("Forest in fog", duration_seconds=4, seed=7)
        """
        return self._perform(ops.text_to_video(prompt, duration_seconds, aspect_ratio, seed))

    def image_to_video(self, image: ImageInput, prompt: str, *, duration_seconds: int = 5) -> Job:
        """Start an image-to-video job from a JPEG or PNG image.

        The multipart body is built once, as bytes, so a retry re-sends exactly the
        same bytes.

        Args:
            image: a path, the image's bytes, or a binary file object (read from its
                current position).
            prompt: what to generate.
            duration_seconds: 1 to 10.

        Returns:
            The job.

        Raises:
            VinciInputError: the image is not JPEG or PNG, is empty, is larger than
                `max_upload_bytes` or cannot be read, or an argument is invalid
                (nothing was sent).
            APIError: the request failed.

        Example:
            >>> job = client.image_to_video("cat.png", "The cat waves", duration_seconds=3)
        """
        limit = self._options.max_upload_bytes
        op = ops.image_to_video(image, prompt, duration_seconds, max_upload_bytes=limit)
        return self._perform(op)

    # -- jobs ---------------------------------------------------------------------------

    def status(self, job: Job | JobStatus | str) -> JobStatus:
        """Fetch a job's status (``GET /status/{request_id}``).

        Args:
            job: the job, or its request id.

        Raises:
            NotFoundError: no such job.
            APIError: the request failed.

        Example:
            >>> client.status(job).status
            'processing'
        """
        return self._perform(ops.status(job))

    def wait(
        self,
        job: Job | JobStatus | str,
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        on_progress: ProgressCallback | None = None,
    ) -> JobStatus:
        """Poll a job until it completes, and return its final status.

        Polls at once, then after `poll_interval` seconds, growing to
        `max_poll_interval` with jitter, on the client's clock. A poll that fails
        transiently (5xx, 429, connection, open breaker) is tried again later.

        Args:
            job: the job, or its request id.
            timeout: seconds the whole wait may last; None for no limit.
            poll_interval: the first wait between polls.
            max_poll_interval: the longest wait between polls.
            on_progress: called with each status received (``status.progress`` is 0
                to 100).

        Returns:
            The completed status (with ``video_url``).

        Raises:
            JobFailedError: the job failed (``request_id``, ``error``).
            JobTimeoutError: the deadline passed first (``request_id``).
            APIError: a poll failed for good (e.g. `NotFoundError`).

        Example:
            >>> done = client.wait(job, timeout=300, on_progress=lambda s: print(s.progress))
        """
        request_id = ops.id_of(job)
        schedule = PollSchedule(
            timeout=timeout, poll_interval=poll_interval, max_poll_interval=max_poll_interval
        )
        with _operation("vinci.wait", **{"vinci.request_id": request_id}):
            (result,) = poll_until_done(
                [request_id],
                self.status,
                clock=self._clock,
                schedule=schedule,
                on_progress=on_progress,
            )
        assert isinstance(result, JobStatus)
        return result

    @overload
    def wait_all(
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
    def wait_all(
        self,
        jobs: Iterable[Job | JobStatus | str],
        *,
        timeout: float | None = ...,
        poll_interval: float = ...,
        max_poll_interval: float = ...,
        on_progress: ProgressCallback | None = ...,
        return_exceptions: Literal[True],
    ) -> list[JobStatus | APIError]: ...

    def wait_all(
        self,
        jobs: Iterable[Job | JobStatus | str],
        *,
        timeout: float | None = 600.0,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        on_progress: ProgressCallback | None = None,
        return_exceptions: bool = False,
    ) -> list[JobStatus] | list[JobStatus | APIError]:
        """Wait for many jobs in one loop (no thread per job); results in job order.

        Each job is polled on its own schedule (as in `wait()`); one loop polls
        whichever is due next. `timeout` covers the whole batch.

        Args:
            jobs: the jobs, or their request ids.
            timeout: seconds the whole wait may last; None for no limit.
            poll_interval: the first wait between a job's polls.
            max_poll_interval: the longest wait between a job's polls.
            on_progress: called with each status received, of any job.
            return_exceptions: return each job's error (`JobFailedError`,
                `JobTimeoutError`, ...) in its place instead of raising the first.

        Returns:
            The completed statuses (or errors), in the order of `jobs`.

        Raises:
            JobFailedError: a job failed (unless `return_exceptions`).
            JobTimeoutError: the deadline passed first (unless `return_exceptions`).
            APIError: a poll failed for good (unless `return_exceptions`).

        Example:
            >>> jobs = [client.text_to_video(p) for p in prompts]
            >>> results = client.wait_all(jobs, return_exceptions=True)
            >>> [r.video_url for r in results if isinstance(r, JobStatus)]
        """
        request_ids = [ops.id_of(job) for job in jobs]
        schedule = PollSchedule(
            timeout=timeout, poll_interval=poll_interval, max_poll_interval=max_poll_interval
        )
        attributes = {"vinci.jobs": len(request_ids)}
        with _operation("vinci.wait_all", **attributes):
            return poll_until_done(
                request_ids,
                self.status,
                clock=self._clock,
                schedule=schedule,
                on_progress=on_progress,
                return_exceptions=return_exceptions,
            )

    # -- billing ------------------------------------------------------------------------

    def _fetch_balance_amount(self) -> Decimal:
        return Decimal(str(self._perform(ops.balance()).balance_usd))

    def balance(self) -> Balance:
        """Fetch the balance (``GET /billing/balance``); it also refreshes the pre-check.

        Example:
            >>> client.balance().balance_usd
            25.5
        """
        if self._guard is None:
            return self._perform(ops.balance())
        fetched: list[Balance] = []

        def fetch() -> Decimal:
            fetched.append(self._perform(ops.balance()))
            return Decimal(str(fetched[-1].balance_usd))

        self._guard.refresh(fetch)
        return fetched[-1]

    def usage(self, days: int = 30) -> Usage:
        """Fetch usage over the last `days` days, 1 to 90 (``GET /billing/usage``).

        Example:
            >>> client.usage(days=7).total_requests
            12
        """
        return self._perform(ops.usage(days))

    # -- API keys -----------------------------------------------------------------------

    def create_key(self, name: str, *, rate_limit: int = 10) -> APIKey:
        """Create an API key (``POST /keys``); its secret is shown only this once.

        Args:
            name: a label for the key.
            rate_limit: requests per minute, 1 to 100.

        Example:
            >>> key = client.create_key("ci", rate_limit=20)
            >>> save(key.key_id, key.api_key)
        """
        return self._perform(ops.create_key(name, rate_limit))

    def list_keys(self) -> list[KeyInfo]:
        """List the account's keys, revoked ones included (``GET /keys``).

        Example:
            >>> [k.key_preview for k in client.list_keys()]
            ['sk-ab...9f3c']
        """
        return self._perform(ops.list_keys())

    def revoke_key(self, key_id: str) -> RevokedKey:
        """Revoke a key (``DELETE /keys/{key_id}``).

        Raises:
            NotFoundError: no such key.

        Example:
            >>> client.revoke_key("vinci_0123abcd").key_id
            'vinci_0123abcd'
        """
        return self._perform(ops.revoke_key(key_id))

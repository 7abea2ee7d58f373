"""`VinciClient`: one typed method per endpoint of the Vinci API."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeAlias, overload
from urllib.parse import quote

import requests
from urllib3 import encode_multipart_formdata

from requests_resilience._adapter import PipelineAdapter
from requests_resilience._clock import Clock
from requests_resilience._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    CircuitOpenError,
    ConfigurationError,
    InsufficientBalanceError,
    ServerError,
)
from requests_resilience._parsing import json_body, request_id_of
from requests_resilience._status_errors import status_error
from requests_resilience._tracing import operation, route
from requests_resilience.vinci._balance import (
    BalanceGuard,
    Reservation,
    balance_in_detail,
    to_money,
)
from requests_resilience.vinci._errors import UnexpectedResponseError, VinciInputError
from requests_resilience.vinci._models import (
    ASPECT_RATIOS,
    APIKey,
    AspectRatio,
    Balance,
    Job,
    JobStatus,
    KeyInfo,
    RevokedKey,
    Usage,
    parse_api_key,
    parse_balance,
    parse_job,
    parse_job_status,
    parse_key_list,
    parse_revoked,
    parse_usage,
)
from requests_resilience.vinci._preset import DEFAULT_BASE_URL, mount, normalise_base_url
from requests_resilience.vinci._wait import (
    PollSchedule,
    ProgressCallback,
    is_transient,
    poll_until_done,
)

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._pipeline import Pipeline

__all__ = ["ImageInput", "VinciClient"]

#: An image for image-to-video: a path, the file's bytes, or a binary file object.
ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]"

_MIB: Final = 1024 * 1024
_JPEG: Final = b"\xff\xd8\xff"
_PNG: Final = b"\x89PNG\r\n\x1a\n"
_MIN_DURATION, _MAX_DURATION = 1, 10
_MIN_DAYS, _MAX_DAYS = 1, 90
_MAX_KEY_RATE = 100
_DAY = 86_400.0
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")

TimeoutOption: TypeAlias = "float | tuple[float, float]"


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


def _check_int(option: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"{option} must be an integer from {low} to {high}, got {value!r}"
        raise VinciInputError(msg)
    return value


def _check_text(option: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"{option} must be a non-empty string"
        raise VinciInputError(msg)
    return value


def _id_of(job: Job | JobStatus | str, option: str = "request_id") -> str:
    if isinstance(job, Job | JobStatus):
        return job.request_id
    return _check_text(option, job).strip()


def _number_option(
    option: str, value: object, *, high: float, unit: str = "seconds", allow_zero: bool = False
) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
        or value > high
    ):
        low = "0" if allow_zero else "more than 0"
        msg = f"{option} must be a number of {unit} from {low} to {high:g}, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


def _check_timeout(value: object) -> TimeoutOption:
    if isinstance(value, tuple):
        if len(value) != 2:
            msg = "request_timeout must be seconds or a (connect, read) pair"
            raise ConfigurationError(msg)
        return (
            _number_option("request_timeout", value[0], high=_DAY),
            _number_option("request_timeout", value[1], high=_DAY),
        )
    return _number_option("request_timeout", value, high=_DAY)


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
        max_upload_bytes: int = 10 * _MIB,
        pool_maxsize: int = 32,
    ) -> None:
        self._base_url = normalise_base_url(base_url)
        self._timeout = _check_timeout(request_timeout)
        ttl = _number_option("balance_ttl", balance_ttl, high=_DAY, allow_zero=True)
        price = _number_option(
            "price_per_second", price_per_second, high=1000.0, unit="dollars", allow_zero=True
        )
        if isinstance(max_upload_bytes, bool) or not isinstance(max_upload_bytes, int):
            msg = f"max_upload_bytes must be an int, got {max_upload_bytes!r}"
            raise ConfigurationError(msg)
        if max_upload_bytes < 1:
            msg = f"max_upload_bytes must be at least 1, got {max_upload_bytes!r}"
            raise ConfigurationError(msg)
        if clock is not None and not isinstance(clock, Clock):
            msg = "clock must implement monotonic(), time(), sleep() and random()"
            raise ConfigurationError(msg)
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
        self._price_per_second = Decimal(str(price))
        self._max_upload = max_upload_bytes
        self._guard = (
            BalanceGuard(self._fetch_balance_amount, clock=self._clock, ttl=ttl)
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

    # -- the one choke point ------------------------------------------------------------

    def _request(
        self,
        op_name: str,
        method: str,
        path: str,
        *,
        route: str,
        attributes: Mapping[str, object] | None = None,
        **kwargs: Any,
    ) -> tuple[Response, dict[str, Any]]:
        """Run one operation of one request; return its response and JSON object body.

        Every endpoint goes through here (job creation opens its operation itself, so
        that the balance pre-check is part of it), so the operation's span wraps each.

        Args:
            op_name: the operation's name, e.g. ``"vinci.status"``.
            method: the HTTP method.
            path: the path under the base URL, already quoted.
            route: the path template, e.g. ``"/status/{request_id}"``.
            attributes: span attributes of the operation.
            **kwargs: passed to `requests.Session.request`.
        """
        with _operation(op_name, **(attributes or {})):
            return self._send(op_name, method, path, route=route, **kwargs)

    def _send(
        self, op_name: str, method: str, path: str, *, route: str, **kwargs: Any
    ) -> tuple[Response, dict[str, Any]]:
        """Send one request (inside the current operation) and read its JSON object."""
        with _route(route):
            response = self._session.request(
                method, self._base_url + path, timeout=self._timeout, **kwargs
            )
        try:
            return response, self._json_object(op_name, response)
        finally:
            response.close()

    def _json_object(self, op_name: str, response: Response) -> dict[str, Any]:
        if response.status_code >= 400:  # a pipeline without StatusErrors
            redactor = self._adapter.pipeline.redactor
            raise status_error(response, redactor, self._clock.time())
        body = json_body(response, max_bytes=None)  # a success body: never capped
        what = op_name.removeprefix("vinci.")
        if not 200 <= response.status_code < 300:
            msg = f"unexpected {what} response: status {response.status_code}"
            raise UnexpectedResponseError(msg, response=response)
        if not isinstance(body, dict):
            kind = "not JSON" if body is None else f"JSON {type(body).__name__}, not an object"
            msg = f"unexpected {what} response: the body is {kind}"
            raise UnexpectedResponseError(
                msg, response=response, request_id=request_id_of(response)
            )
        return body

    # -- generation ---------------------------------------------------------------------

    def _estimate(self, duration_seconds: int) -> Decimal:
        return to_money(self._price_per_second * duration_seconds)

    def _create(self, op_name: str, path: str, duration_seconds: int, **kwargs: Any) -> Job:
        with _operation(op_name, **{"vinci.duration_seconds": duration_seconds}):
            reservation = self._reserve(duration_seconds)
            try:
                response, body = self._send(op_name, "POST", path, route=path, **kwargs)
                job = parse_job(body, response)
            except BaseException as exc:
                if reservation is not None:
                    self._settle_failure(reservation, exc)
                raise
            if reservation is not None and self._guard is not None:
                self._guard.commit(reservation, Decimal(str(job.estimated_cost_usd)))
            return job

    def _reserve(self, duration_seconds: int) -> Reservation | None:
        if self._guard is None:
            return None
        try:
            return self._guard.reserve(self._estimate(duration_seconds))
        except APIError as exc:
            if not is_transient(exc):
                raise
            # The balance cannot be read right now (5xx, 429, connection, open
            # breaker): let the server, which enforces the balance anyway, decide.
            return None

    def _settle_failure(self, reservation: Reservation, exc: BaseException) -> None:
        guard = self._guard
        assert guard is not None
        if isinstance(exc, InsufficientBalanceError):
            guard.release(reservation)
            guard.observe(balance_in_detail(exc.detail))
            return
        definite = (
            isinstance(exc, CircuitOpenError | VinciInputError)
            or (isinstance(exc, APIStatusError) and not isinstance(exc, ServerError))
            or (isinstance(exc, APIConnectionError) and not exc.request_sent)
        )
        # Otherwise (a 5xx, a reset after sending, an unreadable 2xx) the server may
        # have charged the job: forget the cached balance and read the real one next.
        guard.release(reservation, outcome_unknown=not definite)

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
        _check_text("prompt", prompt)
        duration = _check_int("duration_seconds", duration_seconds, _MIN_DURATION, _MAX_DURATION)
        if aspect_ratio not in ASPECT_RATIOS:
            msg = f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}, got {aspect_ratio!r}"
            raise VinciInputError(msg)
        payload: dict[str, object] = {
            "prompt": prompt,
            "duration_seconds": duration,
            "aspect_ratio": aspect_ratio,
        }
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                msg = f"seed must be an integer or None, got {seed!r}"
                raise VinciInputError(msg)
            payload["seed"] = seed
        return self._create(
            "vinci.text_to_video", "/generate/text-to-video", duration, json=payload
        )

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
        _check_text("prompt", prompt)
        duration = _check_int("duration_seconds", duration_seconds, _MIN_DURATION, _MAX_DURATION)
        data, filename = self._read_image(image)
        if data.startswith(_JPEG):
            content_type, suffix = "image/jpeg", ".jpg"
        elif data.startswith(_PNG):
            content_type, suffix = "image/png", ".png"
        else:
            msg = "image must be a JPEG or PNG file (its first bytes are neither)"
            raise VinciInputError(msg)
        name = _SAFE_FILENAME.sub("_", filename or "") or f"image{suffix}"
        body, multipart_type = encode_multipart_formdata(
            {
                "image": (name, data, content_type),
                "prompt": prompt,
                "duration_seconds": str(duration),
            }
        )
        return self._create(
            "vinci.image_to_video",
            "/generate/image-to-video",
            duration,
            data=body,
            headers={"Content-Type": multipart_type},
        )

    def _read_image(self, image: ImageInput) -> tuple[bytes, str | None]:
        limit = self._max_upload
        too_big = f"image is larger than max_upload_bytes ({limit} bytes)"
        if isinstance(image, bytes | bytearray | memoryview):
            data, filename = bytes(image), None
        elif isinstance(image, str | os.PathLike):
            path = Path(image)
            try:
                if path.stat().st_size > limit:
                    raise VinciInputError(too_big)
                data = path.read_bytes()
            except OSError as exc:
                msg = f"cannot read the image {path.name!r}: {exc.strerror or exc}"
                raise VinciInputError(msg) from exc
            filename = path.name
        elif callable(getattr(image, "read", None)):
            try:
                data = image.read(limit + 1)
            except OSError as exc:
                msg = f"cannot read the image file object: {exc}"
                raise VinciInputError(msg) from exc
            if not isinstance(data, bytes):
                msg = "image file object must be opened in binary mode ('rb')"
                raise VinciInputError(msg)
            raw_name = getattr(image, "name", None)
            filename = Path(raw_name).name if isinstance(raw_name, str) else None
        else:
            kind = type(image).__name__
            msg = f"image must be a path, bytes or a binary file object, got {kind}"
            raise VinciInputError(msg)
        if not data:
            msg = "image is empty"
            raise VinciInputError(msg)
        if len(data) > limit:
            raise VinciInputError(too_big)
        return data, filename

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
        request_id = _id_of(job)
        try:
            response, body = self._request(
                "vinci.status",
                "GET",
                f"/status/{quote(request_id, safe='')}",
                route="/status/{request_id}",
                attributes={"vinci.request_id": request_id},
            )
        except APIStatusError as exc:
            if exc.request_id is None:
                exc.request_id = request_id  # the job it was about, for logs and reports
            raise
        return parse_job_status(body, request_id, response)

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
        request_id = _id_of(job)
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
        request_ids = [_id_of(job) for job in jobs]
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

    def _get_balance(self) -> Balance:
        response, body = self._request(
            "vinci.balance", "GET", "/billing/balance", route="/billing/balance"
        )
        return parse_balance(body, response)

    def _fetch_balance_amount(self) -> Decimal:
        return Decimal(str(self._get_balance().balance_usd))

    def balance(self) -> Balance:
        """Fetch the balance (``GET /billing/balance``); it also refreshes the pre-check.

        Example:
            >>> client.balance().balance_usd
            25.5
        """
        if self._guard is None:
            return self._get_balance()
        fetched: list[Balance] = []

        def fetch() -> Decimal:
            fetched.append(self._get_balance())
            return Decimal(str(fetched[-1].balance_usd))

        self._guard.refresh(fetch)
        return fetched[-1]

    def usage(self, days: int = 30) -> Usage:
        """Fetch usage over the last `days` days, 1 to 90 (``GET /billing/usage``).

        Example:
            >>> client.usage(days=7).total_requests
            12
        """
        checked = _check_int("days", days, _MIN_DAYS, _MAX_DAYS)
        response, body = self._request(
            "vinci.usage",
            "GET",
            "/billing/usage",
            route="/billing/usage",
            params={"days": checked},
        )
        return parse_usage(body, response)

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
        _check_text("name", name)
        limit = _check_int("rate_limit", rate_limit, 1, _MAX_KEY_RATE)
        response, body = self._request(
            "vinci.create_key",
            "POST",
            "/keys",
            route="/keys",
            json={"name": name, "rate_limit": limit},
        )
        return parse_api_key(body, response)

    def list_keys(self) -> list[KeyInfo]:
        """List the account's keys, revoked ones included (``GET /keys``).

        Example:
            >>> [k.key_preview for k in client.list_keys()]
            ['sk-ab...9f3c']
        """
        response, body = self._request("vinci.list_keys", "GET", "/keys", route="/keys")
        return parse_key_list(body, response)

    def revoke_key(self, key_id: str) -> RevokedKey:
        """Revoke a key (``DELETE /keys/{key_id}``).

        Raises:
            NotFoundError: no such key.

        Example:
            >>> client.revoke_key("vinci_0123abcd").key_id
            'vinci_0123abcd'
        """
        checked = _id_of(key_id, "key_id")
        response, body = self._request(
            "vinci.revoke_key",
            "DELETE",
            f"/keys/{quote(checked, safe='')}",
            route="/keys/{key_id}",
            attributes={"vinci.key_id": checked},
        )
        return parse_revoked(body, checked, response)

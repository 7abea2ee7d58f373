"""The Vinci client's own errors, on top of the library's exception tree.

::

    ValueError
    └── VinciInputError               an argument was rejected; nothing was sent

    APIError  (requests_resilience)
    ├── UnexpectedResponseError       a 2xx answer the API does not document
    ├── JobFailedError                the job ended ``failed``        request_id, error
    └── JobTimeoutError (TimeoutError)  the wait's deadline passed     request_id, timeout

HTTP errors (400, 401, 402, 404, 413, 429, 5xx) keep the library's types
(`BadRequestError`, `InsufficientBalanceError`, ...); the balance pre-check raises
`InsufficientBalanceError` too, with ``response=None`` since nothing was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from requests_resilience._errors import APIError

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience.vinci._models import JobStatus

__all__ = ["JobFailedError", "JobTimeoutError", "UnexpectedResponseError", "VinciInputError"]


class VinciInputError(ValueError):
    """An argument was rejected before any request was sent.

    Example:
        >>> try:
        ...     client.text_to_video("   ")
        ... except VinciInputError as exc:
        ...     print(exc)
        prompt must be a non-empty string
    """


class UnexpectedResponseError(APIError):
    """The server answered 2xx, but not with the JSON the API documents.

    Raised instead of a `KeyError` or `JSONDecodeError` when a body is not JSON, is not
    an object, or lacks (or mistypes) a field the result needs.

    Example:
        >>> try:
        ...     job = client.text_to_video("a fox")
        ... except UnexpectedResponseError as exc:
        ...     log.error("unreadable answer", request_id=exc.request_id, error=str(exc))

    Attributes:
        request_id: the job's id when the body had one (a job may exist even though
            the rest of its creation answer was unreadable).
    """

    def __init__(
        self, message: str, *, response: Response | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message, response=response)
        self.request_id = request_id


class JobFailedError(APIError):
    """A job ended with status ``failed``.

    Example:
        >>> try:
        ...     client.wait(job)
        ... except JobFailedError as exc:
        ...     print(exc.request_id, exc.error)

    Attributes:
        request_id: the job's id.
        error: the server's message (``error`` of the status body).
        status: the final `JobStatus`.
    """

    def __init__(self, status: JobStatus) -> None:
        super().__init__(f"job {status.request_id} failed: {status.error}")
        self.request_id = status.request_id
        self.error = status.error or ""
        self.status = status


class JobTimeoutError(APIError, TimeoutError):
    """A job did not finish before the wait's deadline; it may still finish later.

    Also a builtin `TimeoutError`. When the last poll failed (a transient error), that
    error is the ``__cause__``.

    Example:
        >>> try:
        ...     client.wait(job, timeout=300)
        ... except JobTimeoutError as exc:
        ...     later.append(exc.request_id)  # poll it again later: it may still finish

    Attributes:
        request_id: the job's id.
        timeout: the deadline, in seconds from the start of the wait.
        last_status: the last status seen, or None when no poll succeeded.
    """

    def __init__(self, request_id: str, timeout: float, last_status: JobStatus | None) -> None:
        seen = (
            f"last status {last_status.status}, {last_status.progress:g}%"
            if last_status is not None
            else "no status received"
        )
        super().__init__(f"job {request_id} did not finish within {timeout:g}s ({seen})")
        self.request_id = request_id
        self.timeout = timeout
        self.last_status = last_status

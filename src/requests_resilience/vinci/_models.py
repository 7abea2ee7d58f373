"""The results of the Vinci endpoints, and their defensive parsers.

Each parser takes a decoded JSON object from a 2xx answer and returns a frozen
dataclass, or raises `UnexpectedResponseError` naming the field that is missing or of
the wrong type: never `KeyError`, `TypeError` or `JSONDecodeError`.

Fields the result cannot do without are required (a job's ``request_id``, a finished
job's ``video_url``, a new key's ``api_key``); descriptive ones (timestamps, counts the
caller did not ask for) are read leniently, so that a new or oddly formatted field
cannot lose, for instance, an API key that the server shows only once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard, cast

from requests_resilience.vinci._errors import UnexpectedResponseError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from requests import Response

__all__ = [
    "ASPECT_RATIOS",
    "JOB_STATES",
    "APIKey",
    "AspectRatio",
    "Balance",
    "Job",
    "JobState",
    "JobStatus",
    "KeyInfo",
    "RevokedKey",
    "Usage",
]

JobState = Literal["pending", "processing", "completed", "failed"]
AspectRatio = Literal["16:9", "9:16", "1:1"]

#: The job statuses the API documents, in the order a job goes through them.
JOB_STATES: Final[tuple[JobState, ...]] = ("pending", "processing", "completed", "failed")
#: The aspect ratios text-to-video accepts.
ASPECT_RATIOS: Final[tuple[AspectRatio, ...]] = ("16:9", "9:16", "1:1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A generation job just created (the answer of ``POST /generate/...``).

    Example:
        >>> job = client.text_to_video("Calm ocean at sunrise", duration_seconds=5)
        >>> job.request_id, job.estimated_cost_usd
        ('req_...', 0.25)

    Attributes:
        request_id: the job's id (``req_...``); log it, and poll with it.
        status: the status at creation, normally ``"pending"``.
        estimated_cost_usd: what the job is expected to cost.
        estimated_duration_seconds: the expected length of the video.
    """

    request_id: str
    status: JobState
    estimated_cost_usd: float
    estimated_duration_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """Where a job is (the answer of ``GET /status/{request_id}``).

    Example:
        >>> status = client.status("req_abc")
        >>> status.status, status.progress
        ('processing', 45.0)

    Attributes:
        request_id: the job's id.
        status: ``"pending"``, ``"processing"``, ``"completed"`` or ``"failed"``.
        progress: a percentage from 0 to 100 (clamped): 0 while pending or failed, the
            server's figure while processing, 100 once completed.
        video_url: the video, once completed.
        duration_seconds: the video's actual length, once completed.
        cost_usd: what the job cost, once completed.
        estimated_cost_usd: the estimate, while pending or processing.
        error: the server's message, once failed.
    """

    request_id: str
    status: JobState
    progress: float = 0.0
    video_url: str | None = None
    duration_seconds: float | None = None
    cost_usd: float | None = None
    estimated_cost_usd: float | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """Whether the job has ended (``completed`` or ``failed``)."""
        return self.status in ("completed", "failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """The account's balance (``GET /billing/balance``).

    Example:
        >>> client.balance()
        Balance(balance_usd=25.5, total_spent_usd=134.75)
    """

    balance_usd: float
    total_spent_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Usage over a period (``GET /billing/usage?days=N``).

    Example:
        >>> client.usage(days=7).total_cost_usd
        1.75
    """

    period_days: int
    total_requests: int
    total_seconds: float
    total_cost_usd: float
    current_balance_usd: float
    total_spent_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class APIKey:
    """A key just created (``POST /keys``): the only time the server shows the secret.

    The secret is kept out of ``repr()`` and ``str()``; read `api_key` and store it.

    Example:
        >>> key = client.create_key("ci", rate_limit=20)
        >>> key
        APIKey(key_id='vinci_...', name='ci', rate_limit=20, created_at=...)
        >>> store_secret(key.api_key)
    """

    key_id: str
    name: str
    api_key: str = field(repr=False)
    rate_limit: int | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """One key as ``GET /keys`` lists it (with a preview, never the secret).

    Example:
        >>> [k.name for k in client.list_keys() if k.is_active]
        ['default', 'ci']
    """

    key_id: str
    name: str
    is_active: bool
    key_preview: str | None = None
    rate_limit: int | None = None
    created_at: datetime | None = None
    last_used: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokedKey:
    """The answer of ``DELETE /keys/{key_id}``.

    Example:
        >>> client.revoke_key("vinci_abc").message
        'API key revoked'
    """

    key_id: str
    message: str


# -- parsing ---------------------------------------------------------------------------


class _Reader:
    """Reads typed fields from one JSON object, raising `UnexpectedResponseError`."""

    __slots__ = ("_body", "_request_id", "_response", "_what")

    def __init__(
        self,
        body: Mapping[str, Any],
        what: str,
        response: Response | None,
        request_id: str | None = None,
    ) -> None:
        self._body = body
        self._what = what
        self._response = response
        self._request_id = request_id

    def fail(self, problem: str) -> UnexpectedResponseError:
        msg = f"unexpected {self._what} response: {problem}"
        if self._request_id:
            msg += f" (request_id={self._request_id})"
        return UnexpectedResponseError(msg, response=self._response, request_id=self._request_id)

    def has(self, name: str) -> bool:
        return self._body.get(name) is not None

    def str_(self, name: str) -> str:
        value = self._body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(_problem(name, value, "a non-empty string"))
        return value

    def number(self, name: str) -> float:
        value = self._body.get(name)
        if not _is_number(value):
            raise self.fail(_problem(name, value, "a number"))
        return float(value)

    def optional_number(self, name: str) -> float | None:
        return self.number(name) if self.has(name) else None

    def integer(self, name: str) -> int:
        value = self._body.get(name)
        if _is_number(value) and float(value).is_integer():
            return int(value)
        raise self.fail(_problem(name, value, "an integer"))

    def lenient_int(self, name: str) -> int | None:
        value = self._body.get(name)
        if _is_number(value) and float(value).is_integer():
            return int(value)
        return None

    def lenient_str(self, name: str) -> str | None:
        value = self._body.get(name)
        return value if isinstance(value, str) else None

    def lenient_time(self, name: str) -> datetime | None:
        value = self._body.get(name)
        if not isinstance(value, str):
            return None
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None

    def state(self) -> JobState:
        value = self._body.get("status")
        if value not in JOB_STATES:
            raise self.fail(_problem("status", value, f"one of {', '.join(JOB_STATES)}"))
        return cast("JobState", value)


def _is_number(value: object) -> TypeGuard[float | int]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(name: str, value: object, expected: str) -> str:
    if value is None:
        return f"field {name!r} is missing (expected {expected})"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:59] + "…"
    return f"field {name!r} is {shown} (expected {expected})"


def _request_id_in(body: Mapping[str, Any]) -> str | None:
    value = body.get("request_id")
    return value if isinstance(value, str) and value.strip() else None


def parse_job(body: Mapping[str, Any], response: Response | None = None) -> Job:
    """Read a creation answer (text-to-video or image-to-video)."""
    r = _Reader(body, "job creation", response, _request_id_in(body))
    return Job(
        request_id=r.str_("request_id"),
        status=r.state(),
        estimated_cost_usd=r.number("estimated_cost_usd"),
        estimated_duration_seconds=r.number("estimated_duration_seconds"),
    )


def parse_job_status(
    body: Mapping[str, Any], request_id: str, response: Response | None = None
) -> JobStatus:
    """Read a status answer; `request_id` is the id that was asked for."""
    r = _Reader(body, "job status", response, request_id)
    rid = _request_id_in(body) or request_id
    state = r.state()
    if state == "completed":
        return JobStatus(
            request_id=rid,
            status=state,
            progress=100.0,
            video_url=r.str_("video_url"),
            duration_seconds=r.optional_number("duration_seconds"),
            cost_usd=r.optional_number("cost_usd"),
        )
    if state == "failed":
        error = r.lenient_str("error")
        return JobStatus(
            request_id=rid,
            status=state,
            error=error if error and error.strip() else "the server gave no reason",
        )
    progress = r.optional_number("progress") if state == "processing" else None
    return JobStatus(
        request_id=rid,
        status=state,
        progress=min(100.0, max(0.0, progress or 0.0)),
        estimated_cost_usd=r.optional_number("estimated_cost_usd"),
    )


def parse_balance(body: Mapping[str, Any], response: Response | None = None) -> Balance:
    """Read ``GET /billing/balance``."""
    r = _Reader(body, "balance", response)
    return Balance(
        balance_usd=r.number("balance_usd"), total_spent_usd=r.number("total_spent_usd")
    )


def parse_usage(body: Mapping[str, Any], response: Response | None = None) -> Usage:
    """Read ``GET /billing/usage``."""
    r = _Reader(body, "usage", response)
    return Usage(
        period_days=r.integer("period_days"),
        total_requests=r.integer("total_requests"),
        total_seconds=r.number("total_seconds"),
        total_cost_usd=r.number("total_cost_usd"),
        current_balance_usd=r.number("current_balance_usd"),
        total_spent_usd=r.number("total_spent_usd"),
    )


def parse_api_key(body: Mapping[str, Any], response: Response | None = None) -> APIKey:
    """Read ``POST /keys``: strict about the id and the secret, lenient about the rest."""
    r = _Reader(body, "key creation", response)
    key_id = r.str_("key_id")
    return APIKey(
        key_id=key_id,
        name=r.lenient_str("name") or "",
        api_key=r.str_("api_key"),
        rate_limit=r.lenient_int("rate_limit"),
        created_at=r.lenient_time("created_at"),
    )


def parse_key_list(body: Mapping[str, Any], response: Response | None = None) -> list[KeyInfo]:
    """Read ``GET /keys``."""
    keys = body.get("api_keys")
    if not isinstance(keys, list):
        raise _Reader(body, "key list", response).fail(
            _problem("api_keys", keys, "a list of keys")
        )
    result: list[KeyInfo] = []
    for index, item in enumerate(keys):
        if not isinstance(item, dict):
            raise _Reader(body, "key list", response).fail(
                _problem(f"api_keys[{index}]", item, "an object")
            )
        r = _Reader(item, f"key list (api_keys[{index}])", response)
        active = item.get("is_active")
        if not isinstance(active, bool):
            raise r.fail(_problem("is_active", active, "true or false"))
        result.append(
            KeyInfo(
                key_id=r.str_("key_id"),
                name=r.lenient_str("name") or "",
                is_active=active,
                key_preview=r.lenient_str("key_preview"),
                rate_limit=r.lenient_int("rate_limit"),
                created_at=r.lenient_time("created_at"),
                last_used=r.lenient_time("last_used"),
            )
        )
    return result


def parse_revoked(
    body: Mapping[str, Any], key_id: str, response: Response | None = None
) -> RevokedKey:
    """Read ``DELETE /keys/{key_id}``."""
    r = _Reader(body, "key revocation", response)
    return RevokedKey(
        key_id=r.lenient_str("key_id") or key_id, message=r.lenient_str("message") or ""
    )

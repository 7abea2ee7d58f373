"""What the Vinci clients send and how they read it, without I/O: written once for both.

`VinciClient` (requests) and `AsyncVinciClient` (httpx, asyncio) differ only in how
they send a request and wait; everything else lives here as plain functions:

::

    client.text_to_video(prompt, ...)
      ├─ text_to_video(...)      check the arguments, build an `Operation`   (here)
      ├─ the balance pre-check   `BalanceGuard` decides; the client fetches  (_balance)
      ├─ send op.method op.path  requests.Session / httpx.AsyncClient        (the client)
      └─ read_result(op, ...)    status check, JSON object, typed result     (here)

An `Operation` names the span, the route, the body and the parser of one endpoint
call, so each client's method is one line that hands it to its driver.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Generic, TypeAlias, TypeVar
from urllib.parse import quote

from urllib3 import encode_multipart_formdata

from requests_resilience._clock import Clock
from requests_resilience._errors import APIError, APIStatusError, ConfigurationError
from requests_resilience._parsing import json_body, request_id_of
from requests_resilience._status_errors import status_error
from requests_resilience.vinci._balance import to_money
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
from requests_resilience.vinci._preset import normalise_base_url
from requests_resilience.vinci._wait import is_transient

if TYPE_CHECKING:
    from requests import Response

    from requests_resilience._secrets import Redactor

__all__ = [
    "ClientOptions",
    "ImageInput",
    "Operation",
    "TimeoutOption",
    "balance",
    "check_options",
    "create_key",
    "id_of",
    "image_to_video",
    "list_keys",
    "read_result",
    "revoke_key",
    "status",
    "text_to_video",
    "unless_final",
    "usage",
]

#: An image for image-to-video: a path, the file's bytes, or a binary file object.
ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]"
TimeoutOption: TypeAlias = "float | tuple[float, float]"

T = TypeVar("T")

MIB: Final = 1024 * 1024
_JPEG: Final = b"\xff\xd8\xff"
_PNG: Final = b"\x89PNG\r\n\x1a\n"
_MIN_DURATION, _MAX_DURATION = 1, 10
_MIN_DAYS, _MAX_DAYS = 1, 90
_MAX_KEY_RATE = 100
_DAY = 86_400.0
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


# -- options -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """A client's checked options (both clients take the same ones)."""

    base_url: str
    timeout: TimeoutOption
    balance_ttl: float
    price_per_second: Decimal
    max_upload_bytes: int

    def estimate(self, duration_seconds: int) -> Decimal:
        """A job's estimated cost: ``duration_seconds * price_per_second``, to the cent."""
        return to_money(self.price_per_second * duration_seconds)


def check_options(
    *,
    base_url: str,
    request_timeout: object,
    balance_ttl: object,
    price_per_second: object,
    max_upload_bytes: object,
    clock: object,
) -> ClientOptions:
    """Check a client's options once, at construction.

    Raises:
        ConfigurationError: an option is out of range; the message names it.
    """
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
    return ClientOptions(
        base_url=normalise_base_url(base_url),
        timeout=_check_timeout(request_timeout),
        balance_ttl=ttl,
        price_per_second=Decimal(str(price)),
        max_upload_bytes=max_upload_bytes,
    )


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


# -- operations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation(Generic[T]):
    """One endpoint call, ready to send: what a client's driver needs, and no I/O.

    Attributes:
        name: the operation's span name, e.g. ``"vinci.status"``.
        method: the HTTP method.
        path: the path under the base URL, already quoted.
        route: the path template, e.g. ``"/status/{request_id}"``.
        parse: reads the JSON object of a 2xx answer into the result.
        attributes: the operation span's attributes (never secrets, never the prompt).
        json: a JSON body.
        params: the query.
        content: a raw body (multipart), with its ``Content-Type`` in `headers`.
        headers: extra request headers.
        cost_seconds: the video seconds of a paid job (the balance pre-check applies).
        about: the job an HTTP error of this call is about (set as its request_id).
    """

    name: str
    method: str
    path: str
    route: str
    parse: Callable[[dict[str, Any], Response], T]
    attributes: Mapping[str, str | int] = field(default_factory=dict)
    json: Mapping[str, object] | None = None
    params: Mapping[str, str | int] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] | None = None
    cost_seconds: int | None = None
    about: str | None = None

    @contextmanager
    def errors_noted(self) -> Iterator[None]:
        """Give an HTTP error raised inside the block the job id it is about."""
        try:
            yield
        except APIStatusError as exc:
            if self.about is not None and exc.request_id is None:
                exc.request_id = self.about  # the job it was about, for logs and reports
            raise


def read_result(op: Operation[T], response: Response, redactor: Redactor, now: float) -> T:
    """The typed result of a read response (a `requests.Response` or a view of one).

    Raises:
        APIStatusError: a 4xx/5xx (a pipeline without `StatusErrors`).
        UnexpectedResponseError: not a 2xx JSON object, or a field is missing.
    """
    if response.status_code >= 400:  # a pipeline without StatusErrors
        raise status_error(response, redactor, now)
    body = json_body(response, max_bytes=None)  # a success body: never capped
    what = op.name.removeprefix("vinci.")
    if not 200 <= response.status_code < 300:
        msg = f"unexpected {what} response: status {response.status_code}"
        raise UnexpectedResponseError(msg, response=response)
    if not isinstance(body, dict):
        kind = "not JSON" if body is None else f"JSON {type(body).__name__}, not an object"
        msg = f"unexpected {what} response: the body is {kind}"
        raise UnexpectedResponseError(msg, response=response, request_id=request_id_of(response))
    return op.parse(body, response)


def unless_final(exc: APIError) -> None:
    """Re-raise a final error of the balance pre-check; None (skip it) for a transient one.

    When the balance cannot be read right now (5xx, 429, connection, open breaker), the
    job is sent anyway: the server, which enforces the balance, decides.
    """
    if not is_transient(exc):
        raise exc


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


def id_of(job: Job | JobStatus | str, option: str = "request_id") -> str:
    """The request id of a job, a status or an id string (checked)."""
    if isinstance(job, Job | JobStatus):
        return job.request_id
    return _check_text(option, job).strip()


def _create(path: str, duration: int, **body: Any) -> Operation[Job]:
    return Operation(
        name="vinci." + path.rsplit("/", 1)[-1].replace("-", "_"),
        method="POST",
        path=path,
        route=path,
        parse=parse_job,
        attributes={"vinci.duration_seconds": duration},
        cost_seconds=duration,
        **body,
    )


def text_to_video(
    prompt: str, duration_seconds: int, aspect_ratio: AspectRatio, seed: int | None
) -> Operation[Job]:
    """``POST /generate/text-to-video`` (see `VinciClient.text_to_video`)."""
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
    return _create("/generate/text-to-video", duration, json=payload)


def image_to_video(
    image: ImageInput, prompt: str, duration_seconds: int, *, max_upload_bytes: int
) -> Operation[Job]:
    """``POST /generate/image-to-video``: reads the image (file I/O) and builds the body.

    The multipart body is built once, as bytes, so a retry re-sends the same bytes.
    """
    _check_text("prompt", prompt)
    duration = _check_int("duration_seconds", duration_seconds, _MIN_DURATION, _MAX_DURATION)
    data, filename = _read_image(image, max_upload_bytes)
    if data.startswith(_JPEG):
        content_type, suffix = "image/jpeg", ".jpg"
    elif data.startswith(_PNG):
        content_type, suffix = "image/png", ".png"
    else:
        msg = "image must be a JPEG or PNG file (its first bytes are neither)"
        raise VinciInputError(msg)
    name = _SAFE_FILENAME.sub("_", filename or "") or f"image{suffix}"
    body, multipart_type = encode_multipart_formdata(
        {"image": (name, data, content_type), "prompt": prompt, "duration_seconds": str(duration)}
    )
    return _create(
        "/generate/image-to-video",
        duration,
        content=body,
        headers={"Content-Type": multipart_type},
    )


def _read_image(image: ImageInput, limit: int) -> tuple[bytes, str | None]:
    too_big = f"image is larger than max_upload_bytes ({limit} bytes)"
    if isinstance(image, bytes | bytearray | memoryview):
        data, filename = bytes(image), None
    elif isinstance(image, str | os.PathLike):
        data, filename = _read_path(Path(image), limit, too_big), Path(image).name
    elif callable(getattr(image, "read", None)):
        data, filename = _read_file_object(image, limit)
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


def _read_path(path: Path, limit: int, too_big: str) -> bytes:
    try:
        if path.stat().st_size > limit:
            raise VinciInputError(too_big)
        return path.read_bytes()
    except OSError as exc:
        msg = f"cannot read the image {path.name!r}: {exc.strerror or exc}"
        raise VinciInputError(msg) from exc


def _read_file_object(image: IO[bytes], limit: int) -> tuple[bytes, str | None]:
    try:
        data = image.read(limit + 1)
    except OSError as exc:
        msg = f"cannot read the image file object: {exc}"
        raise VinciInputError(msg) from exc
    if not isinstance(data, bytes):
        msg = "image file object must be opened in binary mode ('rb')"
        raise VinciInputError(msg)
    raw_name = getattr(image, "name", None)
    return data, Path(raw_name).name if isinstance(raw_name, str) else None


def status(job: Job | JobStatus | str) -> Operation[JobStatus]:
    """``GET /status/{request_id}``."""
    request_id = id_of(job)
    return Operation(
        name="vinci.status",
        method="GET",
        path=f"/status/{quote(request_id, safe='')}",
        route="/status/{request_id}",
        parse=lambda body, response: parse_job_status(body, request_id, response),
        attributes={"vinci.request_id": request_id},
        about=request_id,
    )


def balance() -> Operation[Balance]:
    """``GET /billing/balance``."""
    path = "/billing/balance"
    return Operation(
        name="vinci.balance", method="GET", path=path, route=path, parse=parse_balance
    )


def usage(days: int) -> Operation[Usage]:
    """``GET /billing/usage?days=N``, 1 to 90 days."""
    checked = _check_int("days", days, _MIN_DAYS, _MAX_DAYS)
    path = "/billing/usage"
    return Operation(
        name="vinci.usage",
        method="GET",
        path=path,
        route=path,
        parse=parse_usage,
        params={"days": checked},
    )


def create_key(name: str, rate_limit: int) -> Operation[APIKey]:
    """``POST /keys``; `rate_limit` is requests per minute, 1 to 100."""
    _check_text("name", name)
    limit = _check_int("rate_limit", rate_limit, 1, _MAX_KEY_RATE)
    return Operation(
        name="vinci.create_key",
        method="POST",
        path="/keys",
        route="/keys",
        parse=parse_api_key,
        json={"name": name, "rate_limit": limit},
    )


def list_keys() -> Operation[list[KeyInfo]]:
    """``GET /keys``."""
    return Operation(
        name="vinci.list_keys", method="GET", path="/keys", route="/keys", parse=parse_key_list
    )


def revoke_key(key_id: str) -> Operation[RevokedKey]:
    """``DELETE /keys/{key_id}``."""
    checked = id_of(key_id, "key_id")
    return Operation(
        name="vinci.revoke_key",
        method="DELETE",
        path=f"/keys/{quote(checked, safe='')}",
        route="/keys/{key_id}",
        parse=lambda body, response: parse_revoked(body, checked, response),
        attributes={"vinci.key_id": checked},
    )

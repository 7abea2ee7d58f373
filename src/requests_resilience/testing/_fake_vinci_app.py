"""The fake Vinci API as a WSGI app: routing, auth, rate limits, endpoints, faults.

Order of handling for each request:

1. read the body (unless ``Content-Length`` exceeds ``max_upload_bytes``), count and
   record the request, take its scripted fault, check the outage window;
2. wait the server latency, then a ``delay`` fault;
3. a ``status``/``body``/``reset`` fault without ``after`` answers now; else an outage
   answers now;
4. route (404/405), size check (413), auth (401), rate limit (429), endpoint;
5. an ``after`` fault or a response-shaping fault replaces or misshapes the answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeGuard

from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge
from werkzeug.routing import Map, Rule, Submount
from werkzeug.wrappers import Request, Response

from requests_resilience.testing._faults import (
    AbortConnection,
    Fault,
    canned_response_app,
    detail_body,
    reason_phrase,
    shaped_response_app,
)
from requests_resilience.testing._state import (
    MAX_KEY_RATE_LIMIT,
    CreatedJob,
    RateDecision,
    VinciState,
)
from requests_resilience.testing._wsgi_handler import CONNECTION_ID_KEY, RAW_HEADERS_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

BASE_PATH = "/api/v1"
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
MIN_DURATION, MAX_DURATION, DEFAULT_DURATION = 1, 10, 5
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 90, 30
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Handler = Callable[..., Response]


class _BadRequestError(Exception):
    """A payload the API rejects with 400 and this detail."""


def _error(status: int, detail: str) -> Response:
    return Response(detail_body(detail), status=status, content_type="application/json")


def _json(body: object) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration(value: object) -> int:
    if not _is_int(value) or not MIN_DURATION <= value <= MAX_DURATION:
        raise _BadRequestError(
            f"duration_seconds must be an integer from {MIN_DURATION} to {MAX_DURATION}"
        )
    return value


def _prompt(value: object) -> str:
    if value is None:
        raise _BadRequestError("prompt is required")
    if not isinstance(value, str) or not value.strip():
        raise _BadRequestError("prompt must be a non-empty string")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise _BadRequestError("Request body must be valid JSON") from exc
    if not isinstance(payload, dict):
        raise _BadRequestError("Request body must be a JSON object")
    return payload


def _form_int(text: str | None, default: int) -> object:
    if text is None or text == "":
        return default
    try:
        return int(text.strip())
    except ValueError:
        return text


def _relative(path: str) -> str:
    if path == BASE_PATH or path.startswith(BASE_PATH + "/"):
        return path[len(BASE_PATH) :] or "/"
    return path


def _raw_headers(environ: WSGIEnvironment, request: Request) -> dict[str, str]:
    pairs: Iterable[tuple[str, str]] = environ.get(RAW_HEADERS_KEY) or request.headers.items()
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class FakeVinciApp:
    """The WSGI app of the fake Vinci server."""

    def __init__(self, state: VinciState, wait: Callable[[float], bool]) -> None:
        """Serve ``state``; ``wait(seconds)`` sleeps and returns True if stopping."""
        self._state = state
        self._options = state.options
        self._wait = wait
        self._handlers: dict[str, Handler] = {
            "text_to_video": self._text_to_video,
            "image_to_video": self._image_to_video,
            "status": self._status,
            "balance": self._balance,
            "usage": self._usage,
            "create_key": self._create_key,
            "list_keys": self._list_keys,
            "revoke_key": self._revoke_key,
        }
        self._url_map = Map(
            [
                Submount(
                    BASE_PATH,
                    [
                        Rule(
                            "/generate/text-to-video", methods=["POST"], endpoint="text_to_video"
                        ),
                        Rule(
                            "/generate/image-to-video", methods=["POST"], endpoint="image_to_video"
                        ),
                        Rule("/status/<request_id>", methods=["GET"], endpoint="status"),
                        Rule("/billing/balance", methods=["GET"], endpoint="balance"),
                        Rule("/billing/usage", methods=["GET"], endpoint="usage"),
                        Rule("/keys", methods=["POST"], endpoint="create_key"),
                        Rule("/keys", methods=["GET"], endpoint="list_keys"),
                        Rule("/keys/<key_id>", methods=["DELETE"], endpoint="revoke_key"),
                    ],
                )
            ],
            strict_slashes=False,
            merge_slashes=False,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request (see the module docstring for the order of handling)."""
        request = Request(environ)
        try:
            app = self._handle(request)
        finally:
            request.close()
        return app(environ, start_response)

    def _handle(self, request: Request) -> WSGIApplication:
        body, too_large = self._read_body(request)
        arrival = self._state.arrive(
            method=request.method,
            path=_relative(request.path),
            query=dict(request.args.items()),
            headers=_raw_headers(request.environ, request),
            body=body,
            connection_id=int(request.environ.get(CONNECTION_ID_KEY, 0)),
        )
        request_id_header = (
            [("X-Request-ID", uuid.uuid4().hex)] if self._options.send_request_id_header else []
        )
        if arrival.latency > 0 and self._wait(arrival.latency):
            raise AbortConnection
        fault = arrival.fault
        if fault is not None and fault.kind == "delay":
            if self._wait(fault.seconds):
                raise AbortConnection
            fault = None
        if fault is not None and not fault.after:
            if fault.kind == "reset":
                raise AbortConnection
            if fault.kind in ("status", "body"):
                return self._fault_answer(fault, request_id_header)
        if arrival.outage is not None:
            outage = arrival.outage
            headers = [("Content-Type", "application/json"), *request_id_header]
            if outage.retry_after is not None:
                headers.append(("Retry-After", outage.retry_after))
            return canned_response_app(
                outage.status, headers, detail_body(reason_phrase(outage.status))
            )
        response = self._dispatch(request, body, too_large)
        response.headers.extend(request_id_header)
        if fault is None:
            return response
        if fault.kind == "reset":
            raise AbortConnection
        if fault.kind in ("status", "body"):
            return self._fault_answer(fault, request_id_header)
        payload = response.get_data()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return shaped_response_app(fault, response.status, headers, payload, self._wait)

    @staticmethod
    def _fault_answer(fault: Fault, extra: list[tuple[str, str]]) -> WSGIApplication:
        assert fault.status_code is not None
        return canned_response_app(
            fault.status_code, [*fault.headers, *extra], fault.payload or b""
        )

    def _read_body(self, request: Request) -> tuple[bytes, bool]:
        """Read the body, unless it is (or turns out) larger than ``max_upload_bytes``.

        Returns:
            The body (empty if too large) and whether it was too large.
        """
        limit = self._options.max_upload_bytes
        length = request.content_length
        if length is not None and length > limit:
            return b"", True  # refused before reading
        # A chunked body has no length: werkzeug stops reading at max_content_length
        # without an error, so read one byte more than allowed to see an overflow.
        request.max_content_length = limit + 1
        try:
            body = request.get_data(cache=True)
        except RequestEntityTooLarge:
            return b"", True
        return (b"", True) if len(body) > limit else (body, False)

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(self, request: Request, body: bytes, too_large: bool) -> Response:
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as exc:
            response = _error(405, "Method Not Allowed")
            response.headers["Allow"] = ", ".join(exc.valid_methods or ())
            return response
        except HTTPException as exc:
            return _error(exc.code or 404, exc.name)
        if too_large:
            limit = self._options.max_upload_bytes
            return _error(413, f"Payload too large: the limit is {limit} bytes")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = self._state.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            return _error(401, "Invalid API key")
        decision = self._rate(key)
        if decision is not None and decision.exceeded:
            response = _error(
                429, f"Rate limit exceeded. Try again in {decision.retry_in} seconds."
            )
            config = self._options.rate_limit
            if config is not None and config.send_retry_after:
                response.headers["Retry-After"] = str(decision.retry_in)
        else:
            try:
                response = self._handlers[endpoint](request, body, **args)
            except _BadRequestError as exc:
                response = _error(400, str(exc))
            except HTTPException as exc:
                response = _error(exc.code or 400, exc.description or exc.name)
        if decision is not None:
            response.headers["X-RateLimit-Limit"] = str(decision.limit)
            response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
            response.headers["X-RateLimit-Reset"] = str(decision.reset_unix)
        return response

    def _rate(self, key: tuple[str, int]) -> RateDecision | None:
        config = self._options.rate_limit
        if config is None:
            return None
        key_id, limit = key
        return self._state.consume_rate(key_id, limit, config.period_seconds)

    # -- endpoints ----------------------------------------------------------------------

    def _create(self, duration: int) -> Response:
        outcome = self._state.create_job(duration)
        if not isinstance(outcome, CreatedJob):
            return _error(
                402,
                f"Insufficient balance. Current balance: ${outcome.balance:.2f}, "
                f"required: ${outcome.required:.2f}",
            )
        return _json(
            {
                "request_id": outcome.request_id,
                "status": "pending",
                "estimated_cost_usd": float(outcome.cost),
                "estimated_duration_seconds": outcome.duration_seconds,
            }
        )

    def _text_to_video(self, request: Request, body: bytes) -> Response:
        payload = _json_object(body)
        _prompt(payload.get("prompt"))
        duration = _duration(payload.get("duration_seconds", DEFAULT_DURATION))
        aspect_ratio = payload.get("aspect_ratio", ASPECT_RATIOS[0])
        if aspect_ratio not in ASPECT_RATIOS:
            raise _BadRequestError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
        if not _is_int(payload.get("seed", -1)):
            raise _BadRequestError("seed must be an integer")
        return self._create(duration)

    def _image_to_video(self, request: Request, body: bytes) -> Response:
        if request.mimetype != "multipart/form-data":
            raise _BadRequestError("Request body must be multipart/form-data")
        image = request.files.get("image")
        if image is None:
            raise _BadRequestError("image is required")
        head = image.stream.read(len(_PNG_MAGIC))
        if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
            raise _BadRequestError("image must be a JPEG or PNG file")
        _prompt(request.form.get("prompt"))
        duration = _duration(_form_int(request.form.get("duration_seconds"), DEFAULT_DURATION))
        return self._create(duration)

    def _status(self, request: Request, body: bytes, request_id: str) -> Response:
        status = self._state.poll(request_id)
        return _error(404, "Job not found") if status is None else _json(status)

    def _balance(self, request: Request, body: bytes) -> Response:
        return _json(
            {
                "balance_usd": float(self._state.balance),
                "total_spent_usd": float(self._state.spent),
            }
        )

    def _usage(self, request: Request, body: bytes) -> Response:
        days = _form_int(request.args.get("days"), DEFAULT_DAYS)
        if not _is_int(days) or not MIN_DAYS <= days <= MAX_DAYS:
            raise _BadRequestError(f"days must be an integer from {MIN_DAYS} to {MAX_DAYS}")
        return _json(self._state.usage(days))

    def _create_key(self, request: Request, body: bytes) -> Response:
        payload = _json_object(body)
        name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _BadRequestError("name is required and must be a non-empty string")
        rate_limit = payload.get("rate_limit", 10)
        if not _is_int(rate_limit) or not 1 <= rate_limit <= MAX_KEY_RATE_LIMIT:
            raise _BadRequestError(f"rate_limit must be an integer from 1 to {MAX_KEY_RATE_LIMIT}")
        return _json(self._state.create_key(name, rate_limit))

    def _list_keys(self, request: Request, body: bytes) -> Response:
        keys = self._state.list_keys()
        return _json({"api_keys": keys, "count": len(keys)})

    def _revoke_key(self, request: Request, body: bytes, key_id: str) -> Response:
        if not self._state.revoke_key(key_id):
            return _error(404, "API key not found")
        return _json({"message": "API key revoked", "key_id": key_id})

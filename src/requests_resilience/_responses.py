"""`make_response`: a response made by a policy, not received from a server.

A `Fallback` answers with one instead of a failure, a `ChaosOutcome` injects one in
place of a wire attempt. Either way it is a plain `requests.Response` whose body is
already in memory, bound to the call's request, so every policy around it (and the
httpx transports, which hand its bytes to httpx) reads it as it reads a real one.
"""

from __future__ import annotations

import datetime
import http
import io
import json as _json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests
from requests.structures import CaseInsensitiveDict

from requests_resilience._errors import ConfigurationError

if TYPE_CHECKING:
    from requests_resilience._pipeline import Call

__all__ = ["make_response"]


def make_response(
    call: Call,
    status_code: int = 200,
    *,
    json: Any = None,
    content: bytes | str = b"",
    headers: Mapping[str, str] | None = None,
    reason: str | None = None,
) -> requests.Response:
    """Build a `requests.Response` for `call`, with its body in memory.

    Args:
        call: the call it answers (its request becomes ``response.request`` and its
            URL ``response.url``).
        status_code: the status, 100 to 599.
        json: a value to send as the JSON body (with ``Content-Type:
            application/json``); None (the default) for none: use `content` (a JSON
            ``null`` is ``content=b"null"``), as with httpx's ``json=``.
        content: the body as bytes (a `str` is encoded as UTF-8).
        headers: the response headers.
        reason: the reason phrase; default the standard one for `status_code`.

    Returns:
        The response; ``.content``, ``.json()``, ``iter_content()`` all work.

    Raises:
        ConfigurationError: the status is not an int from 100 to 599, or both `json`
            and `content` were given.

    Example:
        >>> def cached_balance(call, outcome):
        ...     return make_response(call, json={"balance_usd": 25.5})
    """
    if isinstance(status_code, bool) or not isinstance(status_code, int):
        msg = f"make_response status_code must be an int from 100 to 599, got {status_code!r}"
        raise ConfigurationError(msg)
    if not 100 <= status_code <= 599:
        msg = f"make_response status_code must be an int from 100 to 599, got {status_code!r}"
        raise ConfigurationError(msg)
    given = CaseInsensitiveDict(headers or {})
    if json is not None:
        if content:
            msg = "make_response takes json= or content=, not both"
            raise ConfigurationError(msg)
        body = _json.dumps(json, separators=(",", ":")).encode()
        given.setdefault("Content-Type", "application/json")
    else:
        body = content.encode() if isinstance(content, str) else bytes(content)
    response = requests.Response()
    response.status_code = status_code
    response.reason = reason if reason is not None else _phrase(status_code)
    response.headers = given
    response.encoding = "utf-8" if json is not None else None
    response.raw = io.BytesIO(body)
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined] # requests' own flag
    response.request = call.request
    response.url = call.request.url or ""
    response.elapsed = datetime.timedelta(0)
    return response


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""

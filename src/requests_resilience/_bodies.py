"""Reading response bodies without trusting their size."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from requests import Response

__all__ = ["MAX_ERROR_BODY", "body_is_read", "read_bounded"]

#: Most bytes of an error body kept when the caller streams; a larger body is cut,
#: its connection closed rather than drained.
MAX_ERROR_BODY = 1 << 20
_CHUNK = 64 * 1024


def body_is_read(response: Response) -> bool:
    """Whether the response's body has been read into `response.content`."""
    content: object = getattr(response, "_content", False)
    return content is not False


def read_bounded(response: Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """Read at most `limit` bytes of a response's body and make them its `content`.

    A body that was already read is returned as is. A streamed body is read in chunks;
    if it ends within `limit`, it becomes `response.content` and the connection goes
    back to the pool; if not, the first `limit` bytes become `response.content` and
    the connection is closed instead of draining an unbounded body. A body that breaks
    off while being read keeps what arrived. Never raises for a broken body.
    """
    if body_is_read(response):
        return response.content or b""
    parts: list[bytes] = []
    size = 0
    complete = True
    try:
        for chunk in response.iter_content(_CHUNK):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                complete = False
                break
    except (requests.RequestException, OSError):
        complete = False
    data = b"".join(parts)[:limit]
    response._content = data
    if complete:
        release = getattr(response.raw, "release_conn", None)
        if release is not None:
            release()  # drained: the connection goes back to the pool
    else:
        response.close()
    return data

"""Header maps on the per-request path: copies that cost a dict copy.

`requests.structures.CaseInsensitiveDict.copy()` rebuilds the map through its
constructor: one ``__setitem__`` (and one ``lower()``) per header. The map's own store,
``{lowered name: (name as given, value)}``, already is what a copy needs, so copying
the store gives an equal, independent map in a fraction of the time. This relies on
the store's layout, which has not changed since requests 1.0 (2012); any other
mapping is copied with its own ``copy()``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, TypeVar

from requests import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict

__all__ = [
    "copy_headers",
    "header",
    "put_header",
    "request_snapshot",
    "response_headers",
    "restore_headers",
    "snapshot_headers",
]

_H = TypeVar("_H")


def copy_headers(headers: _H) -> _H:
    """An independent copy of a request's or response's header map."""
    given: Any = headers
    if type(given) is CaseInsensitiveDict:
        copied: Any = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
        copied._store = given._store.copy()  # type: ignore[attr-defined]
        return copied  # type: ignore[no-any-return]
    return given.copy()  # type: ignore[no-any-return]


def snapshot_headers(headers: _H) -> tuple[tuple[str, str], ...] | _H:
    """What `restore_headers` needs to rebuild `headers` as they are now, taken cheaply.

    A `CaseInsensitiveDict`'s snapshot is its ``(name as given, value)`` pairs (a
    tuple of its store's values); any other map's is its own ``copy()``. For a policy
    that keeps a request's headers in case it needs them again (a retry), and rarely
    does: the snapshot costs less than a copy, the restore more.
    """
    given: Any = headers
    if type(given) is CaseInsensitiveDict:
        return tuple(given._store.values())  # type: ignore[attr-defined]
    return given.copy()  # type: ignore[no-any-return]


def request_snapshot(request: PreparedRequest) -> tuple[tuple[str, str], ...] | Any:
    """`snapshot_headers` of a request's headers, asked of the request.

    A request with a ``headers_snapshot()`` method (the httpx transport's view, whose
    header map is made only when a policy asks for it) makes its own, without making
    its map; any other request's map is snapshot as `snapshot_headers` does.
    """
    if type(request) is not PreparedRequest:
        snapshot = getattr(request, "headers_snapshot", None)
        if snapshot is not None:
            return snapshot()
    headers: Any = request.headers
    if type(headers) is CaseInsensitiveDict:  # `snapshot_headers`' common case, inline
        return tuple(headers._store.values())  # type: ignore[attr-defined]
    return snapshot_headers(headers)


def restore_headers(snapshot: tuple[tuple[str, str], ...] | _H) -> _H:
    """A new header map equal to the one `snapshot_headers` was given."""
    if isinstance(snapshot, tuple):
        return CaseInsensitiveDict(snapshot)  # type: ignore[return-value]
    return copy_headers(snapshot)


def header(headers: Mapping[str, str], lowered: str) -> str | None:
    """``headers.get(name)`` for a name given in lower case, looked up in one dict step.

    `CaseInsensitiveDict.get` goes through `Mapping.get`, ``__getitem__`` and a
    ``lower()`` of the name; its store is keyed by the lowered name already. A map
    with a ``lowered_lookup(name)`` method (the httpx transport's headers, decoded
    only when used as a map) answers through it.
    """
    given: Any = headers
    if type(given) is CaseInsensitiveDict:
        item = given._store.get(lowered)  # type: ignore[attr-defined]
        return None if item is None else item[1]
    lookup = getattr(given, "lowered_lookup", None)
    if lookup is not None:
        return lookup(lowered)  # type: ignore[no-any-return]
    return headers.get(lowered)


def put_header(headers: MutableMapping[str, str], item: tuple[str, tuple[str, str]]) -> None:
    """``headers[name] = value``, given as ``(lowered name, (name, value))``.

    For a `CaseInsensitiveDict`, the item goes into its store as it is (the store keeps
    ``(name as given, value)`` by lowered name), without lowering the name again or
    making the pair: a policy that sets the same header on every request (auth) makes
    its item once. A map with a ``lowered_put(lowered, pair)`` method (the httpx
    transport's) takes the item as it is too.
    """
    given: Any = headers
    if type(given) is CaseInsensitiveDict:
        lowered, pair = item
        given._store[lowered] = pair  # type: ignore[attr-defined]
        return
    put = getattr(given, "lowered_put", None)  # the httpx view's map
    if put is not None:
        put(*item)
        return
    name, value = item[1]
    headers[name] = value


def response_headers(response: Response, first: str, second: str) -> tuple[str | None, str | None]:
    """`header` of a response's headers for two names given in lower case, at once.

    What a rate limit reads of every answer (``x-ratelimit-limit`` and
    ``x-ratelimit-remaining``). A response with a ``lowered_headers(first, second)``
    method (the httpx transport's view, whose header map is made only when a policy
    asks for it) answers in one pass over httpx's list, without making the map; a
    `requests.Response` is read as `header` reads a map, written out here.
    """
    if type(response) is not Response:
        lookup = getattr(response, "lowered_headers", None)
        if lookup is not None:
            return lookup(first, second)  # type: ignore[no-any-return]
    headers: Any = response.headers
    if type(headers) is CaseInsensitiveDict:
        store = headers._store  # type: ignore[attr-defined]
        one, two = store.get(first), store.get(second)
        return (None if one is None else one[1], None if two is None else two[1])
    return header(headers, first), header(headers, second)

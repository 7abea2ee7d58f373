"""`ResilientTransport`: the same pipeline under `httpx.Client`.

httpx sends every request through a transport (``httpx.Client(transport=...)`` or
``mounts={...}``); this one runs the pipeline around the transport it wraps (by default
``httpx.HTTPTransport()``, so HTTP/2, proxies, limits and TLS stay httpx's)::

    httpx.Client.send
      └─ ResilientTransport.handle_request   builds the Call from the httpx.Request
          ├─ StatusErrors, Retry, ...        the very same policy objects
          └─ the wrapped transport           one wire attempt per call of next()

The policies see each attempt through the neutral view they already know: a
`requests.PreparedRequest` carrying the attempt's method, URL, headers and body, and a
`requests.Response` over the httpx response (status, headers, reason, a body read only
when a policy asks, boundedly). The view is built once per attempt over httpx's own
objects and decodes nothing until a policy reads it: an attempt no policy changed goes
out as the very request the client made, and the httpx response itself is what
`Client.send` returns. Failures of the wire become this library's errors, as on the
requests path (`APIConnectionError` and its family), with the httpx exception as their
``__cause__``.
"""

from __future__ import annotations

import datetime
import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import requests
import requests.cookies
from requests.structures import CaseInsensitiveDict

from requests_resilience._errors import ConfigurationError, translate_transport_error
from requests_resilience._headers import copy_headers, header
from requests_resilience._pipeline import HTTPX_EXTENSIONS_ATTR, Call, Pipeline, first_call

if TYPE_CHECKING:
    from requests_resilience._pipeline import TimeoutValue

__all__ = ["AsyncResilientTransport", "ResilientTransport"]


class _RequestView(requests.PreparedRequest):
    """One attempt of an `httpx.Request`, as the policies see it.

    Built without `PreparedRequest.__init__` (the attributes are set right after); its
    headers are a `_Headers` over the source's, decoded only if a policy reads them.
    `source` is the httpx request it was made from: an attempt that no policy changed
    is sent as the source itself, and one whose URL no policy changed with the source's
    own (parsed) URL.

    `copy()` (what `Retry` does for each attempt) keeps the httpx extensions, so the
    wire attempt is built with the caller's timeouts and options.
    """

    source: httpx.Request
    # What `PreparedRequest.__init__` would set and a view keeps, as class defaults.
    _cookies = None
    _body_position = None
    source_url: str
    source_body: bytes | None
    source_timeout: TimeoutValue  # the attempt timeout the source's extensions give
    extensions: Mapping[str, Any]

    @property
    def headers(self) -> CaseInsensitiveDict[str]:
        """The attempt's headers: the source's, decoded only when a policy reads them.

        A pipeline whose policies never look at the request's headers (the empty one,
        a breaker, a rate limit) sends the source's own; one that only sets some (an
        ``Authorization``, a ``traceparent``) sends the source's with those set, and
        decodes nothing (see `_Headers`).
        """
        attributes = self.__dict__
        headers: CaseInsensitiveDict[str] | None = attributes.get("_headers")
        if headers is None:
            headers = attributes["_headers"] = _Headers(self.source.headers)
        return headers

    @headers.setter
    def headers(self, value: CaseInsensitiveDict[str]) -> None:
        self.__dict__["_headers"] = value

    @property
    def hooks(self) -> dict[str, list[Any]]:
        """The hook map of a requests request, made when first asked for.

        (httpx runs no requests hooks: the map is only there for a policy that looks.)
        """
        attributes = self.__dict__
        hooks: dict[str, list[Any]] | None = attributes.get("_hooks")
        if hooks is None:
            hooks = attributes["_hooks"] = {"response": []}
        return hooks

    @hooks.setter
    def hooks(self, value: dict[str, list[Any]]) -> None:
        self.__dict__["_hooks"] = value

    def wire_headers(self) -> httpx.Headers | None:
        """The attempt's headers for httpx, or None if they must be encoded from the view.

        The source's own when no policy changed them (or never asked for them), else the
        source's with the changes applied. None when a policy replaced the header map
        with one of its own, or set a header outside ASCII (httpx would not encode it
        as Latin-1).
        """
        headers: Any = self.__dict__.get("_headers")
        source = self.source.headers
        if headers is None:
            return source  # never asked for, so never changed
        if type(headers) is not _Headers or headers.source is not source:
            return None
        return headers.on_the_wire()

    def headers_snapshot(self) -> CaseInsensitiveDict[str]:
        """What `_headers.request_snapshot` asks: a copy of the headers as they are now.

        While no policy has asked for the map, that is a new map over the source's
        headers: the view's own is not made for it.
        """
        headers = self.__dict__.get("_headers")
        if headers is None:
            return _Headers(self.source.headers)
        return copy_headers(headers)

    def copy(self) -> _RequestView:
        view = _new_request_view(self.source, self.extensions)
        view.source_url, view.source_body = self.source_url, self.source_body
        view.source_timeout = self.source_timeout
        view.method = self.method
        view.url = self.url
        headers = self.__dict__.get("_headers")
        if headers is not None:  # else the copy takes the source's when asked
            view.headers = copy_headers(headers)
        view.body = self.body
        view.hooks = self.hooks
        return view


class _Headers(CaseInsensitiveDict[str]):
    """An httpx request's or response's headers as a map, decoded only when read.

    `header` (how the policies read one header: a rate limit reads two of every
    answer) finds a value in httpx's own list without decoding the others.

    Until a policy reads them as a map, what it sets (``headers[name] = value``: what
    auth and tracing do) is kept aside in `changes`, and the wire request is the
    source's headers with those set (`on_the_wire`): nothing is decoded, and the
    headers no policy touched keep their bytes and their repeats. The first read as a
    map decodes the source's (as Latin-1, as http.client does on the requests path:
    encoding them again gives back the very bytes) into `pristine` and applies the
    changes to a copy of it, the map's store; from then on it is a plain
    `CaseInsensitiveDict`, and `on_the_wire` applies the difference from `pristine`.
    Copies (what `Retry` and `Hedging` make for each attempt) share the source.
    """

    def __init__(
        self,
        source: httpx.Headers,
        changes: dict[str, tuple[str, str]] | None = None,
        pristine: dict[str, tuple[str, str]] | None = None,
    ) -> None:  # no store yet: see __getattr__
        self.source = source
        self.changes: dict[str, tuple[str, str]] = {} if changes is None else changes
        self.pristine = pristine

    def __getattr__(self, name: str) -> Any:
        if name != "_store":
            raise AttributeError(name)
        pristine = self.pristine
        if pristine is None:
            pristine = self.pristine = _latin1_store(self.source)
        store = self.__dict__["_store"] = {**pristine, **self.changes}
        self.changes = {}
        return store

    def __setitem__(self, key: str, value: str) -> None:
        self.lowered_put(key.lower(), (key, value))

    def lowered_put(self, lowered: str, pair: tuple[str, str]) -> None:
        """``self[name] = value`` given as `lowered` and ``(name, value)``: `put_header`.

        Into the store once the map is made, else aside into `changes`.
        """
        self.__dict__.get("_store", self.changes)[lowered] = pair

    def copy(self) -> _Headers:
        store: dict[str, tuple[str, str]] | None = self.__dict__.get("_store")
        if store is None:
            return _Headers(self.source, dict(self.changes), self.pristine)
        copied = _Headers(self.source, pristine=self.pristine)
        copied.__dict__["_store"] = store.copy()
        return copied

    def lowered_lookup(self, lowered: str) -> str | None:
        """The value of the header named `lowered` (in lower case), or None."""
        store: dict[str, tuple[str, str]] | None = self.__dict__.get("_store")
        item = store.get(lowered) if store is not None else self.changes.get(lowered)
        if item is not None or store is not None:
            return None if item is None else item[1]
        return _scan(self.source, lowered)

    def on_the_wire(self) -> httpx.Headers | None:
        """The source's headers with the changes applied; None if one is not ASCII.

        The source itself when nothing changed: repeated headers kept, nothing encoded.
        """
        store: dict[str, tuple[str, str]] | None = self.__dict__.get("_store")
        removed: list[str] = []
        if store is None:
            changed: Iterable[tuple[str, str]] = self.changes.values()
        else:
            before = self.pristine or {}
            changed = [item for key, item in store.items() if before.get(key) != item]
            if not store.keys() >= before.keys():
                removed = [before[key][0] for key in before.keys() - store.keys()]
        if not changed and not removed:
            return self.source
        if not removed and isinstance(getattr(self.source, "_list", None), list):
            return _with_set(self.source, changed)  # httpx's list, as httpx 0.18+ keeps it
        wire = httpx.Headers(self.source)
        for name, value in changed:
            if not (name.isascii() and value.isascii()):
                return None  # httpx would encode it otherwise than as Latin-1
            wire[name] = value
        for name in removed:
            del wire[name]
        return wire


def _scan(headers: httpx.Headers, lowered: str) -> str | None:
    """The value of header `lowered` in httpx's list (the last if repeated), or None."""
    wanted = lowered.encode("latin-1")
    # From the end: the last of repeated headers is the one a store keeps, and the
    # headers asked for on every answer (rate limits) tend to come late.
    for triple in reversed(_triples(headers)):
        if triple[1] == wanted:
            return triple[2].decode("latin-1")
    return None


def _with_set(source: httpx.Headers, changed: Iterable[tuple[str, str]]) -> httpx.Headers | None:
    """`source` with the headers `changed` set, as ``headers[name] = value`` sets them.

    Each set header takes the place of the first with its name (repeats after it are
    dropped), or goes last; the others keep their bytes. One pass over httpx's list
    for all the changes, instead of one per change. None if a change is not ASCII
    (httpx would not encode it as Latin-1). For headers whose ``_list`` httpx keeps
    (see `_triples`).
    """
    triples: list[tuple[bytes, bytes, bytes]] = source._list
    setting: dict[bytes, tuple[bytes, bytes, bytes]] = {}
    try:
        for name, value in changed:
            raw = name.encode("ascii")
            lowered = raw.lower()
            setting[lowered] = (raw, lowered, value.encode("ascii"))  # set twice: the last
    except UnicodeEncodeError:
        return None
    if setting.keys().isdisjoint(map(_LOWERED, triples)):
        items = [*triples, *setting.values()]  # the common case: new names, set last
    else:
        items = _replaced(triples, setting)
    wire: httpx.Headers = _NEW(httpx.Headers)
    wire._list = items
    wire._encoding = None  # as httpx's own copy has it: worked out when asked
    return wire


_LOWERED = operator.itemgetter(1)


def _replaced(
    triples: list[tuple[bytes, bytes, bytes]], setting: dict[bytes, tuple[bytes, bytes, bytes]]
) -> list[tuple[bytes, bytes, bytes]]:
    """Httpx's list with the headers in `setting` set (see `_with_set`)."""
    pending = dict(setting)
    items: list[tuple[bytes, bytes, bytes]] = []
    for triple in triples:
        if triple[1] in setting:
            replacement = pending.pop(triple[1], None)
            if replacement is not None:
                items.append(replacement)  # later repeats of the name are dropped
        else:
            items.append(triple)
    items.extend(pending.values())
    return items


def _new_request_view(source: httpx.Request, extensions: Mapping[str, Any]) -> _RequestView:
    view: _RequestView = _NEW(_RequestView)
    view.source = source
    view.extensions = extensions
    return view


_NEW = object.__new__


def _triples(headers: httpx.Headers) -> list[tuple[bytes, bytes, bytes]]:
    """The header list httpx keeps: (name as sent, lowered name, value), all bytes.

    `httpx.Headers` keeps the lowered name beside each header (its ``_list``, the same
    layout since httpx 0.18); read from there, no name is lowered again. Should a
    release change that, the public ``raw`` pairs give the same triples.
    """
    triples: list[tuple[bytes, bytes, bytes]] | None = getattr(headers, "_list", None)
    if triples is None:
        triples = [(name, name.lower(), value) for name, value in headers.raw]
    return triples


def _latin1_store(headers: httpx.Headers) -> dict[str, tuple[str, str]]:
    """A `CaseInsensitiveDict` store of httpx headers, decoded as Latin-1.

    The last of repeated headers wins, as ``CaseInsensitiveDict(pairs)`` would keep it.
    """
    return {
        lowered.decode("latin-1"): (name.decode("latin-1"), value.decode("latin-1"))
        for name, lowered, value in _triples(headers)
    }


class _Raw:
    """The file-like `requests.Response.raw` over an httpx response's decoded stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks: Iterator[bytes] | None = None
        self.version = 20 if response.http_version == "HTTP/2" else 11

    def stream(self, amt: int = 65536, decode_content: bool = True) -> Iterator[bytes]:
        yield from self.response.iter_bytes(amt)

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        if amt is None:
            return b"".join(self.response.iter_bytes())
        if self._chunks is None:
            self._chunks = self.response.iter_bytes(amt)
        return next(self._chunks, b"")

    def close(self) -> None:
        self.response.close()

    def release_conn(self) -> None:
        self.response.close()


class _AsyncRaw(_Raw):
    """`raw` for a response of an async transport: its body is read by `aload` only."""

    def stream(self, amt: int = 65536, decode_content: bool = True) -> Iterator[bytes]:
        msg = "the body of an async response is read with `await response.aload()`"
        raise RuntimeError(msg)

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        return b"".join(self.stream())

    def close(self) -> None:
        """Closed by `aload` (httpx needs ``await aclose()``); nothing to do here."""

    def release_conn(self) -> None:
        """Released by `aload`."""


class _ResponseView(requests.Response):
    """An `httpx.Response` as the policies see it; `.httpx` is the response itself.

    Built without `Response.__init__` (see `_response_view`); its cookie jar, which
    no policy reads, is made when first asked for.
    """

    httpx: httpx.Response
    # What `Response.__init__` would set, as class defaults: a view is made per attempt,
    # and setting one (reading the body does) puts it on the instance, as usual.
    _content: bytes | bool | None = False  # type: ignore[assignment]
    _content_consumed = False
    _next = None
    elapsed = datetime.timedelta(0)
    _asynchronous = False  # over an httpx.AsyncClient's response

    @property
    def headers(self) -> CaseInsensitiveDict[str]:
        """The response's headers, decoded when a policy first asks for them."""
        attributes = self.__dict__
        headers: CaseInsensitiveDict[str] | None = attributes.get("_headers")
        if headers is None:
            headers = attributes["_headers"] = _Headers(self.httpx.headers)
        return headers

    @headers.setter
    def headers(self, value: CaseInsensitiveDict[str]) -> None:
        self.__dict__["_headers"] = value

    def lowered_headers(self, first: str, second: str) -> tuple[str | None, str | None]:
        """Two headers' values (names in lower case) in one pass: `response_headers`."""
        headers: Any = self.__dict__.get("_headers")
        if headers is not None:  # a policy made (or replaced) the map: it answers
            return header(headers, first), header(headers, second)
        one, two = first.encode("latin-1"), second.encode("latin-1")
        found_one: bytes | None = None
        found_two: bytes | None = None
        source = self.httpx.headers
        triples = getattr(source, "_list", None)  # `_triples`, its common case inline
        # From the end, as `_scan`: the last of repeats wins, as in a map.
        for triple in reversed(triples if type(triples) is list else _triples(source)):
            name = triple[1]
            if name == one and found_one is None:
                found_one = triple[2]
                if found_two is not None:
                    break
            elif name == two and found_two is None:
                found_two = triple[2]
                if found_one is not None:
                    break
        return (
            None if found_one is None else found_one.decode("latin-1"),
            None if found_two is None else found_two.decode("latin-1"),
        )

    @property
    def protocol_version(self) -> str | None:
        """The answer's HTTP version as ``network.protocol.version`` has it ("1.1", "2").

        From the ``http_version`` httpx's transports put in the response's extensions,
        HTTP/1.1 when there is none (as `httpx.Response.http_version` reads it).
        """
        return _PROTOCOL_VERSIONS.get(self.httpx.extensions.get("http_version", b"HTTP/1.1"))

    @property
    def raw(self) -> Any:
        """The file-like body reader over the httpx stream, made when first asked for."""
        attributes = self.__dict__
        raw = attributes.get("_raw")
        if raw is None:
            response = self.httpx
            raw = attributes["_raw"] = (
                _AsyncRaw(response) if self._asynchronous else _Raw(response)
            )
        return raw

    @raw.setter
    def raw(self, value: Any) -> None:
        self.__dict__["_raw"] = value

    @property
    def reason(self) -> str:
        """The reason phrase, looked up when first asked for (error messages do)."""
        attributes = self.__dict__
        if "_reason" not in attributes:
            attributes["_reason"] = self.httpx.reason_phrase
        return attributes["_reason"]  # type: ignore[no-any-return]

    @reason.setter
    def reason(self, value: str) -> None:
        self.__dict__["_reason"] = value

    @property
    def encoding(self) -> str | None:
        """The body's charset (from ``Content-Type``), read when first asked for."""
        attributes = self.__dict__
        if "_encoding" not in attributes:
            attributes["_encoding"] = self.httpx.charset_encoding
        return attributes["_encoding"]  # type: ignore[no-any-return]

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self.__dict__["_encoding"] = value

    @property
    def cookies(self) -> requests.cookies.RequestsCookieJar:
        jar = self.__dict__.get("_cookies")
        if jar is None:
            jar = self.__dict__["_cookies"] = requests.cookies.RequestsCookieJar()
        return jar

    @cookies.setter
    def cookies(self, jar: requests.cookies.RequestsCookieJar) -> None:
        self.__dict__["_cookies"] = jar

    async def aload(self, limit: int | None) -> None:
        """Read (at most `limit` bytes of) an async response's body into `content`.

        A longer body is cut there; the stream is closed either way (httpx returns the
        connection to its pool when the body was read to the end).
        """
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in self.httpx.aiter_bytes():
                parts.append(chunk)
                size += len(chunk)
                if limit is not None and size >= limit:
                    parts[-1] = chunk[: len(chunk) - (size - limit)]
                    break
        except httpx.HTTPError:
            pass  # a broken error body keeps what arrived, as read_bounded does
        finally:
            self._content = b"".join(parts)
            self._content_consumed = True
            await self.httpx.aclose()


_PROTOCOL_VERSIONS: dict[object, str] = {
    b"HTTP/1.1": "1.1",
    b"HTTP/1.0": "1.0",
    b"HTTP/2": "2",
    b"HTTP/3": "3",
}


def _request_view(request: httpx.Request, body: bytes) -> _RequestView:
    """The view of a request whose body was read (every attempt replays those bytes)."""
    extensions = request.extensions
    sent = body or None
    text = _url_text(request.url)
    view: _RequestView = _NEW(_RequestView)
    view.__dict__ = {  # PreparedRequest's own attributes, then the view's
        "method": request.method,
        "url": text,
        "body": sent,
        "source": request,
        "extensions": extensions,
        "source_url": text,
        "source_body": sent,
        "source_timeout": _timeout_of(extensions),
    }
    return view


def _url_text(url: httpx.URL) -> str:
    """``str(url)``, remembered for the URLs of the last requests.

    httpx renders the URL from its parsed parts on every ``str()``; the parts (a named
    tuple) are the cache's key, so equal URLs share one text. Should a release of
    httpx drop the parts, ``str()`` is used.
    """
    reference = getattr(url, "_uri_reference", None)
    if reference is None:
        return str(url)
    return _rendered(reference)


_rendered: Callable[[object], str] = functools.lru_cache(maxsize=256)(str)


def _response_view(
    response: httpx.Response, request: requests.PreparedRequest, *, asynchronous: bool = False
) -> _ResponseView:
    """The requests-shaped view of an httpx response (its body left unread)."""
    view: _ResponseView = _NEW(_ResponseView)
    view.__dict__ = {  # Response's own (the rest are class defaults), and the source
        "status_code": response.status_code,
        "url": request.url or "",
        "request": request,
        "history": [],
        "httpx": response,
    }
    if asynchronous:
        view._asynchronous = True
    return view


def _wire_request(call: Call) -> httpx.Request:
    """The httpx request for one attempt, from the attempt's view.

    The source request's parsed URL is reused when no policy changed the URL, and its
    body stream when no policy changed the body; the headers go back as the bytes they
    were, with the policies' changes applied (`_Headers.on_the_wire`), so httpx has
    nothing to guess or normalise. (``stream=``
    is httpx's own way of copying a request: it adds no headers, and the source's
    ``Host`` and ``Content-Length`` are among the view's.)
    """
    view = call.request
    if not isinstance(view, _RequestView):  # a policy made a request of its own
        body = view.body if isinstance(view.body, bytes | str) else None
        return httpx.Request(
            view.method or "GET", view.url or "", headers=_wire_headers(view), content=body
        )
    source = view.source
    given = view.__dict__.get("_headers")
    # The source's own while no policy asked for the map (so none changed it), else
    # the source's with the policies' changes (`_only_set`), else encoded anew.
    headers = source.headers if given is None else _only_set(given, source) or _wire_headers(view)
    same_url = view.url == view.source_url
    same_timeout = call.timeout is view.source_timeout
    same_target = same_url and view.body is view.source_body and view.method == source.method
    if same_target and same_timeout and headers is source.headers:
        return source  # no policy changed anything: the request as the client made it
    # The transports only read the extensions: an unchanged timeout shares the source's.
    extensions = view.extensions if same_timeout else _with_timeout(view.extensions, call.timeout)
    if same_target:
        # Only headers or timeouts changed: the source with those two replaced. (An
        # `httpx.Request` is a plain object; its __init__ would parse nothing more here.)
        wire: httpx.Request = _NEW(httpx.Request)
        wire.__dict__ = {
            **source.__dict__,
            "headers": headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers),
            "extensions": extensions,
        }
        return wire
    url: httpx.URL | str = source.url if same_url else (view.url or "")
    if view.body is not view.source_body:
        body = view.body if isinstance(view.body, bytes | str) else None
        return httpx.Request(
            view.method or "GET", url, headers=headers, content=body, extensions=extensions
        )
    wire = httpx.Request(
        view.method or "GET", url, headers=headers, stream=source.stream, extensions=extensions
    )
    wire.read()  # the source's bytes, already in memory: `content` as transports expect
    return wire


def _only_set(given: object, source: httpx.Request) -> httpx.Headers | None:
    """The common case of `_RequestView.wire_headers`, in one call; else None.

    While the policies have only set headers on the view's map (auth, tracing), the
    source's headers with those set (`_with_set`, as `_Headers.on_the_wire` does);
    None for the rest (a map read, replaced, or a header outside ASCII), which
    `_wire_headers` handles.
    """
    wire = source.headers
    if (
        type(given) is not _Headers
        or given.source is not wire
        or "_store" in given.__dict__
        or type(getattr(wire, "_list", None)) is not list
    ):
        return None
    changes = given.changes
    return _with_set(wire, changes.values()) if changes else wire


def _wire_headers(view: requests.PreparedRequest) -> httpx.Headers | list[tuple[bytes, bytes]]:
    """The attempt's headers for httpx: the source's own, if no policy changed them.

    If policies changed some (an ``Authorization`` set, a ``traceparent`` injected),
    the source's are copied and only the changes applied: the headers no policy
    touched keep their bytes (and their repeats) without being encoded again.
    """
    if isinstance(view, _RequestView):
        headers = view.wire_headers()
        if headers is not None:
            return headers
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in view.headers.items()]


def _translated(exc: httpx.TransportError, call: Call) -> BaseException:
    """The library's error for an httpx failure (the same table as the requests path)."""
    request = call.request
    error = translate_transport_error(_as_requests_error(exc, request), request, call.redactor)
    if error is None:
        return exc
    if isinstance(exc, _NOT_SENT):
        error.request_sent = False
    return error


def _result(response: requests.Response, request: httpx.Request) -> httpx.Response:
    """What the transport returns: the httpx response the pipeline let through."""
    if isinstance(response, _ResponseView):
        return response.httpx
    # A policy made its own response (a cache, a fallback): hand httpx its bytes, and
    # the extensions the policy put on it for httpx callers (a fallback's mark).
    return httpx.Response(
        response.status_code,
        headers=list(response.headers.items()),
        content=response.content,
        request=request,
        extensions=getattr(response, HTTPX_EXTENSIONS_ATTR, None),
    )


def _timeout_of(extensions: Mapping[str, Any]) -> TimeoutValue:
    """The request's httpx timeouts as the (connect, read) pair the policies cut."""
    timeout = extensions.get("timeout")
    if type(timeout) is not dict and not isinstance(timeout, Mapping):  # httpx's is a dict
        return None
    return (timeout.get("connect"), timeout.get("read"))


def _with_timeout(extensions: Mapping[str, Any], timeout: TimeoutValue) -> dict[str, Any]:
    """The extensions with the attempt's (cut) timeout put back into httpx's form."""
    out = dict(extensions)
    if isinstance(timeout, tuple):
        connect, read = timeout
    elif isinstance(timeout, (int, float)):
        connect = read = float(timeout)
    else:
        return out
    given = dict(out.get("timeout") or {})
    given["connect"], given["read"] = connect, read
    given.setdefault("write", read)
    given.setdefault("pool", connect)
    out["timeout"] = given
    return out


#: Each httpx transport failure (most specific first) and the requests exception that
#: plain requests raises for the same failure: the translation then follows the one
#: table of `TRANSPORT_ERRORS`, so an httpx caller meets the same library errors.
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[requests.RequestException]], ...] = (
    (httpx.ConnectTimeout, requests.ConnectTimeout),
    (httpx.ReadTimeout, requests.ReadTimeout),
    (httpx.WriteTimeout, requests.ConnectionError),
    (httpx.PoolTimeout, requests.ConnectTimeout),
    (httpx.ProxyError, requests.exceptions.ProxyError),
    (httpx.ConnectError, requests.ConnectionError),
    (httpx.DecodingError, requests.exceptions.ContentDecodingError),
    (httpx.RemoteProtocolError, requests.exceptions.ChunkedEncodingError),
    (httpx.TransportError, requests.ConnectionError),
)

#: httpx failures where the server cannot have seen the request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _as_requests_error(
    exc: httpx.TransportError, request: requests.PreparedRequest
) -> requests.RequestException:
    """The requests exception that plain requests raises for the same failure."""
    requests_class = next(r for h, r in _HTTPX_ERRORS if isinstance(exc, h))
    error = requests_class(str(exc), request=request)
    error.__cause__ = exc
    return error


def _check(pipeline: object, transport: object, kind: type) -> None:
    if not isinstance(pipeline, Pipeline):
        msg = f"pipeline must be a Pipeline, got {type(pipeline).__name__}"
        raise ConfigurationError(msg)
    if transport is not None and not isinstance(transport, kind):
        msg = f"transport must be an httpx.{kind.__name__}, got {type(transport).__name__}"
        raise ConfigurationError(msg)


class ResilientTransport(httpx.BaseTransport):
    """An `httpx.BaseTransport` that runs a `Pipeline` around another transport.

    Args:
        pipeline: the policies (the same `Pipeline` object can serve requests sessions
            and httpx clients at once; state such as a breaker's is then shared).
        transport: the transport that does the I/O (default ``httpx.HTTPTransport()``);
            pass your own to keep HTTP/2, proxies, limits or a mock transport.

    Raises:
        ConfigurationError: an argument has the wrong type.

    Example:
        >>> client = httpx.Client(transport=ResilientTransport(Pipeline(StatusErrors(), Retry())))
    """

    def __init__(self, pipeline: Pipeline, transport: httpx.BaseTransport | None = None) -> None:
        _check(pipeline, transport, httpx.BaseTransport)
        self._pipeline = pipeline
        self._clock, self._redactor = pipeline.clock, pipeline.redactor  # a frozen pipeline's
        self._transport: httpx.BaseTransport = transport or httpx.HTTPTransport()
        self._handler = pipeline.wrap(self._send)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this transport runs."""
        return self._pipeline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Run the pipeline for one request, as `httpx.Client.send` asks."""
        view = _request_view(request, request.read())
        # stream=True: httpx reads (or streams) the body after the transport
        call = first_call(
            view, True, view.source_timeout, True, None, None, self._clock, self._redactor
        )
        response = self._handler(call)
        if type(response) is _ResponseView:
            return response.httpx  # what the wrapped transport returned
        return _result(response, request)

    def _send(self, call: Call) -> requests.Response:
        """One wire attempt on the wrapped transport, seen through the neutral view."""
        wire = _wire_request(call)
        try:
            response = self._transport.handle_request(wire)
        except httpx.TransportError as exc:
            raise _translated(exc, call) from exc
        return _response_view(response, call.request)

    def close(self) -> None:
        """Close the wrapped transport (its connection pool)."""
        self._transport.close()


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` that runs a `Pipeline` (its async forms) around another.

    Every policy of the pipeline needs an async form: the built-in ones have one; a
    custom policy needs ``async def asend(call, next)`` or to be an ``async def``
    function (`Pipeline.wrap_async` refuses others with `ConfigurationError`). Waits
    (backoff, Retry-After, rate limits) await the clock, so other tasks run meanwhile.

    Args:
        pipeline: the policies; the same `Pipeline` object (and its state: breaker,
            budget, rate limit) may serve sync and async clients at once.
        transport: the transport that does the I/O (default ``httpx.AsyncHTTPTransport()``).

    Raises:
        ConfigurationError: an argument has the wrong type, or a policy has no async form.

    Example:
        >>> transport = AsyncResilientTransport(Pipeline(StatusErrors(), Retry()))
        >>> client = httpx.AsyncClient(transport=transport)
    """

    def __init__(
        self, pipeline: Pipeline, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        _check(pipeline, transport, httpx.AsyncBaseTransport)
        self._pipeline = pipeline
        self._clock, self._redactor = pipeline.clock, pipeline.redactor  # a frozen pipeline's
        self._transport: httpx.AsyncBaseTransport = transport or httpx.AsyncHTTPTransport()
        self._handler = pipeline.wrap_async(self._send)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this transport runs."""
        return self._pipeline

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Run the pipeline for one request, as `httpx.AsyncClient.send` asks."""
        try:
            body = request.content  # in memory already (httpx reads bytes bodies at once)?
        except httpx.RequestNotRead:  # a streamed body: read it (once) to replay it
            body = await request.aread()
        view = _request_view(request, body)
        call = first_call(
            view, True, view.source_timeout, True, None, None, self._clock, self._redactor
        )
        response = await self._handler(call)
        if type(response) is _ResponseView:
            return response.httpx
        return _result(response, request)

    async def _send(self, call: Call) -> requests.Response:
        wire = _wire_request(call)
        try:
            response = await self._transport.handle_async_request(wire)
        except httpx.TransportError as exc:
            raise _translated(exc, call) from exc
        return _response_view(response, call.request, asynchronous=True)

    async def aclose(self) -> None:
        """Close the wrapped transport (its pool) and the policies' asyncio Redis clients.

        A shared breaker's or rate limit's asyncio client belongs to one event loop:
        the one this transport ran in; it is closed here, while that loop still runs.
        `httpx.AsyncClient` calls this when it is closed (``async with``).
        """
        await self._transport.aclose()
        for policy in self._pipeline.policies:
            link = getattr(policy, "_link", None)
            aclose = getattr(link, "aclose", None)
            if aclose is not None:
                await aclose()

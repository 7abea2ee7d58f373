"""What the per-request path does not do, on every transport: the issue's hot-path rules.

A call through the whole Vinci preset, after a first one (which may look things up
once), reads no environment variable, parses no URL it has seen, and copies no
dataclass through `dataclasses.replace`. Speed itself is the benchmarks' business
(``./dev bench library``); these tests pin the behaviour that the speed rests on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import urllib.parse
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from requests_resilience import PipelineAdapter, RateLimit
from requests_resilience.httpx import AsyncResilientTransport, ResilientTransport
from requests_resilience.vinci import build_pipeline

URL = "https://tryvinci.com/api/v1/billing/balance"
KEY = "sk-hot-path-0123456789"
CALLS = 20


class Canned(BaseAdapter):
    """A requests transport answering 200 at once, with the Vinci rate-limit headers."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = requests.Response()
        response.status_code = 200
        response.headers["X-RateLimit-Limit"] = "100"
        response.headers["X-RateLimit-Remaining"] = "99"
        response._content = b"{}"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"X-RateLimit-Limit": "100"}, content=b"{}")


def _preset() -> Any:
    return build_pipeline(api_key=KEY, rate_limit=RateLimit(1_000_000, period=0.001))


Sender = tuple[Callable[[], object], Callable[[], None]]  # send one call; close


def _requests_sender() -> Sender:
    adapter = PipelineAdapter(_preset(), transport=Canned())
    prepared = requests.Request("GET", URL).prepare()
    return (lambda: adapter.send(prepared, timeout=30)), adapter.close


def _httpx_sender() -> Sender:
    transport = ResilientTransport(_preset(), httpx.MockTransport(_answer))
    return (lambda: transport.handle_request(httpx.Request("GET", URL))), transport.close


def _async_sender() -> Sender:
    transport = AsyncResilientTransport(_preset(), httpx.MockTransport(_answer))
    loop = asyncio.new_event_loop()

    def send() -> object:
        return loop.run_until_complete(transport.handle_async_request(httpx.Request("GET", URL)))

    def close() -> None:
        loop.run_until_complete(transport.aclose())
        loop.close()

    return send, close


SENDERS = {"requests": _requests_sender, "httpx": _httpx_sender, "httpx-async": _async_sender}


class CountingEnviron(MutableMapping[str, str]):
    """`os.environ` as seen by the code under test: every read is counted."""

    def __init__(self, wrapped: MutableMapping[str, str]) -> None:
        self.wrapped = wrapped
        self.reads: list[str] = []

    def __getitem__(self, key: str) -> str:
        self.reads.append(key)
        return self.wrapped[key]

    def __contains__(self, key: object) -> bool:
        self.reads.append(str(key))
        return key in self.wrapped

    def __setitem__(self, key: str, value: str) -> None:
        self.wrapped[key] = value

    def __delitem__(self, key: str) -> None:
        del self.wrapped[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.wrapped)

    def __len__(self) -> int:
        return len(self.wrapped)


@pytest.fixture(params=list(SENDERS))
def send(request: pytest.FixtureRequest) -> Iterator[Callable[[], object]]:
    sender, close = SENDERS[request.param]()
    sender()  # the first call may look things up once
    yield sender
    close()


def test_no_environment_variable_is_read_per_request(
    send: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 calls through the preset read os.environ zero times (OTel's getters would, 3x)."""
    environ = CountingEnviron(os.environ)
    monkeypatch.setattr(os, "environ", environ)
    for _ in range(CALLS):
        send()
    assert environ.reads == []


def test_a_url_seen_before_is_not_parsed_again(
    send: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The breaker's key of a URL it has seen is a cache hit: urlsplit is not called."""
    parsed: list[str] = []
    urlsplit = urllib.parse.urlsplit

    def counting(url: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(url)
        return urlsplit(url, *args, **kwargs)

    monkeypatch.setattr(urllib.parse, "urlsplit", counting)
    for _ in range(CALLS):
        send()
    assert parsed == []


def test_no_dataclass_is_copied_with_replace(
    send: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls evolve through their slots' setters, not `dataclasses.replace`."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("dataclasses.replace on the hot path")

    monkeypatch.setattr(dataclasses, "replace", refuse)
    for _ in range(CALLS):
        send()


# -- the shortcuts the hot path takes give what the long way gives -----------------------


def test_first_call_builds_the_call_the_constructor_builds() -> None:
    from requests_resilience._clock import SystemClock
    from requests_resilience._pipeline import Call, first_call
    from requests_resilience._secrets import NO_SECRETS

    request = requests.Request("GET", URL).prepare()
    clock = SystemClock()
    proxies = {"https": "http://proxy:3128"}
    made = first_call(request, True, (3.0, 30.0), "/ca.pem", None, proxies, clock, NO_SECRETS)
    assert made == Call(
        request=request,
        stream=True,
        timeout=(3.0, 30.0),
        verify="/ca.pem",
        cert=None,
        proxies=proxies,
        clock=clock,
        redactor=NO_SECRETS,
    )
    assert (made.deadline, made.attempt, made.history) == (None, 1, ())
    assert made.evolve(attempt=2) == dataclasses.replace(made, attempt=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.attempt = 2  # type: ignore[misc]


def test_with_deadline_is_evolve_with_only_the_deadline() -> None:
    from requests_resilience._pipeline import Call, with_deadline

    call = Call(request=requests.Request("GET", URL).prepare(), timeout=5.0, attempt=3)
    later = with_deadline(call, 42.0)
    assert later == call.evolve(deadline=42.0)
    assert later is not call
    assert call.deadline is None  # the original is untouched


def test_the_url_text_of_an_httpx_request_is_str_of_its_url() -> None:
    from requests_resilience._httpx import _url_text

    for text in (URL, "http://[::1]:8080/a?b=c#d", "https://user:pw@example.com/x%20y"):
        url = httpx.URL(text)
        assert _url_text(url) == str(url)
        assert _url_text(httpx.URL(text)) == str(url)  # a second, equal URL: the cache


_HEADER_NAMES = st.sampled_from(["Accept", "accept", "Authorization", "X-Tag", "x-tag", "Host"])
_HEADER_VALUES = st.text(alphabet="abcXYZ019 /=", min_size=0, max_size=6)


@given(
    source=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=6),
    changes=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), min_size=1, max_size=3),
)
def test_headers_set_in_one_pass_are_what_httpx_sets(
    source: list[tuple[str, str]], changes: list[tuple[str, str]]
) -> None:
    """`_with_set` (one pass over httpx's list) against ``headers[name] = value``."""
    from requests_resilience._httpx import _with_set

    expected = httpx.Headers(source)
    for name, value in changes:
        expected[name] = value
    # What `_Headers.changes` holds: each name's last setting, where it was first set.
    kept: dict[str, tuple[str, str]] = {}
    for name, value in changes:
        kept[name.lower()] = (name, value)
    made = _with_set(httpx.Headers(source), kept.values())
    assert made is not None
    assert made.raw == expected.raw
    assert made.encoding == expected.encoding


def test_a_header_outside_ascii_is_left_to_httpx() -> None:
    from requests_resilience._httpx import _with_set

    assert _with_set(httpx.Headers({"A": "1"}), [("X-Name", "café")]) is None


def test_a_header_put_as_an_item_is_what_setting_it_gives() -> None:
    from requests.structures import CaseInsensitiveDict

    from requests_resilience._headers import put_header

    item = ("authorization", ("Authorization", "Bearer k"))
    fast: CaseInsensitiveDict[str] = CaseInsensitiveDict({"AUTHORIZATION": "old", "A": "1"})
    slow: CaseInsensitiveDict[str] = CaseInsensitiveDict({"AUTHORIZATION": "old", "A": "1"})
    put_header(fast, item)
    slow["Authorization"] = "Bearer k"
    assert list(fast.items()) == list(slow.items()) == [("Authorization", "Bearer k"), ("A", "1")]
    plain: dict[str, str] = {}
    put_header(plain, item)  # any other mapping: set the usual way
    assert plain == {"Authorization": "Bearer k"}

    from requests_resilience._httpx import _Headers

    lazy = _Headers(httpx.Headers({"Accept": "*/*"}))
    put_header(lazy, item)  # the httpx view's map: kept aside, nothing decoded
    assert lazy.changes == {"authorization": ("Authorization", "Bearer k")}
    wire = lazy.on_the_wire()
    assert wire is not None
    assert wire.raw == [(b"Accept", b"*/*"), (b"Authorization", b"Bearer k")]


def test_headers_of_an_httpx_answer_are_read_without_making_the_map() -> None:
    from requests_resilience._headers import response_headers
    from requests_resilience._httpx import _request_view, _response_view

    names = ("x-ratelimit-limit", "retry-after")
    answer = httpx.Response(200, headers=[("X-RateLimit-Limit", "5"), ("x-ratelimit-limit", "7")])
    view = _response_view(answer, _request_view(httpx.Request("GET", URL), b""))
    assert response_headers(view, *names) == ("7", None)  # the last, as a map keeps
    assert "_headers" not in view.__dict__  # nothing decoded
    view.headers["Retry-After"] = "3"  # a policy made the map: it answers from then on
    assert response_headers(view, *names) == ("7", "3")

    plain = requests.Response()
    plain.headers["X-RateLimit-Remaining"] = "0"
    assert response_headers(plain, "x-ratelimit-remaining", "x-ratelimit-limit") == ("0", None)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-RateLimit-Limit", "5"), ("Server", "s"), ("X-RateLimit-Remaining", "4")],
        [
            ("X-RateLimit-Remaining", "1"),
            ("x-ratelimit-remaining", "4"),
            ("X-RateLimit-Limit", "5"),
        ],
        [("X-RateLimit-Limit", "9"), ("x-ratelimit-limit", "5")],
        [("Server", "s")],
        [],
    ],
)
def test_two_headers_read_at_once_are_what_reading_each_gives(
    headers: list[tuple[str, str]],
) -> None:
    from requests_resilience._headers import header, response_headers
    from requests_resilience._httpx import _request_view, _response_view

    names = ("x-ratelimit-limit", "x-ratelimit-remaining")
    view = _response_view(
        httpx.Response(200, headers=headers), _request_view(httpx.Request("GET", URL), b"")
    )
    plain = requests.Response()
    for name, value in headers:
        plain.headers[name] = value
    last = {name.lower(): value for name, value in headers}  # the last of repeats
    expected = (last.get(names[0]), last.get(names[1]))
    assert response_headers(view, *names) == expected
    assert response_headers(plain, *names) == expected
    assert response_headers(view, *names) == tuple(header(view.headers, n) for n in names)

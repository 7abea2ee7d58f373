"""The adapter is a drop-in: mounted, requests behaves as before but for what policies do.

Each failure is produced on a real loopback socket twice, once through plain requests
and once through a mounted pipeline, and the two are compared: the same requests class,
the same ``args`` types, plus the library's own class. Then the `HTTPAdapter` surface,
copies (deepcopy and pickle) and every timeout form.
"""

from __future__ import annotations

import copy
import pickle
import socket
from collections.abc import Callable, Iterator

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

import requests_resilience as rr
from requests_resilience._errors import TRANSPORT_ERRORS
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault

BALANCE = "/billing/balance"


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _plain() -> requests.Session:
    return requests.Session()


def _mounted(*policies: rr.PolicyLike) -> requests.Session:
    session = requests.Session()
    pipeline = rr.Pipeline(*policies, clock=FakeClock())
    rr.mount(session, "http://", pipeline)
    rr.mount(session, "https://", pipeline)
    return session


def _raised(
    send: Callable[[requests.Session], object], session: requests.Session
) -> BaseException:
    with session, pytest.raises(requests.RequestException) as info:
        send(session)
    return info.value


Failure = Callable[
    [FakeVinciServer], tuple[type[requests.RequestException], Callable[..., object]]
]


def _tls_to_plain_http(srv: FakeVinciServer) -> tuple[type[Exception], Callable[..., object]]:
    url = srv.url(BALANCE).replace("http://", "https://")
    return requests.exceptions.SSLError, lambda s: s.get(url, timeout=5)


def _dead_proxy(srv: FakeVinciServer) -> tuple[type[Exception], Callable[..., object]]:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    url = srv.url(BALANCE)
    return requests.exceptions.ProxyError, lambda s: s.get(url, proxies={"http": proxy}, timeout=5)


def _refused(srv: FakeVinciServer) -> tuple[type[Exception], Callable[..., object]]:
    url = f"http://127.0.0.1:{_closed_port()}/x"
    return requests.ConnectionError, lambda s: s.get(url, timeout=5)


def _read_timeout(srv: FakeVinciServer) -> tuple[type[Exception], Callable[..., object]]:
    srv.script(*[Fault.delay(2)] * 2)
    url = srv.url(BALANCE)
    return requests.ReadTimeout, lambda s: s.get(url, timeout=0.1)


def _truncated(srv: FakeVinciServer) -> tuple[type[Exception], Callable[..., object]]:
    srv.script(*[Fault.truncated()] * 2)
    url = srv.url(BALANCE)
    return requests.exceptions.ChunkedEncodingError, lambda s: s.get(url, timeout=5)


def _bad_gzip(srv: FakeVinciServer) -> tuple[type[Exception], Callable[..., object]]:
    srv.script(*[Fault.body(200, b"not gzip at all", headers={"Content-Encoding": "gzip"})] * 2)
    url = srv.url(BALANCE)
    return requests.exceptions.ContentDecodingError, lambda s: s.get(url, timeout=5)


@pytest.mark.parametrize(
    "failure",
    [_tls_to_plain_http, _dead_proxy, _refused, _read_timeout, _truncated, _bad_gzip],
    ids=["ssl", "proxy", "refused", "read-timeout", "chunked", "content-decoding"],
)
def test_failures_keep_the_class_and_args_plain_requests_gives(
    failure: Failure, server: FakeVinciServer
) -> None:
    """The mounted error is an instance of plain requests' class, with args of the same types."""
    expected, send = failure(server)
    plain = _raised(send, _plain())
    mounted = _raised(send, _mounted())
    assert type(plain) is expected
    assert isinstance(mounted, expected)
    assert isinstance(mounted, rr.APIConnectionError)
    assert [type(a) for a in mounted.args] == [type(a) for a in plain.args]
    assert mounted.request is not None


@pytest.mark.parametrize(("raised", "library_class", "label"), TRANSPORT_ERRORS)
def test_each_row_of_the_table_is_both_classes(
    raised: type[requests.RequestException], library_class: type[rr.APIConnectionError], label: str
) -> None:
    """Every library class of the table derives from the requests class it translates."""
    assert issubclass(library_class, raised)
    assert issubclass(library_class, rr.APIConnectionError)
    assert label


def test_the_adapter_is_an_http_adapter() -> None:
    """poolmanager, proxy_manager, build_response, cert_verify and close work as on HTTPAdapter."""
    adapter = rr.PipelineAdapter(rr.Pipeline())
    assert isinstance(adapter, HTTPAdapter)
    assert isinstance(adapter.poolmanager, urllib3.PoolManager)
    assert adapter.proxy_manager == {}
    assert adapter.transport is adapter
    adapter.close()


def test_an_overridden_init_poolmanager_is_used(server: FakeVinciServer) -> None:
    """Subclassing to override init_poolmanager (TLS contexts, source addresses) works."""
    seen: list[tuple[object, ...]] = []

    class Custom(rr.PipelineAdapter):
        def init_poolmanager(self, *args: object, **kwargs: object) -> None:
            seen.append(args)
            super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]

    with requests.Session() as session:
        session.mount("http://", Custom(rr.Pipeline(), pool_maxsize=7))
        assert session.get(server.url(BALANCE), timeout=5).status_code == 401
    assert seen == [(10, 7)]


def test_a_custom_transport_goes_under_the_pipeline(server: FakeVinciServer) -> None:
    """A user's HTTPAdapter subclass passed as transport does the I/O under the policies."""
    sent: list[str] = []

    class Counting(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:  # type: ignore[override]
            sent.append(str(request.url))
            return super().send(request, **kwargs)  # type: ignore[arg-type]

    server.script(Fault.status(503))
    with requests.Session() as session:
        rr.mount(
            session,
            "http://",
            rr.Pipeline(rr.Retry(), clock=FakeClock()),
            transport=Counting(),
        )
        assert session.get(server.url(BALANCE), timeout=5).status_code == 401
    assert len(sent) == 2


def _session_with_state(url: str) -> requests.Session:
    session = requests.Session()
    rr.mount(
        session,
        "http://",
        rr.Pipeline(
            rr.StatusErrors(),
            rr.Retry(),
            rr.CircuitBreaker(),
            rr.RateLimit(1000, burst=100),
            rr.Tracing(),
        ),
    )
    return session


@pytest.mark.parametrize(
    "duplicate",
    [copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))],
    ids=["deepcopy", "pickle"],
)
def test_copies_are_independent(
    duplicate: Callable[[requests.Session], requests.Session], server: FakeVinciServer
) -> None:
    """A copied Session has the same configuration, its own pool and fresh policy state."""
    original = _session_with_state(server.url(BALANCE))
    headers = {"Authorization": f"Bearer {server.api_key}"}
    assert original.get(server.url(BALANCE), headers=headers, timeout=5).status_code == 200
    copied = duplicate(original)
    a = original.get_adapter(server.url(BALANCE))
    b = copied.get_adapter(server.url(BALANCE))
    assert isinstance(a, rr.PipelineAdapter)
    assert isinstance(b, rr.PipelineAdapter)
    assert b.poolmanager is not a.poolmanager
    assert b.pipeline.describe() == a.pipeline.describe()
    for mine, theirs in zip(a.pipeline.policies, b.pipeline.policies, strict=True):
        if not isinstance(mine, rr.StatusErrors):
            assert theirs is not mine
    breaker = b.pipeline.policies[2]
    assert isinstance(breaker, rr.CircuitBreaker)
    key = server.base_url.removesuffix("/api/v1")
    original_breaker = a.pipeline.policies[2]
    assert isinstance(original_breaker, rr.CircuitBreaker)
    assert original_breaker.status(key).sent == 1
    assert breaker.status(key).sent == 0  # fresh state: the original's call is not there
    assert copied.get(server.url(BALANCE), headers=headers, timeout=5).status_code == 200
    assert breaker.status(key).sent == 1
    assert server.request_count == 2
    original.close()
    copied.close()


def test_a_policy_holding_a_secret_refuses_to_be_pickled() -> None:
    """Pickling a pipeline with an API key raises a TypeError that names the policy."""
    session = requests.Session()
    rr.mount(session, "http://", rr.Pipeline(rr.APIKeyAuth("sk-secret-key-123456")))
    with pytest.raises(TypeError, match="APIKeyAuth") as info:
        pickle.dumps(session)
    assert "sk-secret" not in str(info.value)
    deep = copy.deepcopy(session)  # in the same process a copy may share the immutable key
    assert isinstance(deep.get_adapter("http://x"), rr.PipelineAdapter)


TIMEOUTS: list[object] = [
    5.0,
    (5.0, 5.0),
    (5.0, None),
    (None, 5.0),
    None,
    urllib3.util.Timeout(connect=3, read=5),
    urllib3.util.Timeout(total=5),
]


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=repr)
@pytest.mark.parametrize("deadline", [None, 30.0], ids=["no-deadline", "deadline"])
def test_every_timeout_form_works_with_every_policy(
    timeout: object, deadline: float | None, server: FakeVinciServer
) -> None:
    """Each form requests accepts goes through retry (with its deadline cut) to the wire."""
    server.script(Fault.status(503))
    with _mounted(
        rr.StatusErrors(),
        rr.Retry(timeout=deadline, attempt_timeout=10.0),
        rr.CircuitBreaker(),
        rr.RateLimit(1000, burst=100),
        rr.APIKeyAuth(server.api_key),
        rr.Tracing(),
    ) as session:
        response = session.get(server.url(BALANCE), timeout=timeout)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert server.request_count == 2


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=repr)
def test_cut_timeout_keeps_the_form(timeout: object) -> None:
    """The deadline cut gives back the form it was given, each part at most the cap."""
    from requests_resilience._retry import cut_timeout

    cut = cut_timeout(timeout, 1.0)  # type: ignore[arg-type]
    if isinstance(timeout, tuple):
        assert isinstance(cut, tuple)
        assert cut == (1.0, 1.0)
    elif isinstance(timeout, urllib3.util.Timeout):
        assert isinstance(cut, urllib3.util.Timeout)
        assert cut.connect_timeout == 1.0
        assert cut.read_timeout == 1.0
    else:
        assert cut == 1.0

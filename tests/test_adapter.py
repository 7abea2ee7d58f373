"""PipelineAdapter and mount() over real loopback HTTP against the fake Vinci server."""

from __future__ import annotations

import copy
import pickle

import pytest
import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

from requests_resilience import (
    APIKeyAuth,
    APIReadTimeoutError,
    AuthenticationError,
    Call,
    ConfigurationError,
    InsufficientBalanceError,
    Next,
    Pipeline,
    PipelineAdapter,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience._bodies import MAX_ERROR_BODY, GuardedResponse, body_is_read
from requests_resilience._deadline import (
    DEADLINE_POOL_CLASSES,
    DeadlineHTTPConnection,
    install_pool_classes,
    wire,
    wire_deadline,
)
from requests_resilience.testing import FakeVinciServer, Fault


def vinci_session(
    server: FakeVinciServer, session: requests.Session, *, pool_maxsize: int = 32
) -> None:
    pipeline = Pipeline(StatusErrors(), APIKeyAuth(server.api_key))
    mount(session, server.base_url + "/", pipeline, pool_maxsize=pool_maxsize)


def test_mount_returns_the_session_and_leaves_other_prefixes(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """Only the mounted prefix gets the pipeline; requests' defaults stay for the rest."""
    before = {p: a for p, a in session.adapters.items()}
    assert mount(session, fake_vinci.base_url + "/", Pipeline(StatusErrors())) is session
    assert isinstance(session.get_adapter(fake_vinci.url("/billing/balance")), PipelineAdapter)
    for prefix, adapter in before.items():
        assert session.adapters[prefix] is adapter
    other = fake_vinci.base_url.replace("/api/v1", "/elsewhere")
    assert isinstance(session.get_adapter(other), HTTPAdapter)
    response = session.get(other)  # no pipeline: a plain 404 response, no exception
    assert response.status_code == 404
    assert "Authorization" not in fake_vinci.requests[-1].headers


def test_requests_go_through_the_pipeline(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A mounted pipeline authenticates and maps errors on the real wire."""
    vinci_session(fake_vinci, session)
    balance = session.get(fake_vinci.url("/billing/balance"))
    assert balance.json()["balance_usd"] >= 0
    assert fake_vinci.requests[-1].headers["Authorization"] == f"Bearer {fake_vinci.api_key}"
    assert isinstance(balance.connection, PipelineAdapter)


def test_http_error_handlers_keep_working(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """except requests.HTTPError still catches a mapped error from the wire."""
    vinci_session(fake_vinci, session)
    fake_vinci.balance_usd = 0.0
    with pytest.raises(requests.HTTPError) as info:
        session.post(
            fake_vinci.url("/generate/text-to-video"),
            json={"prompt": "fox", "duration_seconds": 5},
        )
    assert isinstance(info.value, InsufficientBalanceError)
    assert "Insufficient balance" in info.value.detail


def test_wrong_key_is_an_authentication_error(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A key the server does not know gives AuthenticationError (401) with its detail."""
    mount(
        session,
        fake_vinci.base_url + "/",
        Pipeline(StatusErrors(), APIKeyAuth("sk-wrong-0000000000")),
    )
    with pytest.raises(AuthenticationError) as info:
        session.get(fake_vinci.url("/billing/balance"))
    assert info.value.status_code == 401
    assert "sk-wrong-0000000000" not in str(info.value)


def test_request_id_from_header_on_the_wire(session: requests.Session) -> None:
    """A server that sends X-Request-ID has it on the error."""
    with FakeVinciServer(send_request_id_header=True) as server:
        vinci_session(server, session)
        server.script(Fault.status(500))
        with pytest.raises(requests.HTTPError) as info:
            session.get(server.url("/billing/balance"))
    error = info.value
    assert isinstance(error, ServerError)
    assert error.response is not None
    assert error.request_id
    assert error.request_id == error.response.headers["X-Request-ID"]
    assert f"request_id={error.request_id}" in str(error)


def test_stream_true_passes_through(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """stream=True returns an unread body that the caller reads in chunks."""
    vinci_session(fake_vinci, session)
    with session.get(fake_vinci.url("/billing/balance"), stream=True) as response:
        assert not body_is_read(response)
        body = b"".join(response.iter_content(4))
    assert b"balance_usd" in body


def test_stream_true_error_body_is_read_for_the_exception(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A streamed error response still gives its detail to the exception."""
    vinci_session(fake_vinci, session)
    fake_vinci.script(Fault.status(402, body={"detail": "no money"}))
    with pytest.raises(InsufficientBalanceError, match="no money"):
        session.get(fake_vinci.url("/billing/balance"), stream=True)


def test_redirects_are_followed_by_the_session(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A 302 passes through the pipeline and the Session follows it (auth re-applied)."""
    vinci_session(fake_vinci, session)
    fake_vinci.script(Fault.status(302, headers={"Location": fake_vinci.url("/billing/balance")}))
    response = session.get(fake_vinci.url("/billing/usage"))
    assert response.status_code == 200
    assert "balance_usd" in response.json()
    assert [r.status_code for r in response.history] == [302]
    assert fake_vinci.requests[-1].headers["Authorization"].startswith("Bearer ")


def test_redirect_to_another_host_drops_the_key(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """requests strips Authorization when a redirect leaves the host; it stays that way."""
    vinci_session(fake_vinci, session)
    elsewhere = fake_vinci.url("/billing/balance").replace("127.0.0.1", "localhost")
    fake_vinci.script(Fault.status(302, headers={"Location": elsewhere}))
    response = session.get(fake_vinci.url("/billing/usage"))
    assert response.status_code == 401  # the other host is not under the pipeline
    assert "Authorization" not in fake_vinci.requests[-1].headers


def test_read_timeout_is_translated(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A stalled server gives APIReadTimeoutError, still a requests.ReadTimeout."""
    vinci_session(fake_vinci, session)
    fake_vinci.script(Fault.stall_after_headers(1.0))
    with pytest.raises(requests.ReadTimeout) as info:
        session.get(fake_vinci.url("/billing/balance"), timeout=0.2)
    assert isinstance(info.value, APIReadTimeoutError)
    assert info.value.request_sent is True


def test_broken_body_is_seen_inside_the_pipeline(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A body cut short is read inside the adapter, so policies see the failure."""
    seen: list[str] = []

    def watch(call: Call, next: Next) -> requests.Response:
        try:
            return next(call)
        except requests.RequestException as exc:
            seen.append(type(exc).__name__)
            raise

    mount(session, fake_vinci.base_url + "/", Pipeline(watch, APIKeyAuth(fake_vinci.api_key)))
    fake_vinci.script(Fault.truncated())
    with pytest.raises(requests.ConnectionError):
        session.get(fake_vinci.url("/billing/balance"))
    assert seen == ["APIChunkedEncodingError"]


def test_pool_size_is_a_setting(fake_vinci: FakeVinciServer, session: requests.Session) -> None:
    """pool_maxsize reaches the transport's pool; bad values fail when mounted."""
    vinci_session(fake_vinci, session, pool_maxsize=24)
    adapter = session.get_adapter(fake_vinci.base_url + "/")
    assert isinstance(adapter, PipelineAdapter)
    transport = adapter.transport
    assert isinstance(transport, HTTPAdapter)
    assert transport._pool_maxsize == 24  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="pool_maxsize must be an int from 1"):
        mount(session, "https://x/", Pipeline(), pool_maxsize=0)
    with pytest.raises(ConfigurationError, match="prefix must start with http"):
        mount(session, "ftp://x/", Pipeline())


def test_sixteen_threads_share_a_session_without_discarding_connections(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """With the default pool, 16 threads reuse connections instead of discarding them."""
    from concurrent.futures import ThreadPoolExecutor

    vinci_session(fake_vinci, session)
    fake_vinci.set_latency(0.02)
    url = fake_vinci.url("/billing/balance")
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: session.get(url).status_code, range(64)))
    assert statuses == [200] * 64
    connections = {r.connection_id for r in fake_vinci.requests}
    assert len(connections) <= 16


def test_pools_keep_the_calls_deadline_also_in_copies() -> None:
    """The adapter's pool managers build deadline-keeping pools, copies and proxies too."""
    adapter = PipelineAdapter(Pipeline())
    for candidate in (adapter, copy.deepcopy(adapter), pickle.loads(pickle.dumps(adapter))):
        assert candidate.poolmanager.pool_classes_by_scheme == DEADLINE_POOL_CLASSES
    proxy = adapter.proxy_manager_for("http://127.0.0.1:9")
    assert proxy.pool_classes_by_scheme == DEADLINE_POOL_CLASSES
    pool = adapter.poolmanager.connection_from_url("http://127.0.0.1:9/")
    assert issubclass(pool.ConnectionCls, urllib3.connection.HTTPConnection)
    assert pool.ConnectionCls is DeadlineHTTPConnection


def test_a_pool_manager_with_pools_of_its_own_is_left_alone() -> None:
    """install_pool_classes keeps classes that someone chose on purpose."""

    class MyPool(urllib3.HTTPConnectionPool):
        pass

    manager = urllib3.PoolManager()
    own = {"http": MyPool, "https": urllib3.HTTPSConnectionPool}
    manager.pool_classes_by_scheme = own
    install_pool_classes(manager)
    assert manager.pool_classes_by_scheme is own


def test_wire_deadline_is_per_block_and_nests() -> None:
    """The thread's deadline is set for the block only, and an inner one gives way."""
    assert wire.deadline is None
    with wire_deadline(10.0):
        with wire_deadline(5.0):
            assert wire.deadline == 5.0
        assert wire.deadline == 10.0
    assert wire.deadline is None


def test_a_streamed_body_is_guarded_and_a_read_one_is_plain(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """stream=True gives a GuardedResponse (still a Response); stream=False a plain one."""
    vinci_session(fake_vinci, session)
    url = fake_vinci.url("/billing/balance")
    read = session.get(url)
    with session.get(url, stream=True) as streamed:
        assert isinstance(streamed, GuardedResponse)
        assert isinstance(streamed, requests.Response)
        assert b"balance_usd" in streamed.content
    assert type(read) is requests.Response
    assert b"balance_usd" in read.content


def test_a_non_streamed_error_body_is_cut_at_the_cap(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """A 2 MiB 500 body becomes a ServerError whose response keeps its first MiB."""
    vinci_session(fake_vinci, session)
    fake_vinci.script(Fault.body(500, "e" * (2 * MAX_ERROR_BODY), content_type="text/plain"))
    with pytest.raises(ServerError) as info:
        session.get(fake_vinci.url("/billing/balance"))
    assert info.value.response is not None
    assert info.value.response.content == b"e" * MAX_ERROR_BODY


def test_after_fork_the_adapter_builds_new_pools(
    fake_vinci: FakeVinciServer, session: requests.Session
) -> None:
    """_renew_after_fork (what a forked child runs) drops the pools and builds new ones."""
    vinci_session(fake_vinci, session)
    url = fake_vinci.url("/billing/balance")
    assert session.get(url).status_code == 200
    adapter = session.get_adapter(url)
    assert isinstance(adapter, PipelineAdapter)
    old = adapter.poolmanager
    adapter._renew_after_fork()
    assert adapter.poolmanager is not old
    assert len(old.pools) == 0  # closed, in the child only its copies of the sockets
    assert session.get(url).status_code == 200
    assert len({r.connection_id for r in fake_vinci.requests}) == 2

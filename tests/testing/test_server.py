"""Tests of the fake Vinci server, driven with plain requests over loopback HTTP."""

from __future__ import annotations

import importlib.metadata
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
import urllib3

from requests_resilience.testing._server import (
    FakeVinciServer,
    Fault,
    RateLimitConfig,
    RecordedRequest,
)

pytest_plugins = ["pytester"]

TIMEOUT = 5.0
T2V = "/generate/text-to-video"
I2V = "/generate/image-to-video"
BALANCE = "/billing/balance"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)
PROMPT = {"prompt": "A calm ocean at sunrise"}


class Client(requests.Session):
    """A Session for one fake server: paths relative to its API base, a default timeout."""

    def __init__(self, server: FakeVinciServer, api_key: str | None = None) -> None:
        super().__init__()
        self.server = server
        self.headers["Authorization"] = f"Bearer {api_key or server.api_key}"

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        if url.startswith("/"):
            url = self.server.url(url)
        return super().request(method, url, *args, **kwargs)


Serve = Callable[..., tuple[FakeVinciServer, Client]]


@pytest.fixture
def server() -> Iterator[FakeVinciServer]:
    with FakeVinciServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeVinciServer) -> Iterator[Client]:
    with Client(server) as c:
        yield c


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a server with options and give a client for it; both closed after the test."""
    started: list[tuple[FakeVinciServer, Client]] = []

    def factory(**options: Any) -> tuple[FakeVinciServer, Client]:
        srv = FakeVinciServer(**options).start()
        started.append((srv, Client(srv)))
        return started[-1]

    yield factory
    for srv, c in started:
        c.close()
        srv.stop()


def create_job(client: Client, **payload: Any) -> str:
    response = client.post(T2V, json={**PROMPT, **payload})
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    return request_id


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


# -- lifecycle and options -------------------------------------------------------------


def test_base_url_is_loopback_with_an_ephemeral_port(server: FakeVinciServer) -> None:
    """base_url is http://127.0.0.1:<bound port>/api/v1."""
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.base_url == f"http://127.0.0.1:{server.port}/api/v1"


def test_url_joins_paths_to_the_base(server: FakeVinciServer) -> None:
    """url() appends a path, with or without its leading slash, to base_url."""
    assert server.url("/billing/balance") == server.base_url + "/billing/balance"
    assert server.url("billing/balance") == server.base_url + "/billing/balance"


def test_address_of_a_stopped_server_raises() -> None:
    """port and base_url raise RuntimeError before start()."""
    server = FakeVinciServer()
    assert not server.running
    with pytest.raises(RuntimeError, match="start"):
        _ = server.base_url


def test_context_manager_starts_and_stops(client: Client) -> None:
    """Leaving the with block stops the server: new connections are refused."""
    with FakeVinciServer() as srv, Client(srv) as c:
        assert srv.running
        assert c.get(BALANCE).status_code == 200
        url = srv.url(BALANCE)
    assert not srv.running
    with pytest.raises(requests.ConnectionError):
        client.get(url)


def test_start_twice_raises(server: FakeVinciServer) -> None:
    """start() on a running server raises RuntimeError."""
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_server_restarts_after_stop_keeping_its_state() -> None:
    """A stopped server can start again; its balance survives."""
    srv = FakeVinciServer()
    for _ in range(2):
        with srv, Client(srv) as c:
            create_job(c)
    assert srv.jobs_created == 2
    assert srv.balance_usd == pytest.approx(99.5)


def test_stop_is_prompt_with_stalled_and_idle_connections() -> None:
    """stop() returns within milliseconds despite stalled requests and idle kept-alive ones."""
    srv = FakeVinciServer().start()
    idle = Client(srv)
    assert idle.get(BALANCE).status_code == 200  # leaves a kept-alive idle connection
    srv.script(Fault.stall_after_headers(30), Fault.delay(30))
    errors: list[BaseException] = []

    def call() -> None:
        with Client(srv) as c:
            try:
                c.get(BALANCE, timeout=10).content  # noqa: B018
            except requests.RequestException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: srv.request_count == 3)
    srv.stop()
    for thread in threads:
        thread.join(5)
    idle.close()
    assert len(errors) == 2
    # stop() closed the stalled connections: the clients saw a closed connection, not
    # their own 10 s read timeout (nor the 30 s stall's end).
    assert not any(isinstance(e, requests.Timeout) for e in errors)
    assert not any(
        isinstance(a, urllib3.exceptions.ReadTimeoutError) for e in errors for a in e.args
    )


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"balance_usd": -1}, "balance_usd"),
        ({"total_spent_usd": -0.01}, "total_spent_usd"),
        ({"price_per_second": -0.05}, "price_per_second"),
        ({"max_upload_bytes": 0}, "max_upload_bytes"),
        ({"polls_to_complete": 0}, "polls_to_complete"),
        ({"port": 70000}, "port"),
        ({"api_keys": []}, "api_keys"),
        ({"api_keys": "sk-one-key"}, "api_keys"),
        ({"api_keys": ["sk a"]}, "api_keys"),
    ],
)
def test_invalid_options_raise_value_error_naming_the_option(
    options: dict[str, Any], name: str
) -> None:
    """A bad option fails at construction with a ValueError that names it."""
    with pytest.raises(ValueError, match=name):
        FakeVinciServer(**options)


def test_rate_limit_config_validates_and_converts() -> None:
    """RateLimitConfig rejects bad values and converts a timedelta period to seconds."""
    with pytest.raises(ValueError, match="requests"):
        RateLimitConfig(requests=0)
    with pytest.raises(ValueError, match="period"):
        RateLimitConfig(period=0)
    config = RateLimitConfig(period=timedelta(seconds=2))
    assert config.period == 2.0
    assert config.period_seconds == 2.0


def test_fault_constructors_validate() -> None:
    """Faults reject impossible statuses, negative waits and unsupported after=True."""
    with pytest.raises(ValueError, match="status_code"):
        Fault.status(99)
    with pytest.raises(ValueError, match="seconds"):
        Fault.delay(-1)
    with pytest.raises(ValueError, match="after"):
        Fault(kind="truncated", after=True)
    with pytest.raises(ValueError, match="kind"):
        Fault(kind="explode")  # type: ignore[arg-type]


def test_script_rejects_non_faults_and_relative_paths(server: FakeVinciServer) -> None:
    """script() takes Fault objects and paths starting with a slash."""
    with pytest.raises(TypeError):
        server.script(503)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        server.script(Fault.reset(), path="billing/balance")


# -- generation ----------------------------------------------------------------------------


def test_text_to_video_creates_and_charges_a_job(server: FakeVinciServer, client: Client) -> None:
    """A valid request answers pending with cost and duration, and charges the balance."""
    response = client.post(T2V, json=PROMPT)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "request_id",
        "status",
        "estimated_cost_usd",
        "estimated_duration_seconds",
    }
    assert re.fullmatch(r"req_[0-9a-f]+", body["request_id"])
    assert body["status"] == "pending"
    assert body["estimated_cost_usd"] == 0.25
    assert body["estimated_duration_seconds"] == 5
    assert server.jobs_created == 1
    assert server.balance_usd == 99.75
    assert server.total_spent_usd == 0.25


def test_text_to_video_charges_duration_times_price(serve: Serve) -> None:
    """The charge is duration_seconds * price_per_second."""
    srv, c = serve(price_per_second=0.1, balance_usd=10)
    body = c.post(
        T2V, json={**PROMPT, "duration_seconds": 8, "aspect_ratio": "9:16", "seed": 42}
    ).json()
    assert body["estimated_cost_usd"] == 0.8
    assert body["estimated_duration_seconds"] == 8
    assert srv.balance_usd == 9.2


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"data": "not json"}, "valid JSON"),
        ({"json": ["a list"]}, "JSON object"),
        ({"json": {}}, "prompt is required"),
        ({"json": {"prompt": ""}}, "prompt must be a non-empty string"),
        ({"json": {"prompt": "   "}}, "prompt must be a non-empty string"),
        ({"json": {"prompt": 5}}, "prompt must be a non-empty string"),
        ({"json": {**PROMPT, "duration_seconds": 0}}, "duration_seconds"),
        ({"json": {**PROMPT, "duration_seconds": 11}}, "duration_seconds"),
        ({"json": {**PROMPT, "duration_seconds": "5"}}, "duration_seconds"),
        ({"json": {**PROMPT, "duration_seconds": 5.5}}, "duration_seconds"),
        ({"json": {**PROMPT, "duration_seconds": True}}, "duration_seconds"),
        ({"json": {**PROMPT, "aspect_ratio": "4:3"}}, "aspect_ratio"),
        ({"json": {**PROMPT, "seed": "42"}}, "seed"),
    ],
)
def test_text_to_video_rejects_bad_payloads_with_400(
    server: FakeVinciServer, client: Client, kwargs: dict[str, Any], detail: str
) -> None:
    """Non-JSON, wrong types and out-of-range values get 400 with a detail; no charge."""
    response = client.post(T2V, **kwargs)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert server.jobs_created == 0
    assert server.balance_usd == 100.0


def test_insufficient_balance_gets_402_with_the_documented_detail(serve: Serve) -> None:
    """A job the balance cannot cover gets 402 with both amounts; nothing is charged."""
    srv, c = serve(balance_usd=1.25, price_per_second=0.25)
    response = c.post(T2V, json={**PROMPT, "duration_seconds": 10})
    assert response.status_code == 402
    assert response.json() == {
        "detail": "Insufficient balance. Current balance: $1.25, required: $2.50"
    }
    assert srv.jobs_created == 0
    assert srv.balance_usd == 1.25


def test_a_balance_exactly_covering_the_cost_is_enough(serve: Serve) -> None:
    """A balance equal to the cost is accepted and drops to $0.00."""
    _, c = serve(balance_usd=0.25)
    assert c.post(T2V, json=PROMPT).status_code == 200
    response = c.post(T2V, json=PROMPT)
    assert response.status_code == 402
    assert response.json()["detail"].endswith("Current balance: $0.00, required: $0.25")


@pytest.mark.parametrize(("filename", "image"), [("a.png", PNG), ("a.jpg", JPEG)])
def test_image_to_video_accepts_png_and_jpeg(
    server: FakeVinciServer, client: Client, filename: str, image: bytes
) -> None:
    """A multipart upload of a PNG or JPEG with a prompt creates and charges a job."""
    response = client.post(
        I2V,
        files={"image": (filename, image, "application/octet-stream")},
        data={"prompt": "Make it move", "duration_seconds": "3"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending"
    assert body["estimated_cost_usd"] == 0.15
    assert body["estimated_duration_seconds"] == 3
    assert server.jobs_created == 1


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"files": {"image": ("a.gif", b"GIF89a" + bytes(64))}, "data": PROMPT}, "JPEG or PNG"),
        ({"files": {"other": ("a.png", PNG)}, "data": PROMPT}, "image is required"),
        ({"files": {"image": ("a.png", PNG)}}, "prompt is required"),
        (
            {"files": {"image": ("a.png", PNG)}, "data": {**PROMPT, "duration_seconds": "11"}},
            "duration_seconds",
        ),
        (
            {"files": {"image": ("a.png", PNG)}, "data": {**PROMPT, "duration_seconds": "x"}},
            "duration_seconds",
        ),
        ({"json": PROMPT}, "multipart/form-data"),
    ],
)
def test_image_to_video_rejects_bad_uploads_with_400(
    server: FakeVinciServer, client: Client, kwargs: dict[str, Any], detail: str
) -> None:
    """Wrong file types, missing fields and bad durations get 400 with a detail."""
    response = client.post(I2V, **kwargs)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert server.jobs_created == 0


def test_upload_over_max_upload_bytes_gets_413_and_keeps_the_connection(serve: Serve) -> None:
    """A body over max_upload_bytes gets 413 unread; a small one is drained for keep-alive."""
    srv, c = serve(max_upload_bytes=1024)
    response = c.post(I2V, files={"image": ("a.png", PNG + bytes(5000))}, data=PROMPT)
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert c.get(BALANCE).status_code == 200
    first, second = srv.requests
    assert first.body == b""
    assert first.connection_id == second.connection_id
    assert srv.jobs_created == 0


def test_default_upload_limit_is_10_mib(server: FakeVinciServer, client: Client) -> None:
    """An 11 MiB upload gets a readable 413 (not a reset) from a default server."""
    big = PNG + bytes(11 * 1024 * 1024)
    response = client.post(I2V, files={"image": ("a.png", big)}, data=PROMPT)
    assert response.status_code == 413
    assert client.get(BALANCE).status_code == 200


def test_chunked_upload_over_the_limit_gets_413(serve: Serve) -> None:
    """A chunked body (no Content-Length) is capped while read and gets 413."""
    _, c = serve(max_upload_bytes=1000)
    chunks = iter([b'{"prompt": "' + b"x" * 800, b"x" * 800 + b'"}'])
    response = c.post(T2V, data=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


# -- status polling ----------------------------------------------------------------------------


def test_status_advances_one_step_per_poll(client: Client) -> None:
    """pending, then processing with progress, then completed on the third poll."""
    request_id = create_job(client)
    polls = [client.get(f"/status/{request_id}").json() for _ in range(4)]
    assert polls[0] == {"request_id": request_id, "status": "pending", "estimated_cost_usd": 0.25}
    assert set(polls[1]) == {"request_id", "status", "estimated_cost_usd", "progress"}
    assert polls[1]["status"] == "processing"
    assert isinstance(polls[1]["progress"], int)
    assert 0 < polls[1]["progress"] < 100
    assert polls[2] == {
        "request_id": request_id,
        "status": "completed",
        "video_url": polls[2]["video_url"],
        "duration_seconds": 5.0,
        "cost_usd": 0.25,
    }
    assert isinstance(polls[2]["duration_seconds"], float)
    assert polls[2]["video_url"].endswith(f"{request_id}.mp4")
    assert polls[3] == polls[2]


def test_polls_to_complete_sets_the_length_of_a_job(serve: Serve) -> None:
    """polls_to_complete=1 completes at once; 5 shows rising progress on polls 2 to 4."""
    _, quick = serve(polls_to_complete=1)
    assert quick.get(f"/status/{create_job(quick)}").json()["status"] == "completed"
    _, slow = serve(polls_to_complete=5)
    request_id = create_job(slow)
    polls = [slow.get(f"/status/{request_id}").json() for _ in range(5)]
    assert [p["status"] for p in polls] == ["pending"] + ["processing"] * 3 + ["completed"]
    progress = [p["progress"] for p in polls[1:4]]
    assert progress == sorted(set(progress))


def test_status_of_an_unknown_job_is_404(client: Client) -> None:
    """An unknown request_id gets 404 {"detail": "Job not found"}."""
    response = client.get("/status/req_nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


def test_fail_next_jobs_makes_the_next_jobs_fail(server: FakeVinciServer, client: Client) -> None:
    """fail_next_jobs(1) makes the next job end failed with the error; the one after completes."""
    server.fail_next_jobs(1, error="Content policy violation")
    failing, working = create_job(client), create_job(client)
    for _ in range(2):
        client.get(f"/status/{failing}")
        client.get(f"/status/{working}")
    assert client.get(f"/status/{failing}").json() == {
        "request_id": failing,
        "status": "failed",
        "error": "Content policy violation",
    }
    assert client.get(f"/status/{working}").json()["status"] == "completed"


# -- billing -------------------------------------------------------------------------------


def test_balance_reports_balance_and_total_spent(serve: Serve) -> None:
    """GET /billing/balance reports both amounts and follows charges."""
    _, c = serve(balance_usd=25.50, total_spent_usd=134.75)
    assert c.get(BALANCE).json() == {"balance_usd": 25.5, "total_spent_usd": 134.75}
    create_job(c)
    assert c.get(BALANCE).json() == {"balance_usd": 25.25, "total_spent_usd": 135.0}


def test_usage_summarises_the_jobs_of_the_period(client: Client) -> None:
    """GET /billing/usage counts jobs, seconds and cost; days defaults to 30."""
    create_job(client)
    create_job(client, duration_seconds=3)
    assert client.get("/billing/usage").json() == {
        "period_days": 30,
        "total_requests": 2,
        "total_seconds": 8,
        "total_cost_usd": 0.4,
        "current_balance_usd": 99.6,
        "total_spent_usd": 0.4,
    }
    assert client.get("/billing/usage", params={"days": 7}).json()["period_days"] == 7


@pytest.mark.parametrize("days", ["0", "91", "-1", "abc", "1.5"])
def test_usage_rejects_days_out_of_range(client: Client, days: str) -> None:
    """days outside 1..90, or not an integer, gets 400."""
    response = client.get("/billing/usage", params={"days": days})
    assert response.status_code == 400
    assert "days" in response.json()["detail"]


# -- API keys -----------------------------------------------------------------------------


def test_create_key_returns_a_new_working_key(server: FakeVinciServer, client: Client) -> None:
    """POST /keys returns the documented fields and a key that authenticates."""
    body = client.post("/keys", json={"name": "ci", "rate_limit": 20}).json()
    assert set(body) == {"key_id", "name", "api_key", "rate_limit", "created_at"}
    assert re.fullmatch(r"vinci_[0-9a-f]+", body["key_id"])
    assert body["name"] == "ci"
    assert body["api_key"].startswith("sk-")
    assert body["rate_limit"] == 20
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    with Client(server, api_key=body["api_key"]) as other:
        assert other.get(BALANCE).status_code == 200


def test_create_key_defaults_rate_limit_to_10(client: Client) -> None:
    """rate_limit defaults to 10 requests per minute."""
    assert client.post("/keys", json={"name": "ci"}).json()["rate_limit"] == 10


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": ""},
        {"name": 7},
        {"name": "ci", "rate_limit": 0},
        {"name": "ci", "rate_limit": 101},
        {"name": "ci", "rate_limit": "10"},
    ],
)
def test_create_key_rejects_bad_payloads_with_400(client: Client, payload: dict[str, Any]) -> None:
    """A missing name or a rate_limit outside 1..100 gets 400."""
    response = client.post("/keys", json=payload)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_list_keys_describes_every_key(client: Client) -> None:
    """GET /keys lists each key with a preview, never the secret, and a count."""
    created = client.post("/keys", json={"name": "ci"}).json()
    body = client.get("/keys").json()
    assert body["count"] == 2
    default, new = body["api_keys"]
    for key in (default, new):
        assert set(key) == {
            "key_id",
            "name",
            "is_active",
            "created_at",
            "last_used",
            "key_preview",
            "rate_limit",
        }
        assert key["is_active"] is True
    assert default["key_preview"] == "sk-te...cdef"
    assert default["last_used"] is not None
    assert new["key_id"] == created["key_id"]
    assert new["last_used"] is None
    assert new["key_preview"] == f"{created['api_key'][:5]}...{created['api_key'][-4:]}"


def test_revoked_key_gets_401(server: FakeVinciServer, client: Client) -> None:
    """DELETE /keys/{key_id} answers message and key_id; the key then gets 401."""
    created = client.post("/keys", json={"name": "ci"}).json()
    response = client.delete(f"/keys/{created['key_id']}")
    assert response.status_code == 200
    assert set(response.json()) == {"message", "key_id"}
    assert response.json()["key_id"] == created["key_id"]
    with Client(server, api_key=created["api_key"]) as revoked:
        assert revoked.get(BALANCE).status_code == 401
    assert client.get("/keys").json()["api_keys"][1]["is_active"] is False


def test_revoking_an_unknown_key_is_404(client: Client) -> None:
    """DELETE /keys/{unknown} gets 404."""
    response = client.delete("/keys/vinci_nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "API key not found"}


# -- auth and routing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", T2V),
        ("POST", I2V),
        ("GET", "/status/req_x"),
        ("GET", BALANCE),
        ("GET", "/billing/usage"),
        ("POST", "/keys"),
        ("GET", "/keys"),
        ("DELETE", "/keys/vinci_x"),
    ],
)
def test_every_endpoint_needs_an_api_key(client: Client, method: str, path: str) -> None:
    """Without Authorization every endpoint answers 401 {"detail": "Invalid API key"}."""
    response = client.request(method, path, headers={"Authorization": None})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sk-unknown", "Basic c2stdGVzdA==", "sk-test-0123456789abcdef", "Bearer "],
)
def test_unknown_keys_and_malformed_headers_get_401(client: Client, authorization: str) -> None:
    """An unknown key, another scheme or a missing scheme gets 401."""
    response = client.get(BALANCE, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}


def test_every_configured_key_authenticates(serve: Serve) -> None:
    """All api_keys are valid; the first is server.api_key."""
    srv, _ = serve(api_keys=["sk-first", "sk-second"])
    assert srv.api_key == "sk-first"
    for key in ("sk-first", "sk-second"):
        with Client(srv, api_key=key) as c:
            assert c.get(BALANCE).status_code == 200


@pytest.mark.parametrize("url", ["/api/v1/nope", "/elsewhere"])
def test_unknown_routes_get_404_json(server: FakeVinciServer, client: Client, url: str) -> None:
    """Paths outside the API get 404 with a JSON detail."""
    response = client.get(f"http://127.0.0.1:{server.port}{url}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_wrong_method_gets_405_json(client: Client) -> None:
    """A known path with the wrong method gets 405 with Allow and a JSON detail."""
    response = client.get(T2V)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert "POST" in response.headers["Allow"]


# -- rate limits -----------------------------------------------------------------------------


def test_no_rate_limit_headers_by_default(client: Client) -> None:
    """Without a RateLimitConfig no X-RateLimit-* header is sent."""
    response = client.get(BALANCE)
    assert not [name for name in response.headers if name.lower().startswith("x-ratelimit")]


def test_rate_limit_headers_count_down(serve: Serve) -> None:
    """Limit, Remaining and Reset (integer Unix seconds) follow each request."""
    _, c = serve(rate_limit=RateLimitConfig(requests=3, period=60))
    before = time.time()
    responses = [c.get(BALANCE) for _ in range(3)]
    assert [r.headers["X-RateLimit-Limit"] for r in responses] == ["3"] * 3
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0"]
    reset = int(responses[0].headers["X-RateLimit-Reset"])
    assert before + 59 <= reset <= time.time() + 61


def test_over_the_limit_gets_429_without_retry_after(serve: Serve) -> None:
    """The request over the limit gets 429 with the documented detail and no Retry-After."""
    _, c = serve(rate_limit=RateLimitConfig(requests=1, period=60))
    assert c.get(BALANCE).status_code == 200
    response = c.get(BALANCE)
    assert response.status_code == 429
    match = re.fullmatch(
        r"Rate limit exceeded\. Try again in (\d+) seconds\.", response.json()["detail"]
    )
    assert match is not None
    assert 59 <= int(match[1]) <= 60
    assert "Retry-After" not in response.headers
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_retry_after_on_429_when_configured(serve: Serve) -> None:
    """send_retry_after=True adds Retry-After, the seconds of the detail."""
    _, c = serve(rate_limit=RateLimitConfig(requests=1, period=30, send_retry_after=True))
    c.get(BALANCE)
    response = c.get(BALANCE)
    assert response.status_code == 429
    assert (
        response.json()["detail"]
        == f"Rate limit exceeded. Try again in {response.headers['Retry-After']} seconds."
    )


def test_rate_limit_is_per_key(serve: Serve) -> None:
    """One key over its limit does not limit another key."""
    srv, first = serve(api_keys=["sk-a", "sk-b"], rate_limit=RateLimitConfig(requests=1))
    first.get(BALANCE)
    assert first.get(BALANCE).status_code == 429
    with Client(srv, api_key="sk-b") as second:
        assert second.get(BALANCE).status_code == 200


def test_rate_limit_window_resets_after_its_period(serve: Serve) -> None:
    """After period seconds the key may send again."""
    _, c = serve(rate_limit=RateLimitConfig(requests=1, period=0.1))
    assert c.get(BALANCE).status_code == 200
    assert c.get(BALANCE).status_code == 429
    time.sleep(0.15)
    assert c.get(BALANCE).status_code == 200


def test_created_keys_use_their_own_rate_limit(serve: Serve) -> None:
    """A key from POST /keys is limited to its rate_limit per period."""
    srv, c = serve(rate_limit=RateLimitConfig(requests=5))
    created = c.post("/keys", json={"name": "tight", "rate_limit": 1}).json()
    with Client(srv, api_key=created["api_key"]) as tight:
        assert tight.get(BALANCE).headers["X-RateLimit-Limit"] == "1"
        assert tight.get(BALANCE).status_code == 429


# -- X-Request-ID -------------------------------------------------------------------------------


def test_no_request_id_header_by_default(client: Client) -> None:
    """X-Request-ID is not sent unless asked for."""
    assert "X-Request-ID" not in client.get(BALANCE).headers


def test_request_id_header_on_every_answer_when_enabled(serve: Serve) -> None:
    """send_request_id_header=True puts a fresh X-Request-ID on answers, errors and faults."""
    srv, c = serve(send_request_id_header=True)
    srv.script(Fault.status(503))
    responses = [
        c.get(BALANCE),
        c.get(BALANCE),
        c.get(BALANCE, headers={"Authorization": None}),
        c.get("/nope"),
    ]
    assert [r.status_code for r in responses] == [503, 200, 401, 404]
    ids = [r.headers["X-Request-ID"] for r in responses]
    assert len(set(ids)) == len(ids)


# -- faults -----------------------------------------------------------------------------------


def test_status_fault_answers_without_running_the_endpoint(
    server: FakeVinciServer, client: Client
) -> None:
    """Fault.status(503) answers 503 {"detail": "Service Unavailable"}; no job is created."""
    server.script(Fault.status(503))
    response = client.post(T2V, json=PROMPT)
    assert response.status_code == 503
    assert response.json() == {"detail": "Service Unavailable"}
    assert server.jobs_created == 0
    assert client.post(T2V, json=PROMPT).status_code == 200


@pytest.mark.parametrize(
    ("retry_after", "sent"),
    [
        ("0.2", "0.2"),
        (0.2, "0.2"),
        (-1, "-1"),
        ("garbage", "garbage"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
def test_status_fault_sends_retry_after_verbatim(
    server: FakeVinciServer, client: Client, retry_after: str | float, sent: str
) -> None:
    """retry_after is sent as the Retry-After header exactly as given."""
    server.script(Fault.status(429, retry_after=retry_after))
    assert client.get(BALANCE).headers["Retry-After"] == sent


def test_status_fault_sends_custom_headers_and_bodies(
    server: FakeVinciServer, client: Client
) -> None:
    """A dict body is sent as JSON, bytes raw; extra headers are added."""
    server.script(
        Fault.status(500, body={"error": "boom"}, headers={"X-Custom": "1"}),
        Fault.status(502, body=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"}),
    )
    first = client.get(BALANCE)
    assert (first.status_code, first.json(), first.headers["X-Custom"]) == (
        500,
        {"error": "boom"},
        "1",
    )
    second = client.get(BALANCE)
    assert second.status_code == 502
    assert second.text == "<html>bad gateway</html>"
    assert second.headers["Content-Type"] == "text/html"


def test_status_fault_after_runs_and_charges_the_endpoint(
    server: FakeVinciServer, client: Client
) -> None:
    """With after=True the job is created and charged, yet the client gets the fault status."""
    server.script(Fault.status(500, after=True))
    response = client.post(T2V, json=PROMPT)
    assert response.status_code == 500
    assert server.jobs_created == 1
    assert server.balance_usd == 99.75


def test_reset_fault_raises_connection_error_and_creates_no_job(
    server: FakeVinciServer, client: Client
) -> None:
    """Fault.reset() aborts the connection: requests.ConnectionError, no job, next call works."""
    server.script(Fault.reset())
    with pytest.raises(requests.ConnectionError):
        client.post(T2V, json=PROMPT)
    assert server.jobs_created == 0
    assert client.post(T2V, json=PROMPT).status_code == 200
    reset, retried = server.requests
    assert reset.fault == "reset"
    assert retried.connection_id != reset.connection_id


def test_reset_after_creates_and_charges_the_job(server: FakeVinciServer, client: Client) -> None:
    """Fault.reset(after=True) resets the connection once the job has been charged."""
    server.script(Fault.reset(after=True))
    with pytest.raises(requests.ConnectionError):
        client.post(T2V, json=PROMPT)
    assert server.jobs_created == 1
    assert server.balance_usd == 99.75


def test_reset_mid_body_sends_headers_then_resets(server: FakeVinciServer, client: Client) -> None:
    """Status and headers arrive, then reading the body fails."""
    server.script(Fault.reset_mid_body())
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        client.post(T2V, json=PROMPT)
    assert server.jobs_created == 1
    assert server.requests[0].fault == "reset_mid_body"


def test_stall_after_headers_times_out_reading_the_body(
    server: FakeVinciServer, client: Client
) -> None:
    """Headers arrive at once; a 0.2 s read timeout fires while waiting for the body."""
    server.script(Fault.stall_after_headers(30))
    with client.get(BALANCE, timeout=0.2, stream=True) as response:
        assert response.status_code == 200
        with pytest.raises(requests.ConnectionError) as info:
            _ = response.content
    assert isinstance(info.value.args[0], urllib3.exceptions.ReadTimeoutError)


def test_stall_after_headers_then_sends_the_body(server: FakeVinciServer, client: Client) -> None:
    """After the stall the complete body follows."""
    server.script(Fault.stall_after_headers(0.1))
    started = time.monotonic()
    response = client.get(BALANCE)
    assert time.monotonic() - started >= 0.1
    assert response.json() == {"balance_usd": 100.0, "total_spent_usd": 0.0}


def test_truncated_fault_sends_a_short_body_then_closes(
    server: FakeVinciServer, client: Client
) -> None:
    """Content-Length promises more than is sent; reading fails; the next call reconnects."""
    server.script(Fault.truncated())
    with client.get(BALANCE, stream=True) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) > 0
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
            _ = response.content
    assert client.get(BALANCE).status_code == 200
    truncated, after = server.requests
    assert truncated.fault == "truncated"
    assert after.connection_id != truncated.connection_id


def test_delay_fault_causes_a_read_timeout(server: FakeVinciServer, client: Client) -> None:
    """Nothing is sent during a delay, so a shorter timeout raises requests.ReadTimeout."""
    server.script(Fault.delay(30))
    with pytest.raises(requests.ReadTimeout):
        client.get(BALANCE, timeout=0.2)


def test_delay_fault_then_serves_normally(server: FakeVinciServer, client: Client) -> None:
    """After the delay the request is handled as usual."""
    server.script(Fault.delay(0.1))
    started = time.monotonic()
    assert client.post(T2V, json=PROMPT).status_code == 200
    assert time.monotonic() - started >= 0.1
    assert server.jobs_created == 1


def test_body_fault_sends_raw_and_wrongly_shaped_bodies(
    server: FakeVinciServer, client: Client
) -> None:
    """Fault.body sends non-JSON errors with their content type, and JSON of any shape."""
    server.script(
        Fault.body(500, "<html>oops</html>", content_type="text/html"),
        Fault.body(200, {"unexpected": True}),
    )
    html = client.get(BALANCE)
    assert (html.status_code, html.text, html.headers["Content-Type"]) == (
        500,
        "<html>oops</html>",
        "text/html",
    )
    assert client.get(BALANCE).json() == {"unexpected": True}


def test_body_fault_can_send_a_huge_body(server: FakeVinciServer, client: Client) -> None:
    """A 10 MB body arrives whole."""
    server.script(Fault.body(500, b"x" * 10_000_000, content_type="text/plain"))
    response = client.get(BALANCE)
    assert response.status_code == 500
    assert len(response.content) == 10_000_000


def test_script_applies_faults_in_order_to_matching_requests(
    server: FakeVinciServer, client: Client
) -> None:
    """Faults for a path apply in FIFO order to that path only."""
    server.script(Fault.status(500), Fault.status(502), path=T2V)
    assert server.pending_faults == 2
    assert client.get(BALANCE).status_code == 200
    statuses = [client.post(T2V, json=PROMPT).status_code for _ in range(3)]
    assert statuses == [500, 502, 200]
    assert server.pending_faults == 0


def test_script_matches_methods_and_path_patterns(server: FakeVinciServer, client: Client) -> None:
    """method matches in any case; path accepts fnmatch patterns and full API paths."""
    server.script(Fault.status(503), path="/status/*", method="get")
    server.script(Fault.status(504), path="/api/v1/billing/balance")
    assert client.post(T2V, json=PROMPT).status_code == 200
    assert client.get("/status/req_any").status_code == 503
    assert client.get(BALANCE).status_code == 504


def test_outage_answers_every_request_until_it_ends(
    server: FakeVinciServer, client: Client
) -> None:
    """During an outage every request gets its status and Retry-After; then service resumes."""
    server.outage(0.15, status=503, retry_after=1)
    down = [client.get(BALANCE), client.post(T2V, json=PROMPT)]
    assert [r.status_code for r in down] == [503, 503]
    assert [r.headers["Retry-After"] for r in down] == ["1", "1"]
    assert down[0].json() == {"detail": "Service Unavailable"}
    assert server.jobs_created == 0
    assert [r.fault for r in server.requests] == ["outage", "outage"]
    time.sleep(0.2)
    assert client.post(T2V, json=PROMPT).status_code == 200


def test_scripted_fault_takes_precedence_over_an_outage(
    server: FakeVinciServer, client: Client
) -> None:
    """A request with a scripted fault gets the fault, not the outage status."""
    server.outage(60, status=503)
    server.script(Fault.status(429))
    assert client.get(BALANCE).status_code == 429
    assert client.get(BALANCE).status_code == 503


def test_set_latency_delays_every_request(server: FakeVinciServer, client: Client) -> None:
    """set_latency adds its wait to each request."""
    server.set_latency(0.05)
    started = time.monotonic()
    client.get(BALANCE)
    client.get(BALANCE)
    assert time.monotonic() - started >= 0.1


def test_clear_faults_drops_script_outage_latency_and_failures(
    server: FakeVinciServer, client: Client
) -> None:
    """After clear_faults() requests are served normally and jobs complete."""
    server.script(Fault.reset())
    server.outage(60)
    server.set_latency(30)
    server.fail_next_jobs(1)
    server.clear_faults()
    assert server.pending_faults == 0
    request_id = create_job(client)
    polls = [client.get(f"/status/{request_id}").json()["status"] for _ in range(3)]
    assert polls[-1] == "completed"


def test_outage_and_latency_validate_their_arguments(server: FakeVinciServer) -> None:
    """Negative durations and impossible statuses raise ValueError."""
    with pytest.raises(ValueError, match="seconds"):
        server.outage(-1)
    with pytest.raises(ValueError, match="status_code"):
        server.outage(1, status=42)
    with pytest.raises(ValueError, match="seconds"):
        server.set_latency(float("inf"))
    with pytest.raises(ValueError, match="n must"):
        server.fail_next_jobs(-1)


# -- observation ------------------------------------------------------------------------------


def test_request_count_counts_every_request(server: FakeVinciServer, client: Client) -> None:
    """Served, unauthorised, faulted and reset requests all count."""
    server.script(Fault.status(500), Fault.reset(), path=T2V)
    client.get(BALANCE)
    client.get(BALANCE, headers={"Authorization": None})
    client.post(T2V, json=PROMPT)
    with pytest.raises(requests.ConnectionError):
        client.post(T2V, json=PROMPT)
    assert server.request_count == 4
    assert [r.fault for r in server.requests] == [None, None, "status", "reset"]


def test_requests_are_recorded_as_received(server: FakeVinciServer, client: Client) -> None:
    """Each RecordedRequest holds method, relative path, query, headers, body and time."""
    before = time.monotonic()
    client.post(T2V, json=PROMPT, headers={"Idempotency-Key": "abc", "traceparent": "00-x"})
    client.get("/billing/usage", params={"days": "7"})
    post, get = server.requests
    assert isinstance(post, RecordedRequest)
    assert (post.method, post.path, post.query, post.fault) == ("POST", T2V, {}, None)
    assert post.headers["Authorization"] == f"Bearer {server.api_key}"
    assert post.headers["Idempotency-Key"] == "abc"
    assert post.headers["traceparent"] == "00-x"
    assert post.json() == PROMPT
    assert before <= post.time <= get.time <= time.monotonic()
    assert (get.method, get.path, get.query, get.body) == (
        "GET",
        "/billing/usage",
        {"days": "7"},
        b"",
    )


def test_count_filters_by_method_and_path(server: FakeVinciServer, client: Client) -> None:
    """count() matches method in any case and path exactly or by pattern."""
    request_id = create_job(client)
    client.get(f"/status/{request_id}")
    client.get(f"/status/{request_id}")
    assert server.count() == 3
    assert server.count(method="post") == 1
    assert server.count(path=T2V) == 1
    assert server.count(method="GET", path="/status/*") == 2
    assert server.count(path=f"/api/v1/status/{request_id}") == 2


def test_balance_is_settable_and_validated(server: FakeVinciServer, client: Client) -> None:
    """Setting balance_usd changes what the API reports; a negative balance is refused."""
    server.balance_usd = 1.5
    assert client.get(BALANCE).json()["balance_usd"] == 1.5
    with pytest.raises(ValueError, match="balance_usd"):
        server.balance_usd = -1


def test_reset_stats_forgets_counters_but_keeps_the_account(
    server: FakeVinciServer, client: Client
) -> None:
    """reset_stats() zeroes request_count, requests and jobs_created; the balance stays."""
    create_job(client)
    server.reset_stats()
    assert (server.request_count, server.requests, server.jobs_created) == (0, [], 0)
    assert server.balance_usd == 99.75


def test_concurrent_creations_charge_exactly(serve: Serve) -> None:
    """Ten parallel creations against a $1.00 balance create exactly four $0.25 jobs."""
    srv, _ = serve(balance_usd=1.0)
    statuses: list[int] = []

    def create() -> None:
        with Client(srv) as c:
            statuses.append(c.post(T2V, json=PROMPT).status_code)

    threads = [threading.Thread(target=create) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 4 + [402] * 6
    assert srv.jobs_created == 4
    assert srv.balance_usd == 0.0


# -- HTTP ------------------------------------------------------------------------------------


def test_session_reuses_one_kept_alive_connection(server: FakeVinciServer, client: Client) -> None:
    """Several requests of one Session travel over a single HTTP/1.1 connection."""
    request_id = create_job(client)
    responses = [client.get(f"/status/{request_id}") for _ in range(3)]
    assert all(r.raw.version == 11 for r in responses)
    assert all(r.headers.get("Connection", "").lower() != "close" for r in responses)
    assert len({r.connection_id for r in server.requests}) == 1


def test_fake_vinci_fixture_yields_a_started_server(pytester: pytest.Pytester) -> None:
    """The fake_vinci fixture serves during the test, takes marker options, stops after."""
    pytester.makepyfile(
        """
        import pytest
        import requests

        SERVERS = []

        @pytest.mark.fake_vinci(balance_usd=2.5)
        def test_uses_the_server(fake_vinci):
            SERVERS.append(fake_vinci)
            response = requests.get(
                fake_vinci.url("/billing/balance"),
                headers={"Authorization": f"Bearer {fake_vinci.api_key}"},
                timeout=5,
            )
            assert response.json()["balance_usd"] == 2.5

        def test_server_was_stopped():
            assert not SERVERS[0].running
        """
    )
    installed = any(
        ep.name == "requests_resilience"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    args = [] if installed else ["-p", "requests_resilience.testing._pytest_plugin"]
    result = pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=2)

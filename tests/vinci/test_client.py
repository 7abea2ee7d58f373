"""VinciClient against the fake server over loopback: endpoints, errors, validation."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from requests_resilience import (
    AuthenticationError,
    BadRequestError,
    Call,
    ConfigurationError,
    InsufficientBalanceError,
    MissingAPIKeyError,
    Next,
    NotFoundError,
    PayloadTooLargeError,
    PipelineAdapter,
    RateLimitError,
    ServerError,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault, RateLimitConfig
from requests_resilience.vinci import (
    Balance,
    Job,
    UnexpectedResponseError,
    VinciClient,
    VinciInputError,
    build_pipeline,
    mount,
)

from .conftest import JPEG, PNG

# -- construction ------------------------------------------------------------------------


def test_the_client_mounts_its_own_session(fake_vinci: FakeVinciServer) -> None:
    """Without a session, the client creates one, mounts it and closes it."""
    client = VinciClient(api_key=fake_vinci.api_key, base_url=fake_vinci.base_url)
    with client:
        assert client.balance().balance_usd == 100.0
        adapter = client.session.get_adapter(fake_vinci.base_url + "/")
        assert isinstance(adapter, PipelineAdapter)
        assert isinstance(adapter.transport, HTTPAdapter)
        pools = adapter.transport.poolmanager.pools
        assert len(pools) == 1
    assert len(pools) == 0  # closed with the client


def test_a_given_mounted_session_is_used_and_left_open(
    session: requests.Session, fake_vinci: FakeVinciServer
) -> None:
    """A session already mounted with vinci.mount() is used as is and not closed."""
    mount(session, api_key=fake_vinci.api_key, base_url=fake_vinci.base_url)
    adapter = session.get_adapter(fake_vinci.base_url + "/")
    with VinciClient(session, base_url=fake_vinci.base_url) as client:
        assert client.balance().balance_usd == 100.0
    assert session.get_adapter(fake_vinci.base_url + "/") is adapter


def test_a_given_bare_session_gets_the_pipeline(
    session: requests.Session, fake_vinci: FakeVinciServer
) -> None:
    """A session without a pipeline on the base URL gets the Vinci one."""
    with VinciClient(session, api_key=fake_vinci.api_key, base_url=fake_vinci.base_url) as c:
        c.balance()
    assert fake_vinci.requests[0].headers["Authorization"] == f"Bearer {fake_vinci.api_key}"


def test_a_key_for_an_already_mounted_session_is_refused(session: requests.Session) -> None:
    """api_key would be ignored on a mounted session, so it is an error."""
    mount(session, api_key="sk-test-0123456789")
    with pytest.raises(ConfigurationError, match="already has a pipeline"):
        VinciClient(session, api_key="sk-other-0123456789")


def test_a_missing_key_fails_at_construction() -> None:
    """No key and no VINCI_API_KEY: MissingAPIKeyError before any request."""
    with pytest.raises(MissingAPIKeyError):
        VinciClient()


@pytest.mark.parametrize(
    "options",
    [
        {"request_timeout": 0},
        {"request_timeout": (1.0,)},
        {"balance_ttl": -1},
        {"max_upload_bytes": 0},
        {"price_per_second": float("nan")},
        {"clock": object()},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, object]) -> None:
    """Out-of-range options fail at construction."""
    with pytest.raises(ConfigurationError):
        VinciClient(api_key="sk-test-0123456789", **options)  # type: ignore[arg-type]


def test_the_key_is_in_no_repr(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """Neither the client, its session's adapter nor the pipeline shows the key."""
    key = fake_vinci.api_key
    adapter = client.session.get_adapter(client.base_url + "/")
    for text in (repr(client), str(client), repr(adapter), repr(client.balance_guard)):
        assert key not in text
    job = client.text_to_video("a fox")
    assert key not in repr(job)
    assert key not in repr(client.status(job))


# -- endpoints ---------------------------------------------------------------------------


def test_text_to_video_sends_the_documented_body(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """The JSON body carries prompt, duration, aspect ratio and seed; a Job comes back."""
    job = client.text_to_video("A fox", duration_seconds=4, aspect_ratio="1:1", seed=7)
    assert isinstance(job, Job)
    assert job.request_id.startswith("req_")
    assert (job.status, job.estimated_cost_usd, job.estimated_duration_seconds) == (
        "pending",
        0.2,
        4.0,
    )
    (sent,) = [r for r in fake_vinci.requests if r.method == "POST"]
    assert sent.json() == {
        "prompt": "A fox",
        "duration_seconds": 4,
        "aspect_ratio": "1:1",
        "seed": 7,
    }


def test_no_seed_is_sent_when_none_is_given(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """seed=None leaves the server's random default."""
    client.text_to_video("A fox")
    (sent,) = [r for r in fake_vinci.requests if r.method == "POST"]
    assert "seed" not in sent.json()


@pytest.mark.parametrize("kind", ["bytes", "path", "file"])
def test_image_to_video_uploads_the_image(
    fake_vinci: FakeVinciServer, client: VinciClient, tmp_path: Path, kind: str
) -> None:
    """A path, bytes or a binary file object is uploaded as multipart 'image'."""
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    if kind == "bytes":
        job = client.image_to_video(PNG, "The cat waves", duration_seconds=3)
    elif kind == "path":
        job = client.image_to_video(path, "The cat waves", duration_seconds=3)
    else:
        with path.open("rb") as f:
            job = client.image_to_video(f, "The cat waves", duration_seconds=3)
    assert job.estimated_cost_usd == 0.15
    (sent,) = [r for r in fake_vinci.requests if r.method == "POST"]
    assert sent.path == "/generate/image-to-video"
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert PNG in sent.body
    assert b'name="prompt"' in sent.body
    assert b"The cat waves" in sent.body
    assert b"Content-Type: image/png" in sent.body


def test_a_jpeg_upload_is_typed_as_jpeg(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """JPEG magic bytes give image/jpeg."""
    client.image_to_video(io.BytesIO(JPEG), "x")
    (sent,) = [r for r in fake_vinci.requests if r.method == "POST"]
    assert b"Content-Type: image/jpeg" in sent.body


def test_a_resent_upload_sends_the_same_bytes(fake_vinci: FakeVinciServer) -> None:
    """The multipart body is built once, so a re-send (a retry) is byte-identical."""

    def resend_on_503(call: Call, next: Next) -> requests.Response:
        first = next(call.evolve(request=call.request.copy()))
        if first.status_code != 503:
            return first
        first.close()
        return next(call.evolve(request=call.request.copy(), attempt=2))

    fake_vinci.script(Fault.status(503), path="/generate/image-to-video")
    pipeline = build_pipeline(api_key=fake_vinci.api_key, retry=resend_on_503)
    with VinciClient(base_url=fake_vinci.base_url, pipeline=pipeline) as client:
        client.image_to_video(io.BytesIO(PNG), "x")
    first, second = [r for r in fake_vinci.requests if r.method == "POST"]
    assert first.fault == "status"
    assert first.body == second.body
    assert first.headers["Content-Type"] == second.headers["Content-Type"]


def test_status_returns_a_typed_status(client: VinciClient) -> None:
    """Each poll advances the fake job: pending, processing, completed."""
    job = client.text_to_video("A fox")
    assert client.status(job).status == "pending"
    processing = client.status(job.request_id)
    assert (processing.status, processing.progress) == ("processing", 50.0)
    done = client.status(job)
    assert done.status == "completed"
    assert done.video_url is not None
    assert done.video_url.endswith(".mp4")
    assert (done.duration_seconds, done.cost_usd) == (5.0, 0.25)


def test_the_request_id_is_quoted_in_the_path(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """A request id with a slash cannot reach another path."""
    with pytest.raises(NotFoundError) as info:
        client.status("../billing/balance")
    assert info.value.response is not None
    assert fake_vinci.count(path="/billing/balance") == 0
    assert info.value.response.url.endswith("/status/..%2Fbilling%2Fbalance")


def test_balance_and_usage(client: VinciClient) -> None:
    """balance() and usage() return typed results that reflect a job."""
    client.text_to_video("A fox")
    assert client.balance() == Balance(balance_usd=99.75, total_spent_usd=0.25)
    usage = client.usage(days=7)
    assert (usage.period_days, usage.total_requests, usage.total_cost_usd) == (7, 1, 0.25)
    assert usage.current_balance_usd == 99.75


def test_keys_can_be_created_listed_used_and_revoked(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """create_key shows the secret once; the key works until revoked."""
    key = client.create_key("ci", rate_limit=20)
    assert key.api_key.startswith("sk-")
    assert key.api_key not in repr(key)
    assert (key.name, key.rate_limit) == ("ci", 20)
    assert key.created_at is not None
    listed = {k.key_id: k for k in client.list_keys()}
    assert listed[key.key_id].is_active
    assert key.api_key not in repr(listed[key.key_id])
    with VinciClient(api_key=key.api_key, base_url=fake_vinci.base_url) as other:
        assert other.balance().balance_usd == 100.0
        assert client.revoke_key(key.key_id).key_id == key.key_id
        assert not {k.key_id: k for k in client.list_keys()}[key.key_id].is_active
        with pytest.raises(AuthenticationError):
            other.balance()


# -- errors ------------------------------------------------------------------------------


def test_400_is_a_bad_request_error(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """A 400 raises BadRequestError with the server's detail."""
    fake_vinci.script(Fault.status(400, body={"detail": "prompt is required"}), path="/generate/*")
    with pytest.raises(BadRequestError) as info:
        client.text_to_video("A fox")
    assert (info.value.status_code, info.value.detail) == (400, "prompt is required")


def test_401_is_an_authentication_error(fake_vinci: FakeVinciServer) -> None:
    """A wrong key raises AuthenticationError, and the message does not echo the key."""
    with (
        VinciClient(api_key="sk-wrong-0123456789", base_url=fake_vinci.base_url) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.balance()
    assert info.value.status_code == 401
    assert "sk-wrong-0123456789" not in str(info.value)


@pytest.mark.fake_vinci(balance_usd=0.1)
def test_402_from_the_server_is_an_insufficient_balance_error(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """With the pre-check off, the server's 402 is raised with its detail and response."""
    with (
        VinciClient(
            api_key=fake_vinci.api_key,
            base_url=fake_vinci.base_url,
            clock=clock,
            balance_check=False,
        ) as client,
        pytest.raises(InsufficientBalanceError) as info,
    ):
        client.text_to_video("A fox")
    assert info.value.response is not None
    assert "Current balance: $0.10" in info.value.detail


def test_404_is_a_not_found_error_with_the_request_id(client: VinciClient) -> None:
    """An unknown job raises NotFoundError carrying the id that was asked for."""
    with pytest.raises(NotFoundError) as info:
        client.status("req_missing")
    assert info.value.request_id == "req_missing"
    with pytest.raises(NotFoundError):
        client.revoke_key("vinci_missing")


@pytest.mark.fake_vinci(max_upload_bytes=1024)
def test_413_is_a_payload_too_large_error(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """An upload over the server's (undocumented) limit raises PayloadTooLargeError."""
    with (
        VinciClient(
            api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, clock=clock
        ) as client,
        pytest.raises(PayloadTooLargeError) as info,
    ):
        client.image_to_video(PNG + b"\x00" * 4096, "x")
    assert info.value.status_code == 413


@pytest.mark.fake_vinci(rate_limit=RateLimitConfig(requests=1, period=60))
def test_429_is_a_rate_limit_error(client: VinciClient) -> None:
    """The server's rate limit raises RateLimitError with its detail."""
    client.balance()
    with pytest.raises(RateLimitError) as info:
        client.balance()
    assert info.value.status_code == 429
    assert "Rate limit exceeded" in info.value.detail
    assert info.value.retry_after is not None


def test_429_carries_retry_after(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """A Retry-After header is on the error."""
    fake_vinci.script(Fault.status(429, retry_after="7"))
    with pytest.raises(RateLimitError) as info:
        client.balance()
    assert info.value.retry_after == 7.0


def test_500_is_a_server_error(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """A 500 raises ServerError."""
    fake_vinci.script(Fault.status(500), path="/billing/balance")
    with pytest.raises(ServerError) as info:
        client.balance()
    assert info.value.status_code == 500


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault.body(200, "<html>maintenance</html>", content_type="text/html"), "not JSON"),
        (Fault.body(200, "[1, 2]"), "not an object"),
        (Fault.body(200, {"balance_usd": 1.0}), "total_spent_usd"),
        (Fault.body(200, {"balance_usd": "lots", "total_spent_usd": 0}), "balance_usd"),
    ],
)
def test_an_unreadable_200_is_an_unexpected_response_error(
    fake_vinci: FakeVinciServer, client: VinciClient, fault: Fault, match: str
) -> None:
    """A 200 that is not the documented JSON raises UnexpectedResponseError."""
    fake_vinci.script(fault, path="/billing/balance")
    with pytest.raises(UnexpectedResponseError, match=match) as info:
        client.balance()
    assert info.value.response is not None


def test_an_unreadable_creation_keeps_the_request_id(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """A creation answer missing fields still tells which job may exist."""
    fake_vinci.script(
        Fault.body(200, {"request_id": "req_42", "status": "pending"}), path="/generate/*"
    )
    with pytest.raises(UnexpectedResponseError) as info:
        client.text_to_video("A fox")
    assert info.value.request_id == "req_42"


# -- input validation: nothing is sent ---------------------------------------------------

INVALID_CALLS: list[tuple[str, Callable[[VinciClient], object]]] = [
    ("prompt", lambda c: c.text_to_video("")),
    ("prompt", lambda c: c.text_to_video("   ")),
    ("prompt", lambda c: c.text_to_video(None)),  # type: ignore[arg-type]
    ("duration_seconds", lambda c: c.text_to_video("a", duration_seconds=0)),
    ("duration_seconds", lambda c: c.text_to_video("a", duration_seconds=11)),
    ("duration_seconds", lambda c: c.text_to_video("a", duration_seconds=5.0)),  # type: ignore[arg-type]
    ("duration_seconds", lambda c: c.text_to_video("a", duration_seconds=True)),
    ("aspect_ratio", lambda c: c.text_to_video("a", aspect_ratio="4:3")),  # type: ignore[arg-type]
    ("seed", lambda c: c.text_to_video("a", seed="7")),  # type: ignore[arg-type]
    ("JPEG or PNG", lambda c: c.image_to_video(b"GIF89a" + b"\x00" * 10, "a")),
    ("empty", lambda c: c.image_to_video(b"", "a")),
    ("binary mode", lambda c: c.image_to_video(io.StringIO("text"), "a")),  # type: ignore[arg-type]
    ("path, bytes", lambda c: c.image_to_video(12, "a")),  # type: ignore[arg-type]
    ("cannot read", lambda c: c.image_to_video(Path("/nonexistent/cat.png"), "a")),
    ("prompt", lambda c: c.image_to_video(PNG, " ")),
    ("duration_seconds", lambda c: c.image_to_video(PNG, "a", duration_seconds=0)),
    ("days", lambda c: c.usage(days=0)),
    ("days", lambda c: c.usage(days=91)),
    ("name", lambda c: c.create_key(" ")),
    ("rate_limit", lambda c: c.create_key("ci", rate_limit=0)),
    ("rate_limit", lambda c: c.create_key("ci", rate_limit=101)),
    ("request_id", lambda c: c.status("")),
    ("request_id", lambda c: c.wait(" ")),
    ("key_id", lambda c: c.revoke_key("")),
]


@pytest.mark.parametrize(("match", "call"), INVALID_CALLS)
def test_invalid_input_is_refused_before_sending(
    fake_vinci: FakeVinciServer,
    client: VinciClient,
    match: str,
    call: Callable[[VinciClient], object],
) -> None:
    """A bad argument raises VinciInputError (a ValueError) and sends no request."""
    with pytest.raises(VinciInputError, match=match) as info:
        call(client)
    assert isinstance(info.value, ValueError)
    assert fake_vinci.request_count == 0


def test_an_image_over_the_limit_is_refused_before_sending(
    fake_vinci: FakeVinciServer, tmp_path: Path
) -> None:
    """max_upload_bytes is checked for bytes, files and paths, without a request."""
    path = tmp_path / "big.png"
    path.write_bytes(PNG + b"\x00" * 200)
    with VinciClient(
        api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, max_upload_bytes=100
    ) as client:
        for image in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
            with pytest.raises(VinciInputError, match="max_upload_bytes"):
                client.image_to_video(image, "a")
    assert fake_vinci.request_count == 0


def test_default_client_retries_a_503(
    fake_vinci: FakeVinciServer, resilient_client: VinciClient, clock: FakeClock
) -> None:
    """The preset's retry turns a 503 then 200 into a balance, after one wait."""
    fake_vinci.script(Fault.status(503), path="/billing/balance")
    assert resilient_client.balance().balance_usd == fake_vinci.balance_usd
    assert fake_vinci.count(path="/billing/balance") == 2
    assert len(clock.sleeps) == 1


def test_default_client_never_resends_a_job_after_a_500(
    fake_vinci: FakeVinciServer, resilient_client: VinciClient
) -> None:
    """A job whose creation got a 500 after the server charged it is not sent again."""
    fake_vinci.script(Fault.status(500, after=True), path="/generate/text-to-video")
    with pytest.raises(ServerError):
        resilient_client.text_to_video("a fox in the snow")
    assert fake_vinci.count(method="POST", path="/generate/text-to-video") == 1
    assert fake_vinci.jobs_created == 1

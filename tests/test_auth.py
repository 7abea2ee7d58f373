"""APIKeyAuth: the header on each attempt, the key from the environment, and no leaks."""

from __future__ import annotations

import pickle

import pytest
import requests
from structlog.testing import capture_logs

from requests_resilience import (
    APIKeyAuth,
    AuthenticationError,
    Call,
    ConfigurationError,
    MissingAPIKeyError,
    Next,
    Pipeline,
    StatusErrors,
)
from requests_resilience.vinci import mount as vinci_mount
from tests.helpers import ScriptedTransport, prepared, response, run

KEY = "sk-authtest-5f1e2d3c4b5a69788796"


def test_sets_bearer_header() -> None:
    """The Authorization header carries 'Bearer <key>'."""
    transport = ScriptedTransport(response(200))
    run(Pipeline(APIKeyAuth(KEY)), transport)
    assert transport.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def test_custom_header_without_scheme() -> None:
    """Another header and no scheme, for APIs that want X-API-Key: <key>."""
    transport = ScriptedTransport(response(200))
    run(Pipeline(APIKeyAuth(KEY, header="X-API-Key", scheme=None)), transport)
    assert transport.calls[0].request.headers["X-API-Key"] == KEY


def test_header_is_set_on_every_attempt() -> None:
    """A policy outside auth that sends twice gets the header on both attempts."""

    def twice(call: Call, next: Next) -> requests.Response:
        next(call.evolve(request=call.request.copy()))
        result = next(call.evolve(request=call.request.copy()))
        assert "Authorization" not in call.request.headers  # only the copies were sent
        return result

    transport = ScriptedTransport(response(200))
    run(Pipeline(twice, APIKeyAuth(KEY)), transport)
    assert transport.calls[0].request is not transport.calls[1].request
    assert [c.request.headers["Authorization"] for c in transport.calls] == [f"Bearer {KEY}"] * 2


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no api_key, the named environment variable is read."""
    monkeypatch.setenv("VINCI_API_KEY", f"  {KEY}\n")
    transport = ScriptedTransport(response(200))
    run(Pipeline(APIKeyAuth(env_var="VINCI_API_KEY")), transport)
    assert transport.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def test_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit key is used even when the variable is set."""
    monkeypatch.setenv("VINCI_API_KEY", "sk-from-env-000000000")
    transport = ScriptedTransport(response(200))
    run(Pipeline(APIKeyAuth(KEY, env_var="VINCI_API_KEY")), transport)
    assert KEY in transport.calls[0].request.headers["Authorization"]


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere fails at construction, naming the variable to set."""
    monkeypatch.delenv("VINCI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="set the VINCI_API_KEY environment variable"):
        APIKeyAuth(env_var="VINCI_API_KEY")
    with pytest.raises(MissingAPIKeyError, match="pass api_key="):
        APIKeyAuth()


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_key_is_missing(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    """A blank key, given or from the environment, is treated as missing."""
    with pytest.raises(MissingAPIKeyError, match="blank"):
        APIKeyAuth(blank)
    monkeypatch.setenv("VINCI_API_KEY", blank)
    with pytest.raises(MissingAPIKeyError, match="VINCI_API_KEY"):
        APIKeyAuth(env_var="VINCI_API_KEY")


def test_header_injection_is_refused_without_echoing_the_key() -> None:
    """A key with a line break is rejected, and the message does not contain it."""
    with pytest.raises(ConfigurationError) as info:
        APIKeyAuth("sk-evil\r\nX-Admin: yes")
    assert "sk-evil" not in str(info.value)


def test_key_not_in_repr_str_or_pickle() -> None:
    """repr/str never show the key, and the policy refuses to be pickled."""
    auth = APIKeyAuth(KEY)
    pipeline = Pipeline(StatusErrors(), auth)
    for text in (repr(auth), str(auth), repr(pipeline), pipeline.describe()):
        assert KEY not in text
        assert KEY[3:11] not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(auth)


def test_key_not_in_logs_or_exceptions() -> None:
    """A failing call, with logs captured, leaves no trace of the key anywhere."""
    pipeline = Pipeline(StatusErrors(), APIKeyAuth(KEY))
    with capture_logs() as logs, pytest.raises(AuthenticationError) as info:
        run(pipeline, ScriptedTransport(response(401, {"detail": f"bad key {KEY}"})))
    rendered = f"{info.value!s} {info.value!r} {info.value.args} {logs!r}"
    assert KEY not in rendered
    assert all(KEY[i : i + 8] not in rendered for i in range(len(KEY) - 7))


# -- the origin the key is bound to -------------------------------------------------------


def _sent(auth: APIKeyAuth, *urls: str, headers: dict[str, str] | None = None) -> list[str | None]:
    """The Authorization header of each request to `urls`, in order, through `auth`."""
    found: list[str | None] = []
    pipeline = Pipeline(auth)
    for url in urls:
        transport = ScriptedTransport(response(200))
        run(pipeline, transport, request=prepared("GET", url, headers=headers))
        found.append(transport.calls[0].request.headers.get("Authorization"))
    return found


def test_the_first_request_binds_the_origin() -> None:
    """Unbound: the first origin gets the key, later requests to another origin do not."""
    auth = APIKeyAuth(KEY)
    assert auth.origin is None
    sent = _sent(
        auth,
        "https://api.example.com/v1/a",
        "https://other.example.com/",
        "https://api.example.com:443/b",
    )
    assert sent == [f"Bearer {KEY}", None, f"Bearer {KEY}"]
    assert auth.origin == "https://api.example.com:443"


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://api.example.com/v1/jobs", True),
        ("https://API.EXAMPLE.COM:443/v1/jobs", True),
        ("https://user@api.example.com/x", True),
        ("http://api.example.com/v1/jobs", False),  # another scheme
        ("https://api.example.com:8443/v1/jobs", False),  # another port
        ("https://api.example.com.evil.test/v1", False),  # a prefix of the host is not it
        ("https://evil.test/api.example.com/", False),
    ],
)
def test_an_explicit_origin_is_scheme_host_and_port(url: str, sent: bool) -> None:
    """origin= compares scheme, host and port (default ports filled in), nothing else."""
    auth = APIKeyAuth(KEY, origin="https://api.example.com/v1")
    assert _sent(auth, url) == [f"Bearer {KEY}" if sent else None]


def test_the_policy_takes_its_own_header_off_a_request_to_another_origin() -> None:
    """A request elsewhere that still carries this policy's value loses it; others stay."""
    auth = APIKeyAuth(KEY, origin="https://api.example.com")
    assert _sent(auth, "https://b.example.com/", headers={"Authorization": f"Bearer {KEY}"}) == [
        None
    ]
    assert _sent(
        auth, "https://b.example.com/", headers={"Authorization": "Basic b3duOmtleQ=="}
    ) == ["Basic b3duOmtleQ=="]


def test_the_vinci_preset_binds_the_key_to_its_base_url() -> None:
    """vinci.mount passes its base URL as the origin."""
    with requests.Session() as session:
        vinci_mount(session, api_key=KEY, base_url="https://vinci.example.com/api/v1")
        adapter = session.get_adapter("https://vinci.example.com/api/v1/")
        (auth,) = [p for p in adapter.pipeline.policies if isinstance(p, APIKeyAuth)]  # type: ignore[attr-defined]
    assert auth.origin == "https://vinci.example.com:443"


@pytest.mark.parametrize("key", [b"sk-bytes-0123456789", 12345, "sk-clé-0123456789", "sk-a\tb"])
def test_a_key_that_cannot_be_a_header_value_is_refused(key: object) -> None:
    """bytes, non-str, non-ASCII or non-printable keys fail when built, naming api_key."""
    with pytest.raises(ConfigurationError, match="api_key") as caught:
        APIKeyAuth(key)  # type: ignore[arg-type]
    assert "0123456789" not in str(caught.value)

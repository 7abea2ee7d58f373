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
from tests.helpers import ScriptedTransport, response, run

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

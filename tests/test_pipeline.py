"""The policy contract, ordering, custom policies, and the frozen Pipeline."""

from __future__ import annotations

import pytest
import requests

from requests_resilience import APIKeyAuth, Call, Next, Pipeline, StatusErrors, SystemClock
from requests_resilience.testing import FakeClock
from tests.helpers import ScriptedTransport, response, run


def recorder(label: str, log: list[str]):  # type: ignore[no-untyped-def]
    def policy(call: Call, next: Next) -> requests.Response:
        log.append(f"{label} in")
        result = next(call)
        log.append(f"{label} out")
        return result

    policy.__name__ = label
    return policy


def test_first_policy_is_outermost() -> None:
    """Policies run in order on the way in and in reverse on the way out."""
    log: list[str] = []
    pipeline = Pipeline(recorder("a", log), recorder("b", log), recorder("c", log))
    run(pipeline, ScriptedTransport(response(200)))
    assert log == ["a in", "b in", "c in", "c out", "b out", "a out"]


def test_function_policy_adds_a_header() -> None:
    """A plain function (call, next) is a policy and can change the request."""

    def add_client_header(call: Call, next: Next) -> requests.Response:
        call.request.headers["X-Client"] = "worker/2"
        return next(call)

    transport = ScriptedTransport(response(200))
    run(Pipeline(add_client_header), transport)
    assert transport.calls[0].request.headers["X-Client"] == "worker/2"


def test_class_policy_can_short_circuit_with_a_cached_response() -> None:
    """A class with send() is a policy; one that never calls next sends nothing."""

    class Cache:
        name = "cache"

        def __init__(self) -> None:
            self.store: dict[str, requests.Response] = {}

        def send(self, call: Call, next: Next) -> requests.Response:
            key = call.request.url or ""
            if key not in self.store:
                self.store[key] = next(call)
            return self.store[key]

    cache = Cache()
    transport = ScriptedTransport(response(200, {"n": 1}))
    pipeline = Pipeline(cache)
    first = run(pipeline, transport)
    second = run(pipeline, transport)
    assert second is first
    assert len(transport.calls) == 1


def test_policy_can_replace_the_call_with_evolve() -> None:
    """A policy passes a changed copy of the call down; the original is untouched."""

    def shorter_timeout(call: Call, next: Next) -> requests.Response:
        return next(call.evolve(timeout=1.5))

    transport = ScriptedTransport(response(200))
    run(Pipeline(shorter_timeout), transport)
    assert transport.calls[0].timeout == 1.5


def test_call_is_frozen() -> None:
    """Call fields cannot be reassigned; evolve() is the way to change them."""
    call = Call(request=requests.Request("GET", "http://x/").prepare())
    with pytest.raises(AttributeError):
        call.attempt = 2  # type: ignore[misc]


def test_time_left_uses_the_pipeline_clock(clock: FakeClock) -> None:
    """time_left() counts down on the injected clock."""
    call = Call(
        request=requests.Request("GET", "http://x/").prepare(),
        clock=clock,
        deadline=clock.monotonic() + 10,
    )
    clock.advance(4)
    assert call.time_left() == pytest.approx(6)
    assert Call(request=call.request, clock=clock).time_left() is None


def test_pipeline_is_frozen_and_evolve_makes_a_copy() -> None:
    """A built pipeline cannot be changed in place; evolve() returns a new one."""
    pipeline = Pipeline(StatusErrors())
    with pytest.raises(AttributeError, match="frozen"):
        pipeline._policies = ()
    log: list[str] = []
    bigger = pipeline.evolve(policies=[*pipeline.policies, recorder("extra", log)])
    assert pipeline.names == ("status_errors",)
    assert bigger.names == ("status_errors", "extra")
    assert bigger.clock is pipeline.clock


def test_describe_lists_policies_in_order_with_settings() -> None:
    """describe() shows each policy's name and settings, outermost first, no secrets."""
    pipeline = Pipeline(StatusErrors(), APIKeyAuth("sk-describe-0123456789"))
    text = pipeline.describe()
    assert text.splitlines() == [
        "Pipeline (first = outermost):",
        "  1. status_errors  StatusErrors(table=<6 statuses>)",
        "  2. auth           APIKeyAuth(header='Authorization', scheme='Bearer', "
        "api_key=<redacted>)",
        "  -> transport",
    ]
    assert repr(pipeline) == "Pipeline(status_errors, auth)"
    assert "sk-describe" not in text


def test_non_policy_is_rejected_when_built() -> None:
    """Something that is neither a policy nor a function fails at construction."""
    with pytest.raises(TypeError, match="send\\(call, next\\)"):
        Pipeline(42)  # type: ignore[arg-type]


def test_clock_must_implement_the_seam() -> None:
    """A clock without the four methods is rejected when the pipeline is built."""
    with pytest.raises(TypeError, match="monotonic"):
        Pipeline(clock=object())  # type: ignore[arg-type]
    assert isinstance(Pipeline().clock, SystemClock)


def test_pipeline_gathers_secrets_from_policies() -> None:
    """The pipeline's redactor knows every secret its policies declare."""
    pipeline = Pipeline(APIKeyAuth("sk-gather-0123456789"))
    assert pipeline.redactor.redact("echo sk-gather-0123456789") == "echo [REDACTED]"

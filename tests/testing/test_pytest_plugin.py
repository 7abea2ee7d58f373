"""The pytest plugin's fixtures and the one-line fault presets."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import requests

from requests_resilience import (
    InsufficientBalanceError,
    Pipeline,
    RateLimitError,
    Retry,
    ServerError,
    StatusErrors,
    mount,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.testing._pytest_plugin import new_fake_server
from requests_resilience.vinci import VinciClient, build_pipeline

TIMEOUT = 5.0


def test_fake_clock_fixture_is_a_fresh_fake_clock(fake_clock: FakeClock) -> None:
    """fake_clock is a FakeClock with no sleeps yet, and a pipeline's waits land on it."""
    assert isinstance(fake_clock, FakeClock)
    assert fake_clock.sleeps == []
    with FakeVinciServer() as server, requests.Session() as session:
        mount(
            session,
            server.base_url + "/",
            Pipeline(
                StatusErrors(),
                Retry(initial_delay=1.0, jitter="none", budget=None),
                clock=fake_clock,
            ),
        )
        server.script(Fault.status(503), Fault.status(503))
        auth = {"Authorization": f"Bearer {server.api_key}"}
        assert session.get(server.url("/billing/balance"), headers=auth).status_code == 200
    assert fake_clock.sleeps == [1.0, 2.0]


def test_fake_vinci_without_werkzeug_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without werkzeug, the fixture's server fails with an ImportError naming the extra."""
    for name in list(sys.modules):
        if name == "werkzeug" or name.startswith(
            ("werkzeug.", "requests_resilience.testing._server")
        ):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "werkzeug", None)  # makes `import werkzeug` fail
    with pytest.raises(ImportError, match=r"pip install 'requests-resilience\[testing\]'"):
        new_fake_server({})


def test_rate_limited_preset_ends_a_call_at_once(fake_vinci: FakeVinciServer) -> None:
    """Fault.rate_limited(retry_after=3600): one 429 is enough for a RateLimitError."""
    fake_vinci.script(Fault.rate_limited(retry_after=3600))
    clock = FakeClock()
    with (
        VinciClient(
            base_url=fake_vinci.base_url,
            pipeline=build_pipeline(api_key=fake_vinci.api_key, clock=clock),
            clock=clock,
        ) as client,
        pytest.raises(RateLimitError) as caught,
    ):
        client.balance()
    assert caught.value.retry_after == 3600
    assert caught.value.detail == "Rate limit exceeded. Try again in 3600 seconds."
    assert fake_vinci.request_count == 1


def test_rate_limited_preset_without_retry_after(fake_vinci: FakeVinciServer) -> None:
    """retry_after=None sends no Retry-After header (the API does not document one)."""
    fake_vinci.script(Fault.rate_limited(retry_after=None))
    answer = requests.get(fake_vinci.url("/billing/balance"), timeout=TIMEOUT)
    assert answer.status_code == 429
    assert "Retry-After" not in answer.headers


def test_insufficient_balance_preset(fake_vinci: FakeVinciServer) -> None:
    """Fault.insufficient_balance: the server's 402 in the API's words; nothing charged."""
    fake_vinci.script(Fault.insufficient_balance(1.25, 2.5), path="/generate/text-to-video")
    with (
        VinciClient(
            base_url=fake_vinci.base_url,
            pipeline=build_pipeline(api_key=fake_vinci.api_key, retry=None),
        ) as client,
        pytest.raises(InsufficientBalanceError) as caught,
    ):
        client.text_to_video("a fox")
    assert caught.value.detail == ("Insufficient balance. Current balance: $1.25, required: $2.50")
    assert caught.value.response is not None  # the server said it, not the pre-check
    assert fake_vinci.jobs_created == 0


def test_outage_preset_fails_the_next_n_requests(fake_vinci: FakeVinciServer) -> None:
    """server.script(Fault.outage(2)): two 503s, then normal answers."""
    fake_vinci.script(Fault.outage(2, retry_after=1))
    auth = {"Authorization": f"Bearer {fake_vinci.api_key}"}
    codes = [
        requests.get(fake_vinci.url("/billing/balance"), headers=auth, timeout=TIMEOUT)
        for _ in range(3)
    ]
    assert [c.status_code for c in codes] == [503, 503, 200]
    assert codes[0].headers["Retry-After"] == "1"


def test_outage_preset_through_a_pipeline(fake_vinci: FakeVinciServer) -> None:
    """An outage longer than the retries reaches the caller as a ServerError."""
    fake_vinci.script(Fault.outage(3))
    with requests.Session() as session:
        mount(
            session,
            fake_vinci.base_url + "/",
            Pipeline(StatusErrors(), Retry(max_attempts=3, budget=None), clock=FakeClock()),
        )
        with pytest.raises(ServerError):
            session.get(fake_vinci.url("/billing/balance"))
    assert fake_vinci.request_count == 3


def test_outage_preset_checks_its_count() -> None:
    """Fault.outage(0) is refused with a message naming the argument."""
    with pytest.raises(ValueError, match="requests must be an int >= 1"):
        Fault.outage(0)


def test_script_rejects_what_is_not_a_fault(fake_vinci: FakeVinciServer) -> None:
    """script() still refuses a non-Fault, inside a sequence too."""
    with pytest.raises(TypeError, match="Fault objects"):
        fake_vinci.script("503")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Fault objects"):
        fake_vinci.script([Fault.reset(), 503])  # type: ignore[list-item]
    assert fake_vinci.pending_faults == 0


def test_make_vinci_client_binds_the_server_the_key_and_the_fake_clock(
    fake_vinci: FakeVinciServer, fake_clock: FakeClock, make_vinci_client: Any
) -> None:
    """No options: the server's URL and key, the preset on the fake clock; a 503 waits 0 s real."""
    client = make_vinci_client()
    fake_vinci.script(Fault.status(503))
    assert client.balance().balance_usd == 100.0
    assert client.clock is fake_clock
    assert fake_clock.sleeps  # the retry's backoff, on the fake clock
    assert fake_vinci.requests[-1].headers["Authorization"] == f"Bearer {fake_vinci.api_key}"


@pytest.mark.fake_vinci(balance_usd=0.0)
def test_make_vinci_client_passes_options_to_the_client(
    fake_vinci: FakeVinciServer, make_vinci_client: Any
) -> None:
    """Keyword arguments reach the client; the marker's options reach the server."""
    client = make_vinci_client(balance_check=False)
    with pytest.raises(InsufficientBalanceError):
        client.text_to_video("a fox", duration_seconds=2)
    assert fake_vinci.count(path="/billing/balance") == 0  # no pre-check

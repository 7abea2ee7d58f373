"""The Vinci preset's hedging seam: off by default, right after the retry when given."""

from __future__ import annotations

import requests

from requests_resilience import Hedging
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import DEFAULT, build_pipeline, mount

KEY = "sk-test-123456789"


def test_the_preset_has_no_hedging_unless_given() -> None:
    """Paid POSTs are never hedged and each hedge costs a rate-limit token: none by default."""
    for seam in (None, DEFAULT):
        assert "hedging" not in build_pipeline(api_key=KEY, hedging=seam).names
    assert build_pipeline(api_key=KEY).names == build_pipeline(api_key=KEY, hedging=None).names


def test_a_given_hedging_goes_right_after_the_retry_and_outside_the_breaker() -> None:
    """Each hedge then passes through the breaker and the rate limit as an attempt."""
    names = build_pipeline(api_key=KEY, hedging=Hedging(delay=0.2)).names
    assert names[:4] == ("status_errors", "retry", "hedging", "circuit_breaker")
    names = build_pipeline(api_key=KEY, retry=None, hedging=Hedging(delay=0.2)).names
    assert names[:3] == ("status_errors", "hedging", "circuit_breaker")


def test_a_mounted_session_hedges_a_failed_read_at_once() -> None:
    """A 503 on the balance: the hedge goes at once and answers; the server saw both."""
    hedging = Hedging(delay=5.0, budget=None)
    with FakeVinciServer() as server, requests.Session() as session:
        mount(
            session,
            api_key=server.api_key,
            base_url=server.base_url,
            clock=FakeClock(),
            retry=None,
            hedging=hedging,
        )
        server.script(Fault.status(503), path="/billing/balance")
        assert session.get(server.url("/billing/balance")).status_code == 200
        assert server.request_count == 2
    hedging.close()

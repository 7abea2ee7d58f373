"""The Vinci preset's concurrency seam: off by default, first after StatusErrors when given."""

from __future__ import annotations

import pytest
import requests

from requests_resilience import ConcurrencyLimit, ConcurrencyLimitError
from requests_resilience.testing import FakeClock, FakeVinciServer
from requests_resilience.vinci import DEFAULT, build_pipeline, mount

KEY = "sk-test-123456789"


def test_the_preset_has_no_concurrency_limit_unless_given() -> None:
    """Vinci documents no concurrency cap: None and DEFAULT leave the seam out."""
    for seam in (None, DEFAULT):
        names = build_pipeline(api_key=KEY, concurrency=seam).names
        assert "concurrency_limit" not in names
    assert build_pipeline(api_key=KEY).names == build_pipeline(api_key=KEY, concurrency=None).names


def test_a_given_limit_goes_first_after_status_errors() -> None:
    """Outside the retry: one permit per call, for all its attempts."""
    names = build_pipeline(api_key=KEY, concurrency=ConcurrencyLimit(3, key="vinci")).names
    assert names[:3] == ("status_errors", "concurrency_limit", "retry")


def test_a_mounted_session_is_capped() -> None:
    """A session mounted with the seam refuses a call while the only permit is held."""
    limit = ConcurrencyLimit(1, key="vinci", max_queue=0)
    with FakeVinciServer() as server, requests.Session() as session:
        mount(
            session,
            api_key=server.api_key,
            base_url=server.base_url,
            clock=FakeClock(),
            concurrency=limit,
        )
        gate = limit._cells.get("vinci").gate
        assert gate.enter() is True  # another call holds the permit
        with pytest.raises(ConcurrencyLimitError):
            session.get(server.url("/billing/balance"))
        assert server.request_count == 0
        gate.release(held_for=0.0)
        assert session.get(server.url("/billing/balance")).status_code == 200

"""run_demo() and print_report(): the demo's numbers add up."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from requests_resilience.testing import FakeClock
from requests_resilience.vinci import DemoReport, print_report, run_demo
from requests_resilience.vinci._demo import AttemptStats


@pytest.fixture(scope="module")
def report() -> DemoReport:
    """One demo run of 24 jobs from 4 threads, waits on a fake clock."""
    return run_demo(jobs=24, threads=4, clock=FakeClock(random_value=0.0))


def test_every_job_is_accounted_for(report: DemoReport) -> None:
    """completed + failed + refused + errored = jobs."""
    assert (
        report.completed + report.failed + report.refused_locally + report.errored
        == report.jobs
        == 24
    )
    assert report.completed > 0


def test_every_wire_attempt_reached_the_server(report: DemoReport) -> None:
    """The stats policy's wire attempts match the server's own counter."""
    assert report.wire_attempts == report.server_requests
    assert report.wire_attempts + report.breaker_rejections == report.attempts
    assert sum(report.outcomes.values()) == report.attempts
    assert sum(report.server_by_endpoint.values()) == report.server_requests


def test_the_faults_show_up(report: DemoReport) -> None:
    """The scripted 429s, 5xx and reset are among the outcomes."""
    for outcome in ("429", "500", "502", "APIConnectionError"):
        assert report.outcomes.get(outcome, 0) >= 1, outcome
    assert report.errors  # at least the lost 500 and the failed job


def test_the_server_charged_only_what_it_created(report: DemoReport) -> None:
    """The balance went down by $0.25 per job the server created."""
    spent = report.start_balance_usd - report.end_balance_usd
    assert spent == pytest.approx(0.25 * report.server_jobs_created)


def test_the_report_prints_as_a_table(report: DemoReport) -> None:
    """print_report renders every row."""
    buffer = io.StringIO()
    print_report(report, Console(file=buffer, width=120))
    text = buffer.getvalue()
    for row in (
        "jobs",
        "logical calls",
        "attempt outcomes",
        "retries by reason",
        "refused by open breaker",
        "requests at the server",
        "time taken",
    ):
        assert row in text


def test_bad_sizes_are_refused() -> None:
    """jobs and threads are range-checked."""
    with pytest.raises(ValueError, match="jobs"):
        run_demo(jobs=0)
    with pytest.raises(ValueError, match="threads"):
        run_demo(threads=0)


def test_the_stats_policy_counts_retries_by_reason() -> None:
    """A retry's previous attempt reason and wait are counted."""
    from requests_resilience import Attempt, Call
    from tests.helpers import prepared, response

    stats = AttemptStats()
    history = (Attempt(number=1, status_code=503, wait=0.5, reason="status 503"),)
    call = Call(request=prepared(), attempt=2, history=history)
    stats.send(call, lambda c: response(200))
    snapshot = stats.snapshot()
    assert snapshot["retries"] == {"status 503": 1}
    assert snapshot["retry_waits"] == {"status 503": 0.5}
    assert snapshot["outcomes"] == {"200": 1}
    assert snapshot["calls"] == 0

"""run_demo() and print_report(): the demo's numbers add up."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from requests_resilience.testing import FakeClock
from requests_resilience.vinci import DemoReport, print_report, run_demo
from requests_resilience.vinci._demo import AttemptStats, report_rows


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


def test_every_charged_job_is_accounted_for(report: DemoReport) -> None:
    """The server's charged jobs = the jobs the client saw + those whose answer was lost."""
    assert report.jobs_seen >= report.completed + report.failed
    assert report.server_jobs_created - report.jobs_seen == 1  # the scripted 500-after
    row = dict(report_rows(report))["jobs charged by the server"]
    assert row.startswith(f"{report.server_jobs_created}, $")
    assert f": {report.completed} completed + {report.failed} failed + " in row
    lost_waiting = report.jobs_seen - report.completed - report.failed
    if lost_waiting:
        assert f" + {lost_waiting} created, then lost while waiting + " in row
    assert row.count(" + ") == 2 + (lost_waiting > 0)
    assert "1 created whose answer the client never read" in row
    assert "a 500 after the server acted" in row


def test_errors_show_request_ids_or_say_why_there_is_none(report: DemoReport) -> None:
    """Each error row shows the ids the server gave, and says why the others have none."""
    rows = dict(report_rows(report))
    assert rows["error JobFailedError"].startswith(f"x{report.failed}: req_")
    for name, ids in report.errors.items():
        row = rows[f"error {name}"]
        assert ("req_" in row) == any(i.startswith("req_") for i in ids), name
        assert ("nothing was sent" in row) == ("not sent" in ids), name
        assert ("carried no request id" in row) == ("-" in ids), name
    assert any("not sent" in ids for ids in report.errors.values())  # a local refusal
    assert "(no request id)" not in " ".join(rows.values())


def test_waits_are_said_to_be_summed_over_the_threads(report: DemoReport) -> None:
    """The retry waits are labelled as a sum over the threads, next to the run's time."""
    row = dict(report_rows(report))["retries by reason"]
    total = sum(report.retry_waits.values())
    assert f"waits summed over the {report.threads} threads, {total:.2f}s in all" in row
    assert f"the run took {report.elapsed:.2f}s" in row


def test_attempts_are_split_into_wire_and_breaker(report: DemoReport) -> None:
    """The attempts row adds up: on the wire + refused by the open breaker."""
    row = dict(report_rows(report))["attempts"]
    assert row == (
        f"{report.attempts}: {report.wire_attempts} on the wire + "
        f"{report.breaker_rejections} refused by the open breaker before sending"
    )

"""vinci --json, run as a subprocess: one JSON object per result, errors as JSON on stderr."""

from __future__ import annotations

import pytest

from requests_resilience.testing import FakeVinciServer, Fault
from tests.vinci.cli_runner import one_json_object, vinci

pytestmark = pytest.mark.fake_vinci(polls_to_complete=2)

ERROR_KEYS = {
    "type",
    "status",
    "request_id",
    "detail",
    "message",
    "sent",
    "checked_locally",
    "retry_after",
    "exit_code",
}


def _error(stderr: str) -> dict[str, object]:
    body = one_json_object(stderr)
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == ERROR_KEYS
    return error


def test_balance_json(fake_vinci: FakeVinciServer) -> None:
    """balance --json: exactly one object on stdout, nothing on stderr."""
    result = vinci("balance", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert one_json_object(result.stdout) == {"balance_usd": 100.0, "total_spent_usd": 0.0}
    assert result.stderr == ""


def test_json_before_the_command_works_too(fake_vinci: FakeVinciServer) -> None:
    """vinci --json balance is the same as vinci balance --json."""
    result = vinci("--json", "balance", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert one_json_object(result.stdout)["balance_usd"] == 100.0


def test_usage_json(fake_vinci: FakeVinciServer) -> None:
    """usage --json: the documented fields."""
    result = vinci("usage", "--days", "3", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    usage = one_json_object(result.stdout)
    assert usage["period_days"] == 3
    assert usage["current_balance_usd"] == 100.0


def test_generate_json_is_the_created_job(fake_vinci: FakeVinciServer) -> None:
    """generate --json: the job object, and no hint on stderr."""
    result = vinci("generate", "a fox", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    job = one_json_object(result.stdout)
    assert str(job["request_id"]).startswith("req_")
    assert job["status"] == "pending"
    assert job["estimated_cost_usd"] == 0.25
    assert result.stderr == ""


def test_generate_wait_json_is_one_final_status(fake_vinci: FakeVinciServer) -> None:
    """generate --wait --json: one object, the completed status; stderr stays empty."""
    result = vinci(
        "generate",
        "a fox",
        "--wait",
        "--poll-interval",
        "0.01",
        "--json",
        server=fake_vinci,
        key=fake_vinci.api_key,
    )
    assert result.returncode == 0, result.stderr
    status = one_json_object(result.stdout)
    assert status["status"] == "completed"
    assert str(status["video_url"]).endswith(".mp4")
    assert result.stderr == ""


def test_status_json(fake_vinci: FakeVinciServer) -> None:
    """status --json: the job's status object."""
    created = vinci("generate", "a fox", "--json", server=fake_vinci, key=fake_vinci.api_key)
    request_id = one_json_object(created.stdout)["request_id"]
    result = vinci("status", str(request_id), "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    status = one_json_object(result.stdout)
    assert status["request_id"] == request_id
    assert status["status"] == "pending"


def test_demo_json() -> None:
    """demo --json: the report as one object whose job counts add up."""
    result = vinci("demo", "--jobs", "6", "--threads", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = one_json_object(result.stdout)
    counted = ("completed", "failed", "refused_locally", "errored")
    assert sum(int(report[k]) for k in counted) == 6
    assert isinstance(report["outcomes"], dict)


def test_not_found_json_error(fake_vinci: FakeVinciServer) -> None:
    """A 404 with --json: stdout empty, one error object on stderr with its evidence."""
    result = vinci("status", "req_missing", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 6
    assert result.stdout == ""
    error = _error(result.stderr)
    assert error["type"] == "NotFoundError"
    assert error["status"] == 404
    assert error["request_id"] == "req_missing"
    assert error["detail"] == "Job not found"
    assert error["sent"] is True
    assert error["checked_locally"] is False
    assert error["exit_code"] == 6


@pytest.mark.fake_vinci(balance_usd=0.0)
def test_a_local_refusal_json_error(fake_vinci: FakeVinciServer) -> None:
    """The balance pre-check with --json: checked_locally true, sent false, exit 4."""
    result = vinci("generate", "a fox", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 4
    error = _error(result.stderr)
    assert error["type"] == "InsufficientBalanceError"
    assert error["status"] == 402
    assert error["checked_locally"] is True
    assert error["sent"] is False
    assert "checked locally, nothing was sent" in str(error["message"])
    assert fake_vinci.count("POST") == 0


def test_a_rate_limit_json_error_carries_retry_after(fake_vinci: FakeVinciServer) -> None:
    """A 429 with --json: retry_after in seconds, exit 5."""
    fake_vinci.script(Fault.rate_limited(retry_after=3600), path="/billing/balance")
    result = vinci("balance", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 5
    error = _error(result.stderr)
    assert error["retry_after"] == 3600.0
    assert error["detail"] == "Rate limit exceeded. Try again in 3600 seconds."


def test_a_usage_error_json(fake_vinci: FakeVinciServer) -> None:
    """An argparse error with --json is a JSON error too (exit 2), not argparse's text."""
    result = vinci("generate", "--json", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 2
    error = _error(result.stderr)
    assert error["type"] == "UsageError"
    assert "prompt" in str(error["message"])
    assert error["sent"] is False


def test_a_missing_key_json(fake_vinci: FakeVinciServer) -> None:
    """No key with --json: MissingAPIKeyError, exit 3, nothing sent."""
    result = vinci("balance", "--json", server=fake_vinci)
    assert result.returncode == 3
    error = _error(result.stderr)
    assert error["type"] == "MissingAPIKeyError"
    assert error["sent"] is False
    assert fake_vinci.request_count == 0


def test_a_refused_key_never_appears_in_json(fake_vinci: FakeVinciServer) -> None:
    """The --api-key value is removed from the JSON error too."""
    key = "sk-wrong-secret-0123456789"
    fake_vinci.script(Fault.status(401, body={"detail": f"Invalid API key {key}"}))
    result = vinci("--api-key", key, "balance", "--json", server=fake_vinci)
    assert result.returncode == 3
    assert key not in result.stdout + result.stderr
    assert _error(result.stderr)["type"] == "AuthenticationError"

"""The vinci command line, run as a subprocess against a fake server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from requests_resilience.testing import FakeVinciServer, Fault

pytestmark = pytest.mark.fake_vinci(polls_to_complete=2)


def vinci(
    *args: str, server: FakeVinciServer | None = None, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m requests_resilience.vinci`` with a controlled environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINCI_")}
    env["COLUMNS"] = "120"
    if key is not None:
        env["VINCI_API_KEY"] = key
    base = ["--base-url", server.base_url] if server is not None else []
    return subprocess.run(
        [sys.executable, "-m", "requests_resilience.vinci", *base, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_exits_zero() -> None:
    """--help lists the commands."""
    result = vinci("--help")
    assert result.returncode == 0
    for command in ("generate", "status", "balance", "demo"):
        assert command in result.stdout


def test_balance_prints_the_balance(fake_vinci: FakeVinciServer) -> None:
    """balance: exit 0, the figures on stdout, the key nowhere."""
    result = vinci("balance", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert "$100.00" in result.stdout
    assert fake_vinci.api_key not in result.stdout + result.stderr


def test_generate_creates_a_job(fake_vinci: FakeVinciServer) -> None:
    """generate: the request id and estimate are printed; the job exists."""
    result = vinci(
        "generate", "Calm ocean", "--duration", "4", server=fake_vinci, key=fake_vinci.api_key
    )
    assert result.returncode == 0, result.stderr
    assert "req_" in result.stdout
    assert "$0.20" in result.stdout
    assert fake_vinci.jobs_created == 1
    sent = next(r for r in fake_vinci.requests if r.method == "POST").json()
    assert sent["duration_seconds"] == 4


def test_generate_wait_shows_the_video(fake_vinci: FakeVinciServer) -> None:
    """generate --wait polls to completion and prints the video URL."""
    result = vinci(
        "generate",
        "Calm ocean",
        "--wait",
        "--poll-interval",
        "0.01",
        server=fake_vinci,
        key=fake_vinci.api_key,
    )
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout
    assert ".mp4" in result.stdout


def test_status_prints_the_job(fake_vinci: FakeVinciServer) -> None:
    """status REQUEST_ID prints its status."""
    created = vinci("generate", "Calm ocean", server=fake_vinci, key=fake_vinci.api_key)
    request_id = next(w for w in created.stdout.split() if w.startswith("req_"))
    result = vinci("status", request_id, server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert request_id in result.stdout
    assert "pending" in result.stdout


def test_an_api_error_exits_one_with_its_evidence(fake_vinci: FakeVinciServer) -> None:
    """A 404 exits 1 and prints the type, status, detail and request id."""
    result = vinci("status", "req_missing", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 1
    assert "NotFoundError" in result.stderr
    assert "404" in result.stderr
    assert "Job not found" in result.stderr
    assert "req_missing" in result.stderr


@pytest.mark.fake_vinci(balance_usd=0.0)
def test_a_refused_job_exits_one(fake_vinci: FakeVinciServer) -> None:
    """An InsufficientBalanceError (checked locally) exits 1; no job is sent."""
    result = vinci("generate", "Calm ocean", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 1
    assert "InsufficientBalanceError" in result.stderr
    assert "402" in result.stderr
    assert fake_vinci.count("POST") == 0


def test_a_wrong_key_passed_on_the_command_line_is_never_echoed(
    fake_vinci: FakeVinciServer,
) -> None:
    """A 401 exits 1, and the key given with --api-key appears in no output."""
    key = "sk-wrong-secret-0123456789"
    fake_vinci.script(Fault.status(401, body={"detail": f"Invalid API key {key}"}))
    result = vinci("--api-key", key, "balance", server=fake_vinci)
    assert result.returncode == 1
    assert "AuthenticationError" in result.stderr
    assert key not in result.stdout + result.stderr
    assert key[:12] not in result.stdout + result.stderr


def test_a_missing_key_exits_two_and_says_how_to_set_it(fake_vinci: FakeVinciServer) -> None:
    """No --api-key and no VINCI_API_KEY: exit 2, naming the variable; nothing sent."""
    result = vinci("balance", server=fake_vinci)
    assert result.returncode == 2
    assert "VINCI_API_KEY" in result.stderr
    assert fake_vinci.request_count == 0


def test_invalid_input_exits_two(fake_vinci: FakeVinciServer) -> None:
    """A bad duration is a usage error: exit 2, nothing sent."""
    result = vinci(
        "generate", "Calm ocean", "--duration", "11", server=fake_vinci, key=fake_vinci.api_key
    )
    assert result.returncode == 2
    assert "duration_seconds" in result.stderr
    assert fake_vinci.request_count == 0


def test_a_usage_error_exits_two() -> None:
    """argparse errors (an unknown command) exit 2."""
    assert vinci("fly").returncode == 2


def test_demo_runs_without_a_key_and_prints_the_table() -> None:
    """demo: no key, no network, exit 0, the report's rows on stdout."""
    result = vinci("demo", "--jobs", "8", "--threads", "2", "--trace")
    assert result.returncode == 0, result.stderr
    for row in ("logical calls", "attempts", "requests at the server", "time taken"):
        assert row in result.stdout
    assert "trac" in result.stdout  # the trace, or why it is not available


def test_demo_rejects_bad_sizes() -> None:
    """demo --jobs 0 is a usage error."""
    result = vinci("demo", "--jobs", "0")
    assert result.returncode == 2
    assert "jobs" in result.stderr


def test_verbose_is_accepted(fake_vinci: FakeVinciServer) -> None:
    """-v sends the library's log events to stderr and keeps stdout for results."""
    fake_vinci.script(Fault.status(404), path="/status/*")
    result = vinci("-v", "status", "req_x", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 1
    assert "NotFoundError" in result.stderr
    assert result.stdout == ""

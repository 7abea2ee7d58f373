"""The vinci command line, run as a subprocess against a fake server: output and exit codes."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys

import pytest

from requests_resilience.testing import FakeVinciServer, Fault
from requests_resilience.vinci._cli import EXIT_CODES
from tests.vinci.cli_runner import cli_env, vinci

pytestmark = pytest.mark.fake_vinci(polls_to_complete=2)

T2V = "/generate/text-to-video"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_the_commands_and_every_exit_code() -> None:
    """--help lists the commands and the exit-code table, one row per code."""
    result = vinci("--help")
    assert result.returncode == 0
    for command in ("generate", "status", "balance", "usage", "demo"):
        assert command in result.stdout
    rows = [line.split() for line in result.stdout.split("exit codes:")[1].splitlines()]
    listed = {int(row[0]): row[1] for row in rows if row and row[0].isdigit()}
    assert listed == {code.code: code.name for code in EXIT_CODES}


def test_balance_prints_the_balance(fake_vinci: FakeVinciServer) -> None:
    """balance: exit 0, the figures on stdout, nothing on stderr, the key nowhere."""
    result = vinci("balance", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert "$100.00" in result.stdout
    assert result.stderr == ""
    assert fake_vinci.api_key not in result.stdout + result.stderr


def test_generate_prints_the_job_on_stdout_and_the_hint_on_stderr(
    fake_vinci: FakeVinciServer,
) -> None:
    """generate: the request id and estimate on stdout; the 'poll it with' hint on stderr."""
    result = vinci(
        "generate", "Calm ocean", "--duration", "4", server=fake_vinci, key=fake_vinci.api_key
    )
    assert result.returncode == 0, result.stderr
    assert "req_" in result.stdout
    assert "$0.20" in result.stdout
    assert "poll it with" not in result.stdout
    assert "vinci status req_" in result.stderr
    assert fake_vinci.jobs_created == 1
    sent = next(r for r in fake_vinci.requests if r.method == "POST").json()
    assert sent["duration_seconds"] == 4


def test_generate_wait_keeps_progress_off_stdout(fake_vinci: FakeVinciServer) -> None:
    """generate --wait > file: the file gets the result only; progress lines go to stderr."""
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
    assert "%" not in result.stdout  # no progress line, no bar
    assert "pending 0%" in result.stderr  # plain lines: stderr is not a terminal
    assert "━" not in result.stderr


def test_generate_wait_draws_a_bar_when_stderr_is_a_terminal(
    fake_vinci: FakeVinciServer,
) -> None:
    """With stderr on a terminal (a pty), --wait draws a bar there; stdout stays clean."""
    fake_vinci.script(Fault.delay(0.3), Fault.delay(0.3), path="/status/*")
    main, secondary = pty.openpty()
    env = {**cli_env(fake_vinci.api_key), "TERM": "xterm-256color"}
    command = [sys.executable, "-m", "requests_resilience.vinci"]
    command += ["--base-url", fake_vinci.base_url, "generate", "a fox", "--wait"]
    command += ["--poll-interval", "0.01"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=secondary, text=True
    ) as process:
        os.close(secondary)
        terminal = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            terminal += chunk
        stdout = process.stdout.read() if process.stdout else ""
    os.close(main)
    assert process.returncode == 0, terminal
    assert "━".encode() in terminal  # rich's bar
    assert b"pending 0%" not in terminal  # not the plain lines
    assert "━" not in stdout
    assert ".mp4" in stdout


def test_status_prints_the_job(fake_vinci: FakeVinciServer) -> None:
    """status REQUEST_ID prints its status."""
    created = vinci("generate", "Calm ocean", server=fake_vinci, key=fake_vinci.api_key)
    request_id = next(w for w in created.stdout.split() if w.startswith("req_"))
    result = vinci("status", request_id, server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert request_id in result.stdout
    assert "pending" in result.stdout


def test_usage_prints_the_period(fake_vinci: FakeVinciServer) -> None:
    """usage --days 7 asks for 7 days and prints the figures."""
    result = vinci("usage", "--days", "7", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert "7 days" in result.stdout
    assert fake_vinci.requests[-1].query == {"days": "7"}


# -- exit codes -------------------------------------------------------------------------


def test_not_found_exits_6_with_its_evidence(fake_vinci: FakeVinciServer) -> None:
    """A 404 exits 6 and prints the type, status, detail and request id on stderr."""
    result = vinci("status", "req_missing", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 6
    assert result.stdout == ""
    assert "NotFoundError" in result.stderr
    assert "404" in result.stderr
    assert "Job not found" in result.stderr
    assert "req_missing" in result.stderr


@pytest.mark.fake_vinci(balance_usd=0.0)
def test_a_job_refused_locally_exits_4_and_says_nothing_was_sent(
    fake_vinci: FakeVinciServer,
) -> None:
    """The balance pre-check: exit 4, 'checked locally, nothing was sent', no POST."""
    result = vinci("generate", "Calm ocean", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 4
    assert "InsufficientBalanceError" in result.stderr
    assert "checked locally, nothing was sent" in result.stderr
    assert fake_vinci.count("POST") == 0


def test_a_402_from_the_server_exits_4_without_saying_local(
    fake_vinci: FakeVinciServer,
) -> None:
    """The server's own 402 also exits 4, and is not called a local check."""
    fake_vinci.script(Fault.insufficient_balance(0.10, 0.25), path=T2V)
    result = vinci("generate", "Calm ocean", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 4
    assert "Current balance: $0.10" in result.stderr
    assert "checked locally" not in result.stderr
    assert fake_vinci.count("POST") == 1


def test_a_refused_key_exits_3_and_is_never_echoed(fake_vinci: FakeVinciServer) -> None:
    """A 401 exits 3, and the key given with --api-key appears in no output."""
    key = "sk-wrong-secret-0123456789"
    fake_vinci.script(Fault.status(401, body={"detail": f"Invalid API key {key}"}))
    result = vinci("--api-key", key, "balance", server=fake_vinci)
    assert result.returncode == 3
    assert "AuthenticationError" in result.stderr
    assert key not in result.stdout + result.stderr
    assert key[:12] not in result.stdout + result.stderr


def test_a_missing_key_exits_3_and_says_how_to_set_it(fake_vinci: FakeVinciServer) -> None:
    """No --api-key and no VINCI_API_KEY: exit 3 (authentication), naming the variable."""
    result = vinci("balance", server=fake_vinci)
    assert result.returncode == 3
    assert "VINCI_API_KEY" in result.stderr
    assert "nothing was sent" in result.stderr
    assert fake_vinci.request_count == 0


def test_a_rate_limit_exits_5_with_its_retry_after(fake_vinci: FakeVinciServer) -> None:
    """A 429 whose Retry-After is longer than the retry will wait: exit 5, retry_after shown."""
    fake_vinci.script(Fault.rate_limited(retry_after=3600), path="/billing/balance")
    result = vinci("balance", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 5
    assert "RateLimitError" in result.stderr
    assert "retry_after: 3600s" in result.stderr
    assert fake_vinci.count(path="/billing/balance") == 1


def test_a_server_error_exits_7(fake_vinci: FakeVinciServer) -> None:
    """A 500 with --retries 0 exits 7 after exactly one attempt."""
    fake_vinci.script(Fault.status(500), path="/billing/balance")
    result = vinci("--retries", "0", "balance", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 7
    assert "ServerError" in result.stderr
    assert fake_vinci.count(path="/billing/balance") == 1


def test_retries_are_the_presets_by_default(fake_vinci: FakeVinciServer) -> None:
    """Without --retries, a 503 with Retry-After: 0 is retried and the call succeeds."""
    fake_vinci.script(Fault.outage(2, retry_after=0), path="/billing/balance")
    result = vinci("balance", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 0, result.stderr
    assert fake_vinci.count(path="/billing/balance") == 3


def test_no_server_exits_8_and_says_it_was_not_sent() -> None:
    """Connection refused: exit 8 (network), and 'never reached the server'."""
    url = f"http://127.0.0.1:{_closed_port()}/api/v1"
    result = vinci("--retries", "0", "balance", base_url=url, key="sk-test-123456789")
    assert result.returncode == 8
    assert "APIConnectionError" in result.stderr
    assert "never reached the server" in result.stderr


@pytest.mark.fake_vinci(polls_to_complete=1000)
def test_a_wait_past_its_timeout_exits_9(fake_vinci: FakeVinciServer) -> None:
    """generate --wait --timeout: a job still processing at the deadline exits 9."""
    result = vinci(
        "generate",
        "a fox",
        "--wait",
        "--timeout",
        "0.3",
        "--poll-interval",
        "0.05",
        server=fake_vinci,
        key=fake_vinci.api_key,
    )
    assert result.returncode == 9
    assert "JobTimeoutError" in result.stderr
    assert "req_" in result.stderr  # the job's id, to poll it later


def test_a_failed_job_exits_10_with_its_error(fake_vinci: FakeVinciServer) -> None:
    """generate --wait on a job that ends failed: exit 10, the server's error and the id."""
    fake_vinci.fail_next_jobs(1, error="Content policy violation")
    result = vinci(
        "generate",
        "a fox",
        "--wait",
        "--poll-interval",
        "0.01",
        server=fake_vinci,
        key=fake_vinci.api_key,
    )
    assert result.returncode == 10
    assert "JobFailedError" in result.stderr
    assert "Content policy violation" in result.stderr
    assert "req_" in result.stderr


def test_another_api_error_exits_1(fake_vinci: FakeVinciServer) -> None:
    """A 400 from the server (not caught by the client's checks) exits 1."""
    fake_vinci.script(Fault.status(400, body={"detail": "prompt too long"}), path=T2V)
    result = vinci("generate", "a fox", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 1
    assert "BadRequestError" in result.stderr
    assert "prompt too long" in result.stderr


def test_invalid_input_exits_2_and_sends_nothing(fake_vinci: FakeVinciServer) -> None:
    """A bad duration is a usage error: exit 2, nothing sent."""
    result = vinci(
        "generate", "Calm ocean", "--duration", "11", server=fake_vinci, key=fake_vinci.api_key
    )
    assert result.returncode == 2
    assert "duration_seconds" in result.stderr
    assert fake_vinci.request_count == 0


def test_an_unknown_command_exits_2_with_the_usage() -> None:
    """argparse errors (an unknown command) exit 2 and show the usage line."""
    result = vinci("fly")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: vinci")
    assert "invalid choice" in result.stderr


def test_demo_runs_without_a_key_and_prints_the_table() -> None:
    """demo: no key, no network, exit 0, the report's rows on stdout."""
    result = vinci("demo", "--jobs", "8", "--threads", "2", "--trace")
    assert result.returncode == 0, result.stderr
    for row in ("logical calls", "attempts", "requests at the server", "time taken"):
        assert row in result.stdout
    assert "trac" in result.stdout + result.stderr  # the trace, or why it is not there


def test_demo_rejects_bad_sizes() -> None:
    """demo --jobs 0 is a usage error."""
    result = vinci("demo", "--jobs", "0")
    assert result.returncode == 2
    assert "jobs" in result.stderr


def test_verbose_is_accepted(fake_vinci: FakeVinciServer) -> None:
    """-v sends the library's log events to stderr and keeps stdout for results."""
    fake_vinci.script(Fault.status(404), path="/status/*")
    result = vinci("-v", "status", "req_x", server=fake_vinci, key=fake_vinci.api_key)
    assert result.returncode == 6
    assert "NotFoundError" in result.stderr
    assert result.stdout == ""


@pytest.mark.fake_vinci(polls_to_complete=10_000)
@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_ctrl_c_during_wait_exits_130_and_names_the_job(
    fake_vinci: FakeVinciServer, json_mode: bool
) -> None:
    """SIGINT while --wait polls: exit 130, and the job's id, since the job goes on."""
    command = [sys.executable, "-m", "requests_resilience.vinci"]
    command += ["--base-url", fake_vinci.base_url, "generate", "a fox", "--wait"]
    command += ["--poll-interval", "0.05", *(["--json"] if json_mode else [])]
    with subprocess.Popen(
        command,
        env=cli_env(fake_vinci.api_key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        for _ in range(600):  # until it polls the job it created (bounded: 60 s at most)
            if fake_vinci.count("GET", "/status/*") >= 2:
                break
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            break
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert stdout == ""
    (job,) = {
        r.path.rsplit("/", 1)[1] for r in fake_vinci.requests if r.path.startswith("/status/")
    }
    if json_mode:
        error = json.loads(stderr)["error"]
        assert (error["type"], error["request_id"], error["exit_code"]) == (
            "Interrupted",
            job,
            130,
        )
    else:
        assert f"interrupted: job {job} was created and goes on" in stderr
    assert "Traceback" not in stderr

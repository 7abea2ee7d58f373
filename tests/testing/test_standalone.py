"""``python -m requests_resilience.testing``: the fake server run as its own process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from requests_resilience.testing import FakeVinciServer
from requests_resilience.testing._cli import load_fault_file, parse_fault_spec

TIMEOUT = 5.0
KEY = "sk-test-0123456789abcdef"


@contextmanager
def standalone(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """Start the server as a subprocess; yield it and the NAME=value lines it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "requests_resilience.testing", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = dict(process.stdout.readline().strip().split("=", 1) for _ in range(2))
        yield process, printed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)


def _stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serves_the_api_and_stops_cleanly_on_a_signal(signum: int) -> None:
    """It prints the URL and key, answers requests, logs them, and exits 0 on the signal."""
    with standalone("--balance", "7.5") as (process, printed):
        assert set(printed) == {"VINCI_BASE_URL", "VINCI_API_KEY"}
        url, key = printed["VINCI_BASE_URL"], printed["VINCI_API_KEY"]
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/api/v1")
        assert key == KEY
        auth = {"Authorization": f"Bearer {key}"}
        answer = requests.get(f"{url}/billing/balance", headers=auth, timeout=TIMEOUT)
        assert answer.json() == {"balance_usd": 7.5, "total_spent_usd": 0.0}
        unauthorised = requests.get(f"{url}/billing/balance", timeout=TIMEOUT)
        assert unauthorised.status_code == 401
        code, rest_of_stdout, stderr = _stop(process, signum)
    assert code == 0, stderr
    assert rest_of_stdout == ""  # stdout holds the two lines and nothing else
    assert stderr.count("GET /billing/balance") == 2
    assert "stopped after 2 requests" in stderr
    assert "Traceback" not in stderr


def test_json_prints_one_object() -> None:
    """--json prints the URL, key, host and port as one JSON line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "requests_resilience.testing", "--json", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["url"] == f"http://127.0.0.1:{info['port']}/api/v1"
        assert info["api_key"] == KEY
        assert requests.get(info["url"] + "/billing/balance", timeout=TIMEOUT).status_code == 401
        code, _, stderr = _stop(process, signal.SIGINT)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert "GET /billing/balance" not in stderr  # --quiet


def test_options_and_fault_flags_apply(tmp_path: Path) -> None:
    """--api-key, --fault and --faults FILE shape what the server answers, in order."""
    script = tmp_path / "faults.json"
    script.write_text(
        json.dumps({"faults": [{"kind": "status", "code": 503, "path": "/billing/balance"}]})
    )
    with standalone(
        "--api-key", "sk-mine-123456789", "--faults", str(script), "--fault", "rate_limited:9"
    ) as (process, printed):
        url = printed["VINCI_BASE_URL"]
        auth = {"Authorization": "Bearer sk-mine-123456789"}
        first = requests.get(f"{url}/billing/balance", headers=auth, timeout=TIMEOUT)
        second = requests.get(f"{url}/billing/balance", headers=auth, timeout=TIMEOUT)
        third = requests.get(f"{url}/billing/balance", headers=auth, timeout=TIMEOUT)
        code, _, stderr = _stop(process, signal.SIGINT)
    assert (first.status_code, second.status_code, third.status_code) == (503, 429, 200)
    assert second.headers["Retry-After"] == "9"
    assert printed["VINCI_API_KEY"] == "sk-mine-123456789"
    assert code == 0
    assert "(fault: status)" in stderr


def test_a_bad_fault_spec_exits_2_with_a_message() -> None:
    """An unknown fault kind is a usage error (exit 2) that lists the kinds."""
    result = subprocess.run(
        [sys.executable, "-m", "requests_resilience.testing", "--fault", "explode"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown fault kind 'explode'" in result.stderr
    assert "rate_limited" in result.stderr
    assert result.stdout == ""


def test_fault_specs() -> None:
    """KIND[:ARG][*TIMES][@PATH]: the argument, the count and the path are read."""
    entry = parse_fault_spec("status:502*3@/status/*")
    assert [f.status_code for f in entry.faults] == [502, 502, 502]
    assert entry.path == "/status/*"
    assert parse_fault_spec("delay:1.5").faults[0].seconds == 1.5
    assert len(parse_fault_spec("outage:4").faults) == 4
    assert parse_fault_spec("reset").faults[0].kind == "reset"
    for bad in ("status", "reset:3", "status:503@nopath", ""):
        with pytest.raises(ValueError, match="fault"):
            parse_fault_spec(bad)


def test_fault_files(tmp_path: Path) -> None:
    """A fault file: a list, or an object with faults, outage, latency and fail_next_jobs."""
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"kind": "reset", "times": 2, "method": "POST"}]))
    (entry,) = load_fault_file(listed).entries
    assert [f.kind for f in entry.faults] == ["reset", "reset"]
    assert entry.method == "POST"
    full = tmp_path / "full.json"
    full.write_text(
        json.dumps({"faults": [], "outage": {"seconds": 2}, "latency": 0.1, "fail_next_jobs": 1})
    )
    script = load_fault_file(full)
    assert (script.outage, script.latency, script.fail_next_jobs) == ({"seconds": 2}, 0.1, 1)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"faults": [{"kind": "status", "code": 503, "bogus": 1}]}))
    with pytest.raises(ValueError, match=r"faults\[0\]|bogus"):
        load_fault_file(broken)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"fautls": []}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_fault_file(unknown)


def test_the_server_listens_on_the_host_it_is_given() -> None:
    """host= (and --host) picks the address; base_url names it."""
    with FakeVinciServer(host="127.0.0.2") as server:
        assert server.host == "127.0.0.2"
        assert server.base_url == f"http://127.0.0.2:{server.port}/api/v1"
        answer = requests.get(
            server.url("/billing/balance"),
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 200


def test_a_blank_host_is_refused() -> None:
    """An empty host is refused when the server is configured, naming the option."""
    with pytest.raises(ValueError, match="host must be a non-empty address"):
        FakeVinciServer(host="")

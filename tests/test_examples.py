"""Every script in examples/ runs (against the embedded fake server) and says what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"

EXPECTED = {
    "mount_existing_session.py": ["attempts: ['503', '429', '200']", "refused: 402"],
    "custom_policy.py": ["requests that reached the server: 1", "get_cache"],
    "vinci_job.py": ["video:"],
    "trace_tree.py": ["http.request.resend_count"],
    "async_hundred_jobs.py": ["jobs: 100 in", "POSTs served per job: {0: 1, 1: 99}"],
    "chaos_demo.py": [
        "jobs: 12 of 12 completed",
        "injected faults: 4 connection failures, 5 503s, 8 delays",
        "4 balance reads, 4 answered by the fallback",
        "server requests during the outage: 0",
    ],
}


def test_every_example_is_covered() -> None:
    """A new example must be added to EXPECTED, so none goes untested."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    """The example exits 0 within a minute and prints what it promises."""
    env = {k: v for k, v in os.environ.items() if k != "VINCI_API_KEY"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for needle in EXPECTED[name]:
        assert needle in result.stdout, result.stdout[-2000:]

"""Run the ``vinci`` command as a subprocess, as a script or a person would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from requests_resilience.testing import FakeVinciServer


def cli_env(key: str | None = None) -> dict[str, str]:
    """The environment of a run: this one without any VINCI_ variable, plus `key`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINCI_")}
    env["COLUMNS"] = "120"
    if key is not None:
        env["VINCI_API_KEY"] = key
    return env


def vinci(
    *args: str,
    server: FakeVinciServer | None = None,
    key: str | None = None,
    base_url: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m requests_resilience.vinci [--base-url URL] ARGS``."""
    url = base_url or (server.base_url if server is not None else None)
    base = ["--base-url", url] if url is not None else []
    return subprocess.run(
        [sys.executable, "-m", "requests_resilience.vinci", *base, *args],
        env=cli_env(key),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_json_object(text: str) -> dict[str, Any]:
    """The single JSON object that `text` holds on one line (else the test fails)."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    value = json.loads(lines[0])
    assert isinstance(value, dict), value
    return value

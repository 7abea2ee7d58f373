"""What every benchmark shares: the machine description and the results folder."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write(name: str, data: dict[str, Any]) -> Path:
    """Write `data` (plus the machine) to results/NAME.json and return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def installed(binary: str) -> str | None:
    """The path of `binary`, if installed (root's PATH has /usr/sbin, others' may not)."""
    found = shutil.which(binary)
    if found is not None:
        return found
    for folder in ("/usr/sbin", "/usr/bin"):
        path = os.path.join(folder, binary)
        if os.access(path, os.X_OK):
            return path
    return None


def ensure_debian_binary(binary: str, packages: tuple[str, ...], *, why: str) -> str:
    """The path of `binary`; installed from Debian's packages (apt-get) when missing.

    The first of `packages` that installs and provides it is kept.

    Raises:
        RuntimeError: it is missing and cannot be installed here (no apt-get, or
            neither root nor sudo), or the installation failed.
    """
    found = installed(binary)
    if found is not None:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if shutil.which("apt-get") is None or (sudo and shutil.which("sudo") is None):
        msg = (
            f"{why}: {binary} is not installed and cannot be installed here (it needs"
            f" apt-get, as root or with sudo); install it and rerun."
        )
        raise RuntimeError(msg)
    print(f"{why}: installing Debian's {binary} ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, env=env)
    for package in packages:
        install = [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
        if subprocess.run(install, check=False, env=env, stdout=subprocess.DEVNULL).returncode:
            continue
        found = installed(binary)
        if found is not None:
            return found
    msg = f"{why}: apt-get could not install {' or '.join(packages)}; install {binary} and rerun."
    raise RuntimeError(msg)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)

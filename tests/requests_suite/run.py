"""Run psf/requests' own test suite with and without the adapter mounted, and compare.

``python -m tests.requests_suite.run`` (``./dev test`` calls it):

1. gets the sdist of the *installed* requests version from the package index (it
   ships ``tests/``) into ``.venv/requests-suite/`` and unpacks it, once;
2. runs the suite three times with pytest-xdist: without the adapter (the baseline),
   with ``Pipeline()`` mounted on every new Session, and with ``Retry``,
   ``CircuitBreaker``, ``RateLimit`` and ``Tracing`` mounted (see `rr_mount_plugin`);
3. fails when a test that passed in the baseline does not pass with the adapter,
   except, in the second configuration, tests listed in ``expected_changes.txt``.

The tests in ``deselected.txt`` are left out of all three runs, each with its reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".venv" / "requests-suite"


def _listed(name: str) -> dict[str, str]:
    """``test id -> reason`` from one of the checked-in lists."""
    entries: dict[str, str] = {}
    for line in (HERE / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("#")
        entries[test_id.strip()] = reason.strip()
    return entries


def fetch_suite() -> Path:
    """The unpacked sdist of the installed requests, downloaded once."""
    wanted = version("requests")
    target = CACHE / f"requests-{wanted}"
    if (target / "tests").is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"requests=={wanted}",
            "-d",
            str(CACHE),
        ],
        check=True,
    )
    with tarfile.open(CACHE / f"requests-{wanted}.tar.gz") as archive:
        archive.extractall(CACHE, filter="data")
    return target


def start_suite(suite: Path, mode: str | None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one run of the suite; its process and the report it will write."""
    report = CACHE / f"report-{mode or 'baseline'}.xml"
    env = dict(os.environ)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "-o",
        "addopts=",
        f"--junitxml={report}",
    ]
    for test_id in _listed("deselected.txt"):
        command += ["--deselect", test_id]
    if mode is not None:
        command += ["-p", "rr_mount_plugin"]
        env["RR_REQUESTS_SUITE"] = mode
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command, cwd=suite, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return process, report


def _outcomes(report: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        # classname is "tests.test_x.TestClass" or "tests.test_x"
        parts = case.get("classname", "").split(".")
        path = "/".join(parts[:2]) + ".py"
        test_id = "::".join([path, *parts[2:], case.get("name", "")])
        outcome = "passed"
        for child in case:
            if child.tag in {"failure", "error", "skipped"}:
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
        outcomes[test_id] = outcome
    return outcomes


def _deselected_base(test_id: str) -> str:
    return test_id.split("[", 1)[0]


def compare(
    baseline: dict[str, str], mounted: dict[str, str], allowed: dict[str, str]
) -> list[str]:
    """Tests that passed in the baseline and do not pass mounted (and are not allowed)."""
    return sorted(
        test_id
        for test_id, outcome in baseline.items()
        if outcome == "passed"
        and mounted.get(test_id) != "passed"
        and test_id not in allowed
        and _deselected_base(test_id) not in allowed
    )


def _count(outcomes: dict[str, str], kind: str) -> int:
    return sum(1 for outcome in outcomes.values() if outcome == kind)


def main() -> int:
    """Run the three configurations and report; 1 when a configuration loses a test."""
    suite = fetch_suite()
    # The three runs wait on sockets and timers far more than they compute: run them
    # side by side (each with its own httpbin servers on loopback ports).
    runs = {mode: start_suite(suite, mode) for mode in (None, "empty", "policies")}
    outcomes = {}
    for mode, (process, report) in runs.items():
        process.wait()
        outcomes[mode] = _outcomes(report)
    baseline = outcomes[None]
    expected = _listed("expected_changes.txt")
    lost = False
    totals = [0, 0]  # tests kept, tests lost, over both mounted configurations
    print(
        f"requests {version('requests')} suite without the adapter: "
        f"{_count(baseline, 'passed')} passed, {_count(baseline, 'failed')} failed, "
        f"{_count(baseline, 'error')} errors, {_count(baseline, 'skipped')} skipped"
    )
    for mode, allowed in (("empty", {}), ("policies", expected)):
        mounted = outcomes[mode]
        regressions = compare(baseline, mounted, allowed)
        kept = compare(baseline, mounted, {})
        print(
            f"  mounted ({mode}): {_count(baseline, 'passed') - len(kept)} of the "
            f"{_count(baseline, 'passed')} that pass without it pass; "
            f"{len(kept) - len(regressions)} changed on purpose (listed), "
            f"{len(regressions)} lost"
        )
        for test_id in regressions:
            print(f"    LOST {test_id}: {mounted.get(test_id, 'not run')}")
        lost = lost or bool(regressions)
        totals[0] += _count(baseline, "passed") - len(regressions)
        totals[1] += len(regressions)
    print(f"requests-suite: {totals[0]} passed, {totals[1]} failed")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())

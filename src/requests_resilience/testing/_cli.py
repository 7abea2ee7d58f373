"""``python -m requests_resilience.testing`` (or ``vinci-fake-server``): the fake server.

Runs `FakeVinciServer` in the foreground, for a CLI, a browser, ``curl`` or a client in
another language to talk to::

    $ python -m requests_resilience.testing --port 8765 --balance 5 --fault rate_limited:2
    VINCI_BASE_URL=http://127.0.0.1:8765/api/v1
    VINCI_API_KEY=sk-test-0123456789abcdef

Standard output gets the URL and the key, one ``NAME=value`` line each (or one JSON
object with ``--json``), and nothing else, so a script can read them; standard error
gets one line per request received (``--quiet`` turns that off). Ctrl-C or SIGTERM stops
the server cleanly (exit 0).

Faults come from flags (``--fault SPEC``, in order) and from a JSON file
(``--faults FILE``). A SPEC is ``KIND[:ARG][*TIMES][@PATH]``: ``status:503``,
``rate_limited:30*2@/billing/balance``, ``reset@/generate/*``, ``delay:1.5``. The
file holds a list of faults, or an object::

    {"faults": [{"kind": "status", "code": 503, "retry_after": "0.2",
                 "path": "/status/*", "times": 2},
                {"kind": "insufficient_balance", "balance": 1.25, "required": 2.5}],
     "outage": {"seconds": 10, "status": 503, "retry_after": "1"},
     "latency": 0.05,
     "fail_next_jobs": 1}

where each fault's ``kind`` is the name of a `Fault` factory and its other keys
(but ``path``, ``method`` and ``times``) are that factory's keyword arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from requests_resilience.testing._faults import Fault
    from requests_resilience.testing._server import FakeVinciServer

__all__ = ["FaultScript", "load_fault_file", "main", "parse_fault_spec"]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
_DEFAULT_KEY: Final = "sk-test-0123456789abcdef"
_REQUEST_LOG_INTERVAL: Final = 0.1  # how often new requests are logged to stderr

#: The `Fault` factories a script may name.
FAULT_KINDS: Final = frozenset(
    {
        "status",
        "body",
        "reset",
        "reset_mid_body",
        "stall_after_headers",
        "truncated",
        "delay",
        "rate_limited",
        "insufficient_balance",
        "outage",
    }
)
_SPEC = re.compile(
    r"^(?P<kind>[a-z_]+)(?::(?P<arg>[^*@]+))?(?:\*(?P<times>\d+))?(?:@(?P<path>/\S*))?$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedFault:
    """One entry of a fault script: faults for the next requests matching a path.

    Attributes:
        faults: the faults, in order.
        path: only requests to this path (an ``fnmatch`` pattern), or any.
        method: only requests with this method, or any.
    """

    faults: tuple[Fault, ...]
    path: str | None = None
    method: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultScript:
    """Everything a fault file or the fault flags ask of the server.

    Attributes:
        entries: the scripted faults, in order.
        outage: ``FakeVinciServer.outage`` keyword arguments, or None.
        latency: seconds added to every request.
        fail_next_jobs: how many created jobs end ``failed``.
    """

    entries: tuple[ScriptedFault, ...] = ()
    outage: Mapping[str, Any] | None = None
    latency: float = 0.0
    fail_next_jobs: int = 0

    def apply(self, server: FakeVinciServer) -> None:
        """Queue the faults on `server`, and set its outage, latency and job failures."""
        for entry in self.entries:
            server.script(*entry.faults, path=entry.path, method=entry.method)
        if self.outage is not None:
            server.outage(**self.outage)
        if self.latency:
            server.set_latency(self.latency)
        if self.fail_next_jobs:
            server.fail_next_jobs(self.fail_next_jobs)


def _fault_class() -> type[Fault]:
    from requests_resilience.testing._faults import Fault  # noqa: PLC0415

    return Fault


def _make_faults(kind: str, params: Mapping[str, Any], times: int = 1) -> tuple[Fault, ...]:
    if kind not in FAULT_KINDS:
        msg = f"unknown fault kind {kind!r}; one of: {', '.join(sorted(FAULT_KINDS))}"
        raise ValueError(msg)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be an int >= 1, got {times!r}")
    factory = getattr(_fault_class(), kind)
    try:
        made = factory(**params)
    except TypeError as exc:
        raise ValueError(f"fault {kind!r}: {exc}") from exc
    group: tuple[Fault, ...] = made if isinstance(made, tuple) else (made,)
    return group * times


def _number_or_text(text: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


#: The keyword the ARG of a spec stands for, by fault kind.
_SPEC_ARG: Final = {
    "status": "code",
    "delay": "seconds",
    "stall_after_headers": "seconds",
    "rate_limited": "retry_after",
    "insufficient_balance": "balance",
    "outage": "requests",
}


def parse_fault_spec(spec: str) -> ScriptedFault:
    """Read a ``--fault`` SPEC, ``KIND[:ARG][*TIMES][@PATH]``.

    ARG is the fault's main argument: the status of ``status``, the seconds of
    ``delay`` and ``stall_after_headers``, the ``Retry-After`` of ``rate_limited``,
    the balance of ``insufficient_balance``, the request count of ``outage``.

    Raises:
        ValueError: the SPEC is malformed or names an unknown kind.

    Example:
        >>> entry = parse_fault_spec("status:503*2@/billing/balance")
        >>> len(entry.faults), entry.path
        (2, '/billing/balance')
    """
    match = _SPEC.match(spec.strip())
    if match is None:
        msg = f"a fault is KIND[:ARG][*TIMES][@PATH], e.g. status:503@/billing/balance: {spec!r}"
        raise ValueError(msg)
    kind, arg = match["kind"], match["arg"]
    params: dict[str, Any] = {}
    if arg is not None:
        if kind not in _SPEC_ARG:
            raise ValueError(f"fault {kind!r} takes no argument: {spec!r}")
        params[_SPEC_ARG[kind]] = _number_or_text(arg)
    elif kind == "status":
        raise ValueError(f"a status fault needs its status, e.g. status:503: {spec!r}")
    times = int(match["times"]) if match["times"] else 1
    return ScriptedFault(faults=_make_faults(kind, params, times), path=match["path"])


def _entry(item: object, where: str) -> ScriptedFault:
    if not isinstance(item, Mapping) or not isinstance(item.get("kind"), str):
        raise ValueError(f"{where}: a fault is an object with a 'kind', got {item!r}")
    params = {k: v for k, v in item.items() if k not in ("kind", "path", "method", "times")}
    faults = _make_faults(item["kind"], params, item.get("times", 1))
    path, method = item.get("path"), item.get("method")
    for name, value in (("path", path), ("method", method)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string, got {value!r}")
    return ScriptedFault(faults=faults, path=path, method=method)


def load_fault_file(path: str | Path) -> FaultScript:
    """Read a fault script from a JSON file (see the module docstring for its shape).

    Raises:
        ValueError: the file is not valid JSON or not a fault script; the message
            says where.
        OSError: the file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"faults": data}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a fault script is a list or an object")
    unknown = set(data) - {"faults", "outage", "latency", "fail_next_jobs"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    items = data.get("faults", [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'faults' must be a list")
    outage = data.get("outage")
    if outage is not None and not isinstance(outage, Mapping):
        raise ValueError(f"{path}: 'outage' must be an object")
    return FaultScript(
        entries=tuple(_entry(item, f"{path}: faults[{i}]") for i, item in enumerate(items)),
        outage=outage,
        latency=float(data.get("latency", 0.0)),
        fail_next_jobs=int(data.get("fail_next_jobs", 0)),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m requests_resilience.testing",
        description=(
            "Run the fake Vinci API server in the foreground until Ctrl-C or SIGTERM. "
            "Prints VINCI_BASE_URL=... and VINCI_API_KEY=... on stdout and one line "
            "per request on stderr."
        ),
        epilog=(
            "A fault SPEC is KIND[:ARG][*TIMES][@PATH], e.g. status:503, "
            "rate_limited:30*2@/billing/balance, reset@/generate/*, delay:1.5, outage:3. "
            f"Kinds: {', '.join(sorted(FAULT_KINDS))}."
        ),
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=0, help="the port (default 0: a free one, printed)")
    add(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"a valid key; repeat for more (default {_DEFAULT_KEY})",
    )
    add("--balance", type=float, default=100.0, metavar="USD", help="(default 100)")
    add("--total-spent", type=float, default=0.0, metavar="USD", help="(default 0)")
    add("--price-per-second", type=float, default=0.05, metavar="USD", help="(default 0.05)")
    add(
        "--polls-to-complete",
        type=int,
        default=3,
        metavar="N",
        help="the status poll on which a job ends: a job's duration, in polls (default 3)",
    )
    add("--max-upload-bytes", type=int, default=10 * 1024 * 1024, metavar="N")
    add("--rate-limit", type=int, default=None, metavar="N", help="requests per window per key")
    add("--rate-limit-period", type=float, default=60.0, metavar="SECONDS", help="(default 60)")
    add("--rate-limit-retry-after", action="store_true", help="send Retry-After on 429s")
    add("--request-id-header", action="store_true", help="send X-Request-ID on every answer")
    add("--fault", action="append", default=[], metavar="SPEC", help="queue a fault; repeatable")
    add("--faults", metavar="FILE", help="a JSON fault script (see the module docstring)")
    add("--outage", type=float, default=None, metavar="SECONDS", help="503 everything, now")
    add("--latency", type=float, default=0.0, metavar="SECONDS", help="added to every request")
    add("--fail-next-jobs", type=int, default=0, metavar="N", help="the next N jobs fail")
    add("--json", action="store_true", help="print the URL and key as one JSON object")
    add("--quiet", action="store_true", help="do not log requests to stderr")
    return parser


def _script_from(args: argparse.Namespace) -> FaultScript:
    file_script = load_fault_file(args.faults) if args.faults else FaultScript()
    entries = (*file_script.entries, *(parse_fault_spec(spec) for spec in args.fault))
    outage = file_script.outage
    if args.outage is not None:
        outage = {"seconds": args.outage}
    return FaultScript(
        entries=entries,
        outage=outage,
        latency=args.latency or file_script.latency,
        fail_next_jobs=args.fail_next_jobs or file_script.fail_next_jobs,
    )


def _server_from(args: argparse.Namespace) -> FakeVinciServer:
    from requests_resilience.testing._server import (  # noqa: PLC0415 - needs werkzeug
        FakeVinciServer,
        RateLimitConfig,
    )

    rate_limit = (
        RateLimitConfig(
            requests=args.rate_limit,
            period=args.rate_limit_period,
            send_retry_after=args.rate_limit_retry_after,
        )
        if args.rate_limit is not None
        else None
    )
    return FakeVinciServer(
        api_keys=args.api_keys or (_DEFAULT_KEY,),
        balance_usd=args.balance,
        total_spent_usd=args.total_spent,
        price_per_second=args.price_per_second,
        polls_to_complete=args.polls_to_complete,
        max_upload_bytes=args.max_upload_bytes,
        rate_limit=rate_limit,
        send_request_id_header=args.request_id_header,
        port=args.port,
        host=args.host,
    )


def _announce(server: FakeVinciServer, *, as_json: bool) -> None:
    if as_json:
        line = json.dumps(
            {
                "url": server.base_url,
                "api_key": server.api_key,
                "host": server.host,
                "port": server.port,
            }
        )
        print(line, flush=True)
    else:
        print(f"VINCI_BASE_URL={server.base_url}", flush=True)
        print(f"VINCI_API_KEY={server.api_key}", flush=True)


def _log_requests(server: FakeVinciServer, seen: int) -> int:
    """Write the requests received since the `seen` first to stderr; return the count."""
    received = server.requests
    for request in received[seen:]:
        fault = f"  (fault: {request.fault})" if request.fault else ""
        sys.stderr.write(f"{request.method} {request.path}{fault}\n")
    sys.stderr.flush()
    return max(seen, len(received))


def _serve(server: FakeVinciServer, *, quiet: bool, stop: threading.Event) -> None:
    seen = 0
    while not stop.wait(_REQUEST_LOG_INTERVAL):
        if not quiet:
            seen = _log_requests(server, seen)
    if not quiet:
        _log_requests(server, seen)


def _on_signals(stop: threading.Event, signals: Iterable[int]) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in signals:
        signal.signal(signum, handle)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake server until Ctrl-C or SIGTERM, and return the exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 after a clean stop; 2 for a usage error (a bad option or fault script, a port
        in use, werkzeug missing).
    """
    args = _parser().parse_args(argv)
    try:
        script = _script_from(args)
        server = _server_from(args)
    except ImportError as exc:
        sys.stderr.write(
            "error: the fake server needs werkzeug: pip install 'requests-resilience[testing]'"
            f" ({exc})\n"
        )
        return EXIT_USAGE
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    stop = threading.Event()
    _on_signals(stop, (signal.SIGINT, signal.SIGTERM))
    try:
        server.start()
    except OSError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    try:
        script.apply(server)
        _announce(server, as_json=args.json)
        sys.stderr.write("fake Vinci server running; Ctrl-C to stop\n")
        sys.stderr.flush()
        _serve(server, quiet=args.quiet, stop=stop)
    finally:
        server.stop()
    sys.stderr.write(f"stopped after {server.request_count} requests\n")
    return EXIT_OK

"""The ``vinci`` command line (also ``python -m requests_resilience.vinci``).

::

    vinci [-v] [--api-key KEY] [--base-url URL] generate PROMPT [--duration N] [--wait]
    vinci status REQUEST_ID
    vinci balance
    vinci demo [--jobs N] [--threads N] [--trace]

Exit codes: 0 success; 1 an API error (its type, status, detail and request id are
printed); 2 a usage or configuration error, such as a missing API key. The key is
read from ``--api-key`` or ``VINCI_API_KEY`` and is never printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import structlog

from requests_resilience._errors import (
    APIError,
    APIStatusError,
    ConfigurationError,
    MissingAPIKeyError,
)
from requests_resilience._secrets import Redactor
from requests_resilience.vinci._client import VinciClient
from requests_resilience.vinci._errors import VinciInputError
from requests_resilience.vinci._models import ASPECT_RATIOS, JobStatus
from requests_resilience.vinci._preset import API_KEY_ENV_VAR, DEFAULT_BASE_URL

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_API_ERROR: Final = 1
EXIT_USAGE: Final = 2
_BASE_URL_ENV_VAR: Final = "VINCI_BASE_URL"


class _UsageError(Exception):
    """A problem with how the command was run (exit code 2)."""


def _consoles() -> tuple[Console, Console]:
    try:
        from rich.console import Console  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        msg = "the vinci command needs rich: pip install 'requests-resilience[cli]'"
        raise _UsageError(msg) from exc
    return Console(highlight=False, soft_wrap=True), Console(
        stderr=True, highlight=False, soft_wrap=True
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        msg = f"must be a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vinci",
        description="Call the Vinci video API through a resilient pipeline.",
        epilog=(
            f"The API key comes from --api-key or the {API_KEY_ENV_VAR} environment "
            "variable (prefer the variable: a command line is visible to other users). "
            "'vinci demo' needs neither a key nor the network."
        ),
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help=f"the API key (default: ${API_KEY_ENV_VAR})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log retries, breaker changes and failed calls to standard error",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        default=os.environ.get(_BASE_URL_ENV_VAR) or DEFAULT_BASE_URL,
        help=f"the API base URL (default: ${_BASE_URL_ENV_VAR} or {DEFAULT_BASE_URL})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    generate = commands.add_parser("generate", help="start a text-to-video job")
    generate.add_argument("prompt", help="what to generate")
    generate.add_argument(
        "--duration", type=int, default=5, metavar="SECONDS", help="1 to 10 (default 5)"
    )
    generate.add_argument(
        "--aspect-ratio", choices=ASPECT_RATIOS, default="16:9", help="(default 16:9)"
    )
    generate.add_argument("--seed", type=int, default=None, help="for reproducible results")
    generate.add_argument("--wait", action="store_true", help="wait, showing progress")
    generate.add_argument(
        "--timeout",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="how long --wait waits (default 600)",
    )
    generate.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="the first wait between status polls (default 5)",
    )
    generate.set_defaults(handler=_generate)

    status = commands.add_parser("status", help="show a job's status")
    status.add_argument("request_id", metavar="REQUEST_ID", help="the job's id (req_...)")
    status.set_defaults(handler=_status)

    balance = commands.add_parser("balance", help="show the account's balance")
    balance.set_defaults(handler=_balance)

    demo = commands.add_parser(
        "demo", help="run jobs against a fake, misbehaving server (no key, no network)"
    )
    demo.add_argument("--jobs", type=int, default=24, help="how many jobs (default 24)")
    demo.add_argument("--threads", type=int, default=4, help="how many threads (default 4)")
    demo.add_argument("--trace", action="store_true", help="print the trace of one job")
    demo.set_defaults(handler=_demo)
    return parser


def _client(args: argparse.Namespace) -> VinciClient:
    return VinciClient(api_key=args.api_key, base_url=args.base_url)


def _print_status(out: Console, status: JobStatus) -> None:
    out.print(f"request_id  {status.request_id}")
    out.print(f"status      {status.status}")
    if status.status in ("pending", "processing"):
        out.print(f"progress    {status.progress:g}%")
    if status.video_url is not None:
        out.print(f"video_url   {status.video_url}")
    if status.duration_seconds is not None:
        out.print(f"duration    {status.duration_seconds:g}s")
    if status.cost_usd is not None:
        out.print(f"cost        ${status.cost_usd:.2f}")
    if status.estimated_cost_usd is not None:
        out.print(f"estimate    ${status.estimated_cost_usd:.2f}")
    if status.error is not None:
        out.print(f"error       {status.error}")


def _generate(args: argparse.Namespace, out: Console) -> int:
    with _client(args) as client:
        job = client.text_to_video(
            args.prompt,
            duration_seconds=args.duration,
            aspect_ratio=args.aspect_ratio,
            seed=args.seed,
        )
        out.print(
            f"created job {job.request_id} ({job.status}), estimated cost "
            f"${job.estimated_cost_usd:.2f}, {job.estimated_duration_seconds:g}s of video"
        )
        if not args.wait:
            out.print(f"poll it with: vinci status {job.request_id}")
            return EXIT_OK
        from rich.progress import (  # noqa: PLC0415 - optional dependency
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=out,
        ) as progress:
            task = progress.add_task("pending", total=100)

            def show(status: JobStatus) -> None:
                progress.update(task, completed=status.progress, description=status.status)

            done = client.wait(
                job,
                timeout=args.timeout,
                poll_interval=args.poll_interval,
                max_poll_interval=max(args.poll_interval, 30.0),
                on_progress=show,
            )
        _print_status(out, done)
    return EXIT_OK


def _status(args: argparse.Namespace, out: Console) -> int:
    with _client(args) as client:
        _print_status(out, client.status(args.request_id))
    return EXIT_OK


def _balance(args: argparse.Namespace, out: Console) -> int:
    with _client(args) as client:
        balance = client.balance()
    out.print(f"balance     ${balance.balance_usd:.2f}")
    out.print(f"spent       ${balance.total_spent_usd:.2f}")
    return EXIT_OK


def _demo(args: argparse.Namespace, out: Console) -> int:
    from requests_resilience.vinci._demo import (  # noqa: PLC0415 - needs werkzeug
        print_report,
        run_demo,
        trace_one_job,
    )

    try:
        report = run_demo(jobs=args.jobs, threads=args.threads)
    except ImportError as exc:
        extra = "pip install 'requests-resilience[testing,cli]'"
        msg = f"the demo needs the fake server: {extra} ({exc})"
        raise _UsageError(msg) from exc
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    print_report(report, out)
    if args.trace:
        lines = trace_one_job()
        if lines is None:
            out.print("tracing needs the OpenTelemetry SDK: pip install opentelemetry-sdk")
        else:
            out.print("trace of one job:")
            for line in lines:
                out.print(f"  {line}")
    return EXIT_OK


def _describe_api_error(exc: APIError) -> list[str]:
    lines = [f"error: {type(exc).__name__}"]
    if isinstance(exc, APIStatusError):
        lines.append(f"  status:     {exc.status_code}")
        lines.append(f"  detail:     {exc.detail or '-'}")
    else:
        lines.append(f"  detail:     {exc.message or '-'}")
    request_id = getattr(exc, "request_id", None)
    lines.append(f"  request_id: {request_id or '-'}")
    return lines


def _configure_logging(verbose: bool) -> None:
    """Send the library's structlog events to stderr: warnings and up with -v, else none.

    The command reports results and the final error itself; an application that
    configured structlog before calling `main` keeps its configuration.
    """
    if structlog.is_configured():
        return
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.WARNING if verbose else logging.CRITICAL
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vinci`` command and return its exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 for an API error, 2 for a usage or configuration error.
    """
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    key = args.api_key or os.environ.get(API_KEY_ENV_VAR) or ""
    redact = Redactor([key.strip()] if key.strip() else []).redact
    try:
        out, err = _consoles()
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)  # rich is what is missing
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace, Console], int] = args.handler
    try:
        return handler(args, out)
    except MissingAPIKeyError:
        err.print(
            f"error: no API key. Set the {API_KEY_ENV_VAR} environment variable "
            f"(export {API_KEY_ENV_VAR}=sk-...) or pass --api-key.",
        )
        return EXIT_USAGE
    except (ConfigurationError, VinciInputError, _UsageError) as exc:
        err.print(f"error: {redact(str(exc))}")
        return EXIT_USAGE
    except APIError as exc:
        for line in _describe_api_error(exc):
            err.print(redact(line))
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130

"""The ``vinci`` command line (also ``python -m requests_resilience.vinci``).

::

    vinci [-v] [--api-key KEY] [--base-url URL] [--retries N] COMMAND [--json] ...
    vinci generate PROMPT [--duration N] [--aspect-ratio R] [--seed N] [--wait]
    vinci status REQUEST_ID
    vinci balance
    vinci usage [--days N]
    vinci demo [--jobs N] [--threads N] [--trace]

Made for people and for scripts, after the conventions of ``gh`` and the Stripe CLI:

- **standard output carries the results and nothing else**: ``name  value`` lines, or
  with ``--json`` one JSON object per result, ready for ``jq``;
- **standard error carries the rest**: progress (a bar only when standard error is a
  terminal, plain lines when it is not, nothing with ``--json``), logs (``-v``), hints
  and the error, which with ``--json`` is one JSON object ``{"error": {...}}`` with
  ``type``, ``status``, ``request_id``, ``detail``, ``message``, ``sent``,
  ``checked_locally``, ``retry_after`` and ``exit_code``;
- **the exit code tells what went wrong** (`EXIT_CODES`, also printed by
  ``vinci --help``): usage, authentication, balance, rate limit, not found, server,
  network, timeout and a failed job each have their own;
- **a refusal the client decided alone** (the balance pre-check, an open circuit
  breaker, the local rate limit) says "checked locally, nothing was sent".

The key is read from ``--api-key`` or ``VINCI_API_KEY`` and is never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

import structlog

from requests_resilience._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    CircuitOpenError,
    ConfigurationError,
    InsufficientBalanceError,
    MissingAPIKeyError,
    NotFoundError,
    RateLimitError,
    RetryBudgetExhaustedError,
    ServerError,
    refused_locally,
)
from requests_resilience._retry import Retry
from requests_resilience._secrets import Redactor
from requests_resilience.vinci._client import VinciClient
from requests_resilience.vinci._errors import JobFailedError, JobTimeoutError, VinciInputError
from requests_resilience.vinci._models import ASPECT_RATIOS, JobStatus
from requests_resilience.vinci._preset import (
    API_KEY_ENV_VAR,
    DEFAULT_BASE_URL,
    _default_retry,
    build_pipeline,
)

if TYPE_CHECKING:
    from requests_resilience.vinci._demo import DemoReport

__all__ = ["EXIT_CODES", "ExitCode", "main"]

_BASE_URL_ENV_VAR: Final = "VINCI_BASE_URL"
_LOCALLY: Final = "checked locally, nothing was sent"


@dataclass(frozen=True, slots=True)
class ExitCode:
    """One exit code of the ``vinci`` command.

    Attributes:
        code: the process's exit status.
        name: a short name, shown by ``vinci --help`` and in errors (``exit: 6 (not_found)``).
        meaning: when the command exits with it.
    """

    code: int
    name: str
    meaning: str


EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_AUTH: Final = 3
EXIT_BALANCE: Final = 4
EXIT_RATE_LIMIT: Final = 5
EXIT_NOT_FOUND: Final = 6
EXIT_SERVER: Final = 7
EXIT_NETWORK: Final = 8
EXIT_TIMEOUT: Final = 9
EXIT_JOB_FAILED: Final = 10
EXIT_INTERRUPTED: Final = 130

#: Every exit code of the command, in order; `vinci --help` and docs/cli.md show it.
EXIT_CODES: Final[tuple[ExitCode, ...]] = (
    ExitCode(EXIT_OK, "ok", "success"),
    ExitCode(EXIT_ERROR, "error", "another API error: 400, 413, an answer it cannot read"),
    ExitCode(EXIT_USAGE, "usage", "bad arguments or options; nothing was sent"),
    ExitCode(EXIT_AUTH, "auth", "no API key (nothing sent), or the key was refused (401)"),
    ExitCode(EXIT_BALANCE, "balance", "the balance does not cover the job (402, or local)"),
    ExitCode(EXIT_RATE_LIMIT, "rate_limit", "rate limited (429, or the local rate limit)"),
    ExitCode(EXIT_NOT_FOUND, "not_found", "no such job (404)"),
    ExitCode(EXIT_SERVER, "server", "the server failed (5xx), or the breaker is open"),
    ExitCode(EXIT_NETWORK, "network", "no answer: refused, reset, DNS, TLS, proxy"),
    ExitCode(EXIT_TIMEOUT, "timeout", "a request timed out, or --wait passed --timeout"),
    ExitCode(EXIT_JOB_FAILED, "job_failed", "the job ended failed (generate --wait)"),
    ExitCode(EXIT_INTERRUPTED, "interrupted", "interrupted (Ctrl-C)"),
)

# Most specific first: the first class an error is an instance of decides its code.
_EXIT_BY_ERROR: Final[tuple[tuple[type[BaseException], int], ...]] = (
    (JobTimeoutError, EXIT_TIMEOUT),
    (JobFailedError, EXIT_JOB_FAILED),
    (MissingAPIKeyError, EXIT_AUTH),
    (AuthenticationError, EXIT_AUTH),
    (InsufficientBalanceError, EXIT_BALANCE),
    (RateLimitError, EXIT_RATE_LIMIT),
    (NotFoundError, EXIT_NOT_FOUND),
    (ServerError, EXIT_SERVER),
    (CircuitOpenError, EXIT_SERVER),
    (RetryBudgetExhaustedError, EXIT_SERVER),
    (APITimeoutError, EXIT_TIMEOUT),
    (APIConnectionError, EXIT_NETWORK),
    (ConfigurationError, EXIT_USAGE),
    (VinciInputError, EXIT_USAGE),
)


class UsageError(Exception):
    """A problem with how the command was run (exit code 2).

    Attributes:
        usage: the usage line of the (sub)command, for the human error output.
    """

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class Interrupted(Exception):  # noqa: N818 - what happened, not an error of the API
    """Ctrl-C stopped the command (exit code 130); the job it was about, if any.

    Attributes:
        request_id: the job created before the interruption (it goes on at the
            server: poll it with ``vinci status``), or None.
    """

    def __init__(self, request_id: str | None = None) -> None:
        what = f": job {request_id} was created and goes on" if request_id else ""
        super().__init__(f"interrupted{what}")
        self.request_id = request_id


def exit_code_for(error: BaseException) -> int:
    """The exit code for `error` (see `EXIT_CODES`).

    A `RetryBudgetExhaustedError` takes the code of the error that ended its last
    attempt (its ``__cause__``): a 503 the budget would not retry is a server error.

    Example:
        >>> exit_code_for(NotFoundError("404", status_code=404))
        6
    """
    if isinstance(error, UsageError):
        return EXIT_USAGE
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
        return EXIT_INTERRUPTED
    if isinstance(error, RetryBudgetExhaustedError) and error.__cause__ is not None:
        return exit_code_for(error.__cause__)
    for kind, code in _EXIT_BY_ERROR:
        if isinstance(error, kind):
            return code
    return EXIT_ERROR


def _exit_name(code: int) -> str:
    return next((c.name for c in EXIT_CODES if c.code == code), "error")


def _sent(error: BaseException) -> bool:
    """Whether the request that failed may have reached the server."""
    if isinstance(error, (UsageError, ConfigurationError, VinciInputError)):
        return False
    if refused_locally(error):
        return False
    if isinstance(error, APIConnectionError):
        return error.request_sent
    return True


def error_fields(error: BaseException) -> dict[str, Any]:
    """The evidence of `error`, as the ``{"error": {...}}`` object of ``--json``.

    Returns:
        ``type``, ``status`` (the HTTP status, or None), ``request_id``, ``detail``
        (the server's explanation, or the failed job's error), ``message``, ``sent``
        (whether the failed request may have reached the server),
        ``checked_locally`` (a policy refused it without sending anything),
        ``retry_after`` (seconds, when known) and ``exit_code``.
    """
    status = getattr(error, "status_code", None) if isinstance(error, APIStatusError) else None
    if isinstance(error, APIStatusError):
        detail: str | None = error.detail or None
    elif isinstance(error, JobFailedError):
        detail = error.error or None
    else:
        detail = None
    retry_after = getattr(error, "retry_after", None)
    return {
        "type": "UsageError" if isinstance(error, UsageError) else type(error).__name__,
        "status": status or None,
        "request_id": getattr(error, "request_id", None),
        "detail": detail,
        "message": str(error),
        "sent": _sent(error),
        "checked_locally": refused_locally(error),
        "retry_after": float(retry_after) if isinstance(retry_after, (int, float)) else None,
        "exit_code": exit_code_for(error),
    }


def _human_error(fields_: Mapping[str, Any], usage: str) -> list[str]:
    code = fields_["exit_code"]
    if fields_["type"] == "UsageError":
        return [*([usage.rstrip()] if usage else []), f"error: {fields_['message']}"]
    if fields_["type"] == "Interrupted":
        return [str(fields_["message"])]
    if fields_["type"] in ("ConfigurationError", "VinciInputError", "MissingAPIKeyError"):
        return [f"error: {fields_['message']}", f"  exit:        {code} ({_exit_name(code)})"]
    head = f"error: {fields_['type']}"
    if fields_["checked_locally"]:
        head += f" ({_LOCALLY})"
    lines = [head]
    if fields_["status"] is not None:
        lines.append(f"  status:      {fields_['status']}")
    lines.append(f"  detail:      {fields_['detail'] or fields_['message'] or '-'}")
    lines.append(f"  request_id:  {fields_['request_id'] or '-'}")
    if fields_["retry_after"] is not None:
        lines.append(f"  retry_after: {fields_['retry_after']:g}s")
    if not fields_["sent"] and not fields_["checked_locally"]:
        lines.append("  sent:        no (the request never reached the server)")
    lines.append(f"  exit:        {code} ({_exit_name(code)})")
    return lines


class Output:
    """Where the command writes: results on stdout, everything else on stderr.

    Args:
        json_mode: results and the error as JSON objects, no progress lines or hints.
        redact: removes the API key from every text written.
        stdout: where results go.
        stderr: where progress, hints and errors go.
    """

    def __init__(
        self,
        *,
        json_mode: bool,
        redact: Callable[[str], str],
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self._redact = redact
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def result(self, data: Mapping[str, Any], lines: Sequence[str]) -> None:
        """Write one result: `data` as one JSON line, or the human `lines`."""
        if self.json_mode:
            self._write(self.stdout, json.dumps(_jsonable(data), sort_keys=False))
        else:
            for line in lines:
                self._write(self.stdout, line)

    def note(self, text: str) -> None:
        """A hint or a progress line for people: on stderr, and not in ``--json`` mode."""
        if not self.json_mode:
            self._write(self.stderr, text)

    def error(self, error: BaseException) -> int:
        """Report `error` on stderr and return its exit code."""
        data = error_fields(error)
        if self.json_mode:
            self._write(self.stderr, json.dumps({"error": data}))
        else:
            usage = error.usage if isinstance(error, UsageError) else ""
            if isinstance(error, MissingAPIKeyError):
                data["message"] = (
                    f"no API key. Set the {API_KEY_ENV_VAR} environment variable "
                    f"(export {API_KEY_ENV_VAR}=sk-...) or pass --api-key; nothing was sent."
                )
            for line in _human_error(data, usage):
                self._write(self.stderr, line)
        return int(data["exit_code"])

    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(self._redact(text) + "\n")
        stream.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}


# -- the parser -----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises `UsageError` instead of exiting.

    So that ``--json`` can report a usage error as JSON too.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, usage=self.format_usage())


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        msg = f"must be a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 99:
        msg = f"must be an integer from 0 to 99, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _epilog() -> str:
    table = "\n".join(f"  {c.code:>3}  {c.name:<12} {c.meaning}" for c in EXIT_CODES)
    return (
        f"The API key comes from --api-key or the {API_KEY_ENV_VAR} environment variable\n"
        "(prefer the variable: a command line is visible to other users). 'vinci demo'\n"
        "needs neither a key nor the network.\n\n"
        "Results go to standard output; progress, logs and errors to standard error.\n"
        'With --json, each result is one JSON object and an error is {"error": {...}}.\n\n'
        f"exit codes:\n{table}"
    )


def _common() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help='print the result as one JSON object; an error as {"error": {...}} on stderr',
    )
    return common


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vinci",
        description="Call the Vinci video API through a resilient pipeline.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--api-key", metavar="KEY", default=None, help=f"the API key (default: ${API_KEY_ENV_VAR})"
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
    parser.add_argument(
        "--retries",
        type=_retries,
        default=None,
        metavar="N",
        help="retries after a failed attempt, 0 to 99 (default: the preset's, 4)",
    )
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_generate(commands)
    status = commands.add_parser("status", parents=[_common()], help="show a job's status")
    status.add_argument("request_id", metavar="REQUEST_ID", help="the job's id (req_...)")
    status.set_defaults(handler=_status)
    balance = commands.add_parser(
        "balance", parents=[_common()], help="show the account's balance"
    )
    balance.set_defaults(handler=_balance)
    usage = commands.add_parser("usage", parents=[_common()], help="show the account's usage")
    usage.add_argument("--days", type=int, default=30, help="1 to 90 (default 30)")
    usage.set_defaults(handler=_usage)
    demo = commands.add_parser(
        "demo",
        parents=[_common()],
        help="run jobs against a fake, misbehaving server (no key, no network)",
    )
    demo.add_argument("--jobs", type=int, default=24, help="how many jobs (default 24)")
    demo.add_argument("--threads", type=int, default=4, help="how many threads (default 4)")
    demo.add_argument("--trace", action="store_true", help="print the trace of one job")
    demo.set_defaults(handler=_demo)
    return parser


def _add_generate(commands: Any) -> None:
    generate = commands.add_parser(
        "generate", parents=[_common()], help="start a text-to-video job"
    )
    generate.add_argument("prompt", help="what to generate")
    generate.add_argument(
        "--duration", type=int, default=5, metavar="SECONDS", help="1 to 10 (default 5)"
    )
    generate.add_argument(
        "--aspect-ratio", choices=ASPECT_RATIOS, default="16:9", help="(default 16:9)"
    )
    generate.add_argument("--seed", type=int, default=None, help="for reproducible results")
    generate.add_argument(
        "--wait", action="store_true", help="wait for the job, showing progress on stderr"
    )
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


# -- the commands ---------------------------------------------------------------------


def _client(args: argparse.Namespace) -> VinciClient:
    retry = _default_retry()
    if args.retries is not None and isinstance(retry, Retry):
        retry = replace(retry, max_attempts=args.retries + 1)
    pipeline = build_pipeline(api_key=args.api_key, retry=retry)
    return VinciClient(base_url=args.base_url, pipeline=pipeline)


def _status_lines(status: JobStatus) -> list[str]:
    lines = [f"request_id  {status.request_id}", f"status      {status.status}"]
    if status.status in ("pending", "processing"):
        lines.append(f"progress    {status.progress:g}%")
    optional = (
        ("video_url   {}", status.video_url),
        ("duration    {:g}s", status.duration_seconds),
        ("cost        ${:.2f}", status.cost_usd),
        ("estimate    ${:.2f}", status.estimated_cost_usd),
        ("error       {}", status.error),
    )
    lines.extend(template.format(value) for template, value in optional if value is not None)
    return lines


@contextmanager
def _progress(out: Output) -> Iterator[Callable[[JobStatus], None]]:
    """Yield the ``on_progress`` callback: a bar on a terminal, else plain lines.

    Progress goes to stderr only. On a terminal it is a bar (with the ``cli`` extra);
    on a pipe or a file it is one line per change of status or progress, and nothing
    in ``--json`` mode, so that stderr then holds at most the error object.
    """
    if out.stderr.isatty():
        try:
            from rich.console import Console  # noqa: PLC0415 - optional dependency
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            pass
        else:
            columns = (
                TextColumn("{task.description:<10}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
            )
            console = Console(file=out.stderr, highlight=False)
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("pending", total=100)

                def show(status: JobStatus) -> None:
                    bar.update(task, completed=status.progress, description=status.status)

                yield show
            return
    last: list[tuple[str, float]] = []

    def line(status: JobStatus) -> None:
        seen = (status.status, status.progress)
        if not last or last[-1] != seen:
            last.append(seen)
            out.note(f"{status.request_id}: {status.status} {status.progress:g}%")

    yield line


def _generate(args: argparse.Namespace, out: Output) -> int:
    with _client(args) as client:
        job = client.text_to_video(
            args.prompt,
            duration_seconds=args.duration,
            aspect_ratio=args.aspect_ratio,
            seed=args.seed,
        )
        created = (
            f"created job {job.request_id} ({job.status}), estimated cost "
            f"${job.estimated_cost_usd:.2f}, {job.estimated_duration_seconds:g}s of video"
        )
        if not args.wait:
            out.result(_as_dict(job), [created])
            out.note(f"poll it with: vinci status {job.request_id}")
            return EXIT_OK
        out.note(created)
        try:
            with _progress(out) as show:
                done = client.wait(
                    job,
                    timeout=args.timeout,
                    poll_interval=args.poll_interval,
                    max_poll_interval=max(args.poll_interval, 30.0),
                    on_progress=show,
                )
        except KeyboardInterrupt as exc:
            raise Interrupted(job.request_id) from exc
    out.result(_as_dict(done), _status_lines(done))
    return EXIT_OK


def _status(args: argparse.Namespace, out: Output) -> int:
    with _client(args) as client:
        status = client.status(args.request_id)
    out.result(_as_dict(status), _status_lines(status))
    return EXIT_OK


def _balance(args: argparse.Namespace, out: Output) -> int:
    with _client(args) as client:
        balance = client.balance()
    out.result(
        _as_dict(balance),
        [f"balance     ${balance.balance_usd:.2f}", f"spent       ${balance.total_spent_usd:.2f}"],
    )
    return EXIT_OK


def _usage(args: argparse.Namespace, out: Output) -> int:
    with _client(args) as client:
        usage = client.usage(args.days)
    out.result(
        _as_dict(usage),
        [
            f"period      {usage.period_days} days",
            f"jobs        {usage.total_requests}",
            f"video       {usage.total_seconds:g}s",
            f"cost        ${usage.total_cost_usd:.2f}",
            f"balance     ${usage.current_balance_usd:.2f}",
            f"spent       ${usage.total_spent_usd:.2f}",
        ],
    )
    return EXIT_OK


def _demo(args: argparse.Namespace, out: Output) -> int:
    from requests_resilience.vinci._demo import (  # noqa: PLC0415 - needs werkzeug
        run_demo,
        trace_one_job,
    )

    try:
        report = run_demo(jobs=args.jobs, threads=args.threads)
    except ImportError as exc:
        extra = "pip install 'requests-resilience[testing,cli]'"
        msg = f"the demo needs the fake server: {extra} ({exc})"
        raise UsageError(msg) from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    trace = trace_one_job() if args.trace else None
    if out.json_mode:
        data = _as_dict(report)
        if args.trace:
            data["trace"] = trace
        out.result(data, [])
        return EXIT_OK
    _print_demo(report, trace, traced=args.trace, out=out)
    return EXIT_OK


def _print_demo(report: DemoReport, trace: list[str] | None, *, traced: bool, out: Output) -> None:
    try:
        from rich.console import Console  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        msg = "the demo's table needs rich: pip install 'requests-resilience[cli]' (or --json)"
        raise UsageError(msg) from exc
    from requests_resilience.vinci._demo import print_report  # noqa: PLC0415

    print_report(report, Console(file=out.stdout, highlight=False, soft_wrap=True))
    if not traced:
        return
    if trace is None:
        out.note("tracing needs the OpenTelemetry SDK: pip install opentelemetry-sdk")
        return
    out.result({}, ["trace of one job:", *(f"  {line}" for line in trace)])


# -- main -----------------------------------------------------------------------------


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


def _key_redactor(argv: Sequence[str]) -> Callable[[str], str]:
    """A redactor of every key the command may hold: --api-key's and the variable's."""
    keys = [os.environ.get(API_KEY_ENV_VAR, "").strip()]
    for index, word in enumerate(argv):
        if word == "--api-key" and index + 1 < len(argv):
            keys.append(argv[index + 1].strip())
        elif word.startswith("--api-key="):
            keys.append(word.split("=", 1)[1].strip())
    return Redactor([key for key in keys if key]).redact


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vinci`` command and return its exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, else one of `EXIT_CODES`.

    Example:
        >>> main(["balance", "--json"])  # doctest: +SKIP
        {"balance_usd": 100.0, "total_spent_usd": 0.0}
        0
    """
    words = list(sys.argv[1:] if argv is None else argv)
    out = Output(json_mode="--json" in words, redact=_key_redactor(words))
    try:
        args = _parser().parse_args(words)
    except UsageError as exc:
        return out.error(exc)
    out.json_mode = bool(args.json)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace, Output], int] = args.handler
    try:
        return handler(args, out)
    except KeyboardInterrupt:
        return out.error(Interrupted())
    except Exception as exc:
        if exit_code_for(exc) == EXIT_ERROR and not isinstance(exc, APIError):
            raise  # a bug, not an outcome: let the traceback show
        return out.error(exc)

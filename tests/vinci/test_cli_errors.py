"""How the vinci command classifies and reports errors, in process (no server needed).

The subprocess tests (test_cli.py, test_cli_json.py) show each exit code against the
fake server; the refusals that are hard to provoke from one short command (an open
breaker, the local rate limit, a read timeout, an empty retry budget) are shown here.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import requests

from requests_resilience import (
    APIConnectionError,
    APIReadTimeoutError,
    AuthenticationError,
    CircuitOpenError,
    ConfigurationError,
    RateLimitError,
    RetryBudgetExhaustedError,
    ServerError,
)
from requests_resilience.vinci import JobTimeoutError, UnexpectedResponseError, VinciInputError
from requests_resilience.vinci._cli import EXIT_CODES, Output, error_fields, exit_code_for

DOCS_CLI = Path(__file__).parents[2] / "docs" / "cli.md"


def _budget_error() -> RetryBudgetExhaustedError:
    try:
        try:
            raise ServerError("503", status_code=503)
        except ServerError as cause:
            raise RetryBudgetExhaustedError("budget empty") from cause
    except RetryBudgetExhaustedError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError("401", status_code=401), 3),
        (RateLimitError("local", retry_after=2.0, response=None), 5),
        (ServerError("502", status_code=502), 7),
        (CircuitOpenError("open", breaker="api", retry_after=12.0), 7),
        (APIConnectionError("refused", request_sent=False), 8),
        (APIReadTimeoutError("read timeout", request_sent=True), 9),
        (JobTimeoutError("req_1", 5.0, None), 9),
        (ConfigurationError("bad base_url"), 2),
        (VinciInputError("prompt must be a non-empty string"), 2),
        (UnexpectedResponseError("not JSON"), 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_exit_code_for_each_kind_of_error(error: Exception, code: int) -> None:
    """Each kind of error has its documented exit code."""
    assert exit_code_for(error) == code


def test_an_empty_budget_takes_the_code_of_its_last_error() -> None:
    """RetryBudgetExhaustedError exits like the error that ended its last attempt."""
    assert exit_code_for(_budget_error()) == 7


def test_every_exit_code_is_distinct() -> None:
    """No two rows of the table share a code or a name."""
    assert len({c.code for c in EXIT_CODES}) == len(EXIT_CODES)
    assert len({c.name for c in EXIT_CODES}) == len(EXIT_CODES)


@pytest.mark.parametrize(
    "error",
    [
        CircuitOpenError("breaker open", breaker="api", retry_after=12.0),
        RateLimitError("refused locally", retry_after=2.0, response=None),
    ],
    ids=["open breaker", "local rate limit"],
)
def test_local_refusals_say_nothing_was_sent(error: Exception) -> None:
    """An open breaker and the local rate limit are reported as local: nothing was sent."""
    fields = error_fields(error)
    assert fields["checked_locally"] is True
    assert fields["sent"] is False
    stderr = io.StringIO()
    Output(json_mode=False, redact=str, stdout=io.StringIO(), stderr=stderr).error(error)
    assert "(checked locally, nothing was sent)" in stderr.getvalue().splitlines()[0]
    assert "retry_after:" in stderr.getvalue()


def test_a_server_error_is_not_called_local() -> None:
    """A 5xx that came back from the server is sent, not checked locally."""
    response = requests.Response()
    response.status_code = 502
    error = ServerError("502", status_code=502, request_id="req_9", response=response)
    fields = error_fields(error)
    assert (fields["sent"], fields["checked_locally"]) == (True, False)
    assert (fields["status"], fields["request_id"]) == (502, "req_9")


def test_json_errors_are_redacted() -> None:
    """The redactor runs over the JSON error line as over the human lines."""
    stderr = io.StringIO()
    out = Output(
        json_mode=True,
        redact=lambda text: text.replace("sk-secret", "[redacted]"),
        stdout=io.StringIO(),
        stderr=stderr,
    )
    assert out.error(AuthenticationError("bad key sk-secret", status_code=401)) == 3
    assert "sk-secret" not in stderr.getvalue()
    assert json.loads(stderr.getvalue())["error"]["type"] == "AuthenticationError"


def test_the_docs_table_matches_the_exit_codes() -> None:
    """docs/cli.md lists exactly EXIT_CODES, in order, with the same names."""
    rows = re.findall(r"^\| `?(\d+)`? \| `([a-z_]+)` \|", DOCS_CLI.read_text(), re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(c.code, c.name) for c in EXIT_CODES]

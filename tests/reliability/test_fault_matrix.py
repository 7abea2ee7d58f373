"""The fault matrix: every way a server can fail, through the full Vinci pipeline.

Each row scripts faults on ``GET /billing/balance`` of the fake server, sends one logical
call through the preset pipeline (`requests_resilience.vinci.mount`, on a fake clock
whose jitter draw is 0.5) and asserts the exact outcome: the exception type (or the
final status), how many requests reached the server, and the waits on the fake clock.
The real time of every call is bounded too, so a hang fails instead of blocking.

Why the numbers: the preset makes 5 attempts at most, with backoff from 1 s doubling and
full jitter (so waits of 0.5, 1, 2 and 4 s at a draw of 0.5), honours Retry-After up to
60 s, and has a 120 s deadline. Its shared retry budget is left out here (see
`preset_retry_without_budget`); the soak checks the budget's accounting.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
import requests

from requests_resilience import (
    APIChunkedEncodingError,
    APIConnectionError,
    APIError,
    APIReadTimeoutError,
    APIStatusError,
    BadRequestError,
    NotFoundError,
    PolicyLike,
    RateLimitError,
    Retry,
    ServerError,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import (
    DEFAULT,
    UnexpectedResponseError,
    VinciClient,
    build_pipeline,
    mount,
)
from tests.reliability.conftest import HANG, KEY, WALL, within

BALANCE = "/billing/balance"
#: The real time any row may take (the slowest: four 0.05 s read timeouts).
#: A server that keeps failing: 5 attempts, waits of half of each backoff step.
FAILING = (0.5, 1.0, 2.0, 4.0)
SHORT_TIMEOUT = 0.05
TEN_MB = 10 * 1024 * 1024


def http_date(offset: float) -> str:
    """An HTTP-date `offset` seconds from the fake clock's wall time."""
    return format_datetime(datetime.fromtimestamp(WALL + offset, tz=timezone.utc), usegmt=True)


@dataclass
class Outcome:
    """What one logical call produced."""

    error: BaseException | None = None
    response: requests.Response | None = None
    elsewhere: FakeVinciServer | None = None


def _detail_is(expected: str) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert isinstance(outcome.error, APIStatusError)
        assert outcome.error.detail == expected

    return check


def _retry_after_is(expected: float | None) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert isinstance(outcome.error, RateLimitError)
        assert outcome.error.retry_after == expected

    return check


def _huge_body_is_cut(outcome: Outcome) -> None:
    assert isinstance(outcome.error, BadRequestError)
    assert outcome.error.detail == "x" * 499 + "…"
    assert len(str(outcome.error)) < 1000


def _sent(expected: bool) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert isinstance(outcome.error, APIConnectionError)
        assert outcome.error.request_sent is expected

    return check


def _auth_did_not_follow(outcome: Outcome) -> None:
    assert outcome.response is not None
    assert [r.status_code for r in outcome.response.history] == [302]
    assert outcome.elsewhere is not None
    (followed,) = outcome.elsewhere.requests
    assert "authorization" not in {name.lower() for name in followed.headers}
    assert KEY not in repr(followed.headers)


@dataclass(frozen=True)
class Row:
    """One fault and its exact outcome."""

    faults: tuple[Fault, ...]
    raises: type[BaseException] | None
    reached: int
    sleeps: tuple[float, ...]
    status: int | None = None
    timeout: float = 5.0
    target: str = "server"  # "refused": a closed port; "redirect": 302 to another host
    via_client: bool = False
    check: Callable[[Outcome], None] | None = field(default=None)


def _times(fault: Fault, n: int = 5) -> tuple[Fault, ...]:
    return (fault,) * n


ROWS = [
    pytest.param(
        Row((), APIConnectionError, 0, FAILING, target="refused", check=_sent(False)),
        id="connection-refused",
    ),
    pytest.param(
        Row(_times(Fault.reset()), APIConnectionError, 5, FAILING, check=_sent(True)),
        id="reset-before-response",
    ),
    pytest.param(Row((Fault.reset(),), None, 2, (0.5,), status=200), id="reset-once-then-ok"),
    pytest.param(
        Row(
            _times(Fault.reset_mid_body()), APIChunkedEncodingError, 5, FAILING, check=_sent(True)
        ),
        id="reset-mid-body",
    ),
    pytest.param(
        Row(_times(Fault.delay(0.3)), APIReadTimeoutError, 5, FAILING, timeout=SHORT_TIMEOUT),
        id="read-timeout",
    ),
    pytest.param(
        Row(
            _times(Fault.stall_after_headers(0.3)),
            APIReadTimeoutError,
            5,
            FAILING,
            timeout=SHORT_TIMEOUT,
        ),
        id="headers-then-stall",
    ),
    pytest.param(
        Row(_times(Fault.truncated()), APIChunkedEncodingError, 5, FAILING, check=_sent(True)),
        id="truncated-body",
    ),
    pytest.param(
        Row(
            _times(Fault.body(502, "<html><h1>Bad Gateway</h1></html>", content_type="text/html")),
            ServerError,
            5,
            FAILING,
            check=_detail_is("<html><h1>Bad Gateway</h1></html>"),
        ),
        id="error-body-not-json",
    ),
    pytest.param(
        Row(
            _times(Fault.body(503, b"", content_type="text/plain")),
            ServerError,
            5,
            FAILING,
            check=_detail_is("Service Unavailable"),
        ),
        id="error-body-empty",
    ),
    pytest.param(
        Row(
            (Fault.body(400, b"x" * TEN_MB, content_type="text/plain"),),
            BadRequestError,
            1,
            (),
            check=_huge_body_is_cut,
        ),
        id="error-body-10MB",
    ),
    pytest.param(
        Row(
            (Fault.body(422, {"detail": [{"loc": ["body", "prompt"], "msg": "required"}]}),),
            APIStatusError,
            1,
            (),
            check=_detail_is('[{"loc": ["body", "prompt"], "msg": "required"}]'),
        ),
        id="error-detail-a-list",
    ),
    pytest.param(
        Row(
            (Fault.body(404, {"detail": {"code": "gone", "id": 7}}),),
            NotFoundError,
            1,
            (),
            check=_detail_is('{"code": "gone", "id": 7}'),
        ),
        id="error-detail-an-object",
    ),
    pytest.param(
        Row(
            _times(Fault.status(429, retry_after="soon")),
            RateLimitError,
            5,
            FAILING,
            check=_retry_after_is(None),
        ),
        id="retry-after-garbage",
    ),
    pytest.param(
        Row(
            _times(Fault.status(429, retry_after="-5")),
            RateLimitError,
            5,
            FAILING,
            check=_retry_after_is(None),
        ),
        id="retry-after-negative",
    ),
    pytest.param(
        Row(
            _times(Fault.status(429, retry_after=str(365 * 86400))),
            RateLimitError,
            1,
            (),
            check=_retry_after_is(365 * 86400.0),
        ),
        id="retry-after-huge-fails-at-once",
    ),
    pytest.param(
        Row(
            _times(Fault.status(429, retry_after="1e12")),
            RateLimitError,
            5,
            FAILING,
            check=_retry_after_is(None),
        ),
        id="retry-after-absurd-is-ignored",
    ),
    pytest.param(
        Row(
            _times(Fault.status(429, retry_after=http_date(-3600))),
            RateLimitError,
            5,
            (0.0, 0.0, 0.0, 0.0),
            check=_retry_after_is(0.0),
        ),
        id="retry-after-past-http-date",
    ),
    pytest.param(
        Row(
            _times(Fault.status(429, retry_after=http_date(10))),
            RateLimitError,
            5,
            (10.0, 0.0, 0.0, 0.0),
            check=_retry_after_is(0.0),
        ),
        id="retry-after-future-http-date",
    ),
    pytest.param(
        Row((), None, 1, (), status=401, target="redirect", check=_auth_did_not_follow),
        id="redirect-to-another-host",
    ),
    pytest.param(
        Row(
            (Fault.body(200, "<html>maintenance</html>", content_type="text/html"),),
            UnexpectedResponseError,
            1,
            (),
            via_client=True,
        ),
        id="200-not-json-to-the-client",
    ),
]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def preset_retry_without_budget() -> Retry:
    """The preset's retry policy, without its shared retry budget.

    A row is one logical call, and the budget is state shared across calls: what it
    allows one call depends on the calls before it (the soak checks its accounting).
    """
    (retry,) = [p for p in build_pipeline(api_key=KEY).policies if isinstance(p, Retry)]
    return dataclasses.replace(retry, budget=None)


def run_row(
    row: Row, server: FakeVinciServer, clock: FakeClock, tracing: PolicyLike | None = None
) -> Outcome:
    """Script `row` on `server`, make its one logical call, and return what it produced.

    `tracing` replaces the preset's `Tracing` policy (to record spans in a test).
    """
    outcome = Outcome()
    base_url = server.base_url
    with FakeVinciServer() as elsewhere, requests.Session() as session:
        if row.target == "refused":
            base_url = f"http://127.0.0.1:{_closed_port()}/api/v1"
        elif row.target == "redirect":
            moved = f"http://localhost:{elsewhere.port}/api/v1{BALANCE}"
            server.script(Fault.status(302, headers={"Location": moved}), path=BALANCE)
            outcome.elsewhere = elsewhere
        server.script(*row.faults, path=BALANCE)
        mount(
            session,
            api_key=KEY,
            base_url=base_url,
            clock=clock,
            retry=preset_retry_without_budget(),
            tracing=DEFAULT if tracing is None else tracing,
        )

        def call() -> requests.Response:
            if row.via_client:
                with VinciClient(session, base_url=base_url, balance_check=False) as client:
                    client.balance()
                    pytest.fail("the client read a body that is not JSON")
            response = session.get(base_url + BALANCE, timeout=row.timeout)
            response.close()
            return response

        try:
            outcome.response = within(HANG, call)
        except APIError as exc:
            outcome.error = exc
        if row.target == "redirect":
            outcome.elsewhere = elsewhere
            if row.check is not None:
                row.check(outcome)
    return outcome


@pytest.mark.parametrize("row", ROWS)
def test_fault_has_its_exact_outcome(row: Row, server: FakeVinciServer, clock: FakeClock) -> None:
    """Each fault ends in its exact exception (or status), request count and waits."""
    outcome = run_row(row, server, clock)
    if row.raises is None:
        assert outcome.error is None, f"unexpected {outcome.error!r}"
        assert outcome.response is not None
        assert outcome.response.status_code == row.status
    else:
        assert type(outcome.error) is row.raises, f"got {outcome.error!r}"
    assert server.count(path=BALANCE) == row.reached
    assert clock.sleeps == pytest.approx(list(row.sleeps))  # every wait on the fake clock
    if row.check is not None and row.target != "redirect":
        row.check(outcome)

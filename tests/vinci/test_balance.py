"""The balance pre-check: cached, reserved under a lock, refused locally, thread-safe."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from requests_resilience import (
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    ServerError,
)
from requests_resilience.testing import FakeClock, FakeVinciServer, Fault
from requests_resilience.vinci import BalanceGuard, Job, VinciClient
from requests_resilience.vinci._balance import balance_in_detail

D = Decimal


class Fetches:
    """A fetch function that returns scripted balances and counts its calls."""

    def __init__(self, *values: str) -> None:
        self.values = [D(v) for v in values]
        self.calls = 0

    def __call__(self) -> Decimal:
        self.calls += 1
        return self.values[min(self.calls, len(self.values)) - 1]


# -- the guard on its own ----------------------------------------------------------------


def test_the_balance_is_fetched_once_then_cached(clock: FakeClock) -> None:
    """Within the ttl, reservations use the cached balance."""
    fetch = Fetches("1.00")
    guard = BalanceGuard(fetch, clock=clock, ttl=30)
    guard.reserve(D("0.25"))
    clock.advance(29)
    guard.reserve(D("0.25"))
    assert fetch.calls == 1
    assert guard.available == D("0.50")


def test_the_cache_expires_after_the_ttl(clock: FakeClock) -> None:
    """After ttl seconds on the clock, the next reservation fetches again."""
    fetch = Fetches("1.00", "5.00")
    guard = BalanceGuard(fetch, clock=clock, ttl=30)
    guard.reserve(D("0.25"))
    clock.advance(30)
    guard.reserve(D("0.25"))
    assert fetch.calls == 2
    assert guard.available == D("4.50")


def test_a_zero_ttl_fetches_for_every_reservation(clock: FakeClock) -> None:
    """ttl=0 reads the balance before every job, and does not loop."""
    fetch = Fetches("1.00")
    guard = BalanceGuard(fetch, clock=clock, ttl=0)
    guard.reserve(D("0.25"))
    guard.reserve(D("0.25"))
    assert fetch.calls == 2


def test_a_reservation_beyond_the_balance_is_refused_locally(clock: FakeClock) -> None:
    """The refusal is a 402 InsufficientBalanceError without a response."""
    guard = BalanceGuard(Fetches("0.30"), clock=clock, ttl=30)
    guard.reserve(D("0.25"))
    with pytest.raises(InsufficientBalanceError) as info:
        guard.reserve(D("0.25"))
    error = info.value
    assert (error.status_code, error.response, error.request_id) == (402, None, None)
    assert error.detail == "Insufficient balance. Current balance: $0.05, required: $0.25"
    assert "nothing was sent" in str(error)


def test_commit_takes_the_servers_estimate_off(clock: FakeClock) -> None:
    """A created job's estimated cost replaces its reservation."""
    guard = BalanceGuard(Fetches("1.00"), clock=clock, ttl=30)
    reservation = guard.reserve(D("0.25"))
    guard.commit(reservation, D("0.30"))
    guard.commit(reservation, D("0.30"))  # settling twice changes nothing
    assert guard.available == D("0.70")


def test_release_gives_the_reservation_back(clock: FakeClock) -> None:
    """A job refused by the server frees its reservation, without a new fetch."""
    fetch = Fetches("1.00")
    guard = BalanceGuard(fetch, clock=clock, ttl=30)
    guard.release(guard.reserve(D("0.75")))
    guard.reserve(D("1.00"))
    assert fetch.calls == 1


def test_an_unknown_outcome_forgets_the_cached_balance(clock: FakeClock) -> None:
    """After a job that may have been charged, the next reservation fetches."""
    fetch = Fetches("1.00", "0.75")
    guard = BalanceGuard(fetch, clock=clock, ttl=30)
    guard.release(guard.reserve(D("0.25")), outcome_unknown=True)
    guard.reserve(D("0.25"))
    assert fetch.calls == 2
    assert guard.available == D("0.50")


def test_observe_sets_or_forgets_the_balance(clock: FakeClock) -> None:
    """A 402's stated balance is trusted; None forgets the cache."""
    fetch = Fetches("1.00")
    guard = BalanceGuard(fetch, clock=clock, ttl=30)
    guard.observe(D("0.10"))
    with pytest.raises(InsufficientBalanceError):
        guard.reserve(D("0.25"))
    assert fetch.calls == 0
    guard.observe(None)
    guard.reserve(D("0.25"))
    assert fetch.calls == 1


def test_a_job_committed_during_a_fetch_is_still_counted(clock: FakeClock) -> None:
    """A fetch that overlaps a commit may miss its charge: the guard takes it off anyway."""
    guard = BalanceGuard(Fetches("1.00"), clock=clock, ttl=30)
    held = guard.reserve(D("0.25"))

    def fetch_while_committing() -> Decimal:
        guard.commit(held)  # lands while the fetch is in flight
        return D("1.00")  # the server's answer may predate the charge

    guard.refresh(fetch_while_committing)
    assert guard.available == D("0.75")


def test_concurrent_fetches_are_merged(clock: FakeClock) -> None:
    """Threads that find the cache empty wait for one fetch instead of each fetching."""
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_fetch() -> Decimal:
        calls.append(1)
        started.set()
        release.wait(5)
        return D("10.00")

    guard = BalanceGuard(slow_fetch, clock=clock, ttl=30)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(guard.reserve, D("1.00")) for _ in range(4)]
        assert started.wait(5)
        release.set()
        for future in futures:
            future.result(timeout=5)
    assert len(calls) == 1
    assert guard.available == D("6.00")


def test_a_failed_fetch_lets_the_next_caller_try(clock: FakeClock) -> None:
    """An error while fetching propagates and leaves no fetch marked as under way."""
    outcomes: list[Decimal | Exception] = [ServerError("503"), D("1.00")]

    def flaky() -> Decimal:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    guard = BalanceGuard(flaky, clock=clock, ttl=30)
    with pytest.raises(ServerError):
        guard.reserve(D("0.25"))
    guard.reserve(D("0.25"))
    assert guard.available == D("0.75")


@pytest.mark.parametrize(
    ("detail", "balance"),
    [
        ("Insufficient balance. Current balance: $1.25, required: $2.50", D("1.25")),
        ("current balance: 0", D("0.00")),
        ("no figure here", None),
    ],
)
def test_the_balance_is_read_from_a_402_detail(detail: str, balance: Decimal | None) -> None:
    """The server's 402 detail states the balance."""
    assert balance_in_detail(detail) == balance


# -- the client against the fake server ------------------------------------------------


@pytest.mark.fake_vinci(balance_usd=0.2)
def test_a_job_the_balance_cannot_cover_sends_no_request(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """Refused locally: the only request the server saw is the balance read."""
    with pytest.raises(InsufficientBalanceError) as info:
        client.text_to_video("A fox", duration_seconds=5)
    assert info.value.response is None
    assert fake_vinci.count(method="POST") == 0
    assert fake_vinci.request_count == 1
    assert fake_vinci.count("GET", "/billing/balance") == 1


@pytest.mark.fake_vinci(balance_usd=0.5)
def test_jobs_spend_the_cached_balance(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """Two 5-second jobs fit in $0.50; the third is refused without another fetch."""
    client.text_to_video("a")
    client.text_to_video("b")
    with pytest.raises(InsufficientBalanceError):
        client.text_to_video("c")
    assert fake_vinci.count("GET", "/billing/balance") == 1
    assert fake_vinci.count("POST") == 2
    assert fake_vinci.jobs_created == 2


def test_a_shorter_job_fits_where_a_longer_one_does_not(fake_vinci: FakeVinciServer) -> None:
    """The estimate is duration x price_per_second (an option)."""
    fake_vinci.balance_usd = 0.3
    with VinciClient(
        api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, price_per_second=0.1
    ) as client:
        with pytest.raises(InsufficientBalanceError):
            client.text_to_video("a", duration_seconds=4)
        client.text_to_video("a", duration_seconds=3)


@pytest.mark.fake_vinci(balance_usd=0.25)
def test_two_threads_racing_for_the_last_dollar_send_one_job(
    fake_vinci: FakeVinciServer, clock: FakeClock
) -> None:
    """Exactly one of two simultaneous jobs is sent; the other is refused locally."""
    with VinciClient(
        api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, clock=clock
    ) as client:
        barrier = threading.Barrier(2)

        def create() -> Job | InsufficientBalanceError:
            barrier.wait(5)
            try:
                return client.text_to_video("A fox", duration_seconds=5)
            except InsufficientBalanceError as exc:
                return exc

        with ThreadPoolExecutor(2) as pool:
            results = [f.result(timeout=10) for f in [pool.submit(create) for _ in range(2)]]
    jobs = [r for r in results if isinstance(r, Job)]
    refusals = [r for r in results if isinstance(r, InsufficientBalanceError)]
    assert (len(jobs), len(refusals)) == (1, 1)
    assert refusals[0].response is None
    assert fake_vinci.count("POST", "/generate/text-to-video") == 1
    assert fake_vinci.count("GET", "/billing/balance") == 1
    assert fake_vinci.jobs_created == 1


def test_many_threads_never_overspend(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """16 threads, money for 5 jobs: 5 are sent, 11 are refused locally, no 402."""
    fake_vinci.balance_usd = 1.25
    with VinciClient(
        api_key=fake_vinci.api_key, base_url=fake_vinci.base_url, clock=clock
    ) as client:

        def create(_: int) -> InsufficientBalanceError | None:
            try:
                client.text_to_video("A fox")
            except InsufficientBalanceError as exc:
                return exc
            return None

        with ThreadPoolExecutor(16) as pool:
            refusals = [r for r in pool.map(create, range(16)) if r is not None]
    assert len(refusals) == 11
    assert all(r.response is None for r in refusals)  # never the server's 402
    assert fake_vinci.count("POST") == 5
    assert fake_vinci.balance_usd == 0.0


def test_a_servers_402_corrects_a_stale_cache(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """The balance a 402 states is kept: the next job is refused without a request."""
    client.balance()  # cached: $100
    fake_vinci.balance_usd = 0.1  # spent elsewhere
    with pytest.raises(InsufficientBalanceError) as info:
        client.text_to_video("a")
    assert info.value.response is not None  # the server's own 402
    posts = fake_vinci.count("POST")
    with pytest.raises(InsufficientBalanceError) as again:
        client.text_to_video("b")
    assert again.value.response is None
    assert fake_vinci.count("POST") == posts
    assert client.balance_guard is not None
    assert client.balance_guard.available == Decimal("0.10")


def test_a_5xx_on_creation_makes_the_client_read_the_balance_again(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """The server may have charged the job: the next job fetches the real balance."""
    fake_vinci.script(Fault.status(500, after=True), path="/generate/*")
    with pytest.raises(ServerError):
        client.text_to_video("a")
    client.text_to_video("b")
    assert fake_vinci.count("GET", "/billing/balance") == 2
    assert client.balance_guard is not None
    assert client.balance_guard.available == Decimal("99.50")


def test_a_definite_rejection_releases_without_a_new_fetch(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """A 400 means no charge: the reservation is released, the cache kept."""
    fake_vinci.script(Fault.status(400), path="/generate/*")
    with pytest.raises(BadRequestError):
        client.text_to_video("a")
    client.text_to_video("b")
    assert fake_vinci.count("GET", "/billing/balance") == 1
    assert client.balance_guard is not None
    assert client.balance_guard.available == Decimal("99.75")


def test_balance_refreshes_the_pre_check(fake_vinci: FakeVinciServer, client: VinciClient) -> None:
    """client.balance() is a fetch the pre-check then uses."""
    client.balance()
    client.text_to_video("a")
    assert fake_vinci.count("GET", "/billing/balance") == 1


def test_the_pre_check_can_be_turned_off(fake_vinci: FakeVinciServer, clock: FakeClock) -> None:
    """balance_check=False sends the job without reading the balance."""
    with VinciClient(
        api_key=fake_vinci.api_key,
        base_url=fake_vinci.base_url,
        clock=clock,
        balance_check=False,
    ) as client:
        client.text_to_video("a")
        assert client.balance_guard is None
        assert client.balance().balance_usd == 99.75
    assert fake_vinci.count("GET", "/billing/balance") == 1
    assert fake_vinci.requests[0].method == "POST"


def test_an_unreadable_balance_lets_the_server_decide(
    fake_vinci: FakeVinciServer, client: VinciClient
) -> None:
    """A transient failure to read the balance does not block the job (fail open)."""
    fake_vinci.script(Fault.status(503), path="/billing/balance")
    client.text_to_video("a")
    assert fake_vinci.jobs_created == 1
    client.text_to_video("b")  # the cache is still empty: read again, this time it works
    assert fake_vinci.count("GET", "/billing/balance") == 2


def test_a_final_error_reading_the_balance_is_raised(fake_vinci: FakeVinciServer) -> None:
    """A 401 on the balance read is raised: the job would fail the same way."""
    with (
        VinciClient(api_key="sk-wrong-0123456789", base_url=fake_vinci.base_url) as client,
        pytest.raises(AuthenticationError),
    ):
        client.text_to_video("a")
    assert fake_vinci.count("POST") == 0

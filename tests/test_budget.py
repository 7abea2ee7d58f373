"""The RetryBudget's rules, as plain functions of recorded outcomes on a fake clock."""

from __future__ import annotations

import copy
import pickle
import random
import threading

import pytest

from requests_resilience import ConfigurationError, RetryBudget
from requests_resilience._budget import improbable_run, sustained_failure


def outcomes(budget: RetryBudget, now: float, *, failures: int = 0, successes: int = 0) -> None:
    """Record `successes` then `failures` at time `now`."""
    for _ in range(successes):
        budget._record(now, failed=False)
    for _ in range(failures):
        budget._record(now, failed=True)


# -- the two tests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "failures", "expected"),
    [
        (19, 19, False),  # under min_requests: no verdict, however bad
        (20, 20, True),
        (20, 16, False),  # 80% of 20: not confident that more than half failed
        (20, 17, True),
        (100, 65, False),
        (100, 66, True),
        (10_000, 5_100, False),  # 51%: still within what a 50% server does
        (10_000, 5_200, True),
    ],
)
def test_sustained_failure_needs_confidence_and_throughput(
    attempts: int, failures: int, expected: bool
) -> None:
    """More than half failed at 99.87% confidence, over at least min_requests attempts."""
    assert sustained_failure(attempts, failures, 20) is expected


def test_sustained_failure_is_rare_at_thirty_percent() -> None:
    """At 30% random failures, windows of 20 attempts almost never look sustained."""
    rng = random.Random(7)
    wrong = sum(
        sustained_failure(20, sum(rng.random() < 0.3 for _ in range(20)), 20)
        for _ in range(20_000)
    )
    assert wrong == 0


@pytest.mark.parametrize(
    ("run", "attempts_before", "failures_before", "expected"),
    [
        (2, 10_000, 0, False),  # never a two-sample verdict
        (3, 60, 0, True),  # three failures after sixty straight successes
        (3, 20, 0, False),  # ... but not after twenty: (1/22)^3 > 1e-5
        (4, 20, 0, True),
        (7, 1000, 200, False),  # seven in a row at 20% happens
        (8, 1000, 200, True),
        (9, 1000, 300, False),  # at 30% it takes ten
        (10, 1000, 300, True),
        (16, 0, 0, False),  # nothing known: (1/2)^16 > 1e-5
        (17, 0, 0, True),
    ],
)
def test_improbable_run_against_the_measured_rate(
    run: int, attempts_before: int, failures_before: int, expected: bool
) -> None:
    """A run is a change when it is too unlikely at the rate measured before it."""
    assert improbable_run(run, attempts_before, failures_before) is expected


# -- the budget's behaviour -------------------------------------------------------------


def test_healthy_retries_cost_nothing() -> None:
    """While the server is healthy every retry is admitted, and no token is taken."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.0)
    outcomes(budget, 0.0, successes=50, failures=2)
    assert not budget.failing
    assert [budget._spend(0.0) for _ in range(100)] == [0.0] * 100
    assert budget.snapshot()["granted"] == 100


def test_thirty_percent_random_failures_never_ration() -> None:
    """10,000 attempts at 30% failures, 4 callers' worth per second: never failing."""
    budget = RetryBudget()
    rng = random.Random(3)
    now, failing_seen = 0.0, 0
    for _ in range(10_000):
        now += 0.005
        budget._record(now, failed=rng.random() < 0.3)
        failing_seen += budget.failing
    assert failing_seen == 0


def test_an_outage_is_seen_within_its_first_failures() -> None:
    """After a healthy spell, three failures in a row start rationing; tokens start at 0."""
    budget = RetryBudget(min_per_second=0.0)
    outcomes(budget, 0.0, successes=60, failures=2)
    assert not budget.failing
    outcomes(budget, 0.0, failures=1)
    assert budget.failing
    assert budget.snapshot()["tokens"] == 0.0
    assert budget._spend(0.0) is None
    assert budget.snapshot()["refused"] == 1


def test_one_success_ends_a_run() -> None:
    """The run verdict ends with the next success: retries are free again."""
    budget = RetryBudget()
    outcomes(budget, 0.0, successes=60, failures=3)
    assert budget.failing
    outcomes(budget, 0.1, successes=1)
    assert not budget.failing
    assert budget._spend(0.1) == 0.0


def test_sustained_failure_outlives_a_lucky_success() -> None:
    """At 90% failures one success does not end the verdict: the window still says failing."""
    budget = RetryBudget(min_per_second=0.0)
    for _ in range(10):
        outcomes(budget, 0.0, failures=9)
        outcomes(budget, 0.0, successes=1)
    assert budget.failing
    assert budget.snapshot()["run"] == 0  # it just succeeded, and still:
    # Failing since the 20th attempt (18 of 20 failed): the 8 successes since then
    # earned 0.2 each, so one retry may go.
    assert budget._spend(0.0) == 1.0
    assert budget._spend(0.0) is None


def test_while_failing_tokens_come_from_successes_time_and_refunds() -> None:
    """ratio per success, min_per_second per second, capped at max_tokens; refunds return."""
    budget = RetryBudget(ratio=0.5, min_per_second=1.0, max_tokens=2.0, window=3600.0)
    outcomes(budget, 0.0, failures=30)
    assert budget.failing
    assert budget._spend(0.0) is None
    assert budget._spend(0.5) is None  # half a token from time
    assert budget._spend(1.0) == 1.0  # one from time
    outcomes(budget, 1.0, successes=2)  # two halves; the window still says failing
    assert budget.failing
    assert budget._spend(1.0) == 1.0
    budget._refund(1.0)  # that retry worked
    assert budget.snapshot()["tokens"] == 1.0
    assert budget._spend(100.0) == 1.0  # time refills to the cap, not beyond it
    assert budget._spend(100.0) == 1.0
    assert budget._spend(100.0) is None


def test_the_window_forgets_old_failures() -> None:
    """Failures older than `window` no longer count: the verdict ends with them."""
    budget = RetryBudget(window=10.0)
    outcomes(budget, 0.0, failures=40)
    assert budget.failing
    outcomes(budget, 5.0, successes=1)  # ends the run; 40 of 41 failed: still failing
    assert budget.failing
    assert budget._spend(11.0) == 0.0  # the failures' bucket slid out of the window
    snapshot = budget.snapshot()
    assert (snapshot["window_attempts"], snapshot["window_failures"]) == (1.0, 0.0)


def test_a_new_spell_starts_with_an_empty_bucket() -> None:
    """Tokens earned in one failing spell are not carried into the next one."""
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, max_tokens=4.0)
    outcomes(budget, 0.0, successes=100, failures=3)
    assert budget.failing
    outcomes(budget, 0.0, successes=1)  # one token, and the spell ends
    assert not budget.failing
    outcomes(budget, 0.0, failures=4)  # 4 of 104 before: a run of four is the change now
    assert budget.failing
    assert budget._spend(0.0) is None


def test_fatal_answers_count_as_the_server_being_up() -> None:
    """Retry records a 4xx as a success for the budget: it breaks a run."""
    budget = RetryBudget()
    outcomes(budget, 0.0, successes=60, failures=2)
    budget._record(0.0, failed=False)  # what Retry records for a 404
    outcomes(budget, 0.0, failures=2)
    assert not budget.failing


def test_shared_by_threads_and_the_counts_add_up() -> None:
    """Eight threads recording and spending at once: every count is exact."""
    budget = RetryBudget(ratio=0.1, min_per_second=0.0)
    rounds = 2_000

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(rounds):
            now = i * 0.001
            budget._record(now, failed=rng.random() < 0.7)
            cost = budget._spend(now)
            if cost is not None and rng.random() < 0.5:
                budget._refund(cost)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = budget.snapshot()
    assert s["successes"] + s["failures"] == 8 * rounds
    assert s["granted"] + s["refused"] == 8 * rounds
    assert 0.0 <= s["tokens"] <= budget.max_tokens
    assert s["spent"] <= s["granted"]


def test_copies_start_fresh_with_the_same_options() -> None:
    """A pickled or deep-copied budget has the options and none of the evidence."""
    budget = RetryBudget(ratio=0.3, window=5.0, min_requests=7)
    outcomes(budget, 0.0, failures=30)
    for clone in (pickle.loads(pickle.dumps(budget)), copy.deepcopy(budget)):
        assert repr(clone) == repr(budget)
        assert not clone.failing
        assert clone.snapshot()["failures"] == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("window", 0.5),
        ("window", float("inf")),
        ("window", "10"),
        ("min_requests", 0),
        ("min_requests", 2.5),
        ("min_requests", True),
        ("ratio", 1.5),
        ("max_tokens", 0.0),
    ],
)
def test_bad_options_are_configuration_errors(option: str, value: object) -> None:
    """Every option is checked when the budget is built, and the message names it."""
    with pytest.raises(ConfigurationError, match=option):
        RetryBudget(**{option: value})  # type: ignore[arg-type]


def test_healthy_successes_from_many_threads_are_all_counted() -> None:
    """Successes while healthy are counted without the lock: none is lost."""
    budget = RetryBudget()
    budget._record(0.0, failed=False)  # the first one opens the bucket
    each, count = 5_000, 8
    start = threading.Barrier(count)

    def worker() -> None:
        start.wait()
        for _ in range(each):
            budget._record(0.5, failed=False)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snapshot = budget.snapshot()
    assert snapshot["successes"] == 1 + each * count
    assert snapshot["window_attempts"] == 1 + each * count


def test_a_success_counted_without_the_lock_still_ends_a_run() -> None:
    """The run of failures is measured in order: a later success resets it."""
    budget = RetryBudget()
    outcomes(budget, 0.0, successes=60, failures=2)
    assert budget.snapshot()["run"] == 2
    outcomes(budget, 0.0, successes=1)  # healthy: counted without the lock
    assert budget.snapshot()["run"] == 0
    outcomes(budget, 0.0, successes=3, failures=1)  # the successes first, then a failure
    assert budget.snapshot()["run"] == 1
    assert budget.snapshot()["window_attempts"] == 67

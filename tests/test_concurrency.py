"""The ConcurrencyLimit policy in memory: permits, the FIFO queue, refusals, neighbours."""

from __future__ import annotations

import asyncio
import copy
import os
import pickle
import threading
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from typing import Any

import pytest
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from requests_resilience import (
    Call,
    CircuitBreaker,
    ConcurrencyLimit,
    ConcurrencyLimitError,
    ConfigurationError,
    Outcome,
    Pipeline,
    Retry,
    RetryBudget,
    StatusErrors,
    SystemClock,
    classify_outcome,
)
from requests_resilience import _telemetry as telemetry
from requests_resilience._concurrency import _Step, _Turn
from requests_resilience._concurrency_storage import Gate, Waiter
from requests_resilience._errors import refused_locally
from requests_resilience.testing import FakeClock
from tests.helpers import points, prepared, response

KEY = "k"
WAIT = 30.0  # a real-clock bound that no passing test comes near


def ok(call: Call) -> requests.Response:
    return response(200, request=call.request)


def recording(into: list[Any], item: Any = None) -> Callable[[Call], requests.Response]:
    """A transport that appends `item` (or the call) to `into`, then answers 200."""

    def transport(call: Call) -> requests.Response:
        into.append(call if item is None else item)
        return ok(call)

    return transport


def send(
    limit: ConcurrencyLimit,
    clock: Any,
    transport: Callable[[Call], requests.Response] = ok,
    *,
    deadline: float | None = None,
    url: str = "https://api.example.com/v1/things",
) -> requests.Response:
    pipeline = Pipeline(limit, clock=clock)
    call = Call(request=prepared(url=url), clock=clock, deadline=deadline)
    return pipeline.wrap(transport)(call)


class Holder:
    """A thread whose call holds a permit until `release()`."""

    def __init__(self, limit: ConcurrencyLimit, clock: Any = None) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()
        self.error: BaseException | None = None

        def transport(call: Call) -> requests.Response:
            self.inside.set()
            assert self.go.wait(WAIT)
            return ok(call)

        def target() -> None:
            try:
                send(limit, clock or SystemClock(), transport)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target)
        self.thread.start()
        assert self.inside.wait(WAIT)

    def release(self) -> None:
        self.go.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert self.error is None


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll `predicate` on the real clock (a condition, never a timing assertion)."""
    event = threading.Event()
    for _ in range(int(WAIT / 0.001)):
        if predicate():
            return
        event.wait(0.001)
    pytest.fail("condition not reached")


# -- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrent": 0}, "max_concurrent must be an int from 1 to 100000, got 0"),
        ({"max_concurrent": True}, "max_concurrent must be an int"),
        ({"max_concurrent": 2.0}, "max_concurrent must be an int"),
        ({"max_queue": -1}, "max_queue must be an int from 0 to 1000000, got -1"),
        ({"max_wait": -1}, "max_wait must be from 0 to 86400 seconds, got -1"),
        ({"max_wait": float("nan")}, "max_wait must be a number of seconds"),
        ({"lease": 0.5}, "lease must be from 1 to 3600 seconds, got 0.5"),
        ({"redis_timeout": 0}, "redis_timeout must be from 0.001 to 60 seconds"),
        ({"max_keys": 0}, "max_keys must be an int from 1 to 10000000"),
        ({"key": " "}, "key must be a non-empty string or a function"),
        ({"key": 3}, "key must be a non-empty string or a function"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"namespace": None}, "namespace must be a non-empty string"),
        ({"redis_url": "http://x"}, "redis_url must start with redis://"),
    ],
)
def test_a_bad_option_fails_at_construction_naming_it(
    options: dict[str, Any], message: str
) -> None:
    """Each option is range-checked once, with a message that names it."""
    options = {"max_concurrent": 2, **options}
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        ConcurrencyLimit(**options)


def test_timedeltas_are_seconds_and_the_repr_shows_the_options() -> None:
    """`max_wait` and `lease` accept timedeltas; the repr describes the policy."""
    limit = ConcurrencyLimit(3, max_wait=timedelta(seconds=2), lease=timedelta(minutes=1))
    assert (limit.max_wait, limit.lease, limit.shared) == (2.0, 60.0, False)
    assert repr(limit) == (
        "ConcurrencyLimit(max_concurrent=3, max_queue=100, max_wait=2, "
        "key=breaker_key_by_host, storage='memory')"
    )
    assert "concurrency_limit" in Pipeline(StatusErrors(), limit).describe()


# -- permits -----------------------------------------------------------------------------


def test_calls_under_the_limit_go_straight_through() -> None:
    """Below max_concurrent nothing waits, and every permit comes back."""
    clock = FakeClock()
    limit = ConcurrencyLimit(2, key=KEY)
    for _ in range(5):
        assert send(limit, clock).status_code == 200
    status = limit.status(KEY)
    assert (status.in_flight, status.admitted, status.waited, status.refused) == (0, 5, 0, 0)
    assert clock.sleeps == []


def test_the_permit_comes_back_when_the_call_raises() -> None:
    """An error (or an interrupt) inside the call still gives its permit back."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    for error in (requests.ConnectionError("down"), KeyboardInterrupt()):

        def boom(call: Call, error: BaseException = error) -> requests.Response:
            raise error

        with pytest.raises(type(error)):
            send(limit, clock, boom)
        assert limit.status(KEY).in_flight == 0
    assert send(limit, clock).status_code == 200


def test_a_full_limit_with_no_queue_refuses_at_once_and_sends_nothing() -> None:
    """max_queue=0: the call fails with ConcurrencyLimitError, without waiting."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    holder = Holder(limit)
    sent: list[Call] = []
    try:
        with pytest.raises(ConcurrencyLimitError) as caught:
            send(limit, clock, recording(sent))
    finally:
        holder.release()
    error = caught.value
    assert sent == []
    assert clock.sleeps == []
    assert (error.reason, error.key, error.limit, error.max_concurrent) == (
        "queue full",
        KEY,
        "concurrency_limit",
        1,
    )
    assert error.response is None
    assert "refused locally" in str(error)
    assert "all 1 permits are taken and the queue is full (0 waiting)" in str(error)
    assert refused_locally(error)
    assert limit.status(KEY).refused == 1


def test_a_queued_call_gives_up_after_max_wait_on_the_pipeline_clock() -> None:
    """Nobody releases: the waiter sleeps on the fake clock until max_wait, then fails."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_wait=2.0)
    holder = Holder(limit)
    try:
        with pytest.raises(ConcurrencyLimitError, match=r"max_wait \(2s\)") as caught:
            send(limit, clock)
        assert limit.status(KEY).queued == 0
    finally:
        holder.release()
    assert caught.value.reason == "timed out"
    assert caught.value.waited == pytest.approx(2.0)
    assert clock.slept == pytest.approx(2.0)
    assert max(clock.sleeps) <= 0.05
    assert caught.value.retry_after is None  # no call had finished: no estimate


def test_the_deadline_bounds_the_wait_and_a_passed_one_allows_none() -> None:
    """A deadline nearer than max_wait ends the wait; one already passed never queues."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_wait=60.0)
    holder = Holder(limit)
    try:
        with pytest.raises(ConcurrencyLimitError, match="deadline") as caught:
            send(limit, clock, deadline=clock.monotonic() + 0.3)
        assert clock.slept == pytest.approx(0.3)
        with pytest.raises(ConcurrencyLimitError) as passed:
            send(limit, clock, deadline=clock.monotonic() - 1)
    finally:
        holder.release()
    assert caught.value.reason == "timed out"
    assert passed.value.reason == "no wait allowed"
    assert clock.slept == pytest.approx(0.3)


def test_retry_after_estimates_from_recent_hold_times() -> None:
    """After calls of 4 s each, a refused caller is told about 4 s per round ahead."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)

    def slow(call: Call) -> requests.Response:
        clock.advance(4.0)
        return ok(call)

    send(limit, clock, slow)
    holder = Holder(limit, clock)
    try:
        with pytest.raises(ConcurrencyLimitError) as caught:
            send(limit, clock)
    finally:
        holder.release()
    assert caught.value.retry_after == pytest.approx(4.0)


def test_a_release_hands_the_permit_to_the_waiters_in_arrival_order() -> None:
    """Waiters are served first come, first served; none waits for a timer."""
    limit = ConcurrencyLimit(1, key=KEY, max_wait=WAIT)
    order: list[int] = []
    holder = Holder(limit)
    threads = []
    for number in range(4):

        def target(number: int = number) -> None:
            send(limit, SystemClock(), recording(order, number))

        thread = threading.Thread(target=target)
        thread.start()
        threads.append(thread)
        wait_until(lambda: limit.status(KEY).queued == len(threads))
    holder.release()
    for thread in threads:
        thread.join(WAIT)
    assert order == [0, 1, 2, 3]
    status = limit.status(KEY)
    assert (status.in_flight, status.queued, status.admitted, status.waited) == (0, 0, 5, 4)


def test_a_newcomer_does_not_pass_the_queue() -> None:
    """The gate's steps: a release hands the permit to the waiter, not to a newcomer."""
    gate = Gate(1, shared=False)
    assert gate.enter() is True
    waiter = Waiter()
    assert gate.enter() is False
    assert gate.join(waiter, max_queue=1)
    assert not gate.join(Waiter(), max_queue=1)  # the queue is full
    gate.release(held_for=2.0)
    assert waiter.granted
    assert waiter.event.is_set()
    assert (gate.held, len(gate.queue), gate.mean_hold) == (1, 0, 2.0)
    assert gate.enter() is False  # the permit changed hands: none is free
    gate.release(held_for=1.0)
    assert gate.enter() is True


def test_a_waiter_handed_a_permit_as_it_gives_up_keeps_it() -> None:
    """leave() after a hand-over says the waiter holds the permit (it is not lost)."""
    gate = Gate(1, shared=False)
    gate.enter()
    first, second = Waiter(), Waiter()
    gate.join(first, max_queue=5)
    gate.join(second, max_queue=5)
    gate.release(held_for=1.0)
    assert gate.leave(first) is True
    assert gate.leave(second) is False
    assert (gate.held, len(gate.queue)) == (1, 0)


def test_the_head_of_a_shared_queue_alternates_asking_and_a_growing_pause() -> None:
    """_Turn's decisions: ask, pause 2 ms doubling to 50 ms (jittered), give up at the end."""
    clock = FakeClock(random_value=0.0)  # the shortest jitter: half the step
    gate = Gate(1, shared=True)
    head, second = Waiter(), Waiter()
    gate.join(head, max_queue=5)
    gate.join(second, max_queue=5)
    turn = _Turn(gate, head, clock, allowed=0.1)
    behind = _Turn(gate, second, clock, allowed=0.1)
    steps = []
    while (step := turn.next()) is not None:
        steps.append(step)
        if isinstance(step, float):
            assert behind.next() == pytest.approx(0.1 - (clock.monotonic() - turn.began))
            clock.sleep(step)
    pauses = [step for step in steps if isinstance(step, float)]
    assert steps[0] is _Step.ASK
    assert steps[1::2] == pauses
    assert all(step is _Step.ASK for step in steps[0::2])
    assert pauses[:6] == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.016, 0.025])
    assert clock.slept == pytest.approx(0.1)
    assert behind.next() is None


def test_at_most_max_concurrent_run_at_once_under_load() -> None:
    """16 threads through a limit of 3: never more than 3 inside, every call served."""
    limit = ConcurrencyLimit(3, key=KEY, max_wait=WAIT)
    lock = threading.Lock()
    inside = [0]
    most = [0]
    step = threading.Event()

    def transport(call: Call) -> requests.Response:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        step.wait(0.001)
        with lock:
            inside[0] -= 1
        return ok(call)

    threads = [
        threading.Thread(target=lambda: [send(limit, SystemClock(), transport) for _ in range(5)])
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert most[0] == 3
    status = limit.status(KEY)
    assert (status.admitted, status.refused, status.in_flight) == (80, 0, 0)


def test_an_interrupted_waiter_leaves_the_queue_and_takes_nothing() -> None:
    """Ctrl-C while queued: the caller leaves the queue; the next caller is not blocked."""

    class InterruptingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    limit = ConcurrencyLimit(1, key=KEY)
    holder = Holder(limit)
    with pytest.raises(KeyboardInterrupt):
        send(limit, InterruptingClock())
    assert limit.status(KEY).queued == 0
    holder.release()
    assert limit.status(KEY).in_flight == 0
    assert send(limit, FakeClock()).status_code == 200


def test_keys_have_their_own_permits() -> None:
    """A full key does not hold back another one (default key: the origin)."""
    limit = ConcurrencyLimit(1, max_queue=0)
    holder = Holder(limit)
    try:
        other = send(limit, FakeClock(), url="https://other.example.com/x")
        with pytest.raises(ConcurrencyLimitError, match=r"api\.example\.com"):
            send(limit, FakeClock())
    finally:
        holder.release()
    assert other.status_code == 200


# -- async -------------------------------------------------------------------------------


async def _asend(
    limit: ConcurrencyLimit,
    clock: Any,
    transport: Callable[[Call], Any],
    deadline: float | None = None,
) -> requests.Response:
    pipeline = Pipeline(limit, clock=clock)
    call = Call(request=prepared(), clock=clock, deadline=deadline)
    result: requests.Response = await pipeline.wrap_async(transport)(call)
    return result


@pytest.mark.anyio
async def test_async_tasks_queue_in_order_without_blocking_the_loop() -> None:
    """20 tasks, 2 permits: at most 2 inside, FIFO hand-over, every task served."""
    limit = ConcurrencyLimit(2, key=KEY, max_wait=WAIT)
    inside = [0, 0]
    order: list[int] = []

    def transport_for(number: int) -> Callable[[Call], Any]:
        async def transport(call: Call) -> requests.Response:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
            order.append(number)
            await asyncio.sleep(0.001)
            inside[0] -= 1
            return ok(call)

        return transport

    tasks = []
    for number in range(20):
        tasks.append(asyncio.create_task(_asend(limit, SystemClock(), transport_for(number))))
        await asyncio.sleep(0)  # each task queues before the next starts
    await asyncio.gather(*tasks)
    assert inside[1] == 2
    assert order == list(range(20))
    assert limit.status(KEY).admitted == 20


@pytest.mark.anyio
async def test_async_waits_run_on_the_fake_clock_and_cancellation_gives_back() -> None:
    """A queued task times out on the fake clock; a cancelled holder frees its permit."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_wait=1.0)
    entered = asyncio.Event()

    async def hang(call: Call) -> requests.Response:
        entered.set()
        await asyncio.sleep(3600)
        raise AssertionError

    holder = asyncio.create_task(_asend(limit, SystemClock(), hang))
    await entered.wait()

    async def unused(call: Call) -> requests.Response:
        raise AssertionError

    with pytest.raises(ConcurrencyLimitError, match=r"max_wait \(1s\)"):
        await _asend(limit, clock, unused)
    assert clock.slept == pytest.approx(1.0)
    waiter = asyncio.create_task(_asend(limit, SystemClock(), unused))
    await asyncio.sleep(0.01)
    assert limit.status(KEY).queued == 1
    waiter.cancel()
    holder.cancel()
    for task in (waiter, holder):
        with pytest.raises(asyncio.CancelledError):
            await task
    status = limit.status(KEY)
    assert (status.in_flight, status.queued) == (0, 0)


@pytest.mark.anyio
async def test_a_sync_release_wakes_an_async_waiter() -> None:
    """The gate is one per key: a thread's release hands its permit to a waiting task."""
    limit = ConcurrencyLimit(1, key=KEY, max_wait=WAIT)
    holder = await asyncio.to_thread(Holder, limit)

    async def transport(call: Call) -> requests.Response:
        return ok(call)

    task = asyncio.create_task(_asend(limit, SystemClock(), transport))
    await asyncio.sleep(0.01)
    assert limit.status(KEY).queued == 1
    await asyncio.to_thread(holder.release)
    assert (await task).status_code == 200


# -- with its neighbours -----------------------------------------------------------------


def test_outside_the_retry_one_call_holds_one_permit_through_its_attempts() -> None:
    """StatusErrors, limit, Retry: three attempts, one permit, no queueing among them."""
    clock = FakeClock()
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    seen: list[int] = []
    outcomes = [503, 503, 200]

    def transport(call: Call) -> requests.Response:
        seen.append(limit.status(KEY).in_flight)
        return response(outcomes.pop(0), request=call.request)

    pipeline = Pipeline(StatusErrors(), limit, Retry(max_attempts=3), clock=clock)
    call = Call(request=prepared(), clock=clock)
    assert pipeline.wrap(transport)(call).status_code == 200
    assert seen == [1, 1, 1]
    assert limit.status(KEY).admitted == 1


def test_inside_the_retry_a_refusal_is_final_and_spends_no_budget() -> None:
    """A refusal is not retried (it already waited) and the budget does not count it."""
    clock = FakeClock()
    budget = RetryBudget()
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    holder = Holder(limit)
    attempts: list[Call] = []
    try:
        pipeline = Pipeline(Retry(max_attempts=5, budget=budget), limit, clock=clock)
        call = Call(request=prepared(), clock=clock)
        with pytest.raises(ConcurrencyLimitError):
            pipeline.wrap(recording(attempts))(call)
    finally:
        holder.release()
    assert attempts == []
    assert clock.sleeps == []
    counts = budget.snapshot()
    assert (counts["successes"], counts["failures"], counts["granted"]) == (0, 0, 0)
    assert classify_outcome(None, ConcurrencyLimitError("x")) is Outcome.FATAL


def test_a_refusal_inside_a_breaker_is_not_a_failure() -> None:
    """Ten refusals under a breaker that opens on 2 failures: it stays closed."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=2, failure_ratio=0.5, key=lambda call: KEY)
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    holder = Holder(limit)
    try:
        pipeline = Pipeline(breaker, limit, clock=clock)
        for _ in range(10):
            call = Call(request=prepared(), clock=clock)
            with pytest.raises(ConcurrencyLimitError):
                pipeline.wrap(ok)(call)
    finally:
        holder.release()
    assert breaker.status(KEY).state == "closed"
    assert (breaker.status(KEY).failed, breaker.status(KEY).window_failures) == (0, 0)


# -- copies, errors, telemetry -----------------------------------------------------------


def test_copies_have_the_same_options_and_fresh_permits() -> None:
    """A deep copy or an unpickled copy is a new policy built from the same arguments."""
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    holder = Holder(limit)
    try:
        for copied in (copy.deepcopy(limit), pickle.loads(pickle.dumps(limit))):
            assert repr(copied) == repr(limit)
            assert send(copied, FakeClock()).status_code == 200
    finally:
        holder.release()


def test_the_error_pickles_with_its_evidence() -> None:
    """ConcurrencyLimitError keeps its attributes through pickle."""
    error = ConcurrencyLimitError(
        "m", limit="l", key="k", max_concurrent=3, reason="timed out", waited=1.5, retry_after=2.0
    )
    copied = pickle.loads(pickle.dumps(error))
    assert (copied.limit, copied.key, copied.max_concurrent) == ("l", "k", 3)
    assert copied.reason == "timed out"
    assert (copied.waited, copied.retry_after, str(copied)) == (1.5, 2.0, "m")


def test_a_refusal_is_logged_and_counted_without_the_query(
    logs: list[MutableMapping[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One info event and one counted refusal per refusal; the URL loses its query."""
    reader = InMemoryMetricReader()
    provider = MeterProvider([reader])
    monkeypatch.setattr(telemetry, "_meter_provider", lambda: provider)
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    holder = Holder(limit)
    try:
        with pytest.raises(ConcurrencyLimitError) as caught:
            send(limit, FakeClock(), url="https://api.example.com/x?token=sk-secret-123")
    finally:
        holder.release()
    assert "sk-secret" not in str(caught.value)
    events = [e for e in logs if e["event"] == "concurrency_limit_refused"]
    assert len(events) == 1
    assert events[0]["log_level"] == "info"
    assert events[0]["reason"] == "queue full"
    assert "sk-secret" not in repr(events)
    refusals = points(reader, "requests_resilience.concurrency_limit.refusals")
    assert [p.value for p in refusals] == [1]
    assert points(reader, "requests_resilience.concurrency_limit.in_flight")


def test_a_forked_child_starts_with_every_permit_free() -> None:
    """Calls in flight in the parent at the fork hold no permit in the child."""
    limit = ConcurrencyLimit(1, key=KEY, max_queue=0)
    holder = Holder(limit)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                code = 0 if send(limit, FakeClock()).status_code == 200 else 1
            except BaseException:
                code = 2
            os.write(write, bytes([code]))
            os._exit(0)
        os.close(write)
        result = os.read(read, 1)
        os.waitpid(pid, 0)
    finally:
        holder.release()
    assert result == b"\x00"

"""Waiting for jobs: one polling loop for one job or many, on the injected clock.

Each job is polled at once, then after `poll_interval`, growing by `multiplier` per
poll up to `max_poll_interval`, each wait shortened by up to `jitter` (a random share)
so that many clients do not poll in step. Many jobs share one loop and one thread: a
heap orders them by when each is due next. A transient failure of a poll (a 5xx, a
429, a broken connection, an open breaker) is not the job's failure: the job is polled
again later, and a server's or breaker's ``retry_after`` holds back every poll. The
deadline covers the whole wait; a job still running when it passes raises
`JobTimeoutError` (after one last poll at the deadline).

The decisions (when is a job due, what does an outcome mean) are `WaitState`'s, written
once; `poll_until_done` drives them from one thread and `apoll_until_done` from asyncio
tasks, one per job.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from requests_resilience._clock import sleep_async
from requests_resilience._errors import (
    APIError,
    APIStatusError,
    ConfigurationError,
    RateLimitError,
    ServerError,
)
from requests_resilience.vinci._errors import (
    JobFailedError,
    JobTimeoutError,
    UnexpectedResponseError,
)

if TYPE_CHECKING:
    from requests_resilience._clock import Clock
    from requests_resilience.vinci._models import JobStatus

__all__ = [
    "PollSchedule",
    "ProgressCallback",
    "WaitState",
    "apoll_until_done",
    "is_transient",
    "poll_until_done",
]

#: Called with every status a poll returns (its ``progress`` is 0 to 100).
ProgressCallback: TypeAlias = "Callable[[JobStatus], object]"

_DAY = 86_400.0


def _positive(option: str, value: float, high: float, *, low: float = 0.0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low < value <= high
    ):
        msg = f"{option} must be seconds, more than {low:g} and at most {high:g}, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSchedule:
    """When to poll a job, and for how long.

    Args:
        timeout: seconds the whole wait may last; None waits without end.
        poll_interval: the first wait between polls (the docs poll every 5-10 s).
        max_poll_interval: the cap of the growing wait.
        multiplier: growth of the wait per poll, 1.0 to 10.0.
        jitter: the largest share (0.0 to 1.0) randomly taken off each wait.

    Example:
        >>> PollSchedule(poll_interval=5.0).delay(3, draw=0.0)
        11.25
    """

    timeout: float | None = 600.0
    poll_interval: float = 5.0
    max_poll_interval: float = 30.0
    multiplier: float = 1.5
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.timeout is not None:
            object.__setattr__(self, "timeout", _positive("timeout", self.timeout, 30 * _DAY))
        object.__setattr__(
            self, "poll_interval", _positive("poll_interval", self.poll_interval, _DAY)
        )
        if (
            isinstance(self.max_poll_interval, bool)
            or not isinstance(self.max_poll_interval, int | float)
            or not self.poll_interval <= self.max_poll_interval <= _DAY
        ):
            msg = (
                f"max_poll_interval must be from poll_interval ({self.poll_interval:g}) "
                f"to {_DAY:g} seconds, got {self.max_poll_interval!r}"
            )
            raise ConfigurationError(msg)
        object.__setattr__(self, "max_poll_interval", float(self.max_poll_interval))
        for option, low, high in (("multiplier", 1.0, 10.0), ("jitter", 0.0, 1.0)):
            value = getattr(self, option)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value <= high
            ):
                msg = f"{option} must be a number from {low:g} to {high:g}, got {value!r}"
                raise ConfigurationError(msg)
            object.__setattr__(self, option, float(value))

    def delay(self, polls: int, draw: float) -> float:
        """The wait after the `polls`-th poll of a job, for a random `draw` in [0, 1)."""
        exponent = min(max(polls - 1, 0), 200)
        base = min(self.max_poll_interval, self.poll_interval * self.multiplier**exponent)
        return base * (1.0 - self.jitter * draw)


def is_transient(error: APIError) -> bool:
    """Whether a failed poll says nothing about the job (poll again later).

    4xx answers other than 429 (a 401, a 404 for an unknown job) and unreadable 2xx
    answers are final; 5xx, 429, connection failures, an open breaker and an empty
    retry budget are transient.
    """
    if isinstance(error, ServerError | RateLimitError):
        return True
    return not isinstance(error, APIStatusError | UnexpectedResponseError)


def _hold_back(error: APIError) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def poll_until_done(
    request_ids: Sequence[str],
    poll: Callable[[str], JobStatus],
    *,
    clock: Clock,
    schedule: PollSchedule,
    on_progress: ProgressCallback | None = None,
    return_exceptions: bool = False,
) -> list[JobStatus | APIError]:
    """Poll every job until it completes, fails, or the deadline passes (sync driver).

    One thread polls whichever job is due next (a heap ordered by due time); what to
    do with each outcome is `WaitState`'s decision.

    Args:
        request_ids: the jobs.
        poll: fetches one job's status (raises `APIError`).
        clock: time and sleep.
        schedule: the poll intervals and the deadline.
        on_progress: called with every status received.
        return_exceptions: put a job's error (`JobFailedError`, `JobTimeoutError`, or
            a final `APIError` of its polls) in its place in the result, instead of
            raising the first one.

    Returns:
        One entry per job, in order: its completed `JobStatus` or, with
        `return_exceptions`, its error.
    """
    state = WaitState(
        request_ids,
        clock=clock,
        schedule=schedule,
        on_progress=on_progress,
        return_exceptions=return_exceptions,
    )
    heap = [(state.start, index, index) for index in range(len(request_ids))]
    sequence = len(heap)
    while heap:
        due, _, index = heapq.heappop(heap)
        wait = state.wait_before(due)
        if wait > 0:
            clock.sleep(wait)
        try:
            outcome: JobStatus | APIError = poll(state.ids[index])
        except APIError as exc:
            outcome = exc
        next_due = state.observe(index, outcome)
        if next_due is not None:
            heapq.heappush(heap, (next_due, sequence, index))
            sequence += 1
    return state.results()


async def apoll_until_done(
    request_ids: Sequence[str],
    poll: Callable[[str], Awaitable[JobStatus]],
    *,
    clock: Clock,
    schedule: PollSchedule,
    on_progress: ProgressCallback | None = None,
    return_exceptions: bool = False,
    max_concurrency: int = 16,
) -> list[JobStatus | APIError]:
    """`poll_until_done` for asyncio: one task per job, at most `max_concurrency` polls at once.

    The decisions are the sync driver's (`WaitState`); each task sleeps with the event
    loop until its job is due. The first error (unless `return_exceptions`) cancels
    the other tasks; cancelling the caller cancels them all, and every task has ended
    when this returns or raises.

    Args:
        request_ids: the jobs.
        poll: fetches one job's status (raises `APIError`).
        clock: time, and the wait (awaited: `sleep_async`).
        schedule: the poll intervals and the deadline.
        on_progress: called with every status received.
        return_exceptions: as for `poll_until_done`.
        max_concurrency: the most polls in flight at once.

    Returns:
        One entry per job, in order, as `poll_until_done`.
    """
    state = WaitState(
        request_ids,
        clock=clock,
        schedule=schedule,
        on_progress=on_progress,
        return_exceptions=return_exceptions,
    )
    gate = asyncio.Semaphore(max_concurrency)

    async def follow(index: int) -> None:
        due: float | None = state.start
        while due is not None:
            # Re-read the wait after each sleep: a 429 seen by another task holds this
            # one back too, and other tasks' sleeps may already have moved the clock.
            while (wait := state.wait_before(due)) > 0:
                await sleep_async(clock, wait)
            planned = state.poll_time(due)
            async with gate:
                try:
                    outcome: JobStatus | APIError = await poll(state.ids[index])
                except APIError as exc:
                    outcome = exc
            # The next poll is spaced from when this one was due, not from when its
            # answer came: a slow answer does not stretch the schedule, and tasks on a
            # virtual clock (whose sleeps add up) keep one timeline.
            due = state.observe(index, outcome, polled_at=planned)

    tasks = [asyncio.ensure_future(follow(index)) for index in range(len(request_ids))]
    try:
        await _first_error(tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return state.results()


async def _first_error(tasks: Sequence[asyncio.Future[None]]) -> None:
    """Wait for every task; re-raise the first exception one of them raises."""
    pending: set[asyncio.Future[None]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error


class WaitState:
    """The decisions of one wait for jobs, without I/O: what each poll's outcome means.

    A driver (`poll_until_done`, `apoll_until_done`) asks `wait_before(due)` how long
    to sleep before a poll, polls, and hands the outcome to `observe()`, which settles
    the job (completed, failed, a final error, the deadline) or says when to poll it
    next. The state is shared by every job of the wait: one deadline, and one hold
    (a 429's or an open breaker's ``retry_after``) that delays every poll.

    Args:
        request_ids: the jobs.
        clock: time and jitter (never slept on here).
        schedule: the poll intervals and the deadline.
        on_progress: called with every status received.
        return_exceptions: record a job's error as its result instead of raising it.
    """

    def __init__(
        self,
        request_ids: Sequence[str],
        *,
        clock: Clock,
        schedule: PollSchedule,
        on_progress: ProgressCallback | None,
        return_exceptions: bool,
    ) -> None:
        count = len(request_ids)
        self.ids = list(request_ids)
        self.clock = clock
        self.schedule = schedule
        self.on_progress = on_progress
        self.return_exceptions = return_exceptions
        self.start = clock.monotonic()
        self.deadline = None if schedule.timeout is None else self.start + schedule.timeout
        self._results: list[JobStatus | APIError | None] = [None] * count
        self.last_status: list[JobStatus | None] = [None] * count
        self.last_error: list[APIError | None] = [None] * count
        self.polls = [0] * count
        self.hold_until = self.start  # no poll before this (a 429's or a breaker's wait)

    def poll_time(self, due: float) -> float:
        """When a job due at `due` is polled: after any hold, at the latest the deadline."""
        due = max(due, self.hold_until)
        if self.deadline is not None:
            due = min(due, self.deadline)  # a last poll at the deadline
        return due

    def wait_before(self, due: float) -> float:
        """Seconds to sleep before polling a job due at `due` (0 or less: poll now)."""
        return self.poll_time(due) - self.clock.monotonic()

    def observe(
        self, index: int, outcome: JobStatus | APIError, *, polled_at: float | None = None
    ) -> float | None:
        """Take one poll's outcome; return when to poll the job next, or None if settled.

        Args:
            index: the job.
            outcome: its status, or the poll's error.
            polled_at: when the poll was due (`poll_time`); the next delay counts from
                there. None counts from now (the answer's arrival).

        Raises:
            APIError: the job's error (`JobFailedError`, `JobTimeoutError`, a final
                poll error), unless `return_exceptions`.
        """
        if self._poll_again(index, outcome):
            return self._reschedule(index, polled_at)
        return None

    def results(self) -> list[JobStatus | APIError]:
        """Each settled job's result, in job order."""
        return [r for r in self._results if r is not None]

    def _settle(self, index: int, outcome: JobStatus | APIError) -> None:
        if isinstance(outcome, APIError) and not self.return_exceptions:
            raise outcome
        self._results[index] = outcome

    def _poll_again(self, index: int, outcome: JobStatus | APIError) -> bool:
        if isinstance(outcome, APIError):
            if not is_transient(outcome):
                self._settle(index, outcome)
                return False
            self.last_error[index] = outcome
            hold = _hold_back(outcome)
            if hold is not None:
                self.hold_until = max(self.hold_until, self.clock.monotonic() + hold)
            return True
        self.last_error[index] = None
        self.last_status[index] = outcome
        if self.on_progress is not None:
            self.on_progress(outcome)
        if outcome.status == "completed":
            self._settle(index, outcome)
            return False
        if outcome.status == "failed":
            self._settle(index, JobFailedError(outcome))
            return False
        return True

    def _reschedule(self, index: int, polled_at: float | None) -> float | None:
        self.polls[index] += 1
        now = self.clock.monotonic()
        if self.deadline is not None and now >= self.deadline:
            timeout = self.deadline - self.start
            error = JobTimeoutError(self.ids[index], timeout, self.last_status[index])
            error.__cause__ = self.last_error[index]
            self._settle(index, error)
            return None
        base = now if polled_at is None else polled_at
        return base + self.schedule.delay(self.polls[index], self.clock.random())

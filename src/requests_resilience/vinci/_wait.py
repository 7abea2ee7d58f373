"""Waiting for jobs: one polling loop for one job or many, on the injected clock.

Each job is polled at once, then after `poll_interval`, growing by `multiplier` per
poll up to `max_poll_interval`, each wait shortened by up to `jitter` (a random share)
so that many clients do not poll in step. Many jobs share one loop and one thread: a
heap orders them by when each is due next. A transient failure of a poll (a 5xx, a
429, a broken connection, an open breaker) is not the job's failure: the job is polled
again later, and a server's or breaker's ``retry_after`` holds back every poll. The
deadline covers the whole wait; a job still running when it passes raises
`JobTimeoutError` (after one last poll at the deadline).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

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

__all__ = ["PollSchedule", "ProgressCallback", "is_transient", "poll_until_done"]

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
    """Poll every job until it completes, fails, or the deadline passes.

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
    return _Waiter(
        request_ids,
        poll,
        clock=clock,
        schedule=schedule,
        on_progress=on_progress,
        return_exceptions=return_exceptions,
    ).run()


class _Waiter:
    """The state of one `poll_until_done` loop (one thread, a heap of due jobs)."""

    def __init__(
        self,
        request_ids: Sequence[str],
        poll: Callable[[str], JobStatus],
        *,
        clock: Clock,
        schedule: PollSchedule,
        on_progress: ProgressCallback | None,
        return_exceptions: bool,
    ) -> None:
        count = len(request_ids)
        self.ids = list(request_ids)
        self.poll = poll
        self.clock = clock
        self.schedule = schedule
        self.on_progress = on_progress
        self.return_exceptions = return_exceptions
        self.start = clock.monotonic()
        self.deadline = None if schedule.timeout is None else self.start + schedule.timeout
        self.results: list[JobStatus | APIError | None] = [None] * count
        self.last_status: list[JobStatus | None] = [None] * count
        self.last_error: list[APIError | None] = [None] * count
        self.polls = [0] * count
        self.heap: list[tuple[float, int, int]] = [(self.start, i, i) for i in range(count)]
        self.sequence = count
        self.hold_until = self.start  # no poll before this (a 429's or a breaker's wait)

    def settle(self, index: int, outcome: JobStatus | APIError) -> None:
        if isinstance(outcome, APIError) and not self.return_exceptions:
            raise outcome
        self.results[index] = outcome

    def run(self) -> list[JobStatus | APIError]:
        while self.heap:
            due, _, index = heapq.heappop(self.heap)
            due = max(due, self.hold_until)
            if self.deadline is not None:
                due = min(due, self.deadline)  # a last poll at the deadline
            now = self.clock.monotonic()
            if due > now:
                self.clock.sleep(due - now)
            if self.poll_once(index):
                self.reschedule(index)
        return [r for r in self.results if r is not None]

    def poll_once(self, index: int) -> bool:
        """Poll one job; return whether it must be polled again."""
        try:
            status = self.poll(self.ids[index])
        except APIError as exc:
            if not is_transient(exc):
                self.settle(index, exc)
                return False
            self.last_error[index] = exc
            hold = _hold_back(exc)
            if hold is not None:
                self.hold_until = max(self.hold_until, self.clock.monotonic() + hold)
            return True
        self.last_error[index] = None
        self.last_status[index] = status
        if self.on_progress is not None:
            self.on_progress(status)
        if status.status == "completed":
            self.settle(index, status)
            return False
        if status.status == "failed":
            self.settle(index, JobFailedError(status))
            return False
        return True

    def reschedule(self, index: int) -> None:
        self.polls[index] += 1
        now = self.clock.monotonic()
        if self.deadline is not None and now >= self.deadline:
            timeout = self.deadline - self.start
            error = JobTimeoutError(self.ids[index], timeout, self.last_status[index])
            error.__cause__ = self.last_error[index]
            self.settle(index, error)
            return
        delay = self.schedule.delay(self.polls[index], self.clock.random())
        heapq.heappush(self.heap, (now + delay, self.sequence, index))
        self.sequence += 1

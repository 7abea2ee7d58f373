"""The RateLimit policy on a fake clock: bucket, refusals, adaptation, fairness, telemetry."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from datetime import timedelta
from typing import Any

import pytest
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import requests_resilience._ratelimit as ratelimit_module
from requests_resilience import (
    Call,
    CircuitBreaker,
    ConfigurationError,
    Pipeline,
    RateLimitError,
    Retry,
    StatusErrors,
)
from requests_resilience import _telemetry as telemetry
from requests_resilience._ratelimit import RateLimit, rate_limit_key_for
from requests_resilience._ratelimit_storage import (
    BucketParams,
    MemoryBucket,
    Reservation,
    cubic_rate,
)
from requests_resilience.testing import FakeClock
from tests.helpers import ScriptedTransport, points, prepared, response, run

KEY = "k"


def ok(call: Call) -> requests.Response:
    return response(200, request=call.request)


class Harness:
    """A rate limit in a pipeline on a fake clock, with a transport that records calls."""

    def __init__(self, clock: FakeClock | None = None, **options: Any) -> None:
        self.clock = clock or FakeClock()
        options.setdefault("key", KEY)
        requests_per_period = options.pop("rate", 10)
        options.setdefault("period", 1.0)
        self.limit = RateLimit(requests_per_period, **options)
        self.pipeline = Pipeline(self.limit, clock=self.clock)
        self.transport = ScriptedTransport(ok)

    def send(
        self,
        outcome: requests.Response | Callable[[Call], requests.Response] | None = None,
        deadline: float | None = None,
    ) -> requests.Response:
        if outcome is not None:
            self.transport.outcomes = [outcome]
        call = Call(
            request=prepared(),
            clock=self.clock,
            redactor=self.pipeline.redactor,
            deadline=deadline,
        )
        result = self.pipeline.wrap(self.transport)(call)
        self.transport.outcomes = [ok]
        return result

    @property
    def interval(self) -> float:
        return 1.0 / self.limit.rate


# -- the bucket ------------------------------------------------------------------------


def test_requests_are_spaced_at_the_rate_with_headroom() -> None:
    """10/s with 5 % headroom: one request every 1/9.5 s; the first goes at once."""
    h = Harness(rate=10)
    for _ in range(4):
        h.send()
    assert h.clock.sleeps == pytest.approx([1 / 9.5] * 3)
    assert len(h.transport.calls) == 4


def test_a_burst_goes_at_once_then_the_rate_paces() -> None:
    """burst=3: three requests without a wait, then one per interval."""
    h = Harness(rate=10, burst=3)
    for _ in range(5):
        h.send()
    assert h.clock.sleeps == pytest.approx([h.interval, h.interval])


def test_a_quiet_spell_refills_the_bucket_to_its_burst_only() -> None:
    """After a long idle time the burst is available again, but no more than the burst."""
    h = Harness(rate=10, burst=2)
    for _ in range(3):
        h.send()
    h.clock.advance(60)
    h.clock.sleeps.clear()
    for _ in range(3):
        h.send()
    assert h.clock.sleeps == pytest.approx([h.interval])


def test_a_wait_past_the_deadline_is_refused_locally_without_a_request() -> None:
    """A token further away than the deadline: RateLimitError at once, nothing sent."""
    h = Harness(rate=1)
    h.send()
    with pytest.raises(RateLimitError) as caught:
        h.send(deadline=h.clock.monotonic() + 0.5)
    error = caught.value
    assert "refused locally" in str(error)
    assert "deadline" in str(error)
    assert error.response is None
    assert error.status_code == 429
    assert error.retry_after == pytest.approx(1 / 0.95)
    assert len(h.transport.calls) == 1
    assert h.clock.sleeps == []
    assert h.limit.status(KEY).refused == 1


def test_max_wait_refuses_even_when_the_deadline_allows() -> None:
    """max_wait caps the wait on its own, and the message names it."""
    h = Harness(rate=1, max_wait=0.25)
    h.send()
    with pytest.raises(RateLimitError, match=r"max_wait \(0.25s\)"):
        h.send()
    assert len(h.transport.calls) == 1


def test_a_refusal_takes_no_token() -> None:
    """The refused caller's slot stays free: the next caller gets it, not the one after."""
    h = Harness(rate=1)
    h.send()
    with pytest.raises(RateLimitError):
        h.send(deadline=h.clock.monotonic() + 0.1)
    h.send()
    assert h.clock.sleeps == pytest.approx([1 / 0.95])


def test_each_key_has_its_own_bucket() -> None:
    """With a key function, calls to different origins do not share a bucket."""
    clock = FakeClock()
    limit = RateLimit.per_second(1)
    pipeline = Pipeline(limit, clock=clock)
    run(pipeline, ScriptedTransport(ok), request=prepared(url="https://a.example/x"))
    run(pipeline, ScriptedTransport(ok), request=prepared(url="https://b.example/x"))
    assert clock.sleeps == []
    assert set(limit.snapshot()) == {"https://a.example:443", "https://b.example:443"}


# -- adaptation ------------------------------------------------------------------------


def test_a_429_drops_the_rate_multiplicatively() -> None:
    """A 429 keeps 70 % of the rate, and the next requests are spaced accordingly.

    The slot the 429's request left owed is re-spaced at the new rate too: the next
    request already waits the longer interval.
    """
    h = Harness(rate=10)
    assert h.send(response(429)).status_code == 429
    status = h.limit.status(KEY)
    assert status.rate == pytest.approx(9.5 * 0.7)
    assert status.throttled == 1
    h.send()
    assert h.clock.sleeps[-1] == pytest.approx(1 / (9.5 * 0.7), rel=0.01)
    h.send()  # the rate climbs back meanwhile (CUBIC): a little less, still over 1/9.5
    assert 1 / 9.5 < h.clock.sleeps[-1] <= 1 / (9.5 * 0.7)


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
def test_a_higher_limit_learnt_from_the_headers_frees_the_slots_ahead(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    """10 a minute, then X-RateLimit-Limit: 100: the next request goes at once, not in 6 s.

    The first request was spaced at the old rate (its slot owed 6 s); a higher ceiling
    re-spaces what is owed at the new rate instead of keeping the old rate's time.
    """
    options: dict[str, Any] = {"rate": 10, "period": 60.0, "burst": 1}
    if shared:
        options["redis_url"] = request.getfixturevalue("redis_url")
        options["name"] = f"respace-{uuid.uuid4().hex}"
    h = Harness(**options)
    h.send(response(200, headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"}))
    h.send()
    assert h.clock.sleeps == [pytest.approx(60 / 100 / 0.95, rel=0.05)]


def test_no_token_is_granted_before_retry_after() -> None:
    """A 429 with Retry-After: the next request waits for it."""
    h = Harness(rate=10)
    h.send(response(429, headers={"Retry-After": "3"}))
    h.send()
    assert h.clock.sleeps == pytest.approx([3.0])
    assert h.limit.status(KEY).paused_for == 0.0


def test_a_burst_of_429s_for_requests_in_flight_drops_the_rate_once() -> None:
    """429s for requests sent before the drop, or within one period of it, count once."""
    bucket = MemoryBucket()
    params = BucketParams(rate=10.0, burst=1, recovery=100.0, beta=0.7, cooldown=1.0, ttl=60_000)
    first = bucket.observe(
        100.0, params, sent_at=99.0, throttled=True, pause_until=None, ceiling=None
    )
    second = bucket.observe(
        100.1, params, sent_at=99.05, throttled=True, pause_until=None, ceiling=None
    )
    assert first == pytest.approx(7.0)
    assert second == pytest.approx(7.0, rel=0.01)
    same_window = bucket.observe(
        100.5, params, sent_at=100.2, throttled=True, pause_until=None, ceiling=None
    )
    assert same_window == pytest.approx(7.0, rel=0.01)  # one window's 429s: one episode
    next_window = bucket.observe(
        101.5, params, sent_at=101.2, throttled=True, pause_until=None, ceiling=None
    )
    assert next_window < 5.0


def test_the_limit_header_sets_the_target_rate() -> None:
    """X-RateLimit-Limit (per period) becomes the target, above or below the configured rate."""
    h = Harness(rate=10)
    h.send(response(200, headers={"X-RateLimit-Limit": "40", "X-RateLimit-Remaining": "39"}))
    assert h.limit.status(KEY).target == pytest.approx(38.0)
    h.send(response(200, headers={"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1"}))
    assert h.limit.status(KEY).rate == pytest.approx(1.9)


def test_remaining_zero_pauses_until_the_reset() -> None:
    """X-RateLimit-Remaining: 0 and a Reset 0.6 s away: nothing goes out for 0.6 s."""
    h = Harness(rate=10)
    reset = h.clock.time() + 0.6
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    h.send(response(200, headers=headers))
    h.send()
    assert h.clock.sleeps == pytest.approx([0.6])


def test_a_429_without_retry_after_uses_the_reset() -> None:
    """The fake server's 429 (no Retry-After, Remaining 0, Reset): wait for the reset."""
    h = Harness(rate=10)
    reset = h.clock.time() + 0.8
    headers = {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
    }
    h.send(response(429, headers=headers))
    h.send()
    assert h.clock.sleeps == pytest.approx([0.8])


def test_headers_are_ignored_when_follow_headers_is_off() -> None:
    """follow_headers=False: the limit and remaining headers change nothing."""
    h = Harness(rate=10, follow_headers=False)
    reset = h.clock.time() + 4
    h.send(
        response(
            200,
            headers={
                "X-RateLimit-Limit": "1",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )
    )
    h.send()
    assert h.clock.sleeps == pytest.approx([1 / 9.5])
    assert h.limit.status(KEY).target == pytest.approx(9.5)


def test_the_rate_climbs_back_after_a_quiet_period() -> None:
    """After a 429: back near the old rate after `recovery`, at the target later."""
    h = Harness(rate=10, recovery=5)
    h.send(response(429))
    dropped = h.limit.status(KEY).rate
    h.clock.advance(2.5)
    halfway = h.limit.status(KEY).rate
    h.clock.advance(2.5)
    recovered = h.limit.status(KEY).rate
    assert dropped < halfway < recovered
    assert recovered == pytest.approx(9.5)
    h.clock.advance(60)
    assert h.limit.status(KEY).rate == pytest.approx(9.5)


def test_the_cubic_curve_is_concave_then_convex_and_clamped() -> None:
    """The CUBIC curve: beta*w_max at the throttle, w_max after recovery, within bounds."""
    params = BucketParams(rate=100.0, burst=1, recovery=10.0, beta=0.7, cooldown=1.0, ttl=60_000)

    def at(t: float) -> float:
        return cubic_rate(t, target=100.0, w_max=50.0, throttled_at=0.0, params=params)

    assert at(0.0) == pytest.approx(35.0)
    assert at(10.0) == pytest.approx(50.0)
    assert at(5.0) - at(0.0) > at(10.0) - at(5.0)  # fast first, flat near w_max
    assert at(20.0) == pytest.approx(65.0)  # then probing above it
    assert at(1000.0) == 100.0  # never above the target
    assert cubic_rate(0.0, target=100.0, w_max=1.0, throttled_at=0.0, params=params) == 5.0


def test_a_pause_that_starts_during_a_wait_is_honoured() -> None:
    """A caller that slept for its slot checks again for a pause set meanwhile."""

    class Clock(FakeClock):
        hook: Callable[[], None] | None = None

        def sleep(self, seconds: float) -> None:
            hook, self.hook = self.hook, None
            if hook is not None:
                hook()
            super().sleep(seconds)

    clock = Clock()
    h = Harness(clock=clock, rate=10)
    h.send()

    def throttle_meanwhile() -> None:
        h.send(response(429, headers={"Retry-After": "5"}))

    clock.hook = throttle_meanwhile
    h.send()
    # the 429 went out after 2 intervals; the sleeper sent 5 s after it, not before
    assert len(h.transport.calls) == 3
    assert sum(clock.sleeps) == pytest.approx(2 / 9.5 + 5.0)


def test_a_caller_whose_rate_dropped_while_it_slept_queues_again() -> None:
    """A lower X-RateLimit-Limit learnt during a wait: the sleeper takes a slot at the new rate."""

    class Clock(FakeClock):
        hook: Callable[[], None] | None = None

        def sleep(self, seconds: float) -> None:
            hook, self.hook = self.hook, None
            if hook is not None:
                hook()
            super().sleep(seconds)

    clock = Clock()
    h = Harness(clock=clock, rate=10)
    h.send()

    def learn_a_lower_limit() -> None:
        h.send(response(200, headers={"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1"}))

    bucket = h.limit._cells.get(KEY).bucket
    reservations: list[float] = []
    reserve = bucket.reserve

    def counting_reserve(now: float, params: BucketParams, max_wait: float) -> Reservation:
        result = reserve(now, params, max_wait)
        reservations.append(result.rate)
        return result

    bucket.reserve = counting_reserve  # type: ignore[method-assign]
    clock.hook = learn_a_lower_limit
    h.send()
    assert len(h.transport.calls) == 3
    # the sleeper reserved at 9.5/s, then (the limit learnt meanwhile) again at 1.9/s
    assert reservations == pytest.approx([9.5, 9.5, 1.9])
    h.send()
    assert clock.sleeps[-1] == pytest.approx(1 / 1.9)


# -- fairness --------------------------------------------------------------------------


class HeldClock(FakeClock):
    """A fake clock whose sleep records who waited how long, without moving time."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: dict[str, float] = {}
        self.slept_event = threading.Event()

    def sleep(self, seconds: float) -> None:
        self.waits[threading.current_thread().name] = seconds
        self.slept_event.set()


def test_threads_are_served_in_the_order_they_arrive() -> None:
    """Each arriving thread reserves the next slot: waits grow by one interval in order."""
    clock = HeldClock()
    h = Harness(clock=clock, rate=10)
    h.send()  # the first slot is gone
    threads = []
    for index in range(8):
        clock.slept_event.clear()
        thread = threading.Thread(target=h.send, name=f"t{index}")
        thread.start()
        assert clock.slept_event.wait(5)
        threads.append(thread)
    for thread in threads:
        thread.join(5)
    waits = [clock.waits[f"t{index}"] for index in range(8)]
    assert waits == pytest.approx([h.interval * (i + 1) for i in range(8)])


def test_no_thread_starves_under_contention() -> None:
    """32 threads at once: every one is served, none waits more than 32 intervals."""
    clock = HeldClock()
    h = Harness(clock=clock, rate=10)
    barrier = threading.Barrier(32)

    def worker() -> None:
        barrier.wait()
        h.send()

    threads = [threading.Thread(target=worker, name=f"w{i}") for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(h.transport.calls) == 32
    assert len(clock.waits) == 31  # everyone but the first waited
    assert sorted(clock.waits.values()) == pytest.approx([h.interval * i for i in range(1, 32)])


# -- in the pipeline ---------------------------------------------------------------------


def test_a_local_refusal_is_not_retried_nor_a_breaker_failure() -> None:
    """Behind retry and breaker: the refusal reaches the caller; the breaker stays closed."""
    clock = FakeClock()
    breaker = CircuitBreaker(minimum_calls=1, failure_ratio=0.1)
    limit = RateLimit.per_second(1, key=KEY, max_wait=0.1)
    pipeline = Pipeline(StatusErrors(), Retry(), breaker, limit, clock=clock)
    transport = ScriptedTransport(ok)
    run(pipeline, transport)
    with pytest.raises(RateLimitError, match="refused locally"):
        run(pipeline, transport)
    assert len(transport.calls) == 1
    assert breaker.state("https://api.example.com:443") == "closed"


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"requests": 0}, "requests must be more than 0"),
        ({"requests": float("nan")}, "requests must be a number"),
        ({"requests": 10, "period": 0}, r"period must be from 0.001 to 86400 seconds"),
        ({"requests": 10, "burst": 0}, "burst must be an int from 1 to 1000000"),
        ({"requests": 10, "burst": True}, "burst must be an int"),
        ({"requests": 10, "headroom": 1.5}, "headroom must be from 0.1 to 1"),
        ({"requests": 10, "recovery": -1}, "recovery must be from 0.001 to 86400 seconds"),
        ({"requests": 10, "max_wait": -1}, "max_wait must be from 0 to 86400 seconds"),
        ({"requests": 10, "keep_on_throttle": 1.0}, "keep_on_throttle must be from 0.1 to 0.99"),
        ({"requests": 10, "follow_headers": "yes"}, "follow_headers must be True or False"),
        ({"requests": 10, "key": " "}, "key must be a non-empty string or a function"),
        ({"requests": 10, "key": 5}, "key must be a non-empty string or a function"),
        ({"requests": 10, "name": ""}, "name must be a non-empty string"),
        ({"requests": 10, "redis_url": "http://x"}, "redis_url must start with redis://"),
    ],
)
def test_a_bad_option_fails_at_construction_naming_it(
    options: dict[str, Any], message: str
) -> None:
    """Every option is checked when the policy is built; the message names it and its range."""
    with pytest.raises(ConfigurationError, match=message):
        RateLimit(**options)


def test_per_minute_and_timedeltas() -> None:
    """per_minute(10) is 10 per 60 s; timedeltas are accepted for durations."""
    limit = RateLimit.per_minute(10, recovery=timedelta(seconds=30), max_wait=timedelta(0))
    assert (limit.requests, limit.period, limit.max_wait) == (10.0, 60.0, 0.0)
    assert limit.rate * 60 == pytest.approx(9.5)
    assert limit.name == "rate_limit"


def test_repr_is_readable_and_hides_the_redis_password() -> None:
    """repr shows the settings and the storage, never a Redis password."""
    limit = RateLimit.per_minute(10, key="key-abc", redis_url="redis://user:s3cret@localhost:1/0")
    text = repr(limit)
    assert text.startswith("RateLimit(requests=10, period=60, burst=1")
    assert "key='key-abc'" in text
    assert "s3cret" not in text
    assert "redis://user:***@localhost:1/0" in text
    assert limit.secrets == ("s3cret",)
    assert "key=breaker_key_by_host" in repr(RateLimit(5))


def test_the_bucket_key_is_a_hash_of_the_api_key() -> None:
    """rate_limit_key_for: stable, 16 hex digits, and the key itself is not in it."""
    api_key = "sk-live-0123456789abcdef"
    key = rate_limit_key_for(api_key)
    assert key == rate_limit_key_for(f" {api_key} ")
    assert key.startswith("key-")
    assert len(key) == 20
    assert "0123456789" not in key
    assert key != rate_limit_key_for("sk-live-other")


# -- telemetry ---------------------------------------------------------------------------


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The meter provider, swapped for an isolated one with an in-memory reader."""
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    monkeypatch.setattr(telemetry, "_meter_provider", lambda: provider)
    yield metric_reader
    provider.shutdown()


def test_a_429_is_logged_once_as_a_warning(logs: list[MutableMapping[str, Any]]) -> None:
    """rate_limit_throttled: policy, key, the new rate and the pause; no log on success."""
    h = Harness(rate=10)
    h.send()
    h.send(response(429, headers={"Retry-After": "2"}))
    events = [e for e in logs if e["event"] == "rate_limit_throttled"]
    assert len(events) == 1
    assert events[0]["log_level"] == "warning"
    assert events[0]["key"] == KEY
    assert events[0]["rate"] == pytest.approx(6.65)
    assert events[0]["pause"] == 2.0


def test_the_rate_is_a_gauge_and_throttles_and_refusals_are_counted(
    reader: InMemoryMetricReader,
) -> None:
    """requests_resilience.rate_limit.rate/.throttles/.refusals, by policy and key."""
    h = Harness(rate=10, key="gauge-key", max_wait=0)
    h.send(response(429))
    with pytest.raises(RateLimitError):
        h.send()
    rates = [
        p
        for p in points(reader, "requests_resilience.rate_limit.rate")
        if p.attributes and p.attributes.get("requests_resilience.rate_limit.key") == "gauge-key"
    ]
    assert [p.value for p in rates] == [pytest.approx(9.5 * 0.7)]
    throttles = points(reader, "requests_resilience.rate_limit.throttles")
    assert [p.value for p in throttles] == [1]
    refusals = points(reader, "requests_resilience.rate_limit.refusals")
    assert [p.value for p in refusals] == [1]


def test_the_rate_and_wait_are_set_on_the_current_span() -> None:
    """When a span is recording, it gets the bucket's rate and this attempt's wait."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    h = Harness(rate=10)
    with provider.get_tracer("test").start_as_current_span("operation"):
        h.send()
        h.send()
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["requests_resilience.rate_limit.rate"] == pytest.approx(9.5)
    assert span.attributes["requests_resilience.rate_limit.wait"] == pytest.approx(1 / 9.5)


def test_a_reset_further_than_one_period_is_capped() -> None:
    """A Reset years away (a skewed clock) pauses the bucket for one period at most."""
    h = Harness(rate=10)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(h.clock.time() + 1e7)}
    h.send(response(200, headers=headers))
    assert h.limit.status(KEY).paused_for == pytest.approx(1.0)


@pytest.mark.parametrize(("status", "pause"), [(200, 0.25), (429, 1.25)])
def test_a_whole_second_reset_is_read_as_a_range(status: int, pause: float) -> None:
    """Reset rounded up to the second: a success pauses to its start, a 429 to its end."""
    clock = FakeClock(wall=1_750_000_000.75)
    h = Harness(clock=clock, rate=10, period=2.0)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1750000002"}
    h.send(response(status, headers=headers))
    assert h.limit.status(KEY).paused_for == pytest.approx(pause)


def test_the_status_reports_the_rate_per_minute_and_the_totals() -> None:
    """status(): rate per minute, tokens, and what this process sent, waited and refused."""
    h = Harness(rate=1, burst=2)
    h.send()
    h.send()
    h.send()
    status = h.limit.status(KEY)
    assert status.per_minute == pytest.approx(57.0)
    assert (status.sent, status.waited, status.refused, status.throttled) == (3, 1, 0, 0)
    assert status.tokens == pytest.approx(0.0, abs=1e-9)
    assert not status.shared


# -- server hints bounded, state bounded, interrupts unwound --------------------------------


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"Retry-After": "99999999"}, 60.0),
        ({"Retry-After": "30"}, 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(1.8e9))}, 1.0),
    ],
)
def test_a_pause_from_a_429_is_bounded_by_max_pause(headers: dict[str, str], pause: float) -> None:
    """Retry-After is cut to max_pause (60 s); a Reset far away to the period (1 s) as before."""
    h = Harness(rate=10)
    h.send(response(429, headers=headers))
    assert h.limit.status(KEY).paused_for == pytest.approx(pause)
    assert h.limit.max_pause == 60.0


def test_max_pause_zero_ignores_pauses() -> None:
    """max_pause=0: Retry-After never holds the bucket; the next slot is one interval away."""
    h = Harness(rate=10, max_pause=0)
    h.send(response(429, headers={"Retry-After": "5"}))
    assert h.limit.status(KEY).paused_for == 0.0
    h.send()
    assert h.clock.sleeps == [pytest.approx(h.interval / 0.7)]  # the rate the 429 left


def test_an_interrupted_wait_releases_its_slot() -> None:
    """KeyboardInterrupt in the wait: the next call waits one interval, as if it never asked."""

    class Interrupting(FakeClock):
        armed = False

        def sleep(self, seconds: float) -> None:
            if self.armed:
                self.armed = False
                raise KeyboardInterrupt
            super().sleep(seconds)

    clock = Interrupting()
    h = Harness(clock=clock, rate=10)
    h.send()
    clock.armed = True
    with pytest.raises(KeyboardInterrupt):
        h.send()
    h.send()
    assert clock.sleeps == [pytest.approx(h.interval)]
    assert len(h.transport.calls) == 2


def test_keys_beyond_max_keys_drop_the_least_recently_used() -> None:
    """max_keys=10: 25 keys keep at most 10 buckets, the one in use among them."""
    clock = FakeClock()
    limit = RateLimit(100, key=lambda call: call.request.headers["X-Key"], max_keys=10)
    pipeline = Pipeline(limit, clock=clock)
    for i in range(25):
        run(pipeline, ok, request=prepared(headers={"X-Key": f"k{i}"}), clock=clock)
        run(pipeline, ok, request=prepared(headers={"X-Key": "hot"}), clock=clock)
    keys = list(limit.snapshot())
    assert len(keys) <= 10
    assert "hot" in keys
    assert "k24" in keys
    assert "k0" not in keys


def test_the_same_limit_header_is_not_parsed_again_and_remaining_zero_still_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a ceiling is known, answers repeating its X-RateLimit-Limit are not parsed,
    unless Remaining says 0: then the pause is learnt as before."""
    h = Harness(rate=10, period=1.0, burst=10)
    limits = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "19"}
    for _ in range(2):  # the first learns the ceiling, the second finds it known
        h.send(response(200, headers=limits))
    parsed: list[object] = []
    real = ratelimit_module.parse_rate_limit_headers  # type: ignore[attr-defined]

    def counting(headers: Any) -> Any:
        parsed.append(headers)
        return real(headers)

    monkeypatch.setattr(ratelimit_module, "parse_rate_limit_headers", counting)
    for remaining in ("18", "17", "9"):
        h.send(response(200, headers={**limits, "X-RateLimit-Remaining": remaining}))
    assert parsed == []
    reset = str(int(h.clock.time()) + 3)
    h.send(
        response(200, headers={**limits, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    )
    assert len(parsed) == 1
    assert h.limit.status(KEY).paused_for > 0

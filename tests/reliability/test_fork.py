"""A pipeline used after `os.fork()`: fresh pools, fresh locks, Redis reconnected.

Each row forks the test's process. The child runs a function and reports its result
to the parent through a pipe, then leaves with `os._exit` (it never returns into
pytest); the parent waits for it with a bound (`CHILD_BOUND`), so a child stuck on a
lock its parent held fails the row instead of hanging it. Before fork safety, a warm
connection pool was shared by parent and child: about half of the 400 responses
went to the wrong process (measured: 121 and 158 of 200 each), with no error.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from requests_resilience import (
    CircuitBreaker,
    Pipeline,
    PipelineAdapter,
    RateLimit,
    Retry,
    RetryBudget,
    StatusErrors,
    mount,
)
from requests_resilience._forksafe import reinit_after_fork, renew_locks
from tests.reliability import hostile

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() exists on POSIX only"),
    # Python 3.12+ warns that forking a process with threads (the test's server) may
    # deadlock the child: what these rows check cannot happen.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

#: How long a child may take before the row calls it stuck.
CHILD_BOUND = 20.0
CALLS = 100


def in_child(func: Callable[[], Any], meanwhile: Callable[[], object] = lambda: None) -> Any:
    """Run `func` in a forked child and return what it returned (JSON), or fail.

    The parent runs `meanwhile` while the child runs.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            payload = json.dumps({"result": func()})
        except BaseException as exc:
            payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
            code = 1
        try:
            os.write(write_end, payload.encode())
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        meanwhile()
    finally:
        text = _read_child(pid, read_end)
    return json.loads(text)["result"]


def _read_child(pid: int, read_end: int) -> str:
    deadline = time.monotonic() + CHILD_BOUND
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        pytest.fail(f"the child did not finish within {CHILD_BOUND}s: stuck")
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    text = b"".join(chunks).decode()
    assert '"error"' not in text, text
    return text


@pytest.fixture
def echo() -> Iterator[hostile.HostileServer]:
    """A keep-alive server that answers each request with its own path."""
    with hostile.HostileServer(hostile.echo_path, keep_alive=True) as server:
        yield server


def wrong_answers(session: requests.Session, url: str, role: str) -> int:
    """Send CALLS requests, each to its own path; count answers meant for another."""
    wrong = 0
    for n in range(CALLS):
        path = f"/{role}/{n}"
        wrong += session.get(url + path, timeout=5).text != path
    return wrong


def test_parent_and_child_never_get_each_others_responses(
    echo: hostile.HostileServer,
) -> None:
    """With a warm pool, parent and child send at once; every answer is its own."""
    session = mount(requests.Session(), echo.url + "/", Pipeline(StatusErrors()))
    assert session.get(echo.url + "/warm").text == "/warm"  # the pool holds a connection
    parent: list[int] = []
    child = in_child(
        lambda: wrong_answers(session, echo.url, "c"),
        meanwhile=lambda: parent.append(wrong_answers(session, echo.url, "p")),
    )
    assert (parent, child) == ([0], 0)
    assert echo.requests == 1 + 2 * CALLS
    assert echo.connections >= 2  # the child opened its own


def test_the_child_gets_fresh_locks_that_a_parent_thread_held() -> None:
    """Locks of the breaker, the rate limit and the retry budget held at the fork are free."""
    budget = RetryBudget()
    breaker = CircuitBreaker()
    limit = RateLimit(1000, burst=100)
    body = hostile.fixed(200, b"ok")
    with hostile.HostileServer(body, keep_alive=True) as server:
        session = mount(
            requests.Session(),
            server.url + "/",
            Pipeline(StatusErrors(), Retry(budget=budget), breaker, limit),
        )
        assert session.get(server.url + "/warm").text == "ok"  # the cells exist
        locks = [
            breaker._cells._lock,
            breaker._cells.items()[0][1].lock,
            limit._cells._lock,
            limit._cells.items()[0][1].lock,
            budget._state.lock,
        ]
        held = threading.Event()
        release = threading.Event()

        def hold() -> None:
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait(CHILD_BOUND)
            for lock in locks:
                lock.release()

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5)
        try:
            statuses = in_child(lambda: [session.get(server.url + "/x").status_code] * 3)
        finally:
            release.set()
            holder.join(5)
    assert statuses == [200, 200, 200]


def test_redis_backed_state_reconnects_in_the_child(redis_url: str) -> None:
    """The child opens its own Redis connection and shares the parent's breaker state."""
    _check_redis_in_child(redis_url)


def _check_redis_in_child(url: str) -> None:
    import redis

    admin = redis.Redis.from_url(url)
    breaker = CircuitBreaker(redis_url=url, name="forked", minimum_calls=1, break_duration=60)
    limit = RateLimit(1000, burst=100, redis_url=url, name="forked")
    script = hostile.fixed(500, b"down")
    with hostile.HostileServer(script, keep_alive=True) as server:
        session = mount(
            requests.Session(), server.url + "/", Pipeline(Retry(max_attempts=1), breaker, limit)
        )
        assert session.get(server.url + "/x").status_code == 500  # warm; the breaker opens
        assert breaker.state(next(iter(breaker._cells))) == "open"
        before = {c["id"] for c in admin.client_list()}

        def child() -> dict[str, Any]:
            from requests_resilience import CircuitOpenError

            try:
                session.get(server.url + "/x")
                refused = False
            except CircuitOpenError:
                refused = True
            return {"refused": refused, "clients": [c["id"] for c in admin.client_list()]}

        seen = in_child(child)
        requests_seen = server.requests
    assert seen["refused"] is True  # the open state in Redis reached the child
    assert set(seen["clients"]) - before  # with connections of its own
    assert requests_seen == 1  # the child's call was refused before the wire
    admin.close()


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0


def test_reinit_after_fork_calls_the_method_in_the_child_only() -> None:
    """A registered object gets its method called in the child; the parent's is untouched."""
    holder = _Holder()

    def refresh(obj: _Holder) -> None:
        obj.calls += 1

    reinit_after_fork(holder, refresh)
    assert in_child(lambda: holder.calls) == 1
    assert holder.calls == 0


def test_reinit_after_fork_holds_its_objects_weakly() -> None:
    """A registered object that died is not called, nor kept alive by the registry."""
    import gc
    import weakref

    holder = _Holder()
    reinit_after_fork(holder, lambda obj: None)
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None


def test_renew_locks_replaces_held_locks_in_slots_dicts_and_cells(
    echo: hostile.HostileServer,
) -> None:
    """renew_locks frees a policy's lock and its cells' locks (held here, as at a fork)."""
    breaker = CircuitBreaker()
    session = mount(requests.Session(), echo.url + "/", Pipeline(breaker))
    assert session.get(echo.url + "/warm").text == "/warm"  # a cell for the host
    adapter = session.get_adapter(echo.url + "/")
    assert isinstance(adapter, PipelineAdapter)
    cell = breaker._cells.items()[0][1]
    old = [breaker._cells._lock, cell.lock]
    for lock in old:
        lock.acquire()
    renew_locks(adapter.pipeline)
    assert breaker._cells._lock is not old[0]
    assert cell.lock is not old[1]
    assert breaker._cells._lock.acquire(blocking=False)
    assert cell.lock.acquire(blocking=False)


def test_renew_locks_keeps_a_condition_on_its_lock() -> None:
    """A Condition made on an object's lock is renewed on that lock's replacement."""
    holder = _Holder()
    holder.__dict__["ready"] = threading.Condition(holder.lock)
    holder.lock.acquire()
    renew_locks(holder)
    ready: Any = holder.__dict__["ready"]
    assert holder.lock.acquire(blocking=False)
    assert ready._lock is holder.lock

"""Fresh connections and locks in a child process after `os.fork()`.

A forked child inherits its parent's memory as it was at the fork: the sockets pooled by
every adapter (so parent and child would write to, and read from, one connection, and
each get some of the other's responses), and every lock, including those another thread
of the parent held at that moment (the child would wait for them forever).

Objects that hold such things register here, once, with `reinit_after_fork`; in the
child, right after the fork and before any other code runs, each registered object that
is still alive gets its method called. The registry holds its objects weakly, costs
nothing per request, and does nothing on platforms without `os.register_at_fork`
(Windows starts processes afresh).

`PipelineAdapter` registers itself: in the child it drops its pools without touching
them (their sockets and locks are the parent's) and builds new ones, and gives every
policy of its pipeline fresh locks (`renew_locks`). A policy of yours that keeps a lock
and is used outside an adapter can register too::

    class MyPolicy:
        def __init__(self) -> None:
            self._lock = threading.Lock()
            reinit_after_fork(self, renew_locks)
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["reinit_after_fork", "renew_locks", "renew_queue"]

_T = TypeVar("_T")

_entries: dict[int, tuple[weakref.ref[Any], Callable[[Any], None]]] = {}
_tokens = itertools.count()


def reinit_after_fork(obj: _T, method: Callable[[_T], None]) -> None:
    """Call ``method(obj)`` in every child process forked while `obj` is alive.

    Args:
        obj: the object to refresh; held weakly (it must support weak references).
        method: what refreshes it, called with `obj` in the child, right after the
            fork, while the child has one thread.

    Raises:
        TypeError: `obj` cannot be weakly referenced (a class with ``__slots__`` and no
            ``"__weakref__"`` among them).
    """
    token = next(_tokens)
    ref = weakref.ref(obj, lambda _: _entries.pop(token, None))
    _entries[token] = (ref, method)


def _after_fork_in_child() -> None:
    errors: list[BaseException] = []
    for ref, method in list(_entries.values()):
        obj = ref()
        if obj is None:
            continue
        try:
            method(obj)
        except Exception as exc:  # the others still get theirs; the first is raised below
            errors.append(exc)
    if errors:
        raise errors[0]


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())
_OURS = "requests_resilience"


def renew_locks(obj: object) -> None:
    """Give `obj`, and the objects of this package it holds, fresh locks.

    Replaces every `threading.Lock`, `threading.RLock` and `threading.Condition` found
    in the attributes of `obj` (``__dict__`` and ``__slots__``) and, recursively, in
    those of the objects of this package it holds directly or in a list, tuple, set or
    dict: the cells of a breaker or a rate limit, a retry budget's state, a Redis link.
    Only safe in a child right after `os.fork()`, when no other thread can hold them.
    """
    _renew(obj, set(), {})


def _renew(obj: object, seen: set[int], renewed: dict[int, Any]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in _attributes(obj):
        fresh = _fresh_lock(value, renewed)
        if fresh is not None:
            object.__setattr__(obj, name, fresh)
        else:
            for item in _held(value):
                _renew(item, seen, renewed)


def _attributes(obj: object) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = list(getattr(obj, "__dict__", {}).items())
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in {"__dict__", "__weakref__"}:
                continue
            try:
                found.append((name, object.__getattribute__(obj, name)))
            except AttributeError:
                continue  # a slot never set
    return found


def _held(value: object) -> list[object]:
    """The objects of this package that `value` is, or holds in a container."""
    if isinstance(value, list | tuple | set | frozenset):
        return [v for v in value if _is_ours(v)]
    if isinstance(value, dict):
        return [v for v in value.values() if _is_ours(v)]
    return [value] if _is_ours(value) else []


def _is_ours(value: object) -> bool:
    return not isinstance(value, type) and type(value).__module__.startswith(_OURS)


def _fresh_lock(value: object, renewed: dict[int, Any]) -> Any:
    """A fresh lock of `value`'s kind (the same one for one old lock), or None."""
    if id(value) in renewed:
        return renewed[id(value)]
    fresh: Any
    if isinstance(value, _LOCK):
        fresh = threading.Lock()
    elif isinstance(value, _RLOCK):
        fresh = threading.RLock()
    elif isinstance(value, threading.Condition):
        inner = _fresh_lock(value._lock, renewed)  # type: ignore[attr-defined] # its lock
        fresh = threading.Condition(inner)
    else:
        return None
    renewed[id(value)] = fresh
    return fresh


def renew_queue(q: queue.Queue[Any]) -> None:
    """Give a `queue.Queue` (urllib3's pool of connections) a fresh mutex, in a child."""
    q.mutex = threading.Lock()
    q.not_empty = threading.Condition(q.mutex)
    q.not_full = threading.Condition(q.mutex)
    q.all_tasks_done = threading.Condition(q.mutex)

"""Copies of stateful policies: the same configuration, fresh state.

`copy.deepcopy` and `pickle` of a `requests.Session` reach every adapter mounted on
it, and so every policy. A copy that shared the original's breaker window, rate-limit
bucket or retry budget (or failed on their locks) would surprise; `HTTPAdapter` keeps
its configuration only and builds a new pool. Policies that hold state do the same:
`Rebuilt` records the arguments a policy was built with and makes every copy by
calling the constructor again with them.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

__all__ = ["Rebuilt"]

_T = TypeVar("_T", bound="Rebuilt")


class Rebuilt:
    """Mixin: deep copies and unpickled copies are built anew from the same arguments.

    A deep copy shares the arguments that are services (clocks, key functions, tracer
    providers, Redis clients) and deep-copies those that hold state of their own
    (another `Rebuilt`, a `RetryBudget`), so objects shared within the original are
    shared within the copy too. Pickling pickles the arguments; one that cannot be
    pickled (a lambda, a Redis client) fails with pickle's own error.
    """

    __slots__ = ("_init_arguments",)

    _init_arguments: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        self = super().__new__(cls)
        object.__setattr__(self, "_init_arguments", (args, kwargs))
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._init_arguments
        return (_rebuild, (type(self), args, kwargs))

    def __copy__(self: _T) -> _T:
        return self.__deepcopy__({})

    def __deepcopy__(self: _T, memo: dict[int, Any]) -> _T:
        args, kwargs = self._init_arguments
        fresh = type(self)(
            *(_fresh(a, memo) for a in args), **{k: _fresh(v, memo) for k, v in kwargs.items()}
        )
        memo[id(self)] = fresh
        return fresh


def _fresh(value: Any, memo: dict[int, Any]) -> Any:
    """Copy what holds state of its own (it defines how); share every other argument."""
    if hasattr(type(value), "__deepcopy__") and not isinstance(value, type):
        return copy.deepcopy(value, memo)
    if isinstance(value, (tuple, list)):
        return type(value)(_fresh(v, memo) for v in value)
    return value


def _rebuild(cls: type[_T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _T:
    return cls(*args, **kwargs)

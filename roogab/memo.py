"""A bounded, thread-safe memo: a value computed once per key, least recently used dropped first.

Agents resend their whole history every turn; what RooGab derives from a message (its digest)
is computed when the message is new and looked up afterwards, so a turn costs what is new in it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """``memo(key)`` is ``fn(key)``, remembered while the keys held weigh at most *budget*
    (each key weighs ``weigh(key)``, e.g. its size in characters)."""

    def __init__(self, fn: Callable[[K], V], budget: int, weigh: Callable[[K], int]) -> None:
        self._fn = fn
        self._budget = budget
        self._weigh = weigh
        self._held = 0
        self._values: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key: K) -> V:
        with self._lock:
            found = self._values.get(key)
            if found is not None:
                self._values.move_to_end(key)
                return found[0]
        value, weight = self._fn(key), self._weigh(key)
        if weight > self._budget:
            return value
        with self._lock:
            if key not in self._values:
                self._values[key] = (value, weight)
                self._held += weight
                while self._held > self._budget:
                    _, (_, dropped) = self._values.popitem(last=False)
                    self._held -= dropped
        return value

    def __len__(self) -> int:
        return len(self._values)

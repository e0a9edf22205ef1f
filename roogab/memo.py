"""A bounded, thread-safe memo: a value computed once per key, about the least recently used
dropped first (CLOCK).

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


class _Entry(Generic[V]):
    """A remembered value, its weight, and whether it was used since it was (re)queued."""

    __slots__ = ("used", "value", "weight")

    def __init__(self, value: V, weight: int) -> None:
        self.value = value
        self.weight = weight
        self.used = False


class Memo(Generic[K, V]):
    """``memo.get(key, fn)`` is ``fn(key)``, remembered while the keys held weigh at most
    *budget* (each key weighs ``weigh(key)``, e.g. its size in characters).

    Eviction is LRU by second chance (CLOCK): a hit only marks its entry used, and the oldest
    entry is dropped unless it was used since it was (re)queued, in which case it goes to the back
    unmarked. A hit is then one dict lookup and no lock: with messages as keys, a hit costs one
    hash and one comparison of the message, instead of two of each plus a lock for
    ``move_to_end`` (at a 200-message history, per turn: ~0.5 ms less).
    """

    def __init__(self, budget: int, weigh: Callable[[K], int]) -> None:
        self._budget = budget
        self._weigh = weigh
        self._held = 0
        self._values: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, fn: Callable[[K], V]) -> V:
        """The value remembered for *key*, else ``fn(key)`` (remembered if it fits)."""
        found = self._values.get(key)  # atomic; a concurrent eviction at worst re-computes later
        if found is not None:
            found.used = True
            return found.value
        value, weight = fn(key), self._weigh(key)
        if weight > self._budget:
            return value
        with self._lock:
            if key not in self._values:
                self._evict(room=weight)  # before the new key goes in: it is never the one dropped
                self._values[key] = _Entry(value, weight)
                self._held += weight
        return value

    def _evict(self, room: int) -> None:
        values = self._values
        while self._held + room > self._budget:
            oldest, entry = next(iter(values.items()))
            if entry.used:
                entry.used = False
                values.move_to_end(oldest)
            else:
                del values[oldest]
                self._held -= entry.weight

    def __len__(self) -> int:
        return len(self._values)

"""One turn at a time per task across RooGab instances that share a database.

Before a turn is planned the registry takes the task's lease in the store (``Leases.hold``); a
second instance that receives a turn of the same task waits here until the first one released it,
then finds the finished turn in the store and answers a duplicate from the record. The owner's
heartbeat (``Leases.renew``, called by the housekeeper thread) keeps its leases alive; when an
instance dies its leases expire after ``ttl`` seconds and any other instance takes the task over.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import StoreError
from .store import Lease, Store

__all__ = ["LeaseSettings", "Leases", "lease_name"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    """This instance's name, how long its leases live without a heartbeat, how long to wait."""

    instance: str
    ttl: float = 15.0
    wait: float = 900.0
    poll: float = 0.02
    poll_max: float = 0.25

    def __post_init__(self) -> None:
        if self.ttl <= 0 or self.wait <= 0:
            raise ValueError("lease ttl and wait must be positive")


def lease_name(key: tuple[str, ...]) -> str:
    """The lease of one task: a digest of (client, thread, provider, model)."""
    return hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:32]


class Leases:
    """Takes, waits for and releases task leases in a shared store."""

    def __init__(self, store: Store, settings: LeaseSettings, *,
                 sleep: Callable[[float], object] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self._sleep = sleep
        self._clock = clock

    @property
    def instance(self) -> str:
        """The name this instance's leases are held under."""
        return self.settings.instance

    @contextmanager
    def hold(self, key: tuple[str, ...]) -> Iterator[Lease]:
        """Take the lease of *key* (waiting while another turn holds it) for the ``with`` block.

        Raises:
            StoreError: the store failed, or the lease stayed busy longer than ``wait`` seconds.
        """
        name = lease_name(key)
        lease = self._take(name)
        try:
            yield lease
        finally:
            try:
                self.store.release_lease(name, self.instance, self.settings.ttl)
            except StoreError as exc:  # the lease expires on its own; the turn's answer stands
                log.warning("could not release lease %s: %s", name, exc)

    def renew(self) -> int:
        """The heartbeat: keep every lease of this instance alive for another ``ttl``."""
        return self.store.renew_leases(self.instance, self.settings.ttl)

    def _take(self, name: str) -> Lease:
        s = self.settings
        deadline = self._clock() + s.wait
        pause = s.poll
        while True:
            lease = self.store.acquire_lease(name, s.instance, s.ttl)
            if lease is not None:
                if lease.previous_owner not in (None, s.instance):
                    log.info("task lease %s: taken from %s (%s)", name, lease.previous_owner,
                             "interrupted" if lease.interrupted else
                             "alive" if lease.previous_alive else "gone")
                return lease
            if self._clock() >= deadline:
                raise StoreError(f"store: task {name} is still busy in another instance after {s.wait:g} s")
            self._sleep(pause)
            pause = min(pause * 2, s.poll_max)

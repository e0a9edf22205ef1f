"""The turn-log writer's hook after writes (runtime gives it memory.give_back): it follows the
writes once they settle, once per burst, never before the records are in the store."""

from __future__ import annotations

import threading

from roogab.store import TurnRecord
from roogab.store_memory import MemoryStore
from roogab.turnlog import TurnLogWriter


def _record(n: int) -> TurnRecord:
    return TurnRecord(f"turn-{n}", "conv", "demo", "gab-1", 0.0, 1, "{}", "prompt", "raw", "ok", False, 0,
                      "null", "{}", None)


class GatedStore(MemoryStore):
    """Holds the first write until the test opens the gate, so the rest of a burst queues up."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def add_turn(self, rec: TurnRecord) -> None:
        assert self.gate.wait(10)
        super().add_turn(rec)


def test_after_writes_runs_once_a_burst_of_records_is_in_the_store() -> None:
    store = GatedStore()
    seen: list[int] = []
    ran = threading.Event()

    def after() -> None:
        seen.append(len(store.turns(limit=100)))
        ran.set()

    writer = TurnLogWriter(store, delay=0.0, after_writes=after, settle=0.05)
    try:
        for n in range(20):
            writer.add(_record(n))
        store.gate.set()
        assert ran.wait(10)
        writer.flush()
        ran.clear()
        writer.add(_record(20))  # a later turn: followed again
        assert ran.wait(10)
    finally:
        writer.close()
    assert seen == [20, 21]  # once after the whole burst was written, once after the later turn


def test_without_a_hook_the_writer_only_writes() -> None:
    store = MemoryStore()
    writer = TurnLogWriter(store, delay=0.0)
    writer.add(_record(1))
    writer.flush()
    writer.close()
    assert [t.id for t in store.turns()] == ["turn-1"]

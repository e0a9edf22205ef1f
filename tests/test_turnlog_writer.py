"""The turn-log writer's hook after writes (runtime gives it memory.give_back): it follows the
writes once they settle, once per burst, never before the records are in the store. And what it
does with records the store does not take: kept while the store fails, dropped when the store
refuses the record itself, so that one bad record never holds up the turns after it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from roogab.errors import StoreError
from roogab.store import Store, TurnRecord, open_store
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


class FailingStore(MemoryStore):
    """Fails every write (the database is unreachable) until the test sets ``up``."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    def add_turn(self, rec: TurnRecord) -> None:
        if not self.up:
            raise StoreError("store: cannot log turn: OperationalError: connection refused")
        super().add_turn(rec)


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    dsn = request.getfixturevalue("pg").database() if request.param == "postgres" else None
    s = open_store(request.param, tmp_path, dsn=dsn)
    yield s
    s.close()


def test_a_record_the_store_refuses_is_dropped_and_the_turns_after_it_are_logged(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="roogab.turnlog")
    writer = TurnLogWriter(store, delay=0.0)
    try:
        writer.add(_record(1))
        writer.add(replace(_record(1), provider_prompt="what-the-refused-turn-said"))  # its id is taken
        writer.add(_record(2))
        writer.flush()
        writer.add(_record(3))  # a later write does not try the dropped record again
        writer.flush()
    finally:
        writer.close()
    assert [t.id for t in store.turns()] == ["turn-3", "turn-2", "turn-1"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "roogab.turnlog"]
    assert len(warnings) == 1 and "turn-1" in warnings[0], warnings
    assert "what-the-refused-turn-said" not in caplog.text  # the turn's id, never its contents


def test_records_a_failing_store_could_not_take_are_written_once_it_works() -> None:
    store = FailingStore()
    writer = TurnLogWriter(store, delay=0.0)
    try:
        for n in range(3):
            writer.add(_record(n))
        writer.flush()
        assert store.turns() == []
        store.up = True
        writer.add(_record(3))
        writer.flush()
    finally:
        writer.close()
    assert [t.id for t in store.turns()] == ["turn-3", "turn-2", "turn-1", "turn-0"]  # in their order

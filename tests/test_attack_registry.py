"""The registry under odd retries, crashes and a store that fails (issue 13, items 2, 6, 7, 8, Low).

A real Registry over real SQLite files, a ChatService over a FakeProvider (the turn logic without
sockets); a lock is held by another process where a store fault is needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import CLINE, captured_bodies

from roogab.errors import RecordRefused, StoreError
from roogab.live import TurnNote
from roogab.outputs import CallOut, Finished, Out, TextOut
from roogab.prompt import PromptBook
from roogab.providers.fake import FakeProvider
from roogab.registry import RETRY_WINDOW_SECONDS, Registry
from roogab.service import ChatService, TurnSettings
from roogab.store import ConversationRecord, MemoryStore, SqliteStore
from roogab.wire import ChatRequest, parse_chat_request

BOOK = PromptBook.load()
CALL = '```lua\nreturn { tool_calls = { { name = "read_files", arguments = { files = { { path = "a" } } } } } }\n```'
TEXT = '```lua\nreturn { text = [==[done]==] }\n```'


class Clock:
    """A clock the test moves; it refuses to be read without end (a spinning loop fails, not hangs)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads > 10_000:
            raise AssertionError("the registry keeps reading the clock: it spins")
        return self.now


def _service(registry: Registry, *replies: str) -> tuple[ChatService, FakeProvider]:
    fake = FakeProvider(list(replies), chunk=7)
    return ChatService({"fake": fake}, registry, BOOK, TurnSettings()), fake


def _cline(turn: int = 0, **extra: Any) -> ChatRequest:
    body = captured_bodies(CLINE)[turn]
    body.update(model="fake/model", **extra)
    return parse_chat_request(body)


def _run(service: ChatService, request: ChatRequest, note: TurnNote | None = None) -> list[Out]:
    return list(service.run(request, "addr:test", note))


# -- item 2: a retry after the window ------------------------------------------------------------

def test_identical_request_after_the_retry_window_is_a_new_turn() -> None:
    clock = Clock()
    service, fake = _service(Registry(clock=clock), CALL, CALL)
    first = _run(service, _cline())
    clock.now += RETRY_WINDOW_SECONDS + 1
    note = TurnNote()
    again = _run(service, _cline(), note)  # the old code spun here for ever
    assert len(fake.sent) == 2 and fake.sent[1].handle is None  # asked again, on a new conversation
    assert note.from_record is None
    assert [type(i) for i in first] == [type(i) for i in again]


def test_identical_request_after_the_window_from_a_restarted_registry(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "r.sqlite3")
    service, _fake = _service(Registry(store, clock=clock), CALL)
    _run(service, _cline())
    clock.now += RETRY_WINDOW_SECONDS + 1
    service2, fake2 = _service(Registry(store, clock=clock), CALL)
    _run(service2, _cline())
    assert len(fake2.sent) == 1
    store.close()


def test_identical_request_within_the_window_is_answered_from_the_record() -> None:
    registry = Registry()
    service, fake = _service(registry, CALL)
    first = _run(service, _cline())
    note = TurnNote()
    again = _run(service, _cline(), note)
    assert len(fake.sent) == 1
    registry._log.flush()
    original = registry.turns(limit=2)[-1]
    assert note.from_record == original.id
    assert again == [i for i in first if isinstance(i, (TextOut, CallOut, Finished))]
    assert registry.turns(limit=1)[0].retry_of == original.id


# -- item 8: the retry key holds the tools, tool_choice and the protocol ---------------------------

@pytest.mark.parametrize("change", [
    {"tools": []},
    {"tool_choice": "none"},
    {"tools": [{"type": "function", "function": {"name": "other_tool", "parameters": {"type": "object"}}}]},
])
def test_same_messages_with_other_tools_are_not_answered_from_the_record(change: dict[str, Any]) -> None:
    service, fake = _service(Registry(), CALL, TEXT)
    _run(service, _cline())
    body = captured_bodies(CLINE)[0]
    body.update(model="fake/model", **change)
    if not body.get("tools"):
        body.pop("tools", None)
        body.pop("tool_choice", None) if change.get("tool_choice") != "none" else None
    note = TurnNote()
    again = _run(service, parse_chat_request(body), note)
    assert len(fake.sent) == 2, "the retry record answered a request with other tools"
    assert note.from_record is None and not any(isinstance(i, CallOut) for i in again)


# -- Low: replayed is true on the turn log of a replayed turn --------------------------------------

def test_a_replayed_turn_is_logged_as_replayed() -> None:
    registry = Registry()
    service, _fake = _service(registry, TEXT)
    _run(service, _cline(1))  # history the registry never saw: replayed onto a fresh conversation
    registry._log.flush()
    assert registry.turns(limit=1)[0].replayed
    assert registry.turns(limit=1)[0].verdict == "ok"


# -- item 6: a crash mid-reply is never continued --------------------------------------------------

def _chat(*texts: str) -> ChatRequest:
    """A user/assistant/user ... conversation with RooGab's TEXT answer ("done") between the turns."""
    messages: list[dict[str, str]] = []
    for i, text in enumerate(texts):
        if i:
            messages.append({"role": "assistant", "content": "done"})
        messages.append({"role": "user", "content": text})
    return parse_chat_request({"model": "fake/model", "messages": messages})


def test_conversation_in_flight_at_a_crash_is_replayed_not_continued(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SqliteStore(path)
    registry = Registry(store)
    service, _fake = _service(registry, TEXT)
    _run(service, _chat("one"))
    second = _chat("one", "two")
    with registry.turn("addr:test", second, "fake", "model") as plan:
        assert not plan.fresh  # a continuation: "two" would go into the same conversation
        # ... the process dies here, mid-reply: nothing after this line runs in the old process
        after_crash = Registry(SqliteStore(path))
        with after_crash.turn("addr:test", second, "fake", "model") as again:
            assert again.fresh and again.replay, "the conversation mid-reply at the crash was continued"
            assert [m.content for m in again.history] == ["one", "done"]
    store.close()


def test_in_flight_mark_is_cleared_by_a_completed_turn(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SqliteStore(path)
    service, _fake = _service(Registry(store), TEXT, TEXT)
    _run(service, _chat("one"))
    _run(service, _chat("one", "two"))
    assert [(r.in_flight, r.turns) for r in store.load_conversations()] == [(False, 2)]
    with Registry(SqliteStore(path)).turn("addr:test", _chat("one", "two", "three"), "fake", "model") as plan:
        assert not plan.fresh  # after a clean turn the next one continues
    store.close()


def test_memory_store_keeps_the_mark() -> None:
    store = MemoryStore()
    service, _ = _service(Registry(store), TEXT)
    _run(service, _chat("one"))
    conv = store.load_conversations()[0]
    store.mark_in_flight(conv.id, True)
    assert store.load_conversations()[0].in_flight
    assert Registry(store).conversations() == []
    store.mark_in_flight("no-such-id", True)  # nothing to mark: no error


# -- item 7: a store that cannot be written ---------------------------------------------------------

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


class Locker:
    """Another process holding the database's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


def test_answered_turn_survives_a_store_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    store = SqliteStore(path, busy_timeout=0.05)
    registry = Registry(store)
    service, fake = _service(registry, TEXT, TEXT)
    locker = Locker(path)
    try:
        with pytest.raises(StoreError):  # the fault is real
            store.expire_conversations(0.0)
        items = _run(service, _chat("one"))  # the old code: StoreError after the whole answer
        assert isinstance(items[-1], Finished) and items[-1].finish_reason == "stop"
        assert registry.unsaved() == 1 and len(registry.conversations()) == 1
    finally:
        locker.release()
    items = _run(service, _chat("one", "two"))  # continues in memory; the pending write landed first
    assert fake.sent[1].handle is not None and isinstance(items[-1], Finished)
    assert registry.unsaved() == 0
    reopened = SqliteStore(path)
    assert [r.turns for r in reopened.load_conversations()] == [2]
    reopened.close()
    store.close()


def test_failed_turn_with_a_locked_store_reports_the_real_error(tmp_path: Path) -> None:
    from roogab.errors import ReplyFormatError
    path = tmp_path / "locked.sqlite3"
    store = SqliteStore(path, busy_timeout=0.05)
    registry = Registry(store)
    service, _fake = _service(registry, TEXT, '{"tool_calls"', '{"tool_calls"')
    _run(service, _chat("one"))
    locker = Locker(path)
    try:
        with pytest.raises(ReplyFormatError):  # not the StoreError of drop() in the finally
            _run(service, _chat("one", "two"))
        assert registry.conversations() == [] and registry.unsaved() == 1  # the delete waits
    finally:
        locker.release()
    registry._log.flush()
    assert registry.turns(limit=1)[0].verdict == "non_compliant"  # the turn log was written
    store.close()


def test_unsaved_conversation_is_not_evicted_from_the_lru(tmp_path: Path) -> None:
    """With the lazy registry, an evicted task is read back from the store: a conversation the
    store has not taken yet must stay in memory, or the next turn would not find it."""
    path = tmp_path / "locked.sqlite3"
    store = SqliteStore(path, busy_timeout=0.05)
    registry = Registry(store, cache_tasks=1)
    service, fake = _service(registry, TEXT, TEXT, TEXT)
    locker = Locker(path)
    try:
        _run(service, _chat("task A"))  # answered; its save waits for the store
        assert registry.unsaved() == 1
        other = parse_chat_request({"model": "fake/model", "messages": [
            {"role": "system", "content": "another task"}, {"role": "user", "content": "task B"}]})
        _run(service, other)  # a second task: beyond cache_tasks, A is the least recently used
        items = _run(service, _chat("task A", "more"))  # the store still refuses writes
        assert fake.sent[2].handle is not None, "the unsaved conversation was evicted and replayed"
        assert isinstance(items[-1], Finished)
    finally:
        locker.release()
    registry._write_unsaved()
    assert registry.unsaved() == 0
    store.close()


class RefusingStore(MemoryStore):
    """A store that refuses the first conversation's record itself (a value it cannot hold)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []  # the refused conversation's id, once per try

    def save_conversation(self, rec: ConversationRecord) -> None:
        if not self.refused or rec.id == self.refused[0]:
            self.refused.append(rec.id)
            raise RecordRefused("store: save conversation: a value the store cannot hold")
        super().save_conversation(rec)


def test_a_conversation_the_store_refuses_itself_is_not_retried_before_every_turn() -> None:
    """A refused record is not a failing store: it is not kept to be written again (each turn
    would try it first and fail), and the other conversations' writes go on."""
    store = RefusingStore()
    registry = Registry(store)
    service, fake = _service(registry, TEXT, TEXT, TEXT)
    first = _run(service, _chat("refused task"))
    assert isinstance(first[-1], Finished) and store.refused and registry.unsaved() == 0
    tries = len(store.refused)
    assert isinstance(_run(service, _chat("another task"))[-1], Finished)
    assert len(store.refused) == tries  # not written again before the next turn
    assert len(store.load_conversations()) == 1  # the other task's conversation was written
    items = _run(service, _chat("refused task", "go on"))  # continues from memory
    assert isinstance(items[-1], Finished) and fake.sent[2].handle is not None

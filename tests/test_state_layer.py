"""The state layer's pure parts: affinity keys, the registry's LRU over store look-ups, task
leases and takeover decisions, background expiry (on a real SQLite store and in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import CLINE, captured_bodies

from roogab.affinity import affinity_key
from roogab.config import load_config
from roogab.errors import ConfigError, StoreError
from roogab.leases import Leases, LeaseSettings, lease_name
from roogab.registry import Registry, thread_key
from roogab.store import Lease
from roogab.store_memory import MemoryStore
from roogab.store_sqlite import SqliteStore
from roogab.wire import Message, ToolCallRef, parse_chat_request


def _reply() -> Message:
    call = ToolCallRef("call_cap1", "read_files", '{"files": [{"path": "/home/dev/project/hello.txt"}]}')
    return Message("assistant", "Reading the file.", tool_calls=(call,))


def _task(n: int) -> list[dict[str, Any]]:
    """Cline's two captured turns, made a task of their own by its first message."""
    bodies = captured_bodies(CLINE)
    for body in bodies:
        first = next(m for m in body["messages"] if m["role"] == "user")
        first["content"] = f"task {n}: " + str(first["content"])
    return bodies


def _turn(registry: Registry, body: dict[str, Any]) -> Any:
    with registry.turn("addr:1", parse_chat_request(body), "demo", "gab-1") as plan:
        return plan


# -- affinity --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "body", "expected"), [
    ({"x-session-affinity": "kilo-1"}, None, ("kilo-1", "kilo")),
    ({"X-Claude-Code-Session-Id": "0b9e-42"}, None, ("0b9e-42", "claude-code")),
    ({"session_id": "codex-7"}, {"prompt_cache_key": "pck"}, ("codex-7", "codex")),
    ({}, {"prompt_cache_key": "pck-9"}, ("pck-9", "codex")),
    ({"x-session-affinity": "  "}, {"prompt_cache_key": ""}, ("OPENING", "opening")),
    ({}, None, ("OPENING", "opening")),
])
def test_affinity_key_takes_what_the_client_sends(headers: dict[str, str], body: dict[str, object] | None,
                                                  expected: tuple[str, str]) -> None:
    got = affinity_key(headers, body, lambda: "OPENING")
    assert (got.key, got.source) == expected


def test_an_unsafe_affinity_value_is_replaced_by_its_digest() -> None:
    got = affinity_key({"x-session-affinity": "a b\r\nInjected: 1"}, None, lambda: "x")
    assert got.key.startswith("h:") and len(got.key) == 34
    assert affinity_key({"x-session-affinity": "a b\r\nInjected: 1"}, None, lambda: "x") == got


def test_the_fallback_key_is_the_opening_digest() -> None:
    first, second = captured_bodies(CLINE)
    keys = {thread_key(parse_chat_request(b)) for b in (first, second)}
    assert len(keys) == 1  # every turn of a task routes alike


# -- the registry over its store -------------------------------------------------------------------

def test_a_new_registry_loads_nothing_and_finds_stored_tasks_on_demand(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "roogab.sqlite3")
    try:
        before = Registry(store)
        first, second = _task(1)
        before.record(_turn(before, first), "conv-1", _reply(), "{}")
        after = Registry(store)  # a restart
        assert after.conversations()[0].handle == "conv-1"  # the inspector reads the store
        plan = _turn(after, second)
        assert plan.conversation.handle == "conv-1" and not plan.fresh
        assert 0 < len(plan.new) < len(plan.messages)  # only the suffix is sent
    finally:
        store.close()


def test_evicted_tasks_come_back_from_the_store() -> None:
    store = MemoryStore()
    registry = Registry(store, cache_tasks=2)
    tasks = [_task(n) for n in range(5)]
    for n, (first, _) in enumerate(tasks):
        registry.record(_turn(registry, first), f"conv-{n}", _reply(), "{}")
    for n, (_, second) in enumerate(tasks):
        plan = _turn(registry, second)
        assert plan.conversation.handle == f"conv-{n}"  # continued, not replayed
    assert len(registry._threads) <= 2


def test_idle_expiry_runs_when_asked_not_in_a_turn() -> None:
    now = [1000.0]
    store = MemoryStore()
    registry = Registry(store, idle_expiry=60.0, clock=lambda: now[0])
    first, second = _task(1)
    registry.record(_turn(registry, first), "conv-1", _reply(), "{}")
    now[0] += 3600
    assert _turn(registry, second).conversation.handle == "conv-1"  # a turn expires nothing
    released: list[tuple[str, str]] = []
    assert len(registry.expire_idle(lambda provider, handle: released.append((provider, handle)))) == 1
    assert store.load_conversations() == []
    assert [handle for _, handle in released] == ["conv-1"]  # its provider is told it may let it go
    assert _turn(registry, second).fresh  # gone: the next turn replays


# -- leases and takeover ---------------------------------------------------------------------------

def _leased(store: MemoryStore, instance: str, portable: tuple[str, ...] = ("demo",)) -> Registry:
    leases = Leases(store, LeaseSettings(instance, ttl=60.0, wait=5.0), sleep=lambda _: None)
    return Registry(store, leases=leases, portable=portable)


def test_a_task_moving_to_a_live_instance_keeps_its_portable_conversation() -> None:
    store = MemoryStore()
    a, b = _leased(store, "a"), _leased(store, "b")
    first, second = _task(1)
    a.record(_turn(a, first), "conv-1", _reply(), "{}")
    plan = _turn(b, second)
    assert plan.conversation.handle == "conv-1" and not plan.replay


def test_a_task_whose_conversation_is_bound_to_its_instance_is_replayed_elsewhere() -> None:
    store = MemoryStore()
    a, b = _leased(store, "a", portable=()), _leased(store, "b", portable=())
    first, second = _task(1)
    a.record(_turn(a, first), "conv-1", _reply(), "{}")
    plan = _turn(b, second)
    assert plan.replay and plan.fresh


@pytest.mark.parametrize(("lease", "takeover"), [
    (Lease("t", "b"), False),
    (Lease("t", "b", "b", True), False),
    (Lease("t", "b", "a", True), False),
    (Lease("t", "b", "a", False), True),  # the owner is gone
    (Lease("t", "b", "a", False, True), True),  # it died mid-turn
    (Lease("t", "b", "b", False, True), True),
])
def test_takeover_decisions(lease: Lease, takeover: bool) -> None:
    assert Registry(portable=("demo",))._takes_over(lease, "demo") is takeover


def test_a_duplicate_from_another_instance_is_answered_from_the_record() -> None:
    store = MemoryStore()
    a, b = _leased(store, "a"), _leased(store, "b")
    first, _ = _task(1)
    a.record(_turn(a, first), "conv-1", _reply(), '{"answer": 1}')
    assert _turn(b, first).recorded == '{"answer": 1}'


def test_a_busy_lease_makes_the_other_instance_wait_then_give_up() -> None:
    store = MemoryStore()
    waits: list[float] = []
    leases = Leases(store, LeaseSettings("b", ttl=60.0, wait=1.0), sleep=waits.append,
                    clock=lambda: sum(waits))
    b = Registry(store, leases=leases)
    first, _ = _task(1)
    assert store.acquire_lease(_name(first), "a", 60.0) is not None
    with pytest.raises(StoreError, match="still busy"):
        _turn(b, first)
    assert waits[0] == 0.02 and max(waits) == 0.25  # backs off


def _name(body: dict[str, Any]) -> str:
    return lease_name(("addr:1", thread_key(parse_chat_request(body)), "demo", "gab-1"))


# -- configuration ---------------------------------------------------------------------------------

def test_the_postgres_dsn_comes_only_from_the_variable_dsn_env_names(tmp_path: Path) -> None:
    dsn = "postgresql://roogab:s3cret-pw@db.internal/roogab"
    config = load_config(env={"ROOGAB_STORE": "postgres", "ROOGAB_DSN_ENV": "TEAM_DSN", "TEAM_DSN": dsn})
    assert (config.store, config.dsn) == ("postgres", dsn)
    assert "s3cret-pw" not in repr(config)
    with pytest.raises(ConfigError, match="dsn_env"):
        load_config(env={"ROOGAB_STORE": "postgres"})
    with pytest.raises(ConfigError, match="TEAM_DSN is not set"):
        load_config(env={"ROOGAB_STORE": "postgres", "ROOGAB_DSN_ENV": "TEAM_DSN"})
    toml = tmp_path / "c.toml"
    toml.write_text(f'store = "postgres"\ndsn = "{dsn}"\n')
    with pytest.raises(ConfigError, match="dsn"):
        load_config(toml, env={})

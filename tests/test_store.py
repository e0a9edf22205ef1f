"""The conversation store and turn log: one suite on real SQLite files, a real PostgreSQL server
and the in-memory twin; then what is particular to each."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from roogab.errors import ConfigError, RecordRefused, StoreError
from roogab.redact import Redactor
from roogab.store import ConversationRecord, Lease, Store, TurnRecord, open_store
from roogab.store_memory import MemoryStore
from roogab.store_sqlite import SCHEMA_VERSION, SqliteStore

COOKIE = "sess-9f8e7d6c5b4a"
PASSWORD = "hunter2-correct-horse"


def _conv(cid: str = "c1", *, updated: float = 100.0, transcript: tuple[str, ...] = ("a" * 32, "b" * 32),
          **kw: object) -> ConversationRecord:
    base = ConversationRecord(id=cid, client="addr:127.0.0.1", thread="t" * 32, provider="demo",
                              model="gab-1", handle="h-" + cid, transcript=transcript, created=50.0,
                              updated=updated, turns=len(transcript) // 2)
    return replace(base, **kw)  # type: ignore[arg-type]


def _turn(tid: str, cid: str = "c1", *, started_at: float = 1.0, **kw: object) -> TurnRecord:
    base = TurnRecord(id=tid, conversation_id=cid, provider="demo", model="gab-1", started_at=started_at,
                      duration_ms=1234, request_summary=json.dumps({"messages": 3}),
                      provider_prompt="Hello model", raw_reply="```lua\nreturn { text = [==[hi]==] }\n```",
                      verdict="ok", replayed=False, repairs=0,
                      usage=json.dumps({"prompt_tokens": 3, "completion_tokens": 1}),
                      response=json.dumps({"content": "hi"}), error=None)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each shared behaviour runs against every store (PostgreSQL: a fresh database each time)."""
    dsn = request.getfixturevalue("pg").database() if request.param == "postgres" else None
    s = open_store(request.param, tmp_path, max_turns=5, dsn=dsn)
    yield s
    s.close()


# -- behaviour shared by both stores -------------------------------------------------------------

def test_conversation_round_trip(store: Store) -> None:
    full = _conv("c1", last_request="r" * 32, last_reply=json.dumps({"content": "done"}))
    empty = _conv("c2", transcript=(), handle=None, updated=10.0)
    store.save_conversation(full)
    store.save_conversation(empty)
    assert store.load_conversations() == [full, empty]


def test_in_flight_mark_and_the_retry_columns(store: Store) -> None:
    store.save_conversation(_conv("c1", last_turn="t-answer"))
    store.mark_in_flight("c1", True)
    assert store.load_conversations() == [_conv("c1", last_turn="t-answer", in_flight=True)]
    assert store.find_conversations("addr:127.0.0.1", "t" * 32, "demo", "gab-1")[0].in_flight
    store.save_conversation(_conv("c1", last_turn="t-next"))  # a completed turn clears the mark
    assert store.get_conversation("c1") == _conv("c1", last_turn="t-next")
    store.mark_in_flight("no-such-id", True)  # nothing to mark: no error, nothing created
    assert [c.id for c in store.load_conversations()] == ["c1"]
    store.add_turn(_turn("t-retry", retry_of="t-answer"))
    assert store.turns()[0].retry_of == "t-answer"


def test_save_is_an_upsert(store: Store) -> None:
    store.save_conversation(_conv("c1"))
    newer = _conv("c1", transcript=("a" * 32, "b" * 32, "c" * 32, "d" * 32), updated=200.0,
                  last_request="x" * 32, last_reply="{}")
    store.save_conversation(newer)
    assert store.load_conversations() == [newer]


def test_conversations_newest_first(store: Store) -> None:
    for cid, updated in [("old", 1.0), ("new", 3.0), ("mid", 2.0)]:
        store.save_conversation(_conv(cid, updated=updated))
    assert [c.id for c in store.load_conversations()] == ["new", "mid", "old"]


def test_delete(store: Store) -> None:
    store.save_conversation(_conv("c1"))
    store.save_conversation(_conv("c2"))
    assert store.delete_conversation("c1") is True
    assert store.delete_conversation("c1") is False
    assert [c.id for c in store.load_conversations()] == ["c2"]


def test_expiry_removes_only_idle_conversations(store: Store) -> None:
    for cid, updated in [("a", 10.0), ("b", 20.0), ("c", 30.0)]:
        store.save_conversation(_conv(cid, updated=updated))
    assert store.expire_conversations(idle_before=25.0) == ["a", "b"]
    assert [c.id for c in store.load_conversations()] == ["c"]
    assert store.expire_conversations(idle_before=25.0) == []


def test_bad_digest_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.save_conversation(_conv(transcript=("a\nb",)))
    with pytest.raises(ValueError):
        store.save_conversation(_conv(transcript=("",)))


def test_turn_round_trip(store: Store) -> None:
    turn = _turn("t1", replayed=True, repairs=1, verdict="repaired", error="ReplyFormatError: no envelope")
    store.add_turn(turn)
    assert store.turns() == [turn]


def _stored(store: Store, text: str) -> str:
    """*text* as *store* keeps it: PostgreSQL TEXT cannot hold NUL, so it keeps U+FFFD instead."""
    return text.replace("\0", "\ufffd") if store.kind == "postgres" else text


def test_a_nul_in_a_turn_is_logged(store: Store) -> None:
    """A NUL (valid JSON "\\u0000") from an agent or a chat service must not cost its turn's record."""
    texts = {"provider_prompt": "say\0hi", "raw_reply": "raw\0reply", "response": "{\"content\": \"a\0b\"}",
             "error": "Error: \0", "request_summary": "{\"messages\": \"\0\"}", "verdict": "ok\0"}
    store.add_turn(_turn("t-nul", **texts))
    store.add_turn(_turn("t-after"))
    logged = store.turns()
    assert [t.id for t in logged] == ["t-after", "t-nul"]
    assert logged[1] == _turn("t-nul", **{k: _stored(store, v) for k, v in texts.items()})


def test_a_nul_in_a_conversation_is_saved(store: Store) -> None:
    texts = {"handle": "h\0", "last_request": "r\0", "last_reply": "{\"text\": \"a\0b\"}", "last_turn": "t\0"}
    store.save_conversation(_conv("c1", **texts))
    assert store.get_conversation("c1") == _conv("c1", **{k: _stored(store, v) for k, v in texts.items()})


def test_turns_newest_first_and_filtered(store: Store) -> None:
    for i in range(4):
        store.add_turn(_turn(f"t{i}", "c1" if i % 2 else "c2", started_at=float(i)))
    assert [t.id for t in store.turns()] == ["t3", "t2", "t1", "t0"]
    assert [t.id for t in store.turns(limit=2)] == ["t3", "t2"]
    assert [t.id for t in store.turns(conversation_id="c1")] == ["t3", "t1"]
    assert store.turns(limit=0) == []
    assert store.turns(conversation_id="nope") == []


def test_turn_log_keeps_only_the_newest(store: Store) -> None:
    for i in range(12):  # the fixture's bound is 5
        store.add_turn(_turn(f"t{i:02}"))
    assert [t.id for t in store.turns(limit=100)] == ["t11", "t10", "t09", "t08", "t07"]


def test_duplicate_turn_id_is_refused(store: Store) -> None:
    store.add_turn(_turn("t1"))
    with pytest.raises(RecordRefused):  # the record itself: writing it again fails again
        store.add_turn(_turn("t1"))
    assert len(store.turns()) == 1


def test_a_value_the_database_cannot_hold_is_a_refused_record(store: Store) -> None:
    """A lone surrogate (no encoder takes it) and, in SQLite, an integer past 64 bits: the record
    itself is refused, so the turn-log writer drops it and goes on instead of dying of it."""
    bad = [_turn("t-half", raw_reply="a \ud83d alone")]
    if store.kind == "sqlite":
        bad.append(_turn("t-big", duration_ms=2**70))
    for record in bad:
        if store.kind == "memory":  # keeps any Python value
            store.add_turn(record)
        else:
            with pytest.raises(RecordRefused, match="cannot hold"):
                store.add_turn(record)
    store.add_turn(_turn("t-next"))
    assert store.turns()[0].id == "t-next"


def test_concurrent_writers(store: Store) -> None:
    threads, per_thread = 8, 25

    def work(n: int) -> None:
        for i in range(per_thread):
            store.save_conversation(_conv(f"c{n}-{i}", updated=float(i)))
            store.add_turn(_turn(f"t{n}-{i}", f"c{n}-{i}"))
            store.load_conversations()
            store.turns()

    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(work, n) for n in range(threads)]:
            done.result()  # re-raises what a worker raised
    assert len(store.load_conversations()) == threads * per_thread
    assert len(store.turns(limit=1000)) == 5


def test_conversations_are_found_by_task_and_by_id(store: Store) -> None:
    store.save_conversation(_conv("a", updated=1.0))
    store.save_conversation(_conv("b", updated=3.0))
    store.save_conversation(_conv("other", thread="u" * 32))
    store.save_conversation(_conv("elsewhere", model="gab-2"))
    assert [c.id for c in store.find_conversations("addr:127.0.0.1", "t" * 32, "demo", "gab-1")] == ["b", "a"]
    assert store.find_conversations("addr:127.0.0.2", "t" * 32, "demo", "gab-1") == []
    assert store.get_conversation("other") == _conv("other", thread="u" * 32)
    assert store.get_conversation("nope") is None
    assert [c.id for c in store.load_conversations(limit=1)] == ["elsewhere"]  # 100.0 as "other"; by id
    assert store.load_conversations(limit=0) == []


def test_a_task_finds_only_what_it_still_holds(store: Store) -> None:
    """Deleted, expired and moved conversations leave their old task's lookup (the memory store
    keeps an index by task; the SQL stores query one)."""
    task = ("addr:127.0.0.1", "t" * 32, "demo", "gab-1")
    for cid, updated in (("gone", 5.0), ("old", 1.0), ("moved", 6.0), ("kept", 7.0)):
        store.save_conversation(_conv(cid, updated=updated))
    store.delete_conversation("gone")
    assert store.expire_conversations(idle_before=2.0) == ["old"]
    store.save_conversation(_conv("moved", updated=6.0, thread="u" * 32))
    store.save_conversation(_conv("kept", updated=8.0))  # saved again under the same task
    assert [c.id for c in store.find_conversations(*task)] == ["kept"]
    assert [c.id for c in store.find_conversations(task[0], "u" * 32, *task[2:])] == ["moved"]
    assert not store.delete_conversation("gone")
    store.delete_conversation("kept")
    assert store.find_conversations(*task) == []


def test_turn_log_is_bounded_by_bytes_too(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for kind in ("memory", "sqlite", "postgres"):
        dsn = request.getfixturevalue("pg").database() if kind == "postgres" else None
        s = open_store(kind, tmp_path / kind, max_turns=100, max_turn_log_bytes=10_000, dsn=dsn)
        try:
            for i in range(10):
                s.add_turn(_turn(f"t{i}", provider_prompt="x" * 3000))
            kept = [t.id for t in s.turns(limit=100)]
            assert kept == ["t9", "t8", "t7"], kind  # 3 x ~3.1 KB fit in 10 000 bytes, 4 do not
            s.add_turn(_turn("huge", provider_prompt="y" * 50_000))
            assert [t.id for t in s.turns(limit=100)] == ["huge"], kind  # the newest always stays
        finally:
            s.close()


def test_a_busy_lease_is_refused_until_released(store: Store) -> None:
    first = store.acquire_lease("task", "A", ttl=60)
    assert first is not None and first.previous_owner is None
    assert store.acquire_lease("task", "B", ttl=60) is None
    assert store.acquire_lease("task", "A", ttl=60) is None  # one turn at a time, even for its owner
    assert store.acquire_lease("other", "B", ttl=60) is not None
    store.release_lease("task", "B", ttl=60)  # not B's: nothing happens
    assert store.acquire_lease("task", "B", ttl=60) is None
    store.release_lease("task", "A", ttl=60)
    second = store.acquire_lease("task", "B", ttl=60)
    assert second is not None
    assert (second.previous_owner, second.previous_alive, second.interrupted) == ("A", True, False)


def test_an_expired_busy_lease_is_taken_over_as_interrupted(store: Store) -> None:
    assert store.acquire_lease("task", "A", ttl=0.001) is not None
    taken = _wait_for_lease(store, "task", "B")
    assert (taken.previous_owner, taken.previous_alive, taken.interrupted) == ("A", False, True)


def test_a_released_lease_of_a_gone_owner_is_not_alive(store: Store) -> None:
    assert store.acquire_lease("task", "A", ttl=60) is not None
    store.release_lease("task", "A", ttl=0.001)
    taken = _wait_for_lease(store, "task", "B", expired=True)
    assert (taken.previous_owner, taken.previous_alive, taken.interrupted) == ("A", False, False)


def test_the_heartbeat_keeps_leases_alive(store: Store) -> None:
    assert store.acquire_lease("t1", "A", ttl=0.001) is not None
    assert store.acquire_lease("t2", "A", ttl=0.001) is not None
    assert store.acquire_lease("t3", "B", ttl=60) is not None
    assert store.renew_leases("A", ttl=60) == 2
    assert store.acquire_lease("t1", "B", ttl=60) is None
    assert store.acquire_lease("t2", "B", ttl=60) is None


def test_expiry_removes_stale_leases(store: Store) -> None:
    assert store.acquire_lease("task", "A", ttl=0.001) is not None
    store.expire_conversations(idle_before=time.time() + 3600)
    fresh = store.acquire_lease("task", "B", ttl=60)
    assert fresh is not None and fresh.previous_owner is None


def test_ping_answers(store: Store) -> None:
    store.ping()


def _wait_for_lease(store: Store, name: str, owner: str, *, expired: bool = False) -> Lease:
    """Take *name* once its short ttl ran out (the store's clock decides, so poll it)."""
    for _ in range(2000):
        lease = store.acquire_lease(name, owner, ttl=60)
        if lease is not None and (not expired or not lease.previous_alive):
            return lease
        if lease is not None:
            store.release_lease(name, owner, ttl=60)
            store.acquire_lease(name, "A", ttl=0.001)
            store.release_lease(name, "A", ttl=0.001)
        time.sleep(0.001)
    raise AssertionError("the lease never expired")


def test_redactor_scrubs_every_text_field_of_a_turn(tmp_path: Path) -> None:
    redactor = Redactor([COOKIE, PASSWORD])
    s = SqliteStore(tmp_path / "db" / "roogab.sqlite3", redactor=redactor)
    leaky = _turn(
        "t1",
        request_summary=json.dumps({"headers": {"Cookie": f"session={COOKIE}"}, "note": PASSWORD}),
        provider_prompt=f"login with {PASSWORD} please\nCookie: theme=dark; session={COOKIE}",
        raw_reply=f"I saw {COOKIE}",
        response=json.dumps({"content": f"pw was {PASSWORD}"}),
        error=f"login failed for password={PASSWORD}",
    )
    s.add_turn(leaky)
    (got,) = s.turns()
    s.close()
    for text in (got.request_summary, got.provider_prompt, got.raw_reply, got.response, got.error or ""):
        assert COOKIE not in text and PASSWORD not in text
        assert "[redacted]" in text
    json.loads(got.request_summary)
    json.loads(got.response)
    assert "login with [redacted] please" in got.provider_prompt
    # Nothing of either secret reached the file (WAL included).
    for f in (tmp_path / "db").iterdir():
        data = f.read_bytes()
        assert COOKIE.encode() not in data and PASSWORD.encode() not in data


def test_memory_store_redacts_too() -> None:
    s = MemoryStore(redactor=Redactor([PASSWORD]))
    s.add_turn(_turn("t1", provider_prompt=f"pw: {PASSWORD}"))
    assert s.turns()[0].provider_prompt == "pw: [redacted]"


# -- SQLite specifics ----------------------------------------------------------------------------

def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_fresh_database_is_migrated_to_latest_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "roogab.sqlite3"  # parents are created
    SqliteStore(path).close()
    assert _user_version(path) == SCHEMA_VERSION == 6
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()
    assert {"conversations", "turns"} <= tables
    assert {"conversations_updated", "turns_conversation", "turns_bytes"} <= indexes


def test_v1_database_with_data_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "roogab.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY, client TEXT NOT NULL, thread TEXT NOT NULL, provider TEXT NOT NULL,
            model TEXT NOT NULL, handle TEXT, transcript TEXT NOT NULL, created REAL NOT NULL,
            updated REAL NOT NULL, turns INTEGER NOT NULL);
        CREATE INDEX conversations_updated ON conversations (updated);
        INSERT INTO conversations VALUES ('old', 'addr:1', 'th', 'demo', 'gab-1', 'h9', 'd1
d2
d3', 1.5, 2.5, 1);
        PRAGMA user_version = 1;
    """)
    db.close()
    s = SqliteStore(path)
    try:
        assert s.load_conversations() == [
            ConversationRecord(id="old", client="addr:1", thread="th", provider="demo", model="gab-1",
                               handle="h9", transcript=("d1", "d2", "d3"), created=1.5, updated=2.5,
                               turns=1, last_request=None, last_reply=None)]
        s.add_turn(_turn("t1", "old"))  # v2's table exists
        s.save_conversation(_conv("old", last_request="q", last_reply="{}"))  # v3's columns exist
        assert s.load_conversations()[0].last_reply == "{}"
        s.mark_in_flight("old", True)  # v5's columns exist
        assert s.load_conversations()[0].in_flight
    finally:
        s.close()
    assert _user_version(path) == SCHEMA_VERSION


def test_v4_database_with_data_is_migrated_to_v5(tmp_path: Path) -> None:
    from roogab.store_sqlite import _MIGRATIONS
    path = tmp_path / "roogab.sqlite3"
    db = sqlite3.connect(path)
    for statement in (st for migration in _MIGRATIONS[:4] for st in migration):  # what v4 wrote
        db.execute(statement)
    db.execute("INSERT INTO conversations (id, client, thread, provider, model, handle, transcript, created, "
               "updated, turns, last_request, last_reply) VALUES ('v4', 'addr:1', 'th', 'demo', 'gab-1', "
               "'h4', 'd1', 1.0, 2.0, 1, 'q', '{}')")
    db.execute("INSERT INTO turns (id, conversation_id, provider, model, started_at, duration_ms, "
               "request_summary, provider_prompt, raw_reply, verdict, replayed, repairs, usage, response, "
               "error, bytes) VALUES ('t4', 'v4', 'demo', 'gab-1', 1.0, 5, '{}', 'p', 'r', 'ok', 0, 0, "
               "'null', '{}', NULL, 10)")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    s = SqliteStore(path)
    try:
        rec = s.load_conversations()[0]
        assert (rec.id, rec.last_reply, rec.last_turn, rec.in_flight) == ("v4", "{}", None, False)
        assert s.turns()[0].retry_of is None
        s.mark_in_flight("v4", True)
        assert s.get_conversation("v4") == replace(rec, in_flight=True)
    finally:
        s.close()
    assert _user_version(path) == SCHEMA_VERSION == 6


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "roogab.sqlite3"
    s = SqliteStore(path)
    s.save_conversation(_conv("c1"))
    s.add_turn(_turn("t1"))
    s.close()
    s = SqliteStore(path)
    try:
        assert s.load_conversations() == [_conv("c1")]
        assert [t.id for t in s.turns()] == ["t1"]
    finally:
        s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roogab.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this RooGab"):
        SqliteStore(path)
    assert _user_version(path) == SCHEMA_VERSION + 1  # untouched


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "roogab.sqlite3"
    db = sqlite3.connect(path)
    # A v1 database that already has a column v3 would add: the v3 migration fails half way.
    db.executescript("""
        CREATE TABLE conversations (id TEXT PRIMARY KEY, client TEXT, thread TEXT, provider TEXT,
            model TEXT, handle TEXT, transcript TEXT, created REAL, updated REAL, turns INTEGER,
            last_reply TEXT);
        PRAGMA user_version = 1;
    """)
    db.close()
    with pytest.raises(StoreError, match="cannot migrate"):
        SqliteStore(path)
    assert _user_version(path) == 2  # v2 committed, v3 rolled back as a whole
    db = sqlite3.connect(path)
    try:
        columns = [r[1] for r in db.execute("PRAGMA table_info(conversations)")]
    finally:
        db.close()
    assert "last_request" not in columns


def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "roogab.sqlite3"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "roogab.sqlite3")
    s.close()
    s.close()
    with pytest.raises(StoreError):
        s.load_conversations()


def test_two_stores_on_one_file(tmp_path: Path) -> None:
    """The CLI reads the database while the server writes it."""
    path = tmp_path / "roogab.sqlite3"
    writer, reader = SqliteStore(path), SqliteStore(path)
    try:
        writer.save_conversation(_conv("c1"))
        assert [c.id for c in reader.load_conversations()] == ["c1"]
    finally:
        writer.close()
        reader.close()


def test_open_store(tmp_path: Path) -> None:
    s = open_store("sqlite", tmp_path / "data")
    s.close()
    assert (tmp_path / "data" / "roogab.sqlite3").exists()
    assert isinstance(open_store("memory", None), MemoryStore)
    with pytest.raises(ConfigError):
        open_store("sqlite", None)
    with pytest.raises(ConfigError):
        open_store("redis", tmp_path)


def test_limits_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MemoryStore(max_turns=0)
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "x.sqlite3", max_turns=0)
    with pytest.raises(ValueError):
        MemoryStore().turns(limit=-1)


# -- PostgreSQL specifics ------------------------------------------------------------------------

def _pg_version(dsn: str) -> int:
    import psycopg
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT version FROM roogab_schema").fetchone()
    assert row is not None
    return int(row[0])


def test_postgres_fresh_database_is_migrated_to_latest(pg: object) -> None:
    from roogab.store_postgres import SCHEMA_VERSION as PG_VERSION
    from roogab.store_postgres import PostgresStore
    dsn = pg.database()  # type: ignore[attr-defined]
    PostgresStore(dsn).close()
    PostgresStore(dsn).close()  # a second start migrates nothing
    assert _pg_version(dsn) == PG_VERSION == 2


def test_postgres_v1_database_with_data_is_migrated(pg: object) -> None:
    import psycopg

    from roogab.store_postgres import _MIGRATIONS, PostgresStore
    dsn = pg.database()  # type: ignore[attr-defined]
    with psycopg.connect(dsn) as conn:  # what v1 wrote
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)  # type: ignore[call-overload]  # the module's own constant SQL
        conn.execute("CREATE TABLE roogab_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO roogab_schema (version) VALUES (1)")
        conn.execute("INSERT INTO conversations (id, client, thread, provider, model, handle, transcript, "
                     "created, updated, turns, last_request, last_reply) VALUES ('v1', 'addr:1', 'th', 'demo', "
                     "'gab-1', 'h1', 'd1', 1.0, 2.0, 1, 'q', '{}')")
    s = PostgresStore(dsn)
    try:
        rec = s.load_conversations()[0]
        assert (rec.id, rec.last_reply, rec.last_turn, rec.in_flight) == ("v1", "{}", None, False)
        s.mark_in_flight("v1", True)
        assert s.get_conversation("v1") == replace(rec, in_flight=True)
        s.add_turn(_turn("t1", "v1", retry_of="t0"))
        assert s.turns()[0].retry_of == "t0"
    finally:
        s.close()
    assert _pg_version(dsn) == 2


def test_postgres_newer_schema_is_refused(pg: object) -> None:
    import psycopg

    from roogab.store_postgres import PostgresStore
    dsn = pg.database()  # type: ignore[attr-defined]
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE roogab_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO roogab_schema (version) VALUES (99)")
    with pytest.raises(StoreError, match="newer than this"):
        PostgresStore(dsn)
    assert _pg_version(dsn) == 99


def test_postgres_refuses_a_value_it_cannot_hold_as_a_refused_record(pg: object) -> None:
    from roogab.store_postgres import PostgresStore
    s = PostgresStore(pg.database())  # type: ignore[attr-defined]
    try:
        with pytest.raises(RecordRefused, match="out of range"):
            s.add_turn(_turn("t-long", duration_ms=2**31))  # INTEGER: a data error, not a failure
        s.add_turn(_turn("t-next"))
        assert [t.id for t in s.turns()] == ["t-next"]
    finally:
        s.close()


def test_a_store_that_fails_does_not_refuse_the_record(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A closed or unreachable database is a failure to retry later, not a record to drop."""
    for kind in ("sqlite", "postgres"):
        dsn = request.getfixturevalue("pg").database() if kind == "postgres" else None
        s = open_store(kind, tmp_path / kind, dsn=dsn)
        s.close()
        with pytest.raises(StoreError) as failed:
            s.add_turn(_turn("t1"))
        assert not isinstance(failed.value, RecordRefused), kind

"""Where conversations and the turn log live: in memory, or in one SQLite file.

The registry keeps its working state in memory and writes through a :class:`Store`, so that
conversations survive a restart of RooGab and the inspector can read the turn log. This module is
the only one that imports :mod:`sqlite3`; every ``sqlite3.Error`` becomes a :class:`StoreError` here.

SQLite schema (the version is ``PRAGMA user_version``; each migration runs in one transaction)::

    v1  conversations(id PK, client, thread, provider, model, handle, transcript, created,
                      updated, turns)                       transcript: digests joined by "\\n"
    v2  turns(seq INTEGER PK, id UNIQUE, conversation_id, provider, model, started_at,
              duration_ms, request_summary, provider_prompt, raw_reply, verdict, replayed,
              repairs, usage, response, error)  + index (conversation_id, seq)
    v3  conversations + last_request, last_reply            answer a retried turn from the store
    v4  conversations + last_turn, in_flight; turns + retry_of, size
                                         the turn a retry is answered from; a turn mid-reply;
                                         the turn log's retention by bytes

The turn log is ordered by ``seq``, the order turns were logged in; after each ``add_turn`` only
the newest ``max_turns`` are kept, and only as many of those as fit in ``max_turn_log_bytes``
(the newest turn always stays). Turns are not deleted with their conversation: the log of a
failed turn is most useful after the registry dropped its conversation.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError, StoreError
from .redact import Redactor

__all__ = [
    "SCHEMA_VERSION",
    "ConversationRecord",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "TurnRecord",
    "open_store",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversationRecord:
    """A provider conversation as stored: the digests of every message the provider has seen.

    ``last_request`` is a digest of the last completed request and ``last_reply`` the JSON of
    what the agent got for it, so a retry of a completed turn can be answered from the store.
    """

    id: str
    client: str
    thread: str
    provider: str
    model: str
    handle: str | None
    transcript: tuple[str, ...]
    created: float
    updated: float
    turns: int
    last_request: str | None = None
    last_reply: str | None = None
    last_turn: str | None = None
    in_flight: bool = False


@dataclass(frozen=True)
class TurnRecord:
    """One turn in the turn log: what was sent, what came back, what the agent got."""

    id: str
    conversation_id: str
    provider: str
    model: str
    started_at: float
    duration_ms: int
    request_summary: str  # JSON
    provider_prompt: str
    raw_reply: str
    verdict: str
    replayed: bool
    repairs: int
    usage: str  # JSON
    response: str  # JSON: what the agent got
    error: str | None
    retry_of: str | None = None  # a retry answered from the record: the turn it repeats

    @property
    def size(self) -> int:
        """About how many bytes the turn takes in the log (its text fields, in characters)."""
        return sum(len(v) for v in (self.request_summary, self.provider_prompt, self.raw_reply,
                                    self.usage, self.response, self.error or ""))

    @property
    def protocol(self) -> str:
        """The wire protocol the turn came in on (kept in the request summary: no new column)."""
        try:
            summary = json.loads(self.request_summary)
        except ValueError:
            return "chat"
        return str(summary.get("protocol", "chat")) if isinstance(summary, dict) else "chat"


class Store(Protocol):
    """Persistence for the registry and the turn log; every method is safe to call from any thread."""

    def load_conversations(self) -> list[ConversationRecord]:
        """Every stored conversation, most recently updated first."""
        ...

    def save_conversation(self, rec: ConversationRecord) -> None:
        """Insert *rec*, or replace the stored conversation with the same id."""
        ...

    def mark_in_flight(self, conversation_id: str, in_flight: bool) -> None:
        """Set the stored conversation's in-flight mark (nothing if there is none with that id):
        set before a turn reaches the provider, cleared by the ``save_conversation`` after it."""
        ...

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove a conversation; False when there was none with that id."""
        ...

    def expire_conversations(self, idle_before: float) -> list[str]:
        """Remove conversations last updated before *idle_before*; return their ids."""
        ...

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* to the turn log (secrets redacted), then trim the log to its bound."""
        ...

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        ...

    def close(self) -> None:
        """Release the store; further calls fail."""
        ...


DEFAULT_MAX_TURN_LOG_BYTES = 64 * 1024 * 1024
BUSY_TIMEOUT_SECONDS = 2.0  # a write waits this long for a lock another process holds


def open_store(kind: str, data_dir: Path | None, *, max_turns: int = 2000,
               redactor: Redactor | None = None, max_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES) -> Store:
    """The store named by *kind*: ``"memory"``, or ``"sqlite"`` (``roogab.sqlite3`` in *data_dir*).

    Raises:
        ConfigError: *kind* is unknown, or ``"sqlite"`` without a data directory.
        StoreError: the database cannot be opened or migrated.
    """
    if kind == "memory":
        return MemoryStore(max_turns=max_turns, redactor=redactor, max_bytes=max_bytes)
    if kind == "sqlite":
        if data_dir is None:
            raise ConfigError("store", "the sqlite store needs a data directory")
        return SqliteStore(data_dir / "roogab.sqlite3", max_turns=max_turns, redactor=redactor,
                           max_bytes=max_bytes)
    raise ConfigError("store", f"unknown store {kind!r} (expected 'memory' or 'sqlite')")


def _redacted(rec: TurnRecord, redactor: Redactor | None) -> TurnRecord:
    """*rec* with its free-text fields redacted."""
    if redactor is None:
        return rec
    r = redactor.redact
    return replace(rec, request_summary=r(rec.request_summary), provider_prompt=r(rec.provider_prompt),
                   raw_reply=r(rec.raw_reply), response=r(rec.response),
                   error=None if rec.error is None else r(rec.error))


def _check_max_turns(max_turns: int) -> None:
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, not {max_turns}")


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")


class MemoryStore:
    """A :class:`Store` in memory, for tests and ``--store memory``; forgets everything on exit."""

    def __init__(self, *, max_turns: int = 2000, redactor: Redactor | None = None,
                 max_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES) -> None:
        _check_max_turns(max_turns)
        self._redactor = redactor
        self._lock = threading.Lock()
        self._conversations: dict[str, ConversationRecord] = {}
        self._turns: deque[TurnRecord] = deque(maxlen=max_turns)
        self._turn_ids: set[str] = set()
        self._max_bytes = max_bytes
        self._bytes = 0

    def load_conversations(self) -> list[ConversationRecord]:
        """Every stored conversation, most recently updated first."""
        with self._lock:
            return sorted(self._conversations.values(), key=lambda c: (-c.updated, c.id))

    def save_conversation(self, rec: ConversationRecord) -> None:
        """Insert *rec*, or replace the stored conversation with the same id."""
        _check_transcript(rec.transcript)
        with self._lock:
            self._conversations[rec.id] = rec

    def mark_in_flight(self, conversation_id: str, in_flight: bool) -> None:
        """Set the stored conversation's in-flight mark (nothing if there is none with that id)."""
        with self._lock:
            rec = self._conversations.get(conversation_id)
            if rec is not None:
                self._conversations[conversation_id] = replace(rec, in_flight=in_flight)

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove a conversation; False when there was none with that id."""
        with self._lock:
            return self._conversations.pop(conversation_id, None) is not None

    def expire_conversations(self, idle_before: float) -> list[str]:
        """Remove conversations last updated before *idle_before*; return their ids."""
        with self._lock:
            gone = sorted(c.id for c in self._conversations.values() if c.updated < idle_before)
            for cid in gone:
                del self._conversations[cid]
        return gone

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* to the turn log (secrets redacted), dropping the oldest beyond the bound.

        Raises:
            StoreError: a turn with the same id is already logged.
        """
        rec = _redacted(rec, self._redactor)
        with self._lock:
            if rec.id in self._turn_ids:
                raise StoreError(f"store: turn {rec.id} is already logged")
            if len(self._turns) == self._turns.maxlen:
                self._drop_oldest()
            self._turns.append(rec)
            self._turn_ids.add(rec.id)
            self._bytes += rec.size
            while self._bytes > self._max_bytes and len(self._turns) > 1:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        old = self._turns.popleft()
        self._turn_ids.discard(old.id)
        self._bytes -= old.size

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        _check_limit(limit)
        with self._lock:
            newest_first = reversed(self._turns)
            picked = [t for t in newest_first if conversation_id in (None, t.conversation_id)]
        return picked[:limit]

    def close(self) -> None:
        """Nothing to release."""


# Each migration is a list of statements run in one transaction with the new user_version.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1: conversations
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            client TEXT NOT NULL,
            thread TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            handle TEXT,
            transcript TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            turns INTEGER NOT NULL
        )""",
        "CREATE INDEX conversations_updated ON conversations (updated)",
    ),
    (  # v2: the turn log
        """CREATE TABLE turns (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            started_at REAL NOT NULL,
            duration_ms INTEGER NOT NULL,
            request_summary TEXT NOT NULL,
            provider_prompt TEXT NOT NULL,
            raw_reply TEXT NOT NULL,
            verdict TEXT NOT NULL,
            replayed INTEGER NOT NULL,
            repairs INTEGER NOT NULL,
            usage TEXT NOT NULL,
            response TEXT NOT NULL,
            error TEXT
        )""",
        "CREATE INDEX turns_conversation ON turns (conversation_id, seq)",
    ),
    (  # v3: answer a retry of a completed turn from the store
        "ALTER TABLE conversations ADD COLUMN last_request TEXT",
        "ALTER TABLE conversations ADD COLUMN last_reply TEXT",
    ),
    (  # v4: the turn a retry repeats; a turn mid-reply; the turn log's size
        "ALTER TABLE conversations ADD COLUMN last_turn TEXT",
        "ALTER TABLE conversations ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE turns ADD COLUMN retry_of TEXT",
        "ALTER TABLE turns ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
    ),
)

#: The schema version this code writes; databases at a higher version are refused.
SCHEMA_VERSION = len(_MIGRATIONS)

_CONVERSATION_COLUMNS = tuple(f.name for f in fields(ConversationRecord))
_TURN_COLUMNS = tuple(f.name for f in fields(TurnRecord))


def _check_transcript(transcript: Sequence[str]) -> None:
    """Digests are stored joined by newlines: an empty one or one holding a newline would corrupt it."""
    if any(not d or "\n" in d for d in transcript):
        raise ValueError("transcript digests must be non-empty and contain no newline")


def _conversation_row(rec: ConversationRecord) -> tuple[object, ...]:
    return tuple("\n".join(rec.transcript) if c == "transcript" else getattr(rec, c)
                 for c in _CONVERSATION_COLUMNS)


def _conversation_from_row(row: tuple[Any, ...]) -> ConversationRecord:
    values = dict(zip(_CONVERSATION_COLUMNS, row))
    text = values["transcript"]
    values["transcript"] = tuple(text.split("\n")) if text else ()
    values["in_flight"] = bool(values["in_flight"])
    return ConversationRecord(**values)


def _turn_from_row(row: tuple[Any, ...]) -> TurnRecord:
    values = dict(zip(_TURN_COLUMNS, row))
    values["replayed"] = bool(values["replayed"])
    return TurnRecord(**values)


def _private_file(path: Path) -> None:
    """Create *path*'s directory (0700) and the file itself (0600) when they do not exist yet, so
    that no other user can read the conversations; an existing file is made 0600 too.

    Raises:
        StoreError: the directory or the file cannot be created (a file in the way, no permission).
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
    except OSError as exc:
        where = exc.filename or path
        raise StoreError(f"store: cannot create {where}: {exc.strerror or exc}") from exc


@contextmanager
def _sqlite_errors(what: str) -> Iterator[None]:
    """Translate :mod:`sqlite3` errors into :class:`StoreError`; the one place that names them."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"store: {what}: {exc}") from exc


class SqliteStore:
    """A :class:`Store` in one SQLite file (WAL mode), shared by all request threads.

    One connection serves every thread, one statement group at a time behind a lock; the
    connection runs in autocommit mode and writes open their own ``BEGIN IMMEDIATE`` transaction.

    Raises:
        StoreError: the file cannot be opened, is not a database, or was written by a newer RooGab.
    """

    def __init__(self, path: Path, *, max_turns: int = 2000, redactor: Redactor | None = None,
                 max_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        _check_max_turns(max_turns)
        self.path = path
        self._max_turns = max_turns
        self._max_bytes = max_bytes
        self._redactor = redactor
        self._lock = threading.Lock()
        _private_file(path)
        with _sqlite_errors(f"cannot open {path}"):
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            self._prepare()
        except StoreError:
            self._db.close()
            raise

    def _prepare(self) -> None:
        with _sqlite_errors(f"cannot open {self.path}"):
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                logger.warning("store %s: journal mode is %s, not wal", self.path, mode)
            self._db.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, much faster
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``, one transaction per migration."""
        while True:
            with self._lock, _sqlite_errors(f"cannot migrate {self.path}"), self._transaction():
                # Read inside the write transaction: another process may be migrating too.
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"store: {self.path} has schema version {version}, newer than this RooGab "
                        f"understands ({SCHEMA_VERSION}); upgrade RooGab or use another data directory")
                if version == SCHEMA_VERSION:
                    return
                for statement in _MIGRATIONS[version]:
                    self._db.execute(statement)
                # PRAGMA takes no parameters; the value is an int from our own table.
                self._db.execute(f"PRAGMA user_version = {version + 1}")
            logger.debug("store %s: migrated to schema version %d", self.path, version + 1)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back when the block raises."""
        self._db.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            yield
            self._db.execute("COMMIT")
            committed = True
        finally:
            if not committed and self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def load_conversations(self) -> list[ConversationRecord]:
        """Every stored conversation, most recently updated first."""
        sql = f"SELECT {', '.join(_CONVERSATION_COLUMNS)} FROM conversations ORDER BY updated DESC, id"
        with self._lock, _sqlite_errors("cannot load conversations"):
            rows = self._db.execute(sql).fetchall()
        return [_conversation_from_row(row) for row in rows]

    def save_conversation(self, rec: ConversationRecord) -> None:
        """Insert *rec*, or replace the stored conversation with the same id."""
        _check_transcript(rec.transcript)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _CONVERSATION_COLUMNS[1:])
        sql = (f"INSERT INTO conversations ({', '.join(_CONVERSATION_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(_CONVERSATION_COLUMNS))}) "
               f"ON CONFLICT (id) DO UPDATE SET {updates}")
        with self._lock, _sqlite_errors(f"cannot save conversation {rec.id}"):
            self._db.execute(sql, _conversation_row(rec))

    def mark_in_flight(self, conversation_id: str, in_flight: bool) -> None:
        """Set the stored conversation's in-flight mark (nothing if there is none with that id)."""
        with self._lock, _sqlite_errors(f"cannot mark conversation {conversation_id}"):
            self._db.execute("UPDATE conversations SET in_flight = ? WHERE id = ?",
                             (int(in_flight), conversation_id))

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove a conversation; False when there was none with that id."""
        with self._lock, _sqlite_errors(f"cannot delete conversation {conversation_id}"):
            return self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    def expire_conversations(self, idle_before: float) -> list[str]:
        """Remove conversations last updated before *idle_before*; return their ids."""
        with self._lock, _sqlite_errors("cannot expire conversations"), self._transaction():
            rows = self._db.execute("SELECT id FROM conversations WHERE updated < ? ORDER BY id",
                                    (idle_before,)).fetchall()
            self._db.execute("DELETE FROM conversations WHERE updated < ?", (idle_before,))
        return [row[0] for row in rows]

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* to the turn log (secrets redacted), then keep only the newest ``max_turns``.

        Raises:
            StoreError: a turn with the same id is already logged, or the write failed.
        """
        rec = _redacted(rec, self._redactor)
        columns = (*_TURN_COLUMNS, "size")
        sql = f"INSERT INTO turns ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with self._lock, _sqlite_errors(f"cannot log turn {rec.id}"), self._transaction():
            self._db.execute(sql, (*(getattr(rec, c) for c in _TURN_COLUMNS), rec.size))
            # The (max_turns+1)-th newest row and everything older go; a walk of the seq index.
            self._db.execute("DELETE FROM turns WHERE seq <= "
                             "(SELECT seq FROM turns ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                             (self._max_turns,))
            # Then the newest turns that fit in max_bytes stay (the newest one always does).
            self._db.execute("DELETE FROM turns WHERE seq <= (SELECT seq FROM (SELECT seq, SUM(size) "
                             "OVER (ORDER BY seq DESC) AS total FROM turns) WHERE total > ? AND seq < ? "
                             "ORDER BY seq DESC LIMIT 1)", (self._max_bytes, self._newest()))

    def _newest(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM turns").fetchone()
        return int(row[0] or 0)

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        _check_limit(limit)
        columns = ", ".join(_TURN_COLUMNS)
        with self._lock, _sqlite_errors("cannot read the turn log"):
            if conversation_id is None:
                rows = self._db.execute(f"SELECT {columns} FROM turns ORDER BY seq DESC LIMIT ?",
                                        (limit,)).fetchall()
            else:
                rows = self._db.execute(f"SELECT {columns} FROM turns WHERE conversation_id = ? "
                                        "ORDER BY seq DESC LIMIT ?", (conversation_id, limit)).fetchall()
        return [_turn_from_row(row) for row in rows]

    def close(self) -> None:
        """Close the database; later calls raise :class:`StoreError`. Closing twice is harmless."""
        with self._lock, _sqlite_errors(f"cannot close {self.path}"):
            self._db.close()

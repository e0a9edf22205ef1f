"""The :class:`~roogab.store.Store` in one SQLite file; the only module that imports :mod:`sqlite3`.

Every ``sqlite3.Error`` becomes a :class:`StoreError` here; a ``DataError`` or ``IntegrityError``
(the record itself was refused) a :class:`RecordRefused`.

Schema (the version is ``PRAGMA user_version``; each migration runs in one transaction)::

    v1  conversations(id PK, client, thread, provider, model, handle, transcript, created,
                      updated, turns)                       transcript: digests joined by "\\n"
    v2  turns(seq INTEGER PK, id UNIQUE, conversation_id, provider, model, started_at,
              duration_ms, request_summary, provider_prompt, raw_reply, verdict, replayed,
              repairs, usage, response, error)  + index (conversation_id, seq)
    v3  conversations + last_request, last_reply            answer a retried turn from the store
    v4  index conversations (client, thread, provider, model); turns + bytes;
        leases(name PK, owner, expires, busy)                one turn at a time across processes
    v5  conversations + last_turn, in_flight; turns + retry_of
                                         the turn a retry is answered from; a turn mid-reply

The file is created 0600 in a 0700 directory: no other user reads the conversations.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RecordRefused, StoreError
from .redact import Redactor
from .store import (
    CONVERSATION_COLUMNS,
    DEFAULT_MAX_TURN_LOG_BYTES,
    TURN_COLUMNS,
    ConversationRecord,
    Lease,
    StoreLimits,
    TurnRecord,
    check_limit,
    check_transcript,
    conversation_from_row,
    conversation_row,
    redacted,
    turn_bytes,
    turn_from_row,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

logger = logging.getLogger(__name__)

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
    (  # v4: look conversations up by task; bound the turn log by bytes; leases
        "CREATE INDEX conversations_task ON conversations (client, thread, provider, model)",
        "ALTER TABLE turns ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires REAL NOT NULL,
            busy INTEGER NOT NULL
        )""",
    ),
    (  # v5: the turn a retry repeats; a turn mid-reply
        "ALTER TABLE conversations ADD COLUMN last_turn TEXT",
        "ALTER TABLE conversations ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE turns ADD COLUMN retry_of TEXT",
    ),
    (  # v6: the byte bound of the turn log sums an index, not the rows (each holds ~60 KB of
        # text in overflow pages: the sum read them all at every insert, ~40 us a row)
        "CREATE INDEX turns_bytes ON turns (seq, bytes)",
    ),
)

#: The schema version this code writes; databases at a higher version are refused.
SCHEMA_VERSION = len(_MIGRATIONS)

_CONV_SELECT = f"SELECT {', '.join(CONVERSATION_COLUMNS)} FROM conversations"
BUSY_TIMEOUT_SECONDS = 2.0  # a write waits this long for a lock another process holds


@contextmanager
def _sqlite_errors(what: str) -> Iterator[None]:
    """Translate :mod:`sqlite3` errors into :class:`StoreError`; the one place that names them."""
    try:
        yield
    except (sqlite3.DataError, sqlite3.IntegrityError) as exc:
        raise RecordRefused(f"store: {what}: {exc}") from exc
    except (UnicodeEncodeError, OverflowError) as exc:  # a lone surrogate; an integer past 64 bits
        raise RecordRefused(f"store: {what}: a value SQLite cannot hold ({type(exc).__name__})") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"store: {what}: {exc}") from exc


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


class SqliteStore:
    """A :class:`~roogab.store.Store` in one SQLite file (WAL mode), shared by all request threads.

    One connection serves every thread, one statement group at a time behind a lock; the
    connection runs in autocommit mode and writes open their own ``BEGIN IMMEDIATE`` transaction.

    Raises:
        StoreError: the file cannot be opened, is not a database, or was written by a newer RooGab.
    """

    kind = "sqlite"

    def __init__(self, path: Path, *, max_turns: int = 2000,
                 max_turn_log_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES, redactor: Redactor | None = None,
                 clock: Callable[[], float] = time.time, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        self._limits = StoreLimits(max_turns, max_turn_log_bytes)
        self.path = path
        self._redactor = redactor
        self._clock = clock
        self._lock = threading.Lock()
        _private_file(path)
        with _sqlite_errors(f"cannot open {path}"):
            self._db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
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

    def load_conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        """Stored conversations, most recently updated first."""
        check_limit(limit)
        sql = f"{_CONV_SELECT} ORDER BY updated DESC, id LIMIT ?"
        with self._lock, _sqlite_errors("cannot load conversations"):
            rows = self._db.execute(sql, (-1 if limit is None else limit,)).fetchall()
        return [conversation_from_row(row) for row in rows]

    def find_conversations(self, client: str, thread: str, provider: str,
                           model: str) -> list[ConversationRecord]:
        """The conversations of one task, most recently updated first."""
        sql = (f"{_CONV_SELECT} WHERE client = ? AND thread = ? AND provider = ? AND model = ? "
               "ORDER BY updated DESC, id")
        with self._lock, _sqlite_errors("cannot look up conversations"):
            rows = self._db.execute(sql, (client, thread, provider, model)).fetchall()
        return [conversation_from_row(row) for row in rows]

    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """One conversation, or None."""
        with self._lock, _sqlite_errors(f"cannot read conversation {conversation_id}"):
            row = self._db.execute(f"{_CONV_SELECT} WHERE id = ?", (conversation_id,)).fetchone()
        return None if row is None else conversation_from_row(row)

    def save_conversation(self, rec: ConversationRecord) -> None:
        """Insert *rec*, or replace the stored conversation with the same id."""
        check_transcript(rec.transcript)
        updates = ", ".join(f"{c} = excluded.{c}" for c in CONVERSATION_COLUMNS[1:])
        sql = (f"INSERT INTO conversations ({', '.join(CONVERSATION_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(CONVERSATION_COLUMNS))}) "
               f"ON CONFLICT (id) DO UPDATE SET {updates}")
        with self._lock, _sqlite_errors(f"cannot save conversation {rec.id}"):
            self._db.execute(sql, conversation_row(rec))

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
        """Remove conversations last updated (and leases last renewed) before *idle_before*."""
        with self._lock, _sqlite_errors("cannot expire conversations"), self._transaction():
            rows = self._db.execute("SELECT id FROM conversations WHERE updated < ? ORDER BY id",
                                    (idle_before,)).fetchall()
            self._db.execute("DELETE FROM conversations WHERE updated < ?", (idle_before,))
            self._db.execute("DELETE FROM leases WHERE expires < ?", (idle_before,))
        return [row[0] for row in rows]

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* to the turn log (secrets redacted), then trim it to its bounds.

        Raises:
            RecordRefused: a turn with the same id is already logged.
            StoreError: the write failed.
        """
        rec = redacted(rec, self._redactor)
        columns = TURN_COLUMNS + ("bytes",)
        sql = f"INSERT INTO turns ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        row = tuple(getattr(rec, c) for c in TURN_COLUMNS) + (turn_bytes(rec),)
        with self._lock, _sqlite_errors(f"cannot log turn {rec.id}"), self._transaction():
            self._db.execute(sql, row)
            # The (max_turns+1)-th newest row and everything older go; a walk of the seq index.
            self._db.execute("DELETE FROM turns WHERE seq <= "
                             "(SELECT seq FROM turns ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                             (self._limits.max_turns,))
            # Then the oldest rows beyond the byte bound (the newest turn always stays).
            self._db.execute(
                "DELETE FROM turns WHERE seq <= (SELECT seq FROM (SELECT seq, SUM(bytes) OVER "
                "(ORDER BY seq DESC) AS held FROM turns) WHERE held > ? ORDER BY seq DESC LIMIT 1) "
                "AND seq < (SELECT MAX(seq) FROM turns)", (self._limits.max_turn_log_bytes,))

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        check_limit(limit)
        columns = ", ".join(TURN_COLUMNS)
        with self._lock, _sqlite_errors("cannot read the turn log"):
            if conversation_id is None:
                rows = self._db.execute(f"SELECT {columns} FROM turns ORDER BY seq DESC LIMIT ?",
                                        (limit,)).fetchall()
            else:
                rows = self._db.execute(f"SELECT {columns} FROM turns WHERE conversation_id = ? "
                                        "ORDER BY seq DESC LIMIT ?", (conversation_id, limit)).fetchall()
        return [turn_from_row(row) for row in rows]

    def acquire_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        """Take lease *name*; None while an unexpired turn holds it."""
        now = self._clock()
        with self._lock, _sqlite_errors(f"cannot take lease {name}"), self._transaction():
            row = self._db.execute("SELECT owner, expires, busy FROM leases WHERE name = ?",
                                   (name,)).fetchone()
            if row is not None and row[2] and row[1] > now:
                return None
            self._db.execute("INSERT INTO leases (name, owner, expires, busy) VALUES (?, ?, ?, 1) "
                             "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                             "expires = excluded.expires, busy = 1", (name, owner, now + ttl))
        if row is None:
            return Lease(name, owner)
        alive = row[1] > now
        return Lease(name, owner, row[0], alive, bool(row[2]) and not alive)

    def release_lease(self, name: str, owner: str, ttl: float) -> None:
        """Free lease *name* if *owner* still holds it."""
        with self._lock, _sqlite_errors(f"cannot release lease {name}"):
            self._db.execute("UPDATE leases SET busy = 0, expires = ? WHERE name = ? AND owner = ?",
                             (self._clock() + ttl, name, owner))

    def renew_leases(self, owner: str, ttl: float) -> int:
        """Every lease of *owner* lives *ttl* seconds more."""
        with self._lock, _sqlite_errors("cannot renew leases"):
            return self._db.execute("UPDATE leases SET expires = ? WHERE owner = ?",
                                    (self._clock() + ttl, owner)).rowcount

    def ping(self) -> None:
        """One trivial query."""
        with self._lock, _sqlite_errors(f"cannot read {self.path}"):
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        """Close the database; later calls raise :class:`StoreError`. Closing twice is harmless."""
        with self._lock, _sqlite_errors(f"cannot close {self.path}"):
            self._db.close()

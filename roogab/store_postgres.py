"""The :class:`~roogab.store.Store` in PostgreSQL, shared by many RooGab instances.

The only module that imports :mod:`psycopg` (psycopg 3) and :mod:`psycopg_pool`; every
``psycopg.Error`` (the pool's timeout is one) becomes a :class:`StoreError` here, a
``DataError`` or ``IntegrityError`` (the record itself was refused) a :class:`RecordRefused`. Connections
come from a pool; each method is one transaction. Lease times use the database's clock, so
instances on machines whose clocks drift still agree on who holds a task.

PostgreSQL TEXT cannot hold NUL, yet NUL is valid JSON (``"\\u0000"``) and so can reach any text an
agent or a chat service sends. Rather than refuse a turn's records, this store writes every text
with its NULs replaced by U+FFFD (``NUL_STAND_IN``): the turn log is a record for people, not a
byte-exact copy. SQLite and the memory store keep the NUL itself.

Schema (the version is the one row of ``roogab_schema``; each migration runs in one
transaction, under an advisory lock so that instances starting together migrate once)::

    v1  conversations, turns (seq bigserial, bytes), leases     the same columns as SQLite v4
    v2  conversations + last_turn, in_flight; turns + retry_of  as SQLite v5
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from .errors import ConfigError, RecordRefused, StoreError
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

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

logger = logging.getLogger(__name__)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # v1
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            client TEXT NOT NULL,
            thread TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            handle TEXT,
            transcript TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL,
            turns INTEGER NOT NULL,
            last_request TEXT,
            last_reply TEXT
        )""",
        "CREATE INDEX conversations_updated ON conversations (updated)",
        "CREATE INDEX conversations_task ON conversations (client, thread, provider, model)",
        """CREATE TABLE turns (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            duration_ms INTEGER NOT NULL,
            request_summary TEXT NOT NULL,
            provider_prompt TEXT NOT NULL,
            raw_reply TEXT NOT NULL,
            verdict TEXT NOT NULL,
            replayed BOOLEAN NOT NULL,
            repairs INTEGER NOT NULL,
            usage TEXT NOT NULL,
            response TEXT NOT NULL,
            error TEXT,
            bytes BIGINT NOT NULL
        )""",
        "CREATE INDEX turns_conversation ON turns (conversation_id, seq)",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires DOUBLE PRECISION NOT NULL,
            busy BOOLEAN NOT NULL
        )""",
        "CREATE INDEX leases_owner ON leases (owner)",
    ),
    (  # v2: the turn a retry repeats; a turn mid-reply
        "ALTER TABLE conversations ADD COLUMN last_turn TEXT",
        "ALTER TABLE conversations ADD COLUMN in_flight BOOLEAN NOT NULL DEFAULT false",
        "ALTER TABLE turns ADD COLUMN retry_of TEXT",
    ),
)

#: The schema version this code writes; databases at a higher version are refused.
SCHEMA_VERSION = len(_MIGRATIONS)

MIGRATION_LOCK = 0x526F6F47  # "RooG": the advisory lock held while migrating
TURN_LOG_LOCK = 0x526F6F4C  # "RooL": held while a turn is added and the log trimmed (exact bounds)
NOW = "extract(epoch from clock_timestamp())"
_CONV_SELECT = f"SELECT {', '.join(CONVERSATION_COLUMNS)} FROM conversations"
NUL_STAND_IN = "\ufffd"  # what a NUL is stored as: TEXT cannot hold NUL


def _without_nul(row: tuple[object, ...]) -> tuple[object, ...]:
    """*row* with every NUL in its texts replaced by ``NUL_STAND_IN``; other values as they are."""
    return tuple(v.replace("\0", NUL_STAND_IN) if isinstance(v, str) else v for v in row)


@contextmanager
def _pg_errors(what: str) -> Iterator[None]:
    """Translate :mod:`psycopg` errors into :class:`StoreError`; the one place that names them."""
    try:
        yield
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise RecordRefused(f"store: {what}: {type(exc).__name__}: {str(exc).strip()}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate: psycopg's text dumper encodes before sending
        raise RecordRefused(f"store: {what}: a value PostgreSQL cannot hold ({type(exc).__name__})") from exc
    except psycopg.Error as exc:
        raise StoreError(f"store: {what}: {type(exc).__name__}: {str(exc).strip()}") from exc


def _check_dsn(dsn: str) -> None:
    """Refuse a DSN libpq cannot parse at once (the pool would retry it until its timeout), by
    libpq's reason with the parts it quotes of the DSN left out: they may hold the password.

    Raises:
        ConfigError: *dsn* is not a PostgreSQL connection string.
    """
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = _QUOTED.sub('"..."', str(exc).strip())
        raise ConfigError("dsn_env", f"not a valid PostgreSQL connection string: {reason}") from None


_QUOTED = re.compile(r'"[^"]*"')


class PostgresStore:
    """A :class:`~roogab.store.Store` in a PostgreSQL database, through a connection pool.

    Raises:
        StoreError: the database cannot be reached, or was written by a newer RooGab.
    """

    kind = "postgres"

    def __init__(self, dsn: str, *, max_turns: int = 2000, max_turn_log_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES,
                 redactor: Redactor | None = None, pool_size: int = 8, connect_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._limits = StoreLimits(max_turns, max_turn_log_bytes)
        self._redactor = redactor
        self._clock = clock
        self._timeout = connect_timeout
        _check_dsn(dsn)
        self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=False, timeout=connect_timeout,
                                    kwargs={"connect_timeout": max(1, int(connect_timeout))},
                                    name="roogab")
        try:
            with _pg_errors("cannot connect to the database"):
                self._pool.open(wait=True, timeout=connect_timeout)
            self._migrate()
        except StoreError:
            self._pool.close()
            raise

    @contextmanager
    def _tx(self, what: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in one transaction on a pooled connection (committed when the block ends)."""
        with _pg_errors(what), self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def _migrate(self) -> None:
        with self._tx("cannot migrate the database") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS roogab_schema (version INTEGER NOT NULL)")
            cur.execute("SELECT version FROM roogab_schema")
            row = cur.fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"store: the database has schema version {version}, newer than this "
                                 f"RooGab understands ({SCHEMA_VERSION}); upgrade RooGab")
            if row is None:
                cur.execute("INSERT INTO roogab_schema (version) VALUES (0)")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                with cur.connection.transaction():  # a savepoint per version
                    for statement in _MIGRATIONS[target - 1]:
                        cur.execute(statement)  # our own constant SQL
                    cur.execute("UPDATE roogab_schema SET version = %s", (target,))
                logger.debug("store: migrated the database to schema version %d", target)

    def load_conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        """Stored conversations, most recently updated first."""
        check_limit(limit)
        with self._tx("cannot load conversations") as cur:
            cur.execute(f"{_CONV_SELECT} ORDER BY updated DESC, id LIMIT %s", (limit,))
            rows = cur.fetchall()
        return [conversation_from_row(row) for row in rows]

    def find_conversations(self, client: str, thread: str, provider: str,
                           model: str) -> list[ConversationRecord]:
        """The conversations of one task, most recently updated first."""
        sql = (f"{_CONV_SELECT} WHERE client = %s AND thread = %s AND provider = %s AND model = %s "
               "ORDER BY updated DESC, id")
        with self._tx("cannot look up conversations") as cur:
            cur.execute(sql, (client, thread, provider, model))
            rows = cur.fetchall()
        return [conversation_from_row(row) for row in rows]

    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """One conversation, or None."""
        with self._tx(f"cannot read conversation {conversation_id}") as cur:
            cur.execute(f"{_CONV_SELECT} WHERE id = %s", (conversation_id,))
            row = cur.fetchone()
        return None if row is None else conversation_from_row(row)

    def save_conversation(self, rec: ConversationRecord) -> None:
        """Insert *rec*, or replace the stored conversation with the same id (a NUL in its texts
        is stored as U+FFFD)."""
        check_transcript(rec.transcript)
        updates = ", ".join(f"{c} = excluded.{c}" for c in CONVERSATION_COLUMNS[1:])
        sql = (f"INSERT INTO conversations ({', '.join(CONVERSATION_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(CONVERSATION_COLUMNS))}) "
               f"ON CONFLICT (id) DO UPDATE SET {updates}")
        with self._tx(f"cannot save conversation {rec.id}") as cur:
            cur.execute(sql, _without_nul(conversation_row(rec)))

    def mark_in_flight(self, conversation_id: str, in_flight: bool) -> None:
        """Set the stored conversation's in-flight mark (nothing if there is none with that id)."""
        with self._tx(f"cannot mark conversation {conversation_id}") as cur:
            cur.execute("UPDATE conversations SET in_flight = %s WHERE id = %s", (in_flight, conversation_id))

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove a conversation; False when there was none with that id."""
        with self._tx(f"cannot delete conversation {conversation_id}") as cur:
            cur.execute("DELETE FROM conversations WHERE id = %s", (conversation_id,))
            return cur.rowcount > 0

    def expire_conversations(self, idle_before: float) -> list[str]:
        """Remove conversations last updated (and leases last renewed) before *idle_before*."""
        with self._tx("cannot expire conversations") as cur:
            cur.execute("DELETE FROM conversations WHERE updated < %s RETURNING id", (idle_before,))
            gone = sorted(row[0] for row in cur.fetchall())
            cur.execute("DELETE FROM leases WHERE expires < %s", (idle_before,))
        return gone

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* to the turn log (secrets redacted), then trim it to its bounds.

        The turn log is a record for people: a NUL in its texts is stored as U+FFFD, so that the
        turn is logged rather than refused (TEXT cannot hold NUL).

        Raises:
            RecordRefused: a turn with the same id is already logged, or a value does not fit its column.
            StoreError: the write failed.
        """
        rec = redacted(rec, self._redactor)
        columns = TURN_COLUMNS + ("bytes",)
        sql = f"INSERT INTO turns ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        values = _without_nul(tuple(getattr(rec, c) for c in TURN_COLUMNS))
        row = values + (turn_bytes(turn_from_row(values)),)  # the size of what is stored
        with self._tx(f"cannot log turn {rec.id}") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (TURN_LOG_LOCK,))
            cur.execute(sql, row)
            cur.execute("DELETE FROM turns WHERE seq <= "
                        "(SELECT seq FROM turns ORDER BY seq DESC LIMIT 1 OFFSET %s)", (self._limits.max_turns,))
            cur.execute("DELETE FROM turns WHERE seq <= (SELECT seq FROM (SELECT seq, SUM(bytes) OVER "
                        "(ORDER BY seq DESC) AS held FROM turns) AS t WHERE held > %s ORDER BY seq DESC "
                        "LIMIT 1) AND seq < (SELECT MAX(seq) FROM turns)", (self._limits.max_turn_log_bytes,))

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        check_limit(limit)
        columns = ", ".join(TURN_COLUMNS)
        with self._tx("cannot read the turn log") as cur:
            if conversation_id is None:
                cur.execute(f"SELECT {columns} FROM turns ORDER BY seq DESC LIMIT %s",
                            (limit,))
            else:
                cur.execute(f"SELECT {columns} FROM turns WHERE conversation_id = %s "
                            "ORDER BY seq DESC LIMIT %s", (conversation_id, limit))
            rows = cur.fetchall()
        return [turn_from_row(row) for row in rows]

    def acquire_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        """Take lease *name*; None while an unexpired turn holds it (or another instance just took it)."""
        with self._tx(f"cannot take lease {name}") as cur:
            cur.execute(f"SELECT owner, expires > {NOW}, busy FROM leases WHERE name = %s FOR UPDATE",
                        (name,))
            row = cur.fetchone()
            if row is None:
                cur.execute(f"INSERT INTO leases (name, owner, expires, busy) VALUES (%s, %s, {NOW} + %s, true) "
                            "ON CONFLICT (name) DO NOTHING", (name, owner, ttl))
                return Lease(name, owner) if cur.rowcount == 1 else None
            previous, alive, busy = row
            if busy and alive:
                return None
            cur.execute(f"UPDATE leases SET owner = %s, expires = {NOW} + %s, busy = true WHERE name = %s",
                        (owner, ttl, name))
        return Lease(name, owner, previous, bool(alive), bool(busy) and not alive)

    def release_lease(self, name: str, owner: str, ttl: float) -> None:
        """Free lease *name* if *owner* still holds it."""
        with self._tx(f"cannot release lease {name}") as cur:
            cur.execute(f"UPDATE leases SET busy = false, expires = {NOW} + %s "
                        "WHERE name = %s AND owner = %s", (ttl, name, owner))

    def renew_leases(self, owner: str, ttl: float) -> int:
        """Every lease of *owner* lives *ttl* seconds more."""
        with self._tx("cannot renew leases") as cur:
            cur.execute(f"UPDATE leases SET expires = {NOW} + %s WHERE owner = %s", (ttl, owner))
            return cur.rowcount

    def ping(self) -> None:
        """One trivial query."""
        with self._tx("cannot reach the database") as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    def close(self) -> None:
        """Close the pool; later calls raise :class:`StoreError`. Closing twice is harmless."""
        self._pool.close()

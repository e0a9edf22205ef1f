"""What the registry and the turn log keep, and the ``Store`` protocol every backend implements.

Pure: the records, the protocol and the shared checks only. The backends live in their own
modules, each the one importer of its driver: :mod:`roogab.store_memory` (in memory),
:mod:`roogab.store_sqlite` (one SQLite file, the only ``sqlite3`` importer) and
:mod:`roogab.store_postgres` (PostgreSQL through psycopg 3, the only ``psycopg`` importer).
``open_store`` imports the backend it is asked for, when it is asked.

The turn log is ordered by the order turns were logged in; after each ``add_turn`` only the
newest ``max_turns`` are kept, and fewer when together they hold more than ``max_turn_log_bytes``.
Turns are not deleted with their conversation: the log of a failed turn is most useful after the
registry dropped its conversation.

Leases serialise the turns of one task across RooGab instances sharing a database: a lease is a
named row (``owner``, ``expires``, ``busy``) taken before a turn is sent and released after it is
recorded; its owner's heartbeat (``renew_leases``) keeps it alive in between. A busy lease whose
owner stopped renewing expires after its ttl, and another instance may take it over.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigError
from .redact import Redactor

if TYPE_CHECKING:
    from .store_memory import MemoryStore
    from .store_sqlite import SqliteStore

__all__ = [
    "DEFAULT_MAX_TURN_LOG_BYTES",
    "ConversationRecord",
    "Lease",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreLimits",
    "TurnRecord",
    "open_store",
]

DEFAULT_MAX_TURN_LOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ConversationRecord:
    """A provider conversation as stored: the digests of every message the provider has seen.

    ``last_request`` is a digest of the last completed request and ``last_reply`` the JSON of
    what the agent got for it, so a retry of a completed turn can be answered from the store;
    ``last_turn`` is the id of the turn that answered it (a retry's ``retry_of``). ``in_flight``
    is set while a turn may have reached the provider and not been recorded yet.
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
    def protocol(self) -> str:
        """The wire protocol the turn came in on (kept in the request summary: no new column)."""
        try:
            summary = json.loads(self.request_summary)
        except ValueError:
            return "chat"
        return str(summary.get("protocol", "chat")) if isinstance(summary, dict) else "chat"


@dataclass(frozen=True)
class Lease:
    """A lease just taken, and what it was before: who held it last and how that ended.

    ``previous_owner`` is None for a lease never taken. ``previous_alive`` is True when that
    owner was still renewing it; ``interrupted`` when its last turn never released it (the owner
    died mid-turn: what it sent may have reached the provider).
    """

    name: str
    owner: str
    previous_owner: str | None = None
    previous_alive: bool = False
    interrupted: bool = False


@dataclass(frozen=True)
class StoreLimits:
    """How much of the turn log a store keeps."""

    max_turns: int = 2000
    max_turn_log_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, not {self.max_turns}")
        if self.max_turn_log_bytes < 1:
            raise ValueError(f"max_turn_log_bytes must be at least 1, not {self.max_turn_log_bytes}")


class Store(Protocol):
    """Persistence for the registry and the turn log; every method is safe to call from any thread."""

    kind: str

    def load_conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        """Stored conversations, most recently updated first (all of them without *limit*)."""
        ...

    def find_conversations(self, client: str, thread: str, provider: str,
                           model: str) -> list[ConversationRecord]:
        """The conversations of one task, most recently updated first."""
        ...

    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """One conversation, or None."""
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
        """Remove conversations (and leases) last used before *idle_before*; return the conversation ids."""
        ...

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* to the turn log (secrets redacted), then trim the log to its bounds.

        Raises:
            RecordRefused: the store refuses *rec* itself (its id is logged already, a value it
                cannot hold); writing it again would fail again.
            StoreError: the store failed; it may take *rec* later.
        """
        ...

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        ...

    def acquire_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        """Take lease *name* for *owner* for *ttl* seconds; None while another turn holds it."""
        ...

    def release_lease(self, name: str, owner: str, ttl: float) -> None:
        """The turn under lease *name* ended: free it (its owner keeps it warm for *ttl*)."""
        ...

    def renew_leases(self, owner: str, ttl: float) -> int:
        """The heartbeat: every lease of *owner* lives *ttl* seconds more; how many there are."""
        ...

    def ping(self) -> None:
        """Check the store answers; raises ``StoreError`` when it does not."""
        ...

    def close(self) -> None:
        """Release the store; further calls fail."""
        ...


def open_store(kind: str, data_dir: Path | None, *, max_turns: int = 2000,
               max_turn_log_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES, redactor: Redactor | None = None,
               dsn: str | None = None) -> Store:
    """The store named by *kind*: ``"memory"``, ``"sqlite"`` (``roogab.sqlite3`` in *data_dir*) or
    ``"postgres"`` (at *dsn*).

    Raises:
        ConfigError: *kind* is unknown, or its location is missing.
        StoreError: the database cannot be opened or migrated.
    """
    bounds: dict[str, Any] = {"max_turns": max_turns, "max_turn_log_bytes": max_turn_log_bytes, "redactor": redactor}
    if kind == "memory":
        from .store_memory import MemoryStore
        return MemoryStore(**bounds)
    if kind == "sqlite":
        if data_dir is None:
            raise ConfigError("store", "the sqlite store needs a data directory")
        from .store_sqlite import SqliteStore
        return SqliteStore(data_dir / "roogab.sqlite3", **bounds)
    if kind == "postgres":
        if not dsn:
            raise ConfigError("dsn_env", "the postgres store needs a DSN: set dsn_env to the name of "
                              "an environment variable that holds it")
        from .store_postgres import PostgresStore
        return PostgresStore(dsn, **bounds)
    raise ConfigError("store", f"unknown store {kind!r} (expected 'memory', 'sqlite' or 'postgres')")


def __getattr__(name: str) -> Any:
    """``MemoryStore`` and ``SqliteStore`` by their old names, imported only when asked for."""
    if name == "MemoryStore":
        from .store_memory import MemoryStore
        return MemoryStore
    if name == "SqliteStore":
        from .store_sqlite import SqliteStore
        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def redacted(rec: TurnRecord, redactor: Redactor | None) -> TurnRecord:
    """*rec* with its free-text fields redacted."""
    if redactor is None:
        return rec
    r = redactor.redact
    return replace(rec, request_summary=r(rec.request_summary), provider_prompt=r(rec.provider_prompt),
                   raw_reply=r(rec.raw_reply), response=r(rec.response),
                   error=None if rec.error is None else r(rec.error))


def turn_bytes(rec: TurnRecord) -> int:
    """What a logged turn weighs against ``max_turn_log_bytes``: the UTF-8 size of its texts."""
    texts = (rec.request_summary, rec.provider_prompt, rec.raw_reply, rec.usage, rec.response, rec.error or "")
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)


def check_limit(limit: int | None) -> None:
    """A read limit is a count of rows."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")


def check_transcript(transcript: Sequence[str]) -> None:
    """Digests are stored joined by newlines: an empty one or one holding a newline would corrupt it."""
    if any(not d or "\n" in d for d in transcript):
        raise ValueError("transcript digests must be non-empty and contain no newline")


CONVERSATION_COLUMNS = tuple(f.name for f in fields(ConversationRecord))
TURN_COLUMNS = tuple(f.name for f in fields(TurnRecord))


def conversation_row(rec: ConversationRecord) -> tuple[object, ...]:
    """*rec* as a row: the transcript joined by newlines."""
    return tuple("\n".join(rec.transcript) if c == "transcript" else getattr(rec, c)
                 for c in CONVERSATION_COLUMNS)


def conversation_from_row(row: Any) -> ConversationRecord:
    """A row back into a record."""
    values = dict(zip(CONVERSATION_COLUMNS, row))
    text = values["transcript"]
    values["transcript"] = tuple(text.split("\n")) if text else ()
    values["in_flight"] = bool(values["in_flight"])
    return ConversationRecord(**values)


def turn_from_row(row: Any) -> TurnRecord:
    """A row back into a turn record."""
    values = dict(zip(TURN_COLUMNS, row))
    values["replayed"] = bool(values["replayed"])
    return TurnRecord(**values)

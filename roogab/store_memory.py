"""The :class:`~roogab.store.Store` in memory, for tests and ``store = "memory"``: forgets on exit."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from .errors import RecordRefused
from .redact import Redactor
from .store import (
    DEFAULT_MAX_TURN_LOG_BYTES,
    ConversationRecord,
    Lease,
    StoreLimits,
    TurnRecord,
    check_limit,
    check_transcript,
    redacted,
    turn_bytes,
)

__all__ = ["MemoryStore"]


@dataclass
class _LeaseRow:
    owner: str
    expires: float
    busy: bool


class MemoryStore:
    """A :class:`~roogab.store.Store` in one process's memory, behind one lock."""

    kind = "memory"

    def __init__(self, *, max_turns: int = 2000, max_turn_log_bytes: int = DEFAULT_MAX_TURN_LOG_BYTES,
                 redactor: Redactor | None = None, clock: Callable[[], float] = time.time) -> None:
        self._limits = StoreLimits(max_turns, max_turn_log_bytes)
        self._redactor = redactor
        self._clock = clock
        self._lock = threading.Lock()
        self._conversations: dict[str, ConversationRecord] = {}
        self._by_task: dict[tuple[str, str, str, str], set[str]] = {}  # the ids of each task's conversations
        self._turns: deque[tuple[TurnRecord, int]] = deque()
        self._turn_ids: set[str] = set()
        self._turn_bytes = 0
        self._leases: dict[str, _LeaseRow] = {}

    def load_conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        """Stored conversations, most recently updated first."""
        check_limit(limit)
        with self._lock:
            ordered = sorted(self._conversations.values(), key=lambda c: (-c.updated, c.id))
        return ordered if limit is None else ordered[:limit]

    def find_conversations(self, client: str, thread: str, provider: str,
                           model: str) -> list[ConversationRecord]:
        """The conversations of one task, most recently updated first."""
        with self._lock:
            found = [self._conversations[cid] for cid in self._by_task.get((client, thread, provider, model), ())]
        return sorted(found, key=lambda c: (-c.updated, c.id))

    def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """One conversation, or None."""
        with self._lock:
            return self._conversations.get(conversation_id)

    def save_conversation(self, rec: ConversationRecord) -> None:
        """Insert *rec*, or replace the stored conversation with the same id."""
        check_transcript(rec.transcript)
        with self._lock:
            self._drop(rec.id)
            self._conversations[rec.id] = rec
            self._by_task.setdefault(_task(rec), set()).add(rec.id)

    def mark_in_flight(self, conversation_id: str, in_flight: bool) -> None:
        """Set the stored conversation's in-flight mark (nothing if there is none with that id)."""
        with self._lock:
            rec = self._conversations.get(conversation_id)
            if rec is not None:
                self._conversations[conversation_id] = replace(rec, in_flight=in_flight)

    def delete_conversation(self, conversation_id: str) -> bool:
        """Remove a conversation; False when there was none with that id."""
        with self._lock:
            return self._drop(conversation_id)

    def expire_conversations(self, idle_before: float) -> list[str]:
        """Remove conversations last updated (and leases last renewed) before *idle_before*."""
        with self._lock:
            gone = sorted(c.id for c in self._conversations.values() if c.updated < idle_before)
            for cid in gone:
                self._drop(cid)
            for name in [n for n, row in self._leases.items() if row.expires < idle_before]:
                del self._leases[name]
        return gone

    def _drop(self, conversation_id: str) -> bool:
        """Remove a conversation and its index entry (under the lock); False when there was none."""
        rec = self._conversations.pop(conversation_id, None)
        if rec is None:
            return False
        ids = self._by_task[_task(rec)]
        ids.discard(conversation_id)
        if not ids:
            del self._by_task[_task(rec)]
        return True

    def add_turn(self, rec: TurnRecord) -> None:
        """Append *rec* (secrets redacted), dropping the oldest beyond either bound.

        Raises:
            RecordRefused: a turn with the same id is already logged.
        """
        rec = redacted(rec, self._redactor)
        size = turn_bytes(rec)
        with self._lock:
            if rec.id in self._turn_ids:
                raise RecordRefused(f"store: turn {rec.id} is already logged")
            self._turns.append((rec, size))
            self._turn_ids.add(rec.id)
            self._turn_bytes += size
            while len(self._turns) > self._limits.max_turns or (
                    self._turn_bytes > self._limits.max_turn_log_bytes and len(self._turns) > 1):
                old, old_size = self._turns.popleft()
                self._turn_ids.discard(old.id)
                self._turn_bytes -= old_size

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """Up to *limit* logged turns, newest first, optionally of one conversation only."""
        check_limit(limit)
        picked: list[TurnRecord] = []
        with self._lock:
            for rec, _ in reversed(self._turns):
                if len(picked) >= limit:
                    break
                if conversation_id in (None, rec.conversation_id):
                    picked.append(rec)
        return picked

    def acquire_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        """Take lease *name*; None while an unexpired turn holds it."""
        now = self._clock()
        with self._lock:
            row = self._leases.get(name)
            if row is not None and row.busy and row.expires > now:
                return None
            self._leases[name] = _LeaseRow(owner, now + ttl, True)
        if row is None:
            return Lease(name, owner)
        alive = row.expires > now
        return Lease(name, owner, row.owner, alive, row.busy and not alive)

    def release_lease(self, name: str, owner: str, ttl: float) -> None:
        """Free lease *name* if *owner* still holds it."""
        with self._lock:
            row = self._leases.get(name)
            if row is not None and row.owner == owner:
                row.busy, row.expires = False, self._clock() + ttl

    def renew_leases(self, owner: str, ttl: float) -> int:
        """Every lease of *owner* lives *ttl* seconds more."""
        expires = self._clock() + ttl
        with self._lock:
            mine = [row for row in self._leases.values() if row.owner == owner]
            for row in mine:
                row.expires = expires
        return len(mine)

    def ping(self) -> None:
        """Always answers."""


    def close(self) -> None:
        """Nothing to release."""


def _task(rec: ConversationRecord) -> tuple[str, str, str, str]:
    """The task a conversation belongs to: what ``find_conversations`` looks it up by."""
    return rec.client, rec.thread, rec.provider, rec.model

"""Which provider conversation does a request belong to, and what is new in it?

An agent resends its whole history every turn; the chat service keeps the conversation. For each
task (a client plus a digest of its system prompt and first user message) the registry keeps
the digests of every message the provider has seen, including RooGab's own replies as the
agent will echo them back. A request whose messages extend that transcript is a continuation:
only the suffix is sent. Anything else starts a fresh provider conversation and replays the
history. Correctness first: a replay is never wrong, a wrong match is.

One turn at a time per conversation: ``Registry.turn`` holds the conversation's lock for the
whole turn. A request identical to the one in flight waits for it and is then answered from the
recorded reply, as is a retry of a completed turn within ``RETRY_WINDOW_SECONDS``; a retry of a
failed turn is sent again, and one after the window is a new request (replayed). "Identical"
covers the messages, the tools, ``tool_choice`` and whether the agent takes native calls.

Before a turn is sent its conversation is marked in flight in the store; a conversation still
marked when RooGab starts (it was killed mid-reply) is never continued: its provider
conversation may hold a reply the agent never saw, so the next turn replays. A store that fails
to write does not fail the turn: the registry keeps the conversation in memory, warns, and
writes it again after the next turn.

The registry works in memory and writes through a ``Store`` so that conversations survive a
restart of RooGab.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from .errors import StoreError
from .store import ConversationRecord, MemoryStore, Store, TurnRecord
from .turnlog import TurnLogWriter
from .wire import ChatRequest, Message, canonical_json

__all__ = ["Conversation", "Plan", "Registry", "message_digest", "thread_key"]

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]
EXPIRY_CHECK_SECONDS = 60.0
RETRY_WINDOW_SECONDS = 600.0  # agents retry within seconds to minutes; later, ask the model again


def message_digest(m: Message) -> str:
    """A digest of what a message means, insensitive to how clients re-serialize it."""
    calls = [[c.id, c.name, canonical_json(c.arguments)] for c in m.tool_calls]
    shape = [m.role, m.content.strip(), m.images, m.tool_call_id, calls]
    return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode()).hexdigest()[:32]


def thread_key(request: ChatRequest) -> str:
    """The task a request belongs to: the client's own conversation key when it sends one
    (Claude Code's session id), else its system prompt plus its first user message. Either way
    a request continues a conversation only when it extends its transcript."""
    if request.affinity:
        return hashlib.sha256(json.dumps(["affinity", request.affinity]).encode()).hexdigest()[:32]
    system = [m.content for m in request.messages if m.role in ("system", "developer")]
    first = next((m.content for m in request.messages if m.role == "user"), "")
    return hashlib.sha256(json.dumps([system, first]).encode()).hexdigest()[:32]


def request_key(request: ChatRequest, digests: tuple[str, ...]) -> str:
    """What makes two requests the same turn: the messages, the tools offered, ``tool_choice``,
    and whether the answer goes out as native calls or as text (the retry record's key)."""
    tools = [[t.name, t.description, t.parameters] for t in request.tools]
    shape = json.dumps([list(digests), tools, request.tool_choice, request.native_tools],
                       sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(shape.encode()).hexdigest()[:32]


@dataclass
class Conversation:
    """A provider conversation that one task of one client is mapped onto."""

    id: str
    client: str
    thread: str
    provider: str
    model: str
    handle: str | None = None
    transcript: tuple[str, ...] = ()
    created: float = 0.0
    updated: float = 0.0
    turns: int = 0
    last_request: str | None = None
    last_reply: str | None = None
    last_turn: str | None = None
    inflight: str | None = None
    dead: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def key(self) -> Key:
        """The task this conversation serves."""
        return (self.client, self.thread, self.provider, self.model)

    def record(self) -> ConversationRecord:
        """The stored form."""
        return ConversationRecord(self.id, self.client, self.thread, self.provider, self.model,
                                  self.handle, self.transcript, self.created, self.updated, self.turns,
                                  self.last_request, self.last_reply, self.last_turn)

    @classmethod
    def from_record(cls, rec: ConversationRecord) -> Conversation:
        """Back from the store."""
        return cls(rec.id, rec.client, rec.thread, rec.provider, rec.model, rec.handle, rec.transcript,
                   rec.created, rec.updated, rec.turns, rec.last_request, rec.last_reply, rec.last_turn)


@dataclass(frozen=True)
class Plan:
    """What one turn must send: *history* to replay (fresh conversations only) and *new*.

    ``recorded`` is set when the request repeats a completed turn: the JSON of what the agent
    got then, to be sent again without asking the chat service; ``recorded_turn`` is the id of
    that turn in the turn log. ``replay`` says whether earlier turns of the task are replayed
    onto a fresh conversation; it is fixed when the plan is made (``record`` gives the
    conversation a handle, and the turn log still has to say it was replayed).
    """

    conversation: Conversation
    messages: tuple[Message, ...]
    digests: tuple[str, ...]
    history: tuple[Message, ...]
    new: tuple[Message, ...]
    recorded: str | None = None
    key: str = ""
    recorded_turn: str | None = None
    replay: bool = False

    @property
    def fresh(self) -> bool:
        """True when the provider conversation does not exist yet."""
        return self.conversation.handle is None


class Registry:
    """Maps requests onto provider conversations; in memory, written through to a store."""

    def __init__(self, store: Store | None = None, *, idle_expiry: float = 7 * 86400.0,
                 clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16]) -> None:
        self.store = store if store is not None else MemoryStore()
        self._idle_expiry = idle_expiry
        self._clock = clock
        self._new_id = new_id
        self._lock = threading.Lock()
        self._threads: dict[Key, list[Conversation]] = {}
        self._next_expiry = 0.0
        self._log = TurnLogWriter(self.store)
        self._unsaved: dict[str, Conversation | None] = {}  # id -> to save again, or None: to delete
        for rec in self.store.load_conversations():
            if rec.in_flight:
                log.info("conversation %s was mid-turn when RooGab stopped: its next turn is replayed", rec.id)
                self._write(rec.id, None)
                continue
            conv = Conversation.from_record(rec)
            self._threads.setdefault(conv.key, []).append(conv)

    @contextmanager
    def turn(self, client: str, request: ChatRequest, provider: str, model: str) -> Iterator[Plan]:
        """Plan a turn and hold its conversation for the duration of the ``with`` block."""
        self._expire()
        self._write_unsaved()
        key = (client, thread_key(request), provider, model)
        digests = tuple(message_digest(m) for m in request.messages)
        asked = request_key(request, digests)
        passed: set[str] = set()  # conversations this request turned out not to belong to
        while True:
            conv = self._claim(key, digests, asked, passed)
            with conv.lock:
                if not conv.dead and self._is_retry(conv, asked):
                    yield Plan(conv, request.messages, digests, (), (), recorded=conv.last_reply, key=asked,
                               recorded_turn=conv.last_turn)
                    return
                if conv.dead or not _extends(conv.transcript, digests):
                    passed.add(conv.id)
                    continue
                conv.inflight = asked
                self._mark_in_flight(conv, True)
                try:
                    yield self._plan(conv, request.messages, digests, asked)
                finally:
                    conv.inflight = None
                return

    def record(self, plan: Plan, handle: str, reply: Message, reply_json: str, *,
               turn_id: str | None = None) -> None:
        """The turn succeeded: the provider has now seen the request and *reply*. Saved through
        to the store (and the in-flight mark cleared); a store that fails only delays that."""
        conv = plan.conversation
        conv.handle = handle
        conv.transcript = plan.digests + (message_digest(reply),)
        conv.last_request, conv.last_reply, conv.last_turn = plan.key or None, reply_json, turn_id
        conv.updated = self._clock()
        conv.turns += 1
        self._write(conv.id, conv)

    def drop(self, plan: Plan) -> None:
        """The turn failed after it may have reached the provider: never continue it."""
        self.forget(plan.conversation)

    def forget(self, conv: Conversation) -> None:
        """Remove a conversation from memory and from the store (later, if the store fails)."""
        conv.dead = True
        with self._lock:
            convs = self._threads.get(conv.key, [])
            if conv in convs:
                convs.remove(conv)
        self._write(conv.id, None)

    def unsaved(self) -> int:
        """How many conversation writes wait for the store to work again."""
        with self._lock:
            return len(self._unsaved)

    def restart(self, plan: Plan) -> Plan:
        """The provider forgot the conversation: same lock, fresh conversation, full replay."""
        plan.conversation.handle, plan.conversation.transcript = None, ()
        history, new = _answered_split(plan.messages)
        return replace(plan, history=history, new=new, replay=bool(history))

    def log_turn(self, record: TurnRecord) -> None:
        """Add a turn to the turn log (written in the background)."""
        self._log.add(record)

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """The newest turns first, including every turn that has ended."""
        self._log.flush()
        return self.store.turns(limit=limit, conversation_id=conversation_id)

    def close(self) -> None:
        """Write the turns still queued for the log."""
        self._log.close()

    def conversations(self) -> list[Conversation]:
        """Every known conversation, most recently used first."""
        with self._lock:
            convs = [c for cs in self._threads.values() for c in cs]
        return sorted(convs, key=lambda c: c.updated, reverse=True)

    def _is_retry(self, conv: Conversation, asked: str) -> bool:
        recent = self._clock() - conv.updated < RETRY_WINDOW_SECONDS
        return recent and conv.last_request == asked and conv.last_reply is not None

    def _claim(self, key: Key, digests: tuple[str, ...], asked: str, passed: set[str]) -> Conversation:
        """The conversation this request belongs to, created (and claimed) if there is none.

        A conversation in *passed* was tried and did not fit; each call passes over one more, so
        ``turn`` ends (with a new conversation at worst). A completed turn with the same key is
        preferred only within the retry window: later, the request is a new one.
        """
        with self._lock:
            convs = [c for c in self._threads.get(key, []) if not c.dead and c.id not in passed]
            same = [c for c in convs if c.inflight == asked or self._is_retry(c, asked)]
            extending = [c for c in convs if _extends(c.transcript, digests)]
            found = same or sorted(extending, key=lambda c: len(c.transcript), reverse=True)
            if found:
                return found[0]
            now = self._clock()
            conv = Conversation(id=self._new_id(), client=key[0], thread=key[1], provider=key[2],
                                model=key[3], created=now, updated=now, inflight=asked)
            self._threads.setdefault(key, []).append(conv)
            return conv

    def _plan(self, conv: Conversation, messages: tuple[Message, ...], digests: tuple[str, ...],
              key: str) -> Plan:
        if conv.handle is not None:
            return Plan(conv, messages, digests, (), messages[len(conv.transcript):], key=key)
        history, new = _answered_split(messages)
        return Plan(conv, messages, digests, history, new, key=key, replay=bool(history))

    def _mark_in_flight(self, conv: Conversation, in_flight: bool) -> None:
        """Tell the store a turn of *conv* is about to reach the provider (a no-op for a
        conversation the store does not hold yet: after a crash it would be replayed anyway)."""
        if conv.handle is None:
            return
        try:
            self.store.mark_in_flight(conv.id, in_flight)
        except StoreError as exc:
            log.warning("the store failed; conversation %s is kept in memory: %s", conv.id, exc)

    def _write(self, conversation_id: str, conv: Conversation | None) -> bool:
        """Save *conv* (None: delete it) through to the store; on failure keep it for later."""
        try:
            if conv is None:
                self.store.delete_conversation(conversation_id)
            else:
                self.store.save_conversation(conv.record())
        except StoreError as exc:
            log.warning("the store failed; conversation %s is kept in memory and written later: %s",
                        conversation_id, exc)
            with self._lock:
                self._unsaved[conversation_id] = conv
            return False
        with self._lock:
            self._unsaved.pop(conversation_id, None)
        return True

    def _write_unsaved(self) -> None:
        """Try again the writes a failing store refused (until one fails again)."""
        with self._lock:
            pending = list(self._unsaved.items())
        for conversation_id, conv in pending:
            if not self._write(conversation_id, conv):
                return

    def _expire(self) -> None:
        now = self._clock()
        if now < self._next_expiry:
            return
        self._next_expiry = now + EXPIRY_CHECK_SECONDS
        try:
            gone = set(self.store.expire_conversations(now - self._idle_expiry))
        except StoreError as exc:
            log.warning("the store failed to expire idle conversations: %s", exc)
            return
        with self._lock:
            for key, convs in self._threads.items():
                self._threads[key] = [c for c in convs if c.id not in gone or c.inflight]


def _extends(transcript: tuple[str, ...], digests: tuple[str, ...]) -> bool:
    """True when *digests* continue *transcript* with at least one new message."""
    return len(digests) > len(transcript) and digests[:len(transcript)] == transcript


def _answered_split(messages: tuple[Message, ...]) -> tuple[tuple[Message, ...], tuple[Message, ...]]:
    """Split at the last assistant message: what was answered before, and what is new."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return messages[:last + 1], messages[last + 1:]

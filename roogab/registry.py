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

Before a turn is sent its conversation is marked in flight in the store; a conversation found
still marked when it is read from the store (its RooGab was killed mid-reply) is never continued:
its provider conversation may hold a reply the agent never saw, so the next turn replays. A
store that fails to write does not fail the turn: the registry keeps the conversation in memory
(and out of the LRU's eviction), warns, and writes it again before the next turn.

The registry keeps the conversations it is using in an LRU in front of a ``Store``: a task's
conversations are looked up in the store when it is first seen, so start-up costs nothing per
stored conversation. With ``Leases`` (several instances on one database) every turn first takes
its task's lease, then reads the task's conversations fresh from the store, because another
instance may have moved them on. A task whose last owner is gone, or whose provider
conversations cannot be continued from another instance, is taken over by replay.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

from .errors import RecordRefused, StoreError
from .leases import Leases
from .memo import Memo
from .store import ConversationRecord, Lease, Store, TurnRecord
from .store_memory import MemoryStore
from .turnlog import DirectTurnLog, TurnLog
from .wire import ChatRequest, Message, canonical_json

__all__ = ["Conversation", "Plan", "Registry", "message_digest", "thread_key"]

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]
CACHE_TASKS = 1024  # tasks whose conversations stay in memory between turns
RETRY_WINDOW_SECONDS = 600.0  # agents retry within seconds to minutes; later, ask the model again


def message_digest(m: Message) -> str:
    """A digest of what a message means, insensitive to how clients re-serialize it."""
    calls = [[c.id, c.name, canonical_json(c.arguments)] for c in m.tool_calls]
    shape = [m.role, m.content.strip(), m.images, m.tool_call_id, calls]
    return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode()).hexdigest()[:32]


def thread_key(request: ChatRequest) -> str:
    """The task a request belongs to: the client's own conversation key when it sends one
    (Claude Code's session id, Codex's ``prompt_cache_key``), else its system prompt plus its first user message. Either way
    a request continues a conversation only when it extends its transcript."""
    if request.affinity:
        return hashlib.sha256(json.dumps(["affinity", request.affinity]).encode()).hexdigest()[:32]
    system = [m.content for m in request.messages if m.role in ("system", "developer")]
    first = next((m.content for m in request.messages if m.role == "user"), "")
    return hashlib.sha256(json.dumps([system, first]).encode()).hexdigest()[:32]


def request_key(request: ChatRequest, digests: tuple[str, ...]) -> str:
    """What makes two requests the same turn: the messages, the tools offered, ``tool_choice``,
    and whether the answer goes out as native calls or as text (the retry record's key)."""
    # The text json.dumps([digests, tools, tool_choice, native_tools], sort_keys=True,
    # ensure_ascii=False) gives, with the tools' part made once per request (tools_json).
    parts = (json.dumps(list(digests)), request.tools_json, json.dumps(request.tool_choice, ensure_ascii=False),
             json.dumps(request.native_tools))
    return hashlib.sha256(f"[{', '.join(parts)}]".encode()).hexdigest()[:32]


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
    claims: int = field(default=0, repr=False, compare=False)
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
    that turn in the turn log. ``key`` is the request's retry key (``request_key``).
    """

    conversation: Conversation
    messages: tuple[Message, ...]
    digests: tuple[str, ...]
    history: tuple[Message, ...]
    new: tuple[Message, ...]
    recorded: str | None = None
    key: str = ""
    recorded_turn: str | None = None

    @property
    def fresh(self) -> bool:
        """True when the provider conversation does not exist yet."""
        return self.conversation.handle is None

    @property
    def replay(self) -> bool:
        """True when earlier turns of the task are replayed onto a fresh conversation (fixed when
        the turn was planned: ``history`` is only ever set for a fresh conversation)."""
        return bool(self.history)


class Registry:
    """Maps requests onto provider conversations: an LRU of tasks in front of a store."""

    def __init__(self, store: Store | None = None, *, idle_expiry: float = 7 * 86400.0,
                 clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16],
                 turn_log: TurnLog | None = None, leases: Leases | None = None,
                 portable: Collection[str] = (), cache_tasks: int = CACHE_TASKS,
                 instance: str = "") -> None:
        self.store = store if store is not None else MemoryStore()
        self.leases = leases
        self.instance = instance or (leases.instance if leases is not None else "local")
        self._idle_expiry = idle_expiry
        self._clock = clock
        self._new_id = new_id
        self._portable = frozenset(portable)
        self._cache_tasks = cache_tasks
        self._lock = threading.Lock()
        self._threads: OrderedDict[Key, list[Conversation]] = OrderedDict()
        self._log = turn_log if turn_log is not None else DirectTurnLog(self.store)
        # a resent history is digested once: about 4 MB of recent message text remembered
        self._digest: Memo[Message, str] = Memo(4_000_000, lambda m: len(m.content) + 64)
        self._unsaved: dict[str, Conversation | None] = {}  # id -> to save again, or None: to delete

    @contextmanager
    def turn(self, client: str, request: ChatRequest, provider: str, model: str) -> Iterator[Plan]:
        """Plan a turn and hold its conversation for the duration of the ``with`` block."""
        self._write_unsaved()
        key = (client, thread_key(request), provider, model)
        digests = tuple(self._digest.get(m, message_digest) for m in request.messages)
        asked = request_key(request, digests)
        passed: set[str] = set()  # conversations this request turned out not to belong to
        with ExitStack() as stack:
            if self.leases is not None:
                lease = stack.enter_context(self.leases.hold(key))
                self._refresh(key, takeover=self._takes_over(lease, provider))
            while True:
                conv = self._claim(key, digests, asked, passed)
                try:
                    with conv.lock:
                        if not conv.dead and self._is_retry(conv, asked):
                            yield Plan(conv, request.messages, digests, (), (), recorded=conv.last_reply,
                                       key=asked, recorded_turn=conv.last_turn)
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
                finally:
                    with self._lock:
                        conv.claims -= 1

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
        return replace(plan, history=history, new=new)

    def log_turn(self, record: TurnRecord) -> None:
        """Add a turn to the turn log (written in the background when the log is a writer)."""
        self._log.add(record)

    def turns(self, limit: int = 50, conversation_id: str | None = None) -> list[TurnRecord]:
        """The newest turns first, including every turn that has ended (of every instance)."""
        self._log.flush()
        return self.store.turns(limit=limit, conversation_id=conversation_id)

    def close(self) -> None:
        """Write the turns still waiting for the log (the log's owner stops it)."""
        self._log.flush()

    def conversations(self, limit: int = 500) -> list[Conversation]:
        """The most recently used conversations first: the stored ones (without those left mid-turn
        by a RooGab that stopped), and any here that are in a turn or not written yet."""
        stored = {rec.id: Conversation.from_record(rec) for rec in self.store.load_conversations(limit)
                  if not (rec.in_flight and self.leases is None)}
        with self._lock:
            for conv_id, pending in self._unsaved.items():
                if pending is None:
                    stored.pop(conv_id, None)
            for convs in self._threads.values():
                for conv in convs:
                    if conv.id in stored or conv.inflight is not None or conv.id in self._unsaved:
                        stored[conv.id] = conv
        return sorted(stored.values(), key=lambda c: c.updated, reverse=True)[:limit]

    def expire_idle(self, release: Callable[[str, str], None] | None = None) -> list[str]:
        """Forget conversations idle longer than ``idle_expiry`` (the housekeeper calls this);
        *release(provider, handle)* is told of each provider conversation held here that went."""
        gone = set(self.store.expire_conversations(self._clock() - self._idle_expiry))
        released: list[tuple[str, str]] = []
        with self._lock:
            for key, convs in self._threads.items():
                for conv in convs:
                    if conv.id in gone and not conv.claims and conv.id not in self._unsaved:
                        conv.dead = True
                        if conv.handle is not None:
                            released.append((conv.provider, conv.handle))
                self._threads[key] = [c for c in convs if not c.dead]
        if release is not None:
            for provider, handle in released:  # outside the lock: a provider may take a moment
                release(provider, handle)
        return sorted(gone)

    def _is_retry(self, conv: Conversation, asked: str) -> bool:
        recent = self._clock() - conv.updated < RETRY_WINDOW_SECONDS
        return recent and conv.last_request == asked and conv.last_reply is not None

    def _takes_over(self, lease: Lease, provider: str) -> bool:
        """Whether this turn must rebuild the task's provider conversations by replay: the last
        owner died mid-turn, is gone, or holds conversations no other instance can continue."""
        if lease.interrupted:
            return True
        if lease.previous_owner in (None, lease.owner):
            return False
        return not (lease.previous_alive and provider in self._portable)

    def _refresh(self, key: Key, *, takeover: bool) -> None:
        """Under the task's lease: the task's conversations as the store has them now (those not
        written yet keep what this instance knows)."""
        records = self._usable(self.store.find_conversations(*key))
        with self._lock:
            cached = {c.id: c for c in self._threads.get(key, [])}
            fresh: list[Conversation] = []
            for rec in records:
                conv = cached.pop(rec.id, None) or Conversation.from_record(rec)
                if rec.id not in self._unsaved:
                    _load(conv, rec)
                if takeover:
                    conv.handle = None
                fresh.append(conv)
            for conv in cached.values():  # gone from the store: dropped or expired elsewhere
                conv.dead = conv.dead or not (conv.claims or conv.id in self._unsaved)
            self._threads[key] = fresh + [c for c in cached.values() if not c.dead]
            self._threads.move_to_end(key)
            self._evict()

    def _usable(self, records: list[ConversationRecord]) -> list[ConversationRecord]:
        """*records* from the store without those never to be continued: a conversation still
        marked in flight (the RooGab that sent its turn stopped mid-reply, so the provider may
        hold a reply the agent never saw; it is deleted and the next turn replays) and one
        whose deletion has not reached the store yet."""
        usable = []
        for rec in records:
            with self._lock:
                pending = self._unsaved.get(rec.id, rec)
            if pending is None:
                continue
            if rec.in_flight and rec.id not in self._unsaved:
                log.info("conversation %s was mid-turn when its RooGab stopped: its next turn is replayed",
                         rec.id)
                self._write(rec.id, None)
                continue
            usable.append(rec)
        return usable

    def _claim(self, key: Key, digests: tuple[str, ...], asked: str, passed: set[str]) -> Conversation:
        """The conversation this request belongs to, created (and claimed) if there is none.

        A conversation in *passed* was tried and did not fit; each call passes over one more, so
        ``turn`` ends (with a new conversation at worst). A completed turn with the same key is
        preferred only within the retry window: later, the request is a new one.
        """
        if self.leases is None and not self._cached(key):
            records = self._usable(self.store.find_conversations(*key))
            with self._lock:
                if key not in self._threads:
                    self._threads[key] = [Conversation.from_record(rec) for rec in records]
        with self._lock:
            convs = [c for c in self._threads.setdefault(key, []) if not c.dead and c.id not in passed]
            self._threads.move_to_end(key)
            same = [c for c in convs if c.inflight == asked or self._is_retry(c, asked)]
            extending = [c for c in convs if _extends(c.transcript, digests)]
            found = same or sorted(extending, key=lambda c: len(c.transcript), reverse=True)
            if found:
                conv = found[0]
            else:
                now = self._clock()
                conv = Conversation(id=self._new_id(), client=key[0], thread=key[1], provider=key[2],
                                    model=key[3], created=now, updated=now, inflight=asked)
                self._threads[key].append(conv)
            conv.claims += 1
            self._evict()
            return conv

    def _cached(self, key: Key) -> bool:
        with self._lock:
            return key in self._threads

    def _evict(self) -> None:
        """Drop the least recently used tasks beyond the bound, unless a turn is using them or
        one of their conversations is not written to the store yet."""
        excess = len(self._threads) - self._cache_tasks
        if excess <= 0:
            return  # the common case: no list of every cached task to build
        for key in list(itertools.islice(self._threads, excess)):
            if not any(c.claims or c.inflight or c.id in self._unsaved for c in self._threads[key]):
                del self._threads[key]

    def _plan(self, conv: Conversation, messages: tuple[Message, ...], digests: tuple[str, ...],
              key: str) -> Plan:
        if conv.handle is not None:
            return Plan(conv, messages, digests, (), messages[len(conv.transcript):], key=key)
        history, new = _answered_split(messages)
        return Plan(conv, messages, digests, history, new, key=key)

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
        except RecordRefused:  # kept, it would be written again before every turn, failing each time
            log.warning("the store refuses conversation %s itself: it is kept in memory only, and a "
                        "restart replays it", conversation_id)
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


def _load(conv: Conversation, rec: ConversationRecord) -> None:
    """Copy the stored state of a conversation onto its in-memory twin."""
    conv.handle, conv.transcript, conv.updated, conv.turns = rec.handle, rec.transcript, rec.updated, rec.turns
    conv.last_request, conv.last_reply, conv.last_turn = rec.last_request, rec.last_reply, rec.last_turn
    conv.dead = False


def _extends(transcript: tuple[str, ...], digests: tuple[str, ...]) -> bool:
    """True when *digests* continue *transcript* with at least one new message."""
    return len(digests) > len(transcript) and digests[:len(transcript)] == transcript


def _answered_split(messages: tuple[Message, ...]) -> tuple[tuple[Message, ...], tuple[Message, ...]]:
    """Split at the last assistant message: what was answered before, and what is new."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return messages[:last + 1], messages[last + 1:]

"""Which provider conversation does a request belong to, and what is new in it?

An agent resends its whole history every turn; the chat service keeps the conversation. For each
task (a client plus a digest of its system prompt and first user message) the registry keeps
the digests of every message the provider has seen, including RooGab's own replies as the
agent will echo them back. A request whose messages extend that transcript is a continuation:
only the suffix is sent. Anything else starts a fresh provider conversation and replays the
history. Correctness first: a replay is never wrong, a wrong match is.

One turn at a time per conversation: ``Registry.turn`` holds the conversation's lock for the
whole turn, so a second request for the same task waits and is then matched afresh.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from .wire import ChatRequest, Message, canonical_json

__all__ = ["Conversation", "Plan", "Registry", "message_digest", "thread_key"]


def message_digest(m: Message) -> str:
    """A digest of what a message means, insensitive to how clients re-serialize it."""
    calls = [[c.id, c.name, canonical_json(c.arguments)] for c in m.tool_calls]
    shape = [m.role, m.content.strip(), m.images, m.tool_call_id, calls]
    return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode()).hexdigest()[:32]


def thread_key(request: ChatRequest) -> str:
    """The task a request belongs to: its system prompt plus its first user message."""
    system = [m.content for m in request.messages if m.role in ("system", "developer")]
    first = next((m.content for m in request.messages if m.role == "user"), "")
    return hashlib.sha256(json.dumps([system, first]).encode()).hexdigest()[:32]


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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass(frozen=True)
class Plan:
    """What one turn must send: *history* to replay (fresh conversations only) and *new*."""

    conversation: Conversation
    messages: tuple[Message, ...]
    digests: tuple[str, ...]
    history: tuple[Message, ...]
    new: tuple[Message, ...]

    @property
    def fresh(self) -> bool:
        """True when the provider conversation does not exist yet."""
        return self.conversation.handle is None

    @property
    def replay(self) -> bool:
        """True when earlier turns of the task are replayed onto a fresh conversation."""
        return self.fresh and bool(self.history)


class Registry:
    """Maps requests onto provider conversations; in memory."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16]) -> None:
        self._clock = clock
        self._new_id = new_id
        self._lock = threading.Lock()
        self._threads: dict[tuple[str, str, str, str], list[Conversation]] = {}

    @contextmanager
    def turn(self, client: str, request: ChatRequest, provider: str, model: str) -> Iterator[Plan]:
        """Plan a turn and hold its conversation for the duration of the ``with`` block."""
        key = (client, thread_key(request), provider, model)
        digests = tuple(message_digest(m) for m in request.messages)
        while True:
            conv = self._match(key, digests) or self._create(key)
            with conv.lock:
                if _extends(conv.transcript, digests):
                    yield self._plan(conv, request, digests)
                    return

    def record(self, plan: Plan, handle: str, reply: Message) -> None:
        """The turn succeeded: the provider has now seen the request and *reply*."""
        conv = plan.conversation
        conv.handle = handle
        conv.transcript = plan.digests + (message_digest(reply),)
        conv.updated = self._clock()
        conv.turns += 1

    def drop(self, plan: Plan) -> None:
        """The turn failed after it may have reached the provider: never continue it."""
        key = (plan.conversation.client, plan.conversation.thread, plan.conversation.provider,
               plan.conversation.model)
        with self._lock:
            convs = self._threads.get(key, [])
            if plan.conversation in convs:
                convs.remove(plan.conversation)

    def restart(self, plan: Plan) -> Plan:
        """The provider forgot the conversation: same lock, fresh conversation, full replay."""
        plan.conversation.handle, plan.conversation.transcript = None, ()
        history, new = _answered_split(plan.messages)
        return replace(plan, history=history, new=new)

    def conversations(self) -> list[Conversation]:
        """Every known conversation, newest first."""
        with self._lock:
            convs = [c for cs in self._threads.values() for c in cs]
        return sorted(convs, key=lambda c: c.updated, reverse=True)

    def _match(self, key: tuple[str, str, str, str], digests: tuple[str, ...]) -> Conversation | None:
        with self._lock:
            candidates = [c for c in self._threads.get(key, []) if _extends(c.transcript, digests)]
        return max(candidates, key=lambda c: len(c.transcript), default=None)

    def _create(self, key: tuple[str, str, str, str]) -> Conversation:
        now = self._clock()
        conv = Conversation(id=self._new_id(), client=key[0], thread=key[1], provider=key[2],
                            model=key[3], created=now, updated=now)
        with self._lock:
            self._threads.setdefault(key, []).append(conv)
        return conv

    def _plan(self, conv: Conversation, request: ChatRequest, digests: tuple[str, ...]) -> Plan:
        messages = request.messages
        if conv.handle is not None:
            return Plan(conv, messages, digests, (), messages[len(conv.transcript):])
        history, new = _answered_split(messages)
        return Plan(conv, messages, digests, history, new)


def _extends(transcript: tuple[str, ...], digests: tuple[str, ...]) -> bool:
    """True when *digests* continue *transcript* with at least one new message."""
    return len(digests) > len(transcript) and digests[:len(transcript)] == transcript


def _answered_split(messages: tuple[Message, ...]) -> tuple[tuple[Message, ...], tuple[Message, ...]]:
    """Split at the last assistant message: what was answered before, and what is new."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return messages[:last + 1], messages[last + 1:]

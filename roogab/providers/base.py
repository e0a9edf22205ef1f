"""What every provider is: a small protocol, its event model, and the turn inbox they share.

A provider's own thread (the asyncio provider loop, or a WebSocket reader thread) puts events
into a ``Turn``; the request thread that asked for the turn drains it with ``Turn.events()``,
which enforces the deadlines and yields ``None`` on every idle tick so the API can send a
keep-alive ping. The two sides meet only at the turn's inbox, which hands over everything
queued at once and wakes the reader only when it waits.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import ProviderTimeout, UpstreamError
from ..redact import REDACTED
from ..utf16 import well_formed

__all__ = [
    "Created",
    "Deadlines",
    "Delta",
    "Done",
    "Frame",
    "Health",
    "ModelInfo",
    "Pace",
    "Provider",
    "ProviderEvent",
    "Snapshot",
    "Traits",
    "Turn",
]


@dataclass(frozen=True)
class Created:
    """The service created a conversation; ``handle`` is its id, for later turns."""

    handle: str


@dataclass(frozen=True)
class Delta:
    """The next piece of the reply."""

    text: str


@dataclass(frozen=True)
class Snapshot:
    """The whole reply so far (cumulative services); may be HTML.

    ``rewrite``: the service changed what it had sent (a Chainlit app's ``update_message``), so
    a shorter text is the reply now, not an older snapshot arriving late.
    """

    text: str
    rewrite: bool = False


@dataclass(frozen=True)
class Done:
    """The reply is complete; ``text`` is the full reply when the service sends it."""

    text: str | None = None


ProviderEvent = Created | Delta | Snapshot | Done


@dataclass(frozen=True)
class Traits:
    """What a provider kind is, declared by the kind (``kinds.Kind.traits``).

    ``keeps_conversations``: the service remembers a conversation, so a turn sends only what is
    new; False means the page resends the whole chat every turn (Gradio). ``stream``: replies
    arrive as pieces (``deltas``) or as the whole reply so far (``snapshots``).
    ``max_message_chars``: the longest message the service takes (0 = no known limit); a
    profile's own ``max_message_chars`` overrides it.
    """

    keeps_conversations: bool = True
    stream: Literal["deltas", "snapshots"] = "deltas"
    max_message_chars: int = 0

    def message_limit(self, configured: int) -> int:
        """The limit in force: the profile's when it sets one, else the kind's."""
        return configured or self.max_message_chars


@dataclass(frozen=True)
class Deadlines:
    """How long a turn may take, in seconds: to the first token, between tokens, in all."""

    first_token: float = 120.0
    silence: float = 60.0
    total: float = 600.0


@dataclass(frozen=True)
class ModelInfo:
    """A model the provider offers, by its local name (without the ``provider/`` prefix)."""

    id: str
    context_length: int


@dataclass(frozen=True)
class Health:
    """A provider's readiness as ``/healthz`` reports it."""

    ready: bool
    connected: bool
    logged_in: bool | None = None
    last_error: str | None = None
    since: float = 0.0


_CLOSED = object()


WIRE_FRAMES = 300
WIRE_PAYLOAD_CHARS = 1000
SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
                         "api_key", "password", "access_token", "refresh_token", "id_token",
                         "client_secret", "x-csrf-token", "x-xsrf-token"})
"""Keys (header names, JSON fields) whose values a frame never shows, whatever they look like."""


@dataclass(frozen=True)
class Frame:
    """One frame exchanged with the chat service, for the inspector's wire view: when, which way
    (``out`` to the service, ``in`` from it), what kind (``socket.io`` …), the event name, and
    the payload as the library gave it (``shown`` makes it text: redacted first, then cut)."""

    at: float
    direction: str
    kind: str
    name: str
    payload: object


def shown(payload: object, redact: Callable[[str], str]) -> str:
    """A frame's payload as the inspector shows it: every string redacted, then long strings
    cut in the middle, then JSON (redacting before cutting: a cut never leaves half a secret)."""
    text = well_formed(json.dumps(_cut_strings(_redact_strings(payload, redact)), ensure_ascii=False, default=repr))
    if len(text) > WIRE_PAYLOAD_CHARS:
        text = text[:WIRE_PAYLOAD_CHARS] + f"… [{len(text) - WIRE_PAYLOAD_CHARS} more characters]"
    return text


def _redact_strings(value: object, redact: Callable[[str], str], depth: int = 0) -> object:
    if isinstance(value, str):
        return redact(value)
    if depth > 8:
        return redact(repr(value))
    if isinstance(value, dict):
        return {redact(str(k)): REDACTED if str(k).lower() in SECRET_KEYS and v
                else _redact_strings(v, redact, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], str) and value[0].lower() in SECRET_KEYS:
            return [value[0], REDACTED]  # a (header name, value) pair
        return [_redact_strings(v, redact, depth + 1) for v in value]
    return value if isinstance(value, (int, float, bool)) or value is None else redact(repr(value))


def _cut_strings(value: object, depth: int = 0) -> object:
    """*value* with long strings cut in the middle (their start and end kept: a prompt's newest
    message is at its end)."""
    if isinstance(value, str) and len(value) > WIRE_PAYLOAD_CHARS // 2:
        keep = WIRE_PAYLOAD_CHARS // 4
        return f"{value[:keep]}… [{len(value) - 2 * keep} characters] …{value[-keep:]}"
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {k: _cut_strings(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, depth + 1) for v in value]
    return value


#: The paced readers of one process are woken about this many times a second at most, all together.
WAKES_PER_SECOND = 500.0


class Pace:
    """How soon a streaming reader may be woken again: *every* seconds, or longer while many
    replies stream at once, so that together they are woken about *wakes_per_second* times a
    second at most (at 500 a second: up to 25 streams every 0.05 s, 100 every 0.2 s, 400 every
    0.8 s). One per provider loop, shared by its turns: a woken thread costs GIL hand-offs, and
    at 400 streams a fixed 0.05 s pace left the threads' wakes slowing the loop so much that its
    tokens came one per wake anyway (bench_load: 4.6x the floor's CPU per token; 1.7x with 500).
    """

    def __init__(self, every: float, wakes_per_second: float = WAKES_PER_SECOND) -> None:
        self.every = every
        self._rate = wakes_per_second
        self._streaming = 0
        self._lock = threading.Lock()

    def interval(self) -> float:
        """The least time between two wakes of one reader, now."""
        return max(self.every, self._streaming / self._rate)

    def streaming(self, change: int) -> None:
        """A reader started (+1) or stopped (-1) reading its reply."""
        with self._lock:
            self._streaming += change


class Turn:
    """One reply being received: fed by the provider side, drained by one request thread.

    The inbox costs per batch, not per event: ``put`` appends under a lock and rings the
    consumer's bell only when the consumer is waiting and no ring is already on its way; the
    consumer takes everything queued in one step. With *defer* (the provider loop's
    ``coalesce``), the ring is postponed to the end of the loop's current batch of callbacks,
    so the events a busy loop delivers together wake the request thread once.

    With *pace* too, a piece (``Delta``, ``Snapshot``) wakes the consumer no sooner than the
    pace's interval after it last took a batch: a reply streamed at 50 pieces a second wakes its
    thread some 20 times a second, not 50, and the pieces come joined. Pacing starts once the
    reader says it has passed something on (``passed_on``): until then each piece rings at once,
    so the first token is as early as it can be (a reply's envelope opening shows nothing). The
    first piece after a pause, and everything else (``Created``, ``Done``, a failure, a cancel),
    rings at once. Waking a thread per piece was most of RooGab's CPU per token at 100 streams
    (bench_load: 6 context switches per token against the floor's 0.3, so far behind that p50
    latency was seconds).

    ``wire`` keeps the turn's last ``WIRE_FRAMES`` frames (the provider notes them with ``frame``).
    """

    def __init__(self, provider: str, deadlines: Deadlines, *,
                 on_cancel: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 defer: Callable[[Callable[[], None], float], None] | None = None,
                 pace: Pace | None = None) -> None:
        self.provider = provider
        self.deadlines = deadlines
        self._on_cancel = on_cancel
        self._clock = clock
        self._defer = defer
        self._pace = pace if defer is not None and pace is not None and pace.every > 0 else None
        self._taken = float("-inf")  # when the consumer last took a batch
        self._paced = False  # set by passed_on()
        self._lock = threading.Lock()
        self._bell = threading.Lock()
        self._bell.acquire()  # released once per ring: a binary semaphore
        self._items: list[object] = []
        self._waiting = False  # the consumer is (about to be) blocked on the bell
        self._ring_due = False  # a ring is scheduled (deferred) or under way
        self._rung = False  # the bell was released for the current wait
        self._cancelled = False
        self.wire: deque[Frame] = deque(maxlen=WIRE_FRAMES)

    def frame(self, direction: str, kind: str, name: str, payload: object) -> None:
        """Note a frame of this turn (safe from any thread); its payload is kept as given."""
        self.wire.append(Frame(time.time(), direction, kind, name, payload))

    @property
    def cancelled(self) -> bool:
        """True once ``cancel()`` was called."""
        return self._cancelled

    def put(self, item: ProviderEvent | UpstreamError) -> None:
        """Deliver an event or a failure; safe from any thread."""
        with self._lock:
            if self._cancelled:
                return
            self._items.append(item)
            piece = isinstance(item, (Delta, Snapshot))
            if not self._waiting or (self._ring_due and (piece or self._pace is None)):
                return  # a ring is on its way (with a pace, maybe not soon: the end asks for its own)
            self._ring_due = True
            delay = self._taken + self._pace.interval() - self._clock() if piece and self._paced and self._pace else 0.0
        if self._defer is not None:
            self._defer(self._ring, delay)
        else:
            self._ring()

    def passed_on(self) -> None:
        """The reader has passed part of the reply on: from now on, pieces are paced."""
        self._paced = True

    def cancel(self) -> None:
        """Stop the turn: the client went away or the service must be told to stop."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self._items.append(_CLOSED)
            self._ring_due = True
        self._ring()
        if self._on_cancel is not None:
            self._on_cancel()

    def _ring(self) -> None:
        with self._lock:
            self._ring_due = False
            if not self._waiting or self._rung:
                return
            self._rung = True
        self._bell.release()

    def _batch(self, timeout: float) -> list[object]:
        """Everything queued, waiting up to *timeout* s for something; ``[]`` when nothing came."""
        with self._lock:
            if self._items or timeout <= 0:
                return self._take()
            self._waiting = True
        woke = self._bell.acquire(timeout=timeout)
        with self._lock:
            if not woke and self._rung:  # rung just after the timeout: take that release back
                self._bell.acquire()
            elif not woke:  # a deferred ring that never ran (its loop stopped) must not block the next
                self._ring_due = False
            self._waiting = self._rung = False
            return self._take()

    def _take(self) -> list[object]:
        """Everything queued (under the lock), noting when for the pace."""
        items, self._items = self._items, []
        if items and self._pace is not None:
            self._taken = self._clock()
        return items

    def events(self, tick: float = 1.0, *, merge: bool = False) -> Iterator[ProviderEvent | None]:
        """Yield the turn's events up to ``Done``; ``None`` after each *tick* seconds of silence.

        With *merge*, pieces that queued up while the reader was busy come as one: consecutive
        deltas joined, consecutive snapshots reduced to the newest.

        Raises:
            ProviderTimeout: a deadline passed.
            UpstreamError: the provider reported a failure.
        """
        if self._pace is not None:
            self._pace.streaming(+1)
        try:
            yield from self._events(tick, merge)
        finally:
            if self._pace is not None:
                self._pace.streaming(-1)

    def _events(self, tick: float, merge: bool) -> Iterator[ProviderEvent | None]:
        start = last = self._clock()
        started = False
        while True:
            wait = min(tick, self._until_deadline(start, last, started))
            batch = self._batch(max(0.0, wait))
            if not batch:
                self._check_deadlines(start, last, started)
                yield None
                continue
            now = self._clock()
            for item in _merged(batch) if merge else batch:
                if item is _CLOSED:
                    return
                if isinstance(item, UpstreamError):
                    raise item
                assert isinstance(item, (Created, Delta, Snapshot, Done))
                if not isinstance(item, Created):
                    started, last = True, now
                yield item
                if isinstance(item, Done):
                    return

    def _until_deadline(self, start: float, last: float, started: bool) -> float:
        now = self._clock()
        gap = (last + self.deadlines.silence) if started else (start + self.deadlines.first_token)
        return min(gap, start + self.deadlines.total) - now

    def _check_deadlines(self, start: float, last: float, started: bool) -> None:
        now = self._clock()
        d = self.deadlines
        if now - start >= d.total:
            raise ProviderTimeout(f"{self.provider}: no complete reply within {d.total:g} s",
                                  provider=self.provider)
        if not started and now - start >= d.first_token:
            raise ProviderTimeout(f"{self.provider}: no reply within {d.first_token:g} s",
                                  provider=self.provider)
        if started and now - last >= d.silence:
            raise ProviderTimeout(f"{self.provider}: the reply stalled for {d.silence:g} s",
                                  provider=self.provider)


def _merged(batch: list[object]) -> list[object]:
    """*batch* with each run of deltas joined into one and each run of snapshots cut to its last."""
    out: list[object] = []
    run: list[str] = []
    for item in batch:
        if isinstance(item, Delta):
            run.append(item.text)
            continue
        if run:
            out.append(Delta("".join(run)))
            run = []
        if isinstance(item, Snapshot) and out and isinstance(out[-1], Snapshot):
            out[-1] = item
        else:
            out.append(item)
    if run:
        out.append(Delta("".join(run)))
    return out


class Provider(Protocol):
    """A chat service RooGab can hold conversations with.

    ``send`` starts one turn: with ``handle=None`` it creates a conversation (the turn's first
    event is then ``Created``); otherwise it continues that conversation. A conversation the
    service no longer knows ends the turn with ``ConversationGone``.
    """

    name: str
    max_message_chars: int
    traits: Traits

    def start(self) -> None: ...

    def models(self) -> list[ModelInfo]: ...

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn: ...

    def forget(self, handle: str) -> None: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...

"""What every provider is: a small protocol, its event model, and the turn inbox they share.

A provider's own thread (the asyncio provider loop, or a WebSocket reader thread) puts events
into a ``Turn``; the request thread that asked for the turn drains it with ``Turn.events()``,
which enforces the deadlines and yields ``None`` on every idle tick so the API can send a
keep-alive ping. The two sides meet only at the turn's thread-safe queue.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import ProviderTimeout, UpstreamError

__all__ = [
    "Created",
    "Deadlines",
    "Delta",
    "Done",
    "Frame",
    "Health",
    "ModelInfo",
    "Provider",
    "ProviderEvent",
    "Snapshot",
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
    """The whole reply so far (cumulative services); may be HTML."""

    text: str


@dataclass(frozen=True)
class Done:
    """The reply is complete; ``text`` is the full reply when the service sends it."""

    text: str | None = None


ProviderEvent = Created | Delta | Snapshot | Done


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


@dataclass(frozen=True)
class Frame:
    """One frame exchanged with the chat service, for the inspector's wire view: when, which way
    (``out`` to the service, ``in`` from it), what kind (``socket.io`` …), the event name, and
    the payload as JSON (cut to ``WIRE_PAYLOAD_CHARS``; redacted when read)."""

    at: float
    direction: str
    kind: str
    name: str
    payload: str


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


class Turn:
    """One reply being received: fed by the provider side, drained by one request thread.

    ``wire`` keeps the turn's last ``WIRE_FRAMES`` frames (the provider notes them with ``frame``).
    """

    def __init__(self, provider: str, deadlines: Deadlines, *,
                 on_cancel: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self.deadlines = deadlines
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._on_cancel = on_cancel
        self._clock = clock
        self._cancelled = threading.Event()
        self._held: object = None
        self.wire: deque[Frame] = deque(maxlen=WIRE_FRAMES)

    def frame(self, direction: str, kind: str, name: str, payload: object) -> None:
        """Note a frame of this turn (safe from any thread)."""
        try:
            text = json.dumps(_cut_strings(payload), ensure_ascii=False, default=repr)
        except ValueError:
            text = repr(payload)
        if len(text) > WIRE_PAYLOAD_CHARS:
            text = text[:WIRE_PAYLOAD_CHARS] + f"… [{len(text) - WIRE_PAYLOAD_CHARS} more characters]"
        self.wire.append(Frame(time.time(), direction, kind, name, text))

    @property
    def cancelled(self) -> bool:
        """True once ``cancel()`` was called."""
        return self._cancelled.is_set()

    def put(self, item: ProviderEvent | UpstreamError) -> None:
        """Deliver an event or a failure; safe from any thread."""
        if not self._cancelled.is_set():
            self._inbox.put(item)

    def cancel(self) -> None:
        """Stop the turn: the client went away or the service must be told to stop."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            self._inbox.put(_CLOSED)
            if self._on_cancel is not None:
                self._on_cancel()

    def events(self, tick: float = 1.0, *, merge: bool = False) -> Iterator[ProviderEvent | None]:
        """Yield the turn's events up to ``Done``; ``None`` after each *tick* seconds of silence.

        With *merge*, pieces that queued up while the reader was busy come as one (see ``_take``).

        Raises:
            ProviderTimeout: a deadline passed.
            UpstreamError: the provider reported a failure.
        """
        start = last = self._clock()
        started = False
        while True:
            wait = min(tick, self._until_deadline(start, last, started))
            try:
                item = self._take(max(0.0, wait), merge)
            except queue.Empty:
                self._check_deadlines(start, last, started)
                yield None
                continue
            if item is _CLOSED:
                return
            if isinstance(item, UpstreamError):
                raise item
            assert isinstance(item, (Created, Delta, Snapshot, Done))
            if not isinstance(item, Created):
                started, last = True, self._clock()
            yield item
            if isinstance(item, Done):
                return

    def _take(self, timeout: float, merge: bool) -> object:
        """The next item. With *merge*, deltas already queued behind it are joined into one (and
        snapshots reduced to the newest), so a reader that fell behind catches up in one step."""
        if self._held is not None:
            item, self._held = self._held, None
        else:
            item = self._inbox.get(timeout=timeout)
        if not merge or not isinstance(item, (Delta, Snapshot)):
            return item
        texts = [item.text]
        while True:
            try:
                follower = self._inbox.get_nowait()
            except queue.Empty:
                break
            if type(follower) is not type(item):
                self._held = follower
                break
            texts.append(follower.text)
        if isinstance(item, Snapshot):
            return Snapshot(texts[-1])
        return Delta("".join(texts)) if len(texts) > 1 else item

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


class Provider(Protocol):
    """A chat service RooGab can hold conversations with.

    ``send`` starts one turn: with ``handle=None`` it creates a conversation (the turn's first
    event is then ``Created``); otherwise it continues that conversation. A conversation the
    service no longer knows ends the turn with ``ConversationGone``.
    """

    name: str
    max_message_chars: int

    def start(self) -> None: ...

    def models(self) -> list[ModelInfo]: ...

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn: ...

    def forget(self, handle: str) -> None: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...

"""MultiplexProvider: many conversations on one Socket.IO connection (providers.md §6, family A).

One ``socketio.AsyncClient`` lives on the provider loop (design.md §1) and is touched only from
that loop's thread. Request threads call ``send``, which hands a coroutine to the loop and
returns a ``Turn`` at once; the client's handlers, registered once, route every incoming event
by conversation id to the turn in flight for that conversation.

Event and field names all come from ``ProviderProfile.events``. A create is matched to its answer
by a fresh ``ref``, never by order; a service that answers without the ref (the original target,
providers.md §6) is matched only while one create is pending, so creates go one at a time until
the service has been seen to echo the ref (``_creates.Creates``). A create the service never
answers is given up at the turn's first-token deadline (for a service without refs the
connection then starts over, so its late answer cannot reach another create). Tokens are appended
in the handler before any ``await``, so they keep their arrival order (``AsyncClient`` starts its
handler tasks in arrival order).

Reconnection is python-socketio's own, on the bounded ``Reconnection`` schedule; after each
reconnect the known conversations are re-subscribed. A drop while turns are in flight fails each
of them with ``ProviderDisconnected``: a cut-off reply is an error, never a short answer.

socketio's exceptions are translated in ``socketio_errors`` (shared with the Chainlit provider).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..config import ProviderProfile
from ..errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    UpstreamError,
)
from ._creates import Creates
from ._text import safe_url, short
from .base import Created, Deadlines, Delta, Done, Health, ModelInfo, Snapshot, Traits, Turn
from .kinds import Context, Kind, NoSettings
from .loop import ProviderLoop
from .socketio_session import Reconnection, SocketSession

__all__ = ["DEMO_KIND", "KIND", "MultiplexProvider", "Reconnection"]

WIRE = "socket.io"

logger = logging.getLogger(__name__)

TRAITS = Traits(keeps_conversations=True, stream="snapshots")
# The bundled demo service takes Socket.IO frames up to this size (demo/server.py sets it). A
# prompt is JSON-encoded with non-ASCII escaped, up to 12 bytes a character; the demo kind's
# message limit keeps every frame under the cap, so a long prompt is split (or refused) before
# it could make the service drop the connection every conversation shares.
DEMO_MAX_FRAME_BYTES = 16 * 1024 * 1024
DEMO_TRAITS = Traits(keeps_conversations=True, stream="snapshots",
                     max_message_chars=(DEMO_MAX_FRAME_BYTES - 64 * 1024) // 12)


@dataclass(eq=False)
class _Flight:
    """One turn in flight: where its events go and what has arrived so far."""

    conversation: str | None
    turn: Turn = field(init=False)
    ref: str = field(default_factory=lambda: uuid.uuid4().hex)
    parts: list[str] = field(default_factory=list)
    snapshot: str | None = None

    def text(self) -> str:
        """The reply so far."""
        return self.snapshot if self.snapshot is not None else "".join(self.parts)


class MultiplexProvider:
    """A multiplexed Socket.IO chat service: one connection, many conversations.

    Raises (from ``__init__``):
        ConfigError: the profile's URL is not an http(s) or ws(s) URL.
    """

    def __init__(self, profile: ProviderProfile, loop: ProviderLoop, *, connect_timeout: float = 10.0,
                 headers: Mapping[str, str] | None = None,
                 reconnection: Reconnection | None = None, traits: Traits = TRAITS) -> None:
        if urlsplit(profile.url).scheme not in ("http", "https", "ws", "wss"):
            raise ConfigError(f"providers.{profile.name}.url", "must be an http(s) or ws(s) URL")
        self.profile = profile
        self.name = profile.name
        self.traits = traits
        self.max_message_chars = traits.message_limit(profile.max_message_chars)
        self._ev = profile.events
        self._loop = loop
        self._connect_timeout = connect_timeout
        self._headers = dict(headers or {})
        self._where = safe_url(profile.url)
        self._health = Health(ready=False, connected=False, since=time.time())
        # Everything below is touched only on the provider loop's thread.
        self._socket = SocketSession(self.name, self._where, reconnection or Reconnection(), self._handlers(), on_connect=self._on_connect,
                                     on_disconnect=self._on_disconnect, on_failure=self._on_failure)
        self._connect_lock: asyncio.Lock | None = None
        self._creating: Creates[_Flight] = Creates()
        self._flights: dict[str, _Flight] = {}
        self._known: set[str] = set()
        self._subscribed: set[str] = set()
        self._draining: dict[str, asyncio.Event] = {}
        self._closed = False

    # -- the Provider protocol (request threads) -------------------------------------------

    def start(self) -> None:
        """Connect to the service (a no-op when connected).

        Raises:
            ProviderUnavailable: the connection could not be made; the message says why.
        """
        try:
            self._loop.run(self._connect(), timeout=self._connect_timeout + 5.0)
        except TimeoutError as exc:
            raise ProviderUnavailable(f"{self.name}: no connection to {self._where} within "
                                      f"{self._connect_timeout:g} s", provider=self.name) from exc

    def models(self) -> list[ModelInfo]:
        """The profile's models, each with the profile's context length."""
        return [ModelInfo(m, self.profile.context_length) for m in self.profile.models]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        """Start a turn: create a conversation (``handle=None``) or continue one; never blocks."""
        flight = _Flight(handle)
        turn = flight.turn = Turn(self.name, deadlines, defer=self._loop.coalesce, pace=self._loop.pace,
                                  on_cancel=functools.partial(self._loop.call_soon, self._abandon, flight))
        self._loop.start_turn(turn, self._begin(flight, model, text, deadlines))
        return turn

    def forget(self, handle: str) -> None:
        """Ask the service to delete a conversation; never blocks, never raises."""
        self._loop.fire(self._forget(handle), f"{self.name}: forget({handle})")

    def health(self) -> Health:
        """Readiness for ``/healthz``: connected or not, and the last error."""
        return self._health

    def close(self) -> None:
        """Disconnect (and stop any reconnection); turns still in flight fail. Idempotent."""
        self._loop.finish(self._shutdown(), self._connect_timeout, f"{self.name}: closing the connection")

    # -- connection (loop thread) ------------------------------------------------------

    def _handlers(self) -> dict[str, Any]:
        ev = self._ev
        return {ev.created: self._on_created, ev.delta: self._on_delta, ev.snapshot: self._on_snapshot,
                ev.end: self._on_end, ev.error: self._on_error}

    async def _connect(self) -> None:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            self._closed = False
            if self._socket.connected.is_set():
                return
            try:
                await self._socket.open(self.profile.url, headers=self._headers, timeout=self._connect_timeout,
                                        socketio_path=self._ev.socketio_path)
            except ProviderUnavailable as exc:
                self._set_health(connected=False, error=str(exc))
                raise

    async def _ensure_connected(self) -> None:
        """Wait for python-socketio's reconnection, or connect once when it is not trying."""
        if self._closed:
            raise ProviderUnavailable(f"{self.name}: the provider was closed", provider=self.name)
        await self._socket.ensure(self._connect, self._connect_timeout)

    async def _shutdown(self) -> None:
        self._closed = True
        await self._socket.drop()  # a later start() opens a fresh client and HTTP session
        self._fail_all(lambda f: ProviderUnavailable(f"{self.name}: the provider was closed",
                                                     provider=self.name))
        self._set_health(connected=False, error=None)

    def _set_health(self, *, connected: bool, error: str | None) -> None:
        self._health = Health(ready=connected, connected=connected,
                              last_error=error if error is not None else self._health.last_error,
                              since=time.time())

    async def _on_connect(self) -> None:
        self._set_health(connected=True, error=None)
        rooms = [self._room(cid) for cid in sorted(self._known)]
        self._subscribed = set(self._known)
        if rooms:
            await self._socket.emit_quietly(self._ev.subscribe, rooms)

    def _on_disconnect(self, reason: object) -> None:
        self._subscribed.clear()
        self._set_health(connected=False, error=f"disconnected: {reason}")
        self._fail_all(lambda f: ProviderDisconnected(
            f"{self.name}: the connection to {self._where} dropped in the middle of a reply ({reason})",
            provider=self.name, partial=f.text()))

    def _on_failure(self, message: str) -> None:
        self._set_health(connected=False, error=message)

    def _fail_all(self, error: Any) -> None:
        flights = self._creating.take_all() + list(self._flights.values())
        self._flights.clear()
        for flight in flights:
            flight.turn.put(error(flight))
        for done in self._draining.values():
            done.set()
        self._draining.clear()

    # -- turns (loop thread) -----------------------------------------------------------

    async def _begin(self, flight: _Flight, model: str, text: str, deadlines: Deadlines) -> None:
        try:
            await self._ensure_connected()
            if flight.turn.cancelled:
                return
            if flight.conversation is None:
                await self._create(flight, model, text, deadlines.first_token)
            else:
                await self._continue(flight, flight.conversation, text, deadlines)
        except UpstreamError as exc:
            self._discard(flight)
            flight.turn.put(exc)

    async def _create(self, flight: _Flight, model: str, text: str, limit: float) -> None:
        ev = self._ev
        await self._creating.wait_turn(limit)
        if flight.turn.cancelled:
            return
        await self._ensure_connected()  # a create given up meanwhile may have restarted the connection
        self._creating.add(flight, limit, self._expire)
        payload = {ev.prompt_field: text, ev.model_field: model, ev.ref_field: flight.ref}
        flight.turn.frame("out", WIRE, ev.create, payload)
        await self._socket.emit(ev.create, payload)

    async def _continue(self, flight: _Flight, cid: str, text: str, deadlines: Deadlines) -> None:
        ev = self._ev
        self._supersede(cid)
        await self._drained(cid, deadlines.silence)
        if flight.turn.cancelled:  # the agent went away while the last reply drained
            return
        self._flights[cid] = flight
        self._known.add(cid)
        if cid not in self._subscribed:
            self._subscribed.add(cid)
            flight.turn.frame("out", WIRE, ev.subscribe, [self._room(cid)])
            await self._socket.emit(ev.subscribe, [self._room(cid)])
        flight.turn.frame("out", WIRE, ev.send, {ev.prompt_field: text, ev.conversation_field: cid})
        await self._socket.emit(ev.send, {ev.prompt_field: text, ev.conversation_field: cid})

    def _supersede(self, cid: str) -> None:
        """A new turn in *cid* means its caller gave up on the old one (turns are serialised
        per conversation upstream): end the old turn; let a reply already under way drain."""
        old = self._flights.pop(cid, None)
        if old is None:
            return
        old.turn.put(ProviderRejected(f"{self.name}: superseded by a newer turn in conversation {cid}",
                                      provider=self.name))
        self._drain_later(cid, old)

    async def _drained(self, cid: str, limit: float) -> None:
        """Wait until the rest of an abandoned reply in *cid* has gone by (at most *limit* s)."""
        done = self._draining.get(cid)
        if done is None:
            return
        try:
            await asyncio.wait_for(done.wait(), limit)
        except asyncio.TimeoutError:
            logger.info("%s: conversation %s still busy after %g s; sending anyway", self.name, cid, limit)
        self._draining.pop(cid, None)

    def _abandon(self, flight: _Flight) -> None:
        """The request went away: stop routing to its turn; let the rest of the reply drain."""
        cid = flight.conversation
        if cid is not None and self._flights.get(cid) is flight:
            del self._flights[cid]
            self._drain_later(cid, flight)

    def _drain_later(self, cid: str, flight: _Flight) -> None:
        """Hold the next turn in *cid* until the end of a reply that has started to arrive.

        A reply that never started (a silent service) is not waited for: it may never come.
        """
        if flight.parts or flight.snapshot is not None:
            self._draining[cid] = asyncio.Event()

    def _expire(self, flight: _Flight, limit: float) -> None:
        """Give up a create the service has not answered in *limit* s (its turn fails with it).

        Its answer may still come; without a ref it would be taken for the next create's (another
        agent's task). So unless the service echoes refs, the connection starts over: on a new
        one that answer cannot arrive."""
        if not self._creating.pending(flight):
            return
        logger.info("%s: no answer to a create within %g s; given up", self.name, limit)
        timeout = ProviderTimeout(f"{self.name}: the service did not open the conversation within {limit:g} s",
                                  provider=self.name)
        if self._creating.echoes_ref is True:
            self._creating.drop(flight)
            flight.turn.put(timeout)
            return
        why = f"a create went unanswered for {limit:g} s"
        self._loop.fire(self._restart(why, {flight.ref: timeout}), f"{self.name}: restart")

    async def _restart(self, why: str, errors: Mapping[str, UpstreamError]) -> None:
        """Fail the turns on this connection (with *errors* by ref, else as dropped) and close
        it, holding the connect lock: the next turn waits, then connects anew."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            self._subscribed.clear()
            self._set_health(connected=False, error=why)
            self._fail_all(lambda f: errors.get(f.ref) or ProviderDisconnected(
                f"{self.name}: {why}, so the connection to {self._where} was started over",
                provider=self.name, partial=f.text()))
            await self._socket.drop()

    def _discard(self, flight: _Flight) -> None:
        self._creating.drop(flight)
        cid = flight.conversation
        if cid is not None and self._flights.get(cid) is flight:
            del self._flights[cid]

    async def _forget(self, handle: str) -> None:
        self._known.discard(handle)
        self._subscribed.discard(handle)
        done = self._draining.pop(handle, None)  # nothing will wait for the rest of its reply
        if done is not None:
            done.set()
        if self._socket.connected.is_set():
            await self._socket.emit_quietly(self._ev.delete, {self._ev.conversation_field: handle})

    def _room(self, cid: str) -> str:
        return self._ev.room.format(id=cid)

    # -- incoming events (loop thread; route before any await) -------------------------

    async def _on_created(self, data: object) -> None:
        ev = self._ev
        payload = data if isinstance(data, dict) else {}
        cid, ref = payload.get(ev.id_field), payload.get(ev.ref_field)
        self._creating.echoes_ref = isinstance(ref, str)
        flight = self._creating.pop(ref) if isinstance(ref, str) else self._creating.only()
        if flight is None or not isinstance(cid, str) or not cid:
            logger.debug("%s: %s for a create that is not ours (ref %r)", self.name, ev.created, ref)
            return
        flight.conversation = cid
        flight.turn.frame("in", WIRE, ev.created, data)
        if flight.turn.cancelled:  # nobody will ever know this handle: delete it again
            await self._socket.emit_quietly(ev.delete, {ev.conversation_field: cid})
            return
        self._flights[cid] = flight
        self._known.add(cid)
        self._subscribed.add(cid)
        flight.turn.put(Created(cid))
        flight.turn.frame("out", WIRE, ev.subscribe, [self._room(cid)])
        await self._socket.emit_quietly(ev.subscribe, [self._room(cid)])

    def _flight_for(self, data: object) -> tuple[_Flight | None, str]:
        payload = data if isinstance(data, dict) else {}
        content = payload.get(self._ev.content_field)
        cid = payload.get(self._ev.conversation_field)
        flight = self._flights.get(cid) if isinstance(cid, str) else None
        return flight, content if isinstance(content, str) else ""

    def _on_delta(self, data: object) -> None:
        flight, piece = self._flight_for(data)
        if flight is not None:
            flight.turn.frame("in", WIRE, self._ev.delta, data)
        if flight is not None and piece:
            flight.parts.append(piece)
            flight.turn.put(Delta(piece))

    def _on_snapshot(self, data: object) -> None:
        flight, whole = self._flight_for(data)
        if flight is not None:
            flight.turn.frame("in", WIRE, self._ev.snapshot, data)
            flight.snapshot = whole
            flight.turn.put(Snapshot(whole))

    def _on_end(self, data: object) -> None:
        cid = data.get(self._ev.conversation_field) if isinstance(data, dict) else None
        if not isinstance(cid, str):
            return
        done = self._draining.pop(cid, None)
        if done is not None:
            done.set()
        flight = self._flights.pop(cid, None)
        if flight is not None:
            flight.turn.frame("in", WIRE, self._ev.end, data)
            flight.turn.put(Done(flight.text()))

    def _on_error(self, data: object) -> None:
        ev = self._ev
        payload = data if isinstance(data, dict) else {}
        cid, ref = payload.get(ev.conversation_field), payload.get(ev.ref_field)
        code, message = payload.get("code"), short(payload.get("message"))
        flight = None
        if isinstance(cid, str):
            flight = self._flights.pop(cid, None)
            done = self._draining.pop(cid, None)
            if done is not None:
                done.set()
        if flight is None and isinstance(ref, str):
            flight = self._creating.pop(ref)
        if code == ev.gone_code and isinstance(cid, str):
            self._known.discard(cid)
            self._subscribed.discard(cid)
        if flight is None:
            logger.debug("%s: %s for no turn in flight: %s %s", self.name, ev.error, code, message)
            return
        flight.turn.frame("in", WIRE, ev.error, data)
        if code == ev.gone_code:
            flight.turn.put(ConversationGone(
                f"{self.name}: the service no longer knows conversation {cid}: {message}", provider=self.name))
        else:
            flight.turn.put(ProviderRejected(
                f"{self.name}: the service refused the turn ({short(code)}): {message}", provider=self.name))


def _build(profile: ProviderProfile, settings: NoSettings, context: Context) -> MultiplexProvider:
    return MultiplexProvider(profile, context.loop, connect_timeout=context.connect_timeout)


def _build_demo(profile: ProviderProfile, settings: NoSettings, context: Context) -> MultiplexProvider:
    if not profile.url:
        raise ConfigError("providers", "no chat service is configured: add a [[providers]] table to "
                          "the --config file (see docs/providers.md), or try `roogab demo`")
    return MultiplexProvider(profile, context.loop, connect_timeout=context.connect_timeout, traits=DEMO_TRAITS)


KIND = Kind("socketio", TRAITS, NoSettings, _build)
DEMO_KIND = Kind("demo", DEMO_TRAITS, NoSettings, _build_demo)

"""ChainlitProvider: a Chainlit >= 2.0 app, one Socket.IO connection per conversation (providers.md §1).

Start-up is plain HTTP, in ``chainlit_http`` (the auth config, the login when the app asks for
one, the chat profiles when the profile lists no models).

A conversation is a Chainlit *session*: RooGab invents its ``sessionId`` (the handle) and opens
one ``socketio.AsyncClient`` for it, on the provider loop (design.md §1), with the ``auth``
payload as a callable so python-socketio's own, bounded reconnection reuses the same
``sessionId`` and Chainlit restores the session. The chat profile (= the model) is chosen at
connect time. Every (re)connect emits ``connection_successful``; its ``task_end`` answer is the
handshake.

A turn is ours from the moment ``client_message`` goes out. Its steps are recognised by their
parent chain, which starts at our message id (the ``on_message`` run step's ``parentId``), so a
stray message of an older, stopped turn can never leak into a newer one. The turn ends at the
``task_end`` that brings the count of running tasks back to zero after our run step appeared;
the ``task_end`` of the handshake and the ``task_start``/``task_end`` pair of ``on_chat_start``
are accounted for, never mistaken for the end. Tokens are handled in synchronous handlers, so
they keep their arrival order.

Failures: a drop mid-reply → ``ProviderDisconnected`` (never a short answer); an ``isError``
step → ``ProviderRejected``; ``first_interaction`` on a continuation means the server started
the session afresh (it restarted, or the session timed out) → ``stop`` and ``ConversationGone``
so RooGab replays.

The connection and its reconnection bookkeeping are a ``SocketSession`` (shared with the
multiplexed and Open WebUI providers), which also translates socketio's exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..config import ProviderProfile
from ..errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamError,
)
from ._chainlit_reply import AssistantReply
from ._text import safe_url, short
from .base import Created, Deadlines, Health, ModelInfo, Traits, Turn
from .chainlit_http import DEFAULT_MODEL, ChainlitWeb
from .kinds import Context, Kind, NoSettings
from .login import Retry
from .loop import ProviderLoop
from .socketio_session import Reconnection, SocketSession

__all__ = ["DEFAULT_MODEL", "KIND", "ChainlitProvider"]

logger = logging.getLogger(__name__)

WIRE = "socket.io"  # the wire view's name for the frames of this kind

SOCKET_PATH = "/ws/socket.io"
STOPPED_TEXT = "Task manually stopped."  # what Chainlit sends when it honours a ``stop``
STOP_WAIT = 5.0  # how long a new turn waits for an earlier ``stop`` to take effect
TRAITS = Traits(keeps_conversations=True, stream="deltas")


@dataclass(eq=False)
class _Flight:
    """One turn: our message id, the steps descending from it, and the reply being assembled."""

    turn: Turn
    continuation: bool
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    family: set[str] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    started: bool = False
    reply: AssistantReply = field(init=False)

    def __post_init__(self) -> None:
        self.family.add(self.message_id)
        self.reply = AssistantReply(self.turn)

    def adopt(self, step: dict[str, Any]) -> bool:
        """True when *step* descends from our message (and remember it for its children)."""
        sid = step.get("id")
        if sid in self.family:
            return True
        if step.get("parentId") in self.family and isinstance(sid, str):
            self.family.add(sid)
            self.started = True
            return True
        return False


@dataclass(eq=False)
class _Session:
    """One Chainlit session: its id (the handle), chat profile and Socket.IO connection."""

    handle: str
    chat_profile: str
    socket: SocketSession = field(init=False)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=lambda: _event(True))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: int = 0
    flight: _Flight | None = None

    def auth(self) -> dict[str, str]:
        """The connect ``auth`` payload; called again on every reconnect."""
        return {"clientType": "webapp", "sessionId": self.handle, "threadId": "", "userEnv": "{}",
                "chatProfile": self.chat_profile}


class ChainlitProvider:
    """A Chainlit app reached the way its web page reaches it.

    Raises (from ``__init__``):
        ConfigError: the profile's URL is not an http(s) URL.
    """

    def __init__(self, profile: ProviderProfile, loop: ProviderLoop, *, connect_timeout: float = 10.0,
                 reconnection: Reconnection | None = None, retry: Retry | None = None) -> None:
        parts = urlsplit(profile.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"providers.{profile.name}.url", "must be the app's http(s) URL")
        self.profile = profile
        self.name = profile.name
        self.traits = TRAITS
        self.max_message_chars = TRAITS.message_limit(profile.max_message_chars)
        self._loop = loop
        self._connect_timeout = connect_timeout
        self._reconnection = reconnection or Reconnection()
        self._base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self._socket_path = parts.path.rstrip("/") + SOCKET_PATH
        self._where = safe_url(profile.url)
        self._web = ChainlitWeb(profile, timeout=connect_timeout, retry=retry or Retry())
        self._health = Health(ready=False, connected=False, since=time.time())
        # Touched only on the provider loop's thread:
        self._sessions: dict[str, _Session] = {}
        self._gone: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the Provider protocol (request threads) -------------------------------------------

    def start(self) -> None:
        """Check the app, log in when it asks for it, and discover its chat profiles.

        Raises:
            ConfigError: the cookie file cannot be read.
            ProviderRejected: the login was refused, or the app needs one and none is configured.
            ProviderUnavailable: the app could not be reached, or does not look like Chainlit.
        """
        try:
            self._web.start()
        except UpstreamError as exc:
            self._set_health(connected=isinstance(exc, ProviderRejected), error=str(exc), logged_in=False)
            raise
        self._closed = False
        self._set_health(connected=True, error=None, logged_in=True if self._web.login_required else None)
        logger.info("%s: %s ready, models: %s", self.name, self._where, ", ".join(self._web.models))

    def models(self) -> list[ModelInfo]:
        """The chat profiles (discovered or configured), ``default`` for an app without any; none
        while the app has not been reached (no placeholder to paste into an agent)."""
        return [ModelInfo(m, self.profile.context_length) for m in self._web.models]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        """Start a turn in a new session (``handle=None``) or an existing one; never blocks."""
        turn = Turn(self.name, deadlines, defer=self._loop.coalesce, pace=self._loop.pace,
                    on_cancel=lambda: self._loop.call_soon(self._abandon, turn))
        flight = _Flight(turn, continuation=handle is not None)
        self._loop.start_turn(turn, self._begin(flight, handle, model, text))
        return turn

    def forget(self, handle: str) -> None:
        """Tell the app to drop the session (``clear_session``) and disconnect; never blocks."""
        self._loop.fire(self._forget(handle), f"{self.name}: forget({handle})")

    def health(self) -> Health:
        """Readiness for ``/healthz``: reachable, logged in, the last error and since when."""
        return self._health

    def close(self) -> None:
        """Disconnect every session (keeping them on the server for a later resume). Idempotent."""
        self._loop.finish(self._shutdown(), self._connect_timeout + 5.0, f"{self.name}: closing the sessions")

    def _relogin(self) -> bool:
        """Log in again with the password (a refused socket after the token expired)."""
        if not self._web.relogin():
            return False
        self._set_health(connected=True, error=None, logged_in=True)
        return True

    def _set_health(self, *, connected: bool, error: str | None, logged_in: bool | None = None) -> None:
        old = self._health
        logged = old.logged_in if logged_in is None and self._web.login_required else logged_in
        self._health = Health(ready=connected and logged is not False, connected=connected, logged_in=logged,
                              last_error=error if error is not None else old.last_error, since=time.time())

    # -- connection (loop thread) ---------------------------------------------------------

    def _new_session(self, handle: str, chat_profile: str) -> _Session:
        s = _Session(handle, chat_profile)
        handlers: dict[str, Callable[..., Any]] = {
            "task_start": self._on_task_start, "task_end": self._on_task_end,
            "first_interaction": self._on_first_interaction, "stream_start": self._on_stream_start,
            "stream_token": self._on_stream_token, "new_message": self._on_step, "update_message": self._on_step}
        s.socket = SocketSession(
            self.name, self._where, self._reconnection,
            {event: functools.partial(self._on_event, s, event, handler) for event, handler in handlers.items()},
            on_connect=functools.partial(self._on_connect, s), on_disconnect=functools.partial(self._on_disconnect, s),
            on_failure=self._on_failure)
        return s

    def _headers(self) -> dict[str, str]:
        """The handshake headers; called again on every reconnect, so a new login is picked up."""
        headers = {k: v for k, v in self.profile.headers if k.lower() != "cookie"}
        cookie = self._web.cookie_line(self._base + self._socket_path)
        if cookie:
            headers["Cookie"] = cookie
        return headers

    async def _connect(self, s: _Session) -> None:
        """Open a fresh connection for *s*, then the handshake."""
        try:
            await s.socket.open(self._base, headers=self._headers, auth=s.auth, socketio_path=self._socket_path,
                                timeout=self._connect_timeout)
        except ProviderUnavailable as exc:
            if s.socket.refused:
                raise ProviderRejected(f"{self.name}: the app refused the connection ({short(s.socket.refused)})",
                                       provider=self.name) from exc
            self._set_health(connected=False, error=str(exc))
            raise

    async def _ensure_connected(self, s: _Session) -> None:
        """Connected and handshaken: wait for python-socketio's reconnection, else connect anew."""
        await s.socket.ensure(functools.partial(self._connect_or_relogin, s), self._connect_timeout)
        try:
            await asyncio.wait_for(s.ready.wait(), self._connect_timeout)
        except asyncio.TimeoutError:
            raise ProviderUnavailable(f"{self.name}: {self._where}: the handshake was not answered",
                                      provider=self.name) from None

    async def _connect_or_relogin(self, s: _Session) -> None:
        """Connect; when the app refuses us and a password is configured, log in again once."""
        try:
            await self._connect(s)
        except ProviderRejected:
            if not await asyncio.get_running_loop().run_in_executor(None, self._relogin):
                raise
            await self._connect(s)

    async def _on_connect(self, s: _Session) -> None:
        s.tasks = 0
        s.ready.clear()
        self._set_health(connected=True, error=None)
        await s.socket.emit_quietly("connection_successful")

    def _on_disconnect(self, s: _Session, reason: object) -> None:
        s.ready.clear()
        s.tasks = 0
        flight, s.flight = s.flight, None
        self._set_health(connected=False, error=f"disconnected: {reason}")
        if flight is not None:
            flight.turn.put(ProviderDisconnected(
                f"{self.name}: the connection to {self._where} dropped in the middle of a reply ({reason})",
                provider=self.name, partial=flight.reply.text()))

    def _on_failure(self, message: str) -> None:
        self._set_health(connected=False, error=message)

    # -- turns (loop thread) --------------------------------------------------------------

    async def _begin(self, flight: _Flight, handle: str | None, model: str, text: str) -> None:
        s: _Session | None = None
        try:
            s = self._session(handle, model)
            async with s.lock:
                await self._ensure_connected(s)
                if handle is None:
                    flight.turn.put(Created(s.handle))
                if not await self._take_turn(s, flight):
                    return
                payload = _message(flight.message_id, text)
                flight.turn.frame("out", WIRE, "client_message", payload)
                await s.socket.emit("client_message", payload)
        except UpstreamError as exc:
            if s is not None and s.flight is flight:
                s.flight = None
            if s is not None and handle is None:
                await self._retire(s, clear=False)
            flight.turn.put(exc)

    def _session(self, handle: str | None, model: str) -> _Session:
        if self._closed:
            raise ProviderUnavailable(f"{self.name}: the provider was closed", provider=self.name)
        if handle is not None and handle in self._gone:
            raise ConversationGone(f"{self.name}: session {handle} is gone from the app", provider=self.name)
        if handle is not None and handle in self._sessions:
            return self._sessions[handle]
        profile = model if model in self._web.chat_profiles or model != DEFAULT_MODEL else ""
        # An unknown handle (e.g. from before a RooGab restart) reconnects with the same sessionId:
        # Chainlit restores the session if it still has it; otherwise first_interaction tells us.
        s = self._new_session(handle or str(uuid.uuid4()), quote(profile, safe=""))
        self._sessions[s.handle] = s
        return s

    async def _take_turn(self, s: _Session, flight: _Flight) -> bool:
        """Make *flight* the session's turn: one at a time; an older one is superseded and stopped.

        Returns False when *flight* was cancelled meanwhile (then nothing is to be sent).
        """
        old, s.flight = s.flight, None
        if old is not None:
            old.turn.put(ProviderRejected(f"{self.name}: superseded by a newer turn in session {s.handle}",
                                          provider=self.name))
            self._request_stop(s)
        if not s.stopped.is_set():
            try:  # Chainlit's stop cancels whatever task is current: let it land before the next one
                await asyncio.wait_for(s.stopped.wait(), STOP_WAIT)
            except asyncio.TimeoutError:
                logger.info("%s: session %s: no answer to stop; going on", self.name, s.handle)
            s.stopped.set()
        if flight.turn.cancelled:
            return False
        s.flight = flight
        return True

    def _request_stop(self, s: _Session) -> None:
        """Emit ``stop``; the next turn waits for its answer (``s.stopped``), cleared right here so
        no ``client_message`` can slip in first and be the task that ``stop`` cancels."""
        s.stopped.clear()
        self._spawn(s.socket.emit_quietly("stop"))

    def _abandon(self, turn: Turn) -> None:
        """The request went away: stop routing to its turn and tell the app to stop it."""
        for s in self._sessions.values():
            if s.flight is not None and s.flight.turn is turn:
                s.flight = None
                self._request_stop(s)

    async def _forget(self, handle: str) -> None:
        s = self._sessions.get(handle)
        if s is not None:
            await self._retire(s, clear=True)

    async def _retire(self, s: _Session, *, clear: bool) -> None:
        """Close *s*'s connection; with *clear*, ask the app to drop the session first."""
        if self._sessions.get(s.handle) is s:
            del self._sessions[s.handle]
        flight, s.flight = s.flight, None
        if flight is not None:
            flight.turn.put(ProviderUnavailable(f"{self.name}: session {s.handle} was closed", provider=self.name))
        if clear and s.socket.connected.is_set():
            try:  # with an ack: the server must mark the session before it sees the disconnect
                await s.socket.call("clear_session", timeout=self._connect_timeout)
            except UpstreamError as exc:
                logger.info("%s", exc)
        await s.socket.drop()

    async def _shutdown(self) -> None:
        self._closed = True
        for s in list(self._sessions.values()):
            await self._retire(s, clear=False)
        for task in list(self._background):
            task.cancel()
        self._set_health(connected=False, error=None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- incoming events (loop thread; synchronous, so they keep their arrival order) --------

    def _on_event(self, s: _Session, event: str, handler: Callable[..., None], data: object = None) -> None:
        """Each event while a turn is the session's goes into that turn's wire view first."""
        if s.flight is not None:
            s.flight.turn.frame("in", WIRE, event, data)
        handler(s, data)

    def _on_task_start(self, s: _Session, data: object = None) -> None:
        s.tasks += 1

    def _on_task_end(self, s: _Session, data: object = None) -> None:
        if not s.ready.is_set():  # the answer to connection_successful
            s.ready.set()
            return
        s.tasks = max(0, s.tasks - 1)
        flight = s.flight
        if s.tasks == 0 and flight is not None and flight.started:
            s.flight = None
            flight.reply.finish()

    def _on_first_interaction(self, s: _Session, data: object = None) -> None:
        flight = s.flight
        if flight is None or not flight.continuation:
            return
        s.flight = None
        self._gone.add(s.handle)
        flight.turn.put(ConversationGone(
            f"{self.name}: the app no longer knows session {s.handle} (it restarted or the session expired)",
            provider=self.name))
        self._request_stop(s)
        self._spawn(self._retire(s, clear=True))

    def _on_stream_start(self, s: _Session, data: object = None) -> None:
        flight = s.flight
        if flight is None or not isinstance(data, dict) or not flight.adopt(data):
            return
        mid = data.get("id")
        if data.get("type") == "assistant_message" and isinstance(mid, str):
            flight.streams.add(mid)
            output = data.get("output")
            flight.reply.append(mid, output if isinstance(output, str) else "")

    def _on_stream_token(self, s: _Session, data: object = None) -> None:
        flight = s.flight
        if flight is None or not isinstance(data, dict) or data.get("isInput"):
            return
        mid, token = data.get("id"), data.get("token")
        if mid not in flight.streams or not isinstance(mid, str) or not isinstance(token, str):
            return
        if data.get("isSequence"):
            flight.reply.replace(mid, token)
        else:
            flight.reply.append(mid, token)

    def _on_step(self, s: _Session, data: object = None) -> None:
        """``new_message`` / ``update_message``: a step of ours, an error, or the final text."""
        if not isinstance(data, dict):
            return
        if data.get("parentId") is None and data.get("output") == STOPPED_TEXT:
            s.stopped.set()
        flight = s.flight
        if flight is None:
            return
        ours = flight.adopt(data)
        if data.get("isError") and (ours or data.get("parentId") is None):
            s.flight = None
            flight.turn.put(ProviderRejected(f"{self.name}: the app reported an error: "
                                             f"{short(data.get('output')) or 'no details'}", provider=self.name))
            return
        mid, output = data.get("id"), data.get("output")
        if ours and data.get("type") == "assistant_message" and isinstance(mid, str) and isinstance(output, str):
            flight.streams.add(mid)
            flight.reply.replace(mid, output)


def _event(is_set: bool) -> asyncio.Event:
    event = asyncio.Event()
    if is_set:
        event.set()
    return event


def _message(message_id: str, text: str) -> dict[str, object]:
    """The ``client_message`` payload of a user message (providers.md §1.3)."""
    created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    step = {"id": message_id, "threadId": "", "name": "User", "type": "user_message", "output": text,
            "createdAt": created}
    return {"message": step, "fileReferences": []}


def _build(profile: ProviderProfile, settings: NoSettings, context: Context) -> ChainlitProvider:
    return ChainlitProvider(profile, context.loop, connect_timeout=context.connect_timeout)


KIND = Kind("chainlit", TRAITS, NoSettings, _build)

"""WebSocketProvider: a chat service that speaks JSON frames over a plain WebSocket (providers.md §2.1, §6 C).

One conversation = one WebSocket connection (websocket-client) with one reader thread, as a
Cheshire Cat 1.x page has one socket whose working memory is the conversation. The handle is a
uuid RooGab assigns. Frame shapes come from ``ProviderProfile.frames``: the prompt goes out as
``{send_field: text}``; ``token_type`` frames carry the next piece of the reply (or, with
``profile.stream == "cumulative"``, the whole reply so far), a ``final_type`` frame the whole
reply and the end of the turn, an ``error_type`` frame a refusal.

The reader thread feeds the turn's thread-safe inbox; request threads only send. A connection
that drops fails the turn in flight with ``ProviderDisconnected``; the conversation lived on that
connection, so the next turn for its handle gets ``ConversationGone`` and RooGab replays it on a
new one. Cookies (from the cookie file) and the profile's headers go on every handshake.

This is the only module that names websocket-client's exceptions; ``_websocket_errors``
translates them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import websocket

from ..config import ProviderProfile, WebSocketFrames
from ..cookies import Cookie, cookie_header, expiry_warnings, load_cookies
from ..errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamError,
)
from ._text import safe_url, short
from .base import Created, Deadlines, Delta, Done, Health, ModelInfo, Snapshot, Traits, Turn
from .kinds import Context, Kind, NoSettings

__all__ = ["DEFAULT_MODEL", "WebSocketProvider"]

logger = logging.getLogger(__name__)

TRAITS = Traits(keeps_conversations=True, stream="deltas")
WIRE = "websocket"

DEFAULT_MODEL = "default"
_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


@contextmanager
def _websocket_errors(provider: str, action: str) -> Iterator[None]:
    """Translate websocket-client's (and the socket's) exceptions into RooGab's, once, here."""
    try:
        yield
    except websocket.WebSocketBadStatusException as exc:
        status = exc.status_code
        kind = ProviderRejected if status in (401, 403) else ProviderUnavailable
        raise kind(f"{provider}: {action}: the handshake was refused ({status})", provider=provider) from exc
    except websocket.WebSocketTimeoutException as exc:
        raise ProviderUnavailable(f"{provider}: {action}: timed out", provider=provider) from exc
    except websocket.WebSocketConnectionClosedException as exc:
        raise ProviderDisconnected(f"{provider}: {action}: the connection is closed", provider=provider) from exc
    except websocket.WebSocketException as exc:
        raise ProviderUnavailable(f"{provider}: {action}: {type(exc).__name__}", provider=provider) from exc
    except OSError as exc:
        raise ProviderUnavailable(f"{provider}: {action}: {exc.strerror or type(exc).__name__}",
                                  provider=provider) from exc


def socket_url(profile: ProviderProfile) -> str:
    """The WebSocket URL: the profile's URL (http → ws) with ``frames.path`` appended, query kept.

    Raises:
        ConfigError: the URL is not http(s) or ws(s).
    """
    parts = urlsplit(profile.url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ConfigError(f"providers.{profile.name}.url", "must be an http(s) or ws(s) URL")
    path = parts.path.rstrip("/") + "/" + profile.frames.path.lstrip("/")
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


@dataclass(eq=False)
class _Flight:
    """One turn on a connection: its inbox and the reply so far."""

    turn: Turn
    prompt: str
    parts: list[str] = field(default_factory=list)
    snapshot: str | None = None
    abandoned: bool = False

    def reply(self) -> str:
        """The reply so far."""
        return self.snapshot if self.snapshot is not None else "".join(self.parts)


class _Connection:
    """One conversation: a WebSocket, its reader thread, and the turn in flight on it."""

    def __init__(self, provider: WebSocketProvider, handle: str) -> None:
        self.provider = provider
        self.handle = handle
        self.ws: websocket.WebSocket | None = None
        self.flight: _Flight | None = None
        self.lock = threading.Lock()  # guards ws, flight, closing, dropped
        self.idle = threading.Event()  # no reply under way
        self.closing = False
        self.dropped = False
        self.thread = threading.Thread(target=self._run, name=f"roogab-ws-{provider.name}-{handle[:8]}",
                                       daemon=True)

    def open(self, first: _Flight) -> None:
        """Connect and send *first* on the reader thread (``send`` must not block on a handshake)."""
        self.flight = first
        self.thread.start()

    def take_turn(self, flight: _Flight, wait: float) -> None:
        """Send *flight*'s prompt once the previous reply is over.

        Raises:
            ConversationGone: the connection dropped, or an abandoned reply never ended.
        """
        if not self.idle.wait(wait):
            self.provider.drop(self, "an earlier reply did not end")
        with self.lock:
            if self.dropped or self.closing or self.ws is None:
                raise ConversationGone(f"{self.provider.name}: conversation {self.handle} was on a connection "
                                       "that is gone", provider=self.provider.name)
            self.flight = flight
            self.idle.clear()
            ws = self.ws
        try:
            self._send(ws, flight)
        except UpstreamError as exc:
            with self.lock:
                self.flight = None
                self.dropped = True
            raise ConversationGone(f"{self.provider.name}: conversation {self.handle}: {exc}",
                                   provider=self.provider.name) from exc

    def abandon(self, flight: _Flight) -> None:
        """The request went away: drop the rest of this reply when it comes."""
        with self.lock:
            if self.flight is flight:
                flight.abandoned = True

    def close(self, error: UpstreamError | None) -> None:
        """Close the socket politely and wait for the reader; the turn in flight gets *error*."""
        with self.lock:
            self.closing = True
            flight, self.flight, ws = self.flight, None, self.ws
        if flight is not None and error is not None and not flight.abandoned:
            flight.turn.put(error)
        if ws is not None:
            with _suppressed(self.provider.name, "closing"):
                ws.send_close()
            ws.abort()  # type: ignore[no-untyped-call]
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(2.0)

    # -- the reader thread ---------------------------------------------------------------

    def _run(self) -> None:
        p = self.provider
        first = self.flight
        assert first is not None
        headers, cookie = p.handshake()
        shown = headers + [("Cookie", cookie)] if cookie else headers
        first.turn.frame("out", WIRE, "handshake", {"url": p.where, "headers": shown})  # no query: it may hold a key
        try:
            ws = p.connect()
        except UpstreamError as exc:
            p.discard(self)
            first.turn.put(exc)
            return
        first.turn.frame("in", WIRE, "handshake", {"status": ws.getstatus(), "headers": dict(ws.getheaders() or {})})
        with self.lock:
            self.ws = ws
            closing = self.closing
        if closing:
            ws.shutdown()  # type: ignore[no-untyped-call]
            return
        first.turn.put(Created(self.handle))
        try:
            self._send(ws, first)
            self._read(ws)
        except UpstreamError as exc:
            self._lost(str(exc))
        finally:
            ws.shutdown()  # type: ignore[no-untyped-call]

    def _send(self, ws: websocket.WebSocket, flight: _Flight) -> None:
        message = {self.provider.frames.send_field: flight.prompt}
        flight.turn.frame("out", WIRE, "text", message)
        with _websocket_errors(self.provider.name, "sending the prompt"):
            ws.send(json.dumps(message, ensure_ascii=False))

    def _read(self, ws: websocket.WebSocket) -> None:
        while True:
            got = self._next_frame(ws)
            if got is None:
                if self.closing:
                    return
                continue
            opcode, data = got
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._note("close", data)
                self._lost("the service closed the connection")
                return
            self._frame(data)

    def _next_frame(self, ws: websocket.WebSocket) -> tuple[int, bytes] | None:
        """The next frame, or None when none came within the socket's timeout (websocket-client
        keeps a frame read in part and goes on with it on the next call)."""
        with _websocket_errors(self.provider.name, "reading"):
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                return None
        return opcode, data

    def _note(self, name: str, payload: object) -> None:
        """Note an incoming frame on the wire of the turn in flight (frames between turns go unseen)."""
        flight = self.flight
        if flight is not None:
            flight.turn.frame("in", WIRE, name, payload)

    def _lost(self, reason: str) -> None:
        p = self.provider
        with self.lock:
            flight, self.flight = self.flight, None
            self.dropped = True
            closing = self.closing
        self.idle.set()
        if closing:
            return
        p.note_drop(reason)
        if flight is not None and not flight.abandoned:
            flight.turn.put(ProviderDisconnected(
                f"{p.name}: the connection to {p.where} dropped in the middle of a reply ({reason})",
                provider=p.name, partial=flight.reply()))

    def _frame(self, data: bytes) -> None:
        try:
            frame = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self._note("text", data.decode("utf-8", "replace"))
            logger.debug("%s: a frame that is not JSON ignored", self.provider.name)
            return
        f = self.provider.frames
        kind = frame.get(f.type_field) if isinstance(frame, dict) else None
        self._note(kind if isinstance(kind, str) else "text", frame)
        if not isinstance(frame, dict):
            return
        if kind == f.token_type:
            self._token(frame.get(f.token_field))
        elif kind == f.final_type:
            self._end(lambda flight: Done(_text(frame.get(f.final_field), flight.reply())))
        elif kind == f.error_type:
            name = self.provider.name
            detail = short(frame.get(f.error_field) or frame.get("name") or "no details")
            self._end(lambda flight: ProviderRejected(f"{name}: the service reported an error: {detail}",
                                                      provider=name))

    def _token(self, content: object) -> None:
        if not isinstance(content, str):
            return
        with self.lock:
            flight = self.flight
            if flight is None:
                return
            if self.provider.cumulative:
                flight.snapshot = content
            else:
                flight.parts.append(content)
        if not flight.abandoned and content:
            flight.turn.put(Snapshot(content) if self.provider.cumulative else Delta(content))

    def _end(self, outcome: Any) -> None:
        with self.lock:
            flight, self.flight = self.flight, None
        self.idle.set()
        if flight is not None and not flight.abandoned:
            flight.turn.put(outcome(flight))


def _text(value: object, fallback: str) -> str:
    return value if isinstance(value, str) else fallback


@contextmanager
def _suppressed(provider: str, action: str) -> Iterator[None]:
    """Run a best-effort step whose failure has nobody to report to."""
    try:
        with _websocket_errors(provider, action):
            yield
    except UpstreamError as exc:
        logger.debug("%s", exc)


class WebSocketProvider:
    """A plain-WebSocket JSON chat service; one connection per conversation.

    Raises (from ``__init__``):
        ConfigError: the profile's URL is not an http(s) or ws(s) URL.
    """

    def __init__(self, profile: ProviderProfile, *, connect_timeout: float = 10.0) -> None:
        self.profile = profile
        self.name = profile.name
        self.frames: WebSocketFrames = profile.frames
        self.cumulative = profile.stream == "cumulative"
        self.traits = dataclasses.replace(TRAITS, stream="snapshots" if self.cumulative else "deltas")
        self.max_message_chars = self.traits.message_limit(profile.max_message_chars)
        self.url = socket_url(profile)
        self.where = safe_url(self.url)
        self._connect_timeout = connect_timeout
        self._cookies: list[Cookie] = []
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._closed = False
        self._health = Health(ready=False, connected=False, since=time.time())

    # -- the Provider protocol ----------------------------------------------------------

    def start(self) -> None:
        """Read the cookie file and open (then close) one connection to prove the service answers.

        Raises:
            ConfigError: the cookie file cannot be read.
            ProviderRejected: the handshake was refused (401/403: check cookies and headers).
            ProviderUnavailable: the service could not be reached.
        """
        if self.profile.cookie_file is not None:
            self._cookies = load_cookies(self.profile.cookie_file, key=f"providers.{self.name}.cookie_file")
            for warning in expiry_warnings(self._cookies, time.time()):
                logger.warning("%s: %s (%s)", self.name, warning, self.profile.cookie_file)
        try:
            probe = self.connect()
        except UpstreamError as exc:
            self._set_health(connected=False, error=str(exc))
            raise
        with _suppressed(self.name, "closing the probe"):
            probe.close(timeout=1.0)
        self._closed = False
        self._set_health(connected=True, error=None)

    def models(self) -> list[ModelInfo]:
        """The profile's models, or ``default``."""
        return [ModelInfo(m, self.profile.context_length) for m in self.profile.models or (DEFAULT_MODEL,)]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        """Start a turn: a new connection (``handle=None``) or the conversation's own.

        Blocks only while an abandoned reply on the same connection drains (at most
        ``deadlines.silence`` seconds).
        """
        key = handle or str(uuid.uuid4())
        turn = Turn(self.name, deadlines, on_cancel=lambda: self._abandon(key, flight))
        flight = _Flight(turn, text)
        try:
            conn = self._connection(handle)
            if conn is None:
                conn = _Connection(self, key)
                with self._lock:
                    self._connections[conn.handle] = conn
                conn.open(flight)
            else:
                conn.take_turn(flight, deadlines.silence)
        except UpstreamError as exc:
            turn.put(exc)
        return turn

    def forget(self, handle: str) -> None:
        """Close the conversation's connection (the service forgets it with the socket), on a
        thread of its own: never blocks (a service that stops reading holds a close up to
        ``connect_timeout``), never raises."""
        with self._lock:
            conn = self._connections.pop(handle, None)
        if conn is not None:
            error = ProviderUnavailable(f"{self.name}: conversation {handle} was forgotten", provider=self.name)
            threading.Thread(target=conn.close, args=(error,), name=f"roogab-ws-forget-{handle[:8]}",
                             daemon=True).start()

    def health(self) -> Health:
        """Readiness for ``/healthz``: the last handshake worked or not, and the last error."""
        return self._health

    def close(self) -> None:
        """Close every connection; turns in flight fail. Idempotent."""
        with self._lock:
            self._closed = True
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            conn.close(ProviderUnavailable(f"{self.name}: the provider was closed", provider=self.name))
        self._set_health(connected=False, error=None)

    # -- for the connections -----------------------------------------------------------

    def connect(self) -> websocket.WebSocket:
        """Open a WebSocket with the profile's headers and cookies (blocking, bounded).

        Raises:
            ProviderRejected: the handshake was refused with 401/403.
            ProviderUnavailable: the service could not be reached.
        """
        pairs, cookie = self.handshake()
        headers = [f"{k}: {v}" for k, v in pairs]
        with _websocket_errors(self.name, f"cannot connect to {self.where}"):
            ws = websocket.create_connection(self.url, timeout=self._connect_timeout, header=headers,
                                             cookie=cookie or None, enable_multithread=True)
            # A send or a read that makes no progress for this long gives up: a service that stops
            # reading cannot pin a request thread in send(), nor close() behind its lock. The
            # reader just reads on (_next_frame): the turn's deadlines judge a silent reply.
            ws.settimeout(self._connect_timeout)
        self._set_health(connected=True, error=None)
        return ws

    def handshake(self) -> tuple[list[tuple[str, str]], str]:
        """The handshake's headers (the profile's, but its ``Cookie``) and the ``Cookie`` value."""
        cookie = "; ".join(c for c in ([v for k, v in self.profile.headers if k.lower() == "cookie"]
                                       + [cookie_header(self._cookies, self.url)]) if c)
        return [(k, v) for k, v in self.profile.headers if k.lower() != "cookie"], cookie

    def discard(self, conn: _Connection) -> None:
        """Forget a connection that never opened."""
        with self._lock:
            if self._connections.get(conn.handle) is conn:
                del self._connections[conn.handle]

    def drop(self, conn: _Connection, reason: str) -> None:
        """Give a connection up (its conversation is lost to RooGab)."""
        logger.info("%s: dropping the connection of %s: %s", self.name, conn.handle, reason)
        self.discard(conn)
        conn.close(None)

    def note_drop(self, reason: str) -> None:
        """A connection dropped without being asked to."""
        self._set_health(connected=False, error=f"disconnected: {reason}")

    def _connection(self, handle: str | None) -> _Connection | None:
        """The live connection for *handle*; ``None`` for a new conversation.

        Raises:
            ProviderUnavailable: the provider is closed.
            ConversationGone: *handle* is unknown, or its connection dropped.
        """
        with self._lock:
            if self._closed:
                raise ProviderUnavailable(f"{self.name}: the provider was closed", provider=self.name)
            if handle is None:
                return None
            conn = self._connections.get(handle)
            if conn is not None and conn.dropped:
                del self._connections[handle]
                conn = None
        if conn is None:
            raise ConversationGone(f"{self.name}: conversation {handle} is not open on any connection "
                                   "(it dropped, or RooGab restarted)", provider=self.name)
        return conn

    def _abandon(self, handle: str, flight: _Flight) -> None:
        with self._lock:
            conn = self._connections.get(handle)
        if conn is not None:
            conn.abandon(flight)

    def _set_health(self, *, connected: bool, error: str | None) -> None:
        old = self._health
        if old.connected == connected and error is None:
            return
        self._health = Health(ready=connected, connected=connected,
                              last_error=error if error is not None else old.last_error, since=time.time())


def _build(profile: ProviderProfile, settings: NoSettings, context: Context) -> WebSocketProvider:
    return WebSocketProvider(profile, connect_timeout=context.connect_timeout)


KIND = Kind("websocket", TRAITS, NoSettings, _build)

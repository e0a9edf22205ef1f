"""OpenWebUIProvider: an Open WebUI server reached the way its chat page reaches it (providers.md §8).

Start-up is HTTP, in ``openwebui_http`` (the login, the models). Then one Socket.IO connection
(``/ws/socket.io``, ``auth: {token}``) on the provider loop, a ``SocketSession``: the server sends
every reply of the account to the room ``user:<id>`` as ``events`` ``{chat_id, message_id, data}``,
so turns are told apart by the assistant message id RooGab chose for each one.

A conversation is an Open WebUI chat. Like the page, RooGab keeps the chat's messages and sends
them all with each turn (the server hands the model what the page sent): a saved chat is made
first (``POST /api/v1/chats/new``, so it shows in the user's sidebar) and its id is the handle;
with ``temporary_chats = true`` a chat is one of Open WebUI's temporary chats
(``temporary:<socket id>``), which the server never stores, so nothing is left to delete after
the task. A turn is ``POST /api/chat/completions`` with the messages, ``chat_id``, the message
ids and ``session_id`` = the socket's id, and no tools, filters or features (RooGab's envelope is
the only tool path). The answer is ``{status, task_ids}`` and the reply streams over the socket
(``_openwebui_reply``); when the server answers with the stream itself (no socket), the SSE
stream is read instead, as the page does.

Failures: a socket drop mid-reply → ``ProviderDisconnected``; an error event → ``ProviderRejected``;
a saved chat the server no longer has (RooGab restarted, the chat was deleted) →
``ConversationGone`` so RooGab replays; a 401 → one login again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..config import ProviderProfile
from ..errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamError,
)
from . import _http_wire as wire
from ._openwebui_reply import Failure, ReplyText
from ._text import safe_url, short
from .base import Created, Deadlines, Done, Health, ModelInfo, ProviderEvent, Traits, Turn
from .kinds import Context, Kind
from .loop import ProviderLoop
from .openwebui_http import OpenWebUIWeb
from .socketio_errors import socketio_errors
from .socketio_session import Reconnection, SocketSession

__all__ = ["KIND", "OpenWebUIProvider", "OpenWebUISettings"]

logger = logging.getLogger(__name__)

SOCKET_PATH = "/ws/socket.io"
TRAITS = Traits(keeps_conversations=True, stream="deltas")
TEMPORARY = "temporary:"


class _TokenRefused(ProviderRejected):
    """A REST call answered 401: the token expired or was revoked."""


@dataclass(frozen=True)
class OpenWebUISettings:
    """The ``openwebui`` kind's own settings."""

    temporary_chats: bool = False   # temporary chats (never stored) instead of sidebar chats
    title: str = "RooGab"           # the title of the chats RooGab makes


@dataclass(eq=False)
class _Chat:
    """One conversation: the chat's id on the server and the messages the page would hold."""

    handle: str
    chat_id: str
    messages: list[dict[str, str]] = field(default_factory=list)
    last_id: str | None = None     # the last assistant message: the parent of the next user message
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False)
class _Flight:
    """One turn: the assistant message id that names its events, and its reply so far."""

    text: str
    turn: Turn = field(init=False)
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    chat: _Chat | None = None
    chat_id: str = ""              # the chat id this turn went to (a temporary one differs per turn)
    reply: ReplyText = field(default_factory=ReplyText)


class OpenWebUIProvider:
    """An Open WebUI account, driven through its page's protocol.

    Raises (from ``__init__``):
        ConfigError: the profile's URL is not an http(s) URL.
    """

    def __init__(self, profile: ProviderProfile, settings: OpenWebUISettings, loop: ProviderLoop, *,
                 connect_timeout: float = 10.0, reconnection: Reconnection | None = None) -> None:
        parts = urlsplit(profile.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"providers.{profile.name}.url", "must be the Open WebUI page's http(s) URL")
        self.profile = profile
        self.settings = settings
        self.name = profile.name
        self.traits = TRAITS
        self.max_message_chars = TRAITS.message_limit(profile.max_message_chars)
        self._loop = loop
        self._connect_timeout = connect_timeout
        self._base = profile.url.rstrip("/")
        self._where = safe_url(profile.url)
        self._web = OpenWebUIWeb(profile, timeout=connect_timeout)
        self._health = Health(ready=False, connected=False, since=time.time())
        # Touched only on the provider loop's thread:
        self._socket = SocketSession(self.name, self._where, reconnection or Reconnection(),
                                     {"events": self._on_events}, on_connect=self._on_connect,
                                     on_disconnect=self._on_disconnect, on_failure=self._on_failure)
        self._http: aiohttp.ClientSession | None = None
        self._chats: dict[str, _Chat] = {}
        self._flights: dict[str, _Flight] = {}
        self._closed = False

    # -- the Provider protocol (request threads) -------------------------------------------

    def start(self) -> None:
        """Log in, list the models, and open the socket.

        Raises:
            ConfigError: the cookie file cannot be read.
            ProviderRejected: the login was refused, or none is configured.
            ProviderUnavailable: the server could not be reached.
        """
        try:
            self._web.start()
            self._closed = False
            self._loop.run(self._connect(), timeout=self._connect_timeout + 5.0)
        except TimeoutError as exc:
            self._set_health(connected=False, error="no socket connection")
            raise ProviderUnavailable(f"{self.name}: no connection to {self._where} within "
                                      f"{self._connect_timeout:g} s", provider=self.name) from exc
        except UpstreamError as exc:
            self._set_health(connected=isinstance(exc, ProviderRejected), error=str(exc))
            raise
        logger.info("%s: %s ready, models: %s", self.name, self._where, ", ".join(self._web.models))

    def models(self) -> list[ModelInfo]:
        """The models the account may use (discovered, or the profile's)."""
        return [ModelInfo(m, self.profile.context_length) for m in self._web.models]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        """Start a turn in a new chat (``handle=None``) or an existing one; never blocks."""
        flight = _Flight(text)
        flight.turn = Turn(self.name, deadlines, on_cancel=lambda: self._loop.call_soon(self._abandon, flight))
        self._loop.start_turn(flight.turn, self._begin(flight, handle, model))
        return flight.turn

    def forget(self, handle: str) -> None:
        """Forget a chat here; a saved chat stays in the user's sidebar. Never blocks."""
        self._loop.call_soon(self._chats.pop, handle, None)

    def health(self) -> Health:
        """Readiness for ``/healthz``: logged in, socket connected, the last error."""
        return self._health

    def close(self) -> None:
        """Close the socket and the HTTP session; turns in flight fail. Idempotent."""
        self._loop.finish(self._shutdown(), self._connect_timeout + 5.0, f"{self.name}: closing")

    # -- connection (loop thread) ---------------------------------------------------------

    async def _connect(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            await self._socket.open(self._base, socketio_path=SOCKET_PATH, timeout=self._connect_timeout,
                                    headers=self._headers, auth=self._auth)
        except ProviderUnavailable as exc:
            self._set_health(connected=False, error=str(exc))
            raise

    def _auth(self) -> dict[str, str]:
        """The connect ``auth`` payload; asked again on every reconnect (a new login is picked up)."""
        return {"token": self._web.token}

    def _headers(self) -> dict[str, str]:
        return {k: v for k, v in self.profile.headers if k.lower() not in ("cookie", "authorization")}

    async def _on_connect(self) -> None:
        self._set_health(connected=True, error=None)

    def _on_disconnect(self, reason: object) -> None:
        self._set_health(connected=False, error=f"disconnected: {reason}")
        flights, self._flights = list(self._flights.values()), {}
        for flight in flights:
            flight.turn.put(ProviderDisconnected(
                f"{self.name}: the connection to {self._where} dropped in the middle of a reply ({reason})",
                provider=self.name, partial=flight.reply.text()))

    def _on_failure(self, message: str) -> None:
        self._set_health(connected=False, error=message)

    def _set_health(self, *, connected: bool, error: str | None) -> None:
        old = self._health
        logged_in = bool(self._web.token)
        self._health = Health(ready=connected and logged_in, connected=connected, logged_in=logged_in,
                              last_error=error if error is not None else old.last_error, since=time.time())

    async def _shutdown(self) -> None:
        self._closed = True
        await self._socket.drop()
        if self._http is not None:
            await self._http.close()
            self._http = None
        flights, self._flights = list(self._flights.values()), {}
        for flight in flights:
            flight.turn.put(ProviderUnavailable(f"{self.name}: the provider was closed", provider=self.name))
        self._set_health(connected=False, error=None)

    # -- turns (loop thread) ----------------------------------------------------------------

    async def _begin(self, flight: _Flight, handle: str | None, model: str) -> None:
        try:
            if self._closed:
                raise ProviderUnavailable(f"{self.name}: the provider was closed", provider=self.name)
            await self._socket.ensure(self._connect, self._connect_timeout)
            try:
                await self._turn(flight, handle, model)
            except _TokenRefused:
                if not await self._relogin():
                    raise
                self._flights.pop(flight.message_id, None)
                await self._turn(flight, flight.chat.handle if flight.chat else handle, model)
        except UpstreamError as exc:
            self._flights.pop(flight.message_id, None)
            flight.turn.put(exc)

    async def _turn(self, flight: _Flight, handle: str | None, model: str) -> None:
        chat = await self._chat(handle, model, flight.turn)
        async with chat.lock:
            if handle is None and flight.chat is None:
                flight.turn.put(Created(chat.handle))
            if flight.turn.cancelled:
                return
            flight.chat = chat
            self._flights[flight.message_id] = flight
            await self._post_turn(flight, chat, model)

    async def _relogin(self) -> bool:
        """Sign in again (a password is configured) and reconnect the socket with the new token."""
        if not (self.profile.username and self.profile.password):
            return False
        await asyncio.get_running_loop().run_in_executor(None, self._web.log_in)
        await self._connect()
        return True

    async def _chat(self, handle: str | None, model: str, turn: Turn) -> _Chat:
        """The conversation for *handle*: known here, loaded from the server, or made anew."""
        if handle is not None and handle in self._chats:
            return self._chats[handle]
        if handle is not None:
            chat = await self._load_chat(handle, turn)
        elif self.settings.temporary_chats:
            local = TEMPORARY + str(uuid.uuid4())
            chat = _Chat(local, "")
        else:
            made = await self._rest("POST", "/api/v1/chats/new", {"chat": {
                "title": self.settings.title, "models": [model], "history": {"messages": {}, "currentId": None},
                "messages": [], "tags": [], "timestamp": int(time.time() * 1000)}}, turn)
            chat_id = made.get("id")
            if not isinstance(chat_id, str) or not chat_id:
                raise ProviderUnavailable(f"{self.name}: /api/v1/chats/new gave no chat id", provider=self.name)
            chat = _Chat(chat_id, chat_id)
        self._chats[chat.handle] = chat
        return chat

    async def _load_chat(self, handle: str, turn: Turn) -> _Chat:
        """A saved chat RooGab no longer holds (it restarted): its messages, from the server."""
        gone = ConversationGone(f"{self.name}: Open WebUI no longer has chat {handle}", provider=self.name)
        if handle.startswith(TEMPORARY):
            raise gone  # temporary chats live only in the RooGab that made them
        try:
            data = await self._rest("GET", f"/api/v1/chats/{handle}", None, turn)
        except _TokenRefused:
            raise
        except ProviderRejected as exc:  # 404 (deleted) or 401 for another user's chat
            raise gone from exc
        history = (data.get("chat") or {}).get("history") or {}
        messages, last = _thread(history)
        return _Chat(handle, handle, messages, last)

    async def _post_turn(self, flight: _Flight, chat: _Chat, model: str) -> None:
        sid = self._socket.sid
        chat_id = chat.chat_id or (TEMPORARY + (sid or str(uuid.uuid4())))
        messages = [*chat.messages, {"role": "user", "content": flight.text}]
        user_message = {"id": flight.user_id, "parentId": chat.last_id, "childrenIds": [flight.message_id],
                        "role": "user", "content": flight.text, "timestamp": int(time.time()), "models": [model]}
        body: dict[str, Any] = {
            "stream": True, "model": model, "messages": messages, "tool_ids": [],
            "params": {"function_calling": "legacy"},  # "native" would add Open WebUI's built-in tools
            "filter_ids": [], "features": {}, "chat_id": chat_id, "id": flight.message_id,
            "parent_id": chat.last_id, "user_message": user_message, "background_tasks": {}}
        if sid is not None:
            body["session_id"] = sid
        flight.chat_id = chat_id
        await self._completions(flight, body)

    async def _completions(self, flight: _Flight, body: dict[str, Any]) -> None:
        """Post the turn; the reply comes over the socket, or in this answer as SSE."""
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self._web.token}", "Accept": "application/json"}
        path = "/api/chat/completions"
        wire.request(flight.turn, "POST", path, headers, body)
        with socketio_errors(self.name, "POST " + path):
            async with self._http.post(self._base + path, json=body, headers=headers,
                                       timeout=aiohttp.ClientTimeout(sock_connect=self._connect_timeout)) as r:
                if r.status >= 400:
                    text = await r.text()
                    wire.answer(flight.turn, "POST", path, r.status, r.content_type, wire.decoded(text))
                    raise self._refused(r.status, text)
                if r.content_type == "text/event-stream":
                    wire.answer(flight.turn, "POST", path, r.status, r.content_type, "(an SSE stream)")
                    await self._read_sse(flight, r)
                    return
                answer = await r.json(content_type=None)
                wire.answer(flight.turn, "POST", path, r.status, r.content_type, answer)
        if isinstance(answer, dict) and answer.get("status") is False:
            raise ProviderRejected(f"{self.name}: the server refused the turn: {short(answer)}", provider=self.name)

    async def _read_sse(self, flight: _Flight, response: aiohttp.ClientResponse) -> None:
        """The fallback: an OpenAI-style SSE answer, read to its end."""
        async for raw in response.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            wire.event(flight.turn, "data", wire.decoded(payload))
            self._tell(flight, flight.reply.sse(payload))
            if flight.reply.done:
                break
        self._tell(flight, flight.reply.finish())

    def _refused(self, status: int, body: str) -> UpstreamError:
        detail = short(_detail(body))
        if status == 401:
            return _TokenRefused(f"{self.name}: Open WebUI refused the token (401): sign in again",
                                 provider=self.name)
        if status == 404:
            return ConversationGone(f"{self.name}: Open WebUI no longer has this chat ({detail})", provider=self.name)
        return ProviderRejected(f"{self.name}: Open WebUI refused the turn ({status}): {detail}", provider=self.name)

    async def _rest(self, method: str, path: str, data: object, turn: Turn | None = None) -> dict[str, Any]:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self._web.token}"}
        wire.request(turn, method, path, headers, data)
        with socketio_errors(self.name, f"{method} {path}"):
            async with self._http.request(method, self._base + path, json=data, headers=headers) as r:
                text = await r.text()
        wire.answer(turn, method, path, r.status, r.content_type, wire.decoded(text))
        if r.status >= 400:
            refused = _TokenRefused if r.status == 401 else ProviderRejected
            raise refused(f"{self.name}: {method} {path} refused ({r.status}): {short(_detail(text))}",
                          provider=self.name)
        try:
            answer = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProviderUnavailable(f"{self.name}: {path} answered without JSON", provider=self.name) from exc
        return answer if isinstance(answer, dict) else {}

    def _abandon(self, flight: _Flight) -> None:
        """The request went away: stop routing its events, and ask the server to stop the task."""
        if self._flights.pop(flight.message_id, None) is not None and flight.chat_id:
            self._loop.fire(self._stop(flight.chat_id), f"{self.name}: stop({flight.chat_id})")

    async def _stop(self, chat_id: str) -> None:
        try:
            await self._rest("POST", f"/api/tasks/chat/{chat_id}/stop", {})
        except UpstreamError as exc:
            logger.info("%s", exc)

    # -- incoming events (loop thread; synchronous, so they keep their arrival order) --------

    def _on_events(self, data: object = None) -> None:
        if not isinstance(data, dict):
            return
        flight = self._flights.get(str(data.get("message_id")))
        event = data.get("data")
        if flight is None or not isinstance(event, dict):
            return
        flight.turn.frame("in", "socket.io", "events", data)
        self._tell(flight, flight.reply.feed(str(event.get("type")), event.get("data")))

    def _tell(self, flight: _Flight, events: list[ProviderEvent | Failure]) -> None:
        for item in events:
            if isinstance(item, Failure):
                self._flights.pop(flight.message_id, None)
                flight.turn.put(self._failure(item))
                return
            if isinstance(item, Done):
                self._flights.pop(flight.message_id, None)
                self._remember(flight, item.text or "")
            flight.turn.put(item)

    def _failure(self, failure: Failure) -> UpstreamError:
        if failure.cut:
            return ProviderDisconnected(f"{self.name}: {failure.message}: the reply is cut", provider=self.name)
        return ProviderRejected(f"{self.name}: Open WebUI reported an error: {short(failure.message)}",
                                provider=self.name)

    def _remember(self, flight: _Flight, reply: str) -> None:
        chat = flight.chat
        if chat is None:
            return
        chat.messages += [{"role": "user", "content": flight.text}, {"role": "assistant", "content": reply}]
        chat.last_id = flight.message_id


def _thread(history: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    """The messages of a saved chat's current branch, oldest first, and its last message id."""
    nodes = history.get("messages") or {}
    current = history.get("currentId")
    chain: list[dict[str, str]] = []
    seen: set[str] = set()
    node_id = current
    while isinstance(node_id, str) and node_id in nodes and node_id not in seen:
        seen.add(node_id)
        node = nodes[node_id]
        if node.get("role") in ("user", "assistant"):
            chain.append({"role": node["role"], "content": str(node.get("content") or "")})
        node_id = node.get("parentId")
    return chain[::-1], current if isinstance(current, str) else None


def _detail(body: str) -> object:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body
    return data.get("detail", data) if isinstance(data, dict) else data


def _build(profile: ProviderProfile, settings: OpenWebUISettings, context: Context) -> OpenWebUIProvider:
    return OpenWebUIProvider(profile, settings, context.loop, connect_timeout=context.connect_timeout)


KIND = Kind("openwebui", TRAITS, OpenWebUISettings, _build)

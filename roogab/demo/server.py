"""The demo chat service: a real python-socketio server speaking the multiplexed protocol.

It runs an aiohttp web app with a Socket.IO ``AsyncServer`` on its own thread and event loop,
on a loopback port. The protocol (event and field names from ``SocketIOEvents``, defaults)::

    client -> newConversation {prompt, agentId, ref}   server -> loadConversation {id, ref}
              (the creator joins room "c:<id>"; the reply to the first prompt then streams)
    client -> sendPrompt {prompt, c}
    client -> subscribe ["c:<id>", ...]                (joins the rooms; needed after a reconnect)
    client -> deleteConversation {c}
    server -> tokenDelta {c, content} (a piece) | tokenStream {c, content} (the whole reply so far)
    server -> streamEnd {c}
    server -> conversationError {c, ref, code, message}  code "not_found": no such conversation;
              "unknown_model": bad agentId (then ``ref`` names the create); else a scripted error

Replies stream to the conversation's room; each prompt gets the next scripted reply, or the
built-in assistant's answer when the script is empty. HTTP helpers for tests that drive a live
``roogab demo``: ``GET /demo/received``, ``POST /demo/script``, ``POST /demo/reset``,
``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web

from ..config import SocketIOEvents
from ..errors import ConfigError
from ..providers.loop import ProviderLoop
from ..providers.socketio_impl import DEMO_MAX_FRAME_BYTES
from .assistant import answer
from .markup import markdown_to_html
from .script import ScriptedReply, parse_reply

__all__ = ["DemoChatService", "Received"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 10.0
_FLUSH_DELAY = 0.05
#: What the demo keeps of what it received: a demo left running for days must not grow without end.
RECEIVED_KEPT = 10_000
RECEIVED_CHARS = 32 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    """One event the demo service received: which conversation, which event, what prompt, when."""

    conversation: str | None
    event: str
    prompt: str | None
    time: float
    model: str | None = None


class _Log:
    """What the service received (the newest *kept* events, at most *chars* characters of
    prompts; the newest is always kept) and what it will answer next; shared across threads."""

    def __init__(self, script: Iterable[ScriptedReply], *, kept: int = RECEIVED_KEPT,
                 chars: int = RECEIVED_CHARS) -> None:
        self._kept, self._max_chars = kept, chars
        self._lock = threading.Lock()
        self._script: deque[ScriptedReply] = deque(script)
        self._received: deque[Received] = deque()
        self._chars = 0

    def record(self, item: Received) -> None:
        with self._lock:
            self._received.append(item)
            self._chars += len(item.prompt or "")
            while len(self._received) > 1 and (len(self._received) > self._kept
                                               or self._chars > self._max_chars):
                self._chars -= len(self._received.popleft().prompt or "")

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def push(self, replies: Iterable[ScriptedReply]) -> None:
        with self._lock:
            self._script.extend(replies)

    def next_reply(self) -> ScriptedReply | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._received.clear()
            self._chars = 0


class DemoChatService:
    """The bundled demo chat service, on ``host``:``port`` (0 picks a free port).

    ``start()`` returns the base URL; ``stop()`` shuts it down. ``push()`` queues scripted
    replies, ``received`` lists what arrived, ``reset()`` clears both.
    """

    def __init__(self, script: Iterable[ScriptedReply] = (), host: str = "127.0.0.1", port: int = 0,
                 *, models: Iterable[str] = ("gab-1", "gab-2"),
                 events: SocketIOEvents | None = None) -> None:
        self.host = host
        self.port = port
        self.models = tuple(models)
        self.events = events or SocketIOEvents()
        self._log = _Log(script)
        self._thread = ProviderLoop(name="roogab-demo")
        self._state: _ServerState | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (empty before ``start()``)."""
        return self._url

    @property
    def received(self) -> list[Received]:
        """A copy of what was received, oldest first (the newest ``RECEIVED_KEPT`` events, up to
        ``RECEIVED_CHARS`` characters of prompts)."""
        return self._log.received()

    def start(self) -> str:
        """Bind, start serving on a thread of its own, and return the base URL.

        Raises:
            ConfigError: the address cannot be bound.
        """
        if self._state is not None:
            return self._url
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._thread.start()
        state = _ServerState(self.events, self.models, self._log)
        try:
            self._thread.run(state.serve(sock), timeout=_START_TIMEOUT)
        except BaseException:
            sock.close()
            self._thread.stop()
            raise
        self._state = state
        self._url = f"http://{self.host}:{self.port}"
        return self._url

    def stop(self) -> None:
        """Cut every client, stop serving and join the thread; idempotent."""
        state, self._state = self._state, None
        if state is not None:
            self._thread.run(state.shutdown(), timeout=_START_TIMEOUT)
        self._thread.stop()

    def remaining(self) -> int:
        """How many scripted replies are still queued (not yet served)."""
        return self._log.remaining()

    def push(self, *replies: ScriptedReply) -> None:
        """Queue scripted replies, served in order, one per prompt received."""
        self._log.push(replies)

    def reset(self, *, conversations: bool = False) -> None:
        """Clear the script, the received log and releases no held reply took; with
        *conversations*, forget every conversation too (as a restarted service would)."""
        self._log.reset()
        if self._state is not None:
            self._thread.run(self._state.reset(conversations), timeout=_START_TIMEOUT)

    def release(self) -> None:
        """Let one reply held by ``hold_after`` go on, the one held first (a release before the
        hold is kept until ``reset()``)."""
        if self._state is not None:
            self._thread.run(self._state.release(), timeout=_START_TIMEOUT)

    def drop_connections(self) -> None:
        """Cut every client's connection abruptly (they will reconnect)."""
        if self._state is not None:
            self._thread.run(self._state.drop_all(), timeout=_START_TIMEOUT)

    def __enter__(self) -> DemoChatService:  # noqa: PYI034 (Self needs typing_extensions on 3.10)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--port", f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class _ServerState:
    """Everything that lives on the demo's event loop: the servers, conversations, turn tasks."""

    def __init__(self, events: SocketIOEvents, models: tuple[str, ...], log: _Log) -> None:
        self.ev = events
        self.models = models
        self.log = log
        self.sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False,
                                        max_http_buffer_size=DEMO_MAX_FRAME_BYTES)
        self.conversations: dict[str, str] = {}
        self.requests: dict[str, web.Request] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.held = asyncio.Semaphore(0)  # one release per reply held by hold_after
        self.runner: web.AppRunner | None = None
        self._room_prefix, _, self._room_suffix = events.room.partition("{id}")
        self._register()

    def _register(self) -> None:
        ev, on = self.ev, self.sio.on
        on("connect", self.on_connect)
        on("disconnect", self.on_disconnect)
        on(ev.create, self.on_create)
        on(ev.send, self.on_send)
        on(ev.subscribe, self.on_subscribe)
        on(ev.delete, self.on_delete)

    async def serve(self, sock: socket.socket) -> None:
        """Build the aiohttp app, attach Socket.IO and the helper routes, start serving."""
        app = web.Application()
        self.sio.attach(app, socketio_path=self.ev.socketio_path)
        app.router.add_get("/healthz", self.http_health)
        app.router.add_get("/demo/received", self.http_received)
        app.router.add_post("/demo/script", self.http_script)
        app.router.add_post("/demo/reset", self.http_reset)
        app.router.add_post("/demo/release", self.http_release)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()

    async def shutdown(self) -> None:
        """Cancel turns, cut clients, stop the web server."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.drop_all()
        await self.sio.shutdown()
        if self.runner is not None:
            await self.runner.cleanup()

    async def drop_all(self) -> None:
        """Abort every client's transport, as a crashed or restarted server would."""
        for sid in list(self.requests):
            self.drop(sid)

    def drop(self, sid: str) -> None:
        """Abort one client's TCP connection (no Socket.IO goodbye: the client reconnects)."""
        request = self.requests.pop(sid, None)
        transport = request.transport if request is not None else None
        if transport is not None:
            transport.abort()

    async def drop_soon(self, sid: str) -> None:
        """Drop *sid* once the chunks already emitted have had a moment to go out."""
        await asyncio.sleep(_FLUSH_DELAY)
        self.drop(sid)

    async def release(self) -> None:
        self.held.release()

    async def reset(self, conversations: bool) -> None:
        """Take back releases no held reply took; with *conversations*, forget them all."""
        while not self.held.locked():
            await self.held.acquire()
        if conversations:
            await self.forget_all()

    async def forget_all(self) -> None:
        """Forget every conversation (a restarted service)."""
        self.conversations.clear()

    def room(self, cid: str) -> str:
        return self.ev.room.format(id=cid)

    def record(self, cid: str | None, event: str, prompt: str | None = None,
               model: str | None = None) -> None:
        self.log.record(Received(cid, event, prompt, time.time(), model))

    # -- Socket.IO handlers -------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        self.requests[sid] = environ["aiohttp.request"]
        self.record(None, "connect")

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        self.requests.pop(sid, None)
        self.record(None, "disconnect")

    async def on_create(self, sid: str, data: object) -> None:
        ev = self.ev
        payload = data if isinstance(data, dict) else {}
        prompt, model, ref = payload.get(ev.prompt_field), payload.get(ev.model_field), payload.get(ev.ref_field)
        if not isinstance(prompt, str) or model not in self.models:
            self.record(None, ev.create, prompt if isinstance(prompt, str) else None,
                        model if isinstance(model, str) else None)
            code, problem = ("unknown_model", f"no model {model!r}; try one of {', '.join(self.models)}") \
                if isinstance(prompt, str) else ("bad_request", f"{ev.prompt_field!r} must be a string")
            await self.error(sid, None, code, problem, ref=ref)
            return
        cid = secrets.token_hex(12)
        self.conversations[cid] = model
        self.record(cid, ev.create, prompt, model)
        await self.sio.enter_room(sid, self.room(cid))
        await self.sio.emit(ev.created, {ev.id_field: cid, ev.ref_field: ref}, to=sid)
        self.spawn(cid, sid, prompt)

    async def on_send(self, sid: str, data: object) -> None:
        ev = self.ev
        payload = data if isinstance(data, dict) else {}
        cid, prompt = payload.get(ev.conversation_field), payload.get(ev.prompt_field)
        known = isinstance(cid, str) and cid in self.conversations
        self.record(cid if isinstance(cid, str) else None, ev.send,
                    prompt if isinstance(prompt, str) else None)
        if not known:
            await self.error(sid, cid, ev.gone_code, f"no conversation {cid!r}")
        elif not isinstance(prompt, str):
            await self.error(sid, cid, "bad_request", f"{ev.prompt_field!r} must be a string")
        else:
            assert isinstance(cid, str)
            self.spawn(cid, sid, prompt)

    async def on_subscribe(self, sid: str, data: object) -> None:
        rooms = data if isinstance(data, list) else [data]
        for room in rooms:
            cid = self.room_id(room)
            self.record(cid, self.ev.subscribe)
            if cid is not None and cid in self.conversations:
                await self.sio.enter_room(sid, room)
            else:
                await self.error(sid, cid, self.ev.gone_code, f"no conversation for room {room!r}")

    async def on_delete(self, sid: str, data: object) -> None:
        cid = data.get(self.ev.conversation_field) if isinstance(data, dict) else None
        self.record(cid if isinstance(cid, str) else None, self.ev.delete)
        if isinstance(cid, str) and self.conversations.pop(cid, None) is not None:
            await self.sio.close_room(self.room(cid))

    def room_id(self, room: object) -> str | None:
        if not isinstance(room, str) or not room.startswith(self._room_prefix) \
                or not room.endswith(self._room_suffix):
            return None
        return room[len(self._room_prefix):len(room) - len(self._room_suffix)] or None

    async def error(self, to: str, cid: object, code: str, message: str, *, ref: object = None) -> None:
        ev = self.ev
        body = {ev.conversation_field: cid, ev.ref_field: ref, "code": code, "message": message}
        await self.sio.emit(ev.error, body, to=to)

    # -- turns --------------------------------------------------------------------------

    def spawn(self, cid: str, sid: str, prompt: str) -> None:
        """Answer *prompt* in a task of its own: conversations are served concurrently."""
        reply = self.log.next_reply() or ScriptedReply(reply=answer(prompt))
        task = asyncio.get_running_loop().create_task(self.turn(cid, sid, reply))
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("demo turn failed", exc_info=task.exception())

    async def turn(self, cid: str, sid: str, reply: ScriptedReply) -> None:
        """Deliver one scripted reply to the conversation's room."""
        if reply.silent:
            return
        if reply.error is not None:
            await self.error(self.room(cid), cid, reply.code, reply.error)
            return
        if await self.stream(cid, sid, reply):
            await self.sio.emit(self.ev.end, {self.ev.conversation_field: cid}, to=self.room(cid))

    async def stream(self, cid: str, sid: str, reply: ScriptedReply) -> bool:
        """Send the reply in chunks; False when the script cut the connection instead."""
        ev = self.ev
        delay = reply.delay_ms / 1000
        frames = list(_frames(reply))
        for count, (kind, content) in enumerate(frames):
            if reply.drop_after is not None and count >= reply.drop_after:
                await self.drop_soon(sid)
                return False
            if count == reply.hold_after:
                await self.held.acquire()
            await asyncio.sleep(delay)
            event = ev.snapshot if kind == "snapshot" else ev.delta
            await self.sio.emit(event, {ev.conversation_field: cid, ev.content_field: content},
                                to=self.room(cid))
        if reply.hold_after is not None and reply.hold_after >= len(frames):
            await self.held.acquire()  # held after its last chunk: before its end
        if reply.drop_after is not None:
            await self.drop_soon(sid)
            return False
        return True

    # -- HTTP helpers -------------------------------------------------------------------

    async def http_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "conversations": len(self.conversations),
                                  "script": self.log.remaining(), "models": list(self.models)})

    async def http_received(self, request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(r) for r in self.log.received()])

    async def http_script(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be a JSON list of script lines"}, status=400)
        if not isinstance(body, list):
            return web.json_response({"error": "body must be a JSON list of script lines"}, status=400)
        try:
            replies = [parse_reply(item) for item in body]
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.log.push(replies)
        return web.json_response({"queued": len(replies), "script": self.log.remaining()})

    async def http_release(self, request: web.Request) -> web.Response:
        await self.release()
        return web.json_response({"status": "released"})

    async def http_reset(self, request: web.Request) -> web.Response:
        self.log.reset()
        await self.reset(request.query.get("conversations") in ("1", "true"))
        return web.json_response({"status": "reset"})


def _frames(reply: ScriptedReply) -> Iterator[tuple[str, str]]:
    """The frames that deliver *reply*: its explicit ``events``, else chunks of its text (HTML
    snapshots render each prefix of the markdown, as a page re-rendering a growing reply does)."""
    if reply.events:
        yield from reply.events
        return
    cumulative = reply.stream == "cumulative"
    text = reply.reply if cumulative or reply.format == "markdown" else markdown_to_html(reply.reply)
    for start in range(0, len(text), reply.chunk):
        end = start + reply.chunk
        if not cumulative:
            yield "delta", text[start:end]
        else:
            yield "snapshot", markdown_to_html(text[:end]) if reply.format == "html" else text[:end]

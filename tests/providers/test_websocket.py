"""WebSocketProvider (real websocket-client) against a loopback aiohttp server speaking Cheshire Cat 1.x frames.

The server answers each ``{"text": prompt}`` according to the prompt's first word:
``drop`` sends two tokens and cuts the TCP connection; ``error`` sends an error frame; ``slow``
streams 40 tokens 30 ms apart; ``notify`` sends a notification first; anything else streams
"you said: <prompt> (#n)" four characters a frame, n counting the messages on that connection.
In cumulative mode every token frame carries the whole reply so far.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from aiohttp_server import AiohttpServer

from roogab.config import ProviderProfile, WebSocketFrames
from roogab.errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamError,
)
from roogab.providers.base import Created, Deadlines, Delta, Done, ProviderEvent, Snapshot, Turn
from roogab.providers.websocket_impl import WebSocketProvider, socket_url

pytestmark = pytest.mark.loopback

QUICK = Deadlines(first_token=5, silence=5, total=20)


@dataclass
class CatService:
    """What the scripted server saw, and how it behaves."""

    cumulative: bool = False
    require_cookie: str = ""
    handshakes: list[dict[str, str]] = field(default_factory=list)
    received: list[object] = field(default_factory=list)
    closed: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.socket)
        return app

    async def socket(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append({k.lower(): v for k, v in request.headers.items()})
        if self.require_cookie and self.require_cookie not in request.headers.get("Cookie", ""):
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        count = 0
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            self.received.append(payload)
            count += 1
            if not await self.answer(request, ws, str(payload.get("text", "")), count):
                return ws
        self.closed += 1
        return ws

    async def answer(self, request: web.Request, ws: web.WebSocketResponse, prompt: str, count: int) -> bool:
        word = prompt.split(" ", 1)[0]
        if word == "error":
            await ws.send_json({"type": "error", "name": "AgentError", "description": "the cat is asleep"})
            return True
        if word == "notify":
            await ws.send_json({"type": "notification", "content": "thinking..."})
        if word == "deep":  # nested past what json can decode
            await ws.send_str("[" * 100_000 + "]" * 100_000)
        if word == "pause":  # a first token after a silence longer than the socket's timeout
            await ws.send_json({"type": "chat_token", "content": "wait"})
            await asyncio.sleep(1.0)
        reply = f"you said: {prompt} (#{count})"
        if word == "slow":
            reply = "".join(f"s{i} " for i in range(40))
        pieces = [reply[i:i + 4] for i in range(0, len(reply), 4)]
        for i, piece in enumerate(pieces):
            if word == "drop" and i == 2:
                assert request.transport is not None
                request.transport.close()
                return False
            content = reply[:4 * (i + 1)] if self.cumulative else piece
            await ws.send_json({"type": "chat_token", "content": content})
            await asyncio.sleep(0.03 if word == "slow" else 0)
        await ws.send_json({"type": "chat", "text": reply, "user_id": "user", "why": {}})
        return True


@pytest.fixture
def cat() -> Iterator[tuple[CatService, str]]:
    service = CatService()
    server = AiohttpServer(service.app())
    url = server.start()
    yield service, url
    server.stop()


def make(url: str, connect_timeout: float = 2.0, **changes: object) -> WebSocketProvider:
    profile = replace(ProviderProfile(name="cat", kind="websocket", url=url, models=()), **changes)  # type: ignore[arg-type]
    return WebSocketProvider(profile, connect_timeout=connect_timeout)


@pytest.fixture
def provider(cat: tuple[CatService, str]) -> Iterator[WebSocketProvider]:
    p = make(cat[1])
    p.start()
    yield p
    p.close()


def events(turn: Turn) -> list[ProviderEvent]:
    return [e for e in turn.events(tick=0.1) if e is not None]


def create(provider: WebSocketProvider, text: str = "hello") -> tuple[str, list[ProviderEvent]]:
    got = events(provider.send(None, "default", text, QUICK))
    assert isinstance(got[0], Created)
    return got[0].handle, got[1:]


def test_socket_url_is_built_from_the_profile() -> None:
    profile = ProviderProfile(name="cat", kind="websocket", url="https://cat.example:8443/base/?token=t0k")
    assert socket_url(profile) == "wss://cat.example:8443/base/ws?token=t0k"
    assert socket_url(replace(profile, url="http://h", frames=WebSocketFrames(path="/ws/alice"))) == "ws://h/ws/alice"
    with pytest.raises(ConfigError):
        socket_url(replace(profile, url="ftp://h"))


def test_deltas_then_the_final_frame(provider: WebSocketProvider, cat: tuple[CatService, str]) -> None:
    _, got = create(provider, "hello cat")
    reply = "you said: hello cat (#1)"
    assert [e.text for e in got if isinstance(e, Delta)] == [reply[i:i + 4] for i in range(0, len(reply), 4)]
    assert got[-1] == Done(reply)
    assert cat[0].received[-1] == {"text": "hello cat"}
    assert provider.models()[0].id == "default" and provider.health().ready


def test_a_continuation_uses_the_same_connection(provider: WebSocketProvider, cat: tuple[CatService, str]) -> None:
    handle, _ = create(provider, "one")
    handshakes = len(cat[0].handshakes)
    got = events(provider.send(handle, "default", "two", QUICK))
    assert got[-1] == Done("you said: two (#2)") and not any(isinstance(e, Created) for e in got)
    assert len(cat[0].handshakes) == handshakes


def test_notifications_are_ignored(provider: WebSocketProvider) -> None:
    _, got = create(provider, "notify me")
    assert got[-1] == Done("you said: notify me (#1)")
    assert "".join(e.text for e in got if isinstance(e, Delta)) == "you said: notify me (#1)"


def test_a_frame_nested_past_the_decoder_is_ignored_like_any_text(provider: WebSocketProvider) -> None:
    """json raises RecursionError, not ValueError, for it: the reader must not die of it."""
    _, got = create(provider, "deep water")
    assert got[-1] == Done("you said: deep water (#1)")
    assert provider.health().ready


def test_cumulative_frames_become_snapshots(cat: tuple[CatService, str]) -> None:
    cat[0].cumulative = True
    p = make(cat[1], stream="cumulative")
    p.start()
    try:
        _, got = create(p, "abc")
    finally:
        p.close()
    reply = "you said: abc (#1)"
    assert [e.text for e in got if isinstance(e, Snapshot)] == [reply[:i] for i in range(4, len(reply) + 4, 4)]
    assert not any(isinstance(e, Delta) for e in got) and got[-1] == Done(reply)


def test_an_error_frame_is_a_rejection_and_the_conversation_goes_on(provider: WebSocketProvider) -> None:
    handle, _ = create(provider, "one")
    with pytest.raises(ProviderRejected, match="the service reported an error: the cat is asleep"):
        events(provider.send(handle, "default", "error please", QUICK))
    got = events(provider.send(handle, "default", "three", QUICK))
    assert got[-1] == Done("you said: three (#3)")


def test_a_drop_mid_reply_is_a_disconnect_then_the_conversation_is_gone(provider: WebSocketProvider) -> None:
    handle, _ = create(provider, "one")
    turn = provider.send(handle, "default", "drop now", QUICK)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderDisconnected, match="dropped in the middle of a reply") as caught:
        for event in turn.events(tick=0.1):
            if event is not None:
                seen.append(event)
    assert not any(isinstance(e, Done) for e in seen)
    assert caught.value.partial == "you said"[:8]
    assert provider.health().connected is False
    with pytest.raises(ConversationGone):
        events(provider.send(handle, "default", "again", QUICK))
    _, got = create(provider, "fresh")  # a new conversation works
    assert got[-1] == Done("you said: fresh (#1)")


def test_a_first_turn_dropped_mid_reply(provider: WebSocketProvider) -> None:
    with pytest.raises(ProviderDisconnected):
        create(provider, "drop at once")


def test_an_unknown_handle_is_gone(provider: WebSocketProvider) -> None:
    with pytest.raises(ConversationGone, match="not open on any connection"):
        events(provider.send("no-such-handle", "default", "hi", QUICK))


def test_cancel_drains_the_rest_of_the_reply(provider: WebSocketProvider) -> None:
    handle, _ = create(provider, "one")
    turn = provider.send(handle, "default", "slow please", QUICK)
    for event in turn.events(tick=0.1):
        if isinstance(event, Delta):
            break
    turn.cancel()
    got = events(provider.send(handle, "default", "after", QUICK))
    assert "".join(e.text for e in got if isinstance(e, Delta)) == "you said: after (#3)"
    assert got[-1] == Done("you said: after (#3)")


def test_forget_closes_the_connection(provider: WebSocketProvider, cat: tuple[CatService, str]) -> None:
    handle, _ = create(provider, "one")
    before = cat[0].closed  # the probe of start() is closed already
    provider.forget(handle)
    deadline = time.monotonic() + 2
    while cat[0].closed == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cat[0].closed == before + 1
    with pytest.raises(ConversationGone):
        events(provider.send(handle, "default", "two", QUICK))


def test_cookies_and_headers_go_on_the_handshake(cat: tuple[CatService, str], tmp_path: Path) -> None:
    cookie_file = tmp_path / "cookies.json"
    cookie_file.write_text(json.dumps([
        {"name": "session", "value": "good", "domain": "127.0.0.1", "path": "/", "hostOnly": True},
        {"name": "other", "value": "elsewhere", "domain": ".example.com", "path": "/"},
        {"name": "deep", "value": "no", "domain": "127.0.0.1", "path": "/admin", "hostOnly": True},
    ]))
    cat[0].require_cookie = "session=good"
    p = make(cat[1], cookie_file=cookie_file, headers=(("X-Team", "blue"), ("User-Agent", "Mozilla/5.0 test")))
    p.start()
    try:
        _, got = create(p, "hi")
    finally:
        p.close()
    assert got[-1] == Done("you said: hi (#1)")
    handshake = cat[0].handshakes[-1]
    assert handshake["cookie"] == "session=good"
    assert handshake["x-team"] == "blue" and handshake["user-agent"] == "Mozilla/5.0 test"


def test_a_refused_handshake_is_a_rejection_at_start(cat: tuple[CatService, str]) -> None:
    cat[0].require_cookie = "session=good"
    p = make(cat[1])
    with pytest.raises(ProviderRejected, match=r"the handshake was refused \(403\)"):
        p.start()
    assert p.health().ready is False
    p.close()


def test_an_unreachable_service_is_unavailable(cat: tuple[CatService, str]) -> None:
    p = make(cat[1].rsplit(":", 1)[0] + ":1")
    with pytest.raises(ProviderUnavailable, match="cannot connect to ws://127.0.0.1:1/ws"):
        p.start()
    p.close()


def test_frame_names_come_from_the_profile(cat: tuple[CatService, str]) -> None:
    frames = WebSocketFrames(send_field="text", token_type="chat_token", token_field="content", final_type="chat",
                             final_field="missing")
    p = make(cat[1], frames=frames)
    p.start()
    try:
        _, got = create(p, "hi")
    finally:
        p.close()
    assert got[-1] == Done("you said: hi (#1)")  # no final text field: the streamed reply stands


def test_a_silence_longer_than_the_socket_timeout_is_not_a_drop(cat: tuple[CatService, str]) -> None:
    """The socket's timeout bounds sends; a read that times out just reads on, and the turn's own
    deadlines judge the silence."""
    p = make(cat[1], connect_timeout=0.3)
    p.start()
    try:
        _, got = create(p, "pause then answer")
        reply = "".join(e.text for e in got if isinstance(e, Delta))
        assert reply == "wait" + "you said: pause then answer (#1)" and isinstance(got[-1], Done), got
    finally:
        p.close()


def _frame(text: str) -> bytes:
    data = text.encode()
    size = len(data)
    head = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
    return head + data


def _serve_stalling(listener: socket.socket, stop: threading.Event) -> None:
    """A WebSocket service (by hand, on raw sockets) that answers each connection's first
    prompt, then never reads again: its receive buffer fills and the client's send can make no
    progress."""
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=_answer_once_then_stop_reading, args=(conn, stop), daemon=True).start()


def _answer_once_then_stop_reading(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(None)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    conn.recv(65536)  # the first prompt
    conn.sendall(_frame(json.dumps({"type": "chat", "content": "ok"})))
    stop.wait(60)
    conn.close()


def test_a_service_that_stops_reading_fails_the_turn_and_close_returns() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    service = threading.Thread(target=_serve_stalling, args=(listener, stop), daemon=True)
    service.start()
    p = make(f"http://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.5)
    result: list[object] = []

    def second_turn(handle: str) -> None:
        try:
            result.append(events(p.send(handle, "default", "x" * 8_000_000, QUICK)))  # more than the buffers hold
        except UpstreamError as exc:
            result.append(exc)

    try:
        p.start()
        handle, got = create(p)
        assert isinstance(got[-1], Done)
        sender = threading.Thread(target=second_turn, args=(handle,), daemon=True)
        sender.start()
        sender.join(60)  # a hang detector, not a speed claim
        assert not sender.is_alive(), "send() was pinned by a service that stopped reading"
        assert isinstance(result[0], ConversationGone) and "timed out" in str(result[0]), result
    finally:
        closer = threading.Thread(target=p.close, daemon=True)
        closer.start()
        closer.join(60)
        stop.set()
        service.join(10)
        listener.close()
    assert not closer.is_alive(), "close() waited behind a stuck send"

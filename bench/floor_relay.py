"""The floor: the least a relay can do for bench_load's job, in one asyncio loop on one thread.

Run: ``python bench/floor_relay.py CHAT_URL PORT_FILE`` (bench_load starts and stops it).
python-socketio AsyncClient -> a minimal envelope scan -> ``json.dumps`` of an OpenAI chunk ->
aiohttp write. No validation, no store, no parser beyond finding ``text = [==[ ... ]==]``.
Not RooGab; the reference its CPU per token and latency are compared with.
"""

import asyncio
import json
import signal
import sys
import time
import uuid
from pathlib import Path

import socketio
from aiohttp import web

OPEN, CLOSE = "text = [==[", "]==]"


class Stream:
    """One reply: strips the envelope around the text and writes each piece as an SSE chunk."""

    def __init__(self, resp: web.StreamResponse) -> None:
        self.resp, self.buf, self.inside, self.done = resp, "", False, asyncio.Event()

    async def feed(self, piece: str) -> None:
        self.buf += piece
        if not self.inside:
            at = self.buf.find(OPEN)
            if at < 0:
                return
            self.inside, self.buf = True, self.buf[at + len(OPEN):]
        end = self.buf.find(CLOSE)
        cut = end if end >= 0 else len(self.buf) - held(self.buf)
        text, self.buf = self.buf[:cut], self.buf[cut:]
        if text:
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": "floor", "choices": [{"index": 0, "delta": {"content": text}}]}
            await self.resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")


def held(buf: str) -> int:
    """How many characters at the end of *buf* could be the start of the closing ``]==]``."""
    return next((k for k in range(len(CLOSE) - 1, 0, -1) if buf.endswith(CLOSE[:k])), 0)


async def main(chat_url: str, port_file: str) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    by_ref: dict[str, Stream] = {}
    by_cid: dict[str, Stream] = {}
    sio.on("loadConversation", lambda d: by_cid.__setitem__(d["id"], by_ref.pop(d["ref"])))

    @sio.on("tokenDelta")
    async def delta(d: dict[str, str]) -> None:
        if (s := by_cid.get(d["c"])) is not None:
            await s.feed(d["content"])

    sio.on("streamEnd", lambda d: (s := by_cid.pop(d["c"], None)) and s.done.set())
    await sio.connect(chat_url, transports=["websocket"])

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        ref, stream = uuid.uuid4().hex, Stream(resp)
        by_ref[ref] = stream
        await sio.emit("newConversation", {"prompt": body["messages"][-1]["content"], "agentId": "gab-1", "ref": ref})
        await stream.done.wait()
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    Path(port_file).write_text(str(site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sio.disconnect()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

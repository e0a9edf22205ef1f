"""100 concurrent streaming conversations: delivery, emit-to-agent latency, memory per conversation.

Run: ``PYTHONPATH=. python bench/bench_load.py [--conversations 100] [--seconds 10] [--json out.json]``.

Three processes on 127.0.0.1, all started and stopped here:

* a chat service (this file, ``--chat-server``): python-socketio ``AsyncServer`` on aiohttp speaking
  the demo service's protocol (``newConversation``/``loadConversation``/``subscribe``/``sendPrompt``/
  ``tokenDelta``/``streamEnd``). Each reply is a text envelope streamed one token per event at
  ``1000/delay_ms`` tokens/s on an absolute schedule; every token is ``"<seq>@<time.time()>;"``
  with the wall clock read just before its ``emit``;
* ``roogab serve`` pointed at it (``kind = "socketio"``, memory store, ``threads`` = 2x the
  conversations: each open stream holds a waitress thread);
* this process: first a *direct* phase (one ``socketio.AsyncClient`` creating every conversation
  itself: the floor), then the RooGab phase (that many concurrent ``stream: true`` requests over
  aiohttp). Every token is checked: each sequence number exactly once, in order. Latency is
  wall clock at the agent's chunk minus the token's emit stamp.

Memory per conversation: the ``roogab serve`` process's peak RSS during the load minus its RSS
before, divided by the number of conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from bench._common import pct, print_table, rss_kb, stop, summary, write_json
except ImportError:
    from _common import pct, print_table, rss_kb, stop, summary, write_json

OPEN = "```lua\nreturn {\n  text = [==["
CLOSE = "]==],\n}\n```"


# -- the chat service (subprocess) --------------------------------------------------------

def chat_server(port_file: str, tokens: int, delay_ms: int) -> None:
    """Serve until SIGTERM; write the bound port to *port_file*."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    convs: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def stream(cid: str) -> None:
        room = f"c:{cid}"
        await sio.emit("tokenDelta", {"c": cid, "content": OPEN}, to=room)
        start = time.monotonic()
        for k in range(tokens):
            delay = start + (k + 1) * delay_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await sio.emit("tokenDelta", {"c": cid, "content": f"{k}@{time.time():.6f};"}, to=room)
        await sio.emit("tokenDelta", {"c": cid, "content": CLOSE}, to=room)
        await sio.emit("streamEnd", {"c": cid}, to=room)

    def spawn(cid: str) -> None:
        task = asyncio.get_running_loop().create_task(stream(cid))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @sio.on("newConversation")
    async def create(sid: str, data: dict[str, Any]) -> None:
        cid = uuid.uuid4().hex[:24]
        convs.add(cid)
        await sio.enter_room(sid, f"c:{cid}")
        await sio.emit("loadConversation", {"id": cid, "ref": data.get("ref")}, to=sid)
        spawn(cid)

    @sio.on("sendPrompt")
    async def send(sid: str, data: dict[str, Any]) -> None:
        cid = data.get("c")
        if cid not in convs:
            await sio.emit("conversationError", {"c": cid, "code": "not_found", "message": "no such"}, to=sid)
            return
        spawn(cid)

    @sio.on("subscribe")
    async def subscribe(sid: str, rooms: list[str]) -> None:
        for room in rooms if isinstance(rooms, list) else [rooms]:
            await sio.enter_room(sid, room)

    @sio.on("deleteConversation")
    async def delete(sid: str, data: dict[str, Any]) -> None:
        convs.discard(data.get("c"))

    async def main() -> None:
        app = web.Application()
        sio.attach(app)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        Path(port_file).write_text(str(port))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for t in list(tasks):
            t.cancel()
        await sio.shutdown()
        await runner.cleanup()

    asyncio.run(main())


# -- checking and timing tokens ------------------------------------------------------------

class Tokens:
    """One conversation's received text: splits out complete tokens, checks order, times them."""

    def __init__(self) -> None:
        self.buf = ""
        self.next = 0
        self.lat: list[float] = []
        self.errors: list[str] = []
        self.started = False

    def feed(self, text: str, now: float) -> None:
        self.buf += text
        if not self.started:
            if OPEN not in self.buf and "@" not in self.buf:
                return
            self.started = True
            self.buf = self.buf.split(OPEN, 1)[-1]
        *done, self.buf = self.buf.split(";")
        for tok in done:
            seq, _, stamp = tok.strip().partition("@")
            if not seq.isdigit() or not stamp:
                self.errors.append(f"garbled token {tok!r}")
                continue
            if int(seq) != self.next:
                self.errors.append(f"token {seq} where {self.next} was due")
            self.next = int(seq) + 1
            self.lat.append((now - float(stamp)) * 1000)


# -- the direct phase ----------------------------------------------------------------------

async def direct_phase(url: str, n: int, tokens: int) -> list[Tokens]:
    import socketio

    sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
    by_ref: dict[str, Tokens] = {}
    by_cid: dict[str, Tokens] = {}
    ended: dict[str, asyncio.Event] = {}

    @sio.on("loadConversation")
    def created(data: dict[str, Any]) -> None:
        by_cid[data["id"]] = by_ref.pop(data["ref"])

    @sio.on("tokenDelta")
    def delta(data: dict[str, Any]) -> None:
        tk = by_cid.get(data["c"])
        if tk is not None:
            tk.feed(data["content"], time.time())

    @sio.on("streamEnd")
    def end(data: dict[str, Any]) -> None:
        ended.setdefault(data["c"], asyncio.Event()).set()

    await sio.connect(url, transports=["websocket"], wait_timeout=10)
    out = []
    for i in range(n):
        ref = uuid.uuid4().hex
        tk = by_ref[ref] = Tokens()
        out.append(tk)
        await sio.emit("newConversation", {"prompt": f"load {i}", "agentId": "gab-1", "ref": ref})
    deadline = time.monotonic() + tokens * 0.1 + 60
    while len([e for e in ended.values() if e.is_set()]) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await sio.disconnect()
    return out


# -- the RooGab phase ----------------------------------------------------------------------

async def roogab_phase(base: str, n: int, tokens: int, pid: int) -> tuple[list[Tokens], list[int], int]:
    import aiohttp

    samples: list[int] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(rss_kb(pid))
            await asyncio.sleep(0.25)

    async def one(session: aiohttp.ClientSession, i: int) -> Tokens:
        tk = Tokens()
        body = {"model": "load/gab-1", "stream": True,
                "messages": [{"role": "system", "content": "You are a load test."},
                             {"role": "user", "content": f"Count for me, conversation {i} {uuid.uuid4().hex}."}]}
        async with session.post(base + "/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                tk.errors.append(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                return tk
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    break
                obj = json.loads(data)
                if "error" in obj:
                    tk.errors.append(f"stream error {obj['error']}")
                    break
                for ch in obj.get("choices") or []:
                    text = (ch.get("delta") or {}).get("content")
                    if text:
                        tk.feed(text, time.time())
        return tk

    sampler = asyncio.create_task(sample())
    timeout = aiohttp.ClientTimeout(total=tokens * 0.1 + 120)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn,
                                     headers={"Authorization": "Bearer load"}) as session:
        results = await asyncio.gather(*(one(session, i) for i in range(n)))
    stop.set()
    await sampler
    return list(results), samples, rss_kb(pid)


# -- orchestration -------------------------------------------------------------------------

def start_chat_server(tmp: str, tokens: int, delay_ms: int) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tmp) / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--chat-server", str(port_file),
                             "--tokens", str(tokens), "--delay-ms", str(delay_ms)])
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the bench chat service did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def start_roogab(tmp: str, chat_url: str, threads: int,
                 switch_interval: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    cfg = Path(tmp) / "load.toml"
    cfg.write_text(f'store = "memory"\nthreads = {threads}\nlog_level = "warning"\nport = 0\n'
                   f'data_dir = "{tmp}"\n\n[[providers]]\nname = "load"\nkind = "socketio"\n'
                   f'url = "{chat_url}"\nmodels = ["gab-1"]\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    head = [sys.executable, "-m", "roogab"]
    if switch_interval:  # an experiment: the GIL hand-off interval of the serve process (default 5 ms)
        head = [sys.executable, "-c", (f"import sys; sys.setswitchinterval({switch_interval}); "
                "sys.argv[0] = 'roogab'; from roogab.cli import main; main()")]
    proc = subprocess.Popen([*head, "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "is running at" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
    proc.kill()
    raise RuntimeError("roogab serve did not start")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def verdict(phase: list[Tokens], tokens: int) -> dict[str, Any]:
    lat = [x for tk in phase for x in tk.lat]
    errors = [e for tk in phase for e in tk.errors]
    incomplete = sum(1 for tk in phase if tk.next != tokens)
    return {"tokens": len(lat), "expected": tokens * len(phase), "errors": errors[:10],
            "error_count": len(errors), "incomplete_conversations": incomplete,
            "exactly_once_in_order": not errors and incomplete == 0 and len(lat) == tokens * len(phase),
            "latency_ms": summary(lat), "p99": pct(lat, 99)}


def run(n: int = 100, seconds: float = 10.0, delay_ms: int = 20, switch_interval: float = 0.0) -> dict[str, Any]:
    tokens = int(seconds * 1000 / delay_ms)
    with tempfile.TemporaryDirectory(prefix="roogab-load-") as tmp:
        chat, chat_url = start_chat_server(tmp, tokens, delay_ms)
        roogab = None
        cpu: dict[str, dict[str, float]] = {}
        try:
            c0, b0, w0 = cpu_s(chat.pid), own_cpu(), time.monotonic()
            direct = asyncio.run(direct_phase(chat_url, n, tokens))
            cpu["direct"] = {"chat_service": cpu_s(chat.pid) - c0, "bench_client": own_cpu() - b0,
                             "wall": time.monotonic() - w0}
            roogab, base = start_roogab(tmp, chat_url, threads=max(64, 2 * n), switch_interval=switch_interval)
            # one warm turn (tokenizer, first connection), then the baseline RSS
            asyncio.run(roogab_phase(base, 1, tokens, roogab.pid))
            time.sleep(0.5)
            before = rss_kb(roogab.pid)
            t0, c0, b0, r0 = time.monotonic(), cpu_s(chat.pid), own_cpu(), cpu_s(roogab.pid)
            phase, samples, after = asyncio.run(roogab_phase(base, n, tokens, roogab.pid))
            wall = time.monotonic() - t0
            cpu["roogab"] = {"chat_service": cpu_s(chat.pid) - c0, "bench_client": own_cpu() - b0,
                             "roogab": cpu_s(roogab.pid) - r0, "wall": wall}
        finally:
            if roogab is not None:
                stop(roogab)
            stop(chat)
    peak = max(samples + [after])
    d, r = verdict(direct, tokens), verdict(phase, tokens)
    return {"conversations": n, "switch_interval": switch_interval or None, "tokens_each": tokens, "delay_ms": delay_ms, "wall_s": wall,
            "direct": d, "roogab": r, "rss_before_kb": before, "rss_peak_kb": peak, "rss_after_kb": after,
            "rss_per_conversation_kb": (peak - before) / n, "cpu_s": cpu,
            "added_p50": r["latency_ms"]["p50"] - d["latency_ms"]["p50"],
            "added_p95": r["latency_ms"]["p95"] - d["latency_ms"]["p95"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of tokens per conversation")
    ap.add_argument("--delay-ms", type=int, default=20, help="between tokens (20 = 50 tokens/s)")
    ap.add_argument("--switch-interval", type=float, default=0.0,
                    help="experiment: sys.setswitchinterval() in the roogab serve process (seconds)")
    ap.add_argument("--tokens", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--chat-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.chat_server:
        chat_server(args.chat_server, args.tokens, args.delay_ms)
        return
    res = run(args.conversations, args.seconds, args.delay_ms, args.switch_interval)
    print(f"{res['conversations']} conversations x {res['tokens_each']} tokens at "
          f"{1000 / res['delay_ms']:.0f} tokens/s each"
          + (f", serve switch interval {res['switch_interval']} s" if res["switch_interval"] else "")
          + f" (RooGab phase {res['wall_s']:.1f} s wall); "
          "emit -> client latency, ms:")
    rows = []
    for name in ("direct", "roogab"):
        v = res[name]
        lat = v["latency_ms"]
        rows.append([name, f"{v['tokens']}/{v['expected']}", "yes" if v["exactly_once_in_order"] else "NO",
                     lat["p50"], lat["p95"], v["p99"], lat["max"]])
    print_table(["path", "tokens", "once, in order", "p50", "p95", "p99", "max"], rows)
    print(f"added p50 {res['added_p50']:.2f} ms, p95 {res['added_p95']:.2f} ms (target: RooGab p95 < 50 ms: "
          f"{'met' if res['roogab']['latency_ms']['p95'] < 50 else 'MISSED'})")
    print(f"roogab serve RSS: before {res['rss_before_kb'] / 1024:.1f} MiB, peak {res['rss_peak_kb'] / 1024:.1f} MiB, "
          f"after {res['rss_after_kb'] / 1024:.1f} MiB -> {res['rss_per_conversation_kb']:.0f} KiB per conversation")
    for phase, c in res["cpu_s"].items():
        print(f"CPU seconds in the {phase} phase ({c['wall']:.1f} s wall, 2 cores = {2 * c['wall']:.0f} CPU-s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in c.items() if k != "wall"))
    for name in ("direct", "roogab"):
        if res[name]["errors"]:
            print(f"{name} errors ({res[name]['error_count']}): {res[name]['errors']}")
    write_json(args.json, {"benchmark": "load", **res})


if __name__ == "__main__":
    main()

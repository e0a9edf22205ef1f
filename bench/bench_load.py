"""Concurrent streaming conversations: delivery, CPU per token and emit-to-chunk latency, as
ratios to the floor relay and to the direct path in the same run.

Run: ``PYTHONPATH=. python bench/bench_load.py [--streams 1,10,100,400] [--seconds 5] [--json out.json]``.

Processes on 127.0.0.1, all started and stopped here:

* a chat service (this file, ``--chat-server``): python-socketio ``AsyncServer`` on aiohttp speaking
  the demo service's protocol (``newConversation``/``loadConversation``/``subscribe``/``sendPrompt``/
  ``tokenDelta``/``streamEnd``). Each reply is a text envelope streamed one token per event at
  ``1000/delay_ms`` tokens/s on an absolute schedule; every token is ``"<seq>@<time.time()>;"``
  with the wall clock read just before its ``emit``;
* the floor (``floor_relay.py``): the least a relay can do for the same job, one asyncio loop;
* ``roogab serve`` pointed at it (``kind = "socketio"``, memory store, ``threads`` = 2x the
  largest stream count: each open stream holds a waitress thread);
* this process: for each stream count, a *direct* phase (one ``socketio.AsyncClient`` creating
  every conversation itself), then that many concurrent ``stream: true`` requests through the
  floor, then through RooGab (aiohttp). Every token is checked: each sequence number exactly
  once, in order. Latency is wall clock at the agent's chunk minus the token's emit stamp.

CPU per token: the relay process's CPU time over the phase (all its threads, from
``/proc/<pid>/task/*/schedstat``) divided by the tokens delivered; for the direct path, this
process's own CPU (the receiving client). Context switches per token count thread hand-offs.
The machine is shared: compare the ratios, not the absolute figures.
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

    # Pings far apart: a relay that falls seconds behind (400 streams) must not be disconnected
    # for a pong stuck behind its backlog; that would measure Engine.IO's timeout, not the relay.
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False,
                               ping_interval=600, ping_timeout=600)
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
    deadline = time.monotonic() + tokens * 0.2 + 300
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
    timeout = aiohttp.ClientTimeout(total=tokens * 0.2 + 300)
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


def start_roogab(tmp: str, chat_url: str, threads: int, switch_interval: float = 0.0,
                 stream_pace: float | None = None) -> tuple[subprocess.Popen[str], str]:
    cfg = Path(tmp) / f"load-{stream_pace}.toml"
    pace = "" if stream_pace is None else f"stream_pace = {stream_pace}\n"
    cfg.write_text(f'store = "memory"\nthreads = {threads}\nlog_level = "warning"\nport = 0\n{pace}'
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


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds each live thread of a process has used so far, by thread id (nanosecond
    schedstat, not 10 ms ticks)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[task.name] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between the listing and the read
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds a process's live threads have used so far."""
    return sum(thread_cpu(pid).values())


def busiest_share(before: dict[str, float], after: dict[str, float]) -> float:
    """The share of a phase's CPU that its busiest thread used (the relay's event loop)."""
    used = [after[t] - before.get(t, 0.0) for t in after]
    return max(used, default=0.0) / (sum(used) or 1.0)


def switches(pid: int) -> int:
    """Context switches (voluntary + forced) of a process's live threads so far: each thread wake-up
    is at least one, so per token this counts hand-offs, and load on the machine barely moves it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
    return total


def own_cpu() -> float:
    return time.process_time()


def verdict(phase: list[Tokens], tokens: int) -> dict[str, Any]:
    lat = [x for tk in phase for x in tk.lat]
    errors = [e for tk in phase for e in tk.errors]
    incomplete = sum(1 for tk in phase if tk.next != tokens)
    return {"tokens": len(lat), "expected": tokens * len(phase), "errors": errors[:10],
            "error_count": len(errors), "incomplete_conversations": incomplete,
            "exactly_once_in_order": not errors and incomplete == 0 and len(lat) == tokens * len(phase),
            "latency_ms": summary(lat), "p99": pct(lat, 99)}


def start_floor(tmp: str, chat_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """The floor relay (floor_relay.py) in a process of its own, like roogab serve."""
    port_file = Path(tmp) / "floor-port"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("floor_relay.py")), chat_url,
                             str(port_file)])
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the floor relay did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def relay_phase(base: str, n: int, tokens: int, chat: int, relay: int) -> dict[str, Any]:
    """*n* concurrent streams through a relay (RooGab or the floor): tokens, CPU, RSS, wall."""
    asyncio.run(roogab_phase(base, 1, tokens, relay))  # warm: first connection, tokenizer
    time.sleep(0.3)
    before = rss_kb(relay)
    t0, c0, b0, s0 = time.monotonic(), cpu_s(chat), own_cpu(), switches(relay)
    threads0 = thread_cpu(relay)
    phase, samples, after = asyncio.run(roogab_phase(base, n, tokens, relay))
    wall = time.monotonic() - t0
    v = verdict(phase, tokens)
    threads1 = thread_cpu(relay)
    relay_cpu = sum(threads1.values()) - sum(threads0.values())
    relay_switches = switches(relay) - s0
    return {**v, "wall_s": wall, "cpu_s": {"chat_service": cpu_s(chat) - c0, "bench_client": own_cpu() - b0,
                                           "relay": relay_cpu},
            "cpu_us_per_token": relay_cpu / max(1, v["tokens"]) * 1e6,
            "switches_per_token": relay_switches / max(1, v["tokens"]),
            "busiest_thread_share": busiest_share(threads0, threads1),
            "rss_before_kb": before, "rss_peak_kb": max(samples + [after]),
            "rss_per_conversation_kb": (max(samples + [after]) - before) / n}


def direct(chat_url: str, n: int, tokens: int, chat: int) -> dict[str, Any]:
    t0, c0, b0 = time.monotonic(), cpu_s(chat), own_cpu()
    v = verdict(asyncio.run(direct_phase(chat_url, n, tokens)), tokens)
    client = own_cpu() - b0
    return {**v, "wall_s": time.monotonic() - t0,
            "cpu_s": {"chat_service": cpu_s(chat) - c0, "bench_client": client},
            "cpu_us_per_token": client / max(1, v["tokens"]) * 1e6}


def run(streams: list[int], seconds: float = 5.0, delay_ms: int = 20, switch_interval: float = 0.0,
        paths: tuple[str, ...] = ("direct", "floor", "roogab"), paces: tuple[float, ...] = ()) -> dict[str, Any]:
    """Every stream count in *streams* through every path in *paths*, one after the other; with
    *paces*, one RooGab per ``stream_pace`` value (paths ``roogab pace=X``), else one with its default."""
    tokens = int(seconds * 1000 / delay_ms)
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="roogab-load-") as tmp:
        chat, chat_url = start_chat_server(tmp, tokens, delay_ms)
        procs: dict[str, tuple[subprocess.Popen[Any], str]] = {}
        try:
            if "floor" in paths:
                procs["floor"] = start_floor(tmp, chat_url)
            if "roogab" in paths:
                for pace in paces or (None,):
                    name = "roogab" if pace is None else f"roogab pace={pace:g}"
                    procs[name] = start_roogab(tmp, chat_url, threads=max(64, 2 * max(streams)),
                                               switch_interval=switch_interval, stream_pace=pace)
            for n in streams:
                row: dict[str, Any] = {"conversations": n}
                if "direct" in paths:
                    row["direct"] = direct(chat_url, n, tokens, chat.pid)
                    progress(n, "direct", row["direct"])
                for name, (proc, base) in procs.items():
                    row[name] = relay_phase(base, n, tokens, chat.pid, proc.pid)
                    progress(n, name, row[name])
                rows.append(row)
        finally:
            for proc, _ in procs.values():
                stop(proc)
            stop(chat)
    return {"tokens_each": tokens, "delay_ms": delay_ms, "switch_interval": switch_interval or None,
            "stream_paces": list(paces) or None,
            "loadavg_before": load, "loadavg_after": os.getloadavg(), "rows": rows}


def progress(n: int, name: str, v: dict[str, Any]) -> None:
    print(f"  {n} streams, {name}: {v['tokens']}/{v['expected']} tokens in {v['wall_s']:.1f} s, "
          f"{v['cpu_us_per_token']:.0f} us CPU/token ({v.get('busiest_thread_share', 1):.0%} on its busiest thread), "
          f"{v.get('switches_per_token', 0):.2f} switches/token, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def report(res: dict[str, Any]) -> None:
    print(f"{res['tokens_each']} tokens per stream at {1000 / res['delay_ms']:.0f} tokens/s; load average "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_before'])} before, "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_after'])} after")
    rows = []
    for row in res["rows"]:
        for name in _paths(row):
            v = row[name]
            lat = v["latency_ms"]
            rows.append([row["conversations"], name, f"{v['tokens']}/{v['expected']}",
                         "yes" if v["exactly_once_in_order"] else "NO", round(v["wall_s"], 1),
                         round(v["cpu_us_per_token"], 1), f"{v['busiest_thread_share']:.0%}" if "busiest_thread_share" in v else "-",
                         round(v.get("switches_per_token", 0), 2), lat["p50"], lat["p95"]])
    print("CPU us per token: of the relay process (floor, roogab), of the receiving client (direct);")
    print("busiest thread: its share of the relay's CPU (the event loop, where one loop does the work).")
    print_table(["streams", "path", "tokens", "once, in order", "wall s", "CPU us/token", "busiest thread",
                 "switches/token", "p50 ms", "p95 ms"], rows)
    rows = []
    for row in res["rows"]:
        f, d = row.get("floor"), row.get("direct")
        for name in [n for n in _paths(row) if n.startswith("roogab")]:
            r, rl = row[name], row[name]["latency_ms"]
            fl = f["latency_ms"] if f else {"p50": 0, "p95": 0}
            dl = d["latency_ms"] if d else {"p50": 0, "p95": 0}
            rows.append([row["conversations"], name, ratio(r["cpu_us_per_token"], f["cpu_us_per_token"] if f else 0),
                         ratio(r["cpu_us_per_token"], d["cpu_us_per_token"] if d else 0),
                         ratio(rl["p50"], fl["p50"]), ratio(rl["p95"], fl["p95"]),
                         ratio(rl["p50"], dl["p50"]), ratio(rl["p95"], dl["p95"]),
                         ratio(r["wall_s"], f["wall_s"] if f else 0)])
    print("RooGab as a ratio:")
    print_table(["streams", "path", "CPU/token ÷ floor", "÷ direct client", "p50 ÷ floor", "p95 ÷ floor",
                 "p50 ÷ direct", "p95 ÷ direct", "wall ÷ floor"], rows)
    for row in res["rows"]:
        for name in _paths(row):
            v = row[name]
            if v["errors"]:
                print(f"{row['conversations']} streams, {name} errors ({v['error_count']}): {v['errors']}")


def _paths(row: dict[str, Any]) -> list[str]:
    """The paths measured in *row*, in the order they ran."""
    return [name for name in row if name != "conversations"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", default="1,10,100,400", help="comma-separated stream counts")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of tokens per conversation")
    ap.add_argument("--delay-ms", type=int, default=20, help="between tokens (20 = 50 tokens/s)")
    ap.add_argument("--paths", default="direct,floor,roogab", help="which of direct,floor,roogab to run")
    ap.add_argument("--switch-interval", type=float, default=0.0,
                    help="experiment: sys.setswitchinterval() in the roogab serve process (seconds)")
    ap.add_argument("--stream-pace", default="",
                    help="comma-separated stream_pace values: one roogab serve for each, in the same run")
    ap.add_argument("--tokens", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--chat-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.chat_server:
        chat_server(args.chat_server, args.tokens, args.delay_ms)
        return
    res = run([int(x) for x in args.streams.split(",")], args.seconds, args.delay_ms, args.switch_interval,
              tuple(args.paths.split(",")), tuple(float(x) for x in args.stream_pace.split(",") if x))
    report(res)
    write_json(args.json, {"benchmark": "load", **res})


if __name__ == "__main__":
    main()

"""Added latency of one turn: a 40 KB Roo request through RooGab versus the chat service direct.

Run: ``PYTHONPATH=. python bench/bench_turn.py [--turns 200] [--protocols chat,messages,responses]
[--json out.json]``.

``--protocols``: which wire protocols to measure, each beside the same direct floor. ``chat`` is
the Roo request below; ``messages`` is Claude Code's captured turn 1 (``POST /v1/messages``,
49 KB, 12 tools), answered with the same text and one ``Bash`` call, read as Anthropic SSE
(first token = first ``content_block_delta``) or as the JSON message; ``responses`` is Codex
0.171.0's captured turn 1 (``POST /v1/responses``, 40.5 KB, 9 tools, a fresh ``prompt_cache_key``
each turn), answered with one ``exec_command`` call (first token = first text delta or call item).

Both paths hit the same demo chat service (``roogab.runtime.start_demo``, the ``roogab demo``
stack, SQLite store in a temporary directory) with the same scripted reply:

* RooGab: Roo Code's captured request (21 tools, system prompt padded to a 40 KB body), a task
  of its own each turn (a nonce in the user message), POSTed with ``http.client`` on a kept-alive
  connection, streaming (SSE) and not. Time to first token = first chunk carrying content or a
  tool call.
* direct (the floor): a ``socketio.AsyncClient`` on its own event loop speaking the demo's
  protocol itself — ``newConversation`` with the very prompt RooGab sent, then ``loadConversation``,
  ``tokenDelta``…, ``streamEnd``. Timed inside the loop: emit to first ``tokenDelta`` / ``streamEnd``.

Turns alternate RooGab / direct so drift in machine load hits both alike. "Added" is per pair:
RooGab's time minus the direct time of the turn run right after it.

``--processes``: the deployment shape instead of one process. The demo chat service and
``roogab serve`` each run in a process of their own (the service driven through its HTTP test
endpoints), so the benchmark client, RooGab and the service no longer share one GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client as httplib
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import socketio

from roogab.config import load_config
from roogab.demo import ScriptedReply
from roogab.runtime import Running, start_demo

try:
    from bench._common import Http, Timing, machine, print_table, roo_body, summary, with_nonce, write_json
    from bench._responses import codex_body, codex_with_nonce, protocol_cost, responses_turn
except ImportError:  # run as a script: bench/ is on sys.path, the repo root may not be
    from _common import Http, Timing, machine, print_table, roo_body, summary, with_nonce, write_json
    from _responses import codex_body, codex_with_nonce, protocol_cost, responses_turn

TEXT = ("I will start by listing the files in the current directory so that I can see how the "
        "project is laid out, which language it uses and where its tests live. After that I will "
        "read the most relevant files before proposing any change. " * 3).strip()
REPLY = ("```lua\nreturn {\n  text = [==[" + TEXT + "]==],\n  tool_calls = {\n"
         '    { name = "list_files", arguments = { path = ".", recursive = false } },\n  },\n}\n```')
CHUNK = 16
MSG_REPLY = REPLY.replace('name = "list_files", arguments = { path = ".", recursive = false }',
                          'name = "Bash", arguments = { command = "ls", description = "List files" }')
CLAUDE_TURN1 = Path(__file__).resolve().parent.parent / "tests/fixtures/captured/claude_code_2.1.332_main_four_turns.json"


CODEX_REPLY = REPLY.replace('name = "list_files", arguments = { path = ".", recursive = false }',
                            'name = "exec_command", arguments = { cmd = "ls -la" }')
REPLIES = {"chat": REPLY, "messages": MSG_REPLY, "responses": CODEX_REPLY}
TOOLS = {"chat": "list_files", "messages": "Bash", "responses": "exec_command"}


def script(delay_ms: int = 0, chunk: int = CHUNK, protocol: str = "chat") -> ScriptedReply:
    """The reply both paths get: ~800 characters of envelope, text then one tool call."""
    return ScriptedReply(REPLIES[protocol], chunk=chunk, delay_ms=delay_ms)


def messages_body() -> dict[str, Any]:
    """Claude Code 2.1.332's first request, addressed to the demo model."""
    body: dict[str, Any] = json.loads(CLAUDE_TURN1.read_text("utf-8"))["requests"][0]["body"]
    body["model"] = "demo/gab-1"
    return body


def messages_turn(client: Http, payload: bytes, stream: bool) -> Timing:
    """POST /v1/messages; time the first content_block_delta and the end."""
    conn = client._conn()
    t0 = time.perf_counter()
    try:
        conn.request("POST", client.prefix + "/v1/messages?beta=true", body=payload,
                     headers={"Content-Type": "application/json", "x-api-key": "bench",
                              "anthropic-version": "2023-06-01"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        if not stream:
            raw = resp.read()
            t1 = time.perf_counter()
            blocks = json.loads(raw)["content"]
            text = "".join(b["text"] for b in blocks if b["type"] == "text")
            calls = [{"id": b["id"], "name": b["name"], "arguments": json.dumps(b["input"])}
                     for b in blocks if b["type"] == "tool_use"]
            return Timing(t1 - t0, t1 - t0, text, calls, len(raw))
        return _read_anthropic_sse(resp, t0)
    except (OSError, httplib.HTTPException):
        client.close()
        raise


def _read_anthropic_sse(resp: Any, t0: float) -> Timing:
    first, nbytes = 0.0, 0
    text: list[str] = []
    calls: list[dict[str, str]] = []
    while True:
        line = resp.readline()
        if not line:
            break
        nbytes += len(line)
        if not line.startswith(b"data: "):
            continue
        obj = json.loads(line[6:])
        kind = obj["type"]
        if kind == "error":
            raise RuntimeError(f"stream error: {obj['error']}")
        if kind == "content_block_delta" and not first:
            first = time.perf_counter()
        if kind == "content_block_start" and obj["content_block"]["type"] == "tool_use":
            calls.append({"id": obj["content_block"]["id"], "name": obj["content_block"]["name"], "arguments": ""})
        elif kind == "content_block_delta" and obj["delta"]["type"] == "text_delta":
            text.append(obj["delta"]["text"])
        elif kind == "content_block_delta" and obj["delta"]["type"] == "input_json_delta":
            calls[-1]["arguments"] += obj["delta"]["partial_json"]
        elif kind == "message_stop":
            break
    resp.read()
    t1 = time.perf_counter()
    return Timing((first or t1) - t0, t1 - t0, "".join(text), calls, nbytes)


class DirectClient:
    """The chat service's own protocol, spoken by a python-socketio AsyncClient on its own loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="direct-client", daemon=True)
        self.thread.start()
        self.sio: socketio.AsyncClient | None = None
        self.pending: dict[str, dict[str, Any]] = {}   # ref -> turn state
        self.by_cid: dict[str, dict[str, Any]] = {}
        self.call(self._connect())

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _connect(self) -> None:
        sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        sio.on("loadConversation", self._created)
        sio.on("tokenDelta", self._delta)
        sio.on("tokenStream", self._snapshot)
        sio.on("streamEnd", self._end)
        sio.on("conversationError", self._error)
        await sio.connect(self.url, transports=["websocket"], wait_timeout=10)
        self.sio = sio

    def _created(self, data: dict[str, Any]) -> None:
        st = self.pending.pop(data.get("ref"), None)
        if st is not None:
            self.by_cid[data["id"]] = st

    def _delta(self, data: dict[str, Any]) -> None:
        st = self.by_cid.get(data.get("c"))
        if st is not None:
            if not st["first"]:
                st["first"] = time.perf_counter()
            st["parts"].append(data.get("content") or "")

    def _snapshot(self, data: dict[str, Any]) -> None:
        st = self.by_cid.get(data.get("c"))
        if st is not None:
            if not st["first"]:
                st["first"] = time.perf_counter()
            st["parts"][:] = [data.get("content") or ""]

    def _end(self, data: dict[str, Any]) -> None:
        st = self.by_cid.pop(data.get("c"), None)
        if st is not None:
            st["end"] = time.perf_counter()
            st["done"].set()

    def _error(self, data: dict[str, Any]) -> None:
        st = self.by_cid.pop(data.get("c"), None) or self.pending.pop(data.get("ref"), None)
        if st is not None:
            st["error"] = data
            st["done"].set()

    async def _turn(self, prompt: str, model: str) -> Timing:
        assert self.sio is not None
        ref = uuid.uuid4().hex
        st: dict[str, Any] = {"first": 0.0, "end": 0.0, "parts": [], "done": asyncio.Event(), "error": None}
        self.pending[ref] = st
        t0 = time.perf_counter()
        await self.sio.emit("newConversation", {"prompt": prompt, "agentId": model, "ref": ref})
        await asyncio.wait_for(st["done"].wait(), 60)
        if st["error"]:
            raise RuntimeError(f"direct turn failed: {st['error']}")
        return Timing(st["first"] - t0, st["end"] - t0, "".join(st["parts"]))

    def turn(self, prompt: str, model: str = "gab-1") -> Timing:
        """One fresh conversation: create with *prompt*, read the reply to its end."""
        return self.call(self._turn(prompt, model))

    def close(self) -> None:
        if self.sio is not None:
            self.call(self.sio.disconnect())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def start_stack(tmp: str, **overrides: Any) -> Running:
    """The ``roogab demo`` stack on free loopback ports, its SQLite store under *tmp*."""
    config = load_config(env={}, overrides={"port": 0, "data_dir": tmp, **overrides})
    return start_demo(replace(config))


class RemoteDemo:
    """The demo chat service in a process of its own, driven through its HTTP test endpoints."""

    def __init__(self) -> None:
        code = ("import sys; from roogab.demo import DemoChatService; d = DemoChatService(); "
                "print(d.start(), flush=True); sys.stdin.read(); d.stop()")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def _post(self, path: str, body: object) -> None:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()

    def push(self, reply: ScriptedReply) -> None:
        self._post("/demo/script", [{k: v for k, v in asdict(reply).items() if v is not None}])

    @property
    def received(self) -> list[SimpleNamespace]:
        """What arrived since the last look (then forgotten, so the log stays small)."""
        with urllib.request.urlopen(self.url + "/demo/received", timeout=10) as r:
            items = json.loads(r.read())
        self._post("/demo/reset", {})
        return [SimpleNamespace(**item) for item in items]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class RemoteStack:
    """``roogab serve`` in a process of its own, in front of a ``RemoteDemo``."""

    def __init__(self, tmp: str) -> None:
        self.demo = RemoteDemo()
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(f'port = 0\nlog_level = "warning"\ndata_dir = "{tmp}"\n\n[[providers]]\n'
                       f'name = "demo"\nkind = "socketio"\nurl = "{self.demo.url}"\n'
                       'models = ["gab-1", "gab-2"]\n')
        self.proc = subprocess.Popen([sys.executable, "-m", "roogab", "serve", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = ""
        while "is running at" not in line:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("roogab serve did not start")
        self.url = line.strip().rsplit(" ", 1)[-1]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self.demo.close()


def check_roogab(t: Timing, protocol: str = "chat") -> None:
    calls = t.tool_calls or []
    if TEXT not in t.content or [c["name"] for c in calls] != [TOOLS[protocol]]:
        raise AssertionError(f"RooGab's answer is not the scripted one: {t.content[:80]!r} {calls}")


def check_direct(t: Timing, protocol: str = "chat") -> None:
    if t.content != REPLIES[protocol]:
        raise AssertionError("the direct client did not receive the scripted reply whole")


def compare(running: Running, turns: int, warmup: int, stream: bool, delay_ms: int = 0,
            tag: str = "", protocol: str = "chat") -> dict[str, Any]:
    """Alternate *turns* RooGab turns and direct turns (after *warmup* of each); ms summaries."""
    assert running.demo is not None
    demo = running.demo
    base = {"messages": messages_body, "responses": codex_body}.get(protocol, roo_body)()
    base["stream"] = stream
    if stream and protocol == "chat":
        base["stream_options"] = {"include_usage": True}
    else:
        base.pop("stream_options", None)
    http = Http(running.url)
    direct = DirectClient(demo.url)
    rg: list[Timing] = []
    dr: list[Timing] = []
    prompt_bytes = 0
    try:
        for i in range(warmup + turns):
            nonce = f"bench {tag}{protocol}{'s' if stream else 'n'}{i} {uuid.uuid4().hex[:8]}"
            body = codex_with_nonce(base, nonce) if protocol == "responses" else with_nonce(base, nonce)
            payload = json.dumps(body).encode()
            demo.push(script(delay_ms, protocol=protocol))
            if protocol == "responses":
                t = responses_turn(http, payload, stream)
            else:
                t = messages_turn(http, payload, stream) if protocol == "messages" else http.chat(payload, stream)
            check_roogab(t, protocol)
            prompt = next(r.prompt for r in reversed(demo.received) if r.event == "newConversation")
            assert prompt
            prompt_bytes = len(prompt.encode())
            demo.push(script(delay_ms, protocol=protocol))
            d = direct.turn(prompt)
            check_direct(d, protocol)
            if i >= warmup:
                rg.append(t)
                dr.append(d)
    finally:
        http.close()
        direct.close()
    ms = 1000.0
    added = [(a.total - b.total) * ms for a, b in zip(rg, dr)]
    added_ttft = [(a.ttft - b.ttft) * ms for a, b in zip(rg, dr)]
    return {
        "protocol": protocol, "stream": stream, "turns": turns, "delay_ms": delay_ms, "request_bytes": len(payload),
        "prompt_bytes": prompt_bytes, "reply_chars": len(REPLY), "chunk": CHUNK,
        "roogab_total": summary([t.total * ms for t in rg]), "direct_total": summary([t.total * ms for t in dr]),
        "roogab_ttft": summary([t.ttft * ms for t in rg]), "direct_ttft": summary([t.ttft * ms for t in dr]),
        "added_total": summary(added), "added_ttft": summary(added_ttft),
    }


def usage_cost(running: Running, samples: int = 30) -> dict[str, float]:
    """In-process: what recounting the request's tokens for ``usage`` costs (``_Turn._usage``)."""
    from roogab.wire import parse_chat_request

    tokens = running.app.extensions["roogab"].service.tokens
    req = parse_chat_request(roo_body())
    tools = json.dumps([t.parameters for t in req.tools])
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        sum(tokens.count(m.content) for m in req.messages) + tokens.count(tools)
        out.append((time.perf_counter() - t0) * 1000)
    return summary(out)


def run(turns: int = 200, warmup: int = 20, modes: tuple[bool, ...] = (True, False),
        delay_ms: int = 0, processes: bool = False, protocols: tuple[str, ...] = ("chat",),
        stream_pace: float | None = None) -> dict[str, Any]:
    """Start a stack, measure each mode of each protocol, stop the stack."""
    pairs = [(p, s) for p in protocols for s in modes]
    with tempfile.TemporaryDirectory(prefix="roogab-bench-") as tmp:
        if processes:
            remote = RemoteStack(tmp)
            try:
                modes_out = [compare(remote, turns, warmup, s, delay_ms, protocol=p)  # type: ignore[arg-type]
                             for p, s in pairs]
                return {"modes": modes_out, "processes": True}
            finally:
                remote.close()
        running = start_stack(tmp, **({} if stream_pace is None else {"stream_pace": stream_pace}))
        try:
            modes_out = [compare(running, turns, warmup, s, delay_ms, protocol=p) for p, s in pairs]
            return {"modes": modes_out, "usage_count_ms": usage_cost(running), "protocol_cost_ms": protocol_cost()}
        finally:
            running.close()


def rows(result: dict[str, Any], label: str = "RooGab") -> list[list[Any]]:
    """Table rows: one per mode."""
    out = []
    for m in result["modes"]:
        d, r, a = m["direct_total"], m["roogab_total"], m["added_total"]
        dt, rt, at = m["direct_ttft"], m["roogab_ttft"], m["added_ttft"]
        name = {"chat": "chat completions", "messages": "messages", "responses": "responses"}.get(
            m.get("protocol", "chat"), "?")
        out.append([f"{label} {name} {'stream' if m['stream'] else 'non-stream'}", m["turns"],
                    d["p50"], r["p50"], a["p50"], a["p95"], r["p50"] / d["p50"],
                    dt["p50"], rt["p50"], at["p50"], at["p95"]])
    return out


HEADERS = ["path", "turns", "direct p50", "proxy p50", "added p50", "added p95", "ratio p50",
           "direct TTFT", "proxy TTFT", "added TTFT p50", "added TTFT p95"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=200, help="measured turns per mode (default 200)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--delay-ms", type=int, default=0, help="pause between the service's events")
    ap.add_argument("--processes", action="store_true",
                    help="the chat service and roogab serve in processes of their own")
    ap.add_argument("--protocols", default="chat,messages,responses",
                    help="wire protocols to measure, comma-separated: chat, messages, responses (default all)")
    ap.add_argument("--stream-pace", type=float, help="RooGab's stream_pace (in-process only; default its own)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    started = time.monotonic()
    result = run(args.turns, args.warmup, delay_ms=args.delay_ms, processes=args.processes,
                 protocols=tuple(args.protocols.split(",")), stream_pace=args.stream_pace)
    m0 = result["modes"][0]
    print(f"request {m0['request_bytes']} B JSON -> prompt {m0['prompt_bytes']} B to the chat service; "
          f"reply {m0['reply_chars']} chars in {CHUNK}-char tokenDelta events, delay {args.delay_ms} ms; ms:")
    print_table(HEADERS, rows(result))
    if "usage_count_ms" in result:
        print(f"of which recounting the request's tokens for usage (in-process): "
              f"p50 {result['usage_count_ms']['p50']:.2f} ms per turn")
    for name, cost in result.get("protocol_cost_ms", {}).items():
        print(f"in-process, {name}: parse the 40 KB body p50 {cost['parse_p50']:.2f} ms, "
              f"render the reply as SSE p50 {cost['render_p50']:.2f} ms")
    print(f"({time.monotonic() - started:.0f} s; load average {machine()['loadavg'][0]:.2f})")
    write_json(args.json, {"benchmark": "turn", **result})


if __name__ == "__main__":
    main()

"""The OpenAI Responses side of bench_turn: Codex's captured 40 KB turn 1 and a reader of its SSE."""

from __future__ import annotations

import copy
import http.client
import json
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from bench._common import Http, Timing
except ImportError:  # run as a script
    from _common import Http, Timing

CODEX = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "captured" / \
    "codex_0.171.0_main_four_turns_fallback_model.json"


def codex_body(model: str = "demo/gab-1") -> dict[str, Any]:
    """Codex 0.171.0's first request (40.5 KB: 17 KB developer prompt, 9 tools), to *model*."""
    data = json.loads(CODEX.read_text("utf-8"))
    body = next(r["body"] for r in data["requests"] if r["path"].endswith("/responses"))
    body = copy.deepcopy(body)
    body["model"] = model
    return body


def codex_with_nonce(body: dict[str, Any], nonce: str) -> dict[str, Any]:
    """A task of its own: a fresh conversation key and the nonce in the user's prompt."""
    body = copy.deepcopy(body)
    body["prompt_cache_key"] = uuid.uuid4().hex
    body["input"][-1]["content"][0]["text"] += f" ({nonce})"
    return body


def responses_turn(http: Http, payload: bytes, stream: bool) -> Timing:
    """POST /v1/responses; time the first text or call event and the end (``response.completed``)."""
    conn = http._conn()
    t0 = time.perf_counter()
    try:
        conn.request("POST", http.prefix + "/v1/responses", body=payload,
                     headers={"Content-Type": "application/json", "Authorization": "Bearer bench"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        if not stream:
            raw = resp.read()
            t1 = time.perf_counter()
            return _timing(json.loads(raw)["output"], t1 - t0, t1 - t0, len(raw))
        return _read(resp, t0)
    except (OSError, http.client.HTTPException):
        http.close()
        raise


def _read(resp: http.client.HTTPResponse, t0: float) -> Timing:
    first, nbytes = 0.0, 0
    output: list[dict[str, Any]] = []
    while True:
        line = resp.readline()
        if not line:
            break
        nbytes += len(line)
        if not line.startswith(b"data: "):
            continue
        event = json.loads(line[6:])
        kind = event["type"]
        if not first and kind in ("response.output_text.delta", "response.output_item.added") and \
                event.get("item", {}).get("type") != "reasoning":
            first = time.perf_counter()
        if kind == "response.failed":
            raise RuntimeError(f"stream failed: {event['response']['error']}")
        if kind == "response.completed":
            output = event["response"]["output"]
            break
    resp.read()  # drain the chunked terminator so the connection can be reused
    t1 = time.perf_counter()
    return _timing(output, (first or t1) - t0, t1 - t0, nbytes)


def _timing(output: list[dict[str, Any]], ttft: float, total: float, nbytes: int) -> Timing:
    text = "".join(p["text"] for o in output if o["type"] == "message" for p in o["content"])
    calls = [{"id": o["call_id"], "name": o["name"], "arguments": o["arguments"]}
             for o in output if o["type"] == "function_call"]
    return Timing(ttft, total, text, calls, nbytes)


def protocol_cost(samples: int = 200) -> dict[str, dict[str, float]]:
    """In-process, no IO: parsing each protocol's 40 KB turn-1 body and rendering the reply's
    items (text in 16-character pieces, one call) as SSE; ms per turn."""
    from roogab.envelope import ToolCall
    from roogab.outputs import CallOut, Finished, Out, TextOut
    from roogab.protocols import PROTOCOLS, Exchange
    from roogab.wire import Usage

    try:
        from bench._common import roo_body, summary
    except ImportError:
        from _common import roo_body, summary
    bodies = {"/chat/completions": roo_body(), "/responses": codex_body()}
    tool = {"/chat/completions": ("list_files", {"path": "."}), "/responses": ("exec_command", {"cmd": "ls -la"})}
    text = "I will start by listing the files in the current directory. " * 12
    out: dict[str, dict[str, float]] = {}
    for path, body in bodies.items():
        proto = PROTOCOLS[path]
        body = {**body, "stream": True}
        parse, render = [], []
        for _ in range(samples):
            t0 = time.perf_counter()
            request = proto.parse(body, {})
            t1 = time.perf_counter()
            items: list[Out] = [TextOut(text[i:i + 16]) for i in range(0, len(text), 16)]
            items += [CallOut(0, "call_1", ToolCall(*tool[path])), Finished("tool_calls", Usage(9000, 200))]
            "".join(proto.stream(iter(items), request, Exchange(proto.new_id(), request.model, 0)))
            t2 = time.perf_counter()
            parse.append((t1 - t0) * 1000)
            render.append((t2 - t1) * 1000)
        out[proto.name] = {"parse_p50": summary(parse)["p50"], "render_p50": summary(render)["p50"]}
    return out

"""A 100-turn Roo-like session: what the agent sends versus what RooGab sends the chat service.

Run: ``PYTHONPATH=. python bench/bench_session.py [--turns 100] [--json out.json]``.

The ``roogab demo`` stack in-process (SQLite store in a temporary directory). The agent is Roo
Code's captured request with its 21 tools and a 40 KB system prompt; each turn the demo answers
with one ``list_files`` call, and the agent, as a real one does, echoes RooGab's reply (text and
the tool call with the id RooGab returned) and appends a 2 KB tool result for that id. Per turn:
the agent's request size, the bytes RooGab sent the chat service (the demo's ``received``
prompts), the new messages' size, the turn's latency and the process's CPU time (the turn log's
background write of the turn is waited for inside it, so each turn is charged its own record:
otherwise the writer's batches, every second or third turn, make the medians flip by ~10 ms).
Goal: after turn 1, bytes to the chat service <= new messages + 1 KB, flat; the CPU of turn 100
within 1.2x of turn 2's (medians of turns 91-100 and 2-11).

Then, in-process, the time ``Registry.turn`` takes to resolve turn 51's request (the whole
50-turn history) against the live registry: goal < 2 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

from roogab.demo import ScriptedReply
from roogab.wire import parse_chat_request

try:
    from bench._common import Http, print_table, roo_body, summary, system_text, write_json
    from bench.bench_turn import start_stack
except ImportError:
    from _common import Http, print_table, roo_body, summary, system_text, write_json
    from bench_turn import start_stack

KB = 1024


def reply(i: int) -> str:
    return ('```lua\nreturn {\n  text = [==[Listing the next folder.]==],\n  tool_calls = {\n'
            f'    {{ name = "list_files", arguments = {{ path = "src/pkg{i:02}", recursive = false }} }},\n'
            '  },\n}\n```')


def tool_result(i: int, size: int = 2048) -> str:
    lines = "".join(f"src/pkg{i:02}/module_{j:03}.py  # {j * 37 % 997} lines\n" for j in range(200))
    return (f"Listing of src/pkg{i:02}:\n" + lines)[:size]


def _measure_request_threads(app: Any) -> list[float]:
    """Wrap the WSGI app so that each request's own thread CPU (``time.thread_time`` in the
    waitress thread, body iterated and closed) is appended to the returned list: RooGab's work
    for the turn without the client, the demo service or other threads. (The provider loop's
    share, receiving the reply, does not grow with the history: the bytes it gets are flat.)"""
    seen: list[float] = []
    inner = app.wsgi_app

    def timed(environ: Any, start_response: Any) -> list[bytes]:
        t0 = time.thread_time()
        body = inner(environ, start_response)
        try:
            chunks = list(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        seen.append(time.thread_time() - t0)
        return chunks

    app.wsgi_app = timed
    return seen


def run(turns: int = 50, samples: int = 200) -> dict[str, Any]:
    body = roo_body()
    body["messages"][0]["content"] = system_text(40_000)
    body["stream"] = False
    body.pop("stream_options", None)
    body["messages"][1]["content"][0]["text"] += f" (session {time.time_ns()})"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="roogab-session-") as tmp:
        running = start_stack(tmp)
        assert running.demo is not None
        demo = running.demo
        thread_cpu = _measure_request_threads(running.app)
        registry = running.app.extensions["roogab"].service.registry
        http = Http(running.url)
        try:
            new_bytes = len(json.dumps(body["messages"]).encode())
            for i in range(1, turns + 1):
                payload = json.dumps(body).encode()
                seen = len(demo.received)
                demo.push(ScriptedReply(reply(i), chunk=64))
                cpu0 = time.process_time()
                t = http.chat(payload, stream=False)
                registry.turns(limit=1)  # the turn's log record written: its CPU counted in its own turn
                cpu = time.process_time() - cpu0
                request_cpu = thread_cpu.pop() if thread_cpu else float("nan")
                prompts = [r.prompt for r in demo.received[seen:] if r.prompt is not None]
                sent = sum(len(p.encode()) for p in prompts)
                [call] = t.tool_calls or [{}]
                if call.get("name") != "list_files":
                    raise AssertionError(f"turn {i}: unexpected answer {t.content!r} {t.tool_calls}")
                rows.append({"turn": i, "request_bytes": len(payload), "messages": len(body["messages"]),
                             "new_bytes": new_bytes, "sent_bytes": sent, "prompts": len(prompts),
                             "over_new": sent - new_bytes, "ms": t.total * 1000,
                             "cpu_ms": cpu * 1000, "request_cpu_ms": request_cpu * 1000})
                added = [
                    {"role": "assistant", "content": t.content,
                     "tool_calls": [{"id": call["id"], "type": "function",
                                     "function": {"name": call["name"], "arguments": call["arguments"]}}]},
                    {"role": "tool", "tool_call_id": call["id"], "content": tool_result(i)},
                ]
                body["messages"] += added
                new_bytes = len(json.dumps(added).encode())
            # Registry.turn on the next request (the whole history), against the live registry.
            request = parse_chat_request(json.loads(json.dumps(body)))
            resolve, parse = [], []
            raw = json.dumps(body)
            for _ in range(samples):
                t0 = time.perf_counter()
                req = parse_chat_request(json.loads(raw))
                t1 = time.perf_counter()
                with registry.turn("addr:127.0.0.1", req, "demo", "gab-1") as plan:
                    t2 = time.perf_counter()
                    assert not plan.fresh and len(plan.new) == 1, (plan.fresh, len(plan.new))
                parse.append((t1 - t0) * 1000)
                resolve.append((t2 - t1) * 1000)
            # tokenizing every message of the history and the tools afresh: what ``_Turn._usage``
            # did every turn before per-message counts were cached (commit 6edb216)
            tokens = running.app.extensions["roogab"].service.tokens
            tools = json.dumps([t.parameters for t in request.tools])
            counting = []
            for _ in range(20):
                t0 = time.perf_counter()
                sum(tokens.count(m.content) for m in request.messages) + tokens.count(tools)
                counting.append((time.perf_counter() - t0) * 1000)
            bodies = getattr(running.app.extensions["roogab"], "bodies", None)  # the body prefix cache
            cache = {"hits": bodies.hits, "misses": bodies.misses, "reused": bodies.reused} if bodies else None
        finally:
            http.close()
            running.close()
    later = rows[1:]
    flat = all(r["over_new"] <= KB for r in later)
    early, late = rows[1:11], rows[-10:]
    windows = {"early_turns": [early[0]["turn"], early[-1]["turn"]] if early else [],
               "late_turns": [late[0]["turn"], late[-1]["turn"]] if late else [],
               "early_ms": summary([r["ms"] for r in early]), "late_ms": summary([r["ms"] for r in late]),
               "early_cpu_ms": summary([r["cpu_ms"] for r in early]),
               "late_cpu_ms": summary([r["cpu_ms"] for r in late]),
               "early_request_cpu_ms": summary([r["request_cpu_ms"] for r in early]),
               "late_request_cpu_ms": summary([r["request_cpu_ms"] for r in late])}
    return {"turns": rows, "windows": windows, "registry_turn_ms": summary(resolve), "parse_request_ms": summary(parse),
            "count_history_tokens_ms": summary(counting), "body_cache": cache,
            "history_messages": len(body["messages"]), "history_bytes": len(raw),
            "goal_bytes_met": flat, "max_over_new": max(r["over_new"] for r in later) if later else 0,
            "goal_registry_met": summary(resolve)["p50"] < 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run(args.turns)
    show = [r for r in res["turns"] if r["turn"] in (1, 2, 3, 5, 10, 20, 25, 30, 35, 40, 45, 50) or r["turn"] == args.turns]
    print("bytes per turn (agent request vs. what RooGab sent the chat service):")
    print_table(["turn", "messages", "agent request", "new messages", "sent to service", "sent - new", "turn ms", "CPU ms",
                 "request thread CPU ms"],
                [[r["turn"], r["messages"], r["request_bytes"], r["new_bytes"], r["sent_bytes"], r["over_new"],
                  r["ms"], r["cpu_ms"], r["request_cpu_ms"]] for r in show])
    total_req = sum(r["request_bytes"] for r in res["turns"])
    total_sent = sum(r["sent_bytes"] for r in res["turns"])
    print(f"over {args.turns} turns: agent sent {total_req / 1e6:.2f} MB, RooGab sent the service "
          f"{total_sent / 1e6:.3f} MB ({total_req / total_sent:.0f}x less)")
    print(f"goal 'after turn 1, sent <= new + 1 KB': {'met' if res['goal_bytes_met'] else 'MISSED'} "
          f"(max sent - new: {res['max_over_new']} B)")
    w = res["windows"]
    if w["early_turns"]:
        print(f"median turn, turns {w['early_turns'][0]}-{w['early_turns'][1]} vs "
              f"{w['late_turns'][0]}-{w['late_turns'][1]}: wall {w['early_ms']['p50']:.1f} vs "
              f"{w['late_ms']['p50']:.1f} ms ({w['late_ms']['p50'] / w['early_ms']['p50']:.2f}x), CPU of the "
              f"process (client, RooGab, demo) {w['early_cpu_ms']['p50']:.1f} vs {w['late_cpu_ms']['p50']:.1f} ms "
              f"({w['late_cpu_ms']['p50'] / w['early_cpu_ms']['p50']:.2f}x); RooGab's request thread "
              f"{w['early_request_cpu_ms']['p50']:.1f} vs {w['late_request_cpu_ms']['p50']:.1f} ms "
              f"({w['late_request_cpu_ms']['p50'] / w['early_request_cpu_ms']['p50']:.2f}x; goal <= 1.2x); "
              f"load average {os.getloadavg()[0]:.2f}")
    r, p = res["registry_turn_ms"], res["parse_request_ms"]
    print(f"Registry.turn at turn {args.turns + 1} ({res['history_messages']} messages, "
          f"{res['history_bytes'] / 1000:.0f} KB): p50 {r['p50']:.3f} ms, p95 {r['p95']:.3f} ms "
          f"(goal < 2 ms: {'met' if res['goal_registry_met'] else 'MISSED'}); "
          f"parsing that request: p50 {p['p50']:.2f} ms; tokenizing its whole history afresh (uncached): "
          f"p50 {res['count_history_tokens_ms']['p50']:.2f} ms")
    if res["body_cache"]:
        c = res["body_cache"]
        print(f"body prefix cache: {c['hits']} bodies decoded from a kept prefix, {c['misses']} whole; "
              f"{c['reused']} history elements taken over")
    write_json(args.json, {"benchmark": "session", **res})


if __name__ == "__main__":
    main()

"""Concurrent streams through `roogab serve --workers N` (1, 2, 4 ...): does a second process help?

Run: ``PYTHONPATH=. python bench/bench_workers.py [--streams 400] [--workers 1,2,4] [--seconds 5]``.

The chat service and the streaming client are bench_load.py's (one token per Socket.IO event on
an absolute schedule, every token checked: each sequence number once, in order). For each worker
count a fresh ``roogab serve --workers N`` (SQLite store in a temporary directory, so the task
leases are on, as in production; ``threads`` = 2x the stream count per worker) serves the
streams; its CPU is the parent's and every worker's, from ``/proc``. The floor relay runs once at
the same stream count as the reference. The machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

try:
    from bench import bench_load as load
    from bench._common import print_table, rss_kb, stop, write_json
except ImportError:
    import bench_load as load  # type: ignore[no-redef]
    from _common import print_table, rss_kb, stop, write_json


def start_workers(tmp: str, chat_url: str, workers: int, threads: int) -> tuple[subprocess.Popen[str], str, list[int]]:
    """``roogab serve --workers N``; its URL and its workers' PIDs once every worker answers."""
    data = Path(tmp) / f"data-{workers}"
    cfg = Path(tmp) / f"workers-{workers}.toml"
    cfg.write_text(f'store = "sqlite"\nthreads = {threads}\nlog_level = "warning"\nport = 0\n'
                   f'data_dir = "{data}"\n\n[[providers]]\nname = "load"\nkind = "socketio"\n'
                   f'url = "{chat_url}"\nmodels = ["gab-1"]\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "roogab", "serve", "--config", str(cfg),
                             "--workers", str(workers)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    url = ""
    while not url:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("roogab serve did not start")
        if "is running at" in line:
            url = line.strip().rsplit(" ", 1)[-1]
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < workers and time.monotonic() < deadline:  # a new connection each time
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            seen.add(json.loads(response.read())["instance"])
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    return proc, url, children


def phase(url: str, n: int, tokens: int, pids: list[int]) -> dict[str, Any]:
    """*n* concurrent streams through the group *pids* (parent first)."""
    asyncio.run(load.roogab_phase(url, 1, tokens, pids[0]))  # warm: one stream
    time.sleep(0.3)
    t0, c0 = time.monotonic(), sum(load.cpu_s(p) for p in pids)
    results, _, _ = asyncio.run(load.roogab_phase(url, n, tokens, pids[0]))
    wall = time.monotonic() - t0
    cpu = sum(load.cpu_s(p) for p in pids) - c0
    v = load.verdict(results, tokens)
    return {**v, "wall_s": wall, "cpu_s": cpu, "cpu_us_per_token": cpu / max(1, v["tokens"]) * 1e6,
            "rss_kb": sum(rss_kb(p) for p in pids)}


def run(streams: int, counts: list[int], seconds: float, delay_ms: int) -> dict[str, Any]:
    tokens = int(seconds * 1000 / delay_ms)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="roogab-workers-") as tmp:
        chat, chat_url = load.start_chat_server(tmp, tokens, delay_ms)
        try:
            floor, floor_url = load.start_floor(tmp, chat_url)
            try:
                rows.append({"path": "floor", **phase(floor_url, streams, tokens, [floor.pid])})
            finally:
                stop(floor)
            progress(rows[-1])
            for workers in counts:
                proc, url, children = start_workers(tmp, chat_url, workers, threads=max(64, 2 * streams))
                try:
                    rows.append({"path": f"roogab --workers {workers}",
                                 **phase(url, streams, tokens, [proc.pid, *children])})
                finally:
                    stop(proc)
                progress(rows[-1])
        finally:
            stop(chat)
    return {"streams": streams, "tokens_each": tokens, "delay_ms": delay_ms, "cores": os.cpu_count(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "rows": rows}


def progress(row: dict[str, Any]) -> None:
    print(f"  {row['path']}: {row['tokens']}/{row['expected']} tokens in {row['wall_s']:.1f} s, "
          f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)


def report(res: dict[str, Any]) -> None:
    ideal = res["tokens_each"] * res["delay_ms"] / 1000
    print(f"{res['streams']} streams x {res['tokens_each']} tokens ({ideal:.0f} s of tokens each) on "
          f"{res['cores']} cores; load average {' '.join(f'{x:.2f}' for x in res['loadavg_before'])} before, "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_after'])} after")
    floor = res["rows"][0]
    print_table(["path", "tokens", "once, in order", "wall s", "wall ÷ floor", "CPU s", "CPU us/token",
                 "p50 ms", "p95 ms", "RSS MiB"],
                [[r["path"], f"{r['tokens']}/{r['expected']}", "yes" if r["exactly_once_in_order"] else "NO",
                  round(r["wall_s"], 1), f"{r['wall_s'] / floor['wall_s']:.2f}", round(r["cpu_s"], 1),
                  round(r["cpu_us_per_token"], 1), r["latency_ms"]["p50"], r["latency_ms"]["p95"],
                  round(r["rss_kb"] / 1024)] for r in res["rows"]])
    for r in res["rows"]:
        if r["errors"]:
            print(f"{r['path']} errors ({r['error_count']}): {r['errors']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=400)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of tokens per conversation")
    ap.add_argument("--delay-ms", type=int, default=20, help="between tokens (20 = 50 tokens/s)")
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run(args.streams, [int(x) for x in args.workers.split(",")], args.seconds, args.delay_ms)
    report(res)
    write_json(args.json, {"benchmark": "workers", **res})


if __name__ == "__main__":
    main()

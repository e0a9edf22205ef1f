"""Memory of ``roogab serve --workers N``: what each worker holds alone, and what the group holds.

Run: ``PYTHONPATH=. python bench/bench_worker_memory.py [--workers 1,2,4] [--turns 100]
[--source DIR] [--json out.json]``.

A ``roogab demo``'s chat service is the provider (``kind = "socketio"``). For each worker count a
fresh ``roogab serve --workers N`` (SQLite store in a temporary directory) serves *turns* turns
of the 40 KB Roo request, non-streaming, one new connection each, so the kernel spreads them over
the workers; one second after the last, every process of the group is read from
``/proc/PID/smaps_rollup``:

- **RSS**: what ``ps`` shows; pages shared with the parent or a sibling count in full in each;
- **USS** (private clean + private dirty): what that process alone holds, freed when it exits;
- **PSS**: each shared page divided by the processes sharing it; the group's PSS adds up to what
  the group costs the machine.

``--source`` runs another RooGab checkout (``git worktree add /tmp/before <commit>``) with this
script, so a change is measured against its parent in one sitting. ``--workers 1`` is plain
``roogab serve`` (no parent process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from bench._common import ROOT, Http, print_table, roo_body, stop, with_nonce, write_json
    from bench.bench_startup import launch
except ImportError:
    from _common import ROOT, Http, print_table, roo_body, stop, with_nonce, write_json
    from bench_startup import launch

FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty")


def smaps(pid: int) -> dict[str, int]:
    """The KiB fields of ``/proc/PID/smaps_rollup`` this benchmark reports, plus ``Uss``."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in FIELDS:
            out[name] = int(rest.split()[0])
    out["Uss"] = out["Private_Clean"] + out["Private_Dirty"]
    return out


def group(proc: subprocess.Popen[str], workers: int) -> list[int]:
    """The PIDs of the group: the process itself, then its workers (when it forked any)."""
    if workers == 1:
        return [proc.pid]
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = [int(p) for p in children.read_text().split()]
        if len(pids) == workers:
            return [proc.pid, *pids]
        time.sleep(0.05)
    raise RuntimeError(f"{workers} workers did not start")


def measure(source: Path, chat_url: str, tmp: Path, workers: int, turns: int) -> dict[str, Any]:
    """One ``roogab serve --workers N``: *turns* turns, then every process's smaps."""
    cfg = tmp / f"serve-{workers}.toml"
    cfg.write_text(f'port = 0\nstore = "sqlite"\ndata_dir = "{tmp / f"data-{workers}"}"\nlog_level = "warning"\n\n'
                   f'[[providers]]\nname = "demo"\nkind = "socketio"\nurl = "{chat_url}"\nmodels = ["gab-1"]\n')
    env = dict(os.environ, PYTHONPATH=str(source))  # and cwd: ``-m`` puts the cwd first on sys.path
    proc, _, _, url, _ = launch([sys.executable, "-m", "roogab", "serve", "--config", str(cfg),
                                 "--workers", str(workers)], env, cwd=source)
    try:
        pids = group(proc, workers)
        body = roo_body()
        body["stream"] = False
        body.pop("stream_options", None)
        for i in range(turns):
            http = Http(url)  # a new connection each turn: the kernel picks the worker (not 200: raises)
            http.chat(json.dumps(with_nonce(body, f"mem {i} {time.time_ns()}")).encode(), stream=False)
            http.close()
        time.sleep(1.0)
        return {"workers": workers, "processes": [{"pid": pid, **smaps(pid)} for pid in pids]}
    finally:
        stop(proc)


def rows_for(result: dict[str, Any]) -> list[list[Any]]:
    """Table rows: each process, then the group's total PSS."""
    n = result["workers"]
    procs = result["processes"]
    rows = []
    for i, p in enumerate(procs):
        role = "serve" if n == 1 else ("parent" if i == 0 else f"worker {i - 1}")
        rows.append([n, role, *(f"{p[k] / 1024:.1f}" for k in ("Rss", "Uss", "Pss", "Shared_Dirty"))])
    total = sum(p["Pss"] for p in procs)
    rows.append([n, "group: PSS in all", "", "", f"{total / 1024:.1f}", ""])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--turns", type=int, default=100)
    ap.add_argument("--source", type=Path, default=ROOT, help="the RooGab checkout to run (default: this one)")
    ap.add_argument("--json")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="roogab-wmem-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(args.source), ROOGAB_DATA_DIR=str(Path(tmp) / "demo"))
        demo, _, _, _, chat_url = launch([sys.executable, "-m", "roogab", "demo", "--port", "0"], env, cwd=args.source)
        try:
            results = [measure(args.source, chat_url, Path(tmp), n, args.turns) for n in counts]
        finally:
            stop(demo)
    print(f"source {args.source}, {args.turns} turns, load {os.getloadavg()[0]:.2f} (MiB)")
    print_table(["workers", "process", "RSS", "USS", "PSS", "shared dirty"],
                [row for r in results for row in rows_for(r)])
    write_json(args.json, {"benchmark": "worker_memory", "source": str(args.source), "turns": args.turns,
                           "results": results})


if __name__ == "__main__":
    main()

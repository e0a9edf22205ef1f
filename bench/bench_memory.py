"""Where ``roogab serve``'s memory goes: RSS split by allocator, after start, 1, 10 and N turns.

Run: ``PYTHONPATH=. python bench/bench_memory.py [--turns 100] [--threads N] [--json out.json]``.

The same run as bench_startup's "after 100 turns" (a ``roogab demo`` as the chat service, a
``roogab serve`` with one ``socketio`` provider, the 40 KB Roo request non-streamed, a fresh
nonce per turn), but the serve process runs through this file (``--child``), which installs a
SIGUSR1 handler that writes, one second after each point:

- RSS, and its anonymous and file-backed shared parts (``/proc/self/smaps_rollup``);
- glibc malloc: heap arenas, mmapped chunks, bytes in use and free (``mallinfo2``); in-use
  includes the chunks each thread's tcache holds;
- pymalloc (objects of 512 bytes or less): arenas and the bytes of empty pools in them
  (``sys._debugmallocstats``);
- SQLite's own heap (``sqlite3_memory_used``: mostly the page cache);
- the number of threads.

Linux with glibc only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

try:
    from bench._common import ROOT, Http, print_table, roo_body, stop, with_nonce, write_json
    from bench.bench_startup import env_for, launch
except ImportError:
    from _common import ROOT, Http, print_table, roo_body, stop, with_nonce, write_json
    from bench_startup import env_for, launch

MiB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _pymalloc() -> dict[str, float]:
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    text = b"".join(chunks).decode()
    arenas = int(re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)[1].replace(",", ""))  # type: ignore[index]
    empty = re.search(r"unused pools \* \d+ bytes\s*=\s*([\d,]+)", text)
    return {"pymalloc_arenas_mib": arenas * 1.0, "pymalloc_empty_pools_mib":
            int(empty[1].replace(",", "")) / MiB if empty else 0.0}


def snapshot() -> dict[str, float]:
    """This process's memory, split as the module docstring says."""
    roll = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        roll[key] = int(value.split()[0]) / 1024
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    try:
        sqlite = ctypes.CDLL("libsqlite3.so.0")
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite_mib = sqlite.sqlite3_memory_used() / MiB
    except OSError:
        sqlite_mib = float("nan")
    return {"rss_mib": roll["Rss"], "anon_mib": roll["Anonymous"], "file_shared_mib": roll["Shared_Clean"],
            "malloc_heap_mib": mi.arena / MiB, "malloc_mmapped_mib": mi.hblkhd / MiB,
            "malloc_in_use_mib": mi.uordblks / MiB, "malloc_free_mib": mi.fordblks / MiB,
            **_pymalloc(), "sqlite_mib": sqlite_mib, "threads": threading.active_count()}


def child(out: str, argv: list[str]) -> None:
    """Run ``roogab`` with *argv*; on SIGUSR1 append a snapshot (JSON line) to *out*."""
    def dump(*_: object) -> None:
        with open(out, "a") as f:
            f.write(json.dumps(snapshot()) + "\n")
    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["roogab", *argv]
    from roogab.cli import main as roogab_main
    roogab_main()


def run(turns: int, threads: int | None) -> list[tuple[str, dict[str, float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="roogab-memory-"))
    dumps = tmp / "dumps.jsonl"
    demo, _, _, _, chat_url = launch([sys.executable, "-m", "roogab", "demo", "--port", "0"], env_for(tmp / "d", None))
    serve = None
    points: list[tuple[str, dict[str, float]]] = []
    try:
        cfg = tmp / "serve.toml"
        cfg.write_text((f"threads = {threads}\n" if threads else "") + "port = 0\n\n[[providers]]\n"
                       f'name = "demo"\nkind = "socketio"\nurl = "{chat_url}"\nmodels = ["gab-1"]\n')
        serve, _, _, url, _ = launch([sys.executable, __file__, "--child", str(dumps), "serve", "--config", str(cfg)],
                                     env_for(tmp / "s", None))

        def point(label: str) -> None:
            time.sleep(1.0)
            before = dumps.read_text().count("\n") if dumps.exists() else 0
            assert serve is not None
            os.kill(serve.pid, signal.SIGUSR1)
            while (dumps.read_text().count("\n") if dumps.exists() else 0) == before:
                time.sleep(0.05)
            points.append((label, json.loads(dumps.read_text().splitlines()[-1])))

        point("after start")
        body = roo_body()
        body["stream"] = False
        body.pop("stream_options", None)
        http = Http(url)
        for i in range(turns):
            http.chat(json.dumps(with_nonce(body, f"mem {i} {time.time_ns()}")).encode(), stream=False)
            if i + 1 in (1, 10) and i + 1 < turns:
                point(f"after {i + 1} turns")
        http.close()
        point(f"after {turns} turns")
    finally:
        if serve is not None:
            stop(serve)
        stop(demo)
    return points


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        child(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=100)
    ap.add_argument("--threads", type=int, help="the serve config's threads (default: RooGab's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    points = run(args.turns, args.threads)
    keys = list(points[0][1])
    print_table(["MiB", *[label for label, _ in points]],
                [[k.removesuffix("_mib"), *[f"{p[k]:.1f}" if isinstance(p[k], float) else str(p[k]) for _, p in points]]
                 for k in keys])
    print(f"load average: {os.getloadavg()[0]:.2f}; 80 MB = {80e6 / MiB:.1f} MiB")
    result: dict[str, Any] = {"benchmark": "memory", "points": dict(points), "loadavg": os.getloadavg()}
    write_json(args.json, result)


if __name__ == "__main__":
    main()

"""The state layer beyond one machine: stored conversations at start-up, turn overhead per
store, and the time to take over a dead instance's task.

Run: ``PYTHONPATH=.:tests python bench/bench_cluster.py [--turns 300] [--stored 10000]``
(PostgreSQL 15 binaries needed for the postgres rows; as root they run as ``ROOGAB_PG_USER``,
default nobody, see tests/pgserver.py).

1. Start-up with 0 / N stored conversations: ``roogab demo --port 0`` on a SQLite data dir
   prefilled with N conversations: seconds to /healthz 200 and RSS one second later (median of 3).
2. Turn overhead of the state layer per store: ``Registry.turn`` (plan, with the task lease on
   postgres) + ``record`` + the turn log entry, for a 40 KB Roo-shaped turn, no provider.
3. Takeover: instance A holds a task's lease mid-turn and dies (stops renewing); B receives the
   agent's retry. Seconds from A's death to B's plan, with lease_ttl = 1 s: ttl + poll + refresh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import rss_kb, stop
from bench_startup import command, env_for, launch

from roogab.leases import Leases, LeaseSettings
from roogab.registry import Registry
from roogab.store import ConversationRecord, Store, open_store
from roogab.turnlog import turn_record
from roogab.wire import ChatRequest, Message, parse_chat_request


def _fill(data: Path, n: int) -> None:
    store = open_store("sqlite", data)
    try:
        for i in range(n):
            transcript = tuple(f"{i:08x}{j:024x}" for j in range(12))
            store.save_conversation(ConversationRecord(f"c{i}", "addr:127.0.0.1", f"{i:032x}", "demo", "gab-1",
                                                       f"h{i}", transcript, 1.0e9 + i, 2.0e9 + i, 6,
                                                       "r" * 32, '{"content": "' + "x" * 400 + '"}'))
    finally:
        store.close()


def startup(stored: int) -> dict[str, float]:
    """Median start-up seconds and RSS (MiB) of `roogab demo` over 3 runs."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _fill(data, stored)
        for _ in range(3):
            proc, _, healthy, _, _ = launch([*command(None), "demo", "--port", "0"], env_for(data, None))
            cpu = _cpu_seconds(proc.pid)
            time.sleep(1.0)
            runs.append((healthy, cpu, rss_kb(proc.pid) / 1024))
            stop(proc)
    return {"healthz_s": statistics.median(r[0] for r in runs), "cpu_s": statistics.median(r[1] for r in runs),
            "rss_mib": statistics.median(r[2] for r in runs)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (less noisy than wall time on a busy box)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request(n: int) -> ChatRequest:
    line = "    def handle(self, request):  # ordinary agent code\n"
    messages: list[dict[str, Any]] = [{"role": "system", "content": (line * 800)[:40_000]},
                                      {"role": "user", "content": "task"}]
    for i in range(n):
        messages += [{"role": "assistant", "content": f"step {i}"}, {"role": "user", "content": f"result {i}"}]
    return parse_chat_request({"model": "demo/gab-1", "messages": messages})


def turn_overhead(store: Store, turns: int, leases: Leases | None) -> tuple[float, float]:
    """Median and p95 ms of plan + record + log entry, turn after turn of one task."""
    registry = Registry(store, leases=leases, portable=("demo",))
    samples = []
    for n in range(turns):
        request = _request(n)
        t0 = time.perf_counter()
        with registry.turn("addr:1", request, "demo", "gab-1") as plan:
            registry.record(plan, "h1", Message("assistant", f"step {n}"), '{"content": "ok"}')
        registry.log_turn(turn_record(turn_id=f"t{n}", conversation_id=plan.conversation.id, provider="demo",
                                      request=request, client="addr:1", started_at=time.time(), duration_ms=1,
                                      prompts=["p" * 2000], raws=["r" * 2000], verdict="ok", replayed=False,
                                      repairs=0, usage=None, response="{}", error=None))
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def takeover(store: Store, ttl: float) -> float:
    """Seconds from the death of A (mid-turn, lease busy) to B's plan of the retried turn."""
    a = Registry(store, leases=Leases(store, LeaseSettings("A", ttl=ttl)), portable=("demo",))
    b = Registry(store, leases=Leases(store, LeaseSettings("B", ttl=ttl)), portable=("demo",))
    request = _request(3)
    with a.turn("addr:1", _request(2), "demo", "gab-1") as plan:
        a.record(plan, "h1", Message("assistant", "step 2"), "{}")
    turn = a.turn("addr:1", request, "demo", "gab-1")
    turn.__enter__()  # A sent the turn ... and dies: nobody releases or renews its lease
    died = time.perf_counter()
    with b.turn("addr:1", request, "demo", "gab-1") as plan:
        took = time.perf_counter() - died
        assert plan.replay, "B must rebuild the conversation by replay"
    return took


def main() -> None:
    """Print one line per measurement."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--stored", type=int, default=10_000)
    ap.add_argument("--skip-startup", action="store_true")
    args = ap.parse_args()
    if not args.skip_startup:
        for n in (0, 1000, args.stored):
            s = startup(n)
            print(f"start-up with {n:>6} stored conversations: /healthz {s['healthz_s']:.3f} s, "
                  f"CPU {s['cpu_s']:.2f} s, RSS {s['rss_mib']:.1f} MiB")
    from pgserver import PgServer
    pg = PgServer()
    pg.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = {"memory": (open_store("memory", None), False),
                      "sqlite": (open_store("sqlite", Path(tmp)), False),
                      "postgres": (open_store("postgres", None, dsn=pg.database()), False),
                      "postgres + leases": (open_store("postgres", None, dsn=pg.database()), True)}
            for name, (store, leased) in stores.items():
                leases = Leases(store, LeaseSettings("bench", ttl=15)) if leased else None
                p50, p95 = turn_overhead(store, args.turns, leases)
                print(f"turn overhead, {name:<17}: p50 {p50:.2f} ms, p95 {p95:.2f} ms ({args.turns} turns)")
                store.close()
            store = open_store("postgres", None, dsn=pg.database())
            took = [takeover(store, ttl=1.0) for _ in range(3)]
            print(f"takeover of a dead instance's task (lease_ttl 1 s): {', '.join(f'{t:.3f}' for t in took)} s")
            store.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()

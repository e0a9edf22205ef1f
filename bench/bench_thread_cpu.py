"""A request thread's own CPU for one streaming turn, in process and without contention: the start
(request to first chunk), one wake (ten pieces in, one chunk out) and the end (``Done`` to
``[DONE]``, with usage counted).

Run: ``PYTHONPATH=. python bench/bench_thread_cpu.py [--wakes 2000] [--turns 100]`` (memory store).

The app is RooGab's own (``create_app``) behind Flask's test client; the provider is a stand-in
whose turns this script fills itself, so nothing waits and ``time.thread_time`` counts only the
request thread's Python work (the pieces' ``Turn.put``, which the provider loop pays in
``roogab serve``, is included in a wake). ``bench_load.py`` measures the same work under load:
set the two side by side to see what contention adds.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

from roogab.app import create_app
from roogab.config import Config
from roogab.providers.base import Created, Deadlines, Delta, Done, Health, ModelInfo, Traits, Turn

OPEN, CLOSE = "```lua\nreturn {\n  text = [==[", "]==],\n}\n```"


class Filled:
    """A provider whose turns the caller fills: each starts with ``Created`` and the envelope's opening."""

    name = "fake"
    max_message_chars = 0
    traits = Traits()

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def start(self) -> None:
        """Nothing to connect."""

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("model", 128_000)]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        turn = Turn(self.name, deadlines)
        for event in (Created("c1"), Delta(OPEN), Delta("first ")):
            turn.put(event)
        self.turns.append(turn)
        return turn

    def forget(self, handle: str) -> None:
        """Nothing kept."""

    def health(self) -> Health:
        return Health(ready=True, connected=True, since=0.0)

    def close(self) -> None:
        """Nothing to close."""


class Bench:
    def __init__(self) -> None:
        self.provider = Filled()
        self.client = create_app(Config(store="memory", ping_interval=30), {"fake": self.provider}).test_client()
        self._n = itertools.count()

    def open(self) -> tuple[Turn, Iterator[bytes]]:
        """Start a new task's streaming turn; its first chunk is taken."""
        body = {"model": "fake/model", "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"task {next(self._n)}"}]}
        response = self.client.post("/v1/chat/completions", json=body, buffered=False)
        chunks = iter(response.response)
        next(chunks)
        return self.provider.turns[-1], chunks

    @staticmethod
    def close(turn: Turn, chunks: Iterator[bytes]) -> None:
        turn.put(Delta(CLOSE))
        turn.put(Done())
        rest = b"".join(chunks)
        assert b"[DONE]" in rest, rest[-300:]

    def wakes(self, n: int) -> float:
        """Request-thread CPU per wake, in µs: ten token-sized pieces in, one chunk out."""
        turn, chunks = self.open()
        start = time.thread_time()
        for w in range(n):
            for k in range(10):
                turn.put(Delta(f"{w * 10 + k}@1764765000.123456;"))
            next(chunks)
        spent = time.thread_time() - start
        self.close(turn, chunks)
        return spent / n * 1e6

    def turn(self) -> tuple[float, float]:
        """Request-thread CPU of a turn's start and end, in ms (a 250-token reply between them)."""
        start = time.thread_time()
        turn, chunks = self.open()
        opened = time.thread_time()
        turn.put(Delta("".join(f"{k}@1764765000.123456;" for k in range(250))))
        next(chunks)
        ending = time.thread_time()
        self.close(turn, chunks)
        return (opened - start) * 1e3, (time.thread_time() - ending) * 1e3


def run(wakes: int, turns: int) -> dict[str, Any]:
    bench = Bench()
    for _ in range(20):  # warm: imports, the tokenizer, the body cache
        bench.turn()
    per_wake = [bench.wakes(wakes) for _ in range(3)]
    timed = [bench.turn() for _ in range(turns)]
    return {"wake_us": per_wake, "start_ms_p50": statistics.median(t[0] for t in timed),
            "end_ms_p50": statistics.median(t[1] for t in timed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wakes", type=int, default=2000, help="wakes per measured stream (its reply grows by ten tokens each)")
    ap.add_argument("--turns", type=int, default=100, help="turns timed for the start and end")
    args = ap.parse_args()
    res = run(args.wakes, args.turns)
    print(f"one wake (10 pieces in, 1 chunk out): {', '.join(f'{x:.1f}' for x in res['wake_us'])} us "
          f"of request-thread CPU ({args.wakes} wakes a stream, 3 streams)")
    print(f"a turn's start: p50 {res['start_ms_p50']:.2f} ms; its end: p50 {res['end_ms_p50']:.2f} ms "
          f"({args.turns} turns)")


if __name__ == "__main__":
    main()

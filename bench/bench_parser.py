"""Envelope parser speed: one-shot, one character at a time, and cumulative HTML snapshots.

Run: ``PYTHONPATH=. python bench/bench_parser.py``. CPU time (``time.process_time``, so a busy
machine's waiting is not counted); best of N runs, the same N for the cases a ratio compares.

The one-character ratio is given raw and net of the benchmark's own loop (the same loop around a
feed that does nothing): a caller that feeds 30 000 characters pays that loop whatever the parser
does, and the one-shot parse has no such loop.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from roogab.envelope import ReplyParser, SnapshotFeeder, ToolCall, parse_reply


def big_envelope() -> str:
    """About 30 KB: 12 KB of code in a long string plus 100 tool calls."""
    code = "".join(f"def f{i}(x):\n    return x * {i}  # ]] not a closer\n" for i in range(300))[:12_000]
    calls = "".join(
        f'    {{ name = "read_file", arguments = {{ path = "src/pkg/module_{i:03}.py", limit = {i}, '
        f'recursive = false }} }},\n' for i in range(99))
    calls += f'    {{ name = "write_to_file", arguments = {{ path = "big.py", content = [==[\n{code}]==] }} }},\n'
    text = "Here is the plan.\n" + "Some explanation of the change. " * 230
    reply = f"```lua\nreturn {{\n  text = [==[{text}]==],\n  tool_calls = {{\n{calls}  }},\n}}\n```\n"
    return reply


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def char_by_char(reply: str) -> None:
    parser = ReplyParser()
    for ch in reply:
        parser.feed(ch)
    parser.close()


def chunked(reply: str, size: int) -> None:
    parser = ReplyParser()
    for i in range(0, len(reply), size):
        parser.feed(reply[i:i + size])
    parser.close()


def call_floor(reply: str) -> None:
    """The loop of ``char_by_char`` around a feed that does nothing: the part no parser can save."""
    parser = _NoOp()
    for ch in reply:
        parser.feed(ch)


class _NoOp:
    def feed(self, chunk: str) -> list[object]:
        return []


def html_snapshots(code: str, count: int) -> list[str]:
    step = max(1, len(code) // count)
    return [f'<p>Answer:</p>\n<pre><code class="language-lua">{html.escape(code[:n])}</code></pre>'
            for n in range(step, len(code) + step, step)]


def feed_snapshots(snapshots: list[str]) -> None:
    feeder = SnapshotFeeder(ReplyParser())
    for snap in snapshots:
        feeder.feed_snapshot(snap)
    feeder.close()


def main() -> None:
    reply = big_envelope()
    events = parse_reply(reply)
    assert sum(isinstance(e, ToolCall) for e in events) == 100, events[-1]
    one = best(lambda: parse_reply(reply), 20)
    chars = best(lambda: char_by_char(reply), 20)
    floor = best(lambda: call_floor(reply), 20)
    chunks16 = best(lambda: chunked(reply, 16), 10)
    code20 = reply.split("\n", 1)[1].rsplit("```", 1)[0][:20_000]
    snaps = html_snapshots(code20, 2500)
    snap = best(lambda: feed_snapshots(snaps), 3)
    rows = [
        ("one-shot parse, 30 KB envelope (100 calls)", f"{len(reply) / 1000:.1f} KB", one * 1e3, "target <= 2 ms"),
        ("one character at a time, same reply", f"{len(reply)} feeds", chars * 1e3,
         f"{chars / one:.2f}x one-shot (target <= 3x)"),
        ("  (the same loop around a no-op feed)", f"{len(reply)} calls", floor * 1e3,
         f"fixed cost; net of it {(chars - floor) / one:.2f}x"),
        ("16-character chunks, same reply", f"{-(-len(reply) // 16)} feeds", chunks16 * 1e3,
         f"{chunks16 / one:.1f}x one-shot"),
        ("cumulative HTML snapshots, 20 KB reply", f"{len(snaps)} snapshots", snap * 1e3, "target < 1000 ms"),
    ]
    print(f"{'case':<46} {'size':>16} {'ms':>9}  note")
    for name, size, ms, note in rows:
        print(f"{name:<46} {size:>16} {ms:9.2f}  {note}")


if __name__ == "__main__":
    main()

"""Count cut-off replies passed off as complete answers (issue 13, item 1). In process, no I/O.

Every strict prefix of every compliant fixture reply (tests/fixtures/replies) is parsed without
tools, as a text-protocol request would be. A prefix "passes" when the turn engine would accept it
(``End.problem`` is None, or there is no envelope and no tools) although it lacks some of the whole
reply's text or calls. Prefixes that end before anything of the envelope is visible (the first backtick of
its fence, ``return {``, ``{``, ``print(``, ``<pre><code``), or in prose after a complete envelope,
cannot be told from a whole reply and are counted apart.

    PYTHONPATH=. python bench/attack_truncations.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from roogab.envelope import End, ReplyParser, Text, ToolCall
from roogab.envelope.detect import clean_after

REPLIES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "replies"
MARK = re.compile(r"^[ \t]*(?:(?:```|~~~)(?:lua|json)?(?=\s|$)|return\s*\{|\{|print\s*\(|<pre><code)", re.MULTILINE)


def delivered(reply: str) -> tuple[bool, str, list[str]]:
    """(accepted without tools, the answer's text, its calls)."""
    events = _parse(reply)[0]
    end = events[-1]
    assert isinstance(end, End)
    accepted = end.problem is None or not end.envelope
    text = "".join(e.text for e in events if isinstance(e, Text))
    calls = [json.dumps([e.name, e.arguments]) for e in events if isinstance(e, ToolCall)]
    return accepted, text.strip(), calls


def _parse(reply: str) -> tuple[list[object], ReplyParser]:
    parser = ReplyParser()
    return [*parser.feed(reply), *parser.close()], parser


def _in_prose_after(prefix: str) -> bool:
    """The prefix ends in prose after a complete envelope, with nothing of another one visible."""
    parser = _parse(prefix)[1]
    end = getattr(parser, "_envelope_end", 0)  # (before issue 13 the parser did not keep it)
    return bool(parser._envelopes) and MARK.search(clean_after(prefix[end:])) is None


def main() -> int:
    passed = checked = hidden = 0
    for path in sorted(REPLIES.glob("*.json")):
        case = json.loads(path.read_text("utf-8"))
        reply, ends = case["reply"], case["expected"][-1]
        if ends.get("problem") is not None or not ends.get("envelope"):
            continue
        accepted, whole, whole_calls = delivered(reply)
        if not accepted:
            continue
        mark = MARK.search(reply)
        visible_from = mark.end() if mark else len(reply)
        for cut in range(1, len(reply)):
            prefix = reply[:cut]
            ok, answer, calls = delivered(prefix)
            if not ok or (calls == whole_calls and whole in answer):  # all there (and maybe junk)
                continue
            if cut < visible_from or _in_prose_after(prefix):
                hidden += 1
                continue
            checked += 1
            passed += 1
            if "-v" in sys.argv:
                print(f"{path.name}[:{cut}] {prefix[-40:]!r}")
    print(json.dumps({"truncations_passed_as_complete": passed,
                      "cut_in_prose_undetectable": hidden}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

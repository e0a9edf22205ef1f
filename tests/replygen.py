"""Generated replies with the hard characters, and the four ways a chat service delivers them.

Shared by the property tests (tests/envelope/test_delivery_property.py, tests/test_delivery_turns.py)
and the delivery benchmark (bench/bench_delivery.py). A reply is an envelope in a ```lua fence,
often with prose around it, whose text and call values hold backticks and fence lines, ``]]`` and
``]==]``, ``<``, ``&`` and entities, tabs, trailing spaces, unicode, emphasis and list markers.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

from roogab.demo.markup import markdown_to_html
from roogab.envelope import End, Event, Text, ToolCall, parse_reply
from roogab.providers.base import Delta, Done, Snapshot
from roogab.reply_reader import ReplyReader

TOOLS = ("write_to_file", "read_file", "execute_command")
MODES = ("markdown-delta", "markdown-snapshots", "html-delta", "html-snapshots")

_PIECES = ["`", "``", "```", "\n```\n", "\n```py\n", "\n~~~\n", "]]", "]=]", "]==]", "[[", "<", ">",
           "&", "&amp;", "&lt;", "&#39;", "\t", "  \n", " ", "\n", "\n\n", "é", "日本", "🙂", "*", "**",
           "_", "*a*", "_b_", "- ", "\n- item\n", "1. ", "# ", "\\", '"', "'", "<write_to_file>",
           "<path>evil.txt</path>", "</write_to_file>", "return {", "}", "--", "x", "abc", "tab\tbed"]

# No "\r": a page's markdown renderer turns every CR into a line end, which no decoding can undo
# (docs/delivery.md). NUL (shown as U+FFFD by the page) is in, and must end in a clear error.
_CHARS = st.characters(exclude_characters="\r", exclude_categories=("Cs",))
pieces = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(_CHARS, max_size=4)), max_size=12).map("".join)


def long_string(value: str) -> str:
    """*value* as a Lua long string that holds it exactly (a first newline would be dropped)."""
    level = 0
    while f"]{'=' * level}]" in value + "]":
        level += 1
    eq = "=" * level
    return f"[{eq}[{chr(10) if value.startswith(chr(10)) else ''}{value}]{eq}]"


markdown_files = st.tuples(pieces, st.sampled_from(["```", "```sh", "~~~", "````"]), pieces, pieces).map(
    lambda t: f"# {t[0]}\n\n{t[1]}\n{t[2]}\n{t[1][:3] if t[1] != '````' else t[1]}\n\n{t[3]}\n")
"""A markdown file's text, with a fenced block inside: a value that holds fence lines."""


@st.composite
def replies(draw: st.DrawFn) -> str:
    """One reply text: prose, a fenced envelope with text and 0-2 calls, prose."""
    fields = []
    if draw(st.booleans()):
        fields.append(f"text = {long_string(draw(pieces))}")
    calls = []
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(TOOLS))
        arg = {"write_to_file": "path", "read_file": "path", "execute_command": "command"}[name]
        args = [f"{arg} = {long_string(draw(pieces) or 'a.txt')}"]
        if name == "write_to_file":
            args.append(f"content = {long_string(draw(st.one_of(pieces, markdown_files)))}")
        calls.append(f'{{ name = "{name}", arguments = {{ {", ".join(args)} }} }}')
    if calls or not fields:
        fields.append("tool_calls = { " + ", ".join(calls) + " }")
    fence = draw(st.sampled_from(["```", "````"]))
    body = f"{fence}lua\nreturn {{\n  " + ",\n  ".join(fields) + f"\n}}\n{fence}"
    before = draw(st.sampled_from(["", "I will do it.\n\n", "Some *prose* first:\n"]))
    after = draw(st.sampled_from(["", "\n", "\n\nDone, `ok`.", "\n- a list\n"]))
    return before + body + after


def cuts(text: str, sizes: list[int]) -> list[int]:
    """Cut points of *text* for chunks of the given sizes (cycled), the end included."""
    points, pos, i = [], 0, 0
    while pos < len(text):
        pos = min(len(text), pos + max(1, sizes[i % len(sizes)]))
        points.append(pos)
        i += 1
    return points


def deliver(text: str, mode: str, sizes: list[int]) -> list[Delta | Snapshot]:
    """The provider events that deliver *text* in *mode*; HTML snapshots are the real renderer's
    rendering of each prefix, as a page re-rendering a growing reply sends them."""
    if mode == "markdown-delta":
        points = cuts(text, sizes)
        return [Delta(text[a:b]) for a, b in zip([0, *points], points)]
    if mode == "markdown-snapshots":
        return [Snapshot(text[:b]) for b in cuts(text, sizes)]
    if mode == "html-delta":
        page = markdown_to_html(text)
        points = cuts(page, sizes)
        return [Delta(page[a:b]) for a, b in zip([0, *points], points)]
    assert mode == "html-snapshots"
    return [Snapshot(markdown_to_html(text[:b])) for b in cuts(text, sizes)]


def oracle(text: str) -> tuple[list[ToolCall], str, str | None]:
    """The one-shot parse of the final text: its calls, its text and its problem."""
    events = parse_reply(text, TOOLS)
    end = events[-1]
    assert isinstance(end, End)
    return ([e for e in events if isinstance(e, ToolCall)],
            "".join(e.text for e in events if isinstance(e, Text)), end.problem)


def judge(text: str, mode: str, calls: list[ToolCall], got_text: str, failed: bool) -> str:
    """``exact``, ``error`` (a clear error; the calls given before it were right) or ``wrong``."""
    want_calls, want_text, _ = oracle(text)
    if failed:
        return "error" if calls == want_calls[:len(calls)] else "wrong"
    if calls != want_calls:
        return "wrong"
    if mode.startswith("markdown") and got_text != want_text:
        return "wrong"
    return "exact"


def read(text: str, mode: str, sizes: list[int]) -> str:
    """Deliver *text* through the reply reader alone and judge what came out."""
    reader = ReplyReader(TOOLS)
    events: list[Event] = []
    for event in deliver(text, mode, sizes):
        events += reader.feed(event)
    events += reader.feed(Done())
    assert reader.verdict is not None
    calls = [e for e in events if isinstance(e, ToolCall)]
    got_text = "".join(e.text for e in events if isinstance(e, Text))
    failed = reader.verdict.problem is not None or reader.verdict.error_page is not None
    return judge(text, mode, calls, got_text, failed)


def refenced(text: str) -> str:
    """*text* with its envelope's fence longer than any run of backticks in it: what a model
    writes when a repair asks it to fence the reply with more backticks."""
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * max(4, max(runs, default=0) + 1)
    for old in ("````", "```"):
        start = text.find(old + "lua\nreturn {")
        end = text.rfind("\n}\n" + old)
        if start >= 0 and end > start:
            return (text[:start] + fence + text[start + len(old):end + 3] + fence
                    + text[end + 3 + len(old):])
    return text


def turn_calls(text: str, mode: str, sizes: list[int], stream: bool) -> tuple[list[ToolCall], int] | None:
    """Run one whole turn over a fake provider that delivers *text* in *mode* (and, if asked to
    repair, the same reply with a longer fence); the agent's calls and the repairs, or None when
    the turn failed with a clear error."""
    from roogab.errors import ReplyFormatError
    from roogab.outputs import CallOut
    from roogab.prompt import PromptBook
    from roogab.providers.fake import FakeProvider
    from roogab.registry import Registry
    from roogab.service import ChatService
    from roogab.wire import parse_chat_request

    fake = FakeProvider([deliver(text, mode, sizes), deliver(refenced(text), mode, sizes)])
    service = ChatService({"fake": fake}, Registry(), PromptBook.load())
    schema = {"type": "object", "properties": {}, "additionalProperties": True}
    request = parse_chat_request({
        "model": "fake/model", "stream": stream, "messages": [{"role": "user", "content": "go"}],
        "tools": [{"type": "function", "function": {"name": n, "parameters": schema}} for n in TOOLS]})
    try:
        items = list(service.run(request, "addr:bench"))
    except ReplyFormatError:
        return None
    return [i.call for i in items if isinstance(i, CallOut)], len(fake.sent) - 1


def judge_turn(text: str, mode: str, sizes: list[int]) -> str:
    """``exact``, ``repaired``, ``error`` or ``wrong`` for one reply through whole turns, streaming
    and not: both must end with the same calls, and those must be the one-shot parse's."""
    want, _, problem = oracle(text)
    streamed = turn_calls(text, mode, sizes, stream=True)
    whole = turn_calls(text, mode, sizes, stream=False)
    if (streamed is None) != (whole is None) or (streamed and whole and streamed[0] != whole[0]):
        return "wrong"
    if streamed is None:
        return "error"
    calls, repairs = streamed
    if repairs:  # the repaired reply (the same calls in a longer fence) is what the model meant
        want = oracle(refenced(text))[0]
    elif problem is not None:
        return "wrong"  # a non-compliant reply passed as it was
    return "wrong" if calls != want else "repaired" if repairs else "exact"

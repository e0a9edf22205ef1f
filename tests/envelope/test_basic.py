"""Hand-written checks of the standard envelope (the corpus tests cover the tolerances)."""

from __future__ import annotations

import pytest

from roogab.envelope import End, ReplyParser, Text, ToolCall, parse_reply
from roogab.errors import ParserClosedError

from .util import merge

STANDARD = '''```lua
return {
  text = [==[Hello **world**]==],
  tool_calls = {
    { name = "read_file", arguments = { path = "src/app.ts" } },
    { name = "write_to_file", arguments = { path = "a.py", content = [==[
print("hi")
]==] } },
  },
}
```
'''

EXPECTED = [
    Text("Hello **world**"),
    ToolCall("read_file", {"path": "src/app.ts"}),
    ToolCall("write_to_file", {"path": "a.py", "content": 'print("hi")\n'}),
    End(),
]


def test_standard_envelope() -> None:
    assert merge(parse_reply(STANDARD)) == EXPECTED


@pytest.mark.parametrize("cut", range(len(STANDARD) + 1))
def test_any_split_yields_same_events(cut: int) -> None:
    p = ReplyParser()
    assert merge([*p.feed(STANDARD[:cut]), *p.feed(STANDARD[cut:]), *p.close()]) == EXPECTED


def test_text_streams_before_the_envelope_closes() -> None:
    p = ReplyParser()
    events = p.feed("return {\n  text = [==[Hello wor")
    assert merge(events) == [Text("Hello wor")]
    assert list(p.feed("ld]=")) == [Text("ld")]  # "]=" could start the closing bracket: held back
    assert merge([*p.feed("x]==] }"), *p.close()]) == [Text("]=x"), End(envelope=True, problem=None)]


def test_tool_call_is_emitted_when_its_table_closes() -> None:
    p = ReplyParser()
    assert not p.feed('return { tool_calls = { { name = "a", arguments = { x = 1 } ')
    assert list(p.feed("}")) == [ToolCall("a", {"x": 1})]


def test_feed_after_close_raises() -> None:
    p = ReplyParser()
    p.close()
    with pytest.raises(ParserClosedError):
        p.feed("x")
    with pytest.raises(ParserClosedError):
        p.close()

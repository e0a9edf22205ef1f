"""Tool-call values JSON cannot carry to the agent: numbers with no JSON numeral, lone UTF-16
halves. A call is never sent with them: the reply is repaired (numbers) or the half becomes
U+FFFD, as the lexer makes it in a Lua string. Every input is also fed split at every position."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roogab.envelope import End, ReplyParser, ToolCall, parse_reply

TOOLS = ["read_file", "write_to_file", "execute_command"]


def _split_everywhere(reply: str) -> list[list[object]]:
    """The events of *reply* fed whole, then fed in two pieces cut at every position."""
    runs = [parse_reply(reply, TOOLS)]
    for cut in range(1, len(reply)):
        parser = ReplyParser(TOOLS)
        runs.append([*parser.feed(reply[:cut]), *parser.feed(reply[cut:]), *parser.close()])
    return runs


def _call(arguments: str) -> str:
    return f'```lua\nreturn {{ tool_calls = {{ {{ name = "read_file", arguments = {arguments} }} }} }}\n```'


@pytest.mark.parametrize("numeral", ["1e999", "-1e999", "0x1p99999", "-0x1.8p99999", "9" * 5000])
def test_a_lua_number_json_cannot_carry_makes_no_call(numeral: str) -> None:
    for events in _split_everywhere(_call(f'{{ path = "a.py", limit = {numeral} }}')):
        assert not any(isinstance(e, ToolCall) for e in events)
        end = events[-1]
        assert isinstance(end, End) and end.problem is not None and "JSON has no number for" in end.problem


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_json_string_argument_with_a_non_json_number_makes_no_call(constant: str) -> None:
    reply = _call(f'[==[{{"path": "a.py", "limit": {constant}}}]==]')
    for events in _split_everywhere(reply):
        assert not any(isinstance(e, ToolCall) for e in events)
        end = events[-1]
        assert isinstance(end, End) and end.problem is not None and "read_file" in end.problem


def test_a_big_finite_number_is_kept() -> None:
    events = parse_reply(_call('{ path = "a.py", limit = 1e308, offset = 0x10000000000000000 }'), TOOLS)
    assert events[0] == ToolCall("read_file", {"path": "a.py", "limit": 1e308, "offset": 1 << 64})


@pytest.mark.parametrize("escaped, meant", [
    ("smile \\ud83d end", "smile \ufffd end"),  # a high half alone
    ("\\ude00 first", "\ufffd first"),  # a low half alone
    ("pair \\ud83d\\ude00 kept", "pair \U0001f600 kept"),  # a whole pair is one character
])
def test_a_lone_utf16_half_in_a_json_string_argument_becomes_u_fffd(escaped: str, meant: str) -> None:
    reply = _call(f'[==[{{"path": "a.txt", "content": "{escaped}", "{escaped}": 1}}]==]')
    for events in _split_everywhere(reply):
        call = events[0]
        assert call == ToolCall("read_file", {"path": "a.txt", "content": meant, meant: 1})
        assert isinstance(call, ToolCall)
        json.dumps(call.arguments, ensure_ascii=False).encode()  # UTF-8 can carry it


def test_keys_that_differ_only_in_lone_halves_make_no_call() -> None:
    for events in _split_everywhere(_call('[==[{"a\\ud800": 1, "a\\ud801": 2}]==]')):
        assert not any(isinstance(e, ToolCall) for e in events)
        end = events[-1]
        assert isinstance(end, End) and end.problem is not None and "broken characters" in end.problem


def test_no_legacy_print_call_goes_out_after_a_dropped_call() -> None:
    """The legacy ``print`` form after a call that was dropped (no name): as for any call after a
    problem, nothing goes out and the reply will be repaired."""
    reply = ('```lua\nreturn { text = [==[Step one.]==], tool_calls = { { arguments = { path = "a.py" } } } }\n```\n'
             'print([====[\n<execute_command>\n<command>rm -rf build</command>\n</execute_command>\n]====])\n')
    for events in _split_everywhere(reply):
        assert not any(isinstance(e, ToolCall) for e in events)
        end = events[-1]
        assert isinstance(end, End) and end.problem is not None and "no name" in end.problem


_JSON_ATOMS = st.one_of(
    st.text(max_size=6).map(lambda s: json.dumps(s)),  # any text, escaped or not
    st.integers(0xD800, 0xDFFF).map(lambda c: f'"\\u{c:04x}"'),  # a UTF-16 half alone
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0.0", "1e308", "12345678901234567890"]),
)


@given(st.lists(_JSON_ATOMS, max_size=5), st.integers(min_value=1))
@settings(max_examples=300, deadline=None)
def test_a_call_that_goes_out_is_always_strict_json_in_utf8(atoms: list[str], cut: int) -> None:
    """Whatever a JSON-string argument holds, a call either goes out as strict JSON that UTF-8
    can carry, or does not go out (the reply is repaired)."""
    reply = _call("[==[" + json.dumps({"path": "a.py"})[:-1] + "".join(
        f', "k{i}": {atom}' for i, atom in enumerate(atoms)) + "}]==]")
    parser = ReplyParser(TOOLS)
    at = cut % len(reply)
    events = [*parser.feed(reply[:at]), *parser.feed(reply[at:]), *parser.close()]
    for call in (e for e in events if isinstance(e, ToolCall)):
        json.dumps(call.arguments, ensure_ascii=False, allow_nan=False).encode()
    end = events[-1]
    assert isinstance(end, End)
    assert any(isinstance(e, ToolCall) for e in events) == (end.problem is None)

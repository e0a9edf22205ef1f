"""The demo script format: JSON Lines, validated with the line number in every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from roogab.demo import ScriptedReply, load_script, parse_reply, parse_script
from roogab.errors import ConfigError


def test_defaults_and_every_field(tmp_path: Path) -> None:
    path = tmp_path / "script.jsonl"
    path.write_text(
        '{"reply": "plain"}\n'
        "\n"
        "# a comment\n"
        '{"reply": "<b>", "format": "html", "stream": "cumulative", "chunk": 2, "delay_ms": 5,'
        ' "drop_after": 1, "hold_after": 0}\n'
        '{"error": "busy", "code": "rate_limited"}\n'
        '{"silent": true}\n', encoding="utf-8")
    assert load_script(path) == [
        ScriptedReply("plain"),
        ScriptedReply("<b>", format="html", stream="cumulative", chunk=2, delay_ms=5, drop_after=1,
                      hold_after=0),
        ScriptedReply(error="busy", code="rate_limited"),
        ScriptedReply(silent=True),
    ]


@pytest.mark.parametrize(("line", "problem"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"format": "html"}', "'reply' is required"),
    ('{"reply": "x", "colour": "red"}', "unknown field 'colour'"),
    ('{"reply": 3}', "'reply' must be a string"),
    ('{"reply": "x", "format": "pdf"}', "'format' must be 'markdown' or 'html'"),
    ('{"reply": "x", "stream": "bulk"}', "'stream' must be 'delta' or 'cumulative'"),
    ('{"reply": "x", "chunk": 0}', "'chunk' must be at least 1"),
    ('{"reply": "x", "chunk": "8"}', "'chunk' must be an integer"),
    ('{"reply": "x", "delay_ms": true}', "'delay_ms' must be an integer"),
    ('{"reply": "x", "silent": "yes"}', "'silent' must be true or false"),
])
def test_errors_name_the_line_and_the_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"reply": "ok"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_script(path)
    assert caught.value.key == "--script"
    assert str(caught.value).startswith("config: --script: line 3: ")
    assert problem in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*missing.jsonl"):
        load_script(tmp_path / "missing.jsonl")


def test_parse_reply_for_one_decoded_entry() -> None:
    assert parse_reply({"reply": "x", "chunk": 1}) == ScriptedReply("x", chunk=1)
    with pytest.raises(ConfigError, match="--script: 'reply' is required"):
        parse_reply({})
    assert parse_script([]) == []


def test_the_shipped_example_script_is_valid() -> None:
    import roogab.demo

    replies = load_script(Path(roogab.demo.__file__).with_name("example.jsonl"))
    assert len(replies) == 2 and replies[1].format == "html"


def test_explicit_events_replace_the_reply() -> None:
    entry = parse_reply({"events": [{"snapshot": "<p>a</p>"}, {"delta": "b"}]})
    assert entry.events == (("snapshot", "<p>a</p>"), ("delta", "b"))
    for bad in ([{"frame": "x"}], [{"delta": 1}], "x", [{"delta": "a", "snapshot": "b"}]):
        with pytest.raises(ConfigError, match="events"):
            parse_reply({"events": bad})

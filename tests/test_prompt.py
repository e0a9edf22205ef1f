"""The prompt book: templates in prompts/, filled deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import CLINE, KILO, ROO, ROO_HISTORY, captured_bodies

from roogab.errors import ConfigError
from roogab.prompt import TEMPLATE_NAMES, PromptBook
from roogab.wire import parse_chat_request


@pytest.fixture(scope="module")
def book() -> PromptBook:
    return PromptBook.load()


def test_first_turn_has_format_tools_system_and_message(book: PromptBook) -> None:
    req = parse_chat_request(captured_bodies(CLINE)[0])
    text = book.first_turn(req, (), req.messages[1:])
    assert "```lua" in text and "return {" in text
    assert "### read_files" in text and "- files*: list of { path*: string" in text
    assert "You are Cline" in text
    assert "Read hello.txt in this directory" in text
    assert text == book.first_turn(req, (), req.messages[1:])  # deterministic


def test_worked_examples_use_a_real_tool(book: PromptBook) -> None:
    req = parse_chat_request(captured_bodies(KILO)[0])
    assert '{ name = "read", arguments = { filePath = ' in book.format_prompt(req)


def test_request_without_tools_says_text_only(book: PromptBook) -> None:
    req = parse_chat_request(captured_bodies(KILO)[2])
    text = book.format_prompt(req)
    assert "No tools are offered" in text and "tool_calls = {" in text.split("## Examples")[0]
    assert "A reply with one tool call" not in text


def test_next_turn_is_only_new_messages_and_reminder(book: PromptBook) -> None:
    req = parse_chat_request(captured_bodies(CLINE)[1])
    text = book.next_turn(req, req.messages[3:])
    assert text.startswith("### tool result (read_files, call call_cap1)")
    assert "You are Cline" not in text and "### read_files" not in text
    assert "tools: " in text and len(text) < 1000


def test_replay_renders_history_with_calls_and_omitted_images(book: PromptBook) -> None:
    req = parse_chat_request(captured_bodies(ROO_HISTORY)[0])
    text = book.first_turn(req, req.messages[1:3], req.messages[3:])
    assert "[called read_file (call call_a) with arguments {\"path\":\"notes.txt\"}]" in text
    assert "1 image(s) attached here were not forwarded" in text
    assert text.index("## New messages") > text.index("Reading both.")


def test_repair_names_the_problem(book: PromptBook) -> None:
    req = parse_chat_request(captured_bodies(ROO)[0])
    text = book.repair(req, "unknown tool 'reed_file'")
    assert "unknown tool 'reed_file'" in text and "attempt_completion" in text


def test_split_numbers_parts_within_the_limit(book: PromptBook) -> None:
    text = "x" * 2500
    parts = book.split(text, 1000)
    assert len(parts) >= 3 and all(len(p) <= 1000 for p in parts)
    assert "Part 1 of" in parts[0] and "the last one" in parts[-1]
    assert "".join(p.split("\n\n", 1)[1] for p in parts) == text
    assert book.split("short", 1000) == ["short"]


def test_user_prompts_dir_overrides_single_templates(tmp_path: Path) -> None:
    (tmp_path / "repair.txt").write_text("Fix it: $problem$tool_names")
    book = PromptBook.load(tmp_path)
    req = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert book.repair(req, "bad") == "Fix it: bad"
    assert "```lua" in book.format_prompt(req)


def test_broken_user_template_is_a_config_error_when_loading(tmp_path: Path) -> None:
    """At start, not in the middle of the first turn that needs a repair."""
    (tmp_path / "repair.txt").write_text("Fix it: $nonsense")
    with pytest.raises(ConfigError, match=r"repair.*\$nonsense"):
        PromptBook.load(tmp_path)


def test_every_template_ships() -> None:
    for name in TEMPLATE_NAMES:
        assert (Path(__file__).parents[1] / "prompts" / f"{name}.txt").is_file()


def test_a_null_enum_is_no_enum() -> None:
    """Found by the robustness property test: ``"enum": null`` passed validation, then the prompt
    renderer iterated it (a 500)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "pick", "parameters": {
                "type": "object", "properties": {"x": {"type": "string", "enum": None}}}}}]}
    text = PromptBook.load().format_prompt(parse_chat_request(body))
    assert "x: string" in text

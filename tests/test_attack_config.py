"""A custom prompt template with an unknown placeholder fails at start, not mid-turn (issue 13, Low)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roogab.errors import ConfigError
from roogab.prompt import PromptBook


def test_unknown_placeholder_fails_when_loading(tmp_path: Path) -> None:
    (tmp_path / "reminder.txt").write_text("Remember the format, $user_name.\n")
    with pytest.raises(ConfigError) as info:
        PromptBook.load(tmp_path)
    assert "reminder" in str(info.value) and "$user_name" in str(info.value)


def test_a_lone_dollar_fails_when_loading(tmp_path: Path) -> None:
    (tmp_path / "reminder.txt").write_text("It costs 5 $ a turn.\n")
    with pytest.raises(ConfigError, match="starts no placeholder"):
        PromptBook.load(tmp_path)


def test_a_missing_prompts_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        PromptBook.load(tmp_path / "no-such-dir")


def test_a_custom_template_with_known_placeholders_loads(tmp_path: Path) -> None:
    (tmp_path / "reminder.txt").write_text("$messages\n\nAnswer in the envelope${tool_names}. $$5 is a price.\n")
    book = PromptBook.load(tmp_path)
    assert book.fill("reminder", messages="hi", tool_names="") == "hi\n\nAnswer in the envelope. $5 is a price."

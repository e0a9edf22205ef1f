"""The live board keeps a bounded, redacted view of a big prompt (issue 13: big turns)."""

from __future__ import annotations

from roogab.live import PROMPT_LIMIT, LiveTurn, LiveTurns
from roogab.redact import REDACTED, Redactor

SECRET = "sk-live-0123456789abcdefghij"


def _board_with(prompt: str) -> str:
    board = LiveTurns(redact=Redactor([SECRET]).redact)
    board.begin(LiveTurn("t1", "c1", "demo", "gab-1", "chat", 0.0, "{}"))
    board.sent("t1", prompt)
    [turn] = board.running()
    [shown] = turn.prompts
    return shown


def test_a_small_prompt_is_shown_whole_and_redacted() -> None:
    assert _board_with(f"hello {SECRET} world") == f"hello {REDACTED} world"


def test_a_big_prompt_keeps_its_head_and_tail_and_no_part_of_a_secret_at_either_cut() -> None:
    half = PROMPT_LIMIT // 2
    filler = "x" * (4 * PROMPT_LIMIT)
    # The secret straddles where the head is cut and where the tail begins.
    prompt = "HEAD" + "y" * (half - 4 - 10) + SECRET + filler + SECRET + "z" * (half - 10) + "TAIL"
    shown = _board_with(prompt)
    assert shown.startswith("HEAD") and shown.endswith("TAIL")
    assert len(shown) < PROMPT_LIMIT + 200 and "characters left out" in shown
    for size in range(6, len(SECRET) + 1):  # no run of the secret's characters survives the cuts
        assert all(SECRET[i:i + size] not in shown for i in range(len(SECRET) - size + 1)), size

"""The live board keeps a bounded, redacted view of a big prompt (issue 13: big turns)."""

from __future__ import annotations

from roogab.live import PROMPT_LIMIT, RAW_LIMIT, LiveTurn, LiveTurns
from roogab.providers.base import Frame
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


def test_an_ended_turn_keeps_its_big_frames_as_shown_and_shows_them_the_same() -> None:
    board = LiveTurns(redact=Redactor([SECRET]).redact)
    board.begin(LiveTurn("t1", "c1", "demo", "gab-1", "chat", 0.0, "{}"))
    big = {"content": SECRET + "p" * 1_000_000 + SECRET, "parts": [{"n": 1}]}
    small = {"event": "token", "data": f"a token {SECRET}"}
    frames = [Frame(1.0, "out", "socket.io", "message", big), Frame(2.0, "in", "socket.io", "token", small)]
    board.sent("t1", "a prompt", frames)
    while_running = board.wire("t1")
    board.end("t1")
    after = board.wire("t1")
    assert after == while_running and len(after) == 2
    assert SECRET not in repr(after) and REDACTED in after[0].payload and REDACTED in after[1].payload
    kept = board._wires["t1"][0]
    assert isinstance(kept[0].payload, str) and len(kept[0].payload) < 2000  # not the 1 MB dict
    assert kept[1].payload is small  # a small frame is kept as it came, redacted when read


def test_a_streaming_reply_is_read_when_the_board_is_looked_at_and_kept_when_a_repair_is_sent() -> None:
    board = LiveTurns(redact=Redactor([SECRET]).redact)
    board.begin(LiveTurn("t1", "c1", "demo", "gab-1", "chat", 0.0, "{}"))
    board.sent("t1", "first prompt")
    parts: list[str] = []
    board.reply("t1", lambda: "".join(parts))
    parts.append("so far ")
    assert board.running()[0].raws == ("so far ",)
    parts.append(SECRET)  # read again on the next look, redacted like the rest
    assert board.running()[0].raws == (f"so far {REDACTED}",)
    board.sent("t1", "repair prompt")  # the first reply is kept as it was; the repair's starts empty
    parts.append(" later")
    assert board.running()[0].raws == (f"so far {REDACTED}", "")
    board.reply("t1", lambda: "x" * (RAW_LIMIT + 5) + "end")
    assert board.running()[0].raws[1] == ("x" * (RAW_LIMIT + 5) + "end")[-RAW_LIMIT:]
    board.end("t1")
    assert board.running() == []
    board.reply("t1", lambda: "after the end")  # an ended turn is not brought back
    assert board.running() == []

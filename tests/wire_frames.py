"""Test helper: a provider turn's wire frames as the inspector shows them (through the live board,
so with its redaction and size bounds), and the checks every wire view must pass."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from roogab.inspect_views import frame_json
from roogab.live import LiveTurn, LiveTurns
from roogab.providers.base import Turn
from roogab.redact import Redactor

__all__ = ["assert_no_secret", "shown_frames"]


def shown_frames(turn: Turn, prompt: str) -> list[dict[str, object]]:
    """The frames of *turn*, read as the inspector reads a running turn's wire (redacted, cut)."""
    board = LiveTurns(redact=Redactor().redact)  # no configured secrets: the shapes and keys alone must do
    turn_id, started = uuid.uuid4().hex, time.time() - 1
    board.begin(LiveTurn(turn_id, "conv", turn.provider, "m", "chat", started, "{}"))
    board.sent(turn_id, prompt, turn.wire)
    return [frame_json(f, started) for f in board.wire(turn_id)]


def assert_no_secret(frames: Iterable[dict[str, object]], secrets: Iterable[str]) -> None:
    """No frame shows any of *secrets*, and each frame is size-bounded."""
    for frame in frames:
        payload = str(frame["payload"])
        assert len(payload) < 1100, f"an unbounded frame: {payload[:80]}"
        for secret in secrets:
            assert secret not in payload, f"{secret!r} shown in frame {frame['name']}: {payload}"

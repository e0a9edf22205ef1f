"""The envelope package is pure: importing it pulls in no web, socket or database library."""

from __future__ import annotations

import subprocess
import sys

import roogab.envelope


def test_import_is_pure() -> None:
    code = ("import sys, roogab.envelope\n"
            "bad = [m for m in ('flask', 'socketio', 'websocket', 'sqlite3') if m in sys.modules]\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_public_names() -> None:
    assert set(roogab.envelope.__all__) == {"End", "Event", "Reasoning", "Text", "ToolCall", "ReplyParser",
                                            "parse_reply", "SnapshotFeeder", "check_call"}

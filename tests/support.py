"""Test helpers shared by several test modules: the captured client requests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

LAZY = {"roogab-turnlog", "roogab-housekeeper"}
"""Threads a session-scoped stack starts inside whichever test first uses it (the housekeeper
starts with the stack, the turn-log writer with the first turn logged)."""

FIXTURES = Path(__file__).parent / "fixtures"

ROO = "roo_request_roo_v3.52.1.json"
ROO_NONSTREAM = "roo_request_nonstream_roo_v3.52.1.json"
ROO_HISTORY = "roo_request_history_roo_v3.52.1.json"
CLINE = "cline_cli_3.0.57_openai_compatible_two_turns.json"
KILO = "kilo_cli_7.7.9_openai_compatible_two_turns_plus_title.json"


def captured_bodies(name: str) -> list[dict[str, Any]]:
    """The POST bodies of a captured client session, in order."""
    data = json.loads((FIXTURES / "captured" / name).read_text("utf-8"))
    return [r["body"] for r in data["requests"] if isinstance(r.get("body"), dict)]


def as_demo_model(body: dict[str, Any], model: str = "demo/gab-1") -> dict[str, Any]:
    """A copy of a captured body addressed to a demo model."""
    body = copy.deepcopy(body)
    body["model"] = model
    return body


def tagged(body: dict[str, Any], tag: str) -> dict[str, Any]:
    """A copy of *body* whose first user message carries *tag*: a task of its own, so no earlier
    test's identical request can answer it from the retry record."""
    body = copy.deepcopy(body)
    first = next(m for m in body["messages"] if m["role"] == "user")
    if isinstance(first["content"], str):
        first["content"] += f"\n[{tag}]"
    else:
        first["content"] = [*first["content"], {"type": "text", "text": f"[{tag}]"}]
    return body


def prompts_with(demo: Any, tag: str) -> list[str]:
    """The prompts the demo chat service received that carry *tag*: proof a turn reached it."""
    return [r.prompt for r in demo.received if r.prompt and f"[{tag}]" in r.prompt]


def no_keepalive() -> Any:
    """An httpx client for the openai SDK that keeps no idle connection open, so an SDK client a
    test never closes leaves no socket for the leak check (or a later test) to find."""
    import httpx

    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=600)

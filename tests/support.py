"""Test helpers shared by several test modules: the captured client requests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

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

"""Writing reply envelopes from Python values, for tests that script the demo chat service."""

from __future__ import annotations

from typing import Any


def long_string(text: str) -> str:
    """*text* as a Lua long string whose closing bracket does not occur in it."""
    eq = "=="
    while (text + f"]{eq}]").find(f"]{eq}]") != len(text):
        eq += "="
    lead = "\n" if text.startswith("\n") else ""  # Lua drops a newline right after the opening bracket
    return f"[{eq}[{lead}{text}]{eq}]"


def value(v: Any) -> str:
    """A Python value as a Lua table value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return long_string(v)
    if isinstance(v, list):
        return "{ " + ", ".join(value(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def envelope(text: str | None = None, *, reasoning: str | None = None,
             calls: list[tuple[str, dict[str, Any]]] = ()) -> str:  # type: ignore[assignment]
    """A whole reply: ```lua return { reasoning, text, tool_calls } ```."""
    fields = []
    if reasoning is not None:
        fields.append(f"  reasoning = {long_string(reasoning)},")
    if text is not None:
        fields.append(f"  text = {long_string(text)},")
    if calls:
        rows = [f'    {{ name = "{name}", arguments = {value(args)} }},' for name, args in calls]
        fields.append("  tool_calls = {\n" + "\n".join(rows) + "\n  },")
    return "```lua\nreturn {\n" + "\n".join(fields) + "\n}\n```"

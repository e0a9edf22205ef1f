"""Messages and tools -> the text a chat service receives. Deterministic; no IO after loading.

All wording lives in the ``prompts/`` templates (``string.Template``, ``$name`` placeholders);
this module only decides which template to fill with what. A user may point ``prompts_dir`` at
their own copies; missing files fall back to the bundled ones. A custom template is checked when
it is loaded: it may use only the placeholders of the bundled template it replaces.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

from .errors import ConfigError
from .structured import schema_instruction
from .wire import ChatRequest, Message, ToolSpec, canonical_json

__all__ = ["TEMPLATE_NAMES", "PromptBook"]


def _placeholders(name: str, text: str) -> set[str]:
    """The ``$name`` placeholders *text* uses.

    Raises:
        ConfigError: a ``$`` that starts no valid placeholder (write ``$$`` for a dollar sign).
    """
    found = set()
    for m in Template.pattern.finditer(text):
        if m.group("invalid") is not None:
            line = text.count("\n", 0, m.start()) + 1
            raise ConfigError("prompts_dir", f"template {name}, line {line}: '$' starts no placeholder "
                              "(write $$ for a dollar sign)")
        placeholder = m.group("named") or m.group("braced")
        if placeholder:
            found.add(placeholder)
    return found


def _check_placeholders(name: str, text: str, known: set[str]) -> None:
    unknown = _placeholders(name, text) - known
    if unknown:
        raise ConfigError("prompts_dir", f"template {name} uses unknown placeholder(s) "
                          f"{', '.join(sorted('$' + u for u in unknown))}; it may use {', '.join(sorted('$' + k for k in known)) or 'none'}")

TEMPLATE_NAMES = (
    "format", "tools", "no_tools", "call_examples", "reasoning_rule", "first_turn", "replay",
    "reminder", "repair", "message", "tool_result", "tool_call", "images_omitted", "part", "last_part",
    "tool_error", "json_answer", "unavailable",
)


class PromptBook:
    """The prompt templates, loaded once, and the rules for filling them."""

    def __init__(self, templates: Mapping[str, Template]) -> None:
        self._t = dict(templates)

    @classmethod
    def load(cls, directory: Path | None = None) -> PromptBook:
        """Load the templates from *directory*, falling back to the bundled ones per file.

        Raises:
            ConfigError: a template cannot be read or has a broken placeholder.
        """
        bundled = importlib.resources.files("roogab").joinpath("prompts")
        if directory is not None and not directory.is_dir():
            raise ConfigError("prompts_dir", f"{directory} is not a directory")
        templates = {}
        for name in TEMPLATE_NAMES:
            path = directory / f"{name}.txt" if directory else None
            try:
                own = bundled.joinpath(f"{name}.txt").read_text("utf-8")
                text = path.read_text("utf-8") if path and path.is_file() else own
            except OSError as exc:
                raise ConfigError("prompts_dir", f"cannot read the {name} template: {exc}") from exc
            if text is not own:
                _check_placeholders(name, text, _placeholders(name, own))
            templates[name] = Template(text.rstrip("\n"))
        return cls(templates)

    def fill(self, template: str, /, **values: Any) -> str:
        """Fill the named template.

        Raises:
            ConfigError: the template uses a placeholder this version does not provide.
        """
        try:
            return self._t[template].substitute(values)
        except (KeyError, ValueError) as exc:
            raise ConfigError("prompts_dir", f"template {template} has an unknown placeholder: {exc}") from exc

    def format_prompt(self, request: ChatRequest) -> str:
        """The response-format prompt: the envelope, the tools, worked examples."""
        tools = request.offered_tools
        section = self.fill("tools", tools="\n\n".join(_signature(t) for t in tools)) if tools \
            else self.fill("no_tools")
        if request.unavailable:
            section += "\n\n" + self.fill("unavailable", names=", ".join(request.unavailable))
        return self.fill("format", tools_section=section, call_examples=self._call_examples(tools),
                         reasoning_rule=self.fill("reasoning_rule"))

    def first_turn(self, request: ChatRequest, history: Sequence[Message],
                   new: Sequence[Message]) -> str:
        """A new provider conversation: format, the agent's system prompt, then the messages.

        *history* is non-empty when an existing task is replayed onto a fresh conversation.
        """
        system = "\n\n".join(m.content for m in request.messages if m.role in ("system", "developer"))
        names = _call_names(request)
        conversation = self.transcript(new, names)
        if history:
            conversation = self.fill("replay", history=self.transcript(history, names), new=conversation)
        prompt = self.fill("first_turn", format=self.format_prompt(request), system=system.strip(),
                           conversation=conversation)
        return self._with_schema(request, prompt)

    def next_turn(self, request: ChatRequest, new: Sequence[Message]) -> str:
        """A continuation: only the new messages and a one-line reminder of the format. A system
        message among them (Claude Code sends them mid-conversation) is shown as one."""
        prompt = self.fill("reminder", messages=self.transcript(new, _call_names(request), keep_system=True),
                           tool_names=_names(request))
        return self._with_schema(request, prompt)

    def _with_schema(self, request: ChatRequest, prompt: str) -> str:
        if request.json_schema is None:
            return prompt
        return prompt + "\n\n" + self.fill("json_answer", schema=schema_instruction(request.json_schema))

    def repair(self, request: ChatRequest, problem: str) -> str:
        """The one message that asks the model to fix an unusable reply."""
        return self.fill("repair", problem=problem, tool_names=_names(request))

    def transcript(self, messages: Sequence[Message], names: Mapping[str, str], *,
                   keep_system: bool = False) -> str:
        """Messages as readable transcript sections; system messages are left out unless *keep_system*.

        *names* maps tool call ids to tool names, to label tool results.
        """
        return "\n\n".join(self._message(m, names) for m in messages
                           if keep_system or m.role not in ("system", "developer"))

    def split(self, text: str, limit: int) -> list[str]:
        """Cut *text* into numbered parts that each fit in *limit* characters (0 = no limit)."""
        if limit <= 0 or len(text) <= limit:
            return [text]
        body = max(1, limit - len(self.fill("part", index=999, total=999, body="")))
        pieces = [text[i:i + body] for i in range(0, len(text), body)]
        total = len(pieces)
        return [self.fill("last_part" if i == total else "part", index=i, total=total, body=p)
                for i, p in enumerate(pieces, start=1)]

    def _message(self, m: Message, names: Mapping[str, str]) -> str:
        content = m.content
        if m.images:
            content = "\n\n".join(x for x in (content, self.fill("images_omitted", count=m.images)) if x)
        if m.role == "tool":
            call_id = m.tool_call_id or ""
            return self.fill("tool_error" if m.is_error else "tool_result", name=names.get(call_id, "tool"),
                             call_id=call_id, content=content)
        calls = [self.fill("tool_call", name=c.name, call_id=c.id, arguments=canonical_json(c.arguments))
                 for c in m.tool_calls]
        body = "\n".join(x for x in (content, *calls) if x)
        return self.fill("message", role=m.role, content=body)

    def _call_examples(self, tools: Sequence[ToolSpec]) -> str:
        if not tools:
            return ""
        tool, argument = _example_target(tools)
        return self.fill("call_examples", tool=tool, argument=argument, value="src/app.py")


def _call_names(request: ChatRequest) -> dict[str, str]:
    return {c.id: c.name for m in request.messages for c in m.tool_calls}


def _names(request: ChatRequest) -> str:
    if not request.offered_tools:
        return ""
    return "; tools: " + ", ".join(t.name for t in request.offered_tools)


def _example_target(tools: Sequence[ToolSpec]) -> tuple[str, str]:
    """A tool with a required file-path argument (else any string one) for the worked examples."""
    candidates = []
    for spec in tools:
        props = spec.parameters.get("properties") or {}
        for name in spec.parameters.get("required") or []:
            if isinstance(props.get(name), dict) and props[name].get("type") == "string":
                pathlike = "path" in name.lower() or "file" in name.lower()
                candidates.append((not pathlike, not spec.name.startswith("read"), spec.name, name))
    if not candidates:
        return tools[0].name, "path"
    _, _, tool, argument = min(candidates)
    return tool, argument


def _signature(spec: ToolSpec) -> str:
    lines = [f"### {spec.name}"]
    if spec.description.strip():
        lines.append(spec.description.strip())
    required = set(spec.parameters.get("required") or [])
    for name, schema in (spec.parameters.get("properties") or {}).items():
        mark = "*" if name in required else ""
        line = f"- {name}{mark}: {_type(schema)}"
        desc = str(schema.get("description", "")).strip() if isinstance(schema, dict) else ""
        lines.append(f"{line} — {desc}" if desc else line)
    return "\n".join(lines)


def _type(schema: object, depth: int = 0) -> str:
    if not isinstance(schema, dict):
        return "any"
    if isinstance(schema.get("enum"), list):  # wire checked its shape; "enum": null means none
        return " | ".join(json.dumps(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(_type(s, depth) for s in schema[key])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        return f"list of {_type(schema.get('items'), depth + 1)}"
    if kind == "object" and isinstance(schema.get("properties"), dict) and depth < 3:
        required = set(schema.get("required") or [])
        inner = ", ".join(f"{k}{'*' if k in required else ''}: {_type(v, depth + 1)}"
                          for k, v in schema["properties"].items())
        return "{ " + inner + " }"
    return str(kind)



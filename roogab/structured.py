"""Structured output: a model's text answer made into JSON that fits the schema the client asked for. Pure.

A chat service has no JSON mode; the prompt asks for JSON, and ``fit_json`` takes what came back:
the JSON value in it (bare, in a code fence, or inside prose) when it is valid for the schema,
else an instance built from the schema that carries the answer's text in its first string field
(Claude Code's title request, ``{"title": string}``, gets the model's title either way).
Validation uses the ``jsonschema`` library.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["fit_json", "schema_instruction"]

FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n(.*?)```", re.DOTALL)
MAX_DEPTH = 8


def schema_instruction(schema: dict[str, Any]) -> str:
    """The schema as the prompt shows it."""
    return json.dumps(schema, ensure_ascii=False, sort_keys=True)


def fit_json(text: str, schema: dict[str, Any]) -> str:
    """JSON text valid for *schema*, from the model's answer *text*."""
    for value in _candidates(text):
        if _valid(value, schema):
            return json.dumps(value, ensure_ascii=False)
    return json.dumps(_instance(schema, _plain(text), 0), ensure_ascii=False)


def _candidates(text: str) -> list[Any]:
    pieces = [text.strip(), *(m.group(1).strip() for m in FENCE.finditer(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        pieces.append(text[start:end + 1])
    values = []
    for piece in pieces:
        try:
            values.append(json.loads(piece))
        except ValueError:
            continue
    return values


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    import jsonschema  # imported here: only structured-output turns need it

    try:
        validator = jsonschema.validators.validator_for(schema)
        return bool(validator(schema).is_valid(value))
    except jsonschema.exceptions.SchemaError:
        return False


def _plain(text: str) -> str:
    """The answer as one line of prose: fences and JSON punctuation dropped."""
    candidates = [v for v in _candidates(text) if isinstance(v, dict)]
    strings = [v for c in candidates for v in c.values() if isinstance(v, str)]
    if strings:
        return strings[0]
    return " ".join(FENCE.sub(lambda m: m.group(1), text).split()).strip("\"' ")


def _instance(schema: Any, text: str, depth: int) -> Any:
    """The smallest value *schema* allows, with *text* in the first string it has room for."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return text
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _instance(schema[key][0], text, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = kind[0] if kind else "string"
    if kind == "object":
        return _object(schema, text, depth)
    if kind == "array":
        return [_instance(schema.get("items"), text, depth + 1)] * int(schema.get("minItems", 0) or 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text[:schema["maxLength"]] if isinstance(schema.get("maxLength"), int) else text


def _object(schema: dict[str, Any], text: str, depth: int) -> dict[str, Any]:
    raw = schema.get("properties")
    props: dict[str, Any] = raw if isinstance(raw, dict) else {}
    wanted = schema.get("required")
    required = [k for k in (wanted if isinstance(wanted, list) else list(props)) if isinstance(k, str)]
    value: dict[str, Any] = {}
    used = False
    for key in required:
        sub = props.get(key, {})
        is_string = isinstance(sub, dict) and sub.get("type", "string") == "string" and "enum" not in sub
        value[key] = _instance(sub, text if not used else "", depth + 1)
        used = used or is_string
    return value

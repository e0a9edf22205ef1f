"""Structured output: a model's text answer made into JSON that fits the schema the client asked for. Pure.

A chat service has no JSON mode; the prompt asks for JSON, and ``fit_json`` takes what came back:
the JSON value in it (bare, in a code fence, or inside prose) when it is valid for the schema,
else an instance built from the schema that carries the answer's text in its first string field
(Claude Code's title request, ``{"title": string}``, gets the model's title either way).
Validation uses the ``jsonschema`` library; a schema it cannot use (not valid against its
metaschema, a ``$ref`` that points nowhere) or an answer nested too deep validates nothing, and
the instance is built. The edge (``wire.check_schema``) has already refused the shapes the
builder reads; the rest of a schema is the client's, so nothing here may raise on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .envelope.calls import json_values

__all__ = ["fit_json", "schema_instruction"]

FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n(.*?)```", re.DOTALL)
MAX_DEPTH = 8
MAX_ITEMS = 16
"""The most copies of one value a built instance holds. An array gets ``minItems`` copies of its
item, but no more than this counted over all the arrays it sits in: ``minItems: 2000000``, or
arrays nested eight deep, would otherwise turn a few words into megabytes."""


def schema_instruction(schema: dict[str, Any]) -> str:
    """The schema as the prompt shows it."""
    return json.dumps(schema, ensure_ascii=False, sort_keys=True)


def fit_json(text: str, schema: dict[str, Any]) -> str:
    """JSON text valid for *schema*, from the model's answer *text*."""
    for value in _candidates(text):
        if _valid(value, schema):
            return json.dumps(value, ensure_ascii=False)
    return json.dumps(_instance(schema, _plain(text), 0, 1), ensure_ascii=False)


def _candidates(text: str) -> list[Any]:
    pieces = [text.strip(), *(m.group(1).strip() for m in FENCE.finditer(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        pieces.append(text[start:end + 1])
    values = []
    for piece in pieces:
        try:
            values.append(json_values(json.loads(piece)))  # ValueError: NaN or a number too big for JSON
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter recurses
            continue
    return values


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    """Whether *value* fits *schema*; False when jsonschema cannot use the schema (a keyword of
    the wrong type, a ``pattern`` that is no regex, a ``$ref`` to nowhere) or recurses too deep."""
    import jsonschema  # imported here: only structured-output turns need it
    import referencing.exceptions  # jsonschema's own dependency: a $ref it cannot resolve raises its error

    if not isinstance(schema.get("$schema", ""), str):  # validator_for looks it up as a dict key
        return False
    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
        return bool(validator(schema).is_valid(value))
    except (jsonschema.exceptions.SchemaError, referencing.exceptions.Unresolvable, RecursionError):
        return False


def _plain(text: str) -> str:
    """The answer as one line of prose: fences and JSON punctuation dropped."""
    candidates = [v for v in _candidates(text) if isinstance(v, dict)]
    strings = [v for c in candidates for v in c.values() if isinstance(v, str)]
    if strings:
        return strings[0]
    return " ".join(FENCE.sub(lambda m: m.group(1), text).split()).strip("\"' ")


def _instance(schema: Any, text: str, depth: int, copies: int) -> Any:
    """The smallest value *schema* allows, with *text* in the first string it has room for;
    *copies* is how many times the enclosing arrays repeat it (see ``MAX_ITEMS``)."""
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return text
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _instance(schema[key][0], text, depth + 1, copies)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = kind[0] if kind else "string"
    if kind == "object":
        return _object(schema, text, depth, copies)
    if kind == "array":
        count = _min_items(schema, copies)
        return [_instance(schema.get("items"), text, depth + 1, copies * max(count, 1))] * count
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text[:schema["maxLength"]] if isinstance(schema.get("maxLength"), int) else text


def _min_items(schema: dict[str, Any], copies: int) -> int:
    """``minItems`` when it is a non-negative int (not a bool), within what ``MAX_ITEMS`` leaves."""
    wanted = schema.get("minItems")
    if not isinstance(wanted, int) or isinstance(wanted, bool):
        return 0
    return max(0, min(wanted, MAX_ITEMS // copies))


def _object(schema: dict[str, Any], text: str, depth: int, copies: int) -> dict[str, Any]:
    raw = schema.get("properties")
    props: dict[str, Any] = raw if isinstance(raw, dict) else {}
    wanted = schema.get("required")
    required = [k for k in (wanted if isinstance(wanted, list) else list(props)) if isinstance(k, str)]
    value: dict[str, Any] = {}
    used = False
    for key in required:
        sub = props.get(key, {})
        is_string = isinstance(sub, dict) and sub.get("type", "string") == "string" and "enum" not in sub
        value[key] = _instance(sub, text if not used else "", depth + 1, copies)
        used = used or is_string
    return value

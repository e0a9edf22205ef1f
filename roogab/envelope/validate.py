"""Checking a tool call against the request's tools (their JSON Schema ``parameters``).

:func:`check_call` raises :class:`~roogab.errors.ReplyFormatError` naming the exact problem
(``unknown tool 'x' (offered: a, b)``, ``read_file: missing required argument 'path'``,
``write_to_file: argument 'content' must be a string``) and otherwise returns the call with its
arguments coerced where the model's intent is plain:

* ``"true"``/``"false"`` (also ``yes``/``no``, ``1``/``0``) → bool for a ``boolean``;
* ``"5"`` → 5 for an ``integer`` (``5.0`` → 5), ``"2.5"`` → 2.5 for a ``number``;
* a number or bool → its text for a ``string``;
* a lone value → ``[value]`` for an ``array``, a JSON-string array → the list, ``{}`` → ``[]``;
* a JSON-string object → the dict for an ``object``, ``[]`` (an empty Lua table) → ``{}``.

Absent (or ``nil``) properties that the schema lists as required are filled with ``None`` when the
schema allows null (``type`` list with ``"null"``, ``nullable``, an ``anyOf`` branch), and also, for
Roo's strict-style schemas (``additionalProperties: false`` with *every* property required, since
Roo marks all required and collapses ``["string", "null"]`` to ``"string"``), when the property
is not the first one and either its description says it is optional (``optional``, ``default``,
``only used when``) or it is not a string. Unknown arguments are dropped when
``additionalProperties`` is false and checked against it when it is a schema. Keys such as
``$schema``, ``title`` or ``description`` are ignored. Nesting is followed to a depth of 16.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ReplyFormatError
from .events import ToolCall

__all__ = ["check_call"]

logger = logging.getLogger(__name__)

_MAX_DEPTH = 16
_INT_RE = re.compile(r"\s*[-+]?\d+\s*\Z")
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
_OPTIONAL_RE = re.compile(r"\boptional\b|\bdefault\b|only used when|if omitted", re.IGNORECASE)
_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
               "array": "an array", "object": "an object", "null": "null"}


class _Invalid(Exception):
    """A value does not fit its schema; carries the message without the tool name."""


def check_call(call: ToolCall, tools: Mapping[str, dict[str, Any]]) -> ToolCall:
    """Check *call* against *tools* (name → JSON Schema of its parameters); return it coerced.

    Raises:
        ReplyFormatError: the tool is not offered, or an argument is missing or of the wrong type.
    """
    if call.name not in tools:
        offered = ", ".join(sorted(tools)) or "none"
        raise ReplyFormatError(f"unknown tool {call.name!r} (offered: {offered})")
    schema = tools[call.name] or {}
    try:
        args = _object(schema, call.arguments, "", 0)
    except _Invalid as exc:
        raise ReplyFormatError(f"{call.name}: {exc}") from None
    return ToolCall(call.name, args)


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def _nullable(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return True
    if schema.get("nullable") is True or "null" in _types(schema):
        return True
    branches = schema.get("anyOf") or schema.get("oneOf") or ()
    return any(isinstance(b, Mapping) and "null" in _types(b) for b in branches)


def _value(schema: Any, value: Any, where: str, depth: int) -> Any:
    """Check and coerce *value* against *schema*; *where* names it in messages."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return value
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list) and branches:
        return _branches(branches, value, where, depth)
    types = _types(schema)
    if value is None:
        if not types or "null" in types or schema.get("nullable") is True:
            return None
        raise _Invalid(f"argument {where!r} must be {_TYPE_NAMES.get(types[0], types[0])}, not null")
    result = _typed(schema, types, value, where, depth) if types else value
    allowed = schema.get("enum")
    if isinstance(allowed, list) and allowed and result not in allowed:
        raise _Invalid(f"argument {where!r} must be one of {', '.join(map(json.dumps, allowed))}")
    return result


def _branches(branches: list[Any], value: Any, where: str, depth: int) -> Any:
    first: _Invalid | None = None
    for branch in branches:
        try:
            return _value(branch, value, where, depth + 1)
        except _Invalid as exc:
            first = first or exc
    assert first is not None
    raise first


def _typed(schema: Mapping[str, Any], types: list[str], value: Any, where: str, depth: int) -> Any:
    for kind in types:  # exact matches first, so ["string", "integer"] keeps "5" a string
        if _is(kind, value):
            return _nested(schema, kind, value, where, depth)
    for kind in types:
        coerced = _coerce(kind, value)
        if coerced is not _NO:
            return _nested(schema, kind, coerced, where, depth)
    wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    raise _Invalid(f"argument {where!r} must be {wanted}")


def _is(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return kind == "null" and value is None


_NO = object()


def _coerce(kind: str, value: Any) -> Any:
    """*value* converted to *kind* when the intent is plain, else ``_NO``."""
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, (int, float)) else _NO
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(value) if isinstance(value, str) and _INT_RE.match(value) else _NO
    if kind == "number":
        return _number(value)
    if kind == "boolean":
        return _boolean(value)
    if kind == "array":
        return _array(value)
    if kind == "object":
        return _object_like(value)
    return _NO


def _number(value: Any) -> Any:
    if not isinstance(value, str):
        return _NO
    if _INT_RE.match(value):
        return int(value)
    try:
        number = float(value)
    except ValueError:
        return _NO
    return number if math.isfinite(number) else _NO


def _boolean(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else _NO
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return _NO


def _array(value: Any) -> Any:
    if value == {}:
        return []
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
            parsed = None
        if isinstance(parsed, list):
            return parsed
    return [value]


def _object_like(value: Any) -> Any:
    if value == []:
        return {}
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return _NO
        return parsed if isinstance(parsed, dict) else _NO
    return _NO


def _nested(schema: Mapping[str, Any], kind: str, value: Any, where: str, depth: int) -> Any:
    if kind == "array":
        items = schema.get("items")
        return [_value(items, v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if kind == "object":
        return _object(schema, value, where, depth + 1)
    return value


def _object(schema: Mapping[str, Any], value: Any, where: str, depth: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"argument {where!r} must be an object")
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{where}.{key}" if where else str(key)
        if key in props:
            if item is None and not _nullable(props[key]):
                continue  # `k = nil` means absent in Lua; handled with the required keys below
            out[key] = _value(props[key], item, name, depth)
        elif extra is False:
            logger.debug("dropping unknown argument %r", name)
        else:
            out[key] = _value(extra, item, name, depth) if isinstance(extra, Mapping) else item
    required = schema.get("required")
    for key in required if isinstance(required, list) else ():
        if key not in out:
            if not _fillable(schema, props, key):
                name = f"{where}.{key}" if where else key
                raise _Invalid(f"missing required argument {name!r}")
            out[key] = None
    return out


def _fillable(schema: Mapping[str, Any], props: Mapping[str, Any], key: str) -> bool:
    """May the absent required property *key* be filled with null? (see the module docstring)."""
    prop = props.get(key)
    if prop is None:
        return False
    if _nullable(prop):
        return True
    names = list(props)
    roo_strict = (schema.get("additionalProperties") is False and len(names) > 1
                  and set(schema.get("required") or ()) == set(names))
    if not roo_strict or key == names[0] or not isinstance(prop, Mapping):
        return False
    description = str(prop.get("description", ""))
    if description.lower().startswith("required"):
        return False
    return bool(_OPTIONAL_RE.search(description)) or "string" not in _types(prop)

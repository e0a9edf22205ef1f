"""How deep an envelope may nest: a hostile or broken reply must not exhaust the stack. Pure."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "nested_deeper"]

#: Tables nested deeper than this are refused (a hostile or broken reply; rendering and JSON of
#: arguments that deep would exhaust the stack). Real tool arguments stay far below it.
MAX_DEPTH = 100


def nested_deeper(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when *value* (dicts and lists) nests deeper than *limit* levels; no recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False

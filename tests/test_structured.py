"""Structured output (pure): whatever the schema and the answer, ``fit_json`` returns JSON text,
and the instance it builds stays small."""

from __future__ import annotations

import json
from typing import Any

import pytest

from roogab.structured import MAX_ITEMS, fit_json

TITLE = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def test_a_valid_answer_is_kept_and_prose_is_fitted() -> None:
    assert json.loads(fit_json('Sure: ```json\n{"title": "Fix it"}\n```', TITLE)) == {"title": "Fix it"}
    assert json.loads(fit_json("Fix it", TITLE)) == {"title": "Fix it"}


@pytest.mark.parametrize(("count", "expected"), [(0, 0), (3, 3), (2_000_000, MAX_ITEMS), (True, 0), ("x", 0),
                                                 (2.5, 0), (-4, 0)])
def test_min_items_is_an_int_and_bounded(count: object, expected: int) -> None:
    assert json.loads(fit_json("words", {"type": "array", "minItems": count})) == ["words"] * expected


def test_nested_arrays_share_the_bound() -> None:
    """Four arrays nested, each asking for 16 items, would be 16**4 copies of the answer."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(4):
        schema = {"type": "array", "minItems": 16, "items": schema}
    assert len(fit_json("words", schema)) < 40 * MAX_ITEMS
    empty_outer = {"type": "array", "items": {"type": "array", "minItems": 2}}
    assert json.loads(fit_json("words", empty_outer)) == []


@pytest.mark.parametrize("schema", [
    {"type": "string", "maxLength": "x"},
    {"type": "string", "pattern": "["},
    {"type": "array", "minItems": "x"},
    {"$ref": "#/nowhere"},
    {"type": "array", "items": {"$ref": "#"}},
    {"$schema": ["draft-07"], "type": "string"},
], ids=["maxLength a string", "pattern not a regex", "minItems a string", "ref to nowhere", "recursive ref",
        "$schema a list"])
@pytest.mark.parametrize("answer", ['"text"', "[1, 2]", "[" * 900 + "]" * 900, "[" * 3000 + "]" * 3000, "prose"],
                         ids=["string", "array", "deep array", "too deep to parse", "prose"])
def test_a_schema_jsonschema_cannot_use_still_gets_json(schema: dict[str, Any], answer: str) -> None:
    json.loads(fit_json(answer, schema))


@pytest.mark.parametrize("answer", ['{"title": NaN}', '{"title": "x", "n": Infinity}', '{"title": "x", "n": 1e999}'])
def test_an_answer_with_a_number_json_cannot_carry_is_not_passed_on(answer: str) -> None:
    """``json.loads`` reads NaN and Infinity; the agent's JSON parser would not: the answer is
    not taken as the JSON value, and what comes back parses as strict JSON."""
    out = fit_json(answer, TITLE)
    value = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in {out}"))
    assert isinstance(value["title"], str)


def test_a_lone_utf16_half_in_the_answer_becomes_u_fffd() -> None:
    out = fit_json('{"title": "smile \\ud83d"}', TITLE)
    assert json.loads(out) == {"title": "smile \ufffd"}
    out.encode()  # UTF-8 can carry it

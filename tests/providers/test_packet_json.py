"""PacketJson: the json python-socketio and python-engineio decode packets with, one decoder kept."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from engineio import json as engineio_json
from hypothesis import given
from hypothesis import strategies as st

from roogab.providers.socketio_session import PacketJson

PACKETS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@given(PACKETS)
def test_it_decodes_what_engineios_json_decodes(value: Any) -> None:
    text = json.dumps(value)
    assert PacketJson().loads(text) == engineio_json.loads(text)
    assert PacketJson().loads(text.encode()) == engineio_json.loads(text.encode())  # bytes: json.loads's way


def test_a_huge_integer_is_refused_as_engineio_refuses_it() -> None:
    packet = '["tokenDelta", ' + "9" * 101 + "]"
    with pytest.raises(ValueError, match="too large"):
        engineio_json.loads(packet)
    with pytest.raises(ValueError, match="too large"):
        PacketJson().loads(packet)
    assert PacketJson().loads("[" + "9" * 100 + "]") == [int("9" * 100)]


@pytest.mark.parametrize("text", ["", "[1,", "{'a': 1}", "[1] x", "\ud800"])
def test_bad_json_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        PacketJson().loads(text)


def test_options_are_passed_on_and_dumps_is_the_standard_librarys() -> None:
    assert math.isclose(PacketJson().loads("[1.5]", parse_float=lambda s: float(s) * 2)[0], 3.0)
    value = {"c": "x", "t": "é"}
    assert PacketJson.dumps(value, separators=(",", ":")) == json.dumps(value, separators=(",", ":"))

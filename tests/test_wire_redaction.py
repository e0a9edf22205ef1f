"""What a wire frame shows (providers.base.shown): secret-named headers and fields never, whatever
their values look like; everything else as it was, long strings cut in the middle."""

from __future__ import annotations

import json

import pytest

from roogab.providers.base import SECRET_KEYS, WIRE_PAYLOAD_CHARS, shown
from roogab.redact import REDACTED, Redactor

REDACT = Redactor().redact  # no configured secrets: names and shapes alone


@pytest.mark.parametrize("name", sorted(SECRET_KEYS) + ["Cookie", "AUTHORIZATION", "Set-Cookie"])
def test_a_secret_named_header_or_field_is_never_shown(name: str) -> None:
    as_dict = json.loads(shown({"headers": {name: "opaque-value-1234", "X-Team": "blue"}}, REDACT))
    assert as_dict == {"headers": {name: REDACTED, "X-Team": "blue"}}
    as_pairs = json.loads(shown({"headers": [[name, "opaque-value-1234"], ["X-Team", "blue"]]}, REDACT))
    assert as_pairs == {"headers": [[name, REDACTED], ["X-Team", "blue"]]}


def test_a_streamed_token_field_and_plain_payloads_are_shown() -> None:
    chainlit = {"id": "m1", "token": "Hel", "isSequence": False}  # Chainlit's stream_token: text, not a secret
    assert json.loads(shown(chainlit, REDACT)) == chainlit
    assert json.loads(shown(["subscribe", "c:1"], REDACT)) == ["subscribe", "c:1"]
    assert json.loads(shown({"password": ""}, REDACT)) == {"password": ""}  # nothing to hide


def test_a_credential_inside_a_value_is_redacted_and_long_payloads_are_bounded() -> None:
    text = json.loads(shown({"prompt": "Authorization: Bearer sk-abcdefghijklmnop0123 then more"}, REDACT))["prompt"]
    assert "sk-abcdefghijklmnop0123" not in text and REDACTED in text
    long = shown({"prompt": "start " + "x" * 50_000 + " the newest message"}, REDACT)
    assert len(long) <= WIRE_PAYLOAD_CHARS + 60 and "start" in long and "the newest message" in long

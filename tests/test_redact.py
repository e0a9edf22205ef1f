"""Secrets and credential-shaped values are removed from logged text."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from roogab.redact import MIN_SECRET_LENGTH, Redactor

COOKIE = "sess-9f8e7d6c5b4a"
PASSWORD = 'pä$$ "w0rd"\\x'


@pytest.fixture
def redactor() -> Redactor:
    return Redactor([COOKIE, PASSWORD, "", "abc"])


@pytest.mark.parametrize("text", [
    f"plain {PASSWORD} text",
    json.dumps({"password": PASSWORD}),
    json.dumps({"password": PASSWORD}, ensure_ascii=False),
    json.dumps(json.dumps({"password": PASSWORD})),
    urlencode({"user": "me", "password": PASSWORD}),
    f"cookie value {COOKIE} at the end{COOKIE}",
])
def test_secret_values_are_removed_in_any_encoding(redactor: Redactor, text: str) -> None:
    out = redactor.redact(text)
    assert PASSWORD not in out and COOKIE not in out
    assert "[redacted]" in out


def test_json_stays_json(redactor: Redactor) -> None:
    text = json.dumps({"headers": {"Cookie": f"a=1; s={COOKIE}", "Authorization": "Bearer sk-abcdef"},
                       "password": PASSWORD, "access_token": "ya29.secret", "ok": "kept"})
    out = json.loads(redactor.redact(text))
    assert out == {"headers": {"Cookie": "[redacted]", "Authorization": "Bearer [redacted]"},
                   "password": "[redacted]", "access_token": "[redacted]", "ok": "kept"}


@pytest.mark.parametrize(("text", "expected"), [
    ("Cookie: a=1; b=2\nHost: x", "Cookie: [redacted]\nHost: x"),
    ("set-cookie: id=42; Path=/; HttpOnly\r\n", "set-cookie: [redacted]\r\n"),
    ("Authorization: Bearer sk-live-123", "Authorization: Bearer [redacted]"),
    ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic [redacted]"),
    ("GET /cb?code=1&access_token=ya29.a0Af-x_y&state=2", "GET /cb?code=1&access_token=[redacted]&state=2"),
    ('{"refresh_token": "r-123"}', '{"refresh_token": "[redacted]"}'),
    ("use Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig now", "use Bearer [redacted] now"),
    ("a bearer of bad news", "a bearer of bad news"),
    ("abc is too short to be a secret", "abc is too short to be a secret"),
    ("nothing to see", "nothing to see"),
    ("", ""),
])
def test_generic_patterns(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


def test_no_secrets_still_applies_generic_patterns() -> None:
    assert Redactor([]).redact("Cookie: x=1") == "Cookie: [redacted]"


def test_regex_metacharacters_in_secrets_are_literal() -> None:
    r = Redactor(["a.b*c(d)"])
    assert r.redact("a.b*c(d) aXbbc(d)") == "[redacted] aXbbc(d)"


def test_a_secret_inside_a_longer_one() -> None:
    r = Redactor(["token-1234", "token-12345678"])
    assert r.redact("token-12345678 token-1234") == "[redacted] [redacted]"


def test_40kb_without_secrets_comes_back_unchanged() -> None:
    r = Redactor([f"secret-{i:03}-value" for i in range(20)])
    text = ("def f(x):\n    return x * 2  # a line of ordinary code, nothing secret\n" * 600)[:40_000]
    assert r.redact(text) == text


def _leaves_part_of(secret: str, head: str) -> bool:
    """Whether *head* ends in the first characters (4 or more) of *secret*."""
    return any(head.endswith(secret[:n]) for n in range(MIN_SECRET_LENGTH, len(secret) + 1))


@pytest.mark.parametrize("at", range(-len(COOKIE) - 1, 2))
def test_a_head_cut_across_a_secret_keeps_no_part_of_it(redactor: Redactor, at: int) -> None:
    text = "x" * (100 + at) + COOKIE + " and the rest"
    head = redactor.head(text, 100)
    assert not _leaves_part_of(COOKIE, head), head
    assert redactor.redact(text).startswith(head)


@pytest.mark.parametrize("at", range(-30, 2))
def test_a_head_cut_across_a_credential_shape_keeps_no_part_of_it(redactor: Redactor, at: int) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.e30.signature"
    head = redactor.head("x" * (100 + at) + f"\nAuthorization: Bearer {token}\nmore", 100)
    assert not _leaves_part_of(token, head), head


def test_a_head_is_cut_on_the_text_not_on_its_redaction() -> None:
    # the long secret shrinks to "[redacted]": what the cut keeps must not then reach a secret
    # that starts far past the cut
    long_secret, short = "L" * 500, "short-secret-9f8e"
    r = Redactor([long_secret, short])
    head = r.head(long_secret + "x" * 100 + short + "tail", 550)
    assert head == "[redacted]" + "x" * 50
    assert r.head("plain text", 4) == "plai"

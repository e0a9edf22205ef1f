"""Cookie files: Netscape and JSON exports, header building, expiry warnings, malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roogab.cookies import Cookie, cookie_header, expiry_warnings, load_cookies, parse_json, parse_netscape
from roogab.errors import ConfigError

NOW = 1_800_000_000.0
HOUR = 3600.0

NETSCAPE = f"""# Netscape HTTP Cookie File
# https://curl.se/docs/http-cookies.html

.example.com\tTRUE\t/\tFALSE\t{NOW + 30 * 86400:.0f}\tsid\tS3CR3T-sid
#HttpOnly_chat.example.com\tFALSE\t/\tTRUE\t0\taccess_token\tS3CR3T-jwt
chat.example.com\tFALSE\t/api\tFALSE\t{NOW + 2 * HOUR:.0f}\tapi_pref\tS3CR3T-pref
other.org\tFALSE\t/\tFALSE\t{NOW - HOUR:.0f}\told\tS3CR3T-old
chat.example.com\tFALSE\t/\tFALSE\t0\tempty
"""

JSON_EXPORT = [  # Cookie-Editor / EditThisCookie shape
    {"domain": ".example.com", "expirationDate": NOW + 30 * 86400, "hostOnly": False, "httpOnly": True,
     "name": "sid", "path": "/", "sameSite": "lax", "secure": False, "session": False, "storeId": "0",
     "value": "S3CR3T-sid"},
    {"domain": "chat.example.com", "hostOnly": True, "httpOnly": True, "name": "access_token", "path": "/",
     "secure": True, "session": True, "value": "S3CR3T-jwt"},
    {"domain": "chat.example.com", "expirationDate": NOW + 2 * HOUR, "hostOnly": True, "name": "api_pref",
     "path": "/api", "secure": False, "session": False, "value": "S3CR3T-pref"},
    {"domain": "other.org", "expirationDate": NOW - HOUR, "hostOnly": True, "name": "old", "path": "/",
     "value": "S3CR3T-old"},
]


def test_netscape_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "cookies.txt"
    path.write_text(NETSCAPE)
    cookies = load_cookies(path)
    assert [c.name for c in cookies] == ["sid", "access_token", "api_pref", "old", "empty"]
    sid, token, pref, _, empty = cookies
    assert (sid.domain, sid.host_only, sid.secure, sid.expires) == (".example.com", False, False, NOW + 30 * 86400)
    assert (token.domain, token.host_only, token.secure, token.expires) == ("chat.example.com", True, True, None)
    assert pref.path == "/api" and empty.value == ""


@pytest.mark.parametrize("wrap", [False, True], ids=["list", "storage_state"])
def test_json_export_is_read(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "cookies.json"
    path.write_text(json.dumps({"cookies": JSON_EXPORT, "origins": []} if wrap else JSON_EXPORT, indent=2))
    cookies = load_cookies(path)
    assert [c.name for c in cookies] == ["sid", "access_token", "api_pref", "old"]
    assert cookies[1].expires is None and cookies[1].secure and cookies[1].host_only
    assert cookies[0].expires == NOW + 30 * 86400 and not cookies[0].host_only


def test_both_formats_give_the_same_headers() -> None:
    a, b = parse_netscape(NETSCAPE), parse_json(json.dumps(JSON_EXPORT))
    for url in ("https://chat.example.com/", "https://chat.example.com/api/v1", "http://chat.example.com/x",
                "wss://chat.example.com/ws/socket.io", "https://other.org/"):
        assert cookie_header([c for c in a if c.name != "empty"], url, now=NOW) == cookie_header(b, url, now=NOW)


def test_header_matches_domain_path_scheme_and_expiry() -> None:
    cookies = parse_netscape(NETSCAPE)
    assert cookie_header(cookies, "https://chat.example.com/api/v1", now=NOW) == \
        "api_pref=S3CR3T-pref; sid=S3CR3T-sid; access_token=S3CR3T-jwt; empty="
    assert cookie_header(cookies, "http://chat.example.com/apix", now=NOW) == "sid=S3CR3T-sid; empty="
    assert cookie_header(cookies, "https://deep.sub.example.com/", now=NOW) == "sid=S3CR3T-sid"
    assert cookie_header(cookies, "https://notexample.com/", now=NOW) == ""
    assert cookie_header(cookies, "https://other.org/", now=NOW) == ""  # expired


def test_host_only_and_ip_hosts() -> None:
    cookies = [Cookie("a", "1", "127.0.0.1", host_only=True), Cookie("b", "2", ".0.0.1")]
    assert cookie_header(cookies, "http://127.0.0.1:8000/ws/socket.io") == "a=1"
    assert cookie_header([Cookie("c", "3", "chat.example.com", host_only=True)], "http://x.chat.example.com/") == ""


def test_expiry_warnings_name_cookies_never_values() -> None:
    warnings = expiry_warnings(parse_netscape(NETSCAPE), NOW)
    assert warnings == ["cookie 'api_pref' for chat.example.com expires in 2 h",
                        "cookie 'old' for other.org expired 60 min ago"]
    assert not any("S3CR3T" in w for w in warnings)


def test_repr_hides_the_value() -> None:
    assert "S3CR3T" not in repr(parse_netscape(NETSCAPE))


@pytest.mark.parametrize("text, problem", [
    ("chat.example.com\tFALSE\t/\n", "cookies.txt, line 1: expected 7 tab-separated fields, found 3"),
    ("# ok\nchat.example.com\tMAYBE\t/\tFALSE\t0\tn\tS3CR3T\n", "cookies.txt, line 2: the 2nd and 4th fields"),
    ("chat.example.com\tFALSE\t/\tFALSE\tsoon\tn\tS3CR3T\n", "cookies.txt, line 1: the expiry"),
    ("chat.example.com\tFALSE\t/\tFALSE\t0\tn\tS3CR3T\rX: y\n", "cookies.txt, line 1 (n): the value holds"),
])
def test_malformed_netscape_lines(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "cookies.txt"
    path.write_text(text, newline="")
    with pytest.raises(ConfigError) as caught:
        load_cookies(path, key="providers.team.cookie_file")
    assert problem in str(caught.value) and str(path) in str(caught.value)
    assert str(caught.value).startswith("config: providers.team.cookie_file: ")
    assert "S3CR3T" not in str(caught.value)


@pytest.mark.parametrize("text, problem", [
    ('[\n  {"name": "a", "value": "S3CR3T",\n  "domain": }\n]', "cookies.json, line 3: invalid JSON"),
    ('[{"name": "a", "value": "S3CR3T", "domain": "x"}, {"name": "b"}]', "cookies.json, entry 1: needs string"),
    ('[{"name": "a", "value": "S3CR3T", "domain": "x", "expirationDate": "soon"}]', "entry 0 (a): expiry"),
    ('{"not": "cookies"}', "expected a list of cookies"),
    ('[42]', "entry 0: a cookie must be an object"),
])
def test_malformed_json_exports(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "cookies.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_cookies(path)
    assert problem in str(caught.value) and "S3CR3T" not in str(caught.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*missing.txt"):
        load_cookies(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(ConfigError, match="binary.txt is not UTF-8"):
        load_cookies(binary)

"""Security defaults (issue 6 §3, design.md §7): Host checks against DNS rebinding, refusal to serve
a network without keys, constant-time keys, inspection behind the key, no CORS, and no secret in
any log or in the turn log."""

from __future__ import annotations

import ast
import dataclasses
import http.client
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from flask import Flask
from support import wait_for_url

from roogab import api, cli
from roogab.app import create_app
from roogab.check import check_providers
from roogab.cli import main
from roogab.config import Config, load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.errors import ConfigError, ProviderRejected
from roogab.providers.base import Health
from roogab.providers.fake import FakeProvider
from roogab.redact import Redactor
from roogab.runtime import Running, start_demo
from roogab.turnlog import CONTENT_LIMIT

KEY = "sk-roogab-test-0123456789abcdef"
OTHER_KEY = "second-key-for-tests"
PASSWORD = "hunter2-Pa55w0rd-!x"
HEADER_SECRET = "hdr-secret-7c1e9a0b"
COOKIE = "cookie-value-5f4e3d2c1b0a"
GOOD = {"model": "fake/model", "messages": [{"role": "user", "content": "hello"}]}


def secret_demo(tmp_path: Path, *args: str, username: bool = True) -> subprocess.Popen[str]:
    """``roogab demo`` in a subprocess with every kind of secret configured: an API key, a
    password (from the environment), a cookie file and a secret header; *args* are more flags."""
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE}\n")
    config = tmp_path / "roogab.toml"
    config.write_text(textwrap.dedent(f"""\
        store = "memory"
        [[providers]]
        name = "demo"
        kind = "demo"
        {'username = "dev"' if username else ''}
        password_env = "CHAT_PASSWORD"
        cookie_file = "{cookies}"
        [providers.headers]
        X-Chat-Token = "{HEADER_SECRET}"
        """))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ROOGAB_")}, "ROOGAB_API_KEYS": KEY,
           "CHAT_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "roogab", "demo", "--config", str(config), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _app(**config: Any) -> Flask:
    return create_app(Config(store="memory", **config), {"fake": FakeProvider()})


def _error(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} == set(body["error"]), body
    return dict(body["error"])


# -- Host header (DNS rebinding) ---------------------------------------------------------------

FOREIGN_HOSTS = [
    "attacker.example", "attacker.example:8787", "localhost.attacker.example",
    "localhost.attacker.example:8787", "127.0.0.1.nip.io", "127.0.0.1.nip.io:8787",
    "[::ffff:7f00:1]", "[::ffff:127.0.0.1]:8787", "[fe80::1]", "[::1].attacker.example", "127.0.0.2",
    "0.0.0.0:8787", "localhost.", "LOCALHOST.attacker.example", "user@localhost", "localhost:8787@attacker.example",
    "",
]
LOOPBACK_HOSTS = ["localhost", "localhost:8787", "LocalHost:1", "127.0.0.1", "127.0.0.1:8787", "[::1]", "[::1]:8787"]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/", "/healthz", "/inspect/turns.json"])
def test_foreign_host_is_refused_on_loopback(host: str, path: str) -> None:
    client = _app().test_client()
    response = client.open(path, method="POST" if "chat" in path else "GET", json=GOOD, headers={"Host": host})
    assert response.status_code == 403
    assert _error(response)["code"] == "forbidden_host"


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_names_are_served(host: str) -> None:
    response = _app().test_client().get("/v1/models", headers={"Host": host})
    assert response.status_code == 200


def test_allowed_hosts_permits_a_name_and_only_that_name() -> None:
    config = load_config(env={"ROOGAB_ALLOWED_HOSTS": "roogab.lan, dev-box"}, overrides={"store": "memory"})
    assert config.allowed_hosts == ("roogab.lan", "dev-box")
    client = create_app(config, {"fake": FakeProvider()}).test_client()
    for host in ("roogab.lan", "roogab.lan:8787", "dev-box:1", "localhost"):
        assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
    for host in ("roogab.lan.attacker.example", "attacker.example", "xroogab.lan", "dev-box.attacker.example"):
        assert client.get("/v1/models", headers={"Host": host}).status_code == 403, host


def test_host_check_over_real_http(secured: Running) -> None:
    """Through waitress, with proxy headers that must not help: only the Host header counts."""
    for host, forwarded, expected in [("attacker.example", "localhost", 403),
                                      ("127.0.0.1.nip.io", "127.0.0.1", 403),
                                      ("localhost", "attacker.example", 401)]:  # host ok, then the key check
        status, _, body = _raw(secured, "GET", "/v1/models", headers={
            "Host": host, "X-Forwarded-Host": forwarded, "Forwarded": f"host={forwarded}"})
        assert status == expected, (host, body)
        assert json.loads(body)["error"]["code"] in ("forbidden_host", "invalid_api_key")


# -- refusing to serve a network without keys ---------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com"])
def test_non_loopback_bind_without_keys_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"host": host})
    assert info.value.key == "host" and "API keys" in str(info.value)
    result = CliRunner().invoke(main, ["serve", "--host", host, "--port", "0"], env={"ROOGAB_API_KEYS": ""})
    assert result.exit_code == 2 and "not a loopback address" in result.output


def test_cli_refuses_a_network_bind_without_keys_in_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOGAB_")}
    env["XDG_DATA_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "roogab", "serve", "--host", "0.0.0.0", "--port", "0"],
                          check=False, capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2
    assert "0.0.0.0 is not a loopback address" in proc.stderr and "ROOGAB_API_KEYS" in proc.stderr
    assert "running at" not in proc.stdout


def test_a_name_that_merely_starts_with_127_is_not_loopback() -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, overrides={"host": "127.attacker.example"})


# -- API keys -------------------------------------------------------------------------------------

def test_check_key_compares_in_constant_time() -> None:
    """Read the code: the key check uses hmac.compare_digest over every configured key (no early
    exit on the first match) and never compares keys with == or in."""
    source = textwrap.dedent(inspect.getsource(api._check_key))
    tree = ast.parse(source)
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert all(not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) or "blueprint" in ast.unparse(n)
               for n in compares for op in n.ops), [ast.unparse(n) for n in compares]
    assert not any(isinstance(n, ast.GeneratorExp) for n in ast.walk(tree)), "any(generator) stops early"


def _wrong_keys() -> list[str]:
    keys = ["", " ", "x", KEY[:-1], KEY + "x", KEY.upper(), KEY[1:], " " + KEY + "x", KEY[::-1],
            KEY.replace("-", "_"), KEY + OTHER_KEY, "é" * len(KEY), KEY[:8] + "\u00e9" + KEY[9:]]
    keys += ["a" * n for n in range(0, 80, 7)]
    keys += [KEY[:n] for n in range(len(KEY))]
    return keys


@pytest.fixture(scope="module")
def keyed_app() -> Flask:
    return _app(api_keys=(KEY, OTHER_KEY))


def test_wrong_keys_of_every_length_are_401(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    for key in _wrong_keys():
        for header in (f"Bearer {key}", key, f"Basic {key}", f"Token {KEY}"):
            response = client.get("/v1/models", headers={"Authorization": header.encode().decode("latin-1")})
            assert response.status_code == 401, (header, response.status_code)
            error = _error(response)
            assert error["code"] == "invalid_api_key" and KEY not in error["message"]
    assert client.get("/v1/models").status_code == 401
    for key in (KEY, OTHER_KEY):
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": f"bearer  {key} "}).status_code == 200


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/chat/completions"), ("POST", "/chat/completions"), ("GET", "/v1/models"), ("GET", "/models"),
    ("GET", "/inspect/turns.json"), ("GET", "/inspect/conversations.json"),
])
def test_api_and_inspection_need_the_key(keyed_app: Flask, method: str, path: str) -> None:
    client = keyed_app.test_client()
    assert client.open(path, method=method, json=GOOD).status_code == 401
    assert client.open(path, method=method, json=GOOD, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.open(path, method=method, json=GOOD, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200, ok.get_data()


# -- no CORS --------------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def _no_cors(headers: Any) -> None:
    leaked = [name for name, _ in headers.items() if name.lower().startswith("access-control-")]
    assert not leaked, leaked


@pytest.mark.parametrize("keys", [(), (KEY,)], ids=["open", "keyed"])
def test_no_cors_headers_on_any_response(keys: tuple[str, ...]) -> None:
    client = _app(api_keys=keys).test_client()
    auth = {"Authorization": f"Bearer {KEY}"} if keys else {}
    for method, path, body in [("OPTIONS", "/v1/chat/completions", None), ("OPTIONS", "/v1/models", None),
                               ("OPTIONS", "/inspect/turns.json", None), ("OPTIONS", "/", None),
                               ("POST", "/v1/chat/completions", GOOD), ("POST", "/v1/chat/completions", {}),
                               ("GET", "/v1/models", None), ("GET", "/", None), ("GET", "/healthz", None),
                               ("GET", "/inspect/turns.json", None), ("GET", "/nowhere", None)]:
        for headers in (PREFLIGHT, {**PREFLIGHT, **auth}):
            response = client.open(path, method=method, json=body, headers=headers)
            _no_cors(response.headers)
    stream = client.post("/v1/chat/completions", json={**GOOD, "stream": True}, headers={**PREFLIGHT, **auth})
    _no_cors(stream.headers)


def test_no_cors_over_real_http(secured: Running) -> None:
    for method, path in [("OPTIONS", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/healthz")]:
        for auth in ({}, {"Authorization": f"Bearer {KEY}"}):
            _, headers, _ = _raw(secured, method, path, headers={**PREFLIGHT, **auth})
            _no_cors(headers)


# -- secrets stay out of logs and the turn log ----------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A keyed demo stack whose provider profile holds a password (password_env), a secret header
    and a cookie file."""
    home = tmp_path_factory.mktemp("secured")
    cookies = home / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE}\n")
    config = load_config(
        env={"ROOGAB_API_KEYS": KEY, "CHAT_PASSWORD": PASSWORD},
        overrides={"port": 0, "store": "sqlite", "data_dir": str(home), "ping_interval": 0.2,
                   "providers": [{"name": "demo", "kind": "demo", "username": "dev",
                                  "password_env": "CHAT_PASSWORD", "cookie_file": str(cookies),
                                  "headers": {"X-Chat-Token": HEADER_SECRET}}]})
    assert config.providers[0].password == PASSWORD
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


def _raw(running: Running, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(running.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


SECRETS = (KEY, PASSWORD, HEADER_SECRET, COOKIE)


def _leaky_request(stream: bool) -> dict[str, Any]:
    """A request whose messages carry every secret (an agent pasted them), in several spellings."""
    content = (f"My password is {PASSWORD} and the header is X-Chat-Token: {HEADER_SECRET}.\n"
               f"Cookie: session={COOKIE}\nAuthorization: Bearer {KEY}\n"
               f'{{"password": "{PASSWORD}", "cookie": "{COOKIE}"}}\nPlease say hello.')
    return {"model": "demo/gab-1", "stream": stream, "messages": [
        {"role": "system", "content": f"key {KEY}"}, {"role": "user", "content": content}],
        "tools": [{"type": "function", "function": {"name": "attempt_completion", "description": PASSWORD,
                                                     "parameters": {"type": "object", "properties": {
                                                         "result": {"type": "string"}}}}}]}


def test_secrets_never_reach_the_logs_or_the_turn_log(secured: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = {"Authorization": f"Bearer {KEY}"}
    for stream in (False, True):
        status, _, body = _raw(secured, "POST", "/v1/chat/completions", _leaky_request(stream), auth)
        assert status == 200, body
    # failures log too: a password pasted as the API key, a rejected body carrying the secrets
    assert _raw(secured, "GET", "/v1/models", headers={"Authorization": f"Bearer {PASSWORD}"})[0] == 401
    bad = {**_leaky_request(False), "messages": [{"role": "wizard", "content": PASSWORD + COOKIE}]}
    assert _raw(secured, "POST", "/v1/chat/completions", bad, auth)[0] == 400
    status, _, turns = _raw(secured, "GET", "/inspect/turns.json?limit=10", headers=auth)
    assert status == 200 and json.loads(turns)["data"]
    _, _, conversations = _raw(secured, "GET", "/inspect/conversations.json", headers=auth)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "turn chatcmpl-" in logged  # the turns were logged, so the search below means something
    stored = "\n".join(f"{t.request_summary} {t.provider_prompt} {t.raw_reply} {t.response} {t.error}"
                       for t in secured.registry.turns(limit=10))
    assert "Please say hello" in stored and "[redacted]" in stored
    for secret in SECRETS:
        assert secret not in logged, secret
        assert secret not in stored, secret
        assert secret.encode() not in turns and secret.encode() not in conversations, secret


def test_a_secret_across_the_turn_logs_cut_leaves_no_part_of_it(secured: Running) -> None:
    """The turn log cuts a long content short: the secret the cut falls into is redacted whole,
    in the store and in the inspector, not only the part of it the cut kept."""
    auth = {"Authorization": f"Bearer {KEY}"}
    content = "x" * (CONTENT_LIMIT - 10) + KEY + " please say hello"
    body = {"model": "demo/gab-1", "messages": [{"role": "user", "content": content}]}
    assert _raw(secured, "POST", "/v1/chat/completions", body, auth)[0] == 200
    _, _, turns = _raw(secured, "GET", "/inspect/turns.json?limit=10", headers=auth)
    logged = [m["content"] for t in secured.registry.turns(limit=10)
              for m in json.loads(t.request_summary)["messages"] if m["content"].startswith("x" * 100)]
    assert logged and all(c.startswith("x" * (CONTENT_LIMIT - 10) + "[redacted]\n[...") for c in logged), logged
    assert KEY[:10].encode() not in turns


SERVICE_ERROR = f"bad session cookie {COOKIE} for password {PASSWORD}"
AGENT_TURNS = {"/v1/chat/completions": {"messages": [{"role": "user", "content": "{}"}]},
               "/v1/messages": {"max_tokens": 10, "messages": [{"role": "user", "content": "{}"}]},
               "/v1/responses": {"input": "{}"}}


@pytest.mark.parametrize("stream", [False, True], ids=["error-body", "mid-stream"])
@pytest.mark.parametrize("path", list(AGENT_TURNS))
def test_a_service_error_quoting_a_secret_reaches_the_agent_redacted(secured: Running, path: str,
                                                                     stream: bool) -> None:
    """The chat service's error quotes the session cookie and the password: the agent gets the
    error (as the body, or as the stream's error event after some text), never the secrets."""
    assert secured.demo is not None
    cut_off = ScriptedReply("```lua\nreturn { text = [[Hello there, friend")  # repaired, and the repair fails
    secured.demo.push(*([cut_off] if stream else []), ScriptedReply(error=SERVICE_ERROR))
    body = json.loads(json.dumps(AGENT_TURNS[path]).replace("{}", f"fail {path} stream={stream}"))
    try:
        status, _, answer = _raw(secured, "POST", path, {"model": "demo/gab-1", "stream": stream, **body},
                                 {"Authorization": f"Bearer {KEY}"})
    finally:
        secured.demo.reset()
    assert (status == 200) == stream and b"bad session cookie" in answer, answer  # 200: the stream had begun
    assert COOKIE.encode() not in answer and PASSWORD.encode() not in answer, answer


def test_the_try_page_shows_a_service_error_redacted(secured: Running) -> None:
    assert secured.demo is not None
    secured.demo.push(ScriptedReply(error=SERVICE_ERROR))
    try:
        status, _, page = _raw(secured, "POST", "/inspect/try", b"model=demo%2Fgab-1&message=try+a+failing+turn",
                               {"Authorization": f"Bearer {KEY}", "Origin": secured.url,
                                "Content-Type": "application/x-www-form-urlencoded"})
    finally:
        secured.demo.reset()
    assert status == 502 and b"bad session cookie" in page
    assert COOKIE.encode() not in page and PASSWORD.encode() not in page


def test_roogab_check_reports_a_service_error_redacted(tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE}\n")
    with DemoChatService([ScriptedReply(error=SERVICE_ERROR)]) as demo:
        config = load_config(env={"CHAT_PASSWORD": PASSWORD}, overrides={"store": "memory", "providers": [
            {"name": "demo", "kind": "demo", "url": demo.url, "cookie_file": str(cookies),
             "password_env": "CHAT_PASSWORD"}]})
        text = "\n".join(line for result in check_providers(config) for line in result.lines)
    assert "FAILED" in text and "bad session cookie" in text
    assert COOKIE not in text and PASSWORD not in text, text


class _RefusedProvider(FakeProvider):
    """A provider the chat service refused, with the service's words quoting the cookie."""

    def health(self) -> Health:
        return Health(ready=False, connected=False, last_error=f"the app refused the connection ({SERVICE_ERROR})")


@pytest.mark.parametrize("path, accept", [("/healthz", "application/json"), ("/", "text/plain"),
                                          ("/", "text/html")])
def test_the_status_pages_show_a_providers_last_error_redacted(path: str, accept: str) -> None:
    """/healthz and the index page answer without a key: a provider's last error is shown there
    (it is how a user learns why a service is down), never the secret it quotes."""
    app = create_app(Config(store="memory"), {"down": _RefusedProvider()}, redactor=Redactor([COOKIE, PASSWORD]))
    page = app.test_client().get(path, headers={"Accept": accept}).get_data(as_text=True)
    assert "the app refused the connection (bad session cookie [redacted]" in page, page
    assert COOKIE not in page and PASSWORD not in page, page


def test_a_start_up_failure_is_printed_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`roogab serve` prints why it could not start; a chat service's refusal may quote the
    session cookie or the password it was given, and the terminal is a log too."""
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE}\n")
    config = load_config(env={"CHAT_PASSWORD": PASSWORD}, overrides={"store": "memory", "providers": [
        {"name": "demo", "kind": "demo", "cookie_file": str(cookies), "password_env": "CHAT_PASSWORD"}]})

    def refused() -> Running:
        raise ProviderRejected(f"demo: the app refused the connection ({SERVICE_ERROR})", provider="demo")

    with pytest.raises(SystemExit) as exited:
        cli._run(refused, config)
    err = capsys.readouterr().err
    assert exited.value.code == 1 and "cannot start: demo: the app refused the connection (bad session" in err
    assert COOKIE not in err and PASSWORD not in err, err


def test_cli_output_holds_no_secret(tmp_path: Path) -> None:
    """`roogab demo --log-level debug` in a subprocess: its whole output, after a turn carrying the
    secrets and a rejected request, holds none of them."""
    proc = secret_demo(tmp_path, "--log-level", "debug")
    try:
        url, seen = wait_for_url(proc)
        running = _UrlOnly(url)
        auth = {"Authorization": f"Bearer {KEY}"}
        status, _, body = _raw(running, "POST", "/v1/chat/completions", _leaky_request(False), auth)  # type: ignore[arg-type]
        assert status == 200, body
        _raw(running, "GET", "/v1/models", headers={"Authorization": f"Bearer {PASSWORD}"})  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    output = seen + output
    assert proc.returncode == 0, output
    assert "turn chatcmpl-" in output  # debug logging was on and the turn was logged
    for secret in SECRETS:
        assert secret not in output, secret


@dataclasses.dataclass
class _UrlOnly:
    url: str

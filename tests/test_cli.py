"""The roogab command: help, version, start-up errors, parse, conversations, and a live demo."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner
from support import FIXTURES, ROO, no_keepalive, wait_for_url

from roogab import __version__
from roogab.cli import main
from roogab.demo import DemoChatService, ScriptedReply
from roogab.probe import PROBE, wildcard_url
from roogab.store import ConversationRecord, SqliteStore

ROOT = Path(__file__).resolve().parent.parent
ENVELOPE = '```lua\nreturn { tool_calls = { { name = "read_file", arguments = { path = "a.py" } } } }\n```'


def test_version_and_help() -> None:
    runner = CliRunner()
    assert __version__ in runner.invoke(main, ["--version"]).output
    for command in ([], ["serve"], ["demo"], ["parse"], ["conversations"]):
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
    assert "--script" in runner.invoke(main, ["demo", "--help"]).output


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "70000"])
    assert result.exit_code == 2 and "port" in result.output
    bad = tmp_path / "script.jsonl"
    bad.write_text('{"reply": "ok"}\n{"stream": "sideways", "reply": "x"}\n')
    result = CliRunner().invoke(main, ["demo", "--script", str(bad)])
    assert result.exit_code == 2 and "line 2" in result.output


def test_parse_prints_events_and_verdict(tmp_path: Path) -> None:
    reply = tmp_path / "reply.txt"
    reply.write_text(ENVELOPE)
    result = CliRunner().invoke(main, ["parse", str(reply), "--request", str(FIXTURES / "captured" / ROO)])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert result.exit_code == 0
    assert lines[0] == {"type": "tool_call", "name": "read_file", "arguments": {"path": "a.py"}}
    assert lines[-1]["type"] == "verdict" and lines[-1]["compliant"]
    reply.write_text("no envelope here")
    result = CliRunner().invoke(main, ["parse", str(reply), "--request", str(FIXTURES / "captured" / ROO)])
    assert result.exit_code == 1 and "no envelope found" in result.output


def test_conversations_list_show_rm(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "roogab" / "roogab.sqlite3")
    store.save_conversation(ConversationRecord("abc123", "addr:1", "t", "demo", "gab-1", "h1", ("d1", "d2"),
                                               1.0, 2.0, 1))
    store.close()
    env = {"XDG_DATA_HOME": str(tmp_path)}
    runner = CliRunner()
    listed = runner.invoke(main, ["conversations", "list"], env=env)
    assert listed.exit_code == 0 and "abc123" in listed.output and "demo/gab-1" in listed.output
    shown = runner.invoke(main, ["conversations", "show", "abc123"], env=env)
    assert shown.exit_code == 0 and json.loads(shown.output)["messages_seen"] == 2
    assert runner.invoke(main, ["conversations", "rm", "abc123"], env=env).exit_code == 0
    assert runner.invoke(main, ["conversations", "rm", "abc123"], env=env).exit_code == 1
    assert "no conversations stored" in runner.invoke(main, ["conversations", "list"], env=env).output


@pytest.mark.loopback
def test_live_roogab_demo_with_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps({"reply": ENVELOPE, "chunk": 5}) + "\n")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "roogab", "demo", "--port", "0", "--script", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url, banner = wait_for_url(proc)
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
        result = client.chat.completions.create(
            model="demo/gab-1", messages=[{"role": "user", "content": "read a.py"}],
            tools=[{"type": "function", "function": {"name": "read_file", "parameters": {
                "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}])
        [call] = result.choices[0].message.tool_calls or []
        assert call.function.name == "read_file" and json.loads(call.function.arguments) == {"path": "a.py"}
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    output = banner + output
    assert proc.returncode == 0, output
    assert "Zoo Code" in output and "Cline" in output and "Kilo Code" in output


@pytest.mark.loopback
def test_check_reports_each_provider(tmp_path: Path) -> None:
    with DemoChatService() as demo:
        config = tmp_path / "roogab.toml"
        config.write_text(f'store = "memory"\n[[providers]]\nname = "team"\nkind = "socketio"\nurl = "{demo.url}"\n'
                          'models = ["gab-1"]\n')
        result = CliRunner().invoke(main, ["check", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert "team:" in result.output and "valid envelope" in result.output
        demo.push(ScriptedReply("I refuse to use your format."), ScriptedReply("Still no."))
        result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 1 and "FAILED" in result.output and "did not follow the reply format" in result.output
    config.write_text('[[providers]]\nname = "gone"\nkind = "socketio"\nurl = "http://127.0.0.1:9"\n')
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 1 and "FAILED" in result.output


def test_a_wildcard_bind_prints_a_usable_url() -> None:
    assert wildcard_url("0.0.0.0", 8787) == "http://127.0.0.1:8787"
    assert wildcard_url("::", 8787) == "http://127.0.0.1:8787"
    assert wildcard_url("::1", 9) == "http://[::1]:9" and wildcard_url("10.0.0.2", 9) == "http://10.0.0.2:9"


def test_help_has_examples_and_the_demo_knobs() -> None:
    runner = CliRunner()
    assert "Examples:" in runner.invoke(main, ["--help"]).output
    demo_help = runner.invoke(main, ["demo", "--help"]).output
    for word in ("drop_after", "silent", '"error"', "/demo/script", "/demo/reset", "/demo/received"):
        assert word in demo_help, word
    assert "Example" in runner.invoke(main, ["try", "--help"]).output
    docs = runner.invoke(main, ["docs"])
    assert docs.exit_code == 0 and "roogab/docs" in docs.output and "deploy.md" in docs.output  # packaged


@pytest.mark.loopback
def test_roogab_try_through_a_demo_that_keeps_its_own_store(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "roogab", "demo", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url, banner = wait_for_url(proc)
        tried = subprocess.run([sys.executable, "-m", "roogab", "try", "--url", url], check=False,
                               capture_output=True, text=True, env=env, timeout=120)
        received = json.loads(urllib.request.urlopen(_demo_url(banner) + "/demo/received", timeout=10).read())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert "scripted" not in banner and "http://0.0.0.0" not in banner
    assert tried.returncode == 0, tried.stderr
    assert "model   : demo/gab-1" in tried.stdout and "answer  : " in tried.stdout and "/inspect?q=" in tried.stdout
    assert any(PROBE in (r.get("prompt") or "") for r in received)  # the probe reached the chat service
    assert not list(tmp_path.rglob("*.sqlite3"))  # the demo stored nothing where `serve` keeps its store


def _demo_url(banner: str) -> str:
    match = re.search(r"Demo chat service at (http://127\.0\.0\.1:\d+)", banner)
    assert match, banner
    return match.group(1)

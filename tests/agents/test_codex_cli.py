"""The real Codex CLI (@openai/codex 0.171.0) end to end through RooGab's /v1/responses.

``codex exec`` drives ``roogab demo --script`` (both real processes on loopback) through a read,
a write of a tricky file (apply_patch), a shell command, two tool calls in one reply and a
finish; the workspace is then checked byte for byte. Codex's home, config and temp dir are in
the test's own directory; its proxies point at a closed loopback port so nothing leaves the
machine.

The binary is found in ``$ROOGAB_AGENT_BIN`` (CI installs it with npm, see .ci/run) or the CI
cache; without it the test skips, unless ``ROOGAB_REQUIRE_AGENTS=1`` (CI), when it fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roogab.guide import codex_settings

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = Path("/root/.cache/roogab-ci/npm/node_modules/.bin")
MODEL = "demo/gab-1"
README = "# Demo workspace\n\nRead me first.\n"
TRICKY = ["line 1: `backticks` and \"double\" 'single' \\backslash\\ $HOME ${x} %s",
          "line 2: ]] and ]==] and </content> <tool_use> ]]>",
          "line 3: unicode héllo — 世界 🚀 \u00a0nbsp",
          "```python", "print('a fence inside the file')", "```"]
EXPECTED = "".join(line + "\n" for line in TRICKY)  # apply_patch ends every added line: a trailing newline


def codex_binary() -> Path:
    where = Path(os.environ.get("ROOGAB_AGENT_BIN") or DEFAULT_BIN) / "codex"
    if where.is_file():
        return where
    if os.environ.get("ROOGAB_REQUIRE_AGENTS"):
        pytest.fail(f"ROOGAB_REQUIRE_AGENTS is set but the Codex CLI is not at {where}")
    pytest.skip(f"the Codex CLI is not installed at {where} (npm install @openai/codex@0.171.0)")


def envelope(text: str, *calls: str) -> str:
    """A reply envelope with exec_command calls; [===[ ]===] holds the tricky ]==] as it is."""
    lines = ["```lua", "return {"]
    if text:
        lines.append(f"  text = [===[{text}]===],")
    if calls:
        lines.append("  tool_calls = {")
        lines += [f'    {{ name = "exec_command", arguments = {{ cmd = [===[{cmd}]===] }} }},' for cmd in calls]
        lines.append("  },")
    return "\n".join(lines + ["}", "```"])


PATCH = ("apply_patch <<'PATCH'\n*** Begin Patch\n*** Add File: hello.txt\n"
         + "".join("+" + line + "\n" for line in TRICKY) + "*** End Patch\nPATCH")
SCRIPT = [
    envelope("Reading the README first.", "cat README.md"),
    envelope("", PATCH),
    envelope("Checking the size.", "wc -c hello.txt"),
    envelope("", "cat hello.txt", "ls"),
    envelope("Done: hello.txt written."),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def script() -> list[dict[str, Any]]:
    """The demo's script lines (a test may replace them)."""
    return [{"reply": r} for r in SCRIPT]


@pytest.fixture
def roogab_demo(tmp_path: Path, script: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """``roogab demo --script`` in its own process: (RooGab URL, demo service URL)."""
    path = tmp_path / "script.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in script), "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROOGAB_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "roogab", "demo", "--script", str(path), "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = {}
        assert proc.stdout is not None
        for line in proc.stdout:  # the banner names both addresses once both serve
            if " is running at " in line:
                urls["roogab"] = line.rsplit(" ", 1)[1].strip()
            elif line.startswith("Demo chat service at "):
                urls["demo"] = line.split()[4]
                break
        assert set(urls) == {"roogab", "demo"}, "roogab demo did not start"
        drain = threading.Thread(target=proc.stdout.read, daemon=True)  # a full pipe would block it
        drain.start()
        yield urls["roogab"], urls["demo"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


def run_codex(binary: Path, base: Path, api: str, task: str,
              model: str = MODEL) -> tuple[int, list[dict[str, Any]], str]:
    home, workspace, tmp = base / "home", base / "ws", base / "codex-tmp"
    for d in (home / ".codex", workspace, tmp):
        d.mkdir(parents=True, exist_ok=True)
    # The settings `roogab demo` prints for Codex, used as they are.
    toml = "".join(line.strip() + "\n" for line in codex_settings(api + "/v1", model)[1:])
    (home / ".codex" / "config.toml").write_text(toml, "utf-8")
    closed = f"http://127.0.0.1:{free_port()}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
           "TMPDIR": str(tmp), "ROOGAB_API_KEY": "roogab", "HTTPS_PROXY": closed, "HTTP_PROXY": closed,
           "https_proxy": closed, "http_proxy": closed, "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}
    done = subprocess.run([str(binary), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                           "-C", str(workspace), "--json", task], env=env, cwd=workspace, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stderr


def check_the_task(workspace: Path, code: int, events: list[dict[str, Any]], stderr: str) -> None:
    """The four-step task's outcome, as Codex ran it: the workspace byte for byte and each step."""
    assert code == 0, stderr[-2000:]
    assert (workspace / "hello.txt").read_bytes() == EXPECTED.encode("utf-8")
    assert (workspace / "README.md").read_bytes() == README.encode("utf-8")
    assert sorted(p.name for p in workspace.iterdir()) == ["README.md", "hello.txt"]

    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    commands = {i["command"].rsplit(" ", 1)[-1].strip("'"): i for i in items if i["type"] == "command_execution"}
    assert commands["README.md"]["aggregated_output"] == README
    assert commands["hello.txt"]["aggregated_output"] in (f"{len(EXPECTED.encode())} hello.txt\n", EXPECTED)
    assert commands["ls"]["aggregated_output"] == "README.md\nhello.txt\n"
    assert [i["changes"][0]["kind"] for i in items if i["type"] == "file_change"] == ["add"]
    messages = [i["text"] for i in items if i["type"] == "agent_message"]
    assert messages == ["Reading the README first.", "Checking the size.", "Done: hello.txt written."]
    assert events[-1]["type"] == "turn.completed"


def test_codex_reads_writes_runs_and_finishes(tmp_path: Path, roogab_demo: tuple[str, str]) -> None:
    binary = codex_binary()
    api, demo = roogab_demo
    workspace = tmp_path / "run" / "ws"
    workspace.mkdir(parents=True)
    (workspace / "README.md").write_text(README, "utf-8")
    check_the_task(workspace, *run_codex(binary, tmp_path / "run", api, "Read README.md, then write hello.txt."))

    # The path this test promises: every turn reached the demo chat service through /v1/responses,
    # the tool results came back to it, and one provider conversation carried the whole task.
    received = [r for r in get_json(demo + "/demo/received") if r.get("prompt")]
    assert len(received) == len(SCRIPT)
    assert "Read me first." in received[1]["prompt"]
    assert "Success. Updated the following files" in received[2]["prompt"]
    assert f"{len(EXPECTED.encode())} hello.txt" in received[3]["prompt"]
    turns = get_json(api + "/inspect/turns.json?limit=50")["data"]
    assert [t["protocol"] for t in turns] == ["responses"] * len(SCRIPT)
    assert {t["verdict"] for t in turns} == {"ok"} and not any(t["replayed"] for t in turns)
    assert len({t["conversation_id"] for t in turns}) == 1


DROPPED = [{"reply": envelope("Reading the README first.", "cat README.md"), "chunk": 8, "drop_after": 12},
           {"reply": envelope("Reading the README first.", "cat README.md"), "chunk": 8},
           {"reply": envelope("Done: read it.")}]


@pytest.mark.parametrize("script", [DROPPED], ids=["dropped-inside-the-call"])
def test_codex_retries_a_turn_the_chat_service_dropped(tmp_path: Path, roogab_demo: tuple[str, str]) -> None:
    """The service drops the reply inside the tool call: Codex gets ``response.failed`` (or a 5xx),
    retries the same request, and the command runs once, from the whole second reply."""
    binary = codex_binary()
    api, demo = roogab_demo
    workspace = tmp_path / "run" / "ws"
    workspace.mkdir(parents=True)
    (workspace / "README.md").write_text(README, "utf-8")
    code, events, stderr = run_codex(binary, tmp_path / "run", api, "Read README.md.")
    assert code == 0, stderr[-2000:]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    runs = [i for i in items if i["type"] == "command_execution"]
    assert [(r["command"], r["aggregated_output"]) for r in runs] == [("/bin/bash -lc 'cat README.md'", README)]
    # The dropped attempt's text was never finished, so Codex shows the text once, from the retry.
    assert [i["text"] for i in items if i["type"] == "agent_message"] == ["Reading the README first.",
                                                                          "Done: read it."]
    assert (workspace / "README.md").read_bytes() == README.encode("utf-8")
    received = [r for r in get_json(demo + "/demo/received") if r.get("prompt")]
    assert len(received) == 3  # the dropped reply, the retry, the finish
    turns = get_json(api + "/inspect/turns.json?limit=50")["data"][::-1]
    assert [t["verdict"] for t in turns] == ["failed", "ok", "ok"]
    assert "dropped" in turns[0]["error"]


def test_codex_over_a_real_chainlit_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same task with a real Chainlit app as the chat service (its assistant scripted)."""
    binary = codex_binary()
    if importlib.util.find_spec("chainlit") is None:
        pytest.skip("chainlit is not installed")
    from chainlit_server import PASSWORD, new_server

    from roogab.config import ProviderProfile, load_config
    from roogab.runtime import start

    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps({"reply": r}) + "\n" for r in SCRIPT), "utf-8")
    monkeypatch.setenv("ROOGAB_TEST_SCRIPT", str(replies))  # the app answers from it (tests/fixtures/chainlit_app)
    (tmp_path / "chainlit").mkdir()
    server = new_server(tmp_path / "chainlit")
    server.start()
    try:
        config = load_config(env={"TEAM_PASSWORD": PASSWORD}, overrides={"port": 0, "store": "memory"})
        profile = ProviderProfile(name="team", kind="chainlit", url=server.url, models=(), username="alice",
                                  password=PASSWORD)
        running = start(dataclasses.replace(config, providers=(profile,)))
        try:
            workspace = tmp_path / "run" / "ws"
            workspace.mkdir(parents=True)
            (workspace / "README.md").write_text(README, "utf-8")
            check_the_task(workspace, *run_codex(binary, tmp_path / "run", running.url,
                                                 "Read README.md, then write hello.txt.", model="team/Fast Lane"))
            turns = running.app.extensions["roogab"].service.registry.turns(limit=50)
            assert [t.provider for t in turns] == ["team"] * len(SCRIPT)  # every turn went to Chainlit
            assert {t.verdict for t in turns} == {"ok"} and len({t.conversation_id for t in turns}) == 1
            assert "Read me first." in turns[-2].provider_prompt  # the tool result reached the chat page
        finally:
            running.close()
    finally:
        server.stop()

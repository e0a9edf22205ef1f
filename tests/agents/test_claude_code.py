"""The real Claude Code CLI end to end: ``claude -p`` drives ``roogab demo --script`` over Anthropic
Messages through a read, a write of a tricky file, a shell command, two tool calls in one reply
and a finish; the workspace is checked byte for byte. A second run cuts the chat service's reply
mid tool call: Claude Code must retry and finish, and no partial call may run.

The CLI is found in ``$ROOGAB_AGENT_BIN`` (CI: the npm cache of .ci/run). Without it these tests
skip, unless ``ROOGAB_REQUIRE_AGENTS=1`` (CI), where they fail. Nothing leaves the machine: the CLI's
HTTP(S) proxy is a closed loopback port, and its HOME and TMPDIR are temporary directories.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lua_envelope import envelope

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "demo/gab-1"
TRICKY = ("line 1: `backticks` and ```fences```\nline 2: \"double\" 'single' \\backslash\\ $HOME ${x} %s\n"
          "line 3: ]] and ]==] and ]===] </content> <tool_use> ]]>\n"
          "line 4: unicode héllo — 世界 🚀 \u00a0nbsp\n\tline 5 starts with a tab\n```\nfenced\n```\n")
TASK = "Read README.md, then write hello.txt and count its bytes."


def _claude() -> Path:
    folder = os.environ.get("ROOGAB_AGENT_BIN", "")
    binary = Path(folder) / "claude" if folder else None
    if binary is None or not binary.exists():
        reason = f"Claude Code CLI not found (ROOGAB_AGENT_BIN={folder or 'unset'})"
        if os.environ.get("ROOGAB_REQUIRE_AGENTS") == "1":
            pytest.fail(reason + " but ROOGAB_REQUIRE_AGENTS=1")
        pytest.skip(reason)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Demo:
    """A ``roogab demo --script`` process and its two URLs."""

    process: subprocess.Popen[str]
    url: str
    demo_url: str

    def turns(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/inspect/turns.json", timeout=10) as response:
            got: list[dict[str, Any]] = json.load(response)["data"]
        return got

    def received(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.demo_url + "/demo/received", timeout=10) as response:
            got: list[dict[str, Any]] = json.load(response)
        return [r for r in got if r.get("prompt")]


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Any]:
    started: list[Demo] = []

    def start(script: list[dict[str, Any]]) -> Demo:
        path = tmp_path / "script.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in script), "utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "ROOGAB_STORE": "memory",
               "XDG_DATA_HOME": str(tmp_path / "data")}
        process = subprocess.Popen([sys.executable, "-m", "roogab", "demo", "--script", str(path), "--port", "0",
                                    "--log-level", "warning"], stdout=subprocess.PIPE, text=True, env=env)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        banner = "".join(lines)
        url = re.search(r"is running at (\S+)", banner)
        demo_url = re.search(r"Demo chat service at (\S+)", banner)
        assert url and demo_url, banner
        assert "ANTHROPIC_BASE_URL=" in banner and "claude --model" in banner
        demo = Demo(process, url.group(1), demo_url.group(1))
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.process.terminate()
        demo.process.wait(timeout=20)
        if demo.process.stdout is not None:
            demo.process.stdout.close()


def run_claude(demo: Any, workspace: Path, home: Path, model: str = MODEL) -> subprocess.CompletedProcess[str]:
    closed = _free_port()  # nothing listens there: any attempt to leave the machine fails at once
    tmp = home.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp),
           "HTTPS_PROXY": f"http://127.0.0.1:{closed}", "HTTP_PROXY": f"http://127.0.0.1:{closed}",
           "https_proxy": f"http://127.0.0.1:{closed}", "http_proxy": f"http://127.0.0.1:{closed}",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           "ANTHROPIC_BASE_URL": demo.url, "ANTHROPIC_API_KEY": "roogab-test",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1", "IS_SANDBOX": "1",
           "CLAUDE_CODE_MAX_RETRIES": "3"}
    return subprocess.run([str(_claude()), "-p", TASK, "--model", model, "--dangerously-skip-permissions",
                           "--output-format", "json"], check=False, cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)  # a hang guard only


def _script(ws: Path) -> list[dict[str, Any]]:
    return [
        {"reply": envelope("I'll read the README first.", calls=[("Read", {"file_path": str(ws / "README.md")})])},
        {"reply": envelope(calls=[("Write", {"file_path": str(ws / "hello.txt"), "content": TRICKY})]),
         "chunk": 5},
        {"reply": envelope(reasoning="Count the bytes and read the file back.", calls=[
            ("Bash", {"command": "wc -c < hello.txt > count.txt", "description": "Count bytes"}),
            ("Read", {"file_path": str(ws / "hello.txt")})]), "stream": "cumulative"},
        {"reply": envelope("Done: hello.txt written.")},
    ]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    _claude()  # skip (or fail in CI) before anything starts
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "README.md").write_text("# Claude Code workspace\n\nThis README is read in turn 1.\n", "utf-8")
    (tmp_path / "home").mkdir()
    return ws


def _check_workspace(ws: Path) -> None:
    assert (ws / "hello.txt").read_bytes() == TRICKY.encode("utf-8")
    assert (ws / "count.txt").read_text().strip() == str(len(TRICKY.encode("utf-8")))
    assert sorted(p.name for p in ws.iterdir()) == ["README.md", "count.txt", "hello.txt"]


def test_claude_code_finishes_a_task_through_roogab(start_demo: Any, workspace: Path) -> None:
    demo = start_demo(_script(workspace))
    done = run_claude(demo, workspace, workspace.parent / "home")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["result"] == "Done: hello.txt written."
    _check_workspace(workspace)
    prompts = [r["prompt"] for r in demo.received()]
    assert len(prompts) == 4, prompts
    assert TASK in prompts[0] and "This README is read in turn 1." in prompts[1]  # the Read result came back
    # Every later turn continued the conversation (thinking, two calls, results in completion order):
    # only the new tool results went to the chat service, never a replay of the 45 KB opening.
    assert all(len(p) < 3000 and "# Environment" not in p for p in prompts[1:]), [len(p) for p in prompts]
    assert "File created successfully" in prompts[2] and "line 5 starts with a tab" in prompts[3]


def test_claude_code_retries_a_reply_cut_mid_tool_call(start_demo: Any, workspace: Path) -> None:
    script = _script(workspace)
    cut = {**script[1], "drop_after": 12}  # the Write envelope stops inside its content
    demo = start_demo([script[0], cut, *script[1:]])
    done = run_claude(demo, workspace, workspace.parent / "home")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    _check_workspace(workspace)  # the cut call never ran; the retried one wrote the whole file
    prompts = [r["prompt"] for r in demo.received()]
    assert len(prompts) == 5 and "## New messages" in prompts[2] and "This README is read" in prompts[2]
    turns = [(t["verdict"], t["protocol"]) for t in reversed(demo.turns())]
    # The cut turn failed (an error event, no block of the Write); Claude Code asked again;
    # RooGab replayed the task onto a fresh conversation (prompts[2]); the rest continued it.
    assert turns == [("ok", "messages"), ("failed", "messages"), *[("ok", "messages")] * 3], turns


def test_claude_code_finishes_a_task_over_a_real_chainlit_server(workspace: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _claude()
    if importlib.util.find_spec("chainlit") is None:
        pytest.skip("chainlit is not installed")
    from chainlit_server import PASSWORD, new_server

    from roogab.config import ProviderProfile, load_config
    from roogab.runtime import start

    script = tmp_path / "chainlit-script.jsonl"
    script.write_text("".join(json.dumps(line) + "\n" for line in _script(workspace)), "utf-8")
    monkeypatch.setenv("ROOGAB_TEST_SCRIPT", str(script))
    server = new_server(tmp_path)
    server.start()
    try:
        config = load_config(env={"TEAM_PASSWORD": PASSWORD}, overrides={"port": 0, "store": "memory"})
        profile = ProviderProfile(name="team", kind="chainlit", url=server.url, models=(), username="alice",
                                  password=PASSWORD)
        running = start(dataclasses.replace(config, providers=(profile,)))
        try:
            done = run_claude(running, workspace, workspace.parent / "home", model="team/Fast Lane")
            turns = running.registry.turns(limit=10)
        finally:
            running.close()
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["result"] == "Done: hello.txt written."
    _check_workspace(workspace)
    assert [(t.provider, t.protocol, t.verdict) for t in turns] == [("team", "messages", "ok")] * 4

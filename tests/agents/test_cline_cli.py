"""The real Cline CLI (npm ``cline`` 3.0.65) end to end through RooGab's /v1/chat/completions.

``cline --json`` (provider ``openai-compatible``) drives ``roogab demo --script`` (both real
processes on loopback) through six turns: a read, a write of a tricky file, a command, an edit,
two tool calls in one reply and a text-only finish. Every reply reaches RooGab as the demo page's
rendered HTML, re-sent whole as it grows (``"format": "html", "stream": "cumulative"``), so the
snapshot decoding is on the path. The workspace is then checked byte for byte, and the demo chat
service's ``/demo/received`` log shows each turn (with the tool results) reached it.

The CLI is found in ``$ROOGAB_AGENT_BIN`` (CI: the npm cache of .ci/run). Without it the test
skips, unless ``ROOGAB_REQUIRE_AGENTS=1`` (CI), where it fails. Nothing leaves the machine: the
CLI's HTTP(S) proxy is a closed loopback port; its HOME, config and data dirs are temporary.
"""

from __future__ import annotations

import json
import os
import re
import signal
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
DEFAULT_BIN = Path("/root/.cache/roogab-ci/npm/node_modules/.bin")
MODEL = "demo/gab-1"
README = "# Cline workspace\n\nThis README is read in turn 1.\n"
TRICKY = ("line 1: `backticks` and ```fences``` \"double\" 'single' \\backslash\\ $HOME ${x} %s\n"
          "line 2: ]] and ]==] and ]===] </content> <tool_use> ]]> &amp; <b>bold</b> *em* _u_\n"
          "line 3: unicode héllo — 世界 🚀 \u00a0nbsp\n\tline 4 starts with a tab, ends with spaces  \n"
          "```python\nprint('a fence inside the file')\n```\n- a list item\n1. a numbered one\n")
OLD, NEW = "print('a fence inside the file')", "print('edited by Cline')  # `still` ]] exact"
EDITED = TRICKY.replace(OLD, NEW)
TASK = "Read README.md, write hello.txt, count its bytes, edit it, then read it back and list the files."


def cline_binary() -> Path:
    where = Path(os.environ.get("ROOGAB_AGENT_BIN") or DEFAULT_BIN) / "cline"
    if where.is_file():
        return where
    if os.environ.get("ROOGAB_REQUIRE_AGENTS") == "1":
        pytest.fail(f"ROOGAB_REQUIRE_AGENTS=1 but the Cline CLI is not at {where}")
    pytest.skip(f"the Cline CLI is not installed at {where} (npm install cline@3.0.65)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def html(reply: str, chunk: int = 9) -> dict[str, Any]:
    """A script line: the reply as the demo page renders it, re-sent whole as it grows."""
    return {"reply": reply, "format": "html", "stream": "cumulative", "chunk": chunk}


def longer_fence(reply: str) -> str:
    """*reply* fenced with ```` so the ``` lines inside a value cannot close it on the page."""
    assert reply.startswith("```lua\n") and reply.endswith("\n```")
    return "`" + reply + "`"


def script(ws: Path) -> list[dict[str, Any]]:
    hello = str(ws / "hello.txt")
    return [
        html(envelope("I'll read the README first.", calls=[("read_files", {"files": [{"path": str(ws / "README.md")}]})])),
        # The content holds a fence line, so the reply is fenced with more backticks, as the prompt asks.
        html(longer_fence(envelope(calls=[("editor", {"path": hello, "new_text": TRICKY})])), chunk=5),
        html(envelope("Counting the bytes.", calls=[("run_commands", {"commands": ["wc -c < hello.txt > count.txt"]})])),
        html(envelope(calls=[("editor", {"path": hello, "old_text": OLD, "new_text": NEW})])),
        html(envelope("Reading it back and listing the files.", calls=[
            ("read_files", {"files": [{"path": hello}]}), ("run_commands", {"commands": ["ls"]})])),
        html(envelope("Done: hello.txt written, counted and edited.")),
    ]


@dataclass
class Demo:
    """A ``roogab demo --script`` process and its two URLs."""

    process: subprocess.Popen[str]
    url: str
    demo_url: str

    def get(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def turns(self) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = self.get(self.url + "/inspect/turns.json?limit=50")["data"]
        return got[::-1]

    def received(self) -> list[dict[str, Any]]:
        return [r for r in self.get(self.demo_url + "/demo/received") if r.get("prompt")]


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    cline_binary()  # skip (or fail in CI) before anything starts
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "README.md").write_text(README, "utf-8")
    yield ws
    for pid in _hub_daemons(ws):  # the CLI leaves its hub daemon running, detached, after it exits
        os.kill(pid, signal.SIGTERM)


def _hub_daemons(workspace: Path) -> list[int]:
    """The PIDs of the Cline hub daemons started for *workspace* (by this test's CLI run only:
    their command line names this test's own temporary workspace)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it ended meanwhile
            continue
        if b"--cline-hub-daemon" in argv and str(workspace).encode() in argv:
            found.append(int(proc.name))
    return found


@pytest.fixture
def demo(tmp_path: Path, workspace: Path) -> Iterator[Demo]:
    path = tmp_path / "script.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in script(workspace)), "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "ROOGAB_STORE": "memory",
           "XDG_DATA_HOME": str(tmp_path / "data"), "ROOGAB_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen([sys.executable, "-m", "roogab", "demo", "--script", str(path), "--port", "0",
                                "--log-level", "warning"], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:  # the banner names both addresses once both serve
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        banner = "".join(lines)
        url = re.search(r"is running at (\S+)", banner)
        demo_url = re.search(r"Demo chat service at (\S+)", banner)
        assert url and demo_url, banner
        yield Demo(process, url.group(1), demo_url.group(1))
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()


def run_cline(demo: Demo, workspace: Path) -> subprocess.CompletedProcess[str]:
    base = workspace.parent
    home, config, tmp = base / "home", base / "cline-config", base / "tmp"
    for d in (home, config, tmp):
        d.mkdir(exist_ok=True)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there: leaving the machine fails at once
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(tmp),
           "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "https_proxy": closed, "http_proxy": closed,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    binary = str(cline_binary())

    def run(args: list[str], timeout: int) -> subprocess.CompletedProcess[str]:  # the timeout: a hang guard only
        return subprocess.run([binary, *args], env=env, cwd=workspace, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False, timeout=timeout)

    # The provider as `cline auth` saves it (an OpenAI-compatible endpoint), in the test's config dir.
    auth = run(["auth", "-p", "openai-compatible", "-k", "roogab-test", "-m", MODEL, "-b", demo.url + "/v1",
                "--config", str(config)], 120)
    assert auth.returncode == 0, auth.stdout[-2000:] + auth.stderr[-2000:]
    return run(["--json", "--config", str(config), "-c", str(workspace), TASK], 600)


def test_cline_cli_six_turns_over_html_snapshots(demo: Demo, workspace: Path) -> None:
    done = run_cline(demo, workspace)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

    # The workspace, byte for byte: the tricky write survived the HTML page exactly, then the edit.
    assert (workspace / "hello.txt").read_bytes() == EDITED.encode("utf-8")
    assert (workspace / "count.txt").read_text().strip() == str(len(TRICKY.encode("utf-8")))
    assert (workspace / "README.md").read_bytes() == README.encode("utf-8")
    assert sorted(p.name for p in workspace.iterdir()) == ["README.md", "count.txt", "hello.txt"]

    # The path this test promises: all six turns reached the demo chat service, each carrying the
    # previous turn's tool results, and RooGab read every HTML reply as meant (verdict ok, no repair).
    prompts = [r["prompt"] for r in demo.received()]
    assert len(prompts) == 6, prompts
    assert TASK in prompts[0] and all(t in prompts[0] for t in ("read_files", "editor", "run_commands"))
    assert "This README is read in turn 1." in prompts[1]
    assert "line 4 starts with a tab" in prompts[5] and "edited by Cline" in prompts[5]
    assert "count.txt" in prompts[5] and "hello.txt" in prompts[5]  # the ls result of the two-call turn
    turns = demo.turns()
    assert [(t["protocol"], t["verdict"]) for t in turns] == [("chat", "ok")] * 6, turns
    assert "Done: hello.txt written, counted and edited." in done.stdout

"""`roogab --help` loads no web, socket or tokenizer library: the commands import what they run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import contextlib, io, json, sys
sys.argv = ["roogab", "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        from roogab.cli import main
        main()
    except SystemExit:
        pass
heavy = ["flask", "socketio", "engineio", "aiohttp", "waitress", "tiktoken", "bs4", "roogab.runtime"]
print(json.dumps({"help": out.getvalue(), "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_help_in_a_fresh_interpreter_imports_no_server_stack(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=True)
    result = json.loads(done.stdout)
    assert "serve" in result["help"] and "demo" in result["help"]
    assert result["loaded"] == []

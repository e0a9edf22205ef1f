"""Test helpers shared by several test modules: the captured client requests."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

LAZY = {"roogab-turnlog", "roogab-housekeeper"}
"""Threads a session-scoped stack starts inside whichever test first uses it (the housekeeper
starts with the stack, the turn-log writer with the first turn logged)."""

FIXTURES = Path(__file__).parent / "fixtures"

ROO = "roo_request_roo_v3.52.1.json"
ROO_NONSTREAM = "roo_request_nonstream_roo_v3.52.1.json"
ROO_HISTORY = "roo_request_history_roo_v3.52.1.json"
CLINE = "cline_cli_3.0.57_openai_compatible_two_turns.json"
KILO = "kilo_cli_7.7.9_openai_compatible_two_turns_plus_title.json"


def captured_bodies(name: str) -> list[dict[str, Any]]:
    """The POST bodies of a captured client session, in order."""
    data = json.loads((FIXTURES / "captured" / name).read_text("utf-8"))
    return [r["body"] for r in data["requests"] if isinstance(r.get("body"), dict)]


def as_demo_model(body: dict[str, Any], model: str = "demo/gab-1") -> dict[str, Any]:
    """A copy of a captured body addressed to a demo model."""
    body = copy.deepcopy(body)
    body["model"] = model
    return body


def tagged(body: dict[str, Any], tag: str) -> dict[str, Any]:
    """A copy of *body* whose first user message carries *tag*: a task of its own, so no earlier
    test's identical request can answer it from the retry record."""
    body = copy.deepcopy(body)
    first = next(m for m in body["messages"] if m["role"] == "user")
    if isinstance(first["content"], str):
        first["content"] += f"\n[{tag}]"
    else:
        first["content"] = [*first["content"], {"type": "text", "text": f"[{tag}]"}]
    return body


def prompts_with(demo: Any, tag: str) -> list[str]:
    """The prompts the demo chat service received that carry *tag*: proof a turn reached it."""
    return [r.prompt for r in demo.received if r.prompt and f"[{tag}]" in r.prompt]


def no_keepalive() -> Any:
    """An httpx client for the openai SDK that keeps no idle connection open, so an SDK client a
    test never closes leaves no socket for the leak check (or a later test) to find."""
    import httpx

    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=600)


def need_chromium() -> None:
    """Skip the calling test module (call it at import) when chromium and chromedriver are not
    installed; with ``ROOGAB_REQUIRE_BROWSER`` set (CI) that is an error instead."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if os.environ.get("ROOGAB_REQUIRE_BROWSER"):
        raise RuntimeError("chromium and chromedriver are required (apt-get install chromium chromium-driver)")
    pytest.skip("no chromium/chromedriver on this machine", allow_module_level=True)


@contextmanager
def headless_chromium(*flags: str, prefs: dict[str, Any] | None = None) -> Iterator[Any]:
    """A selenium driver of a headless Chromium with a throwaway profile (quit and removed after);
    *flags* are more command-line switches."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    profile = tempfile.mkdtemp(prefix="roogab-chromium-")
    if prefs:
        options.add_experimental_option("prefs", prefs)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", *flags):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(20)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_url(proc: subprocess.Popen[str], deadline_s: float = 90.0) -> tuple[str, str]:
    """The URL a ``roogab demo``/``serve`` subprocess prints, and its banner up to "Press Ctrl-C".
    The deadline only stops a hung process: a cold start on a loaded machine took 24 s."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and "Press Ctrl-C" not in seen:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    match = re.search(r"running at (http://127\.0\.0\.1:\d+)", seen)
    if match is None:
        raise AssertionError(f"roogab did not print its URL: {seen}")
    return match.group(1), seen


def as_halves(text: str) -> str:
    """*text* with each astral character as its two UTF-16 halves (lone surrogates), as ``json``
    decodes a service that escaped each unit (``"\\ud83d\\ude00"``); sent so by the demo
    service at ``chunk=1``, its JSON spells one half per frame."""
    data = text.encode("utf-16-le")
    return "".join(chr(int.from_bytes(data[i:i + 2], "little")) for i in range(0, len(data), 2))

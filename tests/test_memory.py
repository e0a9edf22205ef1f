"""What keeps ``roogab serve`` small: the allocator cap and what a serve process never imports.

(RSS itself is measured in bench/bench_startup.py; here only what letting the tokenizer go frees.)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from roogab import memory

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the arena cap is glibc's")
def test_arenas_are_capped_and_free_pages_given_back_on_glibc() -> None:
    assert memory.limit_arenas(memory.ARENAS) is True
    memory.give_back()  # may or may not find free pages; must not fail


_BIG_BLOCKS = """
    import sys
    from roogab import memory
    if sys.argv[1] == "fixed":
        assert memory.map_big_blocks() is True
    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    before = rss_mib()
    for mib in (32, 16, 16, 8):  # glibc's own threshold rises to 32 MiB when the first block is freed
        block = b"x" * (mib << 20)  # every page written
        del block
    print(round(rss_mib() - before))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the mmap threshold is glibc's")
def test_big_blocks_go_back_to_the_system_when_freed() -> None:
    def kept(mode: str) -> int:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(_BIG_BLOCKS), mode], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        return int(done.stdout)
    assert kept("default") >= 12  # glibc alone keeps the second block's pages
    assert kept("fixed") <= 2


def test_the_serve_stack_imports_no_renderer_or_tokenizer_up_front() -> None:
    out = _fresh("""
        import sys
        import roogab.runtime
        print(sorted(m for m in ("markdown_it", "pygments", "regex", "tiktoken") if m in sys.modules))
    """)
    assert out.split() == ["[]"]


#: Libraries a serve process loads only for what its configuration asks: a provider kind's own
#: client library, the demo service (python-socketio's server, aiohttp's web server), the HTML
#: reply decoder, the PostgreSQL store, the demo's renderers and the tokenizer (first counted turn).
ON_DEMAND = ("roogab.demo", "socketio", "engineio", "aiohttp", "gradio_client", "httpx", "psycopg",
             "bs4", "markdown_it", "pygments", "jsonschema", "tiktoken")


def _serve_loads(tmp_path: Path, kind: str, url: str) -> list[str]:
    out = _fresh(f"""
        import json, sys
        from pathlib import Path
        from roogab import runtime
        from roogab.config import Config, ProviderProfile
        profile = ProviderProfile(name="p", kind={kind!r}, url={url!r}, models=("m",))
        running = runtime.start(Config(port=0, store="memory", data_dir=Path({str(tmp_path)!r}),
                                       providers=(profile,)))
        try:
            print(json.dumps([m for m in {ON_DEMAND!r} if m in sys.modules]))
        finally:
            running.close()
    """)
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_a_serve_process_imports_only_what_its_provider_kind_needs(tmp_path: Path) -> None:
    # Nothing listens on port 9 (discard): the providers start unavailable and retry in the
    # background, which is enough to see what building and starting the stack imported.
    assert _serve_loads(tmp_path, "websocket", "ws://127.0.0.1:9/") == []
    assert _serve_loads(tmp_path, "socketio", "http://127.0.0.1:9") == ["socketio", "engineio", "aiohttp"]


def test_an_idle_serve_lets_the_tokenizer_go_and_loads_it_again(tmp_path: Path) -> None:
    """The whole stack (the demo service, `tokenizer_idle` 0.2 s): a turn loads the tokenizer;
    unused, the housekeeper lets it go; the next turn loads it again to count. (The compact
    tables are ~2.3 MiB in blocks under ``memory.BIG_BLOCK``: whether RSS falls when they go
    depends on the heap's top, so RSS is bench/bench_startup.py's to report, not asserted.)"""
    out = _fresh(f"""
        import json, time, urllib.request
        from pathlib import Path
        from roogab.config import load_config
        from roogab.runtime import start_demo

        def turn(url, text):
            body = json.dumps({{"model": "demo/gab-1", "messages": [{{"role": "user", "content": text}}]}})
            req = urllib.request.Request(url + "/v1/chat/completions", body.encode(),
                                         {{"Content-Type": "application/json"}})
            with urllib.request.urlopen(req, timeout=60) as response:
                return json.loads(response.read())["usage"]

        config = load_config(env={{}}, overrides={{"port": 0, "store": "memory", "tokenizer_idle": 0.2,
                                                 "data_dir": {str(tmp_path)!r}}})
        running = start_demo(config)
        tokens = running.app.extensions["roogab"].service.tokens
        try:
            first = turn(running.server.url, "hello there")
            held = tokens.loaded
            deadline = time.monotonic() + 30  # a bound on a hang, not a timing claim
            while tokens.loaded and time.monotonic() < deadline:
                time.sleep(0.05)
            released = not tokens.loaded
            again = turn(running.server.url, "hello again")  # a new request: not answered from the record
            print(json.dumps([held, released, tokens.loaded, first, again]))
        finally:
            running.close()
    """)
    held, released, loaded_again, first, again = json.loads(out.splitlines()[-1])
    assert held and released and loaded_again
    assert again["prompt_tokens"] == first["prompt_tokens"] > 0  # "hello again": as many tokens
    assert again["completion_tokens"] > 0

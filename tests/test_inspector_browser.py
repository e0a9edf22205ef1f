"""The inspector page in a real headless Chromium (Debian's chromium + chromium-driver).

Skipped only where no browser is installed; `.ci/run` installs one and sets
ROOGAB_REQUIRE_BROWSER=1, which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from support import headless_chromium, need_chromium

from roogab.config import load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running, start_demo

pytestmark = pytest.mark.loopback

need_chromium()

pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DOWNLOADS = Path(tempfile.mkdtemp(prefix="roogab-downloads-"))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where screenshots go: $ROOGAB_ARTIFACTS, else a temporary directory (printed)."""
    where = Path(os.environ.get("ROOGAB_ARTIFACTS") or tempfile.mkdtemp(prefix="roogab-artifacts-"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {where}")
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    prefs = {"download.default_directory": str(DOWNLOADS), "download.prompt_for_download": False}
    with headless_chromium(prefs=prefs) as driver:
        driver.set_window_size(1280, 1100)
        yield driver


def _wait(driver: object) -> WebDriverWait:  # type: ignore[type-arg]
    """Waits that outlive a card being re-rendered under them (the live poll replaces cards)."""
    return WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))  # type: ignore[arg-type]


def _ask(client: openai.OpenAI, text: str) -> None:
    client.chat.completions.create(model="demo/gab-1", messages=[{"role": "user", "content": text}])


def test_page_loads_and_a_new_turn_appears_live(browser: object, stack: Running, demo: DemoChatService,
                                                client: openai.OpenAI) -> None:
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    assert "RooGab inspector" in browser.title  # type: ignore[attr-defined]
    before = len(browser.find_elements(By.CSS_SELECTOR, ".turn:not(.running)"))  # type: ignore[attr-defined]
    demo.push(ScriptedReply('```lua\nreturn { text = [==[live turn answer]==] }\n```'))
    _ask(client, "a question asked while the page is open")
    _wait(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn:not(.running)")) > before)
    newest = browser.find_elements(By.CSS_SELECTOR, ".turn")[0]  # type: ignore[attr-defined]
    assert "live turn answer" in newest.get_attribute("textContent")
    assert "a question asked while the page is open" in newest.get_attribute("textContent")


def test_non_compliant_turn_shows_verdict_and_raw_reply(browser: object, stack: Running,
                                                        demo: DemoChatService, client: openai.OpenAI) -> None:
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    bad = '```lua\nreturn { tool_calls = { { name = "no_such_tool" } } }\n```'
    demo.push(ScriptedReply(bad), ScriptedReply(bad))
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model="demo/gab-1", messages=[{"role": "user", "content": "please fail twice"}],
            tools=[{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}])
    def ours(d: object) -> object:
        cards = d.find_elements(By.CSS_SELECTOR, ".turn[data-verdict='non_compliant']")  # type: ignore[attr-defined]
        return next((c for c in cards if "please fail twice" in c.get_attribute("textContent")), None)

    card = _wait(browser).until(ours)
    assert card.find_element(By.CSS_SELECTOR, ".verdict").text == "non_compliant"
    raw = card.find_element(By.CSS_SELECTOR, ".raw pre")
    assert raw.is_displayed() and "no_such_tool" in raw.text
    assert "no_such_tool" in card.find_element(By.CSS_SELECTOR, ".raw mark").get_attribute("textContent")
    assert "non_compliant_response" in card.find_element(By.CSS_SELECTOR, ".error").text \
        or "did not follow the reply format" in card.find_element(By.CSS_SELECTOR, ".error").text
    select = browser.find_element(By.CSS_SELECTOR, "[data-filter='verdict']")  # type: ignore[attr-defined]
    select.send_keys("ok")
    assert not card.is_displayed()


def _card(driver: object, turn_id: str) -> object:
    return driver.find_element(By.ID, "turn-" + turn_id)  # type: ignore[attr-defined]


def _running_card(driver: object, word: str) -> object:
    cards = driver.find_elements(By.CSS_SELECTOR, ".turn.running")  # type: ignore[attr-defined]
    return next((c for c in cards if word in c.get_attribute("textContent")), None)


def test_a_running_turn_appears_and_its_raw_reply_grows(browser: object, stack: Running, demo: DemoChatService,
                                                       client: openai.OpenAI, artifacts: Path) -> None:
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    reply = '```lua\nreturn { text = [==[' + "a slowly streamed answer " * 8 + ']==] }\n```'
    demo.push(ScriptedReply(reply, chunk=5, delay_ms=150, hold_after=3))  # held until seen running
    worker = threading.Thread(target=_ask, args=(client, "watch me stream, please 4711"))
    worker.start()
    held = True
    try:
        with _evidence(browser, artifacts, "inspect-running"):
            turn_id = _running_id(browser, "watch me stream, please 4711")
            raw = lambda d: _card(d, turn_id).find_element(By.CSS_SELECTOR, ".raw pre").get_attribute("textContent")
            first = _wait(browser).until(lambda d: r if len(r := raw(d)) >= 15 else None)
        assert reply.startswith(first) and len(first) == 15
        demo.release()
        held = False
        grown = _wait(browser).until(lambda d: r if len(r := raw(d)) > len(first) else None)
        assert len(grown) > len(first) and reply.startswith(grown.split("\n\n=====")[0][:len(grown)])
        browser.save_screenshot(str(artifacts / "inspect-running.png"))  # type: ignore[attr-defined]
    finally:
        if held:
            demo.release()
        worker.join()
    _wait(browser).until(lambda d: _card(d, turn_id).get_attribute("data-verdict") == "ok")
    assert _wait(browser).until(raw) == reply  # a finished card is never re-rendered
    assert "demo/gab-1" in _card(browser, turn_id).find_element(By.CSS_SELECTOR, ".model").text  # type: ignore[attr-defined]
    browser.save_screenshot(str(artifacts / "inspect.png"))  # type: ignore[attr-defined]
    browser.get(stack.url + "/")  # type: ignore[attr-defined]
    assert browser.find_element(By.CSS_SELECTOR, "#services .state-ok").text == "ready"  # type: ignore[attr-defined]
    browser.save_screenshot(str(artifacts / "status.png"))  # type: ignore[attr-defined]
    assert (artifacts / "inspect.png").stat().st_size > 0 and (artifacts / "status.png").stat().st_size > 0


def test_search_and_the_conversation_page_find_a_turn(browser: object, stack: Running, demo: DemoChatService,
                                                     client: openai.OpenAI) -> None:
    demo.push(ScriptedReply('```lua\nreturn { text = [==[found again]==] }\n```'))
    _ask(client, "where is the aardvark")
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=q]")  # type: ignore[attr-defined]
    box.send_keys("aardvark")
    box.submit()
    _wait(browser).until(lambda d: "q=aardvark" in d.current_url)
    cards = browser.find_elements(By.CSS_SELECTOR, ".turn")  # type: ignore[attr-defined]
    assert len(cards) == 1 and "where is the aardvark" in cards[0].get_attribute("textContent")
    cards[0].find_element(By.CSS_SELECTOR, "a.conversation-link").click()
    _wait(browser).until(lambda d: "/inspect/conversations/" in d.current_url)
    assert "Conversation" in browser.find_element(By.TAG_NAME, "h2").text  # type: ignore[attr-defined]
    timeline = browser.find_elements(By.CSS_SELECTOR, ".turn")  # type: ignore[attr-defined]
    assert timeline and "found again" in timeline[-1].get_attribute("textContent")


def test_the_downloaded_turn_round_trips_through_roogab_parse(browser: object, stack: Running,
                                                              demo: DemoChatService, client: openai.OpenAI) -> None:
    demo.push(ScriptedReply('```lua\nreturn { tool_calls = { { name = "read_file", '
                            'arguments = { path = "notes.md" } } } }\n```'))
    tool = {"type": "function", "function": {"name": "read_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}
    client.chat.completions.create(model="demo/gab-1", tools=[tool],  # type: ignore[list-item]
                                   messages=[{"role": "user", "content": "download me: read notes.md"}])
    browser.get(stack.url + "/inspect?q=download+me")  # type: ignore[attr-defined]
    card = browser.find_element(By.CSS_SELECTOR, ".turn")  # type: ignore[attr-defined]
    before = set(DOWNLOADS.iterdir())
    card.find_element(By.CSS_SELECTOR, "a.download").click()
    saved = _wait(browser).until(
        lambda d: next((p for p in DOWNLOADS.glob("roogab-turn-*.json") if p not in before), None))
    body = _wait(browser).until(lambda d: _json_or_none(saved))
    assert body["verdict"] == "ok" and body["requests"][0]["body"]["tools"][0]["function"]["parameters"] == tool["function"]["parameters"]
    result = subprocess.run([sys.executable, "-m", "roogab", "parse", "--request", str(saved)], check=False,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"type": "tool_call", "name": "read_file", "arguments": {"path": "notes.md"}} in lines
    assert lines[-1]["type"] == "verdict" and lines[-1]["compliant"] is True


def _json_or_none(path: Path) -> object:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None  # still being written


@pytest.fixture(scope="module")
def keyed() -> Iterator[Running]:
    config = load_config(env={"ROOGAB_API_KEYS": "browser-k3y"}, overrides={"port": 0, "store": "memory"})
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


def test_the_sign_in_form_opens_the_inspector_behind_keys(browser: object, keyed: Running) -> None:
    browser.get(keyed.url + "/inspect")  # type: ignore[attr-defined]
    _wait(browser).until(lambda d: "/inspect/signin" in d.current_url)
    box = browser.find_element(By.CSS_SELECTOR, "#signin input[name=key]")  # type: ignore[attr-defined]
    box.send_keys("not-the-key")
    box.submit()
    _wait(browser).until(lambda d: d.find_elements(By.ID, "problem"))
    box = browser.find_element(By.CSS_SELECTOR, "#signin input[name=key]")  # type: ignore[attr-defined]
    box.send_keys("browser-k3y")
    box.submit()
    _wait(browser).until(lambda d: d.title == "RooGab inspector")
    cookie = browser.get_cookie("roogab_inspector")  # type: ignore[attr-defined]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "browser-k3y" not in cookie["value"]
    browser.get(keyed.url + "/inspect/turns.json")  # type: ignore[attr-defined]
    assert '"object"' in browser.page_source  # type: ignore[attr-defined]


def _wire_names(card: object) -> list[str]:
    return [c.get_attribute("textContent") for c in card.find_elements(By.CSS_SELECTOR, ".wire .frame-name")]  # type: ignore[attr-defined]


def test_a_running_turns_wire_view_shows_the_socketio_events_so_far(browser: object, stack: Running,
                                                                    demo: DemoChatService, client: openai.OpenAI,
                                                                    artifacts: Path) -> None:
    ev = stack.providers["demo"].profile.events  # type: ignore[attr-defined]
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    # the service holds the reply after three deltas until the test has seen them (no race with
    # the stream's end, however slow the browser is)
    reply = '```lua\nreturn { text = [==[' + "frames while it streams " * 4 + ']==] }\n```'
    demo.push(ScriptedReply(reply, chunk=5, delay_ms=20, hold_after=3))
    worker = threading.Thread(target=_ask, args=(client, "show me the wire 5183"))
    worker.start()
    try:
        with _evidence(browser, artifacts, "inspect-wire-running"):
            names = _see_the_running_wire(browser, turn_id := _running_id(browser, "show me the wire 5183"), ev)
        assert names == [ev.create, ev.created, ev.subscribe] + [ev.delta] * 3
        browser.save_screenshot(str(artifacts / "inspect-wire-running.png"))  # type: ignore[attr-defined]
    finally:
        demo.release()
        worker.join()
    _wait(browser).until(lambda d: _card(d, turn_id).get_attribute("data-verdict") == "ok")
    final = _wire_names(_card(browser, turn_id))
    assert final[-1] == ev.end and final[:len(names)] == names


def _running_id(driver: object, word: str) -> str:
    return _wait(driver).until(lambda d: (c := _running_card(d, word)) and c.get_attribute("data-id"))  # type: ignore[no-any-return]


def _see_the_running_wire(driver: object, turn_id: str, ev: object) -> list[str]:
    """Open the running card's wire view; the frame names once all three held deltas show, the
    view stays open across live re-renders and shows the prompt."""
    # the wire section shows once the first frame is recorded (the card may come before it)
    _wait(driver).until(lambda d: _card(d, turn_id).find_element(By.CSS_SELECTOR, ".wire summary").click() or True)

    def three_deltas_while_running(d: object) -> list[str] | None:
        card = _card(d, turn_id)
        names = _wire_names(card)
        running = "running" in card.get_attribute("class")  # type: ignore[attr-defined]
        return names if running and names.count(ev.delta) == 3 else None  # type: ignore[attr-defined]

    names = _wait(driver).until(three_deltas_while_running)

    def open_with_the_prompt(d: object) -> bool:  # read in one go: a live re-render makes elements stale
        card = _card(d, turn_id)
        wire = card.find_element(By.CSS_SELECTOR, "details.wire")  # type: ignore[attr-defined]
        if wire.get_attribute("open") is None:
            raise AssertionError("the wire view closed on a live re-render")
        if "show me the wire 5183" not in card.find_element(By.CSS_SELECTOR, ".wire code").text:  # type: ignore[attr-defined]
            return False
        d.execute_script("arguments[0].scrollIntoView()", wire)  # type: ignore[attr-defined]
        return True

    _wait(driver).until(open_with_the_prompt)
    return names


@contextlib.contextmanager
def _evidence(driver: object, artifacts: Path, name: str) -> Iterator[None]:
    """On a failed wait or assertion, keep the page as it was: a screenshot and its HTML."""
    try:
        yield
    except (TimeoutException, AssertionError):
        driver.save_screenshot(str(artifacts / f"{name}-failed.png"))  # type: ignore[attr-defined]
        (artifacts / f"{name}-failed.html").write_text(driver.page_source, encoding="utf-8")  # type: ignore[attr-defined]
        print(f"the page at the failure: {artifacts / name}-failed.png and .html")
        raise


def test_the_try_it_page_sends_one_turn_and_links_it(browser: object, stack: Running, demo: DemoChatService,
                                                     artifacts: Path) -> None:
    demo.push(ScriptedReply('```lua\nreturn { text = [==[Hello from the try page.]==] }\n```'))
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    browser.find_element(By.LINK_TEXT, "try it").click()  # type: ignore[attr-defined]
    _wait(browser).until(lambda d: d.find_elements(By.ID, "try"))
    box = browser.find_element(By.CSS_SELECTOR, "#try textarea[name=message]")  # type: ignore[attr-defined]
    assert "which model are you" in box.get_attribute("value")
    box.clear()
    box.send_keys("a browser probe 2718")
    assert browser.find_element(By.CSS_SELECTOR, "#try select option:checked").text == "demo/gab-1"  # type: ignore[attr-defined]
    browser.find_element(By.CSS_SELECTOR, "#try button[type=submit]").click()  # type: ignore[attr-defined]
    text = _wait(browser).until(lambda d: (e := d.find_elements(By.ID, "try-text")) and e[0].text)
    assert text == "Hello from the try page."
    assert any("a browser probe 2718" in (r.prompt or "") for r in demo.received)  # the chat service got it
    browser.save_screenshot(str(artifacts / "try.png"))  # type: ignore[attr-defined]
    browser.find_element(By.ID, "try-turn").click()  # type: ignore[attr-defined]
    card = _wait(browser).until(lambda d: (c := d.find_elements(By.CSS_SELECTOR, ".turn")) and c[0])
    assert card.get_attribute("data-verdict") == "ok" and "a browser probe 2718" in card.get_attribute("textContent")


def test_the_try_it_page_shows_a_failed_turn(browser: object, stack: Running, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(error="the assistant is on fire 1618"))
    browser.get(stack.url + "/inspect/try")  # type: ignore[attr-defined]
    box = browser.find_element(By.CSS_SELECTOR, "#try textarea[name=message]")  # type: ignore[attr-defined]
    box.clear()
    box.send_keys("a failing browser probe 3141")
    browser.find_element(By.CSS_SELECTOR, "#try button[type=submit]").click()  # type: ignore[attr-defined]
    error = _wait(browser).until(lambda d: (e := d.find_elements(By.ID, "try-error")) and e[0].text)
    assert "the assistant is on fire 1618" in error and not browser.find_elements(By.ID, "try-text")  # type: ignore[attr-defined]
    browser.find_element(By.ID, "try-turn").click()  # type: ignore[attr-defined]
    card = _wait(browser).until(lambda d: (c := d.find_elements(By.CSS_SELECTOR, ".turn")) and c[0])
    assert card.get_attribute("data-verdict") == "failed" and "on fire 1618" in card.get_attribute("textContent")


def test_the_try_it_page_is_behind_the_keys(keyed: Running) -> None:
    import urllib.error
    import urllib.request
    post = urllib.request.Request(keyed.url + "/inspect/try", data=b"model=demo%2Fgab-1&message=hi", method="POST",
                                  headers={"Content-Type": "application/x-www-form-urlencoded",
                                           "Accept": "application/json", "Origin": keyed.url})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=30)
    refused.value.close()
    assert refused.value.code == 401
    assert keyed.demo is not None and not any(r.prompt == "hi" for r in keyed.demo.received)

"""The inspector page in a real headless Chromium (Debian's chromium + chromium-driver).

Skipped only where no browser is installed; `.ci/run` installs one and sets
ROOGAB_REQUIRE_BROWSER=1, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import openai
import pytest

from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running

pytestmark = pytest.mark.loopback

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("ROOGAB_REQUIRE_BROWSER"):
        raise RuntimeError("chromium and chromedriver are required (apt-get install chromium chromium-driver)")
    pytest.skip("no chromium/chromedriver on this machine", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="roogab-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _ask(client: openai.OpenAI, text: str) -> None:
    client.chat.completions.create(model="demo/gab-1", messages=[{"role": "user", "content": text}])


def test_page_loads_and_a_new_turn_appears_live(browser: object, stack: Running, demo: DemoChatService,
                                                client: openai.OpenAI) -> None:
    browser.get(stack.url + "/inspect")  # type: ignore[attr-defined]
    assert "RooGab inspector" in browser.title  # type: ignore[attr-defined]
    before = len(browser.find_elements(By.CSS_SELECTOR, ".turn"))  # type: ignore[attr-defined]
    demo.push(ScriptedReply('```lua\nreturn { text = [==[live turn answer]==] }\n```'))
    _ask(client, "a question asked while the page is open")
    WebDriverWait(browser, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn")) > before)
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

    card = WebDriverWait(browser, 10).until(ours)
    assert card.find_element(By.CSS_SELECTOR, ".verdict").text == "non_compliant"
    raw = card.find_element(By.CSS_SELECTOR, ".raw pre")
    assert raw.is_displayed() and "no_such_tool" in raw.text
    assert "no_such_tool" in card.find_element(By.CSS_SELECTOR, ".raw mark").get_attribute("textContent")
    assert "non_compliant_response" in card.find_element(By.CSS_SELECTOR, ".error").text \
        or "did not follow the reply format" in card.find_element(By.CSS_SELECTOR, ".error").text
    select = browser.find_element(By.CSS_SELECTOR, "[data-filter='verdict']")  # type: ignore[attr-defined]
    select.send_keys("ok")
    assert not card.is_displayed()

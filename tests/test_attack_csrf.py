"""Cross-site request forgery in a real headless Chromium (issue 13, item 3; design.md §7).

A page on another site (``http://evil.example:<port>``, mapped to 127.0.0.1 inside Chromium)
fires every kind of "simple" request a browser sends without a CORS preflight at RooGab's chat
endpoint: auto-submitted forms (``text/plain``, url-encoded, multipart), ``navigator.sendBeacon``
and ``fetch`` in ``no-cors`` mode, plus a CORS fetch with JSON. Each must be refused before it
reaches the chat service: the demo service receives nothing. RooGab's own log shows that every
request did arrive (and was refused), so the test cannot pass by Chromium not sending them.

Skipped only where no browser is installed; `.ci/run` sets ROOGAB_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator

import openai
import pytest
from support import headless_chromium, need_chromium

from roogab.demo import DemoChatService
from roogab.runtime import Running

pytestmark = pytest.mark.loopback

need_chromium()

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.support.ui import WebDriverWait

BODY = '{"model": "demo/gab-1", "messages": [{"role": "user", "content": "csrf %s"}]}'

EVIL_PAGE = """<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="plain" method="post" enctype="text/plain" target="sink1" action="TARGET">
  <input name='{"model": "demo/gab-1", "messages": [{"role": "user", "content": "csrf form", "x": "' value='"}]}'>
</form>
<form id="urlenc" method="post" target="sink2" action="TARGET"><input name="q" value="csrf urlenc"></form>
<form id="multi" method="post" enctype="multipart/form-data" target="sink3" action="TARGET">
  <input name="q" value="csrf multipart"></form>
<script>
window.fired = [];
const body = (what) => BODY.replace("%s", what);
document.getElementById("plain").submit();
document.getElementById("urlenc").submit();
document.getElementById("multi").submit();
window.fired.push(navigator.sendBeacon("TARGET", new Blob([body("beacon")], {type: "text/plain"})));
fetch("TARGET", {method: "POST", mode: "no-cors", body: body("no-cors"),
                 headers: {"Content-Type": "text/plain"}}).finally(() => window.fired.push("no-cors"));
fetch("TARGET", {method: "POST", mode: "cors", body: body("cors"),
                 headers: {"Content-Type": "application/json"}}).catch(() => {}).finally(
                 () => window.fired.push("cors"));
</script></body></html>"""


class _Page(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def evil_site(stack: Running) -> Iterator[int]:
    target = stack.url + "/v1/chat/completions"
    handler = type("EvilPage", (_Page,), {"page": EVIL_PAGE.replace("TARGET", target)
                                          .replace("BODY", repr(BODY)).encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser() -> Iterator[object]:
    with headless_chromium("--host-resolver-rules=MAP evil.example 127.0.0.1") as driver:
        yield driver


def test_cross_site_page_cannot_run_a_turn(browser: object, stack: Running, demo: DemoChatService,
                                           evil_site: int, caplog: pytest.LogCaptureFixture,
                                           client: openai.OpenAI) -> None:
    caplog.set_level(logging.INFO, logger="roogab.api")
    browser.get(f"http://evil.example:{evil_site}/")  # type: ignore[attr-defined]

    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.getMessage().startswith(("403 POST /v1/chat/completions", "403 OPTIONS /v1/chat/completions",
                                              "415 POST /v1/chat/completions"))]

    # 3 forms + beacon + no-cors fetch + the CORS preflight (or its request): all arrive, all refused
    WebDriverWait(browser, 20).until(lambda d: len(refused()) >= 6 and len(
        d.execute_script("return window.fired") or []) >= 3)
    assert browser.execute_script("return window.fired[0]") is True  # type: ignore[attr-defined]
    assert all(m.startswith("403") for m in refused()), refused()  # cross-site: refused before the body
    assert demo.received == [], "a cross-site page ran a turn on the chat service"
    # the same endpoint still serves an agent (no Origin, JSON): the demo receives exactly that
    client.chat.completions.create(model="demo/gab-1", messages=[{"role": "user", "content": "agent turn"}])
    assert [r.prompt for r in demo.received if r.prompt and "agent turn" in r.prompt]

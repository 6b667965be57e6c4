"""The web page in headless Chromium (Debian's `chromium`), driven over the DevTools protocol on a
pipe (no extra Python package): type a query, click Search, see hits and facets; filter by a facet;
click Ask, see the streamed answer and the highlighted cited span."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from server_support import READ_KEY, LiveServer, base_workspace, copy_workspace  # noqa: E402,F401

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`apt-get install -y chromium`; "
                                                "`make test` installs it)"),
]


class Browser:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)  # dup first: the originals may be 3 or 4
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", "--user-data-dir=" + str(Path(os.environ.get("TMPDIR", "/tmp")) /
                                                                  f"ragkiln-chromium-{os.getpid()}"), "about:blank"],
            close_fds=False, preexec_fn=fds, stdout=subprocess.DEVNULL,  # close_fds would close fds 3 and 4
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                      self.session)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"])
        return r["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, self.session)
        self.wait("document.readyState === 'complete' && !!document.getElementById('q')")

    def wait(self, condition: str, timeout: float = 60) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.eval(f"(() => {{ try {{ return {condition}; }} catch (e) {{ return false; }} }})()")
            if value:
                return value
            time.sleep(0.1)
        status = self.eval("document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {condition}; status: {status!r}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture(scope="module")
def live(base_workspace, tmp_path_factory):  # noqa: F811
    server = LiveServer(copy_workspace(base_workspace, tmp_path_factory.mktemp("browser") / "ws"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def _type_and_click(b: Browser, text: str, button: str) -> None:
    b.eval(f"document.getElementById('key').value = {json.dumps(READ_KEY)};"
           f"document.getElementById('q').value = {json.dumps(text)};"
           f"document.getElementById({json.dumps(button)}).click(); true")


def test_search_renders_hits_and_facets_and_a_facet_filters(live, browser):
    browser.goto(live.url + "/")
    _type_and_click(browser, "coffee beans grown at altitude", "search-btn")
    browser.wait("document.querySelectorAll('#results li.hit').length > 0")
    first = browser.eval("document.querySelector('#results li.hit').dataset.doc")
    assert first == "coffee.txt"
    assert browser.eval("document.querySelectorAll('#results .ent').length") > 0  # entity spans marked
    facet = browser.wait("document.querySelector('#facets button[data-filter=\"GPE:colombia\"]') !== null")
    assert facet
    browser.eval("document.querySelector('#facets button[data-filter=\"GPE:colombia\"]').click(); true")
    browser.wait("document.querySelectorAll('#filters .chip').length === 1")
    browser.wait("[...document.querySelectorAll('#results li.hit')].every(li => li.dataset.doc === 'coffee.txt')")


def test_ask_streams_an_answer_and_highlights_the_cited_span(live, browser):
    browser.goto(live.url + "/")
    _type_and_click(browser, "How many volunteers did the vaccine trial enroll?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert browser.eval("document.getElementById('answer').textContent.length") > 0
    cited = browser.eval("document.querySelector('#citations li.citation').dataset.doc")
    marked = browser.eval("document.querySelector('#citations mark').textContent")
    answer = browser.eval("document.getElementById('answer').textContent")
    assert cited == "vaccine.md" and " ".join(answer.split()) in " ".join(marked.split())  # the span the answer copies
    assert "first token" in browser.eval("document.getElementById('status').textContent")

"""The web page in headless Chromium (Debian's `chromium`), driven over the DevTools protocol on a
pipe (no extra Python package): type a query, click Search, see hits and facets; filter by a facet;
click Ask, see the streamed answer and the highlighted cited span; the answer inside its sentence with
the span marked (issue 27 item 7), the cited passage one click away, "not found" shown as such, and a
model picker when several generators are served."""

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
    # an extractive answer: its span marked inside its sentence (AnswerResponse.sentence)
    assert browser.eval("document.getElementById('answer').dataset.view") == "sentence"
    answer = browser.eval("document.querySelector('#answer mark.answer-span').textContent")
    sentence = browser.eval("document.querySelector('#answer .sentence').textContent")
    assert answer.strip() and answer in sentence and answer != sentence
    assert cited == "vaccine.md" and " ".join(answer.split()) in " ".join(marked.split())  # the span the answer copies
    assert "first token" in browser.eval("document.getElementById('status').textContent")
    browser.eval("document.querySelector('#answer button.source').click(); true")  # the cited passage, opened
    assert browser.eval("document.querySelector('#citations details').open") is True


def test_off_topic_question_is_shown_as_not_found_not_as_an_answer(live, browser):
    browser.goto(live.url + "/")
    assert browser.eval("document.getElementById('model').hidden")  # one generator: no picker
    _type_and_click(browser, "How long should I boil an egg for a soft yolk?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert browser.eval("document.getElementById('answer-box').classList.contains('not-found')")
    assert browser.eval("document.getElementById('answer-title').textContent") == "Not found in your documents"
    shown = browser.eval("document.getElementById('answer').textContent")
    assert "supports an answer" in shown and "could not find" not in shown  # the explanation, not NO_ANSWER as text
    assert browser.eval("document.querySelectorAll('#answer mark, #answer .source, #citations li').length") == 0
    assert browser.eval("document.getElementById('status').textContent") == "not found in your documents"


# The `done` event of /v1/answer as the server sends it for an extractive answer with its sentence; the
# sentence holds markup that must stay text. Served to the page by a fetch stub, so the test pins the
# page to the response contract (sentence: document offsets of the sentence and of the span inside it).
SENTENCE = "In the trial <b>43,548</b> volunteers were enrolled across six countries."
DOC_OFFSET = 120  # the sentence's start in its document
SPAN = "<b>43,548</b> volunteers"
CANNED = {
    "citations": {"citations": [{"doc_id": "vaccine.md", "title": "Vaccine trial", "chunk_id": 7, "rank": 1,
                                 "start": DOC_OFFSET, "end": DOC_OFFSET + len(SENTENCE), "quote": SENTENCE,
                                 "score": 0.9, "match": "exact"}],
                  "passages": [{"doc_id": "vaccine.md", "chunk_id": 7, "title": "Vaccine trial", "start": 100,
                                "end": 100 + 20 + len(SENTENCE) + 10, "score": 0.9, "scores": {}, "relevant": True,
                                "in_prompt": True, "text": "The phase 3 study. " + " " + SENTENCE + " More text."}]},
    "done": {"answer": SPAN, "grounded": True, "model": "tiny-lm-q8_0", "finish_reason": "stop",
             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
             "timings": {"retrieval_ms": 1.0, "first_token_ms": 2.0, "generation_ms": 3.0, "tokens_per_s": 1.0},
             "mode": "extractive", "notice": None,
             "sentence": {"text": SENTENCE, "doc_id": "vaccine.md", "chunk_id": 7, "start": DOC_OFFSET,
                          "end": DOC_OFFSET + len(SENTENCE), "span_start": DOC_OFFSET + SENTENCE.index(SPAN),
                          "span_end": DOC_OFFSET + SENTENCE.index(SPAN) + len(SPAN)}},
}


def _stub_answer(b: Browser, events: list[tuple[str, dict]]) -> None:
    """Answer /v1/answer with `events` (as Server-Sent Events); the request body lands in window.sentAnswer."""
    sse = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    b.eval("(() => { const real = window.fetch; window.fetch = (url, init) => { if (url !== '/v1/answer') "
           "return real(url, init); window.sentAnswer = JSON.parse(init.body); return Promise.resolve(new Response("
           f"{json.dumps(sse)}, {{ headers: {{ 'Content-Type': 'text/event-stream' }} }})); }}; return true; }})()")


def test_answer_is_shown_inside_its_sentence_with_the_span_marked(live, browser):
    browser.goto(live.url + "/")
    _stub_answer(browser, [("token", {"text": SPAN}), ("citations", CANNED["citations"]), ("done", CANNED["done"])])
    _type_and_click(browser, "How many volunteers were enrolled?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert browser.eval("document.getElementById('answer').dataset.view") == "sentence"
    assert browser.eval("document.querySelector('#answer .sentence').textContent") == SENTENCE
    assert browser.eval("document.querySelector('#answer mark.answer-span').textContent") == SPAN
    assert browser.eval("document.querySelectorAll('#answer b, #citations b').length") == 0  # markup stays text
    assert "model" not in browser.eval("window.sentAnswer")  # one generator: the default, no `model` sent
    # the cited passage, one click away: closed at first, the source button opens it with the span marked
    assert browser.eval("document.querySelector('#citations details').open") is False
    browser.eval("document.querySelector('#answer button.source').click(); true")
    assert browser.eval("document.querySelector('#citations details').open") is True
    assert browser.eval("document.querySelector('#citations details .passage mark').textContent") == SENTENCE


def test_a_how_to_answer_shows_its_example_as_code(live, browser):
    example = {"text": "aws s3 ls s3://<bucket>\n  --recursive", "doc_id": "vaccine.md", "chunk_id": 7, "start": 300,
               "end": 336}
    browser.goto(live.url + "/")
    _stub_answer(browser, [("token", {"text": SPAN}), ("citations", CANNED["citations"]),
                           ("done", {**CANNED["done"], "example": example})])
    _type_and_click(browser, "How do I list a bucket?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert browser.eval("document.querySelector('#answer pre.example code').textContent") == example["text"]
    assert browser.eval("document.querySelector('#answer mark.answer-span').textContent") == SPAN


def test_answer_without_a_sentence_is_shown_plain(live, browser):
    done = {**CANNED["done"], "sentence": None, "answer": "Over forty thousand volunteers [1].", "mode": "generative"}
    browser.goto(live.url + "/")
    _stub_answer(browser, [("citations", CANNED["citations"]), ("done", done)])
    _type_and_click(browser, "How many volunteers were enrolled?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert browser.eval("document.getElementById('answer').dataset.view") == "plain"
    assert browser.eval("document.querySelector('#answer .plain').textContent") == done["answer"]
    assert browser.eval("document.querySelectorAll('#answer mark').length") == 0
    assert browser.eval("document.querySelectorAll('#answer button.source').length") == 1
    assert browser.eval("document.querySelectorAll('#answer pre').length") == 0  # no example: none shown


def test_an_answer_with_no_model_names_the_reader(live, browser):
    """A workspace without a GGUF answers with the reader (`model` null): the page says so, never "by null"."""
    browser.goto(live.url + "/")
    _stub_answer(browser, [("token", {"text": SPAN}), ("citations", CANNED["citations"]),
                           ("done", {**CANNED["done"], "model": None})])
    _type_and_click(browser, "How many volunteers were enrolled?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert "by the reader" in browser.eval("document.getElementById('status').textContent")
    meta = browser.eval("document.getElementById('answer-meta').textContent")
    assert "no language model" in meta and "null" not in meta
    assert browser.eval("document.querySelector('#answer mark.answer-span').textContent") == SPAN


@pytest.fixture(scope="module")
def live_two_models(base_workspace, tmp_path_factory):  # noqa: F811
    """A server with a registered chat model beside the workspace's own: two generators."""
    from test_byo_gguf import _cli, write_chat_gguf

    home = copy_workspace(base_workspace, tmp_path_factory.mktemp("browser-models") / "ws")
    gguf = write_chat_gguf(tmp_path_factory.mktemp("browser-chat"))
    r = _cli(home, "models", "add", str(gguf), "--name", "tiny-chat")
    assert r.exit_code == 0, r.output
    server = LiveServer(home)
    yield server
    server.stop()


def test_model_picker_lists_the_generators_and_answers_with_the_chosen_one(live_two_models, browser):
    browser.goto(live_two_models.url + "/#key=" + READ_KEY)
    browser.wait("!document.getElementById('model').hidden")
    options = browser.eval("[...document.querySelectorAll('#model option')].map(o => o.value)")
    assert options == ["tiny-lm-q8_0", "tiny-chat"]
    browser.eval("document.getElementById('model').value = 'tiny-chat'; true")
    browser.eval("(() => { const real = window.fetch; window.fetch = (url, init) => { if (url === '/v1/answer') "
                 "window.sentAnswer = JSON.parse(init.body); return real(url, init); }; return true; })()")
    _type_and_click(browser, "How many volunteers did the vaccine trial enroll?", "ask-btn")
    browser.wait("document.getElementById('answer-box').dataset.done === '1'")
    assert browser.eval("window.sentAnswer.model") == "tiny-chat"
    assert "answered by tiny-chat" in browser.eval("document.getElementById('status').textContent")
    assert browser.eval("document.getElementById('answer').dataset.view") == "plain"  # generative: no sentence
    assert browser.eval("document.querySelector('#answer .plain').textContent").strip() == "Pfizer trial volunteers [1]."

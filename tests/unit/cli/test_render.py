"""The CLI's text rendering of an ingest report and of an answer."""

from __future__ import annotations

from cli.render import SKIPPED_SHOWN, render_answer, render_report


def report(skipped: int) -> dict:
    return {"documents_total": 2, "added": 2, "changed": 0, "removed": 0, "unchanged": 0, "chunks_total": 3,
            "chunks_embedded": 3, "seconds": 1.25, "index_dir": "/ws/indexes/g1",
            "skipped": [{"path": f"corpus.jsonl:{i + 2}", "reason": "invalid JSON"} for i in range(skipped)]}


def test_skipped_inputs_are_listed_and_the_rest_counted():
    assert render_report(report(0)).splitlines() == [
        "documents: 2 (2 added, 0 changed, 0 removed, 0 unchanged)", "chunks: 3 (3 embedded) in 1.2s",
        "index: /ws/indexes/g1"]
    lines = render_report(report(SKIPPED_SHOWN + 3)).splitlines()
    assert lines[3] == f"skipped {SKIPPED_SHOWN + 3} input(s):" and lines[4] == "  corpus.jsonl:2: invalid JSON"
    assert len(lines) == 4 + SKIPPED_SHOWN + 1 and lines[-1] == "  ... and 3 more (--json lists every one)"


def test_files_of_a_type_nothing_reads_take_one_line_per_type():
    r = report(2)
    r["skipped"] += [{"path": f"site/{i}.js", "reason": "unsupported file type .js"} for i in range(8)]
    r["skipped"] += [{"path": "site/logo.png", "reason": "unsupported file type .png"}]
    lines = render_report(r).splitlines()
    assert lines[3:] == ["skipped 11 input(s):", "  unsupported file type .js: 8 files (e.g. site/0.js)",
                         "  unsupported file type .png: site/logo.png", "  corpus.jsonl:2: invalid JSON",
                         "  corpus.jsonl:3: invalid JSON"]


def answer(text: str, sentence: str) -> dict:
    return {"answer": text, "sentence": {"text": sentence}, "example": None, "notice": None,
            "citations": [{"doc_id": "fs.md", "start": 10, "end": 10 + len(text), "title": "File system"}]}


def test_an_answer_shows_its_sentence_once():
    sentence = "Calling fs.mkdir() when path is a directory\nthat exists results in an error."
    assert render_answer(answer("fs.mkdir", sentence)).splitlines() == [
        "fs.mkdir", '  "Calling fs.mkdir() when path is a directory that exists results in an error."',
        "  fs.md [10:18] (File system)"]
    assert render_answer(answer(sentence, sentence)).splitlines() == [  # a how-to answer given as its sentence
        "Calling fs.mkdir() when path is a directory that exists results in an error.",
        f"  fs.md [10:{10 + len(sentence)}] (File system)"]

"""Names' initials in the reader's sentences: what two changes do on SQuAD v1.1 dev.

- The indexer's splitter cuts after every full stop, so "Lyndon B. Johnson" reached the reader as "... Lyndon
  B." and "Johnson ..."; `trainer.lm.qa_focus.passage_sentences` now rejoins a piece that ends in a name's
  initials (`_cut_in_a_name`).
- English tokenizers keep "B." whole (an initial), so a sentence ending "in zone B." offered "zone" but not
  "zone B" as an answer; the reader's tokenizer now ends such a sentence with "B" and "."
  (`reader.serve.split_final_letter`).
Only a paragraph with a piece ending in a single letter and a full stop can change, so this reads each such
question's gold paragraph (the reader alone, as `bench/reader.py`'s "gold" rows) both ways, on both halves
of the articles (nothing is fitted here), and scores span EM / F1.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/final_letter_reader.py   # -> bench/results/final-letter-reader.json
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))

from bench.squad_split import article_halves, load_squad, questions  # noqa: E402
from indexer.embedder import load_embedder  # noqa: E402
from machine import machine  # noqa: E402
from ner.pipeline import resolve_model_name  # noqa: E402
from reader.model import load_weights  # noqa: E402
from reader.read import read  # noqa: E402
from reader.sentences import Passage  # noqa: E402
from reader.serve import DEFAULT_PIPELINE, ReaderRuntime, load_reader_pipeline  # noqa: E402
from trainer.lm.qa_metrics import exact_match, token_f1  # noqa: E402

import trainer.lm.qa_focus as qa_focus  # noqa: E402
from indexer.chunking import sentence_spans  # noqa: E402

OUT = ROOT / "bench" / "results" / "final-letter-reader.json"
FINAL_LETTER = re.compile(r"(?<![\w.])[A-Za-z]\.\s*$")


def main() -> None:
    squad = load_squad()
    fit, ev = article_halves(squad)
    qs = [dict(q, half="eval" if q["title"] in ev else "fit") for q in questions(squad, fit + ev)]
    touched = [q for q in qs if any(FINAL_LETTER.search(q["context"][s:e]) for s, e in sentence_spans(q["context"]))]
    emb = load_embedder("all-MiniLM-L6-v2", 2)
    after = ReaderRuntime(load_weights(), DEFAULT_PIPELINE,
                          loader=lambda name: load_reader_pipeline(resolve_model_name(name)))
    before = ReaderRuntime(load_weights(), DEFAULT_PIPELINE,
                           loader=lambda name: _unwrapped(load_reader_pipeline(resolve_model_name(name))))
    rejoin = qa_focus._cut_in_a_name
    got: dict[str, list[str]] = {}
    for name, rt in (("before", before), ("after", after)):
        qa_focus._cut_in_a_name = rejoin if name == "after" else (lambda *_a: False)
        rt.nlp()
        got[name] = []
        for q in touched:
            ans = read(q["question"], [Passage(q["context"], "gold", 0, 1, 1.0, q["title"].replace("_", " "))], emb,
                       None, rt.weights, top_k=1, encode=lambda t, rt=rt: rt.sentence_vectors(emb, t), parse=rt.parse)
            got[name].append(ans[0].text if ans else "")
    qa_focus._cut_in_a_name = rejoin
    rows = [{"id": q["id"], "half": q["half"], "question": q["question"], "gold": q["answers"],
             "before": b, "after": a} for q, b, a in zip(touched, got["before"], got["after"])]
    summary = {}
    for half in ("fit", "eval", "all"):
        rs = [r for r in rows if half in ("all", r["half"])]
        summary[half] = {"questions": len(rs), "answers_changed": sum(r["before"] != r["after"] for r in rs),
                         **{f"{m}_{k}": round(100 * sum(f(r[k], r["gold"]) for r in rs) / max(1, len(rs)), 2)
                            for m, f in (("em", exact_match), ("f1", token_f1)) for k in ("before", "after")}}
    result = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/final_letter_reader.py", "machine": machine(),
              "questions_total": len(qs), "summary": summary,
              "changed": [r for r in rows if r["before"] != r["after"]]}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=1))


def _unwrapped(nlp):  # type: ignore[no-untyped-def]
    """The pipeline with the tokenizer as it was before split_final_letter."""
    nlp.tokenizer = getattr(nlp.tokenizer, "inner", nlp.tokenizer)
    return nlp


if __name__ == "__main__":
    main()

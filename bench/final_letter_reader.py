"""A rule of the reader's sentences, on and off, on SQuAD v1.1 dev (`--rule`).

initials (-> final-letter-reader.json): names' initials in the reader's sentences, two changes:

- The indexer's splitter cuts after every full stop, so "Lyndon B. Johnson" reached the reader as "... Lyndon
  B." and "Johnson ..."; `trainer.lm.qa_focus.passage_sentences` now rejoins a piece that ends in a name's
  initials (`_cut_in_a_name`, since moved into the indexer's splitter, `indexer.chunking`, with the rule below).
- English tokenizers keep "B." whole (an initial), so a sentence ending "in zone B." offered "zone" but not
  "zone B" as an answer; the reader's tokenizer now ends such a sentence with "B" and "."
  (`reader.serve.split_final_letter`).
abbreviation (-> abbreviation-reader.json): a piece ending in "e.g.", "i.e.", "cf.", "vs." or "viz." goes on
  into the next, whatever its case (`_ENDS_IN_ABBREVIATION`, now `indexer.chunking`'s): "(e.g. Makefile
  Generators or Ninja)" had ended a sentence at "(e.g.".
Only a paragraph with a piece the rule reads (ending in a single letter and a full stop; in an abbreviation) can
change, so this reads each such question's gold paragraph (the reader alone, as `bench/reader.py`'s "gold" rows)
both ways, on both halves of the articles (nothing is fitted here), and scores span EM / F1.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/final_letter_reader.py --rule initials
"""

from __future__ import annotations

import argparse
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

import indexer.chunking as chunking  # noqa: E402

FINAL_LETTER = re.compile(r"(?<![\w.])[A-Za-z]\.\s*$")
# rule -> (a piece the rule reads, its indexer.chunking name, what it is off, the tokenizer unwrapped off, out)
RULES = {
    "initials": (FINAL_LETTER, "_cut_in_a_name", lambda *_a: False, True, "final-letter-reader.json"),
    "abbreviation": (chunking._ENDS_IN_ABBREVIATION, "_ENDS_IN_ABBREVIATION", re.compile(r"(?!)"), False,
                     "abbreviation-reader.json"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rule", choices=sorted(RULES), default="initials")
    a = ap.parse_args()
    piece, attr, off, unwrap, out = RULES[a.rule]
    squad = load_squad()
    fit, ev = article_halves(squad)
    qs = [dict(q, half="eval" if q["title"] in ev else "fit") for q in questions(squad, fit + ev)]
    touched = [q for q in qs if any(piece.search(q["context"][s:e]) for s, e in chunking._pieces(q["context"]))]
    emb = load_embedder("all-MiniLM-L6-v2", 2)
    after = ReaderRuntime(load_weights(), DEFAULT_PIPELINE,
                          loader=lambda name: load_reader_pipeline(resolve_model_name(name)))
    before = ReaderRuntime(load_weights(), DEFAULT_PIPELINE, loader=lambda name: (
        _unwrapped if unwrap else (lambda nlp: nlp))(load_reader_pipeline(resolve_model_name(name))))
    rule = getattr(chunking, attr)
    got: dict[str, list[str]] = {}
    for name, rt in (("before", before), ("after", after)):
        setattr(chunking, attr, rule if name == "after" else off)
        rt.nlp()
        got[name] = []
        for q in touched:
            ans = read(q["question"], [Passage(q["context"], "gold", 0, 1, 1.0, q["title"].replace("_", " "))], emb,
                       None, rt.weights, top_k=1, encode=lambda t, rt=rt: rt.sentence_vectors(emb, t), parse=rt.parse)
            got[name].append(ans[0].text if ans else "")
    setattr(chunking, attr, rule)
    rows = [{"id": q["id"], "half": q["half"], "question": q["question"], "gold": q["answers"],
             "before": b, "after": a} for q, b, a in zip(touched, got["before"], got["after"])]
    summary = {}
    for half in ("fit", "eval", "all"):
        rs = [r for r in rows if half in ("all", r["half"])]
        summary[half] = {"questions": len(rs), "answers_changed": sum(r["before"] != r["after"] for r in rs),
                         **{f"{m}_{k}": round(100 * sum(f(r[k], r["gold"]) for r in rs) / max(1, len(rs)), 2)
                            for m, f in (("em", exact_match), ("f1", token_f1)) for k in ("before", "after")}}
    result = {"command": f"HF_HUB_OFFLINE=1 .venv/bin/python bench/final_letter_reader.py --rule {a.rule}",
              "machine": machine(),
              "questions_total": len(qs), "summary": summary,
              "changed": [r for r in rows if r["before"] != r["after"]]}
    (ROOT / "bench" / "results" / out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=1))


def _unwrapped(nlp):  # type: ignore[no-untyped-def]
    """The pipeline with the tokenizer as it was before split_final_letter."""
    nlp.tokenizer = getattr(nlp.tokenizer, "inner", nlp.tokenizer)
    return nlp


if __name__ == "__main__":
    main()

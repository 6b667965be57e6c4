"""Human renderings of core results for the terminal (JSON mode bypasses these)."""

from __future__ import annotations

from typing import Any

from indexer.types import Hit


def hit_to_dict(h: Hit) -> dict[str, Any]:
    c = h.chunk
    return {
        "chunk_id": c.id, "chunk_key": c.key, "doc_id": c.doc_id, "title": c.title, "start": c.start,
        "end": c.end, "score": round(h.score, 6), "ranks": h.ranks,
        "scores": {k: round(v, 6) for k, v in h.scores.items()}, "text": c.text,
        "entities": [{"text": e.text, "label": e.label, "norm": e.norm, "start": e.start, "end": e.end}
                     for e in h.entities],
        "also_in": list(h.also_in),
    }


def hits_to_dicts(hits: list[Hit]) -> list[dict[str, Any]]:
    return [hit_to_dict(h) for h in hits]


def render_hits(result: dict[str, Any]) -> str:
    lines = []
    for i, h in enumerate(result["hits"], 1):
        snippet = " ".join(h["text"].split())[:200]
        ranks = " ".join(f"{k}#{v}" for k, v in h["ranks"].items())
        lines.append(f"{i:>2}. {h['doc_id']} [{h['start']}:{h['end']}] score={h['score']:.4f} ({ranks})")
        if h["title"]:
            lines.append(f"    {h['title']}")
        lines.append(f"    {snippet}")
        if h.get("also_in"):
            lines.append(f"    also in: {', '.join(h['also_in'])}")
    if not lines:
        lines.append("no hits")
    return "\n".join(lines)


SKIPPED_SHOWN = 50


def render_report(r: dict[str, Any]) -> str:
    lines = [
        f"documents: {r['documents_total']} ({r['added']} added, {r['changed']} changed, "
        f"{r['removed']} removed, {r['unchanged']} unchanged)",
        f"chunks: {r['chunks_total']} ({r['chunks_embedded']} embedded) in {r['seconds']:.1f}s",
        f"index: {r['index_dir']}",
    ]
    skipped = r["skipped"]
    if skipped:  # files, or lines of a BEIR corpus.jsonl ("corpus.jsonl:2")
        lines.append(f"skipped {len(skipped)} input(s):")
        lines += skipped_lines(skipped)
    return "\n".join(lines)


def skipped_lines(skipped: list[dict[str, str]]) -> list[str]:
    """Files of a type nothing reads one line per type (a web folder's scripts, styles and fonts), then every
    other input skipped with its own reason, at most SKIPPED_SHOWN of them."""
    from indexer.loaders import UNSUPPORTED_TYPE

    by_type: dict[str, list[str]] = {}
    for s in skipped:
        if s["reason"].startswith(UNSUPPORTED_TYPE):
            by_type.setdefault(s["reason"], []).append(s["path"])
    lines = [f"  {why}: {paths[0]}" if len(paths) == 1 else f"  {why}: {len(paths)} files (e.g. {paths[0]})"
             for why, paths in sorted(by_type.items(), key=lambda kv: -len(kv[1]))]
    others = [s for s in skipped if s["reason"] not in by_type]
    lines += [f"  {s['path']}: {s['reason']}" for s in others[:SKIPPED_SHOWN]]
    if len(others) > SKIPPED_SHOWN:
        lines.append(f"  ... and {len(others) - SKIPPED_SHOWN} more (--json lists every one)")
    return lines


def render_metrics(result: dict[str, Any]) -> str:
    lines = [f"{'mode':<8} {'nDCG@10':>8} {'R@100':>8} {'MRR@10':>8}"]
    for mode, m in result.items():
        lines.append(f"{mode:<8} {m['ndcg@10']:>8.4f} {m['recall@100']:>8.4f} {m['mrr@10']:>8.4f}")
    return "\n".join(lines)


def render_facets(result: dict[str, Any]) -> str:
    """Facet lines appended to the human rendering of `search`."""
    facets = result.get("facets") or {}
    if not facets:
        return ""
    lines = ["entities among the hits:"]
    for label, f in facets.items():
        vals = ", ".join(f"{v['value']} ({v['count']})" for v in f["values"][:5])
        lines.append(f"  {label} ({f['count']}): {vals}")
    return "\n".join(lines)


def answer_to_dict(question: str, a: Any) -> dict[str, Any]:
    """A `reader.answer.GroundedAnswer` under /v1/answer's field names."""
    h = a.hit
    return {"question": question, "answer": a.text, "grounded": a.grounded, "mode": "extractive",
            "sentence": None if h is None else {"text": a.sentence, "doc_id": h.chunk.doc_id, "chunk_id": h.chunk.id,
                                                "start": a.sentence_span[0], "end": a.sentence_span[1],
                                                "span_start": a.span[0], "span_end": a.span[1]},
            "citations": [] if h is None else [{"doc_id": h.chunk.doc_id, "title": h.chunk.title,
                                                "chunk_id": h.chunk.id, "start": a.span[0], "end": a.span[1],
                                                "quote": a.text, "score": h.score, "match": "answer"}],
            "example": None if h is None or a.example is None else {
                "text": a.example.text, "doc_id": h.chunk.doc_id, "chunk_id": h.chunk.id, "start": a.example.doc_start,
                "end": a.example.doc_end},
            "notice": a.problem, "hits": hits_to_dicts(list(a.hits))}


def render_answer(d: dict[str, Any]) -> str:
    whole = bool(d["sentence"]) and d["answer"] == d["sentence"]["text"]  # a how-to answer given as its sentence
    lines = [" ".join(d["answer"].split()) if whole else d["answer"]]
    if d["sentence"]:
        s, c = d["sentence"], d["citations"][0]
        if not whole:
            lines.append(f"  \"{' '.join(s['text'].split())}\"")
        lines.append(f"  {c['doc_id']} [{c['start']}:{c['end']}]" + (f" ({c['title']})" if c["title"] else ""))
    if d["example"]:
        lines.append("  example:")
        lines.extend("    " + ln for ln in d["example"]["text"].splitlines())
    if d["notice"]:
        lines.append(f"  note: {d['notice']}")
    return "\n".join(lines)

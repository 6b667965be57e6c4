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
    if not lines:
        lines.append("no hits")
    return "\n".join(lines)


def render_report(r: dict[str, Any]) -> str:
    lines = [
        f"documents: {r['documents_total']} ({r['added']} added, {r['changed']} changed, "
        f"{r['removed']} removed, {r['unchanged']} unchanged)",
        f"chunks: {r['chunks_total']} ({r['chunks_embedded']} embedded) in {r['seconds']:.1f}s",
        f"index: {r['index_dir']}",
    ]
    if r["skipped"]:
        lines.append(f"skipped {len(r['skipped'])} file(s):")
        lines += [f"  {s['path']}: {s['reason']}" for s in r["skipped"][:50]]
    return "\n".join(lines)


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

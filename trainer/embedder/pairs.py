"""Training pairs for the embedder, as pure functions over chunks and labelled files.

Without labels, pairs are mined from the corpus itself: title -> body, inverse cloze (a sentence ->
its chunk with that sentence removed; Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open
Domain QA"), claim-like statements (a finding sentence with its hedge stripped -> the chunk without it)
and entity-centred keyword queries. With labels, pairs come from JSONL or a BEIR qrels
train split. The dev split is made BY DOCUMENT (the positive's document), so no document and no query
text is shared between train and dev.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from common.errors import InvalidInput, NotFound
from common.jsonl import iter_jsonl
from indexer.chunking import index_text, sentence_spans
from indexer.types import Chunk, Entity

SOURCES = ("title", "ict", "claim", "entity")


@dataclass(frozen=True)
class Pair:
    """A (query, positive[, negatives]) example; `doc_id` is the positive's document (the split key)."""

    query: str
    positive: str
    doc_id: str
    source: str
    negatives: tuple[str, ...] = ()
    chunk_id: int | None = None  # the positive chunk in our index, when it comes from there
    teacher: tuple[float, ...] = ()  # the hybrid teacher's score of each negative (loss "distill")
    bm25: tuple[float, ...] = ()  # BM25's offset of the positive, then of each negative (residual training)
    fill: bool = False  # a further sentence of a chunk already paired: spent only after every first pair


def _words(text: str) -> int:
    return len(text.split())


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def title_pairs(chunks: Iterable[Chunk], min_words: int = 3) -> list[Pair]:
    """Title -> first chunk of each titled document (titles equal to the file name are skipped)."""
    first: dict[str, Chunk] = {}
    for c in chunks:
        if c.title and (c.doc_id not in first or c.ord < first[c.doc_id].ord):
            first[c.doc_id] = c
    out = []
    for c in first.values():
        title = c.title.strip()
        if _words(title) < min_words or _norm(title) == _norm(Path(c.doc_id).stem) or _norm(title) == _norm(c.text):
            continue
        out.append(Pair(title, c.text, c.doc_id, "title", chunk_id=c.id))
    return out


def ict_pairs(chunks: Iterable[Chunk], rng: random.Random, per_chunk: int = 1, min_words: int = 6,
              max_words: int = 60, min_rest_words: int = 20) -> list[Pair]:
    """Inverse cloze: a sentence of the chunk is the query, the chunk without it the positive."""
    out = []
    for c in chunks:
        sents = [(s, e) for s, e in sentence_spans(c.text) if min_words <= _words(c.text[s:e]) <= max_words]
        if len(sentence_spans(c.text)) < 2 or not sents:
            continue
        for s, e in rng.sample(sents, min(per_chunk, len(sents))):
            rest = (c.text[:s].rstrip() + " " + c.text[e:].lstrip()).strip()
            if _words(rest) < min_rest_words:
                continue
            out.append(Pair(c.text[s:e], index_text(c.title, rest), c.doc_id, "ict", chunk_id=c.id))
    return out


# A finding is stated after a hedge ("These results suggest that ..."); the claim is what follows it.
_SECTION = re.compile(r"^(?:conclusions?|interpretations?|results?|findings|significance|summary)\s*[:.]?\s+", re.I)
_HEDGE = re.compile(
    r"^(?:(?:in conclusion|in summary|taken together|together|overall|collectively|thus|therefore|hence|"
    r"importantly|moreover|furthermore|finally|in addition)\s*,?\s*)?"
    r"(?:(?:these|our|the|this|present|such|both)\s+(?:\w+\s+){0,3}?"
    r"(?:results?|findings|data|observations|studies|study|analyses|analysis|experiments|evidence|work|trial)\s+"
    r"(?:\w+\s+){0,2}?"
    r"|we\s+(?:\w+\s+)?|it\s+(?:is|was)\s+)"
    r"(?:suggest|suggests|suggested|indicate|indicates|indicated|show|shows|showed|shown|demonstrate|demonstrates|"
    r"demonstrated|reveal|reveals|revealed|support|supports|supported|provide evidence|provides evidence|"
    r"imply|implies|conclude|concluded|found|find|report|propose|establish|establishes|identify|identifies|"
    r"identified|confirm|confirms|confirmed)"
    r"(?:\s+(?:for the first time|here|now|further))?"
    r"(?:\s+(?:for|to)\s+(?:the\s+)?(?:hypothesis|notion|idea|concept|view|conclusion|model))?\s+(?:that\s+)?", re.I)
_TAIL = re.compile(r"\s*(?:;|,\s*(?:whereas|while|possibly|which|thereby|thus|suggesting|indicating|"
                   r"providing|and\s+(?:may|might|could|this|these|thus))\b).*$", re.I | re.S)


def claimify(sentence: str, max_words: int = 30) -> str | None:
    """The claim stated by a finding sentence, or None when the sentence states none.

    SciFact-style queries are short declarative findings ("BMP-2 plays a role in vascular calcification").
    Abstracts state theirs after a hedge; the hedge is cut, as is a trailing clause that only qualifies it.
    """
    text = _SECTION.sub("", sentence.strip())
    m = _HEDGE.match(text)
    if m is None:
        return None
    claim = _TAIL.sub("", text[m.end():]).strip().rstrip(".").strip()
    words = claim.split()
    # "support for the guidelines" is no claim, nor is a claim cut short at an abbreviation ("in E.")
    if not 5 <= len(words) <= max_words or words[0].lower() in {"for", "to", "of", "in", "on"} or len(words[-1]) <= 2:
        return None
    return claim[0].upper() + claim[1:] + "."


def claim_pairs(chunks: Iterable[Chunk], rng: random.Random, per_chunk: int = 1, min_rest_words: int = 20
                ) -> list[Pair]:
    """A claim distilled from a finding sentence -> its chunk without that sentence (inverse-cloze style,
    so the model learns to find the evidence that supports a claim, not the claim's own words)."""
    out = []
    for c in chunks:
        found = []
        for s, e in sentence_spans(c.text):
            claim = claimify(c.text[s:e])
            if claim is not None:
                found.append((s, e, claim))
        for s, e, claim in rng.sample(found, min(per_chunk, len(found))):
            rest = (c.text[:s].rstrip() + " " + c.text[e:].lstrip()).strip()
            if _words(rest) < min_rest_words:
                continue
            out.append(Pair(claim, index_text(c.title, rest), c.doc_id, "claim", chunk_id=c.id))
    return out


def entity_pairs(chunks: Iterable[Chunk], entities: Mapping[int, Sequence[Entity]], rng: random.Random,
                 doc_freq: Mapping[str, int] | None = None, min_entities: int = 2, max_entities: int = 4) -> list[Pair]:
    """A keyword query of the chunk's rarest distinct entities -> the chunk (needs NER at ingest)."""
    out = []
    for c in chunks:
        seen: dict[str, str] = {}
        for e in entities.get(c.id, ()):
            key = (e.norm or e.text).lower()
            if key not in seen and len(e.text) > 1:
                seen[key] = e.text
        if len(seen) < min_entities:
            continue
        keys = sorted(seen, key=lambda k: ((doc_freq or {}).get(k, 0), rng.random()))[:max_entities]
        query = " ".join(seen[k] for k in keys)
        out.append(Pair(query, index_text(c.title, c.text), c.doc_id, "entity", chunk_id=c.id))
    return out


def entity_doc_freq(entities: Mapping[int, Sequence[Entity]]) -> dict[str, int]:
    """In how many chunks each entity (by norm) occurs: rarer entities make more specific queries."""
    df: Counter[str] = Counter()
    for ents in entities.values():
        df.update({(e.norm or e.text).lower() for e in ents})
    return dict(df)


def read_pairs_jsonl(path: Path) -> list[Pair]:
    """Labelled pairs: one JSON object a line with "query", "positive" and optionally "negative"."""
    out = []
    for where, obj in iter_jsonl(path, "pairs file"):
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k].strip()
                                                for k in ("query", "positive")):
            raise InvalidInput(f"{where}: each line needs non-empty string fields 'query' and 'positive'")
        neg = obj.get("negative")
        if neg is not None and not (isinstance(neg, str) and neg.strip()):
            raise InvalidInput(f"{where}: 'negative' must be a non-empty string when given")
        doc = str(obj.get("doc_id") or "sha:" + hashlib.sha256(_norm(obj["positive"]).encode()).hexdigest()[:16])
        out.append(Pair(obj["query"].strip(), obj["positive"].strip(), doc, "labelled",
                        (neg.strip(),) if neg else ()))
    if not out:
        raise InvalidInput(f"{path} holds no pairs")
    return out


def read_beir_train(beir_dir: Path, split: str = "train") -> list[Pair]:
    """Pairs from a BEIR folder's qrels/<split>.tsv (score > 0). The test split is refused."""
    if split == "test":
        raise InvalidInput("refusing to train on a BEIR test split; use qrels/train.tsv (or dev)")
    qrels_path = beir_dir / "qrels" / f"{split}.tsv"
    for p in (beir_dir / "corpus.jsonl", beir_dir / "queries.jsonl", qrels_path):
        if not p.is_file():
            raise NotFound(f"BEIR folder {beir_dir} has no {p.relative_to(beir_dir)}")
    queries = {str(o["_id"]): o["text"] for o in _jsonl(beir_dir / "queries.jsonl")}
    corpus = {str(o["_id"]): index_text(o.get("title") or "", o.get("text") or "") for o in _jsonl(beir_dir / "corpus.jsonl")}
    out = []
    for n, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines()):
        parts = line.strip().split("\t")
        if n == 0 and parts[0] == "query-id" or not line.strip():
            continue
        if len(parts) < 3:
            raise InvalidInput(f"{qrels_path}:{n + 1}: expected 'query-id<TAB>corpus-id<TAB>score'")
        qid, did, score = parts[0], parts[1], parts[2]
        if float(score) <= 0 or qid not in queries or did not in corpus:
            continue
        out.append(Pair(queries[qid], corpus[did], did, "beir-" + split))
    if not out:
        raise InvalidInput(f"{qrels_path} yields no pairs (no positive judgement with a known query and document)")
    return out


def _jsonl(path: Path) -> Iterable[dict]:
    return (obj for _, obj in iter_jsonl(path))


def dedup(pairs: Iterable[Pair]) -> list[Pair]:
    """Drop repeated (query, positive) pairs and pairs whose query is the positive itself."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in pairs:
        key = (_norm(p.query), _norm(p.positive))
        if key in seen or key[0] == key[1] or not key[0] or not key[1]:
            continue
        seen.add(key)
        out.append(p)
    return out


def _bucket(doc_id: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_by_document(pairs: Sequence[Pair], dev_fraction: float, seed: int,
                      max_dev: int | None = None) -> tuple[list[Pair], list[Pair]]:
    """Train/dev split by the positive's document; train pairs sharing a query text with dev are dropped.

    A query judged against several documents may fall on both sides of the document split: its text is
    kept in dev only, so no dev query has been seen in training.
    """
    docs = sorted({p.doc_id for p in pairs}, key=lambda d: _bucket(d, seed))
    n_dev = max(1, round(len(docs) * dev_fraction)) if len(docs) >= 2 else 0
    if max_dev is not None:
        by_doc = Counter(p.doc_id for p in pairs)
        acc, keep = 0, 0
        for d in docs[:n_dev]:
            if acc + by_doc[d] > max_dev and keep > 0:
                break
            acc += by_doc[d]
            keep += 1
        n_dev = keep
    dev_docs = set(docs[:n_dev])
    dev = [p for p in pairs if p.doc_id in dev_docs]
    dev_queries = {_norm(p.query) for p in dev}
    train = [p for p in pairs if p.doc_id not in dev_docs and _norm(p.query) not in dev_queries]
    return train, dev


def cap_pairs(pairs: Sequence[Pair], max_pairs: int, rng: random.Random) -> list[Pair]:
    """At most max_pairs, sampled evenly across sources (a small source is kept whole); fill pairs only make up
    what the first pairs leave short, so that the budget covers as many chunks as it can."""
    if len(pairs) <= max_pairs:
        return list(pairs)
    first = [p for p in pairs if not p.fill]
    if len(first) < len(pairs):
        if len(first) >= max_pairs:
            return _cap_by_source(first, max_pairs, rng)
        out = first + _cap_by_source([p for p in pairs if p.fill], max_pairs - len(first), rng)
        rng.shuffle(out)
        return out
    return _cap_by_source(pairs, max_pairs, rng)


def _cap_by_source(pairs: Sequence[Pair], max_pairs: int, rng: random.Random) -> list[Pair]:
    if len(pairs) <= max_pairs:
        return list(pairs)
    by_src: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_src[p.source].append(p)
    quota: dict[str, int] = {}
    left = max_pairs
    for i, (src, ps) in enumerate(sorted(by_src.items(), key=lambda kv: len(kv[1]))):
        share = left // (len(by_src) - i)
        quota[src] = min(len(ps), share)
        left -= quota[src]
    out = []
    for src, ps in sorted(by_src.items()):
        out.extend(rng.sample(ps, quota[src]))
    rng.shuffle(out)
    return out


def pairs_to_jsonl(pairs: Iterable[Pair]) -> str:
    return "".join(json.dumps({"query": p.query, "positive": p.positive, "doc_id": p.doc_id, "source": p.source,
                               "negatives": list(p.negatives), "chunk_id": p.chunk_id, "teacher": list(p.teacher),
                               **({"bm25": list(p.bm25)} if p.bm25 else {})}) + "\n"
                   for p in pairs)


def pairs_from_jsonl(text: str) -> list[Pair]:
    out = []
    for line in text.splitlines():
        if line.strip():
            o = json.loads(line)
            out.append(Pair(o["query"], o["positive"], o["doc_id"], o["source"], tuple(o["negatives"]), o["chunk_id"],
                            tuple(o.get("teacher", ())), tuple(o.get("bm25", ()))))
    return out


def with_negatives(pair: Pair, negatives: Sequence[str], teacher: Sequence[float] = (),
                   bm25: Sequence[float] = ()) -> Pair:
    return replace(pair, negatives=tuple(negatives), teacher=tuple(teacher), bm25=tuple(bm25))


def source_counts(pairs: Iterable[Pair]) -> dict[str, int]:
    return dict(sorted(Counter(p.source for p in pairs).items()))

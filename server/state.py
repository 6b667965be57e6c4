"""What the server loads once (in its lifespan) and shares between requests.

The index is reloaded by `Workspace.searcher()` whenever another generation became active (an
API reindex or a CLI ingest), so a reindex switches searches over atomically. The NER pipeline and
the GGUF generator are optional: when they cannot be loaded the server still serves search, says
why in /readyz, and the endpoints that need them answer 503 with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ModelUnavailable, NotFound, RagkilnError
from common.settings import Settings
from indexer.search import Searcher
from indexer.workspace import Workspace
from server.auth import KeyRing
from server.batcher import QueryBatcher
from server.encoding import QueryEncoder
from server.jobs import JobRegistry
from server.metrics import Metrics, generation_depth

log = logging.getLogger(__name__)

GGUF_PREFERENCE = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "f16", "f32")
NO_GENERATOR = "no generator model: run `ragkiln quantize` (or set server.generator to a GGUF file)"


def find_generator(settings: Settings) -> Path | None:
    """The GGUF file `server.generator` names; 'auto' picks the newest export in the workspace."""
    spec = settings.server.generator.strip()
    if spec.lower() == "none":
        return None
    if spec.lower() != "auto":
        p = Path(spec).expanduser()
        if not p.is_file():
            raise NotFound(f"server.generator {spec} is not a file")
        return p
    root = Path(settings.home).expanduser() / "gguf"
    if not root.is_dir():
        return None
    exports = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
    for d in exports:
        for t in GGUF_PREFERENCE:
            f = d / f"model-{t}.gguf"
            if f.is_file():
                return f
    return None


@dataclass
class Generator:
    """The GGUF runtime plus what answering needs to know about the model it serves."""

    runtime: Any  # quantize.runtime.LlamaCppGenerator
    tokenizer: Any  # quantize.service.GgufTokenizer
    model_id: str
    passages: int
    passage_len: int
    context_sentences: int = 0  # sentences kept of each passage (trainer.lm.qa_focus.focus_passage); 0 = all


def load_generator(settings: Settings) -> Generator:
    path = find_generator(settings)
    if path is None:
        raise ModelUnavailable(NO_GENERATOR)
    try:
        from quantize.service import GgufTokenizer, gguf_manifest, open_generator
    except ImportError as e:
        raise ModelUnavailable(f"the GGUF runtime is not available ({e}); {NO_GENERATOR}") from e
    q = settings.quantize.model_copy(update={"queue_size": settings.server.queue_size})
    runtime = open_generator(settings.model_copy(update={"quantize": q}), path)
    try:
        manifest = gguf_manifest(path)
    except RagkilnError:
        manifest = {}
    model_id = f"{path.parent.name}-{path.stem.removeprefix('model-')}"
    tokenizer = GgufTokenizer(runtime)
    _warm_up(runtime, tokenizer)
    return Generator(runtime, tokenizer, model_id, *prompt_reading(manifest, settings))


def prompt_reading(manifest: dict[str, Any], settings: Settings) -> tuple[int, int, int]:
    """(passages, tokens kept of each, sentences kept of each) for the served model's prompts: how its
    QA tuning read passages (its manifest's `training.qa`), else the settings; passages per prompt are
    the server's choice."""
    qa = (manifest.get("training") or {}).get("qa") or {}
    passages = settings.server.answer_passages or settings.lm.qa_passages or 1
    passage_len = int(qa.get("passage_len") or settings.lm.qa_passage_len)
    return passages, passage_len, int(qa.get("context_sentences", settings.lm.qa_context_sentences))


def _warm_up(runtime: Any, tokenizer: Any) -> None:
    """One token through every context now: the first use of a context allocates its buffers, which
    would otherwise land on the first user's time to first token."""
    from quantize.runtime import SamplingParams

    for _ in range(runtime.pool_size):
        runtime.generate([runtime.bos_id, tokenizer.q_id, tokenizer.a_id], SamplingParams(max_tokens=1, temperature=0))


@dataclass
class ServerState:
    settings: Settings
    workspace: Workspace
    keys: KeyRing
    batcher: QueryBatcher
    metrics: Metrics
    jobs: JobRegistry
    generator: Generator | None = None
    generator_problem: str | None = None
    enricher: Any = None
    ner_problem: str | None = None
    _encoders: dict[str, QueryEncoder] = field(default_factory=dict)

    def searcher(self) -> Searcher:
        s = self.workspace.searcher()
        self.metrics.observe_index(s)
        return s

    def query_encoder(self, searcher: Searcher) -> QueryEncoder:
        """The batcher's encoder for this searcher's embedder (one per embedder, so batches group)."""
        enc = self._encoders.get(searcher.embedder.id)
        if enc is None or enc.embedder is not searcher.embedder:
            enc = QueryEncoder(searcher.embedder, searcher.query_precision)
            self._encoders[searcher.embedder.id] = enc
        return enc

    def require_generator(self) -> Generator:
        if self.generator is None:
            raise ModelUnavailable(self.generator_problem or NO_GENERATOR)
        return self.generator

    def close(self) -> None:
        self.batcher.close()
        self.jobs.close()
        if self.generator is not None:
            self.generator.runtime.close()
        if self.enricher is not None and hasattr(self.enricher, "close"):
            self.enricher.close()


def limit_threads(n: int) -> None:
    """torch and FAISS (OpenMP) threads of the calling thread: OpenMP keeps the count per thread, so the
    event loop and the batcher thread each set it; otherwise idle OpenMP workers spin on the shared cores."""
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def without_keys(settings: Settings) -> Settings:
    """Settings with the raw API keys removed: only their hashes (the KeyRing) stay in memory."""
    return settings.model_copy(update={"server": settings.server.model_copy(update={"api_keys": ""})})


def load_state(settings: Settings, keys: KeyRing | None = None, load_models: bool = True) -> ServerState:
    """Open the workspace, warm the index, load NER and the generator (each optional, reasons kept)."""
    if keys is None:
        keys = KeyRing.parse(settings.server.api_keys)
    settings = without_keys(settings)
    threads = settings.server.torch_threads
    if threads:
        limit_threads(threads)
    ws = Workspace.open(settings)
    batcher = QueryBatcher(settings.server.batch_max, settings.server.batch_wait_ms,
                           thread_init=(lambda: limit_threads(threads)) if threads else None)
    jobs = JobRegistry.for_workspace(ws.home, settings.server, probe=lambda: (
        {i: sha for i, (sha, _chunker) in ws.store.active_documents().items()}, ws.active_index_name()))
    state = ServerState(settings, ws, keys, batcher, Metrics(), jobs)
    state.metrics.bind(batcher, state.jobs,
                       lambda: generation_depth(state.generator.runtime if state.generator else None))
    try:
        state.searcher()  # load the index and the embedder now, not on the first request
    except NotFound as e:
        log.warning("%s", e)
    except RagkilnError as e:
        log.error("index not loadable: %s", e)
    if not load_models:
        return state
    if settings.ner.enabled:
        try:
            from ner.enrich import SpacyEnricher

            cfg = settings.ner.model_copy(update={"n_process": 1})
            state.enricher = SpacyEnricher.from_config(cfg)
        except RagkilnError as e:
            state.ner_problem = str(e)
            log.warning("NER disabled: %s", e)
    try:
        state.generator = load_generator(settings)
        log.info("generator %s loaded", state.generator.model_id)
    except RagkilnError as e:
        state.generator_problem = str(e)
        log.warning("answers disabled: %s", e)
    return state

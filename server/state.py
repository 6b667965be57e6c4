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
from server.openai_compat import GENERATOR_ALIAS

log = logging.getLogger(__name__)

NO_GENERATOR = "no generator model: run `ragkiln quantize` (or set server.generator to a GGUF file)"
READER_ONLY = ("no generator model: answers are the extractive reader's spans of the retrieved passages; for a model "
               "of your own run `ragkiln train lm` then `ragkiln quantize` (or set server.generator to a GGUF file)")


def find_generator(settings: Settings) -> Path | None:
    """The workspace's own GGUF file (`server.generator`; 'auto' picks the newest export)."""
    from quantize.registry import workspace_generator

    return workspace_generator(settings)


@dataclass
class Generator:
    """The GGUF runtime plus what answering needs to know about the model it serves."""

    runtime: Any  # quantize.runtime.LlamaCppGenerator
    tokenizer: Any  # quantize.service.GgufTokenizer
    model_id: str
    passages: int
    passage_len: int
    context_sentences: int = 0  # sentences kept of each passage (trainer.lm.qa_focus.focus_passage); 0 = all
    kind: str = "ragkiln"  # "ragkiln": its QA prompt format; "chat": its own chat template (quantize.chat_template)
    generative: bool = True  # the quality gate (quantize/gate.py): may it answer in its own words?
    gate: str = ""  # why
    chat: Any = None  # quantize.chat_template.ChatFormat of a chat model


def load_generator(settings: Settings, entry: Any = None) -> Generator:
    """Load one generator: `entry` a quantize.registry.ModelEntry, None for the workspace's own model."""
    from quantize.registry import ModelEntry, own_model_id, parse_overrides, read_gguf_info

    if entry is None:
        path = find_generator(settings)
        if path is None:
            raise ModelUnavailable(NO_GENERATOR)
        entry = ModelEntry(own_model_id(path), str(path), "workspace", read_gguf_info(path))
    try:
        from quantize.gate import gate_model
        from quantize.registry import file_type, verification_for
        from quantize.runtime import SamplingParams
        from quantize.service import GgufTokenizer, gguf_manifest, open_generator
    except ImportError as e:
        raise ModelUnavailable(f"the GGUF runtime is not available ({e}); {NO_GENERATOR}") from e
    path = Path(entry.path)
    contexts = settings.quantize.contexts if entry.kind == "ragkiln" else (
        settings.server.generator_slots or settings.quantize.contexts)
    q = settings.quantize.model_copy(update={"queue_size": settings.server.queue_size, "contexts": contexts})
    runtime = open_generator(settings.model_copy(update={"quantize": q}), path)
    override = parse_overrides(settings.server.generative).get(entry.name)
    if entry.kind == "chat":
        from quantize.chat_template import ChatFormat

        try:
            chat = ChatFormat(runtime)
            for _ in range(runtime.pool_size):  # the first use of a context allocates its buffers
                runtime.generate(chat.prompt_ids([{"role": "user", "content": "hi"}]), SamplingParams(max_tokens=1,
                                                                                                   temperature=0))
        except Exception:
            runtime.close()
            raise
        ok, why = gate_model(None, None, None, override)
        return Generator(runtime, None, entry.name, settings.server.answer_passages or 5, 0, 0, kind="chat",
                         generative=ok, gate=why, chat=chat)
    try:
        manifest = gguf_manifest(path)
    except RagkilnError:
        manifest = {}
    tokenizer = GgufTokenizer(runtime)
    _warm_up(runtime, tokenizer)
    ok, why = gate_model(manifest, verification_for(settings, path), file_type(path), override)
    return Generator(runtime, tokenizer, entry.name, *prompt_reading(manifest, settings), generative=ok, gate=why)


def load_generators(settings: Settings) -> tuple[dict[str, Generator], dict[str, str]]:
    """Every generator `quantize.registry.list_models` names, by name; and why each one that failed did."""
    from quantize.registry import ModelEntry, list_models, read_gguf_info

    loaded: dict[str, Generator] = {}
    problems: dict[str, str] = {}
    for entry in list_models(settings, check_files=False):
        try:
            full = ModelEntry(entry.name, entry.path, entry.source, read_gguf_info(Path(entry.path)))
            loaded[entry.name] = load_generator(settings, full)
            log.info("generator %s loaded (%s; %s)", entry.name, full.kind,
                     "generative" if loaded[entry.name].generative else "extractive: " + loaded[entry.name].gate)
        except RagkilnError as e:
            problems[entry.name] = str(e)
            log.warning("generator %s not loaded: %s", entry.name, e)
    return loaded, problems


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
    generator: Generator | None = None  # the default: the workspace's own model (else the first loaded)
    generator_problem: str | None = None
    generators: dict[str, Generator] = field(default_factory=dict)  # every loaded one, by name
    generator_problems: dict[str, str] = field(default_factory=dict)  # by name: why it is not loaded
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

    def reader_only(self) -> bool:
        """No generator because there is none to load (`server.generator = "auto"`, no GGUF in the workspace,
        none registered): `/v1/answer` still answers, with the reader's spans, which need no LM. "none" turns
        answers off, and a model that failed to load stays a fault, so neither reads instead."""
        return self.generator is None and self.generator_problem == READER_ONLY

    def reads_for(self, name: str | None) -> bool:
        """Whether a request naming `name` (None or "ragkiln", the default's alias) is answered by the reader
        alone, there being no model to load (`reader_only`)."""
        return self.reader_only() and (name is None or name.lower() == GENERATOR_ALIAS)

    def require_generator(self, name: str | None = None) -> Generator:
        """The generator a request names (None or 'ragkiln': the default); ModelUnavailable when none is
        loaded, NotFound for a name not served (never answered by another model)."""
        if self.generator is None:
            raise ModelUnavailable(self.generator_problem or NO_GENERATOR)
        if name is None or name.lower() in (GENERATOR_ALIAS, self.generator.model_id.lower()):
            return self.generator
        for n, g in self.generators.items():
            if n.lower() == name.lower():
                return g
        if name in self.generator_problems:
            raise ModelUnavailable(f"model {name!r} is registered but not loaded: {self.generator_problems[name]}")
        raise NotFound(f"model {name!r} is not served here; generator models: "
                       f"{', '.join(self.generator_names())} (GET /v1/models)")

    def generator_names(self) -> list[str]:
        """The default generator's id first, then the others'."""
        if self.generator is None:
            return []
        return [self.generator.model_id, *(n for n in self.generators if n != self.generator.model_id)]

    def all_generators(self) -> list[Generator]:
        out = [] if self.generator is None else [self.generator]
        return out + [g for n, g in self.generators.items() if self.generator is None or n != self.generator.model_id]

    def close(self) -> None:
        self.batcher.close()
        self.jobs.close()
        for g in {id(g): g for g in [*self.generators.values(), *([self.generator] if self.generator else [])]}.values():
            g.runtime.close()
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
        state.generators, state.generator_problems = load_generators(settings)
    except RagkilnError as e:  # an unreadable registry or a bad server.generators / server.generator
        state.generator_problems = {"": str(e)}
    own = find_generator_or_none(settings)
    default = own.name if own is not None else None
    if default is not None and default in state.generators:
        state.generator = state.generators[default]
    elif state.generators and default is None:  # no own model: the first registered one answers by default
        state.generator = next(iter(state.generators.values()))
    if state.generator is None:
        state.generator_problem = (state.generator_problems.get(default or "") or
                                   next(iter(state.generator_problems.values()), None) or NO_GENERATOR)
        if state.generator_problem == NO_GENERATOR and settings.server.generator.strip().lower() == "auto":
            state.generator_problem = READER_ONLY
            log.warning("%s", READER_ONLY)
        else:
            log.warning("answers disabled: %s", state.generator_problem)
    return state


def find_generator_or_none(settings: Settings) -> Any:
    """The workspace's own model as a registry entry (headers unread), None when there is none or it is
    misnamed (that problem is the loader's to report)."""
    from quantize.registry import list_models

    try:
        return next((m for m in list_models(settings, check_files=False) if m.source == "workspace"), None)
    except RagkilnError:
        return None

"""Request and response models of the HTTP API (separate ones; requests refuse unknown fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

Mode = Literal["dense", "bm25", "hybrid"]
Scalar = str | int | float | bool
DocId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
# LABEL or LABEL:value, as ner.filters.parse_entity_filter reads it; the schema says exactly what it accepts
FilterSpec = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                              pattern=r"^[A-Za-z0-9_.-]+(:.*[A-Za-z0-9].*)?$")]


def _integral(v: Any) -> Any:
    """JSON Schema's integer is a number without a fraction, so 5.0 is 5; "5" and true stay refused."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


# The integer of strict request models. An optional bounded one is written
# `Annotated[int, Field(ge=1), BeforeValidator(_integral)] | None`: bounds first, or the JSON schema's
# integer branch gets pydantic's "ge"/"le" instead of "minimum"/"maximum".
Int = Annotated[int, BeforeValidator(_integral)]


class Request(BaseModel):
    """Strict: a string is never an int ("k": "5"), nor an int a bool ("stream": 0); NaN and Infinity
    are refused (they would be stored as null); unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- errors -------------------------------------------------------------------------------------
class ErrorDetail(Response):
    code: str
    type: str
    message: str
    field: str | None = None


class ErrorResponse(Response):
    error: ErrorDetail


# ---- search -------------------------------------------------------------------------------------
class Filters(Request):
    entities: list[FilterSpec] = Field(
        default_factory=list, max_length=16,
        description="LABEL or LABEL:value (the value: an entity's name or a run of its whole words, any case); "
                    "all must match (AND).")
    metadata: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Scalar] = Field(
        default_factory=dict, max_length=16, description="Document metadata key: value; all must match.")


class SearchRequest(Request):
    query: str = Field(..., min_length=1, max_length=2000)
    k: Int = Field(10, ge=1, le=100)
    mode: Mode = "hybrid"
    filters: Filters | None = None


class EntityOut(Response):
    text: str
    label: str
    norm: str
    start: int
    end: int
    doc_start: int
    doc_end: int


class HitOut(Response):
    chunk_id: int
    chunk_key: str
    doc_id: str
    title: str
    start: int = Field(description="Character offset of the chunk in its document.")
    end: int
    score: float = Field(description="The score the hits are ranked by: the fused score in hybrid mode; in dense mode "
                         "the chunk's cosine mixed with its best sentence's (indexer.sentence_share); BM25's in bm25.")
    ranks: dict[str, int] = Field(description="1-based rank per retriever (dense, bm25).")
    scores: dict[str, float] = Field(description="Each retriever's own score: dense is the chunk's cosine, bm25 its "
                                     "BM25 score.")
    text: str
    entities: list[EntityOut]
    also_in: list[str] = Field(default_factory=list, description="Other documents holding a near-duplicate of this "
                               "chunk (indexer.collapse_overlap): folded into this hit instead of taking a slot. The "
                               "hit is the copy from the shortest document, at the best copy's rank and score.")


class FacetValue(Response):
    value: str
    count: int


class Facet(Response):
    count: int
    values: list[FacetValue]


class SearchResponse(Response):
    query: str
    mode: Mode
    index: str = Field(description="The index generation that answered (changes when a reindex switches).")
    hits: list[HitOut]
    facets: dict[str, Facet]
    took_ms: float


# ---- answer -------------------------------------------------------------------------------------
class AnswerRequest(Request):
    question: str = Field(..., min_length=1, max_length=2000)
    k: Int = Field(5, ge=1, le=50, description="Passages retrieved; the relevant ones go into the prompt.")
    mode: Mode = "hybrid"
    filters: Filters | None = None
    max_tokens: Int = Field(64, ge=1, le=2048)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    extractive: bool | None = Field(
        None, description="Answer with the shortest span of the relevant passages that answers the question, chosen "
        "by the extractive reader (reader/: sentences ranked by the embedder, BM25-style overlap and retrieval rank, "
        "then token-aligned spans of the best ones, never starting or ending inside a word), returned with its "
        "sentence (`sentence`); null: the server's answer_extractive. A model that fails the generation quality "
        "gate always answers extractively (see `mode`, `notice`); a registered chat model always in its own words."
    )
    stream: bool = False
    model: str | None = Field(None, min_length=1, max_length=300,
                              description="The generator to answer with (GET /v1/models); null: the workspace's own.")


class CitationOut(Response):
    doc_id: str
    title: str
    chunk_id: int
    rank: int
    start: int = Field(description="Document offset of the quoted span.")
    end: int
    quote: str
    score: float
    match: Literal["answer", "context"]


class PassageOut(Response):
    doc_id: str
    chunk_id: int
    title: str
    start: int
    end: int
    score: float
    scores: dict[str, float]
    relevant: bool
    in_prompt: bool
    text: str


class Usage(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AnswerTimings(Response):
    retrieval_ms: float
    first_token_ms: float | None = Field(None, description="From the end of retrieval to the first token.")
    generation_ms: float | None = None
    tokens_per_s: float | None = None


AnswerMode = Literal["extractive", "generative"]
MODE_DESCRIPTION = ("extractive: the answer is a span copied from the passages by the extractive reader (see "
                    "`sentence`); generative: the model's own words "
                    "(a chat model's cite passages as [n]).")
NOTICE_DESCRIPTION = ("Why the answer is not what was asked for, e.g. a model that fails the generation quality gate "
                      "(held-out perplexity above a tenth of its vocabulary) answered extractively, or the reader "
                      "ran without its spaCy pipeline.")


class AnswerSentenceOut(Response):
    text: str = Field(description="The sentence that contains the answer, as stored (what a citation quotes).")
    doc_id: str
    chunk_id: int
    start: int = Field(description="Document offset of the sentence (the stored text, as citations count).")
    end: int
    span_start: int = Field(description="Document offset of the answer span: start <= span_start < span_end <= end.")
    span_end: int


SENTENCE_DESCRIPTION = ("For an extractive answer: the sentence that contains it, with the document offsets of the "
                        "sentence and of the answer inside it. null for generative answers and when nothing "
                        "relevant was found.")


class AnswerExampleOut(Response):
    text: str = Field(description="The code block, as stored (cut at a line end after 2,000 characters).")
    doc_id: str
    chunk_id: int = Field(description="The chunk the answer's sentence is in (the block is in its document).")
    start: int = Field(description="Document offset of the block.")
    end: int


EXAMPLE_DESCRIPTION = ("For an extractive answer to a how-to question (\"How do I ...?\"): the code block that the "
                       "answer's sentence is in or introduces (a literal block, a fenced or indented code block, an "
                       "HTML <pre>), e.g. the command under \"The following command enables versioning:\". null "
                       "otherwise, and for documents with no such block (plain text has none).")


class AnswerResponse(Response):
    answer: str = Field(description="The answer. Extractive: the span read from a passage, or its qualified name when it "
                        "names a member that a module's page defines (\"pty.spawn\" for the span \"spawn\"); the "
                        "citation and `sentence` quote the stored words.")
    grounded: bool = Field(description="False when retrieval found nothing relevant and the answer says so.")
    citations: list[CitationOut]
    passages: list[PassageOut]
    model: str | None
    finish_reason: str
    usage: Usage
    timings: AnswerTimings
    mode: AnswerMode = Field("extractive", description=MODE_DESCRIPTION)
    notice: str | None = Field(None, description=NOTICE_DESCRIPTION)
    sentence: AnswerSentenceOut | None = Field(None, description=SENTENCE_DESCRIPTION)
    example: AnswerExampleOut | None = Field(None, description=EXAMPLE_DESCRIPTION)


# ---- documents ----------------------------------------------------------------------------------
class DocumentIn(Request):
    id: DocId
    text: str = Field(..., min_length=1, max_length=10_000_000)
    title: str = Field("", max_length=1000)
    metadata: dict[Annotated[str, StringConstraints(min_length=1, max_length=100)], Scalar] = Field(
        default_factory=dict, max_length=64)


class UpsertRequest(Request):
    documents: list[DocumentIn] = Field(..., min_length=1, max_length=1000)


class IngestOut(Response):
    added: int
    changed: int
    removed: int
    unchanged: int
    chunks_embedded: int
    chunks_total: int
    documents_total: int
    seconds: float


class UpsertResponse(Response):
    ids: list[str]
    report: IngestOut
    job: JobOut | None = Field(None, description="The committed write job (the same one an Idempotency-Key names).")


class DeleteResponse(Response):
    deleted: str
    report: IngestOut
    job: JobOut | None = Field(None, description="The committed write job (the same one an Idempotency-Key names).")


class ChunkRef(Response):
    chunk_id: int
    start: int
    end: int


class DocumentOut(Response):
    id: str
    title: str
    text: str
    sha256: str
    source: str
    metadata: dict[str, Any]
    chunks: list[ChunkRef]


# ---- jobs ---------------------------------------------------------------------------------------
class ReindexRequest(Request):
    embedder: str | None = Field(None, max_length=1000, description="Embedder name or directory to re-embed with.")
    ner: bool = Field(True, description="Extract entities of chunks not yet enriched.")


class JobOut(Response):
    id: str
    kind: Literal["upsert", "delete", "reindex"]
    state: Literal["queued", "running", "committed", "failed"] = Field(
        description="queued -> running -> committed (the write is in the active index) or failed (nothing of it "
        "was written; `error` says why).")
    progress: float = Field(ge=0, le=1)
    created_at: float
    started_at: float | None
    finished_at: float | None
    counts: dict[str, Any] | None = Field(description="The ingest report once committed.")
    error: ErrorDetail | None = Field(description="Why the job failed.")
    generation: str | None = Field(None, description="The index generation active once the job committed.")
    ids: list[str] = Field(default_factory=list, description="The documents the write adds, replaces or deletes.")


# ---- entities -----------------------------------------------------------------------------------
class EntityCount(Response):
    label: str
    value: str
    count: int


class EntitiesResponse(Response):
    label: str | None
    entities: list[EntityCount]


# ---- workspace ----------------------------------------------------------------------------------
class WorkspaceEntities(Response):
    distinct: int = Field(description="Distinct (label, value) pairs in the active corpus.")
    mentions: int
    informative: int = Field(description="Pairs shown as facets (the rest look like code, common words or noise).")
    labels: dict[str, int] = Field(description="Label -> informative values, most first.")


class GgufTypeOut(Response):
    type: str
    file: str
    size_bytes: int


class WorkspaceGenerator(Response):
    model: str | None = Field(description="The served model id; null when no generator is loaded.")
    loaded: bool
    source: str | None = Field(description="The LM checkpoint the GGUF files were exported from.")
    lm_args: dict[str, Any] = Field(description="dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len.")
    gguf_types: list[GgufTypeOut] = Field(description="The quantization types of the export.")
    problem: str | None


class ExampleQuery(Response):
    query: str
    kind: Literal["title", "entity"]
    filter: str | None = Field(None, description="LABEL:value to filter by (entity examples).")


class WorkspaceResponse(Response):
    documents: int
    chunks: int
    index: str | None = Field(description="The active index generation.")
    embedder: str | None
    embedding_dim: int | None
    ner: str | None
    entities: WorkspaceEntities
    generator: WorkspaceGenerator
    examples: list[ExampleQuery] = Field(description="Queries taken from the corpus: document titles, top entities.")
    problems: list[str]


# ---- health -------------------------------------------------------------------------------------
class Health(Response):
    status: Literal["ok"]


class CapabilityOut(Response):
    ready: bool
    problems: list[str]


class Readiness(Response):
    ready: bool = Field(description="Every capability in `need` is ready.")
    need: list[str] = Field(description="The capabilities this answer is about (the `need` query parameter).")
    capabilities: dict[str, CapabilityOut] = Field(description="search and answers, each with its reasons.")
    index: dict[str, Any] | None
    generator: dict[str, Any] | None
    ner: str | None
    problems: list[str] = Field(description="Why the capabilities in `need` are not ready (and NER, never blocking).")


# ---- OpenAI-compatible --------------------------------------------------------------------------
class ChatMessage(Request):
    role: Literal["system", "user", "assistant", "developer"]
    content: str = Field(..., max_length=100_000)
    name: str | None = Field(None, max_length=100)


class StreamOptions(Request):
    include_usage: bool = False


class ChatRequest(Request):
    model: str = Field(..., min_length=1, max_length=300)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=100)
    max_tokens: Annotated[int, Field(ge=1, le=2048), BeforeValidator(_integral)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=2048), BeforeValidator(_integral)] | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None = Field(None, max_length=4)
    n: Int = Field(1, ge=1, le=1, description="Only one choice is generated.")
    seed: Int | None = None
    user: str | None = Field(None, max_length=300)
    rag: bool = Field(True, description="ragkiln: answer over the index (retrieved passages in the prompt).")
    k: Int = Field(5, ge=1, le=50, description="ragkiln: passages retrieved when rag is on.")
    filters: Filters | None = None


class ChatChoiceMessage(Response):
    role: Literal["assistant"]
    content: str


class ChatChoice(Response):
    index: int
    message: ChatChoiceMessage
    finish_reason: str


class ChatResponse(Response):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    citations: list[CitationOut] = Field(default_factory=list, description="ragkiln: spans supporting the answer.")
    mode: AnswerMode | None = Field(None, description="ragkiln: " + MODE_DESCRIPTION)
    notice: str | None = Field(None, description="ragkiln: " + NOTICE_DESCRIPTION)


class EmbeddingsRequest(Request):
    input: str | list[Annotated[str, StringConstraints(max_length=100_000)]] = Field(..., max_length=100_000)
    model: str = Field(..., min_length=1, max_length=300)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1, le=100_000), BeforeValidator(_integral)] | None = None
    user: str | None = Field(None, max_length=300)


class EmbeddingItem(Response):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingUsage(Response):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(Response):
    object: Literal["list"]
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class ModelCard(Response):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    kind: Literal["generator", "embedder"]
    format: Literal["ragkiln", "chat"] | None = Field(
        None, description="ragkiln (generators): its QA prompt format, or a chat model answering through its own "
        "chat template.")
    generative: bool | None = Field(None, description="ragkiln (generators): may answer in its own words; false: "
                                    "extractive answers only (the generation quality gate).")
    gate: str | None = Field(None, description="ragkiln (generators): why.")


class ModelList(Response):
    object: Literal["list"]
    data: list[ModelCard]

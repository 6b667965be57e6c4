"""Training data: corpus chunks cut into target windows, optional retrieved-neighbour prefixes, memmapped.

Each example is one target window of at most `target_len` tokens from a chunk, plus (retrieval mode)
a prefix of `<ctx> neighbour </ctx>` blocks from *other* documents. Both are stored in fixed-width
int32 memory-mapped .npy arrays so training reads batches without holding the corpus in RAM:

    targets.npy  (N, target_len)   target tokens, right-padded with -1
    prefix.npy   (N, prefix_len)   neighbour prefix tokens, right-padded with -1 (prefix_len may be 0)
    lens.npy     (N, 2)            [target length, prefix length] per row
    context_mask.npy (N, prefix_len) retrieval mode: 1 where `context_loss` may score a prefix token
                                   (never a marker; a passage past its rows cap, DataSpec.repeats: 0)
    loss_mask.npy (N, target_len)  optional: 1 where a target token is scored (packed QA rows score
                                   answers, not the questions between them); absent = all scored
    meta.json                      shapes, counts and how the data was made

The held-out split is by document (a document's chunks are all train or all held-out), chosen by a
seeded hash of the document id so it is stable across runs and machines. Training rows take their
neighbours from training documents only (`Neighbours.excluding`), so no held-out text is trained on.

Training may score the neighbour tokens too (`batch(..., context_loss=True)`; the `<ctx>` markers are
never scored): the prefix is already in the forward pass, and predicting a neighbour after a related
one is next-token prediction with a relevant context. Held-out perplexity scores targets only.
Popular passages are every row's neighbours, and a chunk's windows share one prefix, so without a cap
the same passage is scored dozens of times an epoch (SciFact: median 7, the top ones 30-54) while
each target is scored once. `DataSpec.context_exposures` caps the times a passage is expected to be scored
over the whole run (its first K rows score it, K = exposures / epochs): 4 exposures cut the small preset's
SciFact dev perplexity with context from 162 to 146, while every cap tried cost the tiny model, which cannot
memorise the passages, so the default is by preset (trainer.lm.service.PRESET_CONTEXT_EXPOSURES;
bench/results/lm-context-cap-dev.json).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from common.errors import ArtifactCorrupt, InvalidInput, NotFound
from trainer.lm.tokenizer import BOS_ID, Tokenizer

if TYPE_CHECKING:  # torch is imported where a batch is made: what only reads or writes LM data loads a second sooner
    import torch


class ChunkLike(Protocol):
    doc_id: str
    text: str


Neighbours = Callable[[ChunkLike], list[str]]
"""Passage texts for a chunk, from other documents. A callable may also offer `excluding(doc_ids)`, the
same retriever that never returns those documents (what `searcher_neighbours` returns does)."""

MARKERS = (3, 4)  # <ctx>, </ctx> (fixed special ids, trainer/lm/tokenizer.py): structure, never scored


def excluding(neighbours: Neighbours, doc_ids: set[str]) -> Neighbours:
    """`neighbours` that never returns `doc_ids` (the held-out documents, for training rows) where it can."""
    narrowed = getattr(neighbours, "excluding", None)
    return narrowed(doc_ids) if (narrowed is not None and doc_ids) else neighbours


def heldout_doc_ids(doc_ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """Documents put aside for held-out evaluation: a seeded hash decides, at least one each side."""
    if not 0.0 < fraction < 1.0:
        raise InvalidInput(f"held-out fraction must be in (0, 1), got {fraction}")
    ids = sorted(set(doc_ids))
    if len(ids) < 2:
        raise InvalidInput(f"need at least 2 documents for a held-out split by document, got {len(ids)}")

    def u(d: str) -> float:
        h = hashlib.sha256(f"{seed}:{d}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    scored = sorted(ids, key=u)
    n = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    return set(scored[:n])


def context_prefix(tokenizer: Tokenizer, passages: Sequence[str], passage_len: int) -> list[int]:
    """`<ctx> passage </ctx>` blocks, each passage cut to `passage_len` tokens."""
    out: list[int] = []
    for p in passages:
        out += [tokenizer.ctx_open, *tokenizer.encode(p)[:passage_len], tokenizer.ctx_close]
    return out


@dataclass(frozen=True)
class DataSpec:
    target_len: int = 128
    n_neighbours: int = 2
    neighbour_len: int = 96
    context_exposures: float = 0.0  # times a passage's tokens may be scored over the run; 0: every row it prefixes
    context_repeats: int = 0  # a fixed cap of rows per passage instead (overrides context_exposures when > 0)

    def repeats(self, rows: int, rows_trained: int) -> int:
        """Rows that may score one passage: its expected exposures over the run divided by the epochs."""
        if self.context_repeats > 0:
            return self.context_repeats
        if self.context_exposures <= 0 or rows_trained <= 0 or rows <= 0:
            return 0
        return max(1, round(self.context_exposures * rows / rows_trained))

    @property
    def prefix_len(self) -> int:
        return self.n_neighbours * (self.neighbour_len + 2)

    @property
    def max_row(self) -> int:
        """Model inputs per row: BOS + prefix + target, minus the last token (it is only a target)."""
        return self.prefix_len + self.target_len


def build_dataset(
    chunks: Iterable[ChunkLike],
    tokenizer: Tokenizer,
    out_dir: Path,
    spec: DataSpec,
    neighbours: Neighbours | None,
    rows_trained: int = 0,
) -> dict[str, int]:
    """Tokenise chunks into target windows (with neighbour prefixes when `neighbours` is given).

    `neighbours(chunk)` returns passage texts for the chunk; the caller guarantees they come from
    other documents (see `searcher_neighbours`). `rows_trained` (steps x batch) sizes the context cap
    (`DataSpec.repeats`). Returns counts written to meta.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    P = spec.prefix_len if neighbours is not None else 0
    targets: list[np.ndarray] = []
    prefixes: list[np.ndarray] = []
    lens: list[tuple[int, int]] = []
    n_chunks = 0
    for chunk in chunks:
        ids = tokenizer.encode(chunk.text)
        if not ids:
            continue
        n_chunks += 1
        prefix: list[int] = []
        if neighbours is not None:
            prefix = context_prefix(tokenizer, neighbours(chunk)[: spec.n_neighbours], spec.neighbour_len)[:P]
        for s in range(0, len(ids), spec.target_len):
            window = ids[s : s + spec.target_len]
            row_t = np.full(spec.target_len, -1, dtype=np.int32)
            row_t[: len(window)] = window
            row_p = np.full(P, -1, dtype=np.int32)
            row_p[: len(prefix)] = prefix
            targets.append(row_t)
            prefixes.append(row_p)
            lens.append((len(window), len(prefix)))
    if not targets:
        raise InvalidInput("no text to train on: every chunk was empty")
    _write(out_dir / "targets.npy", np.stack(targets))
    _write(out_dir / "prefix.npy", np.stack(prefixes) if P else np.zeros((len(targets), 0), np.int32))
    _write(out_dir / "lens.npy", np.asarray(lens, dtype=np.int32))
    repeats = spec.repeats(len(targets), rows_trained) if P else 0
    scored_times: dict[bytes, int] = {}  # passage tokens -> rows that score them so far, in data order
    ctx_masks = [context_mask(row_p, repeats, scored_times) for row_p in prefixes] if P else []
    if P:
        _write(out_dir / "context_mask.npy", np.stack(ctx_masks))
    meta = {
        "rows": len(targets),
        "chunks": n_chunks,
        "target_tokens": int(sum(t for t, _ in lens)),
        "target_len": spec.target_len,
        "prefix_len": P,
        "n_neighbours": spec.n_neighbours if neighbours is not None else 0,
        "neighbour_len": spec.neighbour_len,
        "context_exposures": spec.context_exposures,
        "context_repeats": repeats,
        "context_tokens_scorable": int(sum(int(m.sum()) for m in ctx_masks)),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def context_mask(prefix: np.ndarray, repeats: int, scored_times: dict[bytes, int]) -> np.ndarray:
    """(P,) uint8: the neighbour tokens this row may score; counts each passage it scores in `scored_times`."""
    mask = np.zeros(len(prefix), dtype=np.uint8)
    start = None
    for j, t in enumerate(prefix.tolist()):
        if t == MARKERS[0]:
            start = j + 1
        elif t == MARKERS[1] and start is not None:
            key = prefix[start:j].tobytes()
            if repeats <= 0 or scored_times.get(key, 0) < repeats:
                mask[start:j] = 1
                scored_times[key] = scored_times.get(key, 0) + 1
            start = None
    return mask


def _write(path: Path, arr: np.ndarray) -> None:
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32, shape=arr.shape)
    mm[:] = arr
    mm.flush()
    del mm


def concat_datasets(parts: Sequence[Path], out_dir: Path, meta: dict[str, object] | None = None) -> dict[str, object]:
    """One dataset of every part's rows, in order, each array padded to the widest part.

    Rows keep what they score: a part with `loss_mask.npy` (QA) keeps it, a part without (LM text)
    scores its whole target. The result always has a loss mask, so no neighbour token is scored
    (`LmDataset.row_context_tokens`): mixed QA tuning trains targets only."""
    loaded = [LmDataset(p) for p in parts]
    T = max(d.targets.shape[1] for d in loaded)
    P = max(d.prefix.shape[1] for d in loaded)
    n = sum(len(d) for d in loaded)
    tgt = np.full((n, T), -1, np.int32)
    pre = np.full((n, P), -1, np.int32)
    msk = np.zeros((n, T), np.int32)
    lens = np.zeros((n, 2), np.int32)
    i = 0
    for d in loaded:
        m, t, p = len(d), d.targets.shape[1], d.prefix.shape[1]
        tgt[i : i + m, :t], pre[i : i + m, :p], lens[i : i + m] = d.targets, d.prefix, d.lens
        if d.loss_mask is not None:
            msk[i : i + m, :t] = d.loss_mask
        else:
            msk[i : i + m, :t] = np.arange(t)[None, :] < np.asarray(d.lens[:, :1])
        i += m
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, arr in (("targets", tgt), ("prefix", pre), ("lens", lens), ("loss_mask", msk)):
        _write(out_dir / f"{name}.npy", arr)
    out = {**(meta or {}), "rows": n, "target_tokens": int(msk.sum()), "target_len": T, "prefix_len": P,
           "longest_row": int(lens.sum(axis=1).max()), "parts": [d.meta for d in loaded]}
    (out_dir / "meta.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


class LmDataset:
    """Memory-mapped examples; `batch` assembles model rows with or without the context prefix."""

    def __init__(self, directory: Path) -> None:
        d = Path(directory)
        if not (d / "meta.json").exists():
            raise NotFound(f"no LM dataset in {d}")
        try:
            self.meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            self.targets = np.load(d / "targets.npy", mmap_mode="r")  # (N, Tt)
            self.prefix = np.load(d / "prefix.npy", mmap_mode="r")  # (N, P)
            self.lens = np.load(d / "lens.npy", mmap_mode="r")  # (N, 2)
            self.loss_mask = np.load(d / "loss_mask.npy", mmap_mode="r") if (d / "loss_mask.npy").exists() else None
            # absent (datasets written before the cap): every neighbour token may be scored
            self.context_mask = (np.load(d / "context_mask.npy", mmap_mode="r")
                                 if (d / "context_mask.npy").exists() else None)
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise ArtifactCorrupt(f"LM dataset {d} is unreadable: {e}") from e
        if not (len(self.targets) == len(self.prefix) == len(self.lens) == self.meta["rows"]):
            raise ArtifactCorrupt(f"LM dataset {d} has inconsistent array lengths")
        if self.loss_mask is not None and self.loss_mask.shape != self.targets.shape:
            raise ArtifactCorrupt(f"LM dataset {d}: loss_mask.npy does not match targets.npy")
        if self.context_mask is not None and self.context_mask.shape != self.prefix.shape:
            raise ArtifactCorrupt(f"LM dataset {d}: context_mask.npy does not match prefix.npy")
        # Scored tokens per row: the training loop normalises each step's loss by their sum.
        self.row_loss_tokens = (np.asarray(self.lens[:, 0]) if self.loss_mask is None
                                else (np.asarray(self.loss_mask) > 0).sum(axis=1))
        # Neighbour tokens a row adds to the loss under `context_loss` (not the markers; none for QA rows).
        pre = np.asarray(self.prefix)
        if self.loss_mask is not None:
            self.row_context_tokens = np.zeros(len(pre), np.int64)
        elif self.context_mask is not None:
            self.row_context_tokens = (np.asarray(self.context_mask) > 0).sum(axis=1)
        else:
            self.row_context_tokens = ((pre >= 0) & ~np.isin(pre, MARKERS)).sum(axis=1)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def has_context(self) -> bool:
        return self.prefix.shape[1] > 0

    def loss_tokens(self, indices: np.ndarray, with_context: np.ndarray, context_loss: bool) -> float:
        """Tokens `batch(indices, with_context, context_loss)` scores (the step's loss normaliser)."""
        n = self.row_loss_tokens[indices].sum()
        if context_loss and self.has_context:
            n += self.row_context_tokens[indices][np.asarray(with_context, dtype=bool)].sum()
        return float(n)

    def batch(
        self, indices: Sequence[int], with_context: bool | Sequence[bool], context_loss: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, mask), each (B, T): inputs, next-token targets (-1 = pad) and the loss mask.

        Rows are `<s> [prefix] target`, right-padded, so padding never influences earlier positions.
        The mask covers the target tokens; with `context_loss` also the prefix's neighbour tokens
        (not its `<ctx>` `</ctx>` markers; never for QA rows, whose loss_mask decides).
        """
        import torch

        ctx = [with_context] * len(indices) if isinstance(with_context, bool) else list(with_context)
        rows: list[tuple[list[int], int]] = []
        for i, c in zip(indices, ctx):
            t_len, p_len = (int(v) for v in self.lens[i])
            pre = self.prefix[i, :p_len].tolist() if (c and self.has_context) else []
            rows.append(([BOS_ID, *pre, *self.targets[i, :t_len].tolist()], 1 + len(pre)))
        T = max(len(r) for r, _ in rows) - 1
        x = torch.zeros(len(rows), T, dtype=torch.long)  # (B, T) pad id 0 (<unk>), masked out anyway
        y = torch.full((len(rows), T), -1, dtype=torch.long)  # (B, T)
        mask = torch.zeros(len(rows), T, dtype=torch.bool)  # (B, T)
        for b, ((row, start), i) in enumerate(zip(rows, indices)):
            n = len(row) - 1
            x[b, :n] = torch.tensor(row[:-1])
            y[b, :n] = torch.tensor(row[1:])
            mask[b, start - 1 : n] = True  # positions whose next token is a target token
            if self.loss_mask is not None:
                mask[b, start - 1 : n] &= torch.from_numpy(self.loss_mask[i, : n - start + 1] > 0)
            elif context_loss and start > 1:  # positions whose next token is a neighbour token
                if self.context_mask is not None:  # position j predicts prefix token j
                    mask[b, : start - 1] = torch.from_numpy(self.context_mask[i, : start - 1] > 0)
                else:
                    nxt = y[b, : start - 1]
                    mask[b, : start - 1] = ~((nxt == MARKERS[0]) | (nxt == MARKERS[1]))
        return x, y, mask


class SearcherNeighbours:
    """Neighbours from the workspace index, never from the chunk's own document (nor from `exclude`).

    The Searcher is asked to exclude the documents; hits from them are dropped again here so a searcher
    that ignores the exclusion cannot leak the target (or a held-out document) into a training row.
    """

    def __init__(self, searcher: object, k: int, mode: str = "hybrid", query_chars: int = 1000,
                 exclude: frozenset[str] = frozenset()) -> None:
        self.searcher, self.k, self.mode, self.query_chars, self.exclude = searcher, k, mode, query_chars, exclude

    def __call__(self, chunk: ChunkLike) -> list[str]:
        banned = {chunk.doc_id, *self.exclude}
        hits = self.searcher.search(  # type: ignore[attr-defined]
            chunk.text[: self.query_chars], k=self.k, mode=self.mode, exclude_doc_ids=banned
        )
        return [h.chunk.text for h in hits if h.chunk.doc_id not in banned][: self.k]

    def excluding(self, doc_ids: Iterable[str]) -> "SearcherNeighbours":
        return SearcherNeighbours(self.searcher, self.k, self.mode, self.query_chars, self.exclude | frozenset(doc_ids))


def searcher_neighbours(searcher: object, k: int, mode: str = "hybrid", query_chars: int = 1000) -> SearcherNeighbours:
    """Neighbours from the workspace index, never from the chunk's own document (see SearcherNeighbours)."""
    return SearcherNeighbours(searcher, k, mode, query_chars)

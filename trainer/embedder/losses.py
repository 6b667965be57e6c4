"""MNRL plus listwise distillation of our own hybrid ranking into the dense model.

On technical corpora BM25 beats the base embedder and their fusion beats both (SciFact: dense 0.645,
BM25 0.686, hybrid 0.717 nDCG@10). Hard-negative MNRL only tells the model "the source chunk, not
these"; the hybrid teacher's graded scores over each query's index candidates also say which of the
others are nearly right, the knowledge the dense model lacks (cf. RocketQAv2's listwise distillation
and SPAR's dense imitation of a sparse retriever). The MNRL term keeps the pseudo-query's own chunk
on top, so the student does not merely copy BM25.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MNRL_SCALE = 20.0  # the student's inverse temperature, as in MultipleNegativesRankingLoss


class MnrlDistillLoss(nn.Module):
    """Columns (anchor, positive, candidate_1..n); labels (batch, n): the teacher's candidate scores.

    With `include_positive` the KL runs over (positive, candidates), the positive scored 1. With `residual`
    the labels are (batch, 2n + 1): the n teacher scores, then BM25's offsets (cosine units) of the positive
    and of the n candidates, added to the student's scores as the served fusion adds BM25: the dense model
    learns what the fusion still lacks (CLEAR, Gao et al. 2021). In-batch negatives, other queries' positives,
    get no offset: BM25 seldom scores an unrelated chunk.
    """

    def __init__(self, model: nn.Module, teacher_temperature: float = 0.05, weight: float = 1.0,
                 gather_across_devices: bool = False, include_positive: bool = False, residual: bool = False) -> None:
        super().__init__()
        self.model = model
        self.residual = residual
        self.teacher_temperature = teacher_temperature
        self.weight = weight
        # The positive joins the distilled list at the top of the teacher's scale (1: it is known relevant),
        # so the student also learns by how much it beats each candidate (GPL's margins, listwise).
        self.include_positive = include_positive
        self.gather_across_devices = gather_across_devices  # DDP: every rank's positives are in-batch negatives

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        emb = [F.normalize(e, dim=-1) for e in embed_columns(self.model, sentence_features)]
        n = len(emb) - 2
        teacher, offsets = (labels[:, :n], labels[:, n:]) if self.residual else (labels, None)
        return self.loss_from_embeddings(emb[0], emb[1], torch.stack(emb[2:], dim=1), teacher, offsets)

    def loss_from_embeddings(self, q: Tensor, pos: Tensor, cands: Tensor, teacher: Tensor,
                             offsets: Tensor | None = None) -> Tensor:
        """q, pos: (B, D) unit vectors; cands: (B, n, D); teacher: (B, n) scores in [0, 1]; offsets: (B, 1 + n)."""
        if cands.size(1) < 2 or teacher.shape != cands.shape[:2]:
            raise ValueError(f"need >= 2 candidates and teacher scores shaped {tuple(cands.shape[:2])}, "
                             f"got {tuple(teacher.shape)}")
        if offsets is not None and offsets.shape != (cands.size(0), cands.size(1) + 1):
            raise ValueError(f"BM25 offsets must be shaped {(cands.size(0), cands.size(1) + 1)}, got {tuple(offsets.shape)}")
        # In-batch MNRL on (anchor, positive): the candidates may be relevant, so they are not negatives here.
        offset = 0
        if self.gather_across_devices:
            from sentence_transformers.util import all_gather_with_grad, get_rank

            pos = all_gather_with_grad(pos)                               # (W*B, D), gradients flow home
            offset = get_rank() * q.size(0)
        logits = q @ pos.T * MNRL_SCALE                                   # (B, W*B)
        own_col = torch.arange(offset, offset + q.size(0), device=q.device)  # (B,) each query's positive
        student = torch.einsum("bd,bnd->bn", q, cands) * MNRL_SCALE       # (B, n)
        if offsets is not None:
            offsets = offsets.detach().to(logits.dtype) * MNRL_SCALE      # (B, 1 + n)
            logits = logits.index_put((torch.arange(q.size(0), device=q.device), own_col),
                                      offsets[:, 0], accumulate=True)    # BM25 on the diagonal only
            student = student + offsets[:, 1:]
        mnrl = F.cross_entropy(logits, own_col)
        teacher = teacher.detach().float()                                # (B, n)
        if self.include_positive:
            own = (q * pos[offset:offset + q.size(0)]).sum(-1, keepdim=True) * MNRL_SCALE  # (B, 1)
            if offsets is not None:
                own = own + offsets[:, :1]
            student = torch.cat([own, student], dim=1)                   # (B, 1 + n)
            teacher = torch.cat([torch.ones_like(teacher[:, :1]), teacher], dim=1)  # (B, 1 + n)
        target = torch.softmax(teacher / self.teacher_temperature, dim=1)
        kl = F.kl_div(torch.log_softmax(student, dim=1), target, reduction="batchmean")
        return mnrl + self.weight * kl

    def get_config_dict(self) -> dict[str, Any]:
        return {"teacher_temperature": self.teacher_temperature, "weight": self.weight, "scale": MNRL_SCALE,
                "gather_across_devices": self.gather_across_devices, "include_positive": self.include_positive,
                "residual": self.residual}

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

    With `include_positive` the KL runs over (positive, candidates), the positive scored 1.
    """

    def __init__(self, model: nn.Module, teacher_temperature: float = 0.05, weight: float = 1.0,
                 gather_across_devices: bool = False, include_positive: bool = False) -> None:
        super().__init__()
        self.model = model
        self.teacher_temperature = teacher_temperature
        self.weight = weight
        # The positive joins the distilled list at the top of the teacher's scale (1: it is known relevant),
        # so the student also learns by how much it beats each candidate (GPL's margins, listwise).
        self.include_positive = include_positive
        self.gather_across_devices = gather_across_devices  # DDP: every rank's positives are in-batch negatives

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        emb = [F.normalize(e, dim=-1) for e in embed_columns(self.model, sentence_features)]
        return self.loss_from_embeddings(emb[0], emb[1], torch.stack(emb[2:], dim=1), labels)

    def loss_from_embeddings(self, q: Tensor, pos: Tensor, cands: Tensor, teacher: Tensor) -> Tensor:
        """q, pos: (B, D) unit vectors; cands: (B, n, D); teacher: (B, n) scores in [0, 1]."""
        if cands.size(1) < 2 or teacher.shape != cands.shape[:2]:
            raise ValueError(f"need >= 2 candidates and teacher scores shaped {tuple(cands.shape[:2])}, "
                             f"got {tuple(teacher.shape)}")
        # In-batch MNRL on (anchor, positive): the candidates may be relevant, so they are not negatives here.
        offset = 0
        if self.gather_across_devices:
            from sentence_transformers.util import all_gather_with_grad, get_rank

            pos = all_gather_with_grad(pos)                               # (W*B, D), gradients flow home
            offset = get_rank() * q.size(0)
        logits = q @ pos.T * MNRL_SCALE                                   # (B, W*B)
        mnrl = F.cross_entropy(logits, torch.arange(offset, offset + q.size(0), device=q.device))
        student = torch.einsum("bd,bnd->bn", q, cands) * MNRL_SCALE       # (B, n)
        teacher = teacher.detach().float()                                # (B, n)
        if self.include_positive:
            own = (q * pos[offset:offset + q.size(0)]).sum(-1, keepdim=True) * MNRL_SCALE  # (B, 1)
            student = torch.cat([own, student], dim=1)                   # (B, 1 + n)
            teacher = torch.cat([torch.ones_like(teacher[:, :1]), teacher], dim=1)  # (B, 1 + n)
        target = torch.softmax(teacher / self.teacher_temperature, dim=1)
        kl = F.kl_div(torch.log_softmax(student, dim=1), target, reduction="batchmean")
        return mnrl + self.weight * kl

    def get_config_dict(self) -> dict[str, Any]:
        return {"teacher_temperature": self.teacher_temperature, "weight": self.weight, "scale": MNRL_SCALE,
                "gather_across_devices": self.gather_across_devices, "include_positive": self.include_positive}

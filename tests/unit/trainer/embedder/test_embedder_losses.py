"""The MNRL + hybrid-distillation loss: zero distillation term when the student already agrees."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from trainer.embedder.losses import MNRL_SCALE, MnrlDistillLoss


def _unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=-1)


def test_distillation_term_vanishes_when_student_matches_teacher_and_grows_when_reversed():
    torch.manual_seed(0)
    loss = MnrlDistillLoss(model=torch.nn.Identity(), teacher_temperature=1.0 / MNRL_SCALE, weight=1.0)
    q, pos, cands = _unit(4, 8), _unit(4, 8), _unit(4, 3, 8)
    student = torch.einsum("bd,bnd->bn", q, cands)
    mnrl_only = MnrlDistillLoss(torch.nn.Identity(), weight=0.0).loss_from_embeddings(q, pos, cands, student)
    agree = loss.loss_from_embeddings(q, pos, cands, student)  # same temperature, same scores: KL = 0
    assert agree.item() == pytest.approx(mnrl_only.item(), abs=1e-5)
    reverse = loss.loss_from_embeddings(q, pos, cands, -student)
    assert reverse.item() > agree.item() + 0.1


def test_gradient_moves_the_query_toward_the_teachers_favourite():
    torch.manual_seed(1)
    loss = MnrlDistillLoss(torch.nn.Identity(), teacher_temperature=0.05, weight=1.0)
    q = _unit(2, 8).requires_grad_(True)
    pos, cands = _unit(2, 8), _unit(2, 4, 8)
    teacher = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    loss.loss_from_embeddings(q, pos, cands, teacher).backward()
    step = q.detach() - 0.1 * q.grad
    before = torch.einsum("bd,bnd->bn", q.detach(), cands)
    after = torch.einsum("bd,bnd->bn", step, cands)
    assert after[0, 0] - before[0, 0] > 0 and after[1, 3] - before[1, 3] > 0


def test_bad_label_shape_is_refused():
    loss = MnrlDistillLoss(torch.nn.Identity())
    with pytest.raises(ValueError, match="teacher scores"):
        loss.loss_from_embeddings(_unit(2, 8), _unit(2, 8), _unit(2, 3, 8), torch.zeros(2, 2))


def test_set_dropout_reaches_every_dropout_layer():
    from trainer.embedder.train import set_dropout

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1),
                                torch.nn.Sequential(torch.nn.Dropout(0.3)))
    assert set_dropout(model, 0.0) == 2
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.0, 0.0]


def test_positive_in_the_distilled_list_is_pushed_above_the_candidates():
    torch.manual_seed(2)
    q0, pos, cands = _unit(3, 8), _unit(3, 8), _unit(3, 4, 8)
    teacher = torch.full((3, 4), 0.5)  # equal candidates: only the positive's place at the top is taught

    def margin(x: torch.Tensor) -> torch.Tensor:  # (B,) positive score minus the best candidate's
        return (x * pos).sum(-1) - torch.einsum("bd,bnd->bn", x, cands).max(1).values

    gain = {}
    for include in (False, True):
        q = q0.clone().requires_grad_(True)
        MnrlDistillLoss(torch.nn.Identity(), include_positive=include).loss_from_embeddings(
            q, pos, cands, teacher).backward()
        gain[include] = margin(F.normalize(q.detach() - 0.5 * q.grad, dim=-1)) - margin(q0)
    assert (gain[True] > 0).all() and (gain[True] > gain[False]).all()


def test_residual_offsets_take_the_gradient_off_pairs_bm25_already_ranks_first():
    """A pair whose positive BM25 lifts far above the rest gets almost no MNRL gradient; one BM25 misses keeps it."""
    torch.manual_seed(3)
    q0, pos, cands = _unit(4, 8), _unit(4, 8), _unit(4, 3, 8)
    teacher = torch.rand(4, 3)
    offsets = torch.zeros(4, 4)
    offsets[:2, 0] = 1.0  # BM25 finds the first two pairs' positives (a whole cosine unit above the rest)
    norms = {}
    for residual in (False, True):
        q = q0.clone().requires_grad_(True)
        MnrlDistillLoss(torch.nn.Identity(), weight=0.0, residual=residual).loss_from_embeddings(
            q, pos, cands, teacher, offsets if residual else None).backward()
        norms[residual] = q.grad.norm(dim=-1)
    assert (norms[True][:2] < 0.05 * norms[False][:2]).all()
    assert torch.allclose(norms[True][2:], norms[False][2:], atol=1e-6)


def test_residual_labels_split_into_teacher_and_offsets(monkeypatch):
    import sentence_transformers.base.losses.merged_forward as mf

    torch.manual_seed(4)
    q, pos, cands = _unit(2, 8), _unit(2, 8), _unit(2, 3, 8)
    teacher, offsets = torch.rand(2, 3), torch.rand(2, 4)
    loss = MnrlDistillLoss(torch.nn.Identity(), residual=True)
    direct = loss.loss_from_embeddings(q, pos, cands, teacher, offsets)
    monkeypatch.setattr(mf, "embed_columns", lambda model, feats: feats)  # the embeddings stand in for the model's
    packed = loss([q, pos, *cands.unbind(1)], torch.cat([teacher, offsets], dim=1))
    assert packed.item() == pytest.approx(direct.item(), abs=1e-6)
    with pytest.raises(ValueError, match="BM25 offsets"):
        loss.loss_from_embeddings(q, pos, cands, teacher, torch.zeros(2, 3))

import pytest

from trainer.lm.schedule import lr_at


def test_warmup_then_cosine_to_floor():
    kw = dict(lr=1e-3, min_lr=1e-4, warmup=10, total=110)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(0.55e-3)
    assert lr_at(110, **kw) == pytest.approx(1e-4) and lr_at(500, **kw) == pytest.approx(1e-4)
    decay = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_no_warmup():
    assert lr_at(0, lr=1.0, min_lr=0.0, warmup=0, total=4) == pytest.approx(1.0)

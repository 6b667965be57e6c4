import math

import numpy as np
import pytest

from quantize.metrics import Agreement, kl_per_token, log_softmax, ppl_delta_pct, token_nll


def test_log_softmax_normalises_and_is_stable():
    x = np.array([[1000.0, 1000.0], [0.0, -1e4]])
    lp = log_softmax(x)
    assert np.allclose(np.exp(lp).sum(-1), 1.0)
    assert lp[0, 0] == pytest.approx(math.log(0.5))


def test_uniform_logits_give_perplexity_vocab_size():
    a = Agreement()
    logits = np.zeros((5, 7), dtype=np.float32)
    a.add(logits, logits, np.array([0, 1, 2, 3, 4]))
    assert a.ppl == pytest.approx(7.0)
    assert a.kl == 0.0 and a.top1 == 1.0 and a.tokens == 5


def test_kl_is_positive_for_different_distributions_and_top1_counts_argmax():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(4, 10))
    q = p.copy()
    q[0] += rng.normal(size=10)
    kl = kl_per_token(p, q)
    assert kl[0] > 0 and np.allclose(kl[1:], 0)
    a = Agreement()
    q2 = p.copy()
    q2[1, p[1].argmax()] -= 100  # changes the top token of row 1 only
    a.add(p, q2, np.zeros(4, dtype=int))
    assert a.top1 == pytest.approx(0.75)
    assert a.max_abs_diff == pytest.approx(100.0)


def test_nll_and_ppl_delta():
    logits = np.log(np.array([[0.5, 0.25, 0.25]]))
    assert token_nll(logits, np.array([1]))[0] == pytest.approx(math.log(4))
    assert ppl_delta_pct(10.5, 10.0) == pytest.approx(5.0)

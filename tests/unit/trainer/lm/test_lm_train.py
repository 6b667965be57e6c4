import numpy as np

from trainer.lm.train import micro_batches


def test_micro_batches_group_rows_of_similar_length_and_keep_every_row():
    lens = np.array([[10, 300], [12, 40], [8, 20], [30, 280], [9, 35], [11, 0]])  # (target, prefix)
    idx = np.array([0, 1, 2, 3, 4, 5])
    ctx = np.array([True, True, True, True, True, False])
    parts = micro_batches(idx, ctx, lens, 2)
    assert sorted(int(i) for p, _ in parts for i in p) == idx.tolist()  # each row once
    assert [sorted(p.tolist()) for p, _ in parts] == [[2, 4, 5], [0, 1, 3]]  # short rows together
    for p, c in parts:
        assert c.tolist() == ctx[p].tolist()  # each row keeps its context flag
    # without its prefix a long row is short
    short = micro_batches(idx, np.zeros(6, bool), lens, 3)
    assert sorted(short[-1][0].tolist()) == [1, 3]
    assert len(micro_batches(idx, ctx, lens, 1)[0][0]) == 6

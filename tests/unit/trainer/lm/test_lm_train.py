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


def test_bf16_auto_follows_the_cpu(monkeypatch):
    """Emulated bf16 (AVX2 only) ran a small-preset step 30x slower than fp32, so 'auto' needs native bf16."""
    import indexer.embedder
    from common.settings import LmConfig
    from trainer.lm.service import train_config

    for native in (True, False):
        monkeypatch.setattr(indexer.embedder, "bf16_supported", lambda native=native: native)
        assert train_config(LmConfig()).bf16 is native
        assert train_config(LmConfig(bf16=True)).bf16 is True and train_config(LmConfig(bf16=False)).bf16 is False


def test_default_recipe_is_the_same_at_every_preset_and_qa_tuning_scores_answers_only():
    """Presets size the model and its steps; the recipe (copy-circuit init, neighbour tokens scored) is one."""
    from common.settings import LmConfig
    from trainer.lm.service import PRESET_STEPS, train_config

    for preset in PRESET_STEPS:
        cfg = LmConfig(preset=preset)
        assert cfg.init == "induction" and train_config(cfg).context_loss is True
        assert train_config(cfg).steps == PRESET_STEPS[preset]
    assert train_config(LmConfig(context_loss=False)).context_loss is False
    assert train_config(LmConfig(), context_mix=1.0, context_loss=False).context_loss is False  # what QA runs get


def test_learning_rate_shrinks_with_the_model_and_an_explicit_one_wins():
    from common.settings import LmConfig
    from pipeline.build import PRESETS
    from trainer.lm.service import train_config

    rates = [train_config(LmConfig(preset=p)).lr for p in ("tiny", "small", "base")]
    assert rates == sorted(rates, reverse=True) and rates[0] == 3e-3 and rates[1] == 1e-3
    assert train_config(LmConfig(preset="small")).min_lr == rates[1] / 10
    cfg = train_config(LmConfig(preset="small", lr=2e-3, min_lr=0.0))
    assert (cfg.lr, cfg.min_lr) == (2e-3, 0.0)
    qa = train_config(LmConfig(preset="small"), lr_scale=0.3)  # QA tuning: the floor scales with the peak
    assert abs(qa.lr - 3e-4) < 1e-12 and abs(qa.min_lr - 3e-5) < 1e-12
    assert train_config(LmConfig(preset="small", min_lr=5e-4), lr_scale=0.3).min_lr == qa.lr  # never above it
    # build presets size the LM; they never pick its recipe
    for preset in PRESETS.values():
        assert not {"lr", "min_lr", "init", "context_loss", "retrieval_mode"} & set(preset.get("lm", {}))

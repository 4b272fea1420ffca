"""DeepAVFusion's separation recipes (config/recipe/deepavfusion_avsrcsep*): the seed's README run (the learning rate
from its base rate and global batch, its STFT, ratio masks with weighted BCE) and the tiny AVSynth variant on the
shared separation slow test's data and schedule. Their ``--dry-run``: test_deepavfusion_recipes.py."""

from __future__ import annotations

import pytest

from avlearn.config import compose_run


def test_the_paper_recipe_is_the_seeds_readme_run():
    cfg = compose_run(["recipe=deepavfusion_avsrcsep"])
    t, task, m, d = cfg.train, cfg.task, cfg.method, cfg.data
    assert t.lr == pytest.approx(3e-4 * 16 * 8 * 4 / 256)  # blr x (batch 16 x accumulation 8 x 4 GPUs) / 256
    assert (t.batch_size, t.epochs, t.warmup_epochs, t.optimizer, t.weight_decay) == (512, 300, 40, "adamw", 0.05)
    assert (t.schedule, t.min_lr_ratio, t.grad_clip, t.precision, t.init_only) == ("cosine", 0.0, 0.0, "fp32",
                                                                                    "method")  # fmt: skip
    assert (m.name, cfg.backbone.name, m.attn_ratio, m.mlp_ratio, m.pretrain) == ("deepavfusion", "deepavfusion",
                                                                                   0.25, 1.0, False)  # fmt: skip
    assert (task.name, task.head, task.seed_layers, task.train_seconds) == ("separate", "avsrcsep_seed", None, 0)
    assert (task.sample_rate, task.n_fft, task.hop_length) == (16000, 800, 250)  # the seed's SpectrogramMasking STFT
    assert (task.mask, task.weighted_loss, task.faithful) == ("ratio", True, False)  # binary_mask=False, targets fixed
    assert (d.name, d.frame_size, d.n_mels, d.sample_rate, task.mel_rate) == ("vggsound", 224, 128, 16000, 16000)


def test_the_tiny_recipe_is_the_shared_slow_tests_data_and_schedule():
    cfg = compose_run(["recipe=deepavfusion_avsrcsep_tiny"])
    t, d = cfg.train, cfg.data
    assert (d.name, d.clips, d.size, d.frame_size, d.n_mels) == ("avsynth", 300, 32, 32, 32)
    assert (t.epochs, t.batch_size, t.lr, t.val_every, t.optimizer) == (25, 8, 2e-3, 150, "adamw")  # as its test
    assert (cfg.method.name, cfg.backbone.name) == ("deepavfusion_tiny", "deepavfusion_tiny")
    assert (cfg.task.head, cfg.task.train_seconds, cfg.task.faithful) == ("avsrcsep_seed", 0, False)

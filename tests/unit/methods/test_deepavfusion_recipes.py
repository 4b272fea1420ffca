"""DeepAVFusion's recipes (config/recipe/deepavfusion_*): the seed's README numbers (the learning rate from its
base rate and global batch), the towers-only lr ramp of the pretraining recipes, ``--dry-run`` of every recipe, and
the tiny recipes against the measured runs they stand for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from avlearn.cli.main import main
from avlearn.config import compose_run
from avlearn.config.compose import group_options

# The AVSBench recipes dry-run without data: their own tests/unit/methods/test_deepavfusion_avsbench_recipes.py
RECIPES = sorted(r for r in group_options("recipe") if r.startswith("deepavfusion_") and "_avsbench_" not in r)
PAPER = [r for r in RECIPES if not r.endswith("_tiny")]
PRETRAIN_TEST = Path(__file__).parents[2] / "integration" / "test_deepavfusion_pretrain_learning.py"

# The seed's README runs (spec sections 3.1-3.3, 3.6): base lr, global batch (per GPU x accumulation x GPUs), epochs,
# warmup, optimizer, weight decay, fusion block (attn_ratio, mlp_ratio), task and data.
SEED = {
    "deepavfusion_pretrain_vggsound": (1.5e-4, 64 * 1 * 8, 200, 40, "adamw", 0.05, (0.25, 1.0), "pretrain", "vggsound"),
    "deepavfusion_pretrain_audioset": (1.5e-4, 64 * 4 * 8, 200, 40, "adamw", 0.05, (1.0, 4.0), "pretrain", "audioset"),
    "deepavfusion_linprobe_vggsound": (0.3, 64 * 4 * 4, 60, 10, "lars", 0.0, (0.25, 1.0), "linear", "vggsound"),
    "deepavfusion_linprobe_audioset": (0.3, 256 * 1 * 2, 300, 20, "lars", 0.0, (1.0, 4.0), "linear", "audioset"),
    "deepavfusion_finetune_vggsound": (3e-4, 32 * 4 * 4, 100, 20, "adamw", 0.05, (0.25, 1.0), "finetune", "vggsound"),
    "deepavfusion_finetune_audioset": (3e-4, 32 * 4 * 4, 200, 20, "adamw", 0.05, (1.0, 4.0), "finetune", "audioset"),
}  # fmt: skip


def test_the_recipes_cover_the_seeds_readme_runs_and_their_tiny_variants():
    assert set(PAPER) == set(SEED) | {"deepavfusion_avsrcsep"}  # separation: test_deepavfusion_avsrcsep_recipes.py
    assert {"deepavfusion_pretrain_tiny", "deepavfusion_linprobe_tiny"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", sorted(SEED))
def test_paper_recipes_are_the_seeds_runs(recipe):
    blr, batch, epochs, warmup, optimizer, decay, fusion, mode, data = SEED[recipe]
    cfg = compose_run([f"recipe={recipe}"])
    t, m = cfg.train, cfg.method
    assert t.lr == pytest.approx(blr * batch / 256)  # the seed's lr = blr * effective batch / 256
    assert (t.batch_size, t.epochs, t.warmup_epochs, t.optimizer, t.weight_decay) == (batch, epochs, warmup,
                                                                                      optimizer, decay)  # fmt: skip
    assert (m.name, cfg.backbone.name, (m.attn_ratio, m.mlp_ratio)) == ("deepavfusion", "deepavfusion", fusion)
    assert (t.schedule, t.min_lr_ratio, t.grad_clip) == ("cosine", 0.0, 0.0)  # cosine to 0, no clipping
    assert (cfg.data.name, cfg.data.frame_size, cfg.data.n_mels, cfg.data.sample_rate) == (data, 224, 128, 16000)
    if mode == "pretrain":
        assert cfg.task.name == "pretrain" and m.pretrain and tuple(t.betas) == (0.9, 0.95)
        assert (t.precision, t.select) == ("fp16", "last")
        assert OmegaConf.to_container(t.lr_ramp) == {"method.visual_backbone": 0.5, "method.audio_backbone": 0.5}
        # the seed's kNN probe every eval_freq = 10 epochs on VGGSound; the AudioSet run's probe is off (multi-label)
        assert (cfg.task.knn_every, cfg.task.knn_features) == ((10, "fused") if data == "vggsound" else (0, "fused"))
    else:
        assert (cfg.task.name, cfg.task.mode, not m.pretrain, t.init_only) == ("classify", mode, True, "method")
        assert cfg.task.multilabel == (data == "audioset") and cfg.data.benchmark == data
        assert t.layer_decay == (0.75 if mode == "finetune" else 1.0) and not t.lr_ramp
        regularisers = (1.0, 0.1, 0.2) if mode == "finetune" else (0.0, 0.0, 0.0)  # finetune.yaml: mixup, ls, dp
        assert (cfg.task.mixup, cfg.task.label_smoothing, m.drop_path) == regularisers
        views = (10, 1, "logits") if mode == "finetune" else (1, 0, "probs")  # the seed's dense fine-tune evaluation
        assert (cfg.task.views, cfg.task.view_segments, cfg.task.view_average) == views


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_dry_runs(recipe, tmp_path, monkeypatch, capsys):
    """The tiny recipes as they are; the paper ones, whose data --dry-run cannot size, on AVSynth's classes (without
    that, a one-line error)."""
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    on_avsynth = ["data.name=avsynth"] if recipe in PAPER else []
    if recipe in PAPER:
        assert main(["train", f"recipe={recipe}", "--dry-run"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["train", f"recipe={recipe}", *on_avsynth, f"out={tmp_path / 'runs'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    ramped = [line for line in out.splitlines() if " ramp 0.5 " in line]
    assert len(ramped) == (2 if recipe.startswith("deepavfusion_pretrain_") and recipe in PAPER else 0)  # decay, not
    assert f"name: {recipe}" in out and not (tmp_path / "runs").exists()


def _pretrain_test_settings() -> dict[str, str]:
    """``key=value`` of the slow pretraining test's ``COMMON`` command line, read from its source."""
    tree = ast.parse(PRETRAIN_TEST.read_text())
    common = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id
                  == "COMMON")  # fmt: skip
    return dict(item.split("=", 1) for item in common)


def test_the_tiny_pretraining_recipe_is_the_measured_run():
    settings = _pretrain_test_settings()
    cfg = compose_run(["recipe=deepavfusion_pretrain_tiny"])
    assert cfg.task.knn_every == 10  # monitoring only: the probe leaves the training unchanged
    for key, value in settings.items():
        if key in ("data.workers", "train.threads"):  # machine settings, not the recipe's
            continue
        expected = "40" if value == "EPOCHS" else value  # the test's 40 epochs
        got = OmegaConf.select(cfg, key) if "." in key else cfg[key].name
        assert str(got).lower() == expected.lower() or float(got) == float(expected), key

"""CMG's recipes (config/recipe/cmg_*): the tiny ones are the runs of tests/integration/test_cmg_learning.py (its
override lists, read from its source, compose to the same settings), and each dry-runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from avlearn.cli.main import main
from avlearn.config import compose_run

LEARNING = Path(__file__).parents[2] / "integration" / "test_cmg_learning.py"
CHECKED = ("task.name", "method.name", "method.objectives", "method.transfer", "backbone.name", "data.name",
           "data.clips", "data.extra_test_clips", "train.epochs", "train.lr", "train.batch_size", "train.select",
           "train.init_only", "train.lr_mult")  # fmt: skip


def _lists() -> dict[str, list[str]]:
    """The integration test's module-level override lists (COMMON, PRETRAIN, TRANSFER)."""
    tree = ast.parse(LEARNING.read_text())
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)}  # fmt: skip


@pytest.mark.parametrize(("recipe", "runs"), [("cmg_pretrain_tiny", ["PRETRAIN"]),
                                              ("cmg_ave_tiny", ["TRANSFER", "method.transfer=audio_to_visual",
                                                                "train.init_only=method"])])  # fmt: skip
def test_tiny_recipes_are_the_learning_tests_runs(recipe, runs):
    lists = _lists()
    overrides = [*lists["COMMON"], *(o for r in runs for o in lists.get(r, [r]))]
    expected = compose_run([o for o in overrides if not o.startswith(("data.workers", "train.threads"))])
    cfg = compose_run([f"recipe={recipe}"])
    for key in CHECKED:
        assert OmegaConf.select(cfg, key) == OmegaConf.select(expected, key), key


@pytest.mark.parametrize("recipe", ["cmg_pretrain_tiny", "cmg_ave_tiny", "cmg_avvp_tiny"])
def test_cmg_recipes_dry_run(recipe, tmp_path, capsys):
    assert main(["train", f"recipe={recipe}", f"out={tmp_path / 'runs'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"name: {recipe}" in out and "method=cmg_tiny backbone=small_cnn" in out

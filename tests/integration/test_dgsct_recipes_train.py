"""The tiny DG-SCT recipes train on AVSynth through ``avlearn train recipe=...``: one epoch of the fastest one.

``dgsct_avs_ms3_tiny`` (the seed's MS3 adapter structure at test size) on 20 AVSynth MS3 clips, one epoch: the run
writes its folder, a finite training loss per epoch and test scores in range. The other tiny recipes, one epoch each
with tiny data overrides, are listed in docs/methods/dgsct.md ("Recipes") with their times.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from avlearn.config.compose import compose_run
from avlearn.engine.run import run_supervised


def test_the_ms3_tiny_recipe_trains_one_epoch(tmp_path):
    cfg = compose_run(["recipe=dgsct_avs_ms3_tiny", "data.avs_clips=20", "train.epochs=1", "train.threads=1",
                       f"data.root={tmp_path / 'avsynth'}", f"out={tmp_path / 'runs'}"])  # fmt: skip
    assert (cfg.method.adapter_variant, cfg.method.reduction, cfg.method.batch_norm) == ("avs_ms3", 2, False)
    result = run_supervised(cfg)
    run_dir = Path(result["run_dir"])
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [e["train_loss"] for e in epochs if e["kind"] == "epoch"]
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    assert 0.0 <= result["test"]["miou"] <= 100.0 and (run_dir / "checkpoint" / "model.safetensors").is_file()

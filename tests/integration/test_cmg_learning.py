"""CMG learns one codebook for audio and vision on AVSynth (issue #20's learning check), through the engine as
``avlearn train`` runs it.

AV pretraining of ``cmg_tiny`` (32 codes of width 32; ``task=pretrain``, lr 1e-3; the small CNN towers trained from
scratch by CMG's losses alone), then the cross-modal transfer on clip classification (``task=ave_cls``, encoders and
codebook frozen, ``method.transfer``): a head trained on one modality's codes and tested on the other's scores far
above chance (10 %; the largest test class is 20 %) and above the same protocol on an untrained encoder and codebook,
in both directions. The codebook's perplexity per modality and the cross-modal code agreement (the same code at the
same second) on the test clips are reported, and the Cross-CPC ablation (pretraining without ``cpc``; printed, not
asserted). 400 clips of 10 classes (320 / 40 / 40; one test clip is 2.5 points), one thread, seed 0. The thresholds
hold at each of seeds 0-2 measured with this protocol (docs/methods/cmg.md, "Three seeds"), not just at seed 0.

Slow (37 minutes measured on two cores shared with other jobs):
``pytest -m slow tests/integration/test_cmg_learning.py -s``.
Measured numbers: docs/methods/cmg.md ("Learning on AVSynth").
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

# 400 clips split 320 / 40 / 40 as in the recipes, and 400 more test clips (``data.extra_test_clips``): 440 test
# clips, so one clip is 0.23 points and a score's binomial standard deviation at most 2.4.
COMMON = ["method=cmg_tiny", "backbone=small_cnn", "data.clips=400", "data.extra_test_clips=400", "data.workers=1",
          "train.threads=1", "train.batch_size=32"]  # fmt: skip
PRETRAIN = ["task=pretrain", "train.epochs=10", "train.lr=1e-3", "train.select=last"]
TRANSFER = ["task=ave_cls", "method.objectives=false", "+train.lr_mult={method:0}", "train.epochs=8",
            "train.lr=2e-3"]  # fmt: skip
DIRECTIONS = ("audio_to_visual", "visual_to_audio")


def _cfg(tmp_path: Path, name: str, overrides: list[str]):  # noqa: ANN202 (DictConfig)
    from avlearn.config.compose import compose_run

    paths = [f"data.root={tmp_path / 'avsynth'}", f"out={tmp_path / 'runs'}", f"name={name}"]
    return compose_run([*COMMON, *overrides, *paths])


def _run(tmp_path: Path, name: str, overrides: list[str]) -> dict:
    from avlearn.engine.run import run_supervised

    return run_supervised(_cfg(tmp_path, name, overrides))


def _transfer(tmp_path: Path, pretrained: str | None, direction: str, extra: list[str]) -> float:
    """Test accuracy (%) of a head trained on the source modality's frozen codes and tested on the target's."""
    init = [f"train.init_from={pretrained}", "train.init_only=method"] if pretrained else []
    name = f"{Path(pretrained).parent.name if pretrained else 'untrained'}_{direction}"
    return _run(tmp_path, name, [*TRANSFER, *extra, f"method.transfer={direction}", *init])["test"]["accuracy"]


def code_statistics(cfg, pretrained: str | None) -> dict[str, float]:  # noqa: ANN001 (DictConfig)
    """On the test split: per modality the perplexity of the code histogram (exp of its entropy) and the number of
    codes used, and the share of seconds at which audio and vision pick the same code."""
    from avlearn.build import audio_preprocess, build_splits, build_task
    from avlearn.engine.checkpoint import load_weights

    splits = build_splits(cfg, audio_preprocess(cfg))
    method = build_task(cfg, splits.info).method.eval()
    if pretrained:
        weights = {k[len("method.") :]: v for k, v in load_weights(pretrained).items() if k.startswith("method.")}
        method.load_state_dict(weights)
    codes: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for batch in DataLoader(splits.test, batch_size=32, collate_fn=default_collate):
            for m, idx in method(batch).codes.items():
                codes.setdefault(m, []).append(idx.reshape(-1))  # (B, T) -> (B*T,)
    flat = {m: torch.cat(v) for m, v in codes.items()}
    stats = {"agreement": 100 * (flat["audio"] == flat["visual"]).double().mean().item()}
    for m, idx in flat.items():
        p = torch.bincount(idx, minlength=cfg.method.codes).double() / idx.numel()
        stats[f"perplexity_{m}"] = torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item()
        stats[f"used_{m}"] = int((p > 0).sum())
    return stats


@pytest.mark.slow
def test_pretrained_codes_transfer_across_modalities_far_above_chance_and_above_untrained_ones(tmp_path):
    torch.set_num_threads(1)
    ablation = ["method.cpc=false"]
    runs = {"full": (_run(tmp_path, "pretrain", PRETRAIN)["run_dir"], []),
            "no_cpc": (_run(tmp_path, "pretrain_no_cpc", [*PRETRAIN, *ablation])["run_dir"], ablation),
            "untrained": (None, [])}  # fmt: skip
    accuracy = {(k, d): _transfer(tmp_path, run, d, extra) for k, (run, extra) in runs.items() for d in DIRECTIONS}
    stats = {k: code_statistics(_cfg(tmp_path, "stats", [*TRANSFER, *extra]), run) for k, (run, extra) in runs.items()}
    print("accuracy", accuracy, "codes", stats)
    # Measured (docs/methods/cmg.md, "Three seeds"; one test clip is 2.5 points, chance 10 %): seed 0 (this run) full
    # 52.5 / 40.0 (A -> V / V -> A), no CPC 27.5 / 27.5, untrained 7.5 / 7.5, agreement 36.3 %; seeds 1 / 2: full
    # 30.0 / 40.0 and 32.5 / 37.5, untrained 20.0 and 12.5, agreement 17.0 / 24.5 %, no CPC 27.5 / 30.0 and
    # 30.0 / 30.0. The thresholds are the worst seed's value minus 2 test clips, so they hold at every measured seed;
    # the no-CPC gap (25.0 / 12.5 at seed 0, 2.5 at seeds 1 and 2) is not one every seed keeps: printed, not asserted.
    for direction in DIRECTIONS:
        assert accuracy[("full", direction)] >= 25.0, direction
        assert accuracy[("full", direction)] >= accuracy[("untrained", direction)] + 5.0, direction
    assert stats["full"]["perplexity_audio"] > 5 * stats["untrained"]["perplexity_audio"]
    assert stats["full"]["agreement"] >= 12.0 and stats["untrained"]["agreement"] <= 10.0

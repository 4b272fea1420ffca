"""The method side of the contract (``avlearn.methods.base``): widths before any forward, unequal audio and visual
segment counts, per-layer tokens on request, text towers, and the tasks' method-loss helper."""

from __future__ import annotations

import pytest
import torch

from avlearn import register_all
from avlearn.build import build_task
from avlearn.config import compose_run
from avlearn.errors import ConfigError, DataError
from avlearn.methods.base import AVFeatures, check_pairing
from avlearn.methods.baseline import Baseline, BaselineConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.ave import AVEConfig, AVETask
from avlearn.tasks.base import DatasetInfo, add_method_losses

register_all()


def _baseline() -> Baseline:
    torch.manual_seed(0)
    return Baseline(
        BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=32), BACKBONES.build("cnn_audio_tiny")
    )


def _batch(s_v: int = 4, s_a: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, s_v, 32, 32, 3), dtype=torch.uint8, generator=g)
    return {"frames": frames, "audio": torch.randn(2, s_a, 32, 50, generator=g), "labels": torch.zeros(2, s_v).long()}


def test_audio_and_visual_segment_counts_may_differ_and_a_pairing_head_says_so():
    method = _baseline().eval()
    feats = method(_batch(s_v=6, s_a=3))
    assert feats.visual_pooled.shape[:2] == (2, 6) and feats.audio_pooled.shape[:2] == (2, 3)
    assert feats.audio.shape[:2] == (2, 3)
    task = AVETask(AVEConfig(hidden=16), method, DatasetInfo(("a", "b")))
    with pytest.raises(DataError, match="task 'ave' pairs audio and visual segments one to one.*S_a=3.*S_v=6"):
        task(_batch(s_v=6, s_a=3))


def test_dgsct_pairs_segments_and_refuses_unequal_counts():
    cfg = compose_run(["task=ave", "method=dgsct_tiny", "backbone=dgsct_tiny", "data.frame_size=32"])
    method = build_task(cfg, DatasetInfo(("a", "b"))).method
    with pytest.raises(DataError, match="DG-SCT pairs each visual segment with its audio segment: S_v=4, S_a=3"):
        method(_batch(s_v=4, s_a=3))


def test_per_layer_tokens_come_only_on_request_with_the_declared_widths():
    method = _baseline().eval()
    assert method(_batch()).layers is None
    feats = method(_batch(), layers=True)
    assert set(feats.layers) == {"visual", "audio"} and "layers" in method.produces
    for modality, layers in feats.layers.items():
        assert tuple(layer.shape[-1] for layer in layers) == method.dims["layers"][modality]
        assert all(layer.shape[:2] == (2, 4) for layer in layers)
    # The last stage's tokens are the final tokens before the tower's head (its closing LayerNorm).
    head = method.visual_backbone.model["norm"]
    torch.testing.assert_close(head(feats.layers["visual"][-1]), feats.visual)
    assert tuple(level.shape[2] for level in feats.visual_pyramid) == method.dims["visual_pyramid"] == (16, 16)


def test_a_text_tower_is_built_from_the_config_and_fills_the_text_fields():
    cfg = compose_run(["task=ave", "backbone.text=bert_tiny", "data.frame_size=32", "data.n_mels=32"])
    task = build_task(cfg, DatasetInfo(("a", "b")))
    method, tower = task.method, task.method.text_backbone
    assert type(tower).__name__ == "Bert" and tower.num_features == 32
    assert {"text", "text_pooled"} <= set(method.produces) and method.dims["text"] == method.dims["text_pooled"] == 32
    ids = tower.dummy_inputs(2)
    feats = method.eval()({**_batch(), "text_ids": ids["input_ids"], "text_mask": ids["attention_mask"]})
    torch.testing.assert_close(feats.text, tower.forward_features(**ids))
    torch.testing.assert_close(feats.text_pooled, tower(**ids))
    assert method(_batch()).text is None  # a batch without text
    assert build_task(compose_run(["task=ave"]), DatasetInfo(("a",))).method.text_backbone is None


def test_method_losses_are_added_and_reported_and_may_not_shadow_a_task_term():
    terms = {"commit": torch.tensor(0.5, requires_grad=True), "recon": torch.tensor(2.0)}
    out = add_method_losses({"loss": torch.tensor(1.0), "loss_ce": torch.tensor(1.0)}, terms)
    assert out["loss"] == 3.5 and out["loss_commit"] == 0.5 and out["loss_recon"] == 2.0 and out["loss_ce"] == 1.0
    out["loss"].backward()
    assert terms["commit"].grad == 1.0
    plain = {"loss": torch.tensor(1.0)}
    assert add_method_losses(plain, {}) is plain
    with pytest.raises(ValueError, match="method loss terms ce clash"):
        add_method_losses({"loss": torch.tensor(1.0), "loss_ce": torch.tensor(1.0)}, {"ce": torch.tensor(1.0)})


def test_new_fields_default_to_absent_and_the_pairing_names_a_missing_grid():
    feats = AVFeatures(audio_pooled=torch.zeros(1, 2, 3))
    assert feats.produced() == ("audio_pooled",) and feats.losses == {} and feats.codes is None
    with pytest.raises(ConfigError, match="task 'avqa' needs AVFeatures.grid, which method 'm' does not produce"):
        check_pairing("m", ("audio", "audio_pooled", "visual"), "avqa", ("audio", "visual", "grid"))

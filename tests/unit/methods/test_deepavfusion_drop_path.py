"""DeepAVFusion's ``method.drop_path`` (the seed's fine-tuning stochastic depth, one rate for every block): the
rate reaches every tower block and fusion block, eval mode is the identity, and a tower block in training equals
the hand computation with the per-sample keep draws scaled by 1 / (1 - rate)."""

from __future__ import annotations

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.backbones.droppath import DropPath, drop_path
from avlearn.errors import ConfigError
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig, pair_attention_additive
from avlearn.registry import BACKBONES

TINY = {"fusion_tokens": [4, 2, 2], "fusion_heads": 2}


def _method(**overrides) -> DeepAVFusion:
    torch.manual_seed(0)
    visual, audio = BACKBONES.build("vit_mae_tiny"), BACKBONES.build("vit_mae_audio_tiny")
    return DeepAVFusion(DeepAVFusionConfig(**{**TINY, **overrides}), visual, audio)


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"frames": torch.randint(0, 256, (3, 2, 32, 32, 3), dtype=torch.uint8, generator=g),
            "audio": torch.randn(3, 2, 32, 48, generator=g)}  # fmt: skip


def test_one_rate_on_every_tower_block_and_fusion_block():
    method = _method(drop_path=0.2)
    towers = (method.visual_backbone, method.audio_backbone)
    blocks = [block for tower in towers for i in range(tower.num_stages) for block in tower.stage_blocks(i)]
    assert len(blocks) == 4 and all(isinstance(b.dropout, DropPath) and b.dropout.rate == 0.2 for b in blocks)
    assert len(method.fusion_blocks) == 2
    assert all(block.drop_path.rate == 0.2 for block in method.fusion_blocks.values())
    assert set(method.state_dict()) == set(_method().state_dict())  # no new tensors: checkpoints still load


def test_eval_mode_is_the_identity():
    plain, dropped = _method().eval(), _method(drop_path=0.5).eval()
    dropped.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(_batch()), dropped(_batch())
    for field in ("visual", "audio", "fused"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field))


def test_training_drops_whole_samples_and_scales_the_kept_ones():
    x = torch.ones(2000, 3, 4)
    torch.manual_seed(0)
    out = drop_path(x, 0.25, training=True)
    torch.manual_seed(0)
    keep = torch.rand(2000, 1, 1) >= 0.25  # the same draws, by hand
    torch.testing.assert_close(out, keep.float().expand_as(x) / 0.75)
    assert 0.7 < keep.float().mean() < 0.8


def test_a_tower_block_in_training_equals_the_hand_computation():
    method = _method(drop_path=0.3).train()
    block = method.visual_backbone.stage_blocks(0)[0]
    x = torch.randn(5, 7, 32)
    torch.manual_seed(4)
    out = block(x)
    torch.manual_seed(4)
    keep1 = (torch.rand(5, 1, 1) >= 0.3).float() / 0.7  # attention branch draw, then the MLP branch draw
    h = x + keep1 * block.attention(block.layernorm_before(x))[0]
    keep2 = (torch.rand(5, 1, 1) >= 0.3).float() / 0.7
    torch.testing.assert_close(out, h + keep2 * block.mlp(block.layernorm_after(h)))
    assert (torch.cat([keep1, keep2]) == 0).any()  # this draw drops some branches


def test_fusion_block_in_training_equals_the_hand_computation():
    method = _method(drop_path=0.3).train()
    block = method.fusion_blocks["0"]
    g = torch.Generator().manual_seed(2)
    fused, visual, audio = (torch.randn(6, n, 32, generator=g) for n in (8, 16, 24))
    torch.manual_seed(5)
    out = block(fused, visual, audio)
    torch.manual_seed(5)
    keep1 = (torch.rand(6, 1, 1) >= 0.3).float() / 0.7  # the attention residual's draw, then the MLP's
    keep2 = (torch.rand(6, 1, 1) >= 0.3).float() / 0.7
    normed = block.norm_fused(fused)
    tokens, agg_v, agg_a = normed.split(block.split, dim=1)
    agg_v, agg_a = block.attn_visual(agg_v, block.norm_visual(visual)), block.attn_audio(agg_a, block.norm_audio(audio))
    pair = block.proj(pair_attention_additive(block, tokens, agg_v, agg_a))
    h = normed + keep1 * torch.cat([pair, agg_v, agg_a], dim=1)
    torch.testing.assert_close(out, h + keep2 * block.mlp(block.norm2(h)))
    assert (keep1 == 0).any() and (keep2 > 0).any()  # this draw drops some samples and keeps others


def test_a_rate_outside_zero_to_one_is_a_config_error():
    with pytest.raises(ConfigError, match=r"method.drop_path=1.0: expected a rate in \[0, 1\)"):
        _method(drop_path=1.0)


def test_a_finetuning_step_with_the_seeds_regularisers_reaches_the_towers():
    from avlearn.tasks.classify import ClassifyConfig, ClassifyTask, ClipInfo

    cfg = ClassifyConfig(mode="finetune", features="fused", mixup=1.0, label_smoothing=0.1)
    task = ClassifyTask(cfg, _method(drop_path=0.2), ClipInfo(("a", "b", "c"), 2)).train()
    loss = task({**_batch(), "label": torch.tensor([0, 2, 1])})["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert task.method.visual_backbone.model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0

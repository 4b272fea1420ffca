"""DeepAVFusion: the additive pair attention equals the seed's pair form, the encoder's shapes and per-layer tokens,
the masking / patchify / masked-MSE pieces against hand computations, the pretraining losses, and bad configs."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.backbones.vit_mae import sincos_position_table
from avlearn.errors import ConfigError, DataError
from avlearn.methods.deepavfusion import (
    DeepAVFusion,
    DeepAVFusionConfig,
    FusionBlock,
    fusion_layer_set,
    masked_mse,
    pair_attention_additive,
    pair_attention_pairs,
    patchify,
    random_masking,
)
from avlearn.registry import BACKBONES

TINY = {"fusion_tokens": [4, 2, 2], "fusion_heads": 2, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}


def _method(**overrides) -> DeepAVFusion:
    torch.manual_seed(0)
    visual, audio = BACKBONES.build("vit_mae_tiny"), BACKBONES.build("vit_mae_audio_tiny")
    return DeepAVFusion(DeepAVFusionConfig(**{**TINY, **overrides}), visual, audio)


def _batch(b: int = 2, s: int = 3, frames: int = 20) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "frames": torch.randint(0, 256, (b, s, 40, 40, 3), dtype=torch.uint8, generator=generator),
        "audio": torch.randn(b, s, 32, frames, generator=generator),
    }


def _randomise_biases(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)


@pytest.mark.parametrize("attn_ratio", [0.25, 1.0])
def test_additive_pair_attention_equals_the_pair_form(attn_ratio):
    torch.manual_seed(0)
    block = FusionBlock(64, 4, (5, 3, 4), attn_ratio, 1.0)
    _randomise_biases(block)  # the key bias must drop out, the value bias must stay
    fused, visual, audio = torch.randn(2, 5, 64), torch.randn(2, 3, 64), torch.randn(2, 4, 64)
    pairs = pair_attention_pairs(block, fused, visual, audio)  # (B, 5, 64) over the 12 (v, a) pairs
    additive = pair_attention_additive(block, fused, visual, audio)
    assert pairs.shape == additive.shape == (2, 5, 64)
    assert (pairs - additive).abs().max() <= 1e-5 * pairs.abs().max()


def test_the_encoder_in_pair_form_gives_the_same_tokens():
    method, batch = _method().eval(), _batch()
    pair_form = copy.deepcopy(method)
    for block in pair_form.fusion_blocks.values():
        block.pairs = True
    with torch.no_grad():
        ours, reference = method(batch, layers=True), pair_form(batch, layers=True)
    for name in ("visual", "audio", "fused"):
        scale = getattr(reference, name).abs().max()
        assert (getattr(ours, name) - getattr(reference, name)).abs().max() <= 1e-5 * scale, name


def test_features_have_the_declared_shapes_and_per_layer_tokens_come_on_request():
    method, batch = _method().eval(), _batch(b=2, s=3, frames=20)
    feats = method(batch)
    c = method.visual_backbone.num_features
    assert feats.visual.shape == (2, 3, 16, c)  # (B, S, 4 x 4 patches of a 32 px frame, C)
    assert feats.audio.shape == (2, 3, 24, c)  # (B, S, 4 x 6 patches of a 32 x 48 log-mel, C)
    assert feats.fused.shape == (2, 3, 8, c)  # (B, S, 4 + 2 + 2 fusion tokens, C)
    assert feats.grid == (4, 4) and feats.layers is None and feats.losses == {}
    assert torch.allclose(feats.visual_pooled, feats.visual.mean(dim=2))
    layers = method(batch, layers=True).layers
    assert {m: tuple(t.shape[-1] for t in v) for m, v in layers.items()} == method.dims["layers"]
    assert [t.shape for t in layers["fused"]] == [(2, 3, 8, c)] * 2
    final_visual = method.visual_backbone.model.layernorm(layers["visual"][-1])  # per-layer tokens: before the norm
    assert torch.allclose(final_visual, feats.visual, atol=1e-6)


def test_the_log_mel_is_tiled_along_time_to_the_tower_width():
    method = _method()
    batch = _batch(b=1, s=1, frames=20)
    _, spec = method.inputs(batch)
    assert spec.shape == (1, 1, 32, 48)  # 20 + 20 + first 8 frames
    source = batch["audio"][0, 0]
    assert torch.equal(spec[0, 0], torch.cat([source, source, source[:, :8]], dim=1))


def test_fusion_layers_pick_where_the_fusion_tokens_are_updated():
    assert fusion_layer_set("all", 4) == [0, 1, 2, 3] and fusion_layer_set("none", 4) == []
    assert fusion_layer_set("3-1", 4) == [1, 3]
    method, batch = _method(fusion_layers="1").eval(), _batch()
    assert list(method.fusion_blocks) == ["1"]
    layers = method(batch, layers=True).layers["fused"]
    initial = method.fusion_tokens.expand(6, -1, -1).unflatten(0, (2, 3))
    assert torch.equal(layers[0], initial) and not torch.equal(layers[1], initial)  # layer 0 leaves them alone


def test_without_fusion_layers_the_modalities_do_not_meet():
    method, batch = _method(fusion_layers="none").eval(), _batch()
    silent = {**batch, "audio": torch.zeros_like(batch["audio"])}
    with torch.no_grad():
        feats, other = method(batch), method(silent)
    assert torch.equal(feats.visual, other.visual) and not torch.equal(feats.audio, other.audio)
    assert torch.allclose(feats.fused[0, 0], method.fusion_norm(method.fusion_tokens[0]))  # never updated


def test_with_fusion_layers_audio_reaches_the_visual_tokens_a_layer_later():
    method, batch = _method().eval(), _batch()
    silent = {**batch, "audio": torch.zeros_like(batch["audio"])}
    with torch.no_grad():
        feats, other = method(batch, layers=True), method(silent, layers=True)
    assert torch.equal(feats.layers["visual"][0], other.layers["visual"][0])  # fusion tokens from layer 0's input
    assert not torch.equal(feats.layers["visual"][1], other.layers["visual"][1])


def test_random_masking_keeps_the_lowest_noise_and_restores_the_order():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7]])
    keep, mask, restore = random_masking(noise, 0.6)  # int(5 * 0.4) = 2 kept
    assert keep.tolist() == [[1, 3]] and mask.tolist() == [[1.0, 0.0, 1.0, 0.0, 1.0]]
    order = noise.argsort(dim=1)
    assert torch.equal(order.gather(1, restore), torch.arange(5).unsqueeze(0))


def test_patchify_orders_each_patch_by_row_column_channel():
    x = torch.randn(2, 3, 4, 6)
    patches = patchify(x, (2, 3))  # (B, 2 x 2 patches, 2 * 3 * 3)
    assert patches.shape == (2, 4, 18)
    for n in range(4):
        gy, gx = divmod(n, 2)
        block = x[:, :, 2 * gy : 2 * gy + 2, 3 * gx : 3 * gx + 3]  # (B, C, p, q)
        assert torch.equal(patches[:, n], block.permute(0, 2, 3, 1).reshape(2, -1))


def test_masked_mse_normalises_each_patch_and_averages_over_masked_patches():
    torch.manual_seed(0)
    target, pred = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    expected = []
    for b, n in [(0, 0), (0, 2), (1, 2)]:
        t = target[b, n].tolist()
        mean = sum(t) / 4
        std = math.sqrt(sum((v - mean) ** 2 for v in t) / 3 + 1e-6)
        expected.append(sum((p - (v - mean) / std) ** 2 for p, v in zip(pred[b, n].tolist(), t, strict=True)) / 4)
    assert masked_mse(target, pred, mask, norm_pix=True).item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    plain = ((pred - target).square().mean(-1) * mask).sum() / 3
    assert masked_mse(target, pred, mask, norm_pix=False).item() == pytest.approx(plain.item(), rel=1e-6)


def test_sincos_table_is_maes_layout():
    table = sincos_position_table((2, 3), 8)  # per patch [sin w | cos w | sin h | cos h], 2 frequencies each
    omega = [1.0, 0.01]
    for n in range(6):
        h, w = divmod(n, 3)
        expected = [f(w * o) for f in (math.sin, math.cos) for o in omega]
        expected += [f(h * o) for f in (math.sin, math.cos) for o in omega]
        assert table[n].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("name", "grid"), [("vit_mae_tiny", (4, 4)), ("vit_mae_64_tiny", (8, 8)),
                                          ("vit_mae_audio_tiny", (4, 6))])  # fmt: skip
def test_randomly_initialised_towers_hold_maes_fixed_position_table(name, grid):
    tower = BACKBONES.build(name)  # transformers 5 alone leaves the image tower's table at zero
    assert tower.grid == grid  # vit_mae_64_tiny: 64 px frames, 64 tokens
    table = tower.model.embeddings.position_embeddings[0]  # (1 + N, C)
    assert not table.requires_grad
    assert table[0].abs().max().item() == 0.0  # the CLS slot
    assert torch.equal(table[1:], sincos_position_table(tower.grid, table.shape[-1]))


def test_pretraining_gives_both_losses_and_trains_towers_fusion_and_decoders():
    method, batch = _method(pretrain=True).train(), _batch()
    feats = method(batch)
    assert set(feats.losses) == {"mae_visual", "mae_audio"} == set(method.loss_terms)
    assert feats.visual.shape[2] == 4 and feats.audio.shape[2] == 4  # int(16 * 0.25), int(24 * 0.2) visible
    assert feats.grid is None
    sum(feats.losses.values()).backward()
    no_grad = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad
    assert not method.fusion_blocks["0"].k.bias.requires_grad  # exactly zero gradient in the pair form


def test_pretraining_losses_follow_the_given_masks():
    method = _method(pretrain=True).eval()
    pixels, spec = method.inputs(_batch(b=1, s=2))
    noise_v, noise_a = torch.rand(2, 16), torch.rand(2, 24)
    with torch.no_grad():
        first, _ = method.mae_losses(pixels, spec, noise_v, noise_a)
        again, _ = method.mae_losses(pixels, spec, noise_v, noise_a)
        other, _ = method.mae_losses(pixels, spec, torch.rand(2, 16), torch.rand(2, 24))
    assert first == again and first["mae_visual"] != other["mae_visual"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"fusion_layers": "2"}, "method.fusion_layers"),
        ({"fusion_layers": "a-b"}, "method.fusion_layers"),
        ({"fusion_tokens": [4, 2]}, "method.fusion_tokens"),
        ({"fusion_heads": 3}, "method.fusion_heads"),
        ({"attn_ratio": 0.1}, "method.attn_ratio"),
        ({"visual_mask_ratio": 1.0}, "method.visual_mask_ratio"),
        ({"decoder_heads": 5}, "method.decoder_dim"),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        _method(**overrides)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_towers_of_other_families_or_widths_are_refused():
    audio = BACKBONES.build("vit_mae_audio_tiny")
    with pytest.raises(ConfigError, match="backbone.visual"):
        DeepAVFusion(DeepAVFusionConfig(**TINY), BACKBONES.build("cnn_visual_tiny"), audio)
    with pytest.raises(ConfigError, match="same width and depth"):
        DeepAVFusion(DeepAVFusionConfig(**TINY), BACKBONES.build("vit_mae_tiny", num_hidden_layers=3), audio)


def test_unpaired_segments_and_wrong_mel_bins_are_data_errors():
    method, batch = _method(), _batch()
    with pytest.raises(DataError, match="3 frames and 2 audio segments"):
        method.inputs({**batch, "audio": batch["audio"][:, :2]})
    with pytest.raises(DataError, match="data.n_mels=32"):
        method.inputs({**batch, "audio": batch["audio"][:, :, :16]})


def test_decoders_exist_only_for_pretraining():
    method = _method()
    assert method.loss_terms == () and not method.decoders
    with pytest.raises(ConfigError, match="method.pretrain=true"):
        method.mae_losses(*method.inputs(_batch()))


def test_task_pretrain_trains_on_the_two_mae_terms_and_refuses_without_them():
    from avlearn.data.schema import DatasetInfo
    from avlearn.tasks.pretrain import Pretrain, PretrainConfig

    info = DatasetInfo(("a", "b"), 3)
    with pytest.raises(ConfigError, match="method 'deepavfusion' has none"):
        Pretrain(PretrainConfig(), _method(), info)
    task = Pretrain(PretrainConfig(), _method(pretrain=True), info).train()
    ids = torch.tensor([[101, 7, 102], [101, 8, 102]])  # (B, L) captions: read by the task, unused by the method
    out = task({**_batch(), "caption_ids": ids, "caption_mask": torch.ones_like(ids)})
    assert set(out) == {"loss", "loss_mae_visual", "loss_mae_audio"}
    torch.testing.assert_close(out["loss"], out["loss_mae_visual"] + out["loss_mae_audio"])
    out["loss"].backward()
    assert task.method.decoders["audio"].pred.weight.grad is not None


def _seed_layer_id(name: str, depth: int) -> int:
    """The seed's fine-tuning layer of a parameter, from its name alone: embeddings and fusion tokens 0, layer
    ``i``'s tower and fusion blocks ``i + 1``, everything else (norms, the head) ``depth + 1``."""
    if name == "fusion_tokens" or re.fullmatch(r"(visual|audio)_backbone\.model\.embeddings\..*", name):
        return 0
    block = re.fullmatch(r"((visual|audio)_backbone\.model\.layers|fusion_blocks)\.(\d+)\..*", name)
    return int(block[3]) + 1 if block else depth + 1


@pytest.mark.parametrize("fusion_layers", ["all", "1"])
def test_layer_decay_scales_each_parameter_as_the_seeds_fine_tuning(fusion_layers):
    from avlearn.config.schema import TrainConfig
    from avlearn.data.schema import DatasetInfo
    from avlearn.engine.optim import param_groups
    from avlearn.tasks.classify import ClassifyConfig, ClassifyTask

    method = _method(fusion_layers=fusion_layers)
    depth = method.visual_backbone.num_stages
    task = ClassifyTask(ClassifyConfig(mode="finetune", features="fused"), method, DatasetInfo(("a", "b"), 3))
    lr, decay = 0.1, 0.5
    groups = param_groups(task, TrainConfig(lr=lr, layer_decay=decay))
    got = {id(p): g["lr"] for g in groups for p in g["params"]}
    seed_layers = depth + 1  # the seed's num_layers: the largest layer id (final norms, heads)
    for name, param in task.named_parameters():
        if param.requires_grad:
            layer = _seed_layer_id(name.removeprefix("method."), depth)
            assert got[id(param)] == pytest.approx(lr * decay ** (seed_layers - layer)), name
    assert {round(g["lr"] / lr, 6) for g in groups} == {1.0, 0.5, 0.25, 0.125}  # layers 3, 2, 1, 0 all present


def test_layer_decay_needs_the_methods_layer_ids():
    from avlearn.config.schema import TrainConfig
    from avlearn.data.schema import DatasetInfo
    from avlearn.engine.optim import param_groups
    from avlearn.tasks.classify import ClassifyConfig, ClassifyTask

    method = _method()
    method.layer_id = None  # as a method without the protocol
    task = ClassifyTask(ClassifyConfig(features="fused"), method, DatasetInfo(("a", "b"), 3))
    with pytest.raises(ConfigError, match=r"train.layer_decay needs a method with layer_id\(name\)"):
        param_groups(task, TrainConfig(layer_decay=0.5))


def test_a_pretraining_state_loads_into_a_downstream_method_without_its_decoders():
    pretrained, downstream = _method(pretrain=True), _method(pretrain=False)
    with torch.no_grad():
        pretrained.fusion_tokens.add_(1.0)  # differs from the downstream method's own initialisation
    state = pretrained.state_dict()
    assert any(k.startswith("decoders.") for k in state)
    downstream.load_state_dict(state, strict=True)  # raises on a missing or unexpected key
    torch.testing.assert_close(downstream.fusion_tokens, pretrained.fusion_tokens)
    assert any(k.startswith("decoders.") for k in state)  # the caller's dict is left as it was
    with pytest.raises(RuntimeError, match="decoders"):  # a pretraining method still needs its decoders
        _method(pretrain=True).load_state_dict(downstream.state_dict())


def test_the_backbone_ramp_holds_both_towers_back_and_nothing_else():
    from avlearn.config.schema import TrainConfig
    from avlearn.data.schema import DatasetInfo
    from avlearn.engine.optim import param_groups
    from avlearn.tasks.pretrain import Pretrain, PretrainConfig

    task = Pretrain(PretrainConfig(), _method(pretrain=True), DatasetInfo(("a", "b"), 3))
    ramp = {"method.visual_backbone": 0.5, "method.audio_backbone": 0.5}  # the paper recipes' train.lr_ramp
    groups = param_groups(task, TrainConfig(lr_ramp=ramp))
    ramped = {id(p) for g in groups if g.get("lr_ramp") == 0.5 for p in g["params"]}
    for name, param in task.named_parameters():
        if param.requires_grad:
            assert (id(param) in ramped) == name.startswith(("method.visual_backbone.", "method.audio_backbone.")), name

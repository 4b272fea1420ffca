"""CLIP's modified ResNet (``avlearn.backbones.clip_resnet``) on tiny configurations: shapes and striding, a
bottleneck block and the attention pooling against independent computations (plain torch ops and torch's own
multi-head attention), the converter from OpenAI's key layout (every tensor lands, a strict load, one-line errors),
and the geometry read off a checkpoint. Parity with the seed's module: tests/reference/test_clip_resnet_parity.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.backbones.clip_resnet import (
    AttentionPool,
    Bottleneck,
    CLIPResNet,
    ResNetConfig,
    config_from_state_dict,
    convert_clip_resnet_state_dict,
)
from avlearn.errors import DataError

TINY = ResNetConfig(layers=(1, 2, 1, 1), width=8, heads=2, output_dim=12, resolution=64)


def _randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random parameters and batch-norm statistics (no branch left at an identity initialisation), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var") else
                        0.3 * torch.randn(t.shape, generator=g))  # fmt: skip
    return module.eval()


def test_shapes_and_striding() -> None:
    model = CLIPResNet(TINY).eval()
    images = torch.randn(2, 3, 64, 64)
    grid = model.features(images)
    assert grid.shape == (2, TINY.embed_dim, 2, 2) and TINY.embed_dim == 8 * 8 * 4
    assert model(images).shape == (2, 12)
    assert [len(stage) for stage in model.stages] == [1, 2, 1, 1]
    assert model.stages[0][0].shortcut is not None and model.stages[1][1].shortcut is None  # 8 -> 32 wide: projected


def test_bottleneck_is_reduce_conv_pool_expand_plus_pooled_projected_shortcut() -> None:
    block = _randomised(Bottleneck(16, 4, stride=2))
    x = torch.randn(2, 16, 8, 8)

    def conv_norm(layer: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        n = layer.norm
        z = F.conv2d(z, layer.conv.weight, padding=layer.conv.weight.shape[-1] // 2)
        shape = (1, -1, 1, 1)
        return (z - n.running_mean.view(shape)) / (n.running_var.view(shape) + n.eps).sqrt() * n.weight.view(
            shape
        ) + n.bias.view(shape)

    with torch.no_grad():
        out = F.avg_pool2d(F.relu(conv_norm(block.spatial, F.relu(conv_norm(block.reduce, x)))), 2)
        expected = F.relu(conv_norm(block.expand, out) + conv_norm(block.shortcut.proj, F.avg_pool2d(x, 2)))
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert block(x).shape == (2, 16, 4, 4)


def test_attention_pool_is_torchs_multi_head_attention_read_at_the_mean_token() -> None:
    pool = _randomised(AttentionPool(side=3, dim=16, heads=4, output_dim=10))
    grid = torch.randn(2, 16, 3, 3)
    tokens = grid.flatten(2).permute(2, 0, 1)  # (N, B, C)
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens]) + pool.positions[:, None]  # (1 + N, B, C)
    with torch.no_grad():
        expected, _ = F.multi_head_attention_forward(
            tokens, tokens, tokens, 16, 4, None, torch.cat([pool.query.bias, pool.key.bias, pool.value.bias]),
            None, None, False, 0.0, pool.out.weight, pool.out.bias, training=False, need_weights=False,
            use_separate_proj_weight=True, q_proj_weight=pool.query.weight, k_proj_weight=pool.key.weight,
            v_proj_weight=pool.value.weight,
        )  # fmt: skip
        torch.testing.assert_close(pool(grid), expected[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="a 4x4 final grid; expected 3x3 \\(the input resolution 96\\)"):
        pool(torch.randn(1, 16, 4, 4))


def _openai_keys(cfg: ResNetConfig) -> list[str]:
    """The image tower's tensor names in OpenAI's CLIP layout, listed from its naming scheme."""
    norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = [f"conv{i}.weight" for i in (1, 2, 3)] + [f"bn{i}.{n}" for i in (1, 2, 3) for n in norm]
    for s, blocks in enumerate(cfg.layers, start=1):
        for b in range(blocks):
            keys += [f"layer{s}.{b}.conv{i}.weight" for i in (1, 2, 3)]
            keys += [f"layer{s}.{b}.bn{i}.{n}" for i in (1, 2, 3) for n in norm]
            if b == 0:
                keys += [f"layer{s}.0.downsample.0.weight"] + [f"layer{s}.0.downsample.1.{n}" for n in norm]
    keys += ["attnpool.positional_embedding"]
    keys += [f"attnpool.{p}_proj.{n}" for p in "qkvc" for n in ("weight", "bias")]
    return ["visual." + k for k in keys]


def _openai_named(ours: dict[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    """Our tensors under OpenAI's names: each name of ``keys`` goes where the converter sends it."""
    where = convert_clip_resnet_state_dict({k: k for k in keys})  # type: ignore[dict-item]  # ours -> OpenAI name
    return {where[name]: tensor for name, tensor in ours.items()}


def test_converter_maps_every_openai_tensor_and_loads_strictly() -> None:
    model = CLIPResNet(TINY)
    ours = model.state_dict()
    keys = _openai_keys(TINY)
    converted = convert_clip_resnet_state_dict({k: torch.zeros(()) for k in [*keys, "text_projection"]})
    assert len(converted) == len(keys) == len(ours) and set(converted) == set(ours)  # the text tower left out
    # our tensors under OpenAI's names convert back and load strictly (the values: tests/reference)
    openai = _openai_named(ours, keys)
    model.load_state_dict(convert_clip_resnet_state_dict(openai), strict=True)


def test_converter_errors_are_one_line() -> None:
    with pytest.raises(
        DataError, match="CLIP's modified ResNet checkpoint: key 'visual.layer1.0.attn.weight' is not part of the tower"
    ):
        convert_clip_resnet_state_dict({"visual.layer1.0.attn.weight": torch.zeros(1)})
    with pytest.raises(DataError, match="no key starts with 'visual.'"):
        convert_clip_resnet_state_dict({"transformer.weight": torch.zeros(1)})


def test_geometry_is_read_off_a_checkpoint() -> None:
    model = CLIPResNet(TINY)
    openai = _openai_named(model.state_dict(), _openai_keys(TINY))
    assert config_from_state_dict(openai) == ResNetConfig((1, 2, 1, 1), 8, 4, 12, 64)  # heads = width * 32 / 64
    assert ResNetConfig.rn50() == ResNetConfig((3, 4, 6, 3), 64, 32, 1024, 224)


def test_bad_geometry_is_a_one_line_error() -> None:
    with pytest.raises(DataError, match="resolution=100; expected a multiple of 32"):
        CLIPResNet(ResNetConfig(resolution=100))
    with pytest.raises(DataError, match="width 256 is not divisible by heads=3"):
        CLIPResNet(ResNetConfig(layers=(1, 1, 1, 1), width=8, heads=3, output_dim=4, resolution=32))

"""DeepAVFusion's initial tower weights (``avlearn convert mae_vit`` / ``audiomae_vit``) on synthetic checkpoints in
the MAE / AudioMAE pretraining layout (timm ViT, fused qkv, CLS token, position table of the source's own grid,
decoder and mask token) at test size: every tensor is mapped or dropped as the seed's ``ViT.load_checkpoint`` does,
the converted towers inside DeepAVFusion equal an independent timm-style ViT forward on the same weights, and the
AudioMAE patch kernel is applied as stored to the (frequency, time) log-mel (the seed's "transposed" use), checked
on a non-square input where the transposed kernel gives other tokens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.backbones.vit_mae import sincos_position_table
from avlearn.cli.main import main
from avlearn.convert import convert_state_dict, load_converted
from avlearn.errors import DataError
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig
from avlearn.registry import BACKBONES

WIDTH, DEPTH, HEADS, MLP, PATCH = 32, 2, 2, 64, 8
EPS = 1e-6  # the seed's ViT LayerNorms


BLOCK = {"norm1.weight": (WIDTH,), "norm1.bias": (WIDTH,), "attn.qkv.weight": (3 * WIDTH, WIDTH),
         "attn.qkv.bias": (3 * WIDTH,), "attn.proj.weight": (WIDTH, WIDTH), "attn.proj.bias": (WIDTH,),
         "norm2.weight": (WIDTH,), "norm2.bias": (WIDTH,), "mlp.fc1.weight": (MLP, WIDTH), "mlp.fc1.bias": (MLP,),
         "mlp.fc2.weight": (WIDTH, MLP), "mlp.fc2.bias": (WIDTH,)}  # fmt: skip  # a timm Block's tensors


def _mae_checkpoint(channels: int, source_patches: int, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors in the MAE pretraining layout (``models_mae.MaskedAutoencoderViT``), one-block decoder."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.2  # noqa: E731
    state = {"cls_token": r(1, 1, WIDTH), "pos_embed": r(1, 1 + source_patches, WIDTH),
             "patch_embed.proj.weight": r(WIDTH, channels, PATCH, PATCH),
             "patch_embed.proj.bias": r(WIDTH)}  # fmt: skip
    for i in range(DEPTH):
        state |= {f"blocks.{i}.{name}": r(*shape) + (name.startswith("norm") and name.endswith("weight"))
                  for name, shape in BLOCK.items()}  # fmt: skip
    state |= {"norm.weight": 1 + r(WIDTH), "norm.bias": r(WIDTH), "mask_token": r(1, 1, 16),
              "decoder_embed.weight": r(16, WIDTH), "decoder_embed.bias": r(16), "decoder_pos_embed": r(1, 17, 16),
              "decoder_blocks.0.norm1.weight": r(16), "decoder_norm.weight": r(16),
              "decoder_pred.weight": r(PATCH * PATCH * channels, 16)}  # fmt: skip
    return state


def _timm_vit_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The seed's ViT (timm blocks, fixed sin-cos table, no CLS) written out on the raw checkpoint tensors."""
    tokens = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=PATCH)  # (B, C, h, w)
    grid = tuple(tokens.shape[-2:])
    x = tokens.flatten(2).transpose(1, 2) + sincos_position_table(grid, WIDTH)  # (B, h * w, C)
    norm = lambda t, n: F.layer_norm(t, (WIDTH,), state[f"{n}.weight"], state[f"{n}.bias"], EPS)  # noqa: E731
    lin = lambda t, n: F.linear(t, state[f"{n}.weight"], state[f"{n}.bias"])  # noqa: E731
    for i in range(DEPTH):
        b = f"blocks.{i}."
        qkv = lin(norm(x, b + "norm1"), b + "attn.qkv").unflatten(-1, (3, HEADS, -1)).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] @ qkv[1].transpose(-1, -2)) * (WIDTH // HEADS) ** -0.5).softmax(dim=-1) @ qkv[2]  # (B, H, N, d)
        x = x + lin(attn.transpose(1, 2).flatten(2), b + "attn.proj")
        x = x + lin(F.gelu(lin(norm(x, b + "norm2"), b + "mlp.fc1")), b + "mlp.fc2")
    return norm(x, "norm")


def _converted_method(image: dict, audio: dict) -> DeepAVFusion:
    towers = []
    for fmt, name, state in (("mae_vit", "vit_mae_tiny", image), ("audiomae_vit", "vit_mae_audio_tiny", audio)):
        tower = BACKBONES.build(name)
        load_converted(tower.model, convert_state_dict(fmt, state, tower.model), fmt)
        towers.append(tower)
    cfg = DeepAVFusionConfig(fusion_tokens=[4, 2, 2], fusion_layers="none", fusion_heads=2)  # the towers alone
    return DeepAVFusion(cfg, *towers).eval()


def test_every_tensor_is_mapped_or_dropped_as_the_seed_loads_it():
    state = _mae_checkpoint(1, 24, seed=0)  # AudioMAE: its own 64 x 8-like grid, here 24 patches
    model = BACKBONES.build("vit_mae_audio_tiny").model
    conversion = convert_state_dict("audiomae_vit", state, model)
    assert set(conversion.tensors) == set(model.state_dict())
    assert sorted(conversion.dropped) == sorted(k for k in state if k.startswith(("decoder", "mask_token", "pos_")))
    for i in range(DEPTH):
        for kind in ("weight", "bias"):
            parts = [conversion.tensors[f"layers.{i}.attention.{p}_proj.{kind}"] for p in "qkv"]
            assert torch.equal(torch.cat(parts), state[f"blocks.{i}.attn.qkv.{kind}"])
    renamed = {"cls_token": "embeddings.cls_token", "patch_embed.proj.weight": "embeddings.patch_embeddings."
               "projection.weight", "blocks.1.mlp.fc2.bias": "layers.1.mlp.fc2.bias", "norm.weight": "layernorm.weight",
               "blocks.0.attn.proj.weight": "layers.0.attention.o_proj.weight",
               "blocks.0.norm2.bias": "layers.0.layernorm_after.bias"}  # fmt: skip
    for source, target in renamed.items():
        assert torch.equal(conversion.tensors[target], state[source]), source
    table = conversion.tensors["embeddings.position_embeddings"]  # (1, 1 + 24, C): the target's 4 x 6 grid
    torch.testing.assert_close(
        table, torch.cat([torch.zeros(1, 1, WIDTH), sincos_position_table((4, 6), WIDTH)[None]], 1)
    )
    load_converted(model, conversion, "audiomae")  # every model tensor present with its shape


def test_converted_towers_equal_the_seeds_vit_forward_on_the_checkpoint_weights():
    image, audio = _mae_checkpoint(3, 16, seed=1), _mae_checkpoint(1, 24, seed=2)
    method = _converted_method(image, audio)
    g = torch.Generator().manual_seed(3)
    pixels, spec = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 1, 32, 48, generator=g)  # spec (F, T)
    with torch.no_grad():
        encoded = method.encode(pixels, spec)
        torch.testing.assert_close(encoded.visual, _timm_vit_forward(image, pixels), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(encoded.audio, _timm_vit_forward(audio, spec), atol=1e-5, rtol=1e-5)


def test_the_audiomae_kernel_reads_the_log_mel_as_stored_the_seeds_transposed_use():
    audio = _mae_checkpoint(1, 24, seed=4)
    method = _converted_method(_mae_checkpoint(3, 16, seed=5), audio)
    spec = torch.randn(2, 1, 32, 48, generator=torch.Generator().manual_seed(6))  # 4 x 6 patches: not square
    kernel, bias = audio["patch_embed.proj.weight"], audio["patch_embed.proj.bias"]
    table = sincos_position_table((4, 6), WIDTH)
    with torch.no_grad():
        tokens = DeepAVFusion.patch_tokens(method.audio_backbone, spec) - table  # (B, 24, C)
    as_stored = F.conv2d(spec, kernel, bias, stride=PATCH).flatten(2).transpose(1, 2)  # the seed's rule
    transposed = F.conv2d(spec, kernel.transpose(-1, -2), bias, stride=PATCH).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, as_stored, atol=1e-5, rtol=1e-5)
    assert (tokens - transposed).abs().max() > 0.1  # a converter that transposed the kernel would fail here


def test_cli_writes_a_folder_the_audio_tower_loads(tmp_path):
    state = _mae_checkpoint(1, 24, seed=7)
    torch.save({"model": state}, tmp_path / "audiomae.pth")  # the release wraps the tensors under 'model'
    out = tmp_path / "tower"
    assert main(["convert", "audiomae_vit", str(tmp_path / "audiomae.pth"), str(out),
                 "--backbone", "vit_mae_audio_tiny"]) == 0  # fmt: skip
    tower = BACKBONES.build("vit_mae_audio_tiny", pretrained=str(out))
    weights = tower.model.state_dict()
    assert torch.equal(weights["layers.1.mlp.fc1.weight"], state["blocks.1.mlp.fc1.weight"])
    assert torch.equal(weights["embeddings.patch_embeddings.projection.weight"], state["patch_embed.proj.weight"])
    expected = sincos_position_table((4, 6), WIDTH)  # the audio grid's own table, not the checkpoint's
    torch.testing.assert_close(weights["embeddings.position_embeddings"][0, 1:], expected)


def test_a_fine_tuned_checkpoints_head_is_an_error():
    state = {**_mae_checkpoint(3, 16, seed=8), "head.weight": torch.zeros(10, WIDTH), "fc_norm.weight": torch.ones(32)}
    with pytest.raises(DataError, match=r"MAE ViT: 2 tensors have no avlearn counterpart"):
        convert_state_dict("mae_vit", state, BACKBONES.build("vit_mae_tiny").model)

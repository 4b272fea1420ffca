"""DeepAVFusion's initial tower weights against the seed's own loader: synthetic checkpoints in the MAE and AudioMAE
pretraining layouts (timm ViT at test size: width 32, depth 2, patch 8; a position table of the source's own grid,
the decoder and mask token) are loaded by the seed's ``models.vits.ViT.load_checkpoint`` (decoder, mask token and
CLS dropped, position table replaced, strict) and converted by ``avlearn convert mae_vit`` / ``audiomae_vit``; the
seed's towers and avlearn's (inside DeepAVFusion without fusion layers) then encode the same 32 px image and the
same non-square 32 x 48 log-mel (frequency x time, the AudioMAE kernel used as stored), eval mode, fp32."""

from __future__ import annotations

import functools
from functools import partial

import oracles
import torch
from torch import nn

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.convert import convert
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig
from avlearn.registry import BACKBONES

WIDTH, DEPTH, HEADS, PATCH = 32, 2, 2, 8


@functools.cache
def _vits():  # noqa: ANN202 (module)
    return oracles.deepavfusion_modules()[0]


def _seed_vit(size: tuple[int, int], channels: int) -> nn.Module:
    norm = partial(nn.LayerNorm, eps=1e-6)
    return _vits().ViT(input_size=size, patch_size=PATCH, in_chans=channels, embed_dim=WIDTH, depth=DEPTH,
                       num_heads=HEADS, mlp_ratio=2.0, norm_layer=norm)  # fmt: skip


def _checkpoint(seed_vit: nn.Module, source_patches: int, seed: int) -> dict[str, torch.Tensor]:
    """The seed ViT's tensors randomised, plus what an MAE pretraining checkpoint adds (CLS token, its own position
    table, a decoder and mask token)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.2 + (k.endswith("norm1.weight") or k.endswith("norm2.weight"))
             for k, v in seed_vit.state_dict().items() if k != "pos_embed"}  # fmt: skip
    extra = {"cls_token": torch.randn(1, 1, WIDTH, generator=g), "mask_token": torch.zeros(1, 1, 16),
             "pos_embed": torch.randn(1, 1 + source_patches, WIDTH, generator=g),
             "decoder_embed.weight": torch.randn(16, WIDTH, generator=g),
             "decoder_pred.bias": torch.zeros(64)}  # fmt: skip
    return {**state, **extra}


def test_converted_towers_equal_the_seeds_loaded_vits(tmp_path):
    image_seed, audio_seed = _seed_vit((32, 32), 3), _seed_vit((32, 48), 1)
    towers = []
    for fmt, name, seed_vit, patches in (("mae_vit", "vit_mae_tiny", image_seed, 16),
                                         ("audiomae_vit", "vit_mae_audio_tiny", audio_seed, 24)):  # fmt: skip
        path = tmp_path / f"{fmt}.pth"
        torch.save({"model": _checkpoint(seed_vit, patches, seed=len(towers))}, path)
        seed_vit.load_checkpoint(str(path))  # the seed's loader
        convert(fmt, path, tmp_path / fmt, backbone=name)
        towers.append(BACKBONES.build(name, pretrained=str(tmp_path / fmt)))
    ours = DeepAVFusion(DeepAVFusionConfig(fusion_tokens=[4, 2, 2], fusion_layers="none", fusion_heads=2), *towers)
    g = torch.Generator().manual_seed(9)
    pixels, spec = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 1, 32, 48, generator=g)
    with torch.no_grad():
        encoded = ours.eval().encode(pixels, spec)
        oracles.assert_parity(encoded.visual, image_seed.eval()(pixels), "image tower")
        oracles.assert_parity(encoded.audio, audio_seed.eval()(spec), "audio tower")

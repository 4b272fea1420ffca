"""DeepAVFusion against the seed (``models/deepavfusion.py`` ``DeepAVFusion`` and ``models/avmae.py`` ``AVMAE``) at
test size: the seed's own ViT class at width 32, depth 2, MLP 64 (image 32 px, audio 32 x 48, patch 8), fusion tokens
(4, 2, 2), fusion heads 2, one-block decoders of width 16. The seed model's random state dict is moved by
``avlearn.convert.convert_deepavfusion_state_dict``; fp32, eval mode. Compared: the final image, audio and fusion
tokens and the per-layer triples (``return_embs``) on whole inputs and on the same kept patches, and the two
masked-autoencoding losses for the same masks; in both of the seed's released fusion settings (VGGSound: attention
ratio 0.25, MLP ratio 1; AudioSet: 1 and 4) and with fusion at one layer only."""

from __future__ import annotations

import functools
from functools import partial

import oracles
import pytest
import torch
from oracles import assert_parity, randomise
from torch import nn

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.convert import convert_deepavfusion_state_dict
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig, random_masking
from avlearn.registry import BACKBONES

WIDTH, DEPTH, HEADS, PATCH = 32, 2, 2, 8
IMAGE, AUDIO = (32, 32), (32, 48)
TOKENS = (4, 2, 2)
SETTINGS = {"vggsound": (0.25, 1.0, "all"), "audioset": (1.0, 4.0, "all"), "layer1": (0.25, 1.0, "1")}


@functools.cache
def _seed_modules():  # noqa: ANN202 (modules)
    return oracles.deepavfusion_modules()


def _seed(attn_ratio: float, mlp_ratio: float, layers: str) -> nn.Module:
    """The seed's AVMAE around its DeepAVFusion encoder, with the seed's ViT class at test size."""
    vits, deepavfusion, avmae = _seed_modules()

    def tiny_vit(pretrained: bool, **kwargs) -> nn.Module:  # noqa: ARG001 (the seed passes it)
        norm = partial(nn.LayerNorm, eps=1e-6)
        return vits.ViT(patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_ratio=2.0, norm_layer=norm,
                        **kwargs)  # fmt: skip

    vits.vit_test = tiny_vit
    encoder = deepavfusion.DeepAVFusion(
        image_arch="vit_test", image_pretrained=False, image_size=IMAGE, audio_arch="vit_test",
        audio_pretrained=False, audio_size=AUDIO, fusion_layers=layers, num_fusion_tkns=TOKENS,
        fusion_mlp_ratio=mlp_ratio, fusion_attn_ratio=attn_ratio, fusion_num_heads=HEADS,
    )  # fmt: skip
    model = avmae.AVMAE(encoder, WIDTH, image_decoder_depth=1, audio_decoder_depth=1, image_norm_loss=True,
                        audio_norm_loss=True, decoder_dim=16, num_heads=2)  # fmt: skip
    randomise(model, seed=3, keep=("encoder.image.pos_embed", "encoder.audio.pos_embed"))
    return model.eval()


def _ours(seed: nn.Module, attn_ratio: float, mlp_ratio: float, layers: str) -> DeepAVFusion:
    cfg = DeepAVFusionConfig(fusion_tokens=list(TOKENS), fusion_layers=layers, fusion_heads=HEADS,
                             attn_ratio=attn_ratio, mlp_ratio=mlp_ratio, pretrain=True, decoder_dim=16,
                             decoder_depth=1, decoder_heads=2)  # fmt: skip
    method = DeepAVFusion(cfg, BACKBONES.build("vit_mae_tiny"), BACKBONES.build("vit_mae_audio_tiny"))
    conversion = convert_deepavfusion_state_dict(seed.state_dict())
    assert not conversion.dropped
    method.load_state_dict(conversion.tensors)  # strict: every tensor of ours, none left over
    return method.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return torch.randn(2, 3, *IMAGE, generator=generator), torch.randn(2, 1, *AUDIO, generator=generator) - 3.0


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_encoder_tokens_and_per_layer_tokens_equal_the_seed(setting):
    attn_ratio, mlp_ratio, layers = SETTINGS[setting]
    seed = _seed(attn_ratio, mlp_ratio, layers)
    ours = _ours(seed, attn_ratio, mlp_ratio, layers)
    image, audio = _inputs()
    generator = torch.Generator().manual_seed(7)
    keep_image = torch.rand(2, 16, generator=generator).argsort(dim=1)[:, :4]
    keep_audio = torch.rand(2, 24, generator=generator).argsort(dim=1)[:, :4]
    for keep in ((None, None), (keep_image, keep_audio)):
        with torch.no_grad():
            *reference, embs = seed.encoder(image, audio, *keep, return_embs=True)
            encoded = ours.encode(image, audio, *keep, layers=True)
        for name, theirs in zip(("visual", "audio", "fused"), reference, strict=True):
            assert_parity(getattr(encoded, name), theirs, f"{setting} {name} (kept: {keep[0] is not None})")
        for i, (triple, theirs) in enumerate(zip(encoded.layers, embs, strict=True)):
            for name, a, b in zip(("visual", "audio", "fused"), triple, theirs, strict=True):
                assert_parity(a, b, f"{setting} layer {i} {name}")


@pytest.mark.parametrize("setting", ["vggsound", "audioset"])
def test_mae_losses_equal_the_seeds_for_the_same_masks(setting, monkeypatch):
    attn_ratio, mlp_ratio, layers = SETTINGS[setting]
    seed = _seed(attn_ratio, mlp_ratio, layers)
    ours = _ours(seed, attn_ratio, mlp_ratio, layers)
    image, audio = _inputs()
    generator = torch.Generator().manual_seed(11)
    noise = {16: torch.rand(2, 16, generator=generator), 24: torch.rand(2, 24, generator=generator)}

    def masks(n: int, length: int, ratio: float, device: torch.device):  # noqa: ANN202, ARG001
        return random_masking(noise[length], ratio)

    monkeypatch.setattr(seed, "random_masking", masks)  # the same masks in both models
    with torch.no_grad():
        loss_image, loss_audio, *_ = seed(image, audio)
        losses, _ = ours.mae_losses(image, audio, noise[16], noise[24])
    assert_parity(losses["mae_visual"], loss_image, f"{setting} image loss")
    assert_parity(losses["mae_audio"], loss_audio, f"{setting} audio loss")

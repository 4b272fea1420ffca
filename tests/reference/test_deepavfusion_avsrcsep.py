"""DeepAVFusion's separation decoder against the seed (``models/avsrcsep.py``: ``AVSrcSep`` around the seed's
``DeepAVFusion`` encoder) at test size (the encoder of ``test_deepavfusion_method``: width 32, depth 2, image 32 px,
audio 32 x 48, patch 8; the decoder at width 32). Both models' tensors are random; ours get them through
``convert_deepavfusion_state_dict`` and ``convert_avsrcsep_state_dict``; fp32, eval mode. Compared: the mask logits
``(B, 1, 64, 96)`` for the same image and mixture log-mel, and the seed's degenerate targets (``faithful``) for the
same spectrograms."""

from __future__ import annotations

import pytest
import torch
from oracles import DEEPAVFUSION, assert_parity, file_module, randomise
from test_deepavfusion_method import SETTINGS, _inputs, _ours, _seed

from avlearn.layers.avsrcsep import AVSrcSepUNet, convert_avsrcsep_state_dict, seed_layers, seed_target_masks


def _avsrcsep_module():  # noqa: ANN202 (a module)
    """The seed's ``models/avsrcsep.py`` (it imports only torch and numpy)."""
    return file_module(DEEPAVFUSION / "models" / "avsrcsep.py", "deepavfusion_seed_avsrcsep")


@pytest.mark.parametrize("setting", ["vggsound", "layer1"])
def test_mask_logits_equal_the_seeds(setting):
    attn_ratio, mlp_ratio, layers = SETTINGS[setting]
    mae = _seed(attn_ratio, mlp_ratio, layers)
    seed = _avsrcsep_module().AVSrcSep(mae.encoder, weighted_loss=True, binary_mask=False)
    randomise(seed.avss_decoder, seed=13)
    seed.eval()
    method = _ours(mae, attn_ratio, mlp_ratio, layers)
    decoder = AVSrcSepUNet(32)
    decoder.load_state_dict(convert_avsrcsep_state_dict(seed.state_dict()))  # strict: every tensor, none left over
    decoder.eval()
    image, audio = _inputs()
    with torch.no_grad():
        _, theirs, _ = seed(image, audio)
        encoded = method.encode(image, audio, layers=True)
        tokens = [encoded.layers[i][1] for i in seed_layers(len(encoded.layers))]  # audio tokens, deepest first
        ours = decoder(tokens, encoded.layers[-1][0], (4, 6))
    assert theirs.shape == (2, 1, 64, 96)
    assert_parity(ours, theirs, f"{setting} separation mask logits")


@pytest.mark.parametrize("binary", [True, False])
def test_faithful_targets_equal_the_seeds(binary):
    module = _avsrcsep_module()
    settings = type("Settings", (), {"weighted_loss": True, "binary_mask": binary})()  # what the seed's loss reads
    generator = torch.Generator().manual_seed(17)
    log_sources = torch.randn(2, 2, 12, 20, generator=generator) - 2.0  # (B, K, F, T) log10 power
    log_mixture = torch.log10((10**log_sources).sum(dim=1))  # (B, F, T): the power of the sum of the sources
    logits = torch.zeros(2, 1, 12, 20)
    ours = seed_target_masks((10**log_sources).sqrt(), (10**log_mixture).sqrt(), binary)  # magnitudes in
    for k in range(2):
        seed_loss = module.AVSrcSep.loss_mask_prediction
        _, theirs = seed_loss(settings, logits, log_mixture[:, None], log_sources[:, k, None])
        torch.testing.assert_close(ours[:, k], theirs[:, 0], rtol=1e-5, atol=1e-6)
    if binary:
        assert ours.mean() < 0.05  # the mixture holds each source: almost never above it
    else:
        assert ours.max() <= 0.5 + 1e-6  # at most 0.5 by construction


def test_the_paper_size_decoder_has_the_seeds_tensors():
    """At ViT-B width (768) every tensor of the seed's ``AVSrcSepUNet`` maps onto ours with its shape (46.9 M
    parameters, spec section 3.4)."""
    theirs = _avsrcsep_module().AVSrcSepUNet(768).state_dict()
    ours = AVSrcSepUNet(768).state_dict()
    converted = convert_avsrcsep_state_dict(theirs)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.items()}
    assert round(sum(p.numel() for p in AVSrcSepUNet(768).parameters()) / 1e6, 1) == 46.9

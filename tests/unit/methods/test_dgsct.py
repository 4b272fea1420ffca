"""DG-SCT: the adapter's shapes and gating, the pairing rule, the paired runner's parity with the plain backbones,
and which parameters train when the backbones are frozen."""

from __future__ import annotations

import copy

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.errors import ConfigError
from avlearn.methods.dgsct import DGSCT, DGSCTAdapter, DGSCTConfig, pair_blocks
from avlearn.registry import BACKBONES, METHODS


def _method(**overrides) -> DGSCT:
    visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2)
    audio = BACKBONES.build("htsat_tiny")
    return DGSCT(DGSCTConfig(num_latents=4, audio_tile=2, **overrides), visual, audio)


@pytest.fixture(scope="module")
def built() -> DGSCT:
    """One tiny DG-SCT for the module (building it dominates the run time); tests that change it take a copy."""
    return _method()


def _batch(b: int = 2, s: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"frames": torch.randint(0, 256, (b, s, 24, 24, 3), dtype=torch.uint8), "audio": torch.randn(b, s, 32, 20)}


def test_pairing_rule_matches_the_paper_and_generalises():
    # Stage 3 of Swin-V2-L (18 blocks) with HTS-AT (6): HTS-AT block k meets Swin block 3k + 2.
    steps = pair_blocks(18, 6)
    assert [(v, a) for v, a, p in steps if p is not None] == [(3 * k + 2, k) for k in range(6)]
    assert [v for v, _, _ in steps] == list(range(18)) and sum(p is not None for *_, p in steps) == 6
    assert pair_blocks(2, 2) == [(0, 0, 0), (1, 1, 1)]
    # Audio deeper than visual: the roles swap.
    assert [(v, a) for v, a, p in pair_blocks(1, 3) if p is not None] == [(0, 2)]
    paper = sum(
        p is not None for d_v, d_a in zip((2, 2, 18, 2), (2, 2, 6, 2), strict=True) for *_, p in pair_blocks(d_v, d_a)
    )
    assert paper == 12


def test_adapter_shapes_and_zero_gate():
    cfg = DGSCTConfig(num_latents=4, reduction=4, groups=2)
    adapter = DGSCTAdapter(dim=16, tokens=9, other_dim=8, other_tokens=5, cfg=cfg)
    x, y = torch.randn(3, 9, 16), torch.randn(3, 5, 8)
    residual, pool = adapter(x, y)
    assert residual.shape == (3, 9, 16) and pool.shape == (3, 1, 9)
    assert torch.allclose(pool.sum(-1), torch.ones(3, 1))
    assert residual.abs().max() == 0  # gate starts at 0: the adapter is the identity at initialisation
    with torch.no_grad():
        adapter.gate.fill_(1.0)
    assert adapter(x, y)[0].abs().max() > 0
    ungated = DGSCTAdapter(16, 9, 8, 5, cfg, gate=False)
    assert ungated.gate is None and ungated(x, y)[0].abs().max() > 0


def test_adapter_rejects_widths_the_bottleneck_cannot_group():
    with pytest.raises(ConfigError, match="reduction"):
        DGSCTAdapter(12, 4, 8, 4, DGSCTConfig(reduction=8, groups=2))


def test_zero_gates_leave_the_backbones_unchanged(built):
    method = copy.deepcopy(built).eval()
    batch = _batch()
    feats = method(batch)
    visual, audio = method.visual_backbone, method.audio_backbone
    pixels = visual.preprocess(batch["frames"].flatten(0, 1))
    spectrogram = batch["audio"].flatten(0, 1).repeat(1, 1, 2).transpose(1, 2)
    torch.testing.assert_close(feats.visual.flatten(0, 1), visual.forward_features(pixel_values=pixels))
    torch.testing.assert_close(feats.audio.flatten(0, 1), audio.forward_features(spectrogram=spectrogram))
    # With open gates the adapters change both streams.
    with torch.no_grad():
        for pair in method.pairs:
            for adapter in pair.children():
                adapter.gate.fill_(1.0)
    opened = method(batch)
    assert not torch.allclose(opened.visual, feats.visual) and not torch.allclose(opened.audio, feats.audio)


def test_features_have_the_contract_shapes(built):
    method = built.eval()
    feats = method(_batch(b=2, s=3))
    c_v, c_a = method.visual_backbone.num_features, method.audio_backbone.num_features
    assert feats.visual_pooled.shape == (2, 3, c_v) and feats.audio_pooled.shape == (2, 3, c_a)
    assert feats.visual.shape[:2] == (2, 3) and feats.visual.shape[-1] == c_v
    assert feats.audio.shape[:2] == (2, 3) and feats.audio.shape[-1] == c_a
    assert feats.visual_grid[0] * feats.visual_grid[1] == feats.visual.shape[2]
    assert (method.out_dim, method.audio_dim) == (c_v, c_a)
    assert set(METHODS.get("dgsct").produces) == set(feats.produced())


def test_frozen_backbones_get_no_gradient_and_every_adapter_does(built):
    method = copy.deepcopy(built)
    method.visual_backbone.freeze("all")
    method.audio_backbone.freeze("all")
    with torch.no_grad():  # open the gates, so that every adapter parameter is on the gradient path
        for pair in method.pairs:
            for adapter in pair.children():
                adapter.gate.fill_(0.5)
                adapter.latent_gate.fill_(0.5)
    feats = method.train()(_batch())
    (feats.visual_pooled.square().mean() + feats.audio_pooled.square().mean()).backward()
    for name, p in method.named_parameters():
        if name.startswith(("visual_backbone.", "audio_backbone.")):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None, f"{name} gets no gradient"


def test_stage_count_mismatch_is_a_config_error():
    visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2, depths=[1, 1, 1], num_heads=[1, 2, 2])
    with pytest.raises(ConfigError, match="stage by stage"):
        DGSCT(DGSCTConfig(), visual, BACKBONES.build("htsat_tiny"))

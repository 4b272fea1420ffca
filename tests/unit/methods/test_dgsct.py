"""DG-SCT: the adapter's shapes and gating, the pairing rule (stage by stage and over flattened blocks), the paired
runner's parity with the plain backbones (Swin-V2 and CLIP ViT with HTS-AT), the temporal gate, the visual pyramid,
activation checkpointing, and which parameters train when the backbones are frozen."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.errors import ConfigError
from avlearn.methods.dgsct import DGSCT, DGSCTAdapter, DGSCTConfig, pair_blocks, plan_pairs
from avlearn.registry import BACKBONES, METHODS


def _method(**overrides) -> DGSCT:
    visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2)
    audio = BACKBONES.build("htsat_tiny")
    return DGSCT(DGSCTConfig(num_latents=4, audio_tile=2, **overrides), visual, audio)


def _clip_method(layers: int = 5, **overrides) -> DGSCT:
    """CLIP ViT (one block per stage) with HTS-AT (1-2-1-1): unequal stage counts, 5 blocks each, paired 1:1."""
    visual = BACKBONES.build("clip_vit_tiny", num_hidden_layers=layers)
    return DGSCT(DGSCTConfig(num_latents=4, audio_tile=2, **overrides), visual, BACKBONES.build("htsat_tiny"))


def _open_gates(method: DGSCT, value: float) -> None:
    with torch.no_grad():
        for pair in method.pairs:
            for adapter in pair.children():
                adapter.gate.fill_(value)
                adapter.latent_gate.fill_(value)


@pytest.fixture(scope="module")
def built() -> DGSCT:
    """One tiny DG-SCT for the module (building it dominates the run time); tests that change it take a copy."""
    return _method()


def _batch(b: int = 2, s: int = 2, size: int = 24) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "frames": torch.randint(0, 256, (b, s, size, size, 3), dtype=torch.uint8),
        "audio": torch.randn(b, s, 32, 20),
    }


def _plain_backbones(method: DGSCT, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two backbones' own tokens on the batch, without adapters."""
    visual, audio = method.visual_backbone, method.audio_backbone
    pixels = visual.preprocess(batch["frames"].flatten(0, 1))
    spectrogram = batch["audio"].flatten(0, 1).repeat(1, 1, 2).transpose(1, 2)
    return visual.forward_features(pixel_values=pixels), audio.forward_features(spectrogram=spectrogram)


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


def test_plan_keeps_the_paper_pairing_and_flattens_unequal_stage_counts():
    paper = plan_pairs([2, 2, 18, 2], [2, 2, 6, 2])
    pairs = [(v, a) for v, a, p in paper if p is not None]
    assert len(pairs) == 12 and [p for *_, p in paper if p is not None] == list(range(12))
    assert [v for v, a in pairs if v[0] == 2] == [(2, 3 * k + 2) for k in range(6)]
    assert [v for v, _, _ in paper] == [(i, j) for i, d in enumerate([2, 2, 18, 2]) for j in range(d)]
    # Few-shot: CLIP ViT-B/32 (12 one-block stages) with HTS-AT 2-2-6-2: flattened, 1:1.
    clip = plan_pairs([1] * 12, [2, 2, 6, 2])
    audio_blocks = [(i, j) for i, d in enumerate([2, 2, 6, 2]) for j in range(d)]
    assert clip == [((k, 0), audio_blocks[k], k) for k in range(12)]
    # Unequal depths too: 2 visual blocks with 5 audio blocks pair audio blocks 1 and 4, the other 3 run alone.
    short = plan_pairs([1, 1], [1, 2, 1, 1])
    assert [(v, a) for v, a, p in short if p is not None] == [((0, 0), (1, 0)), ((1, 0), (3, 0))]
    assert [a for _, a, _ in short] == [(0, 0), (1, 0), (1, 1), (2, 0), (3, 0)]


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


# aot_eager traces the checkpoint as inductor does (Dynamo's checkpoint operator, AOTAutograd's recomputing backward),
# without generating C++ kernels (about 1.6 CPU-s against 24); inductor, the default backend, in the slow job.
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_checkpointed_piece_updates_batch_norm_once(built, backend):
    """Under torch.compile the recomputation is the compiler's (no context: the compiled checkpoint refuses a
    bound-method ``context_fn``, and its backward does not update buffers again)."""
    method = copy.deepcopy(built).train()
    method.cfg = replace(method.cfg, checkpointing=True, checkpoint_unit="piece")
    norm = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    piece = torch.compile(lambda x: method._run(norm, x, unit="piece"), backend=backend)
    piece(torch.randn(8, 4)).square().mean().backward()
    assert int(norm[1].num_batches_tracked) == 1 and norm[0].weight.grad is not None


def test_unknown_checkpoint_unit_is_refused():
    with pytest.raises(ConfigError, match="checkpoint_unit='block'"):
        _clip_method(layers=1, checkpoint_unit="block")


def test_zero_gates_leave_the_backbones_unchanged(built):
    method = copy.deepcopy(built).eval()
    batch = _batch()
    feats = method(batch)
    visual, audio = _plain_backbones(method, batch)
    torch.testing.assert_close(feats.visual.flatten(0, 1), visual)
    torch.testing.assert_close(feats.audio.flatten(0, 1), audio)
    # With open gates the adapters change both streams.
    _open_gates(method, 1.0)
    opened = method(batch)
    assert not torch.allclose(opened.visual, feats.visual) and not torch.allclose(opened.audio, feats.audio)


def test_features_have_the_contract_shapes(built):
    method = built.eval()
    feats = method(_batch(b=2, s=3))
    c_v, c_a = method.visual_backbone.num_features, method.audio_backbone.num_features
    assert feats.visual_pooled.shape == (2, 3, c_v) and feats.audio_pooled.shape == (2, 3, c_a)
    assert feats.visual.shape[:2] == (2, 3) and feats.visual.shape[-1] == c_v
    assert feats.audio.shape[:2] == (2, 3) and feats.audio.shape[-1] == c_a
    assert feats.grid[0] * feats.grid[1] == feats.visual.shape[2]
    assert method.dims == {"audio": c_a, "audio_pooled": c_a, "visual": c_v, "visual_pooled": c_v,
                           "visual_pyramid": (16, 32, 64, 128)}  # fmt: skip
    assert set(method.produces) == set(feats.produced())
    assert set(METHODS.get("dgsct").produces) == set(feats.produced()) - {"grid", "visual_pyramid"}


def test_visual_pyramid_is_each_stage_before_patch_merging(built):
    method = copy.deepcopy(built).eval()
    feats = method(_batch(b=2, s=3, size=32))
    # swinv2_tiny at 32 px: 8x8 tokens of width 16, then 4x4x32, 2x2x64, 1x1x128 (last: after the final norm).
    assert [tuple(level.shape) for level in feats.visual_pyramid] == [
        (2, 3, 16, 8, 8), (2, 3, 32, 4, 4), (2, 3, 64, 2, 2), (2, 3, 128, 1, 1)
    ]  # fmt: skip
    assert method.dims["visual_pyramid"] == (16, 32, 64, 128)
    last = feats.visual.flatten(0, 1).transpose(1, 2).reshape(6, 128, 1, 1)  # (B*S, N, C) -> (B*S, C, 1, 1)
    torch.testing.assert_close(feats.visual_pyramid[-1].flatten(0, 1), last)


def test_clip_vit_with_htsat_pairs_blocks_one_to_one_and_pools_the_cls_token():
    method = _clip_method().eval()
    assert len(method.pairs) == 5 and all(p is not None for *_, p in method.plan)
    assert not {"grid", "visual_pyramid"} & (set(method.produces) | set(method.dims))
    # The adapters take each side's tokens at that block: 17 CLIP tokens of width 32; HTS-AT's stage shapes.
    widths = [
        (pair.visual_p1.width_align.out_features, pair.audio_p1.width_align.out_features) for pair in method.pairs
    ]
    assert widths == [(32, 16), (32, 32), (32, 32), (32, 64), (32, 128)]
    assert [pair.audio_p1.token_align.out_channels for pair in method.pairs] == [256, 64, 64, 16, 4]
    assert {pair.visual_p1.token_align.out_channels for pair in method.pairs} == {17}
    batch = _batch(b=2, s=3, size=32)
    feats = method(batch)
    visual, audio = _plain_backbones(method, batch)
    torch.testing.assert_close(feats.visual.flatten(0, 1), visual)  # zero gates: the plain backbones
    torch.testing.assert_close(feats.audio.flatten(0, 1), audio)
    torch.testing.assert_close(feats.visual_pooled, feats.visual[:, :, 0])  # CLS after the final norm
    torch.testing.assert_close(feats.visual_pooled.flatten(0, 1), method.visual_backbone.pool(visual))
    assert feats.visual_pooled.shape == (2, 3, 32) and feats.audio_pooled.shape == (2, 3, 128)
    assert feats.visual_pyramid is None and feats.grid is None


def test_clip_vit_with_htsat_trains_every_adapter():
    method = _clip_method(layers=2)
    assert len(method.pairs) == 2 and sum(p is None for *_, p in method.plan) == 3
    method.visual_backbone.freeze("all")
    method.audio_backbone.freeze("all")
    _open_gates(method, 0.5)
    feats = method.train()(_batch(size=32))
    (feats.visual_pooled.square().mean() + feats.audio_pooled.square().mean()).backward()
    for name, p in method.named_parameters():
        assert (p.grad is not None) == (not name.startswith(("visual_backbone.", "audio_backbone."))), name


def test_temporal_gate_scales_each_segment_by_its_own_guide():
    torch.manual_seed(0)
    cfg = DGSCTConfig(num_latents=4, reduction=4, groups=2)
    plain = DGSCTAdapter(16, 9, 8, 5, cfg, gate=False).eval()
    gated = DGSCTAdapter(16, 9, 8, 5, replace(cfg, gamma=0.5), gate=False).eval()
    gated.load_state_dict(plain.state_dict(), strict=False)
    assert plain.temporal is None and gated.temporal.out_features == 1
    x, y = torch.randn(4, 9, 16), torch.randn(4, 5, 8)
    assert not torch.allclose(gated(x, y)[0], plain(x, y)[0])
    # The gate of segment t reads only segment t's guide: changing segment 1's audio leaves segment 0 unchanged.
    y2 = y.clone()
    y2[1] += 1.0
    torch.testing.assert_close(gated(x, y2)[0][0], gated(x, y)[0][0])
    with torch.no_grad():
        gated.temporal.weight.zero_()
        gated.temporal.bias.fill_(-100.0)  # sigmoid -> 0: the gate vanishes
    torch.testing.assert_close(gated(x, y)[0], plain(x, y)[0])


def _saved_elements(method: DGSCT, batch: dict[str, torch.Tensor]) -> int:
    """The number of elements autograd saves for backward during a forward (which is not run backward: under these
    hooks autograd would not check that saved tensors are unchanged)."""
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        method(batch)
    return sum(saved)


@pytest.mark.parametrize("unit", ["step", "piece"])
def test_checkpointing_gives_the_same_outputs_and_gradients_and_saves_fewer_tensors(built, unit):
    results = []
    for checkpointing in (False, True):
        method = copy.deepcopy(built)
        method.cfg = replace(method.cfg, checkpointing=checkpointing, checkpoint_unit=unit)
        _open_gates(method, 0.5)
        saved = _saved_elements(method.train(), _batch())
        torch.manual_seed(1)
        feats = method(_batch())
        loss = feats.visual_pooled.square().mean() + feats.audio_pooled.square().mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
        stats = {n: b.clone() for n, b in method.named_buffers() if "bn_" in n}  # adapters' batch-norm statistics
        results.append((loss.detach(), grads, saved, stats))
    (loss_plain, grads_plain, saved_plain, stats_plain), (loss_ckpt, grads_ckpt, saved_ckpt, stats_ckpt) = results
    assert saved_ckpt < saved_plain / 2  # activations inside the checkpointed steps are recomputed, not kept
    torch.testing.assert_close(loss_ckpt, loss_plain)
    assert grads_plain.keys() == grads_ckpt.keys() and len(grads_plain) > 0
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)
    assert stats_plain.keys() == stats_ckpt.keys() and len(stats_plain) > 0
    for name, stat in stats_plain.items():  # updated once per step, not again by the recomputation
        torch.testing.assert_close(stats_ckpt[name], stat, msg=name)


def test_avs_s4_task_trains_on_the_dgsct_pyramid(built):
    from avlearn.methods.base import check_pairing
    from avlearn.tasks.avs import HEAD_NEEDS, AVSConfig, AVSTask
    from avlearn.tasks.base import DatasetInfo

    method = copy.deepcopy(built)
    check_pairing("dgsct_tiny", method.produces, "avs_s4", HEAD_NEEDS["avsbench"])
    task = AVSTask(AVSConfig(dim=16), method, DatasetInfo(()))
    batch = _batch(b=2, s=5, size=32)
    batch["masks"] = torch.zeros(2, 5, 32 * 32, dtype=torch.bool)
    batch["masks"][:, :, 100:300] = True
    batch["mask_valid"] = torch.tensor([[True, False, False, False, False]] * 2)  # S4 training: first frame only
    out = task.train()(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and task.decoder.project[0][0].weight.grad is not None
    assert method.pairs[0].visual_p1.gate.grad is not None
    assert task.eval().predict(batch)["probs"].shape == (2, 5, 32, 32)


def test_avs_pairing_is_refused_for_a_visual_backbone_without_a_grid():
    from avlearn.methods.base import check_pairing
    from avlearn.tasks.avs import HEAD_NEEDS

    with pytest.raises(ConfigError, match="visual_pyramid"):
        check_pairing("dgsct", _clip_method(layers=2).produces, "avs_s4", HEAD_NEEDS["avsbench"])


def test_frozen_backbones_get_no_gradient_and_every_adapter_does(built):
    method = copy.deepcopy(built)
    method.visual_backbone.freeze("all")
    method.audio_backbone.freeze("all")
    _open_gates(method, 0.5)  # so that every adapter parameter is on the gradient path
    feats = method.train()(_batch())
    (feats.visual_pooled.square().mean() + feats.audio_pooled.square().mean()).backward()
    for name, p in method.named_parameters():
        if name.startswith(("visual_backbone.", "audio_backbone.")):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None, f"{name} gets no gradient"


def test_unequal_stage_counts_pair_the_flattened_blocks():
    visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2, depths=[1, 2, 1], num_heads=[1, 2, 2])
    method = DGSCT(DGSCTConfig(num_latents=4, audio_tile=2), visual, BACKBONES.build("htsat_tiny")).eval()
    assert len(method.pairs) == 4  # 4 visual blocks with 5 audio blocks
    feats = method(_batch())
    assert feats.visual_pooled.shape == (2, 2, 64) and len(feats.visual_pyramid) == 3


def test_audio_options_are_checked_against_the_audio_backbone():
    with pytest.raises(ConfigError, match="method.audio_frontend='spectral'"):
        _method(audio_frontend="spectral")
    with pytest.raises(ConfigError, match="method.audio_frontend=seed needs a 32 kHz, 64-band HTS-AT"):
        _method(audio_frontend="seed")  # htsat_tiny: 1.6 kHz, 32 bands
    with pytest.raises(ConfigError, match="method.spec_augment=true needs an HTS-AT"):
        visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2)
        DGSCT(DGSCTConfig(spec_augment=True), visual, BACKBONES.build("cnn_audio_small"))
    assert _method(spec_augment=True).audio_backbone.spec_augment is not None


def test_seed_audio_frontend_feeds_htsat_the_log_mel_of_the_tiled_waveform():
    from avlearn.audio import htsat_input

    visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2)
    audio = BACKBONES.build("htsat_base", depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                            patch_embeds_hidden_size=16)  # fmt: skip
    method = DGSCT(DGSCTConfig(num_latents=4, audio_frontend="seed"), visual, audio).eval()
    wave = 0.1 * torch.randn(1, 2, 1, 32_000, generator=torch.Generator().manual_seed(0))  # (B, S, 1, N)
    frames = torch.randint(0, 256, (1, 2, 24, 24, 3), dtype=torch.uint8)
    with torch.no_grad():
        _, hidden = method._embed(frames, wave)
        expected = audio.embed(spectrogram=htsat_input(wave[0, :, 0].repeat(1, 10), 32_000))  # (S, 1001, 64)
    torch.testing.assert_close(hidden.tokens, expected.tokens)


def test_seed_audio_frontend_makes_the_pipelines_keep_32k_waveform_segments():
    from omegaconf import OmegaConf

    from avlearn.build import audio_preprocess
    from avlearn.data.segments import segment_log_mel

    pre = audio_preprocess(OmegaConf.create({"method": {"audio_frontend": "seed"}}))
    assert (pre.sample_rate, pre.features) == (32_000, "waveform")
    wave = torch.arange(3 * 32_000.0)[None]  # (1, N): three one-second segments
    segments = segment_log_mel(wave, 3, pre)
    assert segments.shape == (1, 3, 1, 32_000)
    assert torch.equal(segments[0, 1, 0], wave[0, 32_000:64_000])


def test_adapter_variants_differ_in_structure_as_the_seed_tasks():
    def adapter(variant: str, tokens: int = 64) -> DGSCTAdapter:
        return DGSCTAdapter(32, tokens, 16, 36, DGSCTConfig(adapter_variant=variant, num_latents=4), gate=True)

    ave, s4, ms3 = adapter("ave"), adapter("avs_s4"), adapter("avs_ms3")
    assert ave.latents.min() > 0 and not s4.latents.any() and not adapter("avqa").latents.any()
    assert hasattr(ms3, "token_align") and not hasattr(s4, "token_align")  # S4 re-grids instead
    assert isinstance(s4.norm_in, torch.nn.Identity) and isinstance(ave.norm_in, torch.nn.LayerNorm)
    x, y = torch.randn(2, 64, 32), torch.randn(2, 36, 16)
    outputs = {}
    for gate in (100.0, 200.0):  # large: LayerNorm's eps is negligible against the gated variance
        for name, module in (("ave", ave), ("ms3", ms3)):
            with torch.no_grad():
                module.gate.fill_(gate)
                outputs[name, gate] = module.eval()(x, y)[0]
    torch.testing.assert_close(outputs["ave", 200.0], 2 * outputs["ave", 100.0])  # LayerNorm, then the gate
    torch.testing.assert_close(outputs["ms3", 200.0], outputs["ms3", 100.0], atol=1e-3, rtol=0)  # gate, then LN
    with pytest.raises(ConfigError, match="re-grids square token grids; the own side has 60"):
        adapter("avs_s4", tokens=60)
    with pytest.raises(ConfigError, match="method.adapter_variant='avvp': expected one of ave, avs_s4"):
        adapter("avvp")

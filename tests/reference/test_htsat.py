"""HTS-AT with its front end against the seed's (``DG-SCT/AVE/nets/htsat.py``, torchlibrosa STFT and mel, as
``net_trans.py`` runs it): the seed's random weights saved as an original-layout Lightning checkpoint and moved by
``avlearn convert htsat``; one-second segments tiled ten times; fp32, eval mode. Checked: the log-mel (avlearn's
``htsat_segment_input`` vs torchlibrosa), and the tokens after every stage (before its patch merging)."""

from __future__ import annotations

import oracles
import torch
from oracles import assert_parity, randomise

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.audio import htsat_segment_input
from avlearn.convert import convert
from avlearn.registry import BACKBONES


def _seed_htsat() -> torch.nn.Module:
    htsat, config = oracles.seed_module("AVE", "nets.htsat"), oracles.seed_module("AVE", "nets.esc_config")
    return htsat.HTSAT_Swin_Transformer(
        spec_size=config.htsat_spec_size, patch_size=config.htsat_patch_size, in_chans=1,
        num_classes=config.classes_num, window_size=config.htsat_window_size, config=config,
        depths=config.htsat_depth, embed_dim=config.htsat_dim, patch_stride=config.htsat_stride,
        num_heads=config.htsat_num_head,
    )  # fmt: skip


def _seed_stages(model: torch.nn.Module, tiled: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The seed's log-mel ``(B, T, F)`` and each stage's tokens, as ``net_trans.py`` drives HTS-AT in eval."""
    mel = model.logmel_extractor(model.spectrogram_extractor(tiled))  # (B, 1, T, F)
    x = model.bn0(mel.transpose(1, 3)).transpose(1, 3)
    x = model.pos_drop(model.patch_embed(model.reshape_wav2img(x)))  # (B, N, C)
    stages = []
    for layer in model.layers:
        for block in layer.blocks:
            x, _ = block(x)
        stages.append(x)
        x = layer.downsample(x) if layer.downsample is not None else x
    return mel[:, 0], stages


def test_htsat_and_its_front_end_match_the_seed(tmp_path) -> None:
    reference = _seed_htsat()
    randomise(reference, keep=("spectrogram_extractor", "logmel_extractor"))  # torchlibrosa's fixed STFT and mel
    reference.eval()
    state = {f"sed_model.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0}, tmp_path / "HTSAT_AudioSet_Saved_1.ckpt")
    convert("htsat", tmp_path / "HTSAT_AudioSet_Saved_1.ckpt", tmp_path / "htsat")
    ours = BACKBONES.build("htsat_base", pretrained=str(tmp_path / "htsat")).eval()

    # (S, N), one second each; both with broadband noise, so that no band sits at the -100 dB floor, where float32
    # STFT rounding (~1e-15 of the peak power) moves the dB value of a pure tone's empty bands by up to 0.08 dB.
    generator = torch.Generator().manual_seed(0)
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * torch.arange(32_000) / 32_000)
    segments = torch.stack([tone, torch.zeros(32_000)]) + 0.05 * torch.randn(2, 32_000, generator=generator)
    with torch.no_grad():
        expected_mel, expected_stages = _seed_stages(reference, segments.repeat(1, 10))
        mel = htsat_segment_input(segments, 32_000)  # (S, 1001, 64)
        hidden = ours.embed(spectrogram=mel)
        stages = []
        for i in range(ours.num_stages):
            for j in range(len(ours.stage_blocks(i))):
                hidden = ours.run_block(i, j, hidden)
            stages.append(hidden.tokens)
            hidden = ours.end_stage(i, hidden)
    assert_parity(mel, expected_mel, "log-mel")
    for i, (got, want) in enumerate(zip(stages, expected_stages, strict=True)):
        assert_parity(got, want, f"stage {i + 1} tokens")

"""The whole DG-SCT method at paper depth against the seed's AVE model (``DG-SCT/AVE/nets/net_trans.py``
``MMIL_Net.forward_swin``), narrow widths: Swin-V2 2-2-18-2 at 192 px (window 12) and HTS-AT 2-2-6-2 with the
seed's front end, both 32 wide at stage 1 (head width 8), 12 pairs x 4 adapters (32 latents, r 8, 2 groups, batch
norm, gates). The seed model's random state dict is moved by ``avlearn.convert.convert_dgsct_state_dict``; 10
one-second segments, eval mode. Compared: the per-segment pooled embeddings (``visual_pooled`` /
``audio_pooled``), which the seed hands to its temporal attention (captured there; its head is sized for the
full widths).

Compared in float64, with the seed's front end given avlearn's log-mel (its own parity: ``test_htsat.py``).
Why: the latent-token softmaxes of the seed's adapters have no 1/sqrt(d) scaling, and with these random weights
their logits reach 2e2 to 5e3, so an input difference of 1e-7 of the scale grows about 1e3-fold per adapter and
compounds over the 48. In float32 the two audio towers (transformers vs HTS-AT, the same sums in a different
order) differ by fp32 rounding, which ends as 2.3e-2 / 6.0e-3 (visual / audio) even with identical log-mels;
in float64 torchlibrosa's float32-stored STFT and mel matrices differ from avlearn's exact ones by about 1e-7,
which ends as 3.5e-4 / 1.3e-3. With the same log-mel, float64 gives at most 3.2e-10 / 8.3e-9 (seen over runs).
Every adapter given the same inputs in the whole model returns the same values as its seed counterpart (0.0 in
float32), so nothing is mapped wrongly: the float32 difference is the conditioning of the seed's design."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import oracles
import torch
from oracles import assert_parity, randomise

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.audio import htsat_segment_input
from avlearn.convert import convert_dgsct_state_dict, load_converted
from avlearn.methods.dgsct import DGSCT, DGSCTConfig
from avlearn.registry import BACKBONES

WIDTH, HEADS, SEGMENTS = 32, (4, 8, 16, 32), 10
OPT = SimpleNamespace(Adapter_downsample=8, is_audio_adapter_p1=1, is_audio_adapter_p2=1, is_bn=1, is_gate=1,
                      is_before_layernorm=1, is_post_layernorm=1, is_multimodal=1, num_conv_group=2, num_tokens=32,
                      backbone_type="audioset")  # fmt: skip


class _Captured(Exception):
    """Raised by the hook on the seed's temporal attention: the pooled embeddings are all the test needs."""


def _seed_model() -> torch.nn.Module:
    """The seed's ``MMIL_Net`` with a narrow Swin-V2 of the paper's depths and a narrow HTS-AT."""
    swin = {"img_size": 192, "window_size": 12, "embed_dim": WIDTH, "depths": (2, 2, 18, 2), "num_heads": HEADS}
    model = oracles.seed_ave_model(OPT, swin, {"htsat_dim": WIDTH})
    randomise(model, keep=("htsat.spectrogram_extractor", "htsat.logmel_extractor"))
    return model.eval()


def _ours() -> DGSCT:
    visual = BACKBONES.build("swinv2_large_192", embed_dim=WIDTH, num_heads=list(HEADS))
    audio = BACKBONES.build("htsat_base", patch_embeds_hidden_size=WIDTH, hidden_size=WIDTH * 8)
    return DGSCT(DGSCTConfig(audio_frontend="seed"), visual, audio).eval()


class _GivenLogMel(torch.nn.Module):
    """Stands in for the seed's torchlibrosa mel: returns the given log-mel ``(B*S, T, F)`` as ``(B*S, 1, T, F)``."""

    def __init__(self, mel: torch.Tensor) -> None:
        super().__init__()
        self.mel = mel

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.mel[:, None]


def test_dgsct_at_paper_depth_matches_the_seed() -> None:
    reference = _seed_model()
    ours = _ours()
    done = convert_dgsct_state_dict(reference.state_dict())
    load_converted(ours, done, "seed MMIL_Net")
    assert all(n.startswith(("CMBS.", "temporal_attn.", "adapter_token_downsampler.", "swin.head", "htsat.head",
                             "htsat.tscam_conv", "htsat.spectrogram_extractor", "htsat.logmel_extractor"))
               or n.rsplit(".", 1)[-1] in ("attn_mask", "relative_position_index", "relative_coords_table")
               for n in done.dropped)  # fmt: skip

    reference.double(), ours.double()
    preprocess = ours.visual_backbone.preprocess
    ours.visual_backbone.preprocess = lambda frames: preprocess(frames).double()  # (N, 3, h, w) float64
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, SEGMENTS, 192, 192, 3), dtype=torch.uint8, generator=generator)
    audio = 0.3 * torch.randn(1, SEGMENTS, 1, 32_000, generator=generator, dtype=torch.float64)
    reference.htsat.spectrogram_extractor = torch.nn.Identity()
    reference.htsat.logmel_extractor = _GivenLogMel(htsat_segment_input(audio.flatten(0, 2), 32_000))  # (S, T, F)
    captured = {}

    def capture(module, inputs):
        captured["visual"], captured["audio"] = inputs
        raise _Captured

    reference.temporal_attn.register_forward_pre_hook(capture)
    pixels = ours.visual_backbone.preprocess(frames.flatten(0, 1)).unflatten(0, (1, SEGMENTS))  # (B, S, 3, h, w)
    with torch.no_grad():
        features = ours({"frames": frames, "audio": audio})
        with contextlib.suppress(_Captured):
            reference([audio[:, :, 0].repeat(1, 1, 10)], pixels)  # (B, S, 10 x 32000): each segment tiled 10x
    assert_parity(features.visual_pooled, captured["visual"], "visual_pooled")
    assert_parity(features.audio_pooled, captured["audio"], "audio_pooled")

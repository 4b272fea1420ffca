"""avlearn's Video Swin against the VALOR seed's ``SwinTransformer3D`` (``model/videoswin.py``), fp32, eval mode.

The seed module is built with random weights (every tensor perturbed at its own scale, so a wrongly mapped one
changes the output),
its state dict is moved by the ``video_swin`` converter (the official Kinetics layout: ``backbone.`` prefix and a
``cls_head``) into avlearn's tower, and both encode the same clip. The seed's output ``(B, C, T, h, w)`` is permuted
to ``(B, T, h*w, C)`` as VALOR does (``forward_video_encoder``). Sizes: Swin-B (width 128, depths 2-2-18-2, window
(8, 7, 7)) at 224 px, where the window is clipped along time only; the tiny config (window (2, 2, 2)) with a shifted
time axis, with an odd frame count and with a size that pads the windows and the patch merging.
"""

from __future__ import annotations

import oracles
import pytest
import torch
from oracles import assert_parity
from torch import nn

from avlearn.backbones.video_swin import VideoSwin, VideoSwinConfig
from avlearn.convert import convert_state_dict

TINY = {"embed_dim": 16, "depths": (1, 2, 1, 2), "num_heads": (1, 2, 2, 4), "window": (2, 2, 2)}
SWIN_B = {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "window": (8, 7, 7)}


def seed_swin(arch: dict) -> nn.Module:
    """The seed's ``SwinTransformer3D`` at ``arch`` (as VALOR builds it: time stride 1), random weights, eval."""
    (videoswin,) = oracles.valor_modules("model.videoswin")
    model = videoswin.SwinTransformer3D(time_stride=1, embed_dim=arch["embed_dim"], depths=list(arch["depths"]),
                                        num_heads=list(arch["num_heads"]), window_size=arch["window"])  # fmt: skip
    perturb(model)
    return model.eval()


def perturb(model: nn.Module, seed: int = 0) -> None:
    """Every parameter moved off its initialisation by noise of its own scale (the tensor's std; 0.1 for constant
    ones: LayerNorm weights and biases), so a wrongly mapped tensor changes the output. ``oracles.randomise``'s
    fixed 0.2 makes 1024-wide projections ten times their trained scale: Swin-B's 24 blocks then amplify fp32
    rounding to 4e-4 of the output (1e-12 in float64), so the scale is kept here."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            spread = parameter.std().item() if parameter.numel() > 1 else 0.0
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(noise * (spread if spread > 0 else 0.1))


def ours_from(seed: nn.Module, arch: dict, frames: int, size: int) -> VideoSwin:
    """avlearn's tower with the seed's weights, moved through the official checkpoint layout."""
    official = {f"backbone.{k}": v for k, v in seed.state_dict().items()}
    official["cls_head.fc_cls.weight"] = torch.zeros(600, seed.num_features)
    state = {k.removeprefix("backbone."): v for k, v in official.items()}  # what read_state_dict strips
    conversion = convert_state_dict("video_swin", state)
    ours = VideoSwin(VideoSwinConfig(**arch, image_size=size, num_frames=frames))
    ours.model.load_state_dict(conversion.tensors)  # strict: every tensor mapped, none left over
    assert "cls_head.fc_cls.weight" in conversion.dropped
    return ours.eval()


def compare(arch: dict, batch: int, frames: int, size: int, what: str) -> None:
    torch.manual_seed(0)
    seed = seed_swin(arch)
    ours = ours_from(seed, arch, frames, size)
    pixels = torch.randn(batch, frames, 3, size, size)  # (B, T, 3, H, W)
    with torch.no_grad():
        reference = seed(pixels.transpose(1, 2))  # (B, C, T, h, w)
        reference = reference.permute(0, 2, 3, 4, 1).flatten(2, 3)  # (B, T, h*w, C)
        got = ours.forward_frames(pixels)
    assert_parity(got, reference, what)


def test_parameter_counts_agree() -> None:
    seed = seed_swin(TINY)
    ours = VideoSwin(VideoSwinConfig(**TINY))
    own_buffers = sum(b.numel() for name, b in seed.named_buffers() if name.endswith("relative_position_index"))
    assert own_buffers > 0  # the seed keeps its index as a buffer; avlearn derives it
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in seed.parameters())


@pytest.mark.parametrize(
    ("batch", "frames", "size", "what"),
    [
        (2, 4, 64, "tiny, 4 frames of 64 px (time shifted, grid 16-8-4-2)"),
        (2, 3, 40, "tiny, 3 frames of 40 px (odd time, windows and merging padded: grid 10-5-3-2)"),
        (1, 5, 72, "tiny, 5 frames of 72 px (odd time and grid 18-9-5-3)"),
    ],
)
def test_tiny_matches_the_seed(batch: int, frames: int, size: int, what: str) -> None:
    compare(TINY, batch, frames, size, what)


def test_swin_b_matches_the_seed() -> None:
    """Swin-B at VALOR's 224 px (grids 56-28-14-7; 2 frames: the (8, 7, 7) window clipped to 2 along time)."""
    compare(SWIN_B, 1, 2, 224, "Swin-B, 2 frames of 224 px")

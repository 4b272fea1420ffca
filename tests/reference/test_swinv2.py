"""Swin-V2-L against timm 0.6.13's ``swinv2_large_window12_192_22k`` (DG-SCT's visual backbone): timm's random
state dict (every one of its tensors but the 21841-way head and the attention masks maps: 471 avlearn tensors) moved
by ``avlearn convert timm_swinv2``; one 192 px image, fp32, eval mode; the final normed tokens."""

from __future__ import annotations

import oracles
import torch
from oracles import assert_parity, randomise

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.convert import convert
from avlearn.registry import BACKBONES


def test_swinv2_large_matches_timm(tmp_path) -> None:
    reference = oracles.timm().create_model("swinv2_large_window12_192_22k", pretrained=False)
    randomise(reference)
    reference.eval()
    torch.save(reference.state_dict(), tmp_path / "swinv2.pth")
    done = convert("timm_swinv2", tmp_path / "swinv2.pth", tmp_path / "swinv2")
    assert len(done.tensors) == 471 and sorted({n.rsplit(".", 1)[-1] for n in done.dropped}) == [
        "attn_mask", "bias", "weight"]  # fmt: skip
    ours = BACKBONES.build("swinv2_large_192", pretrained=str(tmp_path / "swinv2")).eval()
    image = torch.randn(1, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_parity(ours.forward_features(image), reference.forward_features(image), "final tokens")

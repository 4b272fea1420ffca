"""HTS-AT's training-mode behaviour: ``seed_blocks`` puts the MLP residual through the block's drop-path (two
drop-path calls per block, as HTS-AT's own block) and removes ``transformers``' MLP dropout (a train-mode pass with
drop-path 0 equals the eval pass); without it the dropout stays (the test sizes' default). SpecAugment runs between
the input batch norm and the image folding, in training only."""

from __future__ import annotations

import torch
from torch import nn

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.audio import SpecAugment
from avlearn.registry import BACKBONES


class _Counting(nn.Module):
    """Identity that counts its calls (stands in for a block's drop-path)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def _spectrogram() -> torch.Tensor:
    return torch.randn(2, 128, 32, generator=torch.Generator().manual_seed(0))  # htsat_tiny's (B, T, F)


def test_seed_blocks_have_no_mlp_dropout() -> None:
    torch.manual_seed(0)
    seed = BACKBONES.build("htsat_tiny", seed_blocks=True).freeze("all")  # input batch norm fixed in train()
    spectrogram = _spectrogram()
    eval_out = seed.eval().forward_features(spectrogram)
    assert torch.equal(seed.train().forward_features(spectrogram), eval_out)
    torch.manual_seed(0)
    default = BACKBONES.build("htsat_tiny").freeze("all")  # transformers' blocks: dropout 0.1 after the MLP
    assert not torch.allclose(default.train().forward_features(spectrogram), eval_out)


def test_seed_blocks_drop_path_both_residuals() -> None:
    backbone = BACKBONES.build("htsat_tiny", seed_blocks=True, drop_path_rate=0.2)
    block = backbone.stage_blocks(1)[1]
    assert block.output.dropout is block.drop_path and block.drop_path.drop_prob > 0
    counting = _Counting()
    block.drop_path = block.output.dropout = counting  # both residual paths now go through the counter
    backbone.forward_features(_spectrogram())
    assert counting.calls == 2


def test_htsat_base_uses_seed_blocks_and_spec_augment_is_applied_after_the_input_norm() -> None:
    base = BACKBONES.build("htsat_base", depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1])
    assert all(b.output.dropout is b.drop_path for i in range(4) for b in base.stage_blocks(i))
    tiny = BACKBONES.build("htsat_tiny").freeze("all")
    seen = []
    tiny.spec_augment = SpecAugment()
    tiny.eval()
    tiny.spec_augment.register_forward_hook(lambda module, args, out: seen.append((module.training, args[0])))
    spectrogram = _spectrogram()
    tiny.embed(spectrogram)
    normed = tiny.encoder.batch_norm(spectrogram[:, None].transpose(1, 3)).transpose(1, 3)  # (B, 1, T, F)
    assert seen[0][0] is False and torch.equal(seen[0][1], normed)
    tiny.train()
    masked = tiny.embed(spectrogram).tokens
    assert seen[1][0] is True and not torch.equal(masked, tiny.eval().embed(spectrogram).tokens)

"""SpecAugment as HTS-AT trains with it: identity in eval; in training, each spectrogram loses at most two time
stripes of 0-63 frames and two frequency stripes of 0-7 bins (checked by recovering the stripes from the zeros), the
rest unchanged; over many draws the widths cover 0 .. width - 1 and never reach the width."""

from __future__ import annotations

import torch

from avlearn.audio import SpecAugment


def _zero_runs(line: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, length = [], 0
    for value in line.tolist() + [False]:
        if value:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs


def test_eval_mode_is_the_identity() -> None:
    x = torch.randn(3, 1, 100, 64)
    assert torch.equal(SpecAugment().eval()(x), x)


def test_training_zeroes_at_most_two_time_and_two_frequency_stripes() -> None:
    x = torch.rand(64, 1, 300, 64) + 1.0  # no zeros of its own
    out = SpecAugment(generator=torch.Generator().manual_seed(0)).train()(x)
    for item, source in zip(out[:, 0], x[:, 0], strict=True):
        zero = item == 0
        assert torch.equal(item[~zero], source[~zero])
        time_rows, freq_cols = zero.all(dim=1), zero.all(dim=0)  # whole masked frames / bins
        assert torch.equal(zero, time_rows[:, None] | freq_cols[None, :])
        assert len(_zero_runs(time_rows)) <= 2 and max(_zero_runs(time_rows), default=0) <= 2 * 63
        assert len(_zero_runs(freq_cols)) <= 2 and max(_zero_runs(freq_cols), default=0) <= 2 * 7


def test_stripe_widths_are_drawn_from_zero_to_width_minus_one() -> None:
    augment = SpecAugment(time_stripes=1, freq_stripes=1, generator=torch.Generator().manual_seed(1)).train()
    out = augment(torch.ones(4000, 1, 300, 64))
    time_widths = (out[:, 0] == 0).all(dim=2).sum(dim=1)  # (B,) one stripe each
    freq_widths = (out[:, 0] == 0).all(dim=1).sum(dim=1)
    assert set(time_widths.tolist()) == set(range(64))
    assert set(freq_widths.tolist()) == set(range(8))

"""Video Swin's parts against direct computations: the relative-position rows of a clipped window, the shifted
window mask, drop path, per-frame output and config errors (parity with the seed: tests/reference)."""

from __future__ import annotations

import itertools

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.backbones.video_swin import (
    MASKED,
    Block3D,
    VideoSwinConfig,
    _windows,
    relative_position_index,
    shift_mask,
    window_and_shift,
)
from avlearn.errors import ConfigError
from avlearn.registry import BACKBONES

CPU = torch.device("cpu")


def test_clipped_window_rows_are_its_own_offsets():
    """Every token pair of a (2, 3, 3) window reads the table row of its offset in the (8, 7, 7) table."""
    index = relative_position_index((2, 3, 3), (8, 7, 7), CPU)
    tokens = list(itertools.product(range(2), range(3), range(3)))
    for (i, a), (j, b) in itertools.product(enumerate(tokens), repeat=2):
        dt, dh, dw = (x - y for x, y in zip(a, b, strict=True))
        assert index[i, j] == ((dt + 7) * 13 + dh + 6) * 13 + dw + 6


def test_clipping_time_only_gives_the_seeds_rows():
    """The seed slices the full window's index; that is right when only time is clipped (VALOR at 224 px)."""
    full = relative_position_index((8, 7, 7), (8, 7, 7), CPU)
    assert torch.equal(relative_position_index((3, 7, 7), (8, 7, 7), CPU), full[:147, :147])


def test_window_is_clipped_and_unshifted_where_the_grid_is_not_larger():
    assert window_and_shift((4, 56, 7), (8, 7, 7)) == ((4, 7, 7), (0, 3, 0))


def test_shift_mask_separates_tokens_that_wrapped_around_from_those_that_did_not():
    padded, window, shift = (4, 6, 6), (2, 3, 3), (1, 1, 2)
    mask = shift_mask(padded, window, shift, CPU)  # (nW, N, N)
    coords = torch.stack(torch.meshgrid(*(torch.arange(p) for p in padded), indexing="ij"), dim=-1)  # (D, H, W, 3)
    in_windows = _windows(coords[None], window)  # (nW, N, 3): positions after the roll, window by window
    wrapped = in_windows >= torch.tensor(padded) - torch.tensor(shift)  # (nW, N, 3): came from the other end
    same = (wrapped[:, :, None] == wrapped[:, None, :]).all(dim=-1)  # (nW, N, N)
    assert torch.equal(mask, torch.where(same, 0.0, MASKED))
    assert (mask == MASKED).any() and (mask == 0).any()


def test_drop_path_zeroes_whole_clips_and_keeps_the_mean():
    block = Block3D(8, 2, (2, 2, 2), False, 4.0, drop_path=0.5).train()
    out = block._dropped(torch.ones(4000, 1, 2, 2, 8))
    per_clip = out.flatten(1)
    assert set(per_clip.unique().tolist()) == {0.0, 2.0} and (per_clip == per_clip[:, :1]).all()
    assert abs(out.mean().item() - 1.0) < 0.1
    assert torch.equal(block.eval()._dropped(torch.ones(3, 1, 1, 1, 8)), torch.ones(3, 1, 1, 1, 8))


def test_frames_are_encoded_to_one_token_grid_each():
    model = BACKBONES.build("video_swin_tiny", size=64).eval()
    pixels = torch.randn(2, 3, 3, 64, 64)  # (B, T, 3, H, W): odd T
    frames = model.forward_frames(pixels)
    assert frames.shape == (2, 3, 2 * 2, 128)  # (B, T, 64/32 * 64/32, 8 * 16)
    torch.testing.assert_close(frames.flatten(1, 2), model.forward_features(pixels), rtol=0, atol=0)


def test_bad_architectures_are_one_line_errors():
    with pytest.raises(ConfigError, match="one entry per stage"):
        VideoSwinConfig(depths=(2, 2), num_heads=(4, 8, 16))
    with pytest.raises(ConfigError, match="multiples of num_heads"):
        VideoSwinConfig(embed_dim=10, num_heads=(4, 8, 16, 32))
    with pytest.raises(ConfigError, match="unknown fields patch_size; expected some of embed_dim"):
        BACKBONES.build("video_swin_tiny", patch_size=8)
    with pytest.raises(ConfigError, match=r"drop_path=1.0: expected a rate in \[0, 1\)"):
        VideoSwinConfig(drop_path=1.0)

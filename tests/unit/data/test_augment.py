"""Batch augmentation: shapes, bounds and label mixing checked against direct computations."""

from __future__ import annotations

import pytest
import torch

from avlearn.data.augment import crop_box, mixup, random_flip, random_resized_crop, spec_mask


def test_crop_box_respects_area_and_ratio_bounds() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = crop_box(48, 64, scale=(0.2, 0.6), ratio=(0.5, 2.0), generator=g)
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64
        assert 0.2 * 0.8 <= h * w / (48 * 64) <= 0.6 * 1.2  # rounding of h, w moves the area a little
        assert 0.5 * 0.8 <= w / h <= 2.0 * 1.25


def test_random_resized_crop_keeps_shape_dtype_and_is_one_crop_per_clip() -> None:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 255, (3, 4, 16, 20, 3), dtype=torch.uint8)
    frames[:, :] = frames[:, :1]  # every frame of a clip is the same image: their crops must be too
    out = random_resized_crop(frames, generator=g)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    assert all(torch.equal(out[b, t], out[b, 0]) for b in range(3) for t in range(4))
    whole = random_resized_crop(frames.float(), scale=(1.0, 1.0), ratio=(20 / 16, 20 / 16), generator=g)
    torch.testing.assert_close(whole, frames.float())  # the whole image resized to itself


def test_random_flip_mirrors_whole_clips() -> None:
    frames = torch.arange(2 * 3 * 4 * 5 * 3, dtype=torch.float32).reshape(2, 3, 4, 5, 3)
    out = random_flip(frames, p=1.0)
    torch.testing.assert_close(out[:, :, :, 0], frames[:, :, :, -1])
    assert torch.equal(random_flip(frames, p=0.0), frames)


def test_spec_mask_zeroes_stripes_within_the_widths() -> None:
    g = torch.Generator().manual_seed(2)
    spec = torch.ones(8, 3, 32, 100)  # (B, S, F, T)
    out = spec_mask(spec, time_width=10, freq_width=5, stripes=1, generator=g)
    assert out.shape == spec.shape
    for row in out.reshape(-1, 32, 100):
        zero_times = int((row == 0).all(dim=0).sum())  # columns zeroed over every bin: a time stripe
        zero_bins = int((row == 0).all(dim=1).sum())
        assert zero_times <= 9 and zero_bins <= 4
    assert (out == 0).any()


def test_mixup_mixes_both_modalities_and_labels_with_one_weight() -> None:
    g = torch.Generator().manual_seed(3)
    batch = {"frames": torch.randint(0, 255, (6, 2, 4, 4, 3), dtype=torch.uint8), "audio": torch.randn(6, 2, 8, 5),
             "id": list("abcdef")}  # fmt: skip
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    mixed, target, lam = mixup(batch, labels, alpha=0.4, num_classes=4, generator=g)
    assert 0.0 <= lam <= 1.0 and mixed["id"] == batch["id"]
    torch.testing.assert_close(target.sum(dim=1), torch.ones(6))
    onehot = torch.nn.functional.one_hot(labels, 4).float()  # (B, K)
    frames = batch["frames"].float()
    for b in range(6):  # some partner j explains the labels' mix, and both modalities were mixed with that same j
        partners = [j for j in range(6) if torch.allclose(target[b], lam * onehot[b] + (1 - lam) * onehot[j])]
        assert any(
            torch.allclose(mixed["audio"][b], lam * batch["audio"][b] + (1 - lam) * batch["audio"][j])
            and torch.allclose(mixed["frames"][b], lam * frames[b] + (1 - lam) * frames[j])
            for j in partners
        )
    with pytest.raises(ValueError, match="num_classes"):
        mixup(batch, labels)

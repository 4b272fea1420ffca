"""The classify task's training regularisers against hand computations: mixup (one Beta lambda per clip mixing
every segment input and the targets with the flipped batch, DeepAVFusion's AVMixup), label smoothing (before
mixing), the soft-target loss, float frames in the image preprocessing, and the config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from avlearn.errors import ConfigError
from avlearn.tasks.classify import ClassifyConfig, ClassifyTask, ClipInfo, mix, soft_targets

K = 6


def _task(tiny_method, **cfg) -> ClassifyTask:
    return ClassifyTask(ClassifyConfig(**cfg), tiny_method(), ClipInfo(tuple(f"c{i}" for i in range(K)), 10))


def _smoothed_by_hand(labels: list[int], eps: float) -> torch.Tensor:
    rows = [[1 - eps + eps / K if k == c else eps / K for k in range(K)] for c in labels]
    return torch.tensor(rows)


def test_mixup_mixes_frames_audio_and_smoothed_targets_with_the_flipped_batch(tiny_method, clip_batch):
    task = _task(tiny_method, mixup=0.4, label_smoothing=0.1)
    batch = clip_batch(torch.tensor([0, 3, 5, 2]))
    torch.manual_seed(7)
    lam = torch.distributions.Beta(0.4, 0.4).sample((4,))
    torch.manual_seed(7)
    mixed, target = task.regularised(batch)
    smoothed = _smoothed_by_hand([0, 3, 5, 2], 0.1)
    for b in range(4):
        other, w = 3 - b, float(lam[b])
        expected = w * batch["frames"][b].float() + (1 - w) * batch["frames"][other].float()
        torch.testing.assert_close(mixed["frames"][b], expected)
        torch.testing.assert_close(mixed["audio"][b], w * batch["audio"][b] + (1 - w) * batch["audio"][other])
        torch.testing.assert_close(target[b], w * smoothed[b] + (1 - w) * smoothed[other])
    assert not torch.equal(lam, torch.full_like(lam, lam[0]))  # one lambda per clip
    assert torch.equal(mixed["label"], batch["label"])  # the integer labels themselves are left as they are


def test_the_mixup_loss_is_the_soft_target_cross_entropy_of_the_mixed_batch(tiny_method, clip_batch):
    task = _task(tiny_method, mixup=1.0, label_smoothing=0.1, features="audio").eval()  # eval: no dropout noise
    batch = clip_batch(torch.tensor([1, 4, 0]))
    torch.manual_seed(3)
    loss = task(batch)["loss"]
    torch.manual_seed(3)
    torch.randint(1, ())  # the task's crop draw (one crop: the whole clip)
    lam = torch.distributions.Beta(1.0, 1.0).sample((3,))
    inputs = {k: mix(batch[k].float(), lam) for k in ("frames", "audio")}
    with torch.no_grad():
        logits = task.head(task.pooled(task.method(inputs)))
    target = mix(_smoothed_by_hand([1, 4, 0], 0.1), lam)
    expected = -(target * logits.log_softmax(dim=-1)).sum(dim=-1).mean()
    torch.testing.assert_close(loss.detach(), expected)


def test_label_smoothing_alone_equals_torch_label_smoothing(tiny_method, clip_batch):
    task = _task(tiny_method, label_smoothing=0.2, features="visual").eval()
    batch = clip_batch(torch.tensor([2, 5, 1, 1]))
    loss = task(batch)["loss"]
    with torch.no_grad():
        logits = task.head(task.pooled(task.method(batch)))
    torch.testing.assert_close(loss.detach(), F.cross_entropy(logits, batch["label"], label_smoothing=0.2))


def test_multilabel_targets_are_smoothed_per_class():
    multi_hot = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]])
    out = soft_targets(multi_hot, K, 0.3, multilabel=True)
    on, off = 1 - 0.3 + 0.3 / K, 0.3 / K
    torch.testing.assert_close(out, torch.where(multi_hot.bool(), on, off))


def test_off_by_default_the_batch_and_integer_targets_pass_unchanged(tiny_method, clip_batch):
    task = _task(tiny_method)
    batch = clip_batch(torch.tensor([0, 1]))
    out, target = task.regularised(batch)
    assert out is batch and target is batch["label"]


def test_mixed_float_frames_normalise_as_the_mix_of_the_normalised_frames():
    pre = ImagePreprocess((16, 16), IMAGENET_MEAN, IMAGENET_STD)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=g) for _ in range(2))
    torch.testing.assert_close(pre(a.float()), pre(a))
    torch.testing.assert_close(pre(0.3 * a.float() + 0.7 * b.float()), 0.3 * pre(a) + 0.7 * pre(b))


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"mixup": -0.5}, "task.mixup=-0.5"),
        ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
        ({"mode": "knn", "mixup": 1.0}, "knn does not train"),
        ({"mode": "knn", "label_smoothing": 0.1}, "knn does not train"),
    ],
)
def test_bad_regulariser_settings_are_config_errors(tiny_method, cfg, match):
    with pytest.raises(ConfigError, match=match):
        _task(tiny_method, **cfg)

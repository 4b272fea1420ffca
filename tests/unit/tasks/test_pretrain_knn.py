"""The pretraining task's kNN monitor (``task.knn_every``): when it is due (after epoch 1, every N epochs after it,
the last), that it probes the downstream encoder (every patch: DeepAVFusion's ``downstream``, not the masked
pretraining pass), that its votes equal the classify task's kNN on the same clips, and the config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.errors import ConfigError
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.classify import ClassifyConfig, ClassifyTask, ClipInfo
from avlearn.tasks.pretrain import Pretrain, PretrainConfig, PretrainInfo

TINY = {"fusion_tokens": [4, 2, 2], "fusion_heads": 2, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}
CLASSES = ("a", "b", "c")


def _method(pretrain: bool) -> DeepAVFusion:
    torch.manual_seed(0)
    visual, audio = BACKBONES.build("vit_mae_tiny"), BACKBONES.build("vit_mae_audio_tiny")
    return DeepAVFusion(DeepAVFusionConfig(**TINY, pretrain=pretrain), visual, audio)


def _clips(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"frames": torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=g),
             "audio": torch.randn(2, 32, 48, generator=g), "label": torch.tensor(i % 3)} for i in range(n)]  # fmt: skip


def _task(memory=None, queries=None, **cfg) -> Pretrain:
    info = PretrainInfo(CLASSES, 2, knn_memory=memory, knn_queries=queries, knn_classes=CLASSES)
    return Pretrain(PretrainConfig(**{"knn_every": 3, "knn_k": 4, "knn_temperature": 0.1, **cfg}), _method(True), info)


def test_the_probe_is_due_after_epoch_one_every_n_epochs_after_it_and_the_last(monkeypatch):
    task = _task()
    monkeypatch.setattr(task, "knn_scores", lambda: {"top1": 50.0})
    due = [epoch for epoch in range(1, 12) if task.monitor(epoch, last=epoch == 11)]
    assert due == [1, 4, 7, 10, 11]  # the seed's epoch % 10 == 0 counted from 0, plus the last
    assert task.monitor(4, last=False) == {"knn_top1": 50.0}
    off = _task(knn_every=0)
    assert [epoch for epoch in range(1, 5) if off.monitor(epoch, last=epoch == 4)] == []


def test_the_probe_reads_the_encoder_on_every_patch_not_the_masked_pass():
    task, plain = _task().eval(), _method(False).eval()
    plain.load_state_dict(task.method.state_dict(), strict=False)  # the decoders left out
    batch = {k: torch.stack([c[k] for c in _clips(3, 1)]) for k in ("frames", "audio")}
    with torch.no_grad():
        expected = F.normalize(plain(batch).fused.mean(dim=(1, 2)), dim=-1)  # (B, C) the downstream feature
        masked = F.normalize(task.method(batch).fused.mean(dim=(1, 2)), dim=-1)
        probed = task.embed(batch)
    torch.testing.assert_close(probed, expected)
    assert not torch.allclose(masked, expected, atol=1e-3)  # the pretraining pass differs: the test can fail


def test_the_votes_equal_the_classify_tasks_knn_on_the_same_clips():
    memory, queries = _clips(9, 2), _clips(5, 3)
    task = _task(memory, queries)
    probs, labels = task.knn_probs()
    plain = _method(False)
    plain.load_state_dict(task.method.state_dict(), strict=False)
    knn = ClassifyTask(ClassifyConfig(mode="knn", features="fused", knn_k=4, knn_temperature=0.1), plain,
                       ClipInfo(CLASSES, 2, memory=memory)).eval()  # fmt: skip
    batch = {k: torch.stack([c[k] for c in queries]) for k in ("frames", "audio", "label")}
    torch.testing.assert_close(probs, knn.predict(batch)["probs"])
    assert labels.tolist() == [0, 1, 2, 0, 1]
    top1 = 100.0 * (probs.argmax(dim=-1) == labels).float().mean().item()
    assert task.knn_scores() == {"top1": pytest.approx(top1)}


def test_without_the_labelled_clips_the_probe_is_a_config_error():
    with pytest.raises(ConfigError, match="knn_every needs the labelled clips"):
        _task().monitor(1, last=False)


@pytest.mark.parametrize(
    "cfg", [{"knn_every": -1}, {"knn_features": "text"}, {"knn_k": 0}, {"knn_temperature": 0}, {"knn_batch": 0}]
)
def test_bad_knn_settings_are_config_errors(cfg):
    with pytest.raises(ConfigError, match="expected knn_every >= 0"):
        _task(**cfg)

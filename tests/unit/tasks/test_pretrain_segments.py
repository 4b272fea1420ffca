"""DG-SCT's pre-training recipe: AVSynth's VGGSound-AVEL40K csv, `pretrain_segments`, the prompt zero-shot tasks."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from avlearn.errors import ConfigError
from avlearn.registry import DATASETS
from avlearn.tasks.base import DatasetInfo
from avlearn.tasks.fewshot import (
    FewShotConfig,
    PretrainSegmentsConfig,
    PromptZeroShotAVEClassTask,
    PromptZeroShotLLPClassTask,
    PromptZeroShotTask,
    SegmentPretrainTask,
)

CLASSES = ("dog", "violin", "car")


@pytest.fixture(scope="module")
def pretrained(tiny_method):
    return SegmentPretrainTask(PretrainSegmentsConfig(), tiny_method(), DatasetInfo(CLASSES))


def test_avsynth_vggsound_avel40k_flags_are_the_ave_segment_labels(small_synth):
    import avlearn.data.datasets  # noqa: F401  (registers the readers)

    for split in ("train", "val", "test"):
        vgg, ave = DATASETS.build("vggsound_avel40k", small_synth, split), DATASETS.build("ave", small_synth, split)
        assert vgg.classes == ave.classes and [r.id for r in vgg.records] == [r.id for r in ave.records]
        for a, b in zip(vgg.records, ave.records, strict=True):
            assert a.targets["label"] == b.targets["label"]
            assert a.targets["segment_labels"].tolist() == b.targets["segment_labels"].tolist()
    header, first = (small_synth / "VGGSound-AVEL40K" / "vggsound-avel40k_labels.csv").read_text().splitlines()[:2]
    assert header == "category,video_id,label,split" and '"[' in first  # DG-SCT's bracketed flag list


def test_pretraining_trains_on_class_prompts_plus_background(pretrained, clip_batch):
    assert pretrained.visual_classes.shape == (4, 384)  # 3 classes + background, minilm_l6
    batch = clip_batch(torch.tensor([[3] * 4 + [2] * 6, [0] * 10]))
    out = pretrained(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and pretrained.visual_proj.weight.grad is not None


def test_zero_shot_tasks_rebuild_prompts_and_load_every_pretrained_weight(pretrained, tiny_method, clip_batch):
    state = pretrained.state_dict()
    assert not any("classes" in key for key in state)  # no class-specific tensor is saved
    targets = ("cat", "piano")  # other classes, another number of classes
    for cls, background, prompts in ((PromptZeroShotTask, "background", 3), (PromptZeroShotAVEClassTask, "", 2),
                                     (PromptZeroShotLLPClassTask, "", 2)):  # fmt: skip
        task = cls(FewShotConfig(background=background), tiny_method(), DatasetInfo(targets))
        task.load_state_dict(state, strict=True)
        assert task.visual_classes.shape == (prompts, 384) and task.audio_classes.shape == (prompts, 384)
        assert torch.equal(task.visual_proj.weight, pretrained.visual_proj.weight)
        with pytest.raises(ConfigError, match="does not train: set train.epochs=0"):
            task(clip_batch(torch.zeros(1, 10, dtype=torch.long)))


def test_llp_zero_shot_scores_the_first_label_any_label_and_map(tiny_method):
    task = PromptZeroShotLLPClassTask(FewShotConfig(background=""), tiny_method(), DatasetInfo(CLASSES))
    labels = torch.tensor([[1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]])  # (B, K) multi-hot
    probs = torch.tensor([[0.15, 0.8, 0.05], [0.1, 0.2, 0.7], [0.25, 0.7, 0.06], [0.3, 0.31, 0.39]])  # (B, K)
    scores = task.score({"clip_labels": probs.argmax(dim=-1), "probs": probs}, {"labels": labels})
    # predictions 1, 2, 1, 2; first labels 0, 2, 0, 1; hits: 1 in {0, 1}, 2 in {2}, 1 not in {0}, 2 in {1, 2}
    assert scores["accuracy"] == pytest.approx(25.0) and scores["hit_accuracy"] == pytest.approx(75.0)
    # AP per class: positives ranked (2, 3) -> (1/2 + 2/3) / 2; (1, 3) -> (1 + 2/3) / 2; (1, 2) -> 1
    assert scores["map"] == pytest.approx(100.0 * (7 / 12 + 5 / 6 + 1) / 3)


def test_configs_compose_and_dispatch_to_the_few_shot_pipeline():
    from avlearn.config import compose_run
    from avlearn.data.pipelines.fewshot import fewshot_splits
    from avlearn.registry import TASKS

    for name, background in (("pretrain_segments", "background"), ("zeroshot_ave", "background"),
                             ("zeroshot_ave_cls", ""), ("zeroshot_llp_cls", "")):  # fmt: skip
        cfg = compose_run([f"task={name}"])
        assert cfg.task.name == name and cfg.task.background == background and cfg.task.text == "minilm_l6"
        assert TASKS.spec(name).pipeline is fewshot_splits


@pytest.fixture(scope="module")
def audio_pre():
    from avlearn.backbones.cnn import log_mel_input

    return log_mel_input(sample_rate=16000, n_mels=32, hop_ms=20)


def _cfg(root, task: str) -> object:  # noqa: ANN001
    return OmegaConf.create({"data": {"name": "real", "root": str(root), "frame_size": 32, "workers": 1},
                             "task": {"name": task}, "shots": 0, "seed": 0})  # fmt: skip


def test_pipeline_reads_vggsound_avel40k_segments_and_every_llp_video(small_synth, audio_pre):
    from avlearn.data.pipelines.fewshot import fewshot_splits

    pre = fewshot_splits(_cfg(small_synth, "pretrain_segments"), audio_pre)
    ave = fewshot_splits(_cfg(small_synth, "zeroshot_ave"), audio_pre)
    assert torch.equal(pre.train.labels, ave.train.labels) and pre.train.labels.shape[1] == 10
    zero_llp = fewshot_splits(_cfg(small_synth, "zeroshot_llp_cls"), audio_pre)
    few_llp = fewshot_splits(_cfg(small_synth, "fewshot_llp_cls"), audio_pre)
    assert len(zero_llp.train) == len(pre.train)  # every training video, multi-label ones included
    assert (zero_llp.train.labels.sum(dim=1) > 1).any() and (few_llp.train.labels.sum(dim=1) == 1).all()

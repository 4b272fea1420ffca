"""Caption pre-training and zero-shot data pipelines on the session's tiny AVSynth (12 clips, 5 classes).

Its AVE splits: train bell, drum, bell, drum, flute, horn, chime, horn, horn, flute; val drum; test drum. Clip
ev000001 (drum) has the caption "a silent red dotted ring is also visible", horn's look.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from avlearn.errors import ConfigError


def _cfg(root, **task) -> object:  # noqa: ANN001
    data = {"name": "ave", "root": str(root), "frame_size": 32, "workers": 1}
    return OmegaConf.create({"data": data, "task": {"text": "minilm_l6", "holdout": [], "classes": [], **task}})


@pytest.fixture(scope="module")
def audio_pre():
    from avlearn.backbones.cnn import log_mel_input

    return log_mel_input(sample_rate=16000, n_mels=32, hop_ms=20)


def test_pretraining_leaves_out_held_out_classes_and_clips_mentioning_them(small_synth, audio_pre):
    from avlearn.data.pipelines.captions import captions_splits

    splits = captions_splits(_cfg(small_synth, holdout=["horn"]), audio_pre)
    assert splits.train.clips.ids == ["ev000000", "ev000002", "ev000003", "ev000004", "ev000006", "ev000009"]
    assert (len(splits.val), len(splits.test)) == (1, 1)
    assert splits.info.descriptions[splits.info.class_names.index("horn")] == "red dotted ring"
    item = splits.test[0]
    assert item["text"].shape == (384,) and item["frames"].shape == (10, 32, 32, 3)
    assert torch.allclose(item["text"], splits.test.texts[0, 0])  # evaluation reads the first caption
    assert splits.test.counts.tolist() == [3] and splits.train.draw and not splits.val.draw
    assert torch.allclose(splits.train.texts.norm(dim=-1)[splits.train.counts == 2][:, 2], torch.zeros(1))  # padding


def test_zeroshot_keeps_the_chosen_classes_relabelled(small_synth, audio_pre):
    from avlearn.data.pipelines.captions import zeroshot_splits

    splits = zeroshot_splits(_cfg(small_synth, classes=["drum", "horn"]), audio_pre)
    assert splits.info.class_names == ("drum", "horn")
    assert splits.info.descriptions == ("purple dotted star", "red dotted ring")
    assert splits.train.ids == ["ev000001", "ev000003", "ev000005", "ev000007", "ev000008"]
    assert splits.train.labels[2].tolist() == [2] + [1] * 8 + [2]  # horn from second 1 to 9, background = 2
    assert set(splits.test.labels.unique().tolist()) <= {0, 2}


def test_unknown_or_emptying_class_choices_are_one_line_errors(small_synth, audio_pre):
    from avlearn.data.pipelines.captions import captions_splits, zeroshot_splits

    with pytest.raises(ConfigError, match="task.holdout: unknown class 'harp'"):
        captions_splits(_cfg(small_synth, holdout=["harp"]), audio_pre)
    with pytest.raises(ConfigError, match="no test clip"):  # chime's clip and the test clip mentioning chime go
        captions_splits(_cfg(small_synth, holdout=["chime"]), audio_pre)
    with pytest.raises(ConfigError, match="task.classes: unknown class"):
        zeroshot_splits(_cfg(small_synth, classes=["Drum"]), audio_pre)

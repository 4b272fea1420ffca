"""The few-shot data protocol (K clips per class, LLP single-label draws, per-segment audio) and the sweep table."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from avlearn.data.pipelines.fewshot import few_shot_records, fewshot_splits
from avlearn.data.schema import Record


def _records(classes: list[tuple[int, ...]]) -> list[Record]:
    return [Record(f"v{i}", f"v{i}", "train", {}, f"f:{i}", c) for i, c in enumerate(classes)]


def test_records_k_per_class_single_label_only_when_asked():
    records = _records([(0,)] * 5 + [(1,)] * 5 + [(0, 1)] * 4 + [(2,)])
    chosen = few_shot_records(records, 2, seed=0, single_label=True)
    assert Counter(r.classes for r in chosen) == {(0,): 2, (1,): 2, (2,): 1}  # no multi-label video, all of class 2
    assert few_shot_records(records, 2, seed=0, single_label=True) == chosen  # the same draw for the same seed
    assert few_shot_records(records, 2, seed=1, single_label=True) != chosen
    assert len(few_shot_records(records, 0, seed=0, single_label=True)) == 11  # shots=0: every eligible clip
    assert Counter(r.classes[0] for r in few_shot_records(records, 3, 0, single_label=False)) == {0: 3, 1: 3, 2: 1}


def test_sweep_groups_runs_that_differ_only_in_seed(capsys):
    from avlearn.cli.common import _print_sweep

    runs = [(1, 0, 10.0), (1, 1, 20.0), (1, 2, 30.0), (4, 0, 50.0), (4, 1, 70.0), (4, 2, 60.0)]
    _print_sweep([{"overrides": ["task=fewshot", f"shots={k}", f"seed={s}"], "test": {"acc": v}} for k, s, v in runs])
    lines = capsys.readouterr().out.splitlines()
    assert any(x.split() == ["shots=1", "20.0000", "±", "10.0000", "(n=3)"] for x in lines)  # sample std
    assert any(x.split() == ["shots=4", "60.0000", "±", "10.0000", "(n=3)"] for x in lines)  # named by what varies
    assert not any("over runs" in x for x in lines)


def test_sweep_without_groups_keeps_one_summary(capsys):
    from avlearn.cli.common import _print_sweep

    _print_sweep([{"overrides": [f"seed={s}"], "test": {"acc": v}} for s, v in ((0, 1.0), (1, 3.0))])
    assert "mean ± std over runs: 2.0000 ± 1.4142" in capsys.readouterr().out


@pytest.fixture(scope="module")
def avsynth(tmp_path_factory):
    from avlearn.data.synth import SynthConfig, generate

    cfg = SynthConfig(clips=40, seed=3, num_classes=3, size=32, fps=2, avs_clips=0, avqa_clips=0)
    return generate(tmp_path_factory.mktemp("fewshot") / "avsynth", cfg, workers=1)


def _cfg(task: str, root, shots: int = 2):  # noqa: ANN001, ANN202
    from avlearn.config.compose import compose_run

    return compose_run([f"task={task}", "data.name=ave", f"data.root={root}", "data.frame_size=32", f"shots={shots}",
                        "seed=0", "data.workers=1"])  # fmt: skip


def test_llp_splits_draw_single_label_videos_and_keep_multi_hot_targets(avsynth):
    from avlearn.build import audio_preprocess
    from avlearn.data.datasets.llp import LLPDataset

    cfg = _cfg("fewshot_llp_cls", avsynth)
    splits = fewshot_splits(cfg, audio_preprocess(cfg))
    assert splits.train.labels.shape == (6, 3) and (splits.train.labels.sum(1) == 1).all()  # 2 per class, one label
    assert splits.train.labels.sum(0).tolist() == [2.0, 2.0, 2.0]
    assert len(splits.test) == len(LLPDataset(avsynth, "test"))  # validation and test are not subsampled
    assert splits.train.frames.shape[1:] == (10, 32, 32, 3) and splits.train.audio.shape[1:3] == (10, 64)


def test_ave_splits_keep_segment_labels(avsynth):
    from avlearn.build import audio_preprocess

    cfg = _cfg("fewshot_ave_cls", avsynth, shots=1)
    splits = fewshot_splits(cfg, audio_preprocess(cfg))
    assert splits.train.labels.shape == (3, 10) and splits.info.num_classes == 3
    firsts = [int(row[row != 3][0]) for row in splits.train.labels if (row != 3).any()]
    assert sorted(np.unique(firsts).tolist()) == sorted(firsts)  # one clip of each class

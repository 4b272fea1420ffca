"""From a run config to the task's data: which AVSynth part is rendered, which pipeline decodes it, which audio
input the method gets; and the per-task chance levels of ``avlearn.viz.reports``, as the tasks register them."""

from __future__ import annotations

import pytest
import torch

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.build import audio_preprocess, build_splits, segment_preprocess
from avlearn.config import compose_run
from avlearn.config.compose import group_options
from avlearn.data.pipelines import synth_config
from avlearn.errors import ConfigError
from avlearn.registry import TASKS
from avlearn.viz.reports import AVE, _first_class


@pytest.mark.parametrize(
    ("task", "counts"),
    [("ave", (40, 0, 0)), ("avvp", (40, 0, 0)), ("avs_ms3", (0, 40, 0)), ("avqa", (0, 0, 7))],
)
def test_only_the_part_the_task_reads_is_rendered(task, counts):
    cfg = compose_run([f"task={task}", "data.clips=40", "data.avqa_clips=7"])
    synth = synth_config(cfg.data, cfg.task.name)
    assert (synth.clips, synth.avs_clips, synth.avqa_clips) == counts


def test_unknown_task_is_a_config_error_listing_the_tasks():
    cfg = compose_run()
    cfg.task.name = "avsr"
    with pytest.raises(ConfigError, match="unknown task 'avsr'.*Registered tasks: ave, ave_cls, avqa, avs_ms3, avs_s4"):
        build_splits(cfg, None)


def test_a_whole_clip_backbone_gets_one_second_log_mels_with_its_mel_bins():
    cfg = compose_run(["method=dgsct_tiny", "backbone=dgsct_tiny", "data.hop_ms=20"])
    # htsat_tiny's whole-clip input: 10 s at 1.6 kHz, 32 mel bins
    htsat_tiny = AudioPreprocess(1600, "log_mel", num_mel_bins=32, num_frames=101, n_fft=256, hop_length=160,
                                 win_length=256)  # fmt: skip
    pre = segment_preprocess(htsat_tiny, cfg.data)
    assert (pre.num_mel_bins, pre.num_frames, pre.sample_rate, pre.hop_length) == (32, 50, 16000, 320)
    baseline = audio_preprocess(compose_run(["data.n_mels=48"]))
    assert (baseline.num_mel_bins, baseline.num_frames) == (48, 50)


def test_every_registered_task_has_a_pipeline_and_a_report():
    specs = {name: TASKS.spec(name) for name in TASKS.names()}
    assert set(specs) == set(group_options("task"))  # every task yaml names a registered task, and back
    assert all(s.pipeline is not None and s.report is not None for s in specs.values())
    assert specs["fewshot"].report is specs["ave"].report is AVE
    fixed = {n: s.synth_part for n, s in specs.items() if isinstance(s.synth_part, str) and s.synth_part != "events"}
    assert {"avs_s4": "avs", "avs_ms3": "avs", "avqa": "avqa"}.items() <= fixed.items()


def test_ave_chance_levels():
    class Split:
        labels = torch.tensor([[2, 2, 0], [2, 1, 2]])  # K = 2 classes, 2 = background

    splits = type("Splits", (), {"train": Split, "test": Split, "info": type("I", (), {"num_classes": 2})})
    chance = AVE.chance(splits, None, {})
    assert chance == pytest.approx({"uniform": 100 / 3, "majority": 400 / 6})


def test_avvp_plot_rows_show_the_first_class_on_in_each_segment():
    on = torch.zeros(1, 3, 4, dtype=torch.bool)  # (B, K, S)
    on[0, 2, 0] = on[0, 1, 0] = on[0, 2, 3] = True
    assert _first_class(on).tolist() == [[1, 3, 3, 2]]


def test_avs_builds_on_dgsct_with_a_grid_backbone_and_is_refused_without_one():
    from avlearn.build import build_task
    from avlearn.tasks.base import DatasetInfo

    cfg = compose_run(["task=avs_s4", "method=dgsct_tiny", "backbone=dgsct_tiny", "data.frame_size=32"])
    task = build_task(cfg, DatasetInfo(()))
    assert "visual_pyramid" in task.method.produces  # Swin-V2 has a token grid
    clip = compose_run(["task=avs_s4", "method=dgsct_fewshot_tiny", "backbone=dgsct_fewshot_tiny"])
    with pytest.raises(ConfigError, match="visual_pyramid"):
        build_task(clip, DatasetInfo(()))

"""``avlearn train task=cma`` through the CLI: the recipes' dry runs print the protocol's plan and touch nothing;
the paper's real protocols and a missing or wrong encoder are one-line errors; a whole run on a small AVSynth with a
(random-weight) ``pretrain_captions`` encoder writes its table and results, equal to the protocol computed again in
this process from the same embeddings."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from avlearn.cli.main import main

SMALL = ["data.clips=60", "data.num_classes=4", "data.size=32", "data.frame_size=32", "data.fps=2",
         "data.workers=1"]  # fmt: skip
PROTOCOL = ["task.shots=[1,2]", "task.seeds=[1,2]", "task.iters=40", "task.warmup=5", "task.eval_every=10",
            "task.batch_sizes=[2,4]", "train.threads=1"]  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(("recipe", "plan"), [
    ("cma_coop", "shots [1, 2, 4, 8, 16] x seeds [1, 2, 3]: 15 grids"),
    ("cma_imagenet_esc", "target audio, extra ['visual'], shots [1, 2, 4] x seeds [1, 2, 3, 4, 5]: 15 grids"),
    ("cma_avsynth_tiny", "1000 steps, validation every 50"),
    ("cma_avsynth_esc_tiny", "target audio, extra ['visual'], shots [1, 2, 4] x seeds [1, 2, 3, 4, 5]: 15 grids"),
])  # fmt: skip
def test_dry_run_prints_the_plan_and_touches_nothing(recipe, plan, tmp_path, cache, capsys):
    assert main(["train", f"recipe={recipe}", f"out={tmp_path / 'runs'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert plan in out and f"name: {recipe}" in out and "nothing was trained (--dry-run)" in out
    assert not cache.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["recipe=cma_coop"], "data.benchmark=coop: task=cma on real coop data needs the seed's encoders"),
    (["recipe=cma_imagenet_esc"], "data.benchmark=imagenet_esc: task=cma on real imagenet_esc data"),
    (["recipe=cma_avsynth_tiny"], "task.encoder is empty: expected a pretrain_captions run folder"),
    (["recipe=cma_avsynth_tiny", "task.encoder=/nonexistent"], "task.encoder=/nonexistent: expected a run folder"),
    (["recipe=cma_avsynth_tiny", "task.target=text"], "task.target='text' is not valid"),
])  # fmt: skip
def test_what_cannot_run_is_a_one_line_error(overrides, message, tmp_path, cache, capsys):
    assert main(["train", *overrides, f"out={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not cache.exists() and not (tmp_path / "runs").exists()


def _random_encoder(folder, task: str = "pretrain_captions") -> None:  # noqa: ANN001
    """A run folder (config.yaml + checkpoint/) of an untrained ``task`` on 4 AVSynth classes."""
    from avlearn.build import build_task
    from avlearn.config import compose_run, save_config
    from avlearn.engine.checkpoint import save_checkpoint
    from avlearn.tasks.base import DatasetInfo

    cfg = compose_run([f"task={task}", "method=baseline", "backbone=small_cnn", *SMALL])
    names = ("chime", "drum", "flute", "horn")
    torch.manual_seed(0)
    model = build_task(cfg, DatasetInfo(names))
    folder.mkdir(parents=True)
    save_config(cfg, folder)
    save_checkpoint(folder / "checkpoint", {"epoch": 0, "step": 0, "class_names": list(names)},
                    {"model": model.state_dict()})  # fmt: skip


def test_a_whole_run_writes_the_protocols_table_and_results(tmp_path, cache, capsys):
    from avlearn.cli.cma import protocol_features
    from avlearn.config import compose_run
    from avlearn.methods.cma.protocol import run_protocol, zero_shot_accuracy
    from avlearn.tasks.cma import CMAConfig, protocol_settings

    encoder = tmp_path / "encoder"
    _random_encoder(encoder)
    overrides = ["task=cma", f"task.encoder={encoder}", *SMALL, *PROTOCOL]
    assert main(["train", *overrides, f"out={tmp_path / 'runs'}", "name=small"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs" / "small").iterdir()
    table = (run_dir / "table.md").read_text()
    assert table.strip() in out and (run_dir / "config.yaml").is_file()
    results = json.loads((run_dir / "results.json").read_text())

    cfg = compose_run(overrides)
    feats = protocol_features(cfg, torch.device("cpu"))
    protocol, head, sched, grid = protocol_settings(CMAConfig(**OmegaConf.to_container(cfg.task, resolve=True)))
    rows = run_protocol(feats, protocol, head, sched, grid)
    assert results["zero_shot_test_acc"] == pytest.approx(zero_shot_accuracy(feats, "visual"))
    assert sorted(results["shots"], key=int) == ["1", "2"]
    for row in rows:
        saved = results["shots"][str(row.shots)]
        assert [s["test_acc"] for s in saved["seeds"]] == [float(r.test_acc[r.selected]) for r in row.results]
        assert saved["summary"]["test_acc"] == pytest.approx(list(row.summary["test_acc"]))
        assert f"| {row.shots} | {100 * row.summary['test_acc'][0]:.2f} +- " in table
    assert feats.text.shape == (4, 384) and set(feats.modalities) == {"visual", "audio"}
    assert torch.equal(feats.modalities["visual"].test_labels, feats.modalities["audio"].test_labels)  # same clips


def test_an_encoder_of_another_task_or_other_inputs_is_refused(tmp_path, cache, capsys):
    encoder = tmp_path / "encoder"
    _random_encoder(encoder, task="zeroshot")
    assert main(["train", "task=cma", f"task.encoder={encoder}", *SMALL, f"out={tmp_path / 'runs'}"]) == 2
    assert "a task=zeroshot run; expected a pretrain_captions run" in capsys.readouterr().err
    other = tmp_path / "other"
    _random_encoder(other)
    assert main(["train", "task=cma", f"task.encoder={other}", *SMALL, "data.n_mels=32", f"out={tmp_path}/r"]) == 2
    assert "data.n_mels=32: the encoder was trained with 64" in capsys.readouterr().err


ESC = ["data.benchmark=imagenet_esc", "data.sound_clips=120", "task.target=audio", "task.extra=[visual]"]


def test_the_imagenet_esc_part_pairs_the_sounds_audio_with_the_images_visual(tmp_path, cache, capsys):
    """AVSynth's ImageNet-ESC part: the target is the sounds' audio (test fold 1), the extra pool the images' visual
    embeddings; the run's table equals the protocol recomputed from ``protocol_features``."""
    from avlearn.cli.cma import protocol_features
    from avlearn.config import compose_run
    from avlearn.data.datasets.imagenet_esc import PAIRS
    from avlearn.methods.cma.protocol import run_protocol
    from avlearn.tasks.cma import CMAConfig, protocol_settings

    encoder = tmp_path / "encoder"
    _random_encoder(encoder)
    overrides = ["task=cma", f"task.encoder={encoder}", *SMALL, *PROTOCOL, *ESC]
    assert main(["train", *overrides, f"out={tmp_path / 'runs'}", "name=esc"]) == 0
    (run_dir,) = (tmp_path / "runs" / "esc").iterdir()
    results = json.loads((run_dir / "results.json").read_text())

    cfg = compose_run(overrides)
    feats = protocol_features(cfg, torch.device("cpu"))
    assert feats.class_names == tuple(PAIRS[k][0] for k in sorted(PAIRS)[:4]) and feats.text.shape == (4, 384)
    audio, visual = feats.modalities["audio"], feats.modalities["visual"]
    # 120 sounds of 4 classes in rounds; fold 1 (rounds 0, 5, 10, ...) is the test split: 6 rounds of 4
    assert len(audio.test) == 24 and len(audio.train) + len(audio.val) == 96
    assert len(visual.train) + len(visual.val) + len(visual.test) == 60  # data.clips images: another set of clips
    for split in (audio, visual):
        assert set(split.train_labels.tolist()) == {0, 1, 2, 3}
    protocol, head, sched, grid = protocol_settings(CMAConfig(**OmegaConf.to_container(cfg.task, resolve=True)))
    rows = run_protocol(feats, protocol, head, sched, grid)
    for row in rows:
        saved = results["shots"][str(row.shots)]
        assert [s["test_acc"] for s in saved["seeds"]] == [float(r.test_acc[r.selected]) for r in row.results]


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.benchmark=imagenet_esc_image"], "data.benchmark=imagenet_esc_image, task.classes=[]: AVSynth's"),
    (["data.benchmark=imagenet_esc", "task.classes=[rooster]"], "with all its classes (task.classes=[])"),
])  # fmt: skip
def test_the_imagenet_esc_part_is_read_whole(overrides, message, tmp_path, cache, capsys):
    encoder = tmp_path / "encoder"
    _random_encoder(encoder)
    capsys.readouterr()  # the text tower's loading messages
    assert main(["train", "task=cma", f"task.encoder={encoder}", *SMALL, *overrides, f"out={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err

"""Clip pipelines (``avlearn.data.pipelines.clips``) on tiny AVSynth parts: each benchmark's items against its
annotation files, read here independently (csv / json), and its frames against a direct decode of the clip."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

SIZES = ["data.clips=20", "data.sound_clips=20", "data.image_clips=20", "data.num_classes=4", "data.size=32",
         "data.frame_size=32", "data.fps=2", "data.workers=1", "data.seconds=6"]  # fmt: skip


@pytest.fixture(scope="module")
def splits_of(tmp_path_factory):
    """benchmark -> (its Splits, the run config), made once per benchmark in a module-wide AVSynth cache."""
    import os

    from avlearn.build import audio_preprocess
    from avlearn.config.compose import compose_run
    from avlearn.data.pipelines.clips import clip_splits

    cache, made = tmp_path_factory.mktemp("cache"), {}
    old = os.environ.get("AVLEARN_CACHE")
    os.environ["AVLEARN_CACHE"] = str(cache)

    def get(name: str, *extra: str):  # noqa: ANN202
        key = (name, *extra)
        if key not in made:
            cfg = compose_run([*SIZES, f"data.benchmark={name}", *extra])
            made[key] = (clip_splits(cfg, audio_preprocess(cfg)), cfg)
        return made[key]

    yield get
    os.environ.pop("AVLEARN_CACHE") if old is None else os.environ.__setitem__("AVLEARN_CACHE", old)


def _all_items(splits) -> dict[str, dict]:  # noqa: ANN001
    return {item["id"]: item for part in (splits.train, splits.val, splits.test) for item in part}


def _check_layout(splits, segments: int, video: bool, audio: bool) -> None:  # noqa: ANN001
    for part in (splits.train, splits.val, splits.test):
        assert len(part) > 0
        item = part[0]
        assert item["frames"].shape == (segments, 32, 32, 3) and item["frames"].dtype == torch.uint8
        assert item["audio"].shape[0] == segments and item["audio"].ndim == 3
        assert (item["has_video"], item["has_audio"]) == (video, audio)
        assert bool(item["frames"].any()) == video  # black frames without video
        assert (item["audio"].std() > 1e-3) == audio  # the log-mel of silence is flat
    ids = [i for p in (splits.train, splits.val, splits.test) for i in p.ids]
    assert len(ids) == len(set(ids))  # no clip in two splits


def test_vggsound_items_match_the_csv_and_the_video(splits_of) -> None:
    from avlearn.io import read_clip

    splits, cfg = splits_of("vggsound")
    root = splits.root
    rows = list(csv.reader((root / "VGGSound" / "vggsound.csv").read_text().splitlines()))
    classes = sorted({r[2] for r in rows})
    assert splits.info.class_names == tuple(classes) and splits.info.segments == 6
    _check_layout(splits, 6, True, True)
    items = _all_items(splits)
    assert {f"{r[0]}_{int(r[1]):06d}" for r in rows} == set(items)
    assert {f"{r[0]}_{int(r[1]):06d}" for r in rows if r[3] == "test"} == set(splits.test.ids)
    for yid, start, label, _ in rows:
        assert int(items[f"{yid}_{int(start):06d}"]["label"]) == classes.index(label)
    # validation: every tenth training row of each class (avlearn.data.pipelines.clips.holdout), in list order
    train_ids = [f"{r[0]}_{int(r[1]):06d}" for r in rows if r[3] == "train"]
    held = set(splits.val.ids)
    assert held < set(train_ids) and splits.val.ids == [i for i in train_ids if i in held]
    assert set(splits.train.ids) == set(train_ids) - held
    train_labels = Counter(r[2] for r in rows if r[3] == "train")
    val_labels = Counter(r[2] for r in rows if r[3] == "train" and f"{r[0]}_{int(r[1]):06d}" in held)
    stratified = {label: n // 10 for label, n in train_labels.items() if n >= 10}
    assert val_labels == stratified if stratified else sum(val_labels.values()) == len(train_ids) // 10
    first = splits.test.ids[0]
    clip = read_clip(root / "videos" / f"{first.rsplit('_', 1)[0]}.mp4", timestamps=np.arange(6) + 0.5, size=32,
                     sample_rate=cfg.data.sample_rate, duration=6.0)  # fmt: skip
    assert torch.equal(splits.test[0]["frames"], torch.from_numpy(clip.frames))


def _audioset_rows(path: Path) -> dict[str, set[str]]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return {cells[0]: set(cells[3].split(",")) for cells in csv.reader(lines, skipinitialspace=True)}


def test_audioset_items_are_multi_hot_over_the_heard_classes(splits_of) -> None:
    splits, _ = splits_of("audioset", "data.audioset_train=full")
    folder = splits.root / "AudioSet"
    assert (folder / "balanced_train_segments.csv").read_text().startswith("# Segments csv")
    mids = [r[1] for r in csv.reader((folder / "class_labels_indices.csv").read_text().splitlines()[1:])]
    assert {n["id"] for n in json.loads((folder / "ontology.json").read_text())} == set(mids)
    balanced = _audioset_rows(folder / "balanced_train_segments.csv")
    unbalanced = _audioset_rows(folder / "unbalanced_train_segments.csv")
    evaluation = _audioset_rows(folder / "eval_segments.csv")
    assert not set(balanced) & set(unbalanced)  # disjoint lists, as published
    assert {i.rsplit("_", 1)[0] for i in splits.test.ids} == set(evaluation)
    _check_layout(splits, 6, True, True)
    meta = json.loads((splits.root / "avsynth.json").read_text())
    assert meta["counts"]["events"]["train"] == len(balanced) + len(unbalanced)
    truth = {**balanced, **unbalanced, **evaluation}
    for vid, item in _all_items(splits).items():
        assert item["labels"].shape == (len(mids),)
        assert {mids[k] for k in np.flatnonzero(item["labels"].numpy())} == truth[vid.rsplit("_", 1)[0]]
    assert any(len(labels) > 1 for labels in truth.values())  # multi-label


def test_esc50_items_follow_the_meta_folds(splits_of) -> None:
    splits, _ = splits_of("esc50", "data.fold=2")
    rows = list(csv.DictReader((splits.root / "ESC-50-master" / "meta" / "esc50.csv").read_text().splitlines()))
    assert {r["filename"] for r in rows if r["fold"] == "2"} == set(splits.test.ids)
    assert len(splits.train) + len(splits.val) == sum(r["fold"] != "2" for r in rows)
    _check_layout(splits, 5, False, True)
    items = _all_items(splits)
    for r in rows:
        assert int(items[r["filename"]]["label"]) == int(r["target"])
        assert r["filename"].split("-")[0] == r["fold"] and r["filename"].endswith(f"-{r['target']}.wav")
    assert sorted(int(r["target"]) for r in rows) == sorted(k % 4 for k in range(20))  # balanced classes


def test_imagenet_esc_reads_the_paired_categories(splits_of) -> None:
    from avlearn.data.datasets.imagenet_esc import PAIRS, paired_classes

    splits, _ = splits_of("imagenet_esc")
    assert splits.info.num_classes == 27
    rows = list(csv.DictReader((splits.root / "ESC-50-master" / "meta" / "esc50.csv").read_text().splitlines()))
    items = _all_items(splits)
    assert set(items) == {r["filename"] for r in rows}
    for r in rows:  # AVSynth class k is ImageNet-ESC class k, named by its paired ESC-50 category
        k = int(r["target"])
        assert r["category"] == PAIRS[paired_classes(27)[k]][1] and int(items[r["filename"]]["label"]) == k


def test_ucf101_items_follow_the_official_lists(splits_of) -> None:
    splits, _ = splits_of("ucf101", "data.fold=3")
    lists = splits.root / "UCF101" / "ucfTrainTestlist"
    test = [line.split("/")[1].removesuffix(".avi") for line in (lists / "testlist03.txt").read_text().split()]
    assert set(test) == set(splits.test.ids)
    train = [line.split() for line in (lists / "trainlist03.txt").read_text().splitlines()]
    items = _all_items(splits)
    for path, index in train:
        assert int(items[Path(path).stem]["label"]) == int(index) - 1
    assert all(int(name.split("_g")[1][:2]) in range(15, 22) for name in test)  # split 3 tests groups 15-21
    _check_layout(splits, 6, True, False)


def test_coop_items_and_few_shot_files(splits_of) -> None:
    splits, _ = splits_of("coop")
    folder = splits.root
    split = json.loads(next(folder.glob("split_zhou_*.json")).read_text())
    for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        assert part.ids == [relpath for relpath, _, _ in split[name]]
        assert [int(part[i]["label"]) for i in range(len(part))] == [label for _, label, _ in split[name]]
    _check_layout(splits, 1, True, False)
    shots = json.loads((folder / "split_fewshot" / "shot_2-seed_1.json").read_text())
    labels = [split["train"][i][1] for i in shots["train"]["indices"]]
    assert sorted(labels) == sorted(list(range(4)) * 2)
    few, _ = splits_of("coop", "shots=2", "seed=1")
    assert few.train.ids == [split["train"][i][0] for i in shots["train"]["indices"]]


def test_imagenet_esc_images_are_the_coop_images_of_the_paired_classes(splits_of) -> None:
    from avlearn.data.datasets.imagenet_esc import PAIRS, paired_classes

    splits, _ = splits_of("imagenet_esc_image")
    _check_layout(splits, 1, True, False)
    assert splits.info.num_classes == 27 and splits.info.class_names[0] == PAIRS[paired_classes(27)[0]][0]
    coop_root = splits.root.parent / "CoOp"
    coop = json.loads((coop_root / "split_zhou_AVSynth.json").read_text())  # [relpath, label, classname] per image
    truth = {Path(rel).stem: (label, split, rel) for split, rows in coop.items() for rel, label, _ in rows}
    wnids = [line.split()[0] for line in (splits.root / "imagenet" / "classnames.txt").read_text().splitlines()]
    items = _all_items(splits)
    assert len(wnids) == 1000 and sorted(Path(i).stem for i in items) == sorted(truth)  # 4 classes < 27: every image
    test_ids = set(splits.test.ids)
    for item_id, item in items.items():
        wnid, name = item_id.split("/")
        label, split, rel = truth[Path(name).stem]
        assert int(item["label"]) == label and wnids.index(wnid) == paired_classes(27)[label]  # class k as its sounds
        assert (item_id in test_ids) == (split == "test")  # AVSynth's test images are ImageNet's val (the test split)
        on_disk = splits.root / "imagenet" / "images" / ("val" if split == "test" else "train") / item_id
        assert on_disk.samefile(coop_root / "images" / rel)  # the same image, hard-linked
    coop_items = _all_items(splits_of("coop")[0])
    first = next(iter(items))
    assert torch.equal(items[first]["frames"], coop_items[truth[Path(first).stem][2]]["frames"])


def _caption_mapper(folder: Path, name: str) -> dict[str, list[str]]:
    mapper = json.loads((folder / name).read_text())
    return {vid: [caps] if isinstance(caps, str) else caps for vid, caps in mapper.items()}


@pytest.mark.parametrize(
    ("name", "folder", "test_ids", "test_mapper"),
    [
        ("valor32k", "captions", "test_id.json", "txt_mapper.json"),
        ("msrvtt", "MSRVTT", "1kAsplit_test_id.json", "txt_mapper_1kAsplit_test.json"),  # one caption a test video
    ],
)
def test_caption_items_hold_the_first_caption_and_every_reference(
    splits_of, name, folder, test_ids, test_mapper
) -> None:  # noqa: ANN001
    splits, _ = splits_of(name)
    folder = splits.root / folder
    assert splits.test.ids == json.loads((folder / test_ids).read_text())
    mappers = {"train": "txt_mapper.json", "val": "txt_mapper.json", "test": test_mapper}
    for split, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        mapper = _caption_mapper(folder, mappers[split])
        for i, vid in enumerate(part.ids):
            assert part[i]["text"] == mapper[vid][0] and part.references[vid] == mapper[vid]
    assert len(json.loads((folder / "txt_mapper.json").read_text())[splits.test.ids[0]]) >= 2
    _check_layout(splits, 6, True, True)


def test_valor_qa_has_one_item_per_question(splits_of) -> None:
    splits, _ = splits_of("valor_qa")
    mapper = json.loads((splits.root / "VALOR-QA" / "txt_mapper.json").read_text())
    val_ids = json.loads((splits.root / "VALOR-QA" / "val_id.json").read_text())
    expected = [(f"{vid}#{n}", qa["question"], qa["answer"]) for vid in val_ids for n, qa in enumerate(mapper[vid])]
    assert [
        (splits.val[i]["id"], splits.val[i]["question"], splits.val[i]["answer"]) for i in range(len(splits.val))
    ] == expected
    first = [i for i, vid in enumerate(splits.val.ids) if vid.startswith(val_ids[0] + "#")]
    assert all(torch.equal(splits.val[i]["frames"], splits.val[first[0]]["frames"]) for i in first)


def test_vggsound_avel40k_items_carry_the_per_second_flags(splits_of) -> None:
    splits, _ = splits_of("vggsound_avel40k", "data.seconds=10")  # the release has 10 flags a clip
    rows = list(
        csv.DictReader((splits.root / "VGGSound-AVEL40K" / "vggsound-avel40k_labels.csv").read_text().splitlines())
    )
    items = _all_items(splits)
    k = splits.info.num_classes
    for r in rows:
        flags = json.loads(r["label"])
        label = int(items[r["video_id"]]["label"])
        assert items[r["video_id"]]["segment_labels"].tolist() == [label if f else k for f in flags]


def test_benchmark_table_and_config_choices_agree() -> None:
    import avlearn
    from avlearn.config.schema import BENCHMARKS as CHOICES
    from avlearn.data.pipelines.clips import BENCHMARKS
    from avlearn.registry import DATASETS

    avlearn.register_all()
    assert tuple(BENCHMARKS) == CHOICES
    assert all(b.reader in DATASETS for b in BENCHMARKS.values())


def test_a_generic_task_part_follows_data_benchmark() -> None:
    from omegaconf import OmegaConf

    from avlearn.data.pipelines import synth_config
    from avlearn.data.pipelines.clips import benchmark_part, clip_splits
    from avlearn.registry import TaskRegistry

    tasks = TaskRegistry("task")
    tasks.register("generic", pipeline=clip_splits, synth_part=benchmark_part)(type("Generic", (), {}))
    spec = tasks.spec("generic")
    data = OmegaConf.create({"benchmark": "esc50"})
    assert spec.part(data) == "sounds" and spec.part() == "data.benchmark"
    assert spec.part(OmegaConf.create({"benchmark": "coop"})) == "images"
    from avlearn.config.compose import compose_run

    cfg = compose_run(["data.benchmark=esc50", "data.sound_clips=7"]).data
    synth = synth_config(cfg, part=benchmark_part(cfg))
    assert (synth.count("sounds"), synth.count("events"), synth.count("images")) == (7, 0, 0)


def test_an_unknown_benchmark_is_a_config_error() -> None:
    from avlearn.config.compose import compose_run
    from avlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="data.benchmark"):
        compose_run(["data.benchmark=nope"])

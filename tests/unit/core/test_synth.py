"""AVSynth: determinism, the benchmarks' formats, decoded media, and safe (re)generation."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from avlearn.data.synth import FORMAT_VERSION, SynthConfig, generate, read_meta
from avlearn.data.synth.classes import class_table
from avlearn.errors import DataError


def _annotation_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".txt", ".csv", ".json"})


def test_same_seed_gives_identical_annotations_and_frames(tmp_path, small_synth, small_synth_config):
    from avlearn.io import read_clip

    again = generate(tmp_path / "again", small_synth_config, workers=2)
    first, second = _annotation_files(small_synth), _annotation_files(again)
    assert [p.relative_to(small_synth) for p in first] == [p.relative_to(again) for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    for vid in ("ev000000", "ev000007", "00000001", "ms000002"):
        clip_a = read_clip(small_synth / "videos" / f"{vid}.mp4")
        clip_b = read_clip(again / "videos" / f"{vid}.mp4")
        np.testing.assert_array_equal(clip_a.frames, clip_b.frames)


def test_other_seed_gives_other_clips(tmp_path, small_synth, small_synth_config):
    other = generate(tmp_path / "other", replace(small_synth_config, seed=4), workers=1)
    assert (other / "AVE" / "Annotations.txt").read_text() != (small_synth / "AVE" / "Annotations.txt").read_text()


def test_ave_files_parse_and_agree_with_llp(small_synth, small_synth_config):
    from avlearn.data.datasets.ave import AVEDataset
    from avlearn.metrics.avvp import read_event_file

    counts = read_meta(small_synth)["counts"]["events"]
    splits = {s: AVEDataset(small_synth, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == counts
    assert splits["train"].classes == tuple(c.name for c in class_table(small_synth_config.num_classes))
    classes = splits["test"].classes
    tables = []
    for name in ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"):
        table: dict[str, list] = {}
        for vid, onset, offset, label in read_event_file(small_synth / "LLP" / name, classes):
            table.setdefault(vid, []).append((onset, offset, label))
        tables.append(table)
    for vid, _, labels in splits["test"].items:
        on = labels != len(splits["test"].classes)
        assert on.any(), "every AVE clip has an event"
        name = splits["test"].classes[labels[on][0]]
        seconds = np.flatnonzero(on)
        # The AV event lies inside an audio event and a visual event of the same class.
        for table in tables:
            spans = [(a, b) for a, b, c in table[vid] if c == name]
            assert any(a <= seconds[0] and seconds[-1] < b for a, b in spans), (vid, table[vid])


def test_llp_weak_labels_cover_every_event(small_synth):
    rows = (small_synth / "LLP" / "AVVP_train.csv").read_text().splitlines()
    assert rows[0] == "filename\tevent_labels"
    for row in rows[1:]:
        vid, labels = row.split("\t")
        assert vid.startswith("ev") and labels and all(lab.isidentifier() for lab in labels.split(","))


def test_avsbench_masks_are_binary_and_follow_the_s4_rule(small_synth, small_synth_config):
    meta = (small_synth / "AVSBench" / "Single-source" / "s4_meta_data.csv").read_text().splitlines()
    assert meta[0] == "name,start,category,split"
    base = small_synth / "AVSBench" / "Single-source" / "s4_data"
    for row in meta[1:]:
        name, _, category, split = row.split(",")
        masks = sorted((base / "gt_masks" / split / category / name).glob("*.png"))
        assert len(masks) == (1 if split == "train" else 5)  # S4 training publishes the first mask only
        mask = np.asarray(Image.open(masks[0]))
        assert mask.shape == (small_synth_config.size,) * 2 and set(np.unique(mask)) <= {0, 255}
        assert (mask == 255).any(), "the single source sounds throughout, so its mask is never empty"
        assert len(list((base / "visual_frames" / split / category / name).glob("*.png"))) == 5
        assert (base / "audio_wav" / split / category / f"{name}.wav").is_file()


def test_music_avqa_json_has_the_published_fields(small_synth):
    vocab = (small_synth / "MUSIC-AVQA" / "ans_vocab.txt").read_text().split()
    items = json.loads((small_synth / "MUSIC-AVQA" / "avqa-train.json").read_text())
    assert items and {"video_id", "question_id", "type", "question_content", "templ_values", "anser"} <= set(items[0])
    kinds = {tuple(json.loads(q["type"])) for q in items}
    assert ("Audio", "Counting") in kinds and ("Audio-Visual", "Temporal") in kinds and ("Visual", "Location") in kinds
    for q in items:
        assert q["anser"] in vocab and len(q["video_id"]) == 8
        assert q["question_content"].count("<") == len(json.loads(q["templ_values"]))


def test_vggsound_and_captions(small_synth):
    rows = [r.split(",") for r in (small_synth / "VGGSound" / "vggsound.csv").read_text().splitlines()]
    assert rows and all(len(r) == 4 and r[3] in ("train", "test") for r in rows)
    captions = json.loads((small_synth / "captions" / "txt_mapper.json").read_text())
    test_ids = json.loads((small_synth / "captions" / "test_id.json").read_text())
    assert test_ids and all(len(captions[v]) >= 2 for v in test_ids)


def test_decoded_clip_has_the_promised_frames_audio_and_labels(small_synth, small_synth_config):
    from avlearn.data.datasets.ave import AVEDataset
    from avlearn.data.segments import decode_segments
    from avlearn.io import read_clip

    cfg = small_synth_config
    clip = read_clip(small_synth / "videos" / "ev000000.mp4")
    assert clip.frames.shape == (cfg.seconds * cfg.fps, cfg.size, cfg.size, 3)
    assert clip.wave.shape == (cfg.seconds * 16000,) and clip.has_audio
    from avlearn.backbones.cnn import log_mel_input

    data = AVEDataset(small_synth, "val")
    tensors = decode_segments(data.items, 32, log_mel_input(n_mels=32))
    assert tensors.frames.shape == (len(data), 10, 32, 32, 3)
    assert tensors.audio.shape == (len(data), 10, 32, 50)
    np.testing.assert_array_equal(tensors.labels.numpy(), np.stack([lab for _, _, lab in data.items]))


def test_existing_folder_with_other_parameters_is_refused(small_synth, small_synth_config):
    with pytest.raises(DataError, match="other parameters.*delete it or choose another folder"):
        generate(small_synth, replace(small_synth_config, size=48))
    assert generate(small_synth, small_synth_config) == small_synth  # same parameters: reused as is


def test_folder_of_another_format_is_refused(tmp_path, small_synth, small_synth_config):
    old = shutil.copytree(small_synth, tmp_path / "old")
    meta = json.loads((old / "avsynth.json").read_text())
    (old / "avsynth.json").write_text(json.dumps(meta | {"format": meta["format"] - 1}))
    with pytest.raises(
        DataError, match=f"of format {FORMAT_VERSION - 1}, not this avlearn's {FORMAT_VERSION}.*delete it"
    ):
        generate(old, small_synth_config)


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot write AVSynth"):
        generate(blocker / "avsynth", SynthConfig(clips=3, size=32))


def test_interrupted_generation_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    import avlearn.data.synth as synth

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(synth, "_write_annotations", boom)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "out", SynthConfig(clips=3, size=32), workers=1)
    assert list(tmp_path.iterdir()) == []


def test_bad_parameters_are_one_clear_error():
    with pytest.raises(DataError, match="size must be an even number"):
        SynthConfig(size=33).validate()

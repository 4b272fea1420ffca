"""Every reader with an AVSynth counterpart reads it end to end into batches (DataLoader over decoded samples)."""

import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from avlearn.data.datasets.media import Decode
from avlearn.data.schema import collate
from avlearn.registry import DATASETS

SMALL = Decode(frames=2, seconds=10.0, size=16)


def _batch(dataset) -> dict:
    return next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate)))


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    import avlearn.data.datasets  # noqa: F401


def test_ave(small_synth: Path) -> None:
    data = DATASETS.build("ave", small_synth, "train", decode=SMALL)
    batch = _batch(data)
    assert batch["frames"].shape == (2, 2, 16, 16, 3) and batch["frames"].dtype == torch.uint8
    assert batch["wave"].shape == (2, 160000) and batch["segment_labels"].shape == (2, 10)
    assert batch["label"].tolist() == [data.records[i].targets["label"] for i in range(2)]
    assert batch["id"] == ["ev000000", "ev000001"] and batch["meta"]["split"] == ["train", "train"]
    assert (batch["segment_labels"] == len(data.classes)).any()  # background outside the event


def test_llp_val_has_segments(small_synth: Path) -> None:
    data = DATASETS.build("llp", small_synth, "val", decode=SMALL)
    batch = _batch(data)
    k = len(data.classes)
    assert batch["labels"].shape[1] == k and batch["audio_segments"].shape[1:] == (10, k)
    on = (batch["audio_segments"].amax(dim=1) + batch["visual_segments"].amax(dim=1)) > 0  # (B, K)
    assert torch.equal(on, batch["labels"] > 0)  # weak labels = classes with an audio or visual event


@pytest.mark.parametrize("name", ["avsbench_s4", "avsbench_ms3"])
def test_avsbench(small_synth: Path, name: str) -> None:
    data = DATASETS.build(name, small_synth, "train", decode=Decode(frames=5, seconds=5.0, size=16))
    batch = _batch(data)
    assert batch["frames"].shape == (2, 5, 16, 16, 3) and batch["masks"].shape == (2, 5, 16, 16)
    assert batch["wave"].shape == (2, 80000)
    valid = batch["mask_valid"]
    assert valid.all() if name == "avsbench_ms3" else valid[:, 0].all() and not valid[:, 1:].any()
    assert batch["masks"].flatten(1).any(dim=1).all()  # every clip shows a sounding object somewhere
    assert not batch["masks"][~valid].any()


def test_music_avqa(small_synth: Path) -> None:
    data = DATASETS.build("music_avqa", small_synth, "train", decode=Decode(frames=2, seconds=None, size=16))
    batch = _batch(data)
    assert batch["frames"].shape == (2, 2, 16, 16, 3) and len(batch["question"]) == 2
    assert all("<" not in q for q in batch["question"]) and batch["answer"].dtype == torch.int64
    assert set(batch["question_type"]) <= {
        f"{g}/{t}"
        for g in ("Audio", "Visual", "Audio-Visual")
        for t in ("Counting", "Comparative", "Location", "Existential", "Temporal")
    }


def test_vggsound_and_captions(small_synth: Path) -> None:
    vgg = DATASETS.build("vggsound", small_synth, "train", decode=SMALL)
    assert _batch(vgg)["label"].shape == (2,) and vgg.records[0].fields["yid"] == "ev000000"
    caps = DATASETS.build("valor32k", small_synth, "test", decode=SMALL)
    batch = _batch(DATASETS.build("valor32k", small_synth, "train", decode=SMALL))
    assert isinstance(batch["captions"][0], list) and batch["text"][0] == batch["captions"][0][0]
    assert len(caps) == 1


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())


def test_frames_folder_and_store_give_the_video_file_frames(small_synth: Path, tmp_path: Path) -> None:
    from PIL import Image

    from avlearn.data.extract import ClipSpec, extract
    from avlearn.io import read_clip

    files = DATASETS.build("ave", small_synth, "test", decode=SMALL)
    reference = files[0]
    vid = files.records[0].media
    clip = read_clip(small_synth / "videos" / f"{vid}.mp4", timestamps=np.arange(10) + 0.5, duration=10.0, size=16)
    for i, frame in enumerate(clip.frames):  # (10, 16, 16, 3): one image per second, as extracted frame folders
        (tmp_path / "frames" / vid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(tmp_path / "frames" / vid / f"{i + 1:08d}.png")
    _write_wav(tmp_path / "wave" / f"{vid}.wav", clip.wave, clip.sample_rate)
    folder = DATASETS.build("ave", small_synth, "test", media=tmp_path, decode=SMALL)
    np.testing.assert_array_equal(folder[0]["frames"], reference["frames"])
    assert np.abs(folder[0]["wave"] - reference["wave"]).max() < 1e-3  # 16-bit wav
    extract({vid: small_synth / "videos" / f"{vid}.mp4"}, tmp_path / "store", ClipSpec(fps=2, size=16, duration=10.0))
    store = DATASETS.build("ave", small_synth, "test", media=tmp_path / "store", decode=SMALL)
    np.testing.assert_array_equal(store[0]["frames"], reference["frames"])
    np.testing.assert_allclose(store[0]["wave"], reference["wave"], atol=1e-6)


def test_ave_scorer_reads_avsynth_classes(small_synth: Path, tmp_path: Path) -> None:
    from avlearn.metrics.ave import score_ave

    gt = small_synth / "AVE" / "testSet.txt"
    data = DATASETS.build("ave", small_synth, "test", missing="keep")
    rows = [f"{r.id}\t" + "\t".join(map(str, r.targets["segment_labels"])) for r in data.records]
    (tmp_path / "p.tsv").write_text("\n".join(rows) + "\n")
    assert score_ave([tmp_path / "p.tsv"], [gt]) == {"segment_accuracy": 100.0}

"""The VALOR-layout readers (valor_layout.py and one module per dataset): each reads, from a hand-written fixture,
the id lists and txt_mappers under the file names of the seed's configs (written out here from its config/*.json,
not from the readers' tables), decodes its media (frames + audio, frames only, audio only), and bad files give a
one-line DataError naming the file and the item or field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avlearn.data.datasets.media import Decode
from avlearn.errors import DataError
from avlearn.io import write_wav
from avlearn.registry import DATASETS

# reader -> (its folder in the seed's datasets/, {split: (id list, txt_mapper)}, QA?) as in the seed's configs
SEED = {
    "didemo": ("didemo", {"train": ("train_id.json", "txt_mapper.json"), "test": ("test_id.json", "txt_mapper.json")},
               False),
    "activitynet": ("activitynet", {"train": ("train_id.json", "txt_mapper.json"),
                                    "val1": ("val1_id.json", "txt_mapper.json")}, False),
    "lsmdc": ("lsmdc", {"train": ("train_id.json", "txt_mapper.json"), "test": ("test_id.json", "txt_mapper.json")},
              False),
    "vatex": ("vatex", {"train": ("train_id.json", "txt_mapper_en.json"),
                        "test_ret": ("test_id_ret.json", "txt_mapper_en.json"),
                        "private_test": ("private_test_id.json", "txt_mapper_en.json")}, False),
    "msvd": ("msvd", {"train": ("train_id_ret_cap.json", "txt_mapper.json"),
                      "test": ("test_id_ret_cap.json", "txt_mapper.json")}, False),
    "audiocaps": ("audiocaps", {"train": ("train_id_cap.json", "txt_mapper.json"),
                                "test": ("test_id_cap.json", "txt_mapper.json"),
                                "ret_train": ("train_id_ret.json", "txt_mapper_ret.json"),
                                "ret_test": ("test_id_ret.json", "txt_mapper_ret.json")}, False),
    "clotho": ("clotho", {"train": ("train_id.json", "txt_mapper.json"), "test": ("test_id.json", "txt_mapper.json")},
               False),
    "valor32k": ("valor32k", {"train": ("train_id.json", "txt_mapper_en.json"),
                              "test": ("test_id.json", "txt_mapper_en.json")}, False),
    "valor1m": ("valor-1m", {"train": ("pretrain_ids.json", "pretrain_txt_mapper.json")}, False),
    "msrvtt_qa": ("msrvtt", {"train": ("standardsplit_train_id.json", "txt_mapper_vqa_1500.json"),
                             "test": ("standardsplit_test_id.json", "txt_mapper_vqa.json")}, True),
    "msvd_qa": ("msvd", {"train": ("train_id_vqa.json", "txt_mapper_vqa.json"),
                         "test": ("test_id_vqa.json", "txt_mapper_vqa.json")}, True),
    "tgif_qa": ("tgif", {"train": ("train_id_frameQA.json", "txt_mapper_frameQA.json"),
                         "test": ("test_id_frameQA.json", "txt_mapper_frameQA.json")}, True),
    "activitynet_qa": ("activitynet", {"train": ("train_id_vqa.json", "txt_mapper_vqa.json"),
                                       "test": ("test_id_vqa.json", "txt_mapper_vqa.json")}, True),
    "music_avqa_valor": ("music-avqa", {"train": ("train_id_vqa.json", "txt_mapper_vqa_train.json"),
                                        "test": ("test_id_vqa.json", "txt_mapper_vqa_test.json")}, True),
}  # fmt: skip


def _write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _fixture(root: Path, reader: str) -> dict[str, dict[str, list]]:
    """The seed's files of ``reader`` under ``root/<folder>``: per split, two videos (a split tag in their ids) with
    two captions or two question-answer pairs each. Returns split -> video id -> what was written for it."""
    folder, files, qa = SEED[reader]
    written: dict[str, dict[str, list]] = {}
    mappers: dict[str, dict[str, list]] = {}
    for split, (ids, mapper) in files.items():
        videos = [f"{split}_v{k}" for k in range(2)]
        entries = {v: ([{"question": f"what is in {v}?", "answer": f"thing{n}"} for n in range(2)] if qa
                       else [f"a caption of {v}", f"another caption of {v}"]) for v in videos}  # fmt: skip
        _write(root / folder / ids, videos)
        mappers.setdefault(mapper, {}).update(entries)
        written[split] = entries
    for mapper, entries in mappers.items():
        _write(root / folder / mapper, entries)
    return written


@pytest.mark.parametrize("reader", sorted(SEED))
def test_each_reader_reads_the_seeds_files_of_every_split(reader, tmp_path):
    written = _fixture(tmp_path, reader)
    cls = DATASETS.get(reader)
    assert set(cls.splits) >= set(written)  # every split of the seed's configs (valor32k also has val)
    qa = SEED[reader][2]
    for split, entries in written.items():
        data = cls(tmp_path, split, missing="keep")
        if qa:
            expected = [(f"{v}#{n}", v, p["question"], p["answer"]) for v, pairs in entries.items()
                        for n, p in enumerate(pairs)]  # fmt: skip
            got = [(r.id, r.media, r.targets["question"], r.targets["answer"]) for r in data.records]
        else:
            expected = [(v, v, caps[0], caps) for v, caps in entries.items()]
            got = [(r.id, r.media, r.targets["text"], r.targets["captions"]) for r in data.records]
        assert got == expected and {r.split for r in data.records} == {split}


def test_unknown_split_and_missing_files_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"^unknown didemo split 'val'; expected one of train, test$"):
        DATASETS.get("didemo")(tmp_path, "val", missing="keep")
    with pytest.raises(DataError, match=r"no vatex private_test id list found \(looked for .*private_test_id.json"):
        DATASETS.get("vatex")(tmp_path, "private_test", missing="keep")
    _write(tmp_path / "tgif" / "train_id_frameQA.json", ["g1"])
    with pytest.raises(DataError, match=r"no tgif_qa txt_mapper found .*txt_mapper_frameQA.json"):
        DATASETS.get("tgif_qa")(tmp_path, "train", missing="keep")


def test_fallback_mapper_names(tmp_path):
    """VATEX without txt_mapper_en.json reads txt_mapper.json; MSRVTT-QA's train without the _1500 mapper reads
    txt_mapper_vqa.json."""
    _write(tmp_path / "vatex" / "train_id.json", ["v"])
    _write(tmp_path / "vatex" / "txt_mapper.json", {"v": "one caption"})
    assert DATASETS.get("vatex")(tmp_path, "train", missing="keep").records[0].targets["captions"] == ["one caption"]
    _write(tmp_path / "msrvtt" / "standardsplit_train_id.json", ["video1"])
    _write(tmp_path / "msrvtt" / "txt_mapper_vqa.json", {"video1": [{"question": "who?", "answer": "a man"}]})
    record = DATASETS.get("msrvtt_qa")(tmp_path, "train", missing="keep").records[0]
    assert (record.id, record.targets["answer"]) == ("video1#0", "a man")


BAD = [  # (reader, file, content, the message's pattern)
    ("didemo", "train_id.json", {"v": 1}, r"train_id.json: expected a JSON list of video id strings, got a dict$"),
    ("didemo", "train_id.json", ["v", 7], r"train_id.json: item 1: expected a video id string, got 7$"),
    ("didemo", "txt_mapper.json", {"v": []}, r"txt_mapper.json: id 'v': expected a caption string or a non-empty"),
    ("didemo", "txt_mapper.json", {"w": ["x"]}, r"train_id.json: item 0: id 'v' has no caption in .*txt_mapper.json$"),
    ("msvd_qa", "txt_mapper_vqa.json", {"v": [{"question": "q?", "answer": ["a", "b"]}]},
     r"txt_mapper_vqa.json: id 'v' item 0: field 'answer': expected a string, got \['a', 'b'\]$"),
    ("msvd_qa", "txt_mapper_vqa.json", {"v": [{"answer": "a"}]},
     r"txt_mapper_vqa.json: id 'v' item 0: field 'question': expected a string, got None$"),
    ("msvd_qa", "txt_mapper_vqa.json", {"v": "red"}, r"txt_mapper_vqa.json: id 'v': expected a list of"),
    ("clotho", "txt_mapper.json", "[not json", r"txt_mapper.json"),
]  # fmt: skip


@pytest.mark.parametrize(("reader", "name", "content", "pattern"), BAD)
def test_bad_files_are_one_line_errors_naming_file_and_field(reader, name, content, pattern, tmp_path):
    folder, files, _ = SEED[reader]
    ids, mapper = files["train"]
    _write(tmp_path / folder / ids, ["v"])
    _write(tmp_path / folder / mapper, {"v": [{"question": "q?", "answer": "a"}]} if reader.endswith("_qa") else
           {"v": ["a caption"]})  # fmt: skip
    path = tmp_path / folder / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        _write(path, content)
    with pytest.raises(DataError, match=pattern) as err:
        DATASETS.get(reader)(tmp_path, "train", missing="keep")
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def _frames(folder: Path, values: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, value in enumerate(values):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / f"frame_{k + 1:04d}.jpg", quality=100)


def test_audio_only_readers_decode_the_clip_and_no_frames(tmp_path):
    """AudioCaps from audio_22050hz/<id>.wav, Clotho from all_audios/ with the id carrying its .wav: the wave as
    written (a ramp), no frames, and no frame folder is looked for."""
    rate = 8000
    ramp = np.linspace(-0.5, 0.5, rate, dtype=np.float32)
    _fixture(tmp_path, "audiocaps")
    write_wav(tmp_path / "audiocaps" / "audio_22050hz" / "ret_test_v0.wav", ramp, rate)
    data = DATASETS.get("audiocaps")(tmp_path, "ret_test", missing="drop", decode=Decode(frames=0, seconds=None,
                                                                                         sample_rate=rate))  # fmt: skip
    assert [r.id for r in data.records] == ["ret_test_v0"]  # v1 has no audio: dropped
    sample = data[0]
    assert "frames" not in sample and sample["wave"].shape == (rate,)
    np.testing.assert_allclose(sample["wave"], ramp, atol=1e-4)
    _write(tmp_path / "clotho" / "test_id.json", ["rain.wav"])
    _write(tmp_path / "clotho" / "txt_mapper.json", {"rain.wav": ["rain falls on a roof"]})
    write_wav(tmp_path / "clotho" / "all_audios" / "rain.wav", ramp[::-1].copy(), rate)
    clotho = DATASETS.get("clotho")(tmp_path, "test", decode=Decode(frames=0, seconds=None, sample_rate=rate))
    np.testing.assert_allclose(clotho[0]["wave"], ramp[::-1], atol=1e-4)


def test_video_readers_use_the_seeds_frame_folders(tmp_path):
    """DiDeMo's frames_fps1/<id>/ + audio_22050hz/<id>.wav; MSVD's frames_fps4/ with no audio read: the frames are
    the middle of equal parts of the sorted images (values 0, 40, ..., 280 % 256 written in order)."""
    rate = 8000
    _fixture(tmp_path, "didemo")
    _frames(tmp_path / "didemo" / "frames_fps1" / "test_v0", [0, 40, 80, 120])
    write_wav(tmp_path / "didemo" / "audio_22050hz" / "test_v0.wav", np.zeros(rate, np.float32), rate)
    decode = Decode(frames=2, seconds=1.0, size=8, sample_rate=rate)
    didemo = DATASETS.get("didemo")(tmp_path, "test", missing="drop", decode=decode)
    sample = didemo[0]
    assert sample["frames"].shape == (2, 8, 8, 3) and sample["wave"].shape == (rate,)
    assert np.abs(sample["frames"][:, 4, 4, 0].astype(int) - [40, 120]).max() <= 2  # images 1 and 3 of 0..3
    _fixture(tmp_path, "msvd")
    _frames(tmp_path / "msvd" / "frames_fps4" / "train_v1", [10, 200])
    msvd = DATASETS.get("msvd")(tmp_path, "train", missing="drop", decode=Decode(frames=1, size=8, audio=False))
    assert [r.id for r in msvd.records] == ["train_v1"]  # has() asks for frames only: no audio folder needed
    assert "wave" not in msvd[0] and abs(int(msvd[0]["frames"][0, 4, 4, 0]) - 200) <= 2


def _clip_splits(root: Path, name: str, benchmark: str):  # noqa: ANN202
    from avlearn.build import audio_preprocess
    from avlearn.config.compose import compose_run
    from avlearn.data.pipelines.clips import clip_splits

    cfg = compose_run([f"data.name={name}", f"data.root={root}", f"data.benchmark={benchmark}", "data.frame_size=8",
                       "data.workers=1"])  # fmt: skip
    return clip_splits(cfg, audio_preprocess(cfg))


def test_clip_pipeline_reads_audiocaps_retrieval_lists_audio_only(tmp_path):
    """data.benchmark=audiocaps_ret: the ret_* lists (train with a held-out tenth, test), every caption as the
    references, black frames and the clips' sound; the captioning lists are not read."""
    folder = tmp_path / "audiocaps"
    train = [f"clip{k}" for k in range(12)]
    _write(folder / "train_id_ret.json", train)
    _write(folder / "test_id_ret.json", ["clipT"])
    _write(folder / "txt_mapper_ret.json", {v: [f"sound of {v}", f"{v} again"] for v in [*train, "clipT"]})
    _write(folder / "train_id_cap.json", ["not_read"])
    for k, vid in enumerate([*train, "clipT"]):
        write_wav(folder / "audio_22050hz" / f"{vid}.wav", 0.3 * np.sin(np.arange(16000) * (0.05 + 0.01 * k)), 16000)
    splits = _clip_splits(tmp_path, "audiocaps", "audiocaps_ret")
    assert sorted([*splits.train.ids, *splits.val.ids]) == sorted(train) and len(splits.val) == 1
    assert splits.test.ids == ["clipT"] and splits.test.references["clipT"] == ["sound of clipT", "clipT again"]
    item = splits.test[0]
    assert item["text"] == "sound of clipT" and (item["has_video"], item["has_audio"]) == (False, True)
    assert not item["frames"].any() and item["frames"].shape[0] == 10 and item["audio"][0].std() > 1e-3


def test_clip_pipeline_reads_msvd_qa_frames_one_item_per_question(tmp_path):
    """data.benchmark=msvd_qa: one item per question with its answer, the frames from frames_fps4/<id>/, no
    audio (silence, has_audio False)."""
    folder = tmp_path / "msvd"
    videos = [f"vid{k}" for k in range(10)]
    _write(folder / "train_id_vqa.json", videos[:9])
    _write(folder / "test_id_vqa.json", videos[9:])
    _write(folder / "txt_mapper_vqa.json", {v: [{"question": f"what is {v}?", "answer": f"a{k}"},
                                                {"question": "who?", "answer": "man"}]
                                            for k, v in enumerate(videos)})  # fmt: skip
    for k, vid in enumerate(videos):
        _frames(folder / "frames_fps4" / vid, [20 * k] * 4)
    splits = _clip_splits(tmp_path, "msvd_qa", "msvd_qa")
    assert splits.test.ids == ["vid9#0", "vid9#1"]
    item = splits.test[0]
    assert (item["question"], item["answer"], item["has_video"], item["has_audio"]) == ("what is vid9?", "a9", True,
                                                                                         False)  # fmt: skip
    assert item["frames"].shape == (10, 8, 8, 3) and abs(int(item["frames"][0, 4, 4, 0]) - 180) <= 2
    assert len(splits.train) + len(splits.val) == 18

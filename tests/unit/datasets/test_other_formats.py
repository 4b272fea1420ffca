"""AudioSet, ESC-50, UCF101, MSR-VTT, VGGSound (release csv), VGGSound-AVEL40K, CoOp few-shot and ImageNet-ESC,
on small files written in their published formats."""

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from avlearn.data.datasets.audioset import AudioSetDataset
from avlearn.data.datasets.coop import CoOpDataset, read_fewshot_file
from avlearn.data.datasets.esc50 import ESC50Dataset
from avlearn.data.datasets.imagenet_esc import ImageNetESCDataset, paired_classes
from avlearn.data.datasets.media import Decode
from avlearn.data.datasets.msrvtt import MSRVTTDataset
from avlearn.data.datasets.ucf101 import UCF101Dataset
from avlearn.data.datasets.vggsound import VGGSoundDataset
from avlearn.data.datasets.vggsound_avel40k import VGGSoundAVEL40KDataset
from avlearn.data.samplers import few_shot_indices, few_shot_split
from avlearn.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_audioset_segments_and_labels(tmp_path: Path) -> None:
    _write(
        tmp_path / "AudioSet/class_labels_indices.csv",
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n2,/m/0ytgt,Dog\n',
    )
    head = "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=2\n"
    head += "# YTID, start_seconds, end_seconds, positive_labels\n"
    _write(
        tmp_path / "AudioSet/eval_segments.csv",
        head + '--4gqARaEJE, 0.000, 10.000, "/m/09x0r,/m/0ytgt"\n--BfvyPmVMo, 20.000, 30.000, "/m/05zppz"\n',
    )
    data = AudioSetDataset(tmp_path, "eval", missing="keep")
    assert data.classes == ("Speech", "Male speech, man speaking", "Dog")
    assert data.records[0].id == "--4gqARaEJE_000000" and data.records[0].targets["labels"].tolist() == [1, 0, 1]
    assert data.records[1].fields["end"] == "000030" and data.stats()["classes_per_sample"] == 1.5
    _write(tmp_path / "AudioSet/eval_segments.csv", head + '--4gqARaEJE, 0.000, 10.000, "/m/nope"\n')
    with pytest.raises(DataError, match=r"eval_segments.csv:4: field 'positive_labels': unknown class '/m/nope'"):
        AudioSetDataset(tmp_path, "eval", missing="keep")


def _wav(path: Path, seconds: float, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), "<i2").tobytes())


def _esc(root: Path) -> None:
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for k, (target, cat) in enumerate([(0, "dog"), (1, "rooster"), (5, "cat"), (30, "door_wood_knock")] * 5):
        name = f"{k % 5 + 1}-{100 + k}-A-{target}.wav"
        rows.append(f"{name},{k % 5 + 1},{target},{cat},False,{100 + k},A")
        _wav(root / "ESC-50-master/audio" / name, 0.5)
    targets = {t for t in range(50)} - {0, 1, 5, 30}
    for t in sorted(targets):  # every other class once, in fold 1
        rows.append(f"1-9{t}-A-{t}.wav,1,{t},class{t},False,9{t},A")
    _write(root / "ESC-50-master/meta/esc50.csv", "\n".join(rows) + "\n")


def test_esc50_folds_and_audio(tmp_path: Path) -> None:
    _esc(tmp_path)
    test = ESC50Dataset(
        tmp_path, "test", fold=2, missing="drop", decode=Decode(frames=0, seconds=0.5, sample_rate=8000)
    )
    assert len(test.classes) == 50 and test.classes[1] == "rooster"
    assert {r.id.split("-")[0] for r in test.records} == {"2"} and len(test) == 4
    assert test[0]["wave"].shape == (4000,) and "frames" not in test[0]
    assert len(ESC50Dataset(tmp_path, "train", fold=2, missing="keep")) == 16 + 46
    assert len(ESC50Dataset(tmp_path, "fold1", missing="keep")) == 4 + 46


def test_imagenet_esc_pairs(tmp_path: Path) -> None:
    assert len(paired_classes(27)) == 27 and len(paired_classes(19)) == 19
    _esc(tmp_path)
    data = ImageNetESCDataset(tmp_path, "all", variant=19, missing="drop")
    assert data.classes[:2] == ("rooster", "hen") and len(data.classes) == 19
    kept = {data.classes[r.targets["label"]] for r in data.records}
    assert kept == {"rooster", "Otterhound", "Egyptian Mau"}  # dog, cat: paired; door knock: not paired
    (tmp_path / "imagenet/images/val/n0").mkdir(parents=True)
    _write(tmp_path / "imagenet/classnames.txt", "".join(f"n{i} class {i}\n" for i in range(1000)))
    from PIL import Image

    for index in paired_classes(19):
        (tmp_path / f"imagenet/images/val/n{index}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 10), (index % 255, 0, 0)).save(tmp_path / f"imagenet/images/val/n{index}/a.JPEG")
    images = ImageNetESCDataset(tmp_path, "val", variant=19, modality="image", decode=Decode(frames=1, size=8))
    assert len(images) == 19 and images[0]["frames"].shape == (1, 8, 8, 3)
    assert abs(int(images[0]["frames"][0, 0, 0, 0]) - 7) <= 2  # class 7 (rooster) first; JPEG is lossy
    (tmp_path / "imagenet/images/val/n7/a.JPEG").unlink()  # an empty class folder: a class without images here
    assert len(ImageNetESCDataset(tmp_path, "val", variant=19, modality="image")) == 18
    (tmp_path / "imagenet/images/val/n7").rmdir()
    with pytest.raises(DataError, match=r"images/val/n7: no folder for class 7 \(rooster\)"):
        ImageNetESCDataset(tmp_path, "val", variant=19, modality="image")


def test_ucf101_official_lists(tmp_path: Path) -> None:
    _write(tmp_path / "UCF101/ucfTrainTestlist/classInd.txt", "1 ApplyEyeMakeup\n2 YoYo\n")
    _write(
        tmp_path / "UCF101/ucfTrainTestlist/trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g08_c01.avi 2\n",
    )
    _write(tmp_path / "UCF101/ucfTrainTestlist/testlist01.txt", "YoYo/v_YoYo_g01_c01.avi\n")
    train = UCF101Dataset(tmp_path, "train", missing="keep")
    assert [r.targets["label"] for r in train.records] == [0, 1] and train.classes == ("ApplyEyeMakeup", "YoYo")
    assert UCF101Dataset(tmp_path, "test", missing="keep").records[0].id == "v_YoYo_g01_c01"
    _write(tmp_path / "UCF101/ucfTrainTestlist/trainlist01.txt", "YoYo/v_YoYo_g08_c01.avi 1\n")
    with pytest.raises(DataError, match="trainlist01.txt:1: class index 1 does not match the folder 'YoYo'"):
        UCF101Dataset(tmp_path, "train", missing="keep")


def test_msrvtt_1ka_split(tmp_path: Path) -> None:
    _write(tmp_path / "MSRVTT/1KAsplit_train_id.json", json.dumps(["video0", "video1"]))
    _write(tmp_path / "MSRVTT/1kAsplit_test_id.json", json.dumps(["video7"]))
    _write(tmp_path / "MSRVTT/txt_mapper.json", json.dumps({"video0": ["a", "b"], "video1": "c", "video7": ["x"]}))
    _write(tmp_path / "MSRVTT/txt_mapper_1kAsplit_test.json", json.dumps({"video7": ["only this"]}))
    train = MSRVTTDataset(tmp_path, "train", missing="keep")
    assert [r.targets["captions"] for r in train.records] == [["a", "b"], ["c"]]
    assert MSRVTTDataset(tmp_path, "test", missing="keep").records[0].targets["text"] == "only this"
    _write(tmp_path / "MSRVTT/1KAsplit_train_id.json", json.dumps(["video0", "video9"]))
    with pytest.raises(DataError, match="item 1: id 'video9' has no caption"):
        MSRVTTDataset(tmp_path, "train", missing="keep")


def test_vggsound_release_csv(tmp_path: Path) -> None:
    _write(
        tmp_path / "VGGSound/vggsound.csv",
        '---g-f_I2yQ,1,people marching,test\n--0PQM4-hqg,30,"cattle, bovinae cowbell",train\n',
    )
    test = VGGSoundDataset(tmp_path, "test", missing="keep")
    assert test.classes == ("cattle, bovinae cowbell", "people marching") and test.records[0].id == "---g-f_I2yQ_000001"
    train = VGGSoundDataset(tmp_path, "train", missing="keep")
    assert train.records[0].fields["folder"] == "cattle__bovinae_cowbell" and train.records[0].fields["end"] == "000040"


def test_vggsound_avel40k_with_flags(tmp_path: Path) -> None:
    _write(tmp_path / "vggsound/VggsoundAVEL40kCategories.txt", "dog barking\nplaying piano\n")
    _write(
        tmp_path / "vggsound/vggsound-avel40k_labels.csv",
        'category,video_id,label,split\nplaying piano,abc_000010,"[0, 1, 1, 0, 0, 0, 0, 0, 0, 1]",train\n'
        "dog barking,def_000000,1111111111,test\n",
    )
    train = VGGSoundAVEL40KDataset(tmp_path, "train", missing="keep")
    assert train.records[0].targets["segment_labels"].tolist() == [2, 1, 1, 2, 2, 2, 2, 2, 2, 1]
    assert len(VGGSoundAVEL40KDataset(tmp_path, "all", missing="keep")) == 2
    _write(
        tmp_path / "vggsound/vggsound-avel40k_labels.csv", "category,video_id,label,split\ndog barking,x,101,train\n"
    )
    with pytest.raises(DataError, match=r"labels.csv:2: field 'label': expected 10 per-second 0/1 flags"):
        VGGSoundAVEL40KDataset(tmp_path, "train", missing="keep")


def test_few_shot_sampler_is_deterministic() -> None:
    labels = [0, 1, 2] * 10 + [3]  # class 3 has a single sample
    a, b = few_shot_indices(labels, 4, seed=1), few_shot_indices(labels, 4, seed=1)
    assert a == b and len(a) == 13 and 30 in a
    assert [sum(labels[i] == k for i in a) for k in range(4)] == [4, 4, 4, 1]
    assert few_shot_indices(labels, 4, seed=2) != a
    assert few_shot_indices(labels[:30] + [5] * 3, 4, seed=1)[:12] == [i for i in a if i < 30]  # per-class draws
    assert len(few_shot_split(labels, labels, 8, seed=1)["val"]) == 3 * 4 + 1  # min(K, 4) per class


def test_coop_split_and_fewshot_file(tmp_path: Path) -> None:
    from PIL import Image

    items = {s: [[f"{c}/{s}{i}.jpg", k, c] for k, c in enumerate(["cat", "dog"]) for i in range(6)]
             for s in ("train", "val", "test")}  # fmt: skip
    _write(tmp_path / "split_zhou_Pets.json", json.dumps(items))
    for s in items.values():
        for rel, _, _ in s:
            (tmp_path / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4)).save(tmp_path / "images" / rel)
    data = CoOpDataset(tmp_path, "train", shots=2, seed=3, decode=Decode(frames=1, size=4))
    assert len(data) == 4 and data.classes == ("cat", "dog") and data[0]["frames"].shape == (1, 4, 4, 3)
    written = read_fewshot_file(tmp_path / "split_fewshot" / "shot_2-seed_3.json")
    assert [items["train"][i][0] for i in written["train"]] == [r.id for r in data.records]
    assert len(CoOpDataset(tmp_path, "test", shots=2)) == 12  # test is never subsampled

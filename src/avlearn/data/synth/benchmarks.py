"""Writing AVSynth in the layouts of the clip benchmarks, so the real readers (``avlearn.data.datasets``) read them.

From the event clips (the mp4 files of ``videos/``; each writer is called only when its flavour has clips):

- ``AudioSet/``: ``class_labels_indices.csv`` (header ``index,mid,display_name``, names quoted), ``ontology.json``,
  ``balanced_train_segments.csv`` / ``unbalanced_train_segments.csv`` / ``eval_segments.csv`` (three ``#`` lines,
  then ``YTID, start_seconds, end_seconds, "mid,mid"``). Labels: every class *heard* in the clip (the event class
  and an audio-only distractor), as AudioSet labels sound events. Training clips alternate between the balanced and
  the unbalanced list (disjoint, as published); the test clips are ``eval``; validation clips are left out.
- ``UCF101/``: ``ucfTrainTestlist/classInd.txt``, ``trainlist0{1,2,3}.txt`` and ``testlist0{1,2,3}.txt`` (clip i is
  in group ``i % 25 + 1``; split k tests groups ``7k-6 .. 7k``, as UCF101's three splits), and
  ``UCF-101/<Class>/v_<Class>_gGG_cCC.avi``: hard links to the clips' mp4 files (the decoder reads the content).
  Label: the event class; the reader decodes frames only.
- ``MSRVTT/``: the 1k-A retrieval split: ``1KAsplit_train_id.json`` (train and validation clips),
  ``1kAsplit_test_id.json``, ``txt_mapper.json`` (every caption) and ``txt_mapper_1kAsplit_test.json`` (the first).
- ``VALOR-QA/``: ``{train,val,test}_id.json`` and ``txt_mapper.json`` ``{id: [{"question", "answer"}, ...]}``, the
  open-ended QA layout of VALOR's code (see ``qa_pairs`` for the questions).

From the ``sounds`` (audio only, 5 s) and ``images`` (one image) clips:

- ``ESC-50-master/``: ``meta/esc50.csv`` (header ``filename,fold,target,category,esc10,src_file,take``) and
  ``audio/<fold>-<src>-A-<target>.wav``; classes balanced, each fold holding whole rounds of classes.
- ``ImageNet-ESC/ESC-50-master/``: the same sounds (hard links) for the classes below 27, named by the ESC-50
  category that ImageNet-ESC pairs with the k-th ImageNet class (``avlearn.data.datasets.imagenet_esc.PAIRS``), so the
  ImageNet-ESC reader reads AVSynth class k as its class k.
- ``ImageNet-ESC/imagenet/``: ImageNet-ESC's image side from the images of the classes below 27 (hard links), in
  the CoOp ImageNet layout the reader reads: ``classnames.txt`` and ``images/<train|val>/<wnid>/<id>.png``
  (``write_imagenet_esc_images``); class k is the same ImageNet-ESC class as the sounds of class k.
- ``CoOp/``: ``images/<class>/<id>.png``, ``split_zhou_AVSynth.json`` (``[relpath, label, classname]`` lists, 80/10/10
  by index) and ``split_fewshot/shot_K-seed_S.json`` for K in 1, 2, 4, 8, 16 and seeds 1-3 (CoOp's format, drawn
  by ``avlearn.data.samplers.few_shot_split``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from avlearn.data.datasets.coop import write_fewshot_file
from avlearn.data.datasets.imagenet_esc import PAIRS, paired_classes
from avlearn.data.synth.classes import ClassSpec
from avlearn.data.synth.formats import SPLITS, Split, captions
from avlearn.data.synth.scene import Scene

ESC_AUDIO = "ESC-50-master/audio"
ESC_FOLDS = 5
UCF_GROUPS, UCF_TEST_GROUPS, UCF_FOLDS = 25, 7, 3
FEWSHOT_SHOTS, FEWSHOT_SEEDS = (1, 2, 4, 8, 16), (1, 2, 3)


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy where the file system has no hard links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _index(scene: Scene) -> int:
    """The clip's index, from its id (``ev000012`` -> 12)."""
    return int(scene.clip_id.lstrip("abcdefghijklmnopqrstuvwxyz"))


def audioset_mid(cls: int) -> str:
    """The ontology-style id of AVSynth class ``cls`` (``/m/0av007``)."""
    return f"/m/0av{cls:03d}"


def heard_classes(scene: Scene) -> list[int]:
    """The classes heard somewhere in the clip, sorted (AudioSet's labels of an event clip)."""
    return sorted({src.cls for src in scene.sources if src.audible})


def write_audioset(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """AudioSet's release files for the event clips (see the module docstring)."""
    out = root / "AudioSet"
    names = [c.name.capitalize() for c in classes]
    rows = [f'{k},{audioset_mid(k)},"{name}"' for k, name in enumerate(names)]
    _write_lines(out / "class_labels_indices.csv", ["index,mid,display_name", *rows])
    ontology = [{"id": audioset_mid(k), "name": name, "description": f"AVSynth class {k}: {classes[k].describe()}",
                 "citation_uri": "", "positive_examples": [], "child_ids": [], "restrictions": []}
                for k, name in enumerate(names)]  # fmt: skip
    _write_json(out / "ontology.json", ontology)
    train = [scene for scene, split in items if split == "train"]
    lists = {"balanced_train": train[0::2], "unbalanced_train": train[1::2],
             "eval": [scene for scene, split in items if split == "test"]}  # fmt: skip
    for name, scenes in lists.items():
        labels = [[audioset_mid(k) for k in heard_classes(s)] for s in scenes]
        unique = len({m for ms in labels for m in ms})
        header = [
            "# Segments csv created by AVSynth",
            f"# num_ytids={len(scenes)}, num_segs={len(scenes)}, num_unique_labels={unique}, "
            f"num_positive_labels={sum(map(len, labels))}",
            "# YTID, start_seconds, end_seconds, positive_labels",
        ]
        body = [f'{s.clip_id}, 0.000, {s.seconds:.3f}, "{",".join(ms)}"' for s, ms in zip(scenes, labels, strict=True)]
        _write_lines(out / f"{name}_segments.csv", header + body)


def ucf_name(scene: Scene, classes: tuple[ClassSpec, ...]) -> str:
    """``<Class>/v_<Class>_gGG_cCC.avi`` of an event clip: group ``i % 25 + 1``, clip ``i // 25 + 1``."""
    index, name = _index(scene), classes[scene.event[0]].name.capitalize()
    return f"{name}/v_{name}_g{index % UCF_GROUPS + 1:02d}_c{index // UCF_GROUPS + 1:02d}.avi"


def write_ucf101(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """UCF101's class index, its three train/test lists and the videos (see the module docstring)."""
    out = root / "UCF101"
    _write_lines(out / "ucfTrainTestlist" / "classInd.txt", [f"{k + 1} {c.name.capitalize()}" for k, c in
                                                               enumerate(classes)])  # fmt: skip
    for fold in range(1, UCF_FOLDS + 1):
        tested = range((fold - 1) * UCF_TEST_GROUPS + 1, fold * UCF_TEST_GROUPS + 1)
        train, test = [], []
        for scene, _ in items:
            name = ucf_name(scene, classes)
            if _index(scene) % UCF_GROUPS + 1 in tested:
                test.append(name)
            else:
                train.append(f"{name} {scene.event[0] + 1}")
        _write_lines(out / "ucfTrainTestlist" / f"trainlist0{fold}.txt", train)
        _write_lines(out / "ucfTrainTestlist" / f"testlist0{fold}.txt", test)
    for scene, _ in items:
        _link(root / "videos" / f"{scene.clip_id}.mp4", out / "UCF-101" / ucf_name(scene, classes))


def write_msrvtt(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """MSR-VTT's 1k-A split files for the event clips with their captions."""
    out = root / "MSRVTT"
    mapper = {scene.clip_id: captions(scene, classes) for scene, _ in items}
    test = [scene.clip_id for scene, split in items if split == "test"]
    _write_json(out / "1KAsplit_train_id.json", [scene.clip_id for scene, split in items if split != "test"])
    _write_json(out / "1kAsplit_test_id.json", test)
    _write_json(out / "txt_mapper.json", mapper)
    _write_json(out / "txt_mapper_1kAsplit_test.json", {vid: mapper[vid][0] for vid in test})


def qa_pairs(scene: Scene, classes: tuple[ClassSpec, ...]) -> list[dict[str, str]]:
    """Open-ended questions on an event clip: what sounds while seen (audio + vision), where it is (vision of the
    sounding object), whether a silent object is seen and whether an unseen sound is heard (one modality each)."""
    main = scene.sources[0]
    silent = any(src.visible and not src.audible for src in scene.sources[1:])
    unseen = any(src.audible and not src.visible for src in scene.sources[1:])
    return [
        {"question": "what is seen while it sounds?", "answer": classes[main.cls].name},
        {"question": f"where is the {classes[main.cls].name}?", "answer": main.side},
        {"question": "is there a silent object?", "answer": "yes" if silent else "no"},
        {"question": "is something heard but not seen?", "answer": "yes" if unseen else "no"},
    ]


def write_valor_qa(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """VALOR's open-ended QA files for the event clips (one id list per split and the QA ``txt_mapper.json``)."""
    out = root / "VALOR-QA"
    _write_json(out / "txt_mapper.json", {scene.clip_id: qa_pairs(scene, classes) for scene, _ in items})
    for split in SPLITS:
        _write_json(out / f"{split}_id.json", [scene.clip_id for scene, sp in items if sp == split])


def esc_fold(index: int, num_classes: int) -> int:
    """The ESC-50 fold of sound ``index``: classes go round by index, each fold takes whole rounds."""
    return (index // num_classes) % ESC_FOLDS + 1


def esc_filename(scene: Scene, num_classes: int) -> str:
    """``<fold>-<src_file>-A-<target>.wav``, as ESC-50 names its files."""
    index = _index(scene)
    return f"{esc_fold(index, num_classes)}-{100000 + index}-A-{scene.sources[0].cls}.wav"


def _esc_rows(sounds: Sequence[Scene], category: dict[int, str], num_classes: int) -> list[str]:
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for scene in sounds:
        cls = scene.sources[0].cls
        if cls in category:
            fold, name = esc_fold(_index(scene), num_classes), esc_filename(scene, num_classes)
            rows.append(f"{name},{fold},{cls},{category[cls]},False,{100000 + _index(scene)},A")
    return rows


def write_esc50(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """ESC-50's meta csv for the rendered sounds, and ImageNet-ESC's copy under its paired category names."""
    sounds = [scene for scene, _ in items]
    k = len(classes)
    _write_lines(root / "ESC-50-master" / "meta" / "esc50.csv", _esc_rows(sounds, dict(enumerate(c.name for c in
                                                                                            classes)), k))  # fmt: skip
    paired = {cls: PAIRS[index][1] for cls, index in enumerate(paired_classes(27)) if cls < k}
    out = root / "ImageNet-ESC" / "ESC-50-master"
    _write_lines(out / "meta" / "esc50.csv", _esc_rows(sounds, paired, k))
    for scene in sounds:
        if scene.sources[0].cls in paired:
            name = esc_filename(scene, k)
            _link(root / ESC_AUDIO / name, out / "audio" / name)


def coop_image(scene: Scene, classes: tuple[ClassSpec, ...]) -> str:
    """The image's path under the AVSynth root: ``CoOp/images/<class>/<id>.png``."""
    return f"CoOp/images/{classes[scene.sources[0].cls].name}/{scene.clip_id}.png"


def write_coop(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """CoOp's split file for the rendered images and its few-shot files (see the module docstring)."""
    from avlearn.data.samplers import few_shot_split

    out = root / "CoOp"
    split = {s: [] for s in SPLITS}
    for scene, sp in items:
        cls = scene.sources[0].cls
        split[sp].append([coop_image(scene, classes).removeprefix("CoOp/images/"), cls, classes[cls].name])
    _write_json(out / "split_zhou_AVSynth.json", split)
    lists = {s: [tuple(item) for item in split[s]] for s in SPLITS}
    for shots in FEWSHOT_SHOTS:
        for seed in FEWSHOT_SEEDS:
            indices = few_shot_split([i[1] for i in lists["train"]], [i[1] for i in lists["val"]], shots, seed)
            write_fewshot_file(out / "split_fewshot" / f"shot_{shots}-seed_{seed}.json", lists, indices)


def imagenet_wnid(index: int) -> str:
    """AVSynth's WordNet-style id of ImageNet class ``index`` (``n00000007``): a folder name, as ImageNet's."""
    return f"n{index:08d}"


def write_imagenet_esc_images(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """ImageNet-ESC's image side: the CoOp images of the classes below 27, as ImageNet in CoOp's layout.

    ``ImageNet-ESC/imagenet/classnames.txt`` lists 1000 classes (``<wnid> <name>``; the paired ones named as in
    ``PAIRS``) and ``imagenet/images/<train|val>/<wnid>/<id>.png`` are hard links to the images: AVSynth class k
    under the wnid of the k-th paired ImageNet class, so the reader reads it as ImageNet-ESC class k (the same k as
    its sounds; the paired classes above ``num_classes`` get empty folders). AVSynth's training and validation images
    are ImageNet's ``train``, its test images ``val`` (the split CoOp tests ImageNet on).
    """
    out = root / "ImageNet-ESC" / "imagenet"
    names = [PAIRS[i][0] if i in PAIRS else f"avsynth unused class {i}" for i in range(1000)]
    _write_lines(out / "classnames.txt", [f"{imagenet_wnid(i)} {name}" for i, name in enumerate(names)])
    paired = paired_classes(27)
    for split, index in itertools.product(("train", "val"), paired):  # a class without images has an empty folder
        (out / "images" / split / imagenet_wnid(index)).mkdir(parents=True, exist_ok=True)
    for scene, split in items:
        cls = scene.sources[0].cls
        if cls < len(paired):
            folder = out / "images" / ("val" if split == "test" else "train") / imagenet_wnid(paired[cls])
            _link(root / coop_image(scene, classes), folder / f"{scene.clip_id}.png")


def write_clip_benchmarks(root: Path, by_flavour: dict[str, list], classes: tuple[ClassSpec, ...]) -> None:
    """Every clip benchmark whose flavour has clips."""
    events, sounds, images = by_flavour["events"], by_flavour["sounds"], by_flavour["images"]
    writers = [(events, write_audioset), (events, write_ucf101), (events, write_msrvtt), (events, write_valor_qa),
               (sounds, write_esc50), (images, write_coop), (images, write_imagenet_esc_images)]  # fmt: skip
    for items, writer in writers:
        if items:
            writer(root, items, classes)

"""Writing AVSynth annotations in the real benchmarks' published formats, so the real readers read them.

Every writer takes the rendered scenes of one flavour with their splits. Layouts (relative to the AVSynth root):

- ``AVE/``: ``Annotations.txt`` (header ``Category&VideoID&Quality&StartTime&EndTime``), ``trainSet.txt``,
  ``valSet.txt``, ``testSet.txt`` (no header), ``categories.txt``.
- ``LLP/``: ``AVVP_train.csv`` (``filename<TAB>event_labels``, weak labels), ``AVVP_val_pd.csv``,
  ``AVVP_test_pd.csv``, ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv`` (``filename onset offset
  event_labels``, seconds, val and test clips) and ``AVVP_dataset_full.csv``.
- ``AVSBench/Single-source/s4_meta_data.csv`` (``name,start,category,split``) with ``s4_data/{visual_frames,
  gt_masks}/<split>/<category>/<name>/<name>_<i>.png`` and ``s4_data/audio_wav/<split>/<category>/<name>.wav``;
  the training split has the first frame's mask only, as in AVSBench.
- ``AVSBench/Multi-sources/ms3_meta_data.csv`` (``video_id,split``) with ``ms3_data/visual_frames/<name>/
  <name>.mp4_<i>.png``, ``ms3_data/gt_masks/<split>/<name>/<name>_<i>.png``, ``ms3_data/audio_wav/<split>/<name>.wav``.
- ``MUSIC-AVQA/avqa-{train,val,test}.json`` (``video_id, question_id, type, question_content, templ_values,
  question_deleted, anser``; ``type`` and ``templ_values`` are JSON strings, as published) and ``ans_vocab.txt``.
- ``VGGSound/vggsound.csv`` (``youtube_id,start_seconds,label,split``, no header; splits train/test only, as
  published — AVSynth's validation clips are left out of it).
- ``captions/txt_mapper.json`` (``{video_id: [caption, ...]}``, VALOR style) and ``captions/{train,val,test}_id.json``.
- ``VGGSound-AVEL40K/vggsound-avel40k_labels.csv`` (``category,video_id,label,split``; ``label`` the per-second
  audio-visual event flags as DG-SCT writes them, ``"[0, 1, 1, ...]"``) and ``VggsoundAVEL40kCategories.txt``: the
  same event clips and splits as AVE (every benchmark of one AVSynth folder is written from one set of event clips;
  an independent pre-training set is another folder: another ``seed`` and, as VGGSound's 141 classes contain AVE's
  28, more classes — class ``k`` is the same for every class count).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avlearn.data.synth.classes import ClassSpec
from avlearn.data.synth.scene import Scene, Source

SPLITS = ("train", "val", "test")
NUMBERS = ("zero", "one", "two", "three", "four", "five")
Split = tuple[Scene, str]


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def write_ave(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """AVE: one audio-visual event per clip, ``StartTime``/``EndTime`` in whole seconds."""
    rows = {s: [] for s in SPLITS}
    for scene, split in items:
        cls, start, end = scene.event
        rows[split].append(f"{classes[cls].name}&{scene.clip_id}&good&{start}&{end}")
    every = [row for s in SPLITS for row in rows[s]]
    _write_lines(root / "AVE" / "Annotations.txt", ["Category&VideoID&Quality&StartTime&EndTime", *every])
    for split, name in zip(SPLITS, ("trainSet.txt", "valSet.txt", "testSet.txt"), strict=True):
        _write_lines(root / "AVE" / name, rows[split])
    _write_lines(root / "AVE" / "categories.txt", [c.name for c in classes])


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for on, off in sorted(intervals):
        if merged and on <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], off)
        else:
            merged.append([on, off])
    return [(a, b) for a, b in merged]


def _modality_events(scene: Scene, attr: str, classes: tuple[ClassSpec, ...]) -> list[tuple[int, int, str]]:
    per_class: dict[str, list] = defaultdict(list)
    for src in scene.sources:
        per_class[classes[src.cls].name].extend(getattr(src, attr))
    return [(on, off, name) for name, spans in per_class.items() for on, off in _merge(spans)]


def write_llp(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """LLP/AVVP: weak labels for every clip; onset/offset per modality for the val and test clips."""
    weak = {s: [] for s in SPLITS}
    audio_rows, visual_rows = [], []
    for scene, split in items:
        audio = _modality_events(scene, "audible", classes)
        visual = _modality_events(scene, "visible", classes)
        labels = sorted({name for *_, name in audio + visual})
        weak[split].append(f"{scene.clip_id}\t{','.join(labels)}")
        if split != "train":
            audio_rows += [f"{scene.clip_id}\t{on}\t{off}\t{name}" for on, off, name in sorted(audio)]
            visual_rows += [f"{scene.clip_id}\t{on}\t{off}\t{name}" for on, off, name in sorted(visual)]
    header, eval_header = "filename\tevent_labels", "filename\tonset\toffset\tevent_labels"
    llp = root / "LLP"
    _write_lines(llp / "AVVP_train.csv", [header, *weak["train"]])
    _write_lines(llp / "AVVP_val_pd.csv", [header, *weak["val"]])
    _write_lines(llp / "AVVP_test_pd.csv", [header, *weak["test"]])
    _write_lines(llp / "AVVP_dataset_full.csv", [header, *(r for s in SPLITS for r in weak[s])])
    _write_lines(llp / "AVVP_eval_audio.csv", [eval_header, *audio_rows])
    _write_lines(llp / "AVVP_eval_visual.csv", [eval_header, *visual_rows])


def write_avs_meta(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...], flavour: str) -> None:
    """The AVSBench meta csv of S4 (``name,start,category,split``) or MS3 (``video_id,split``)."""
    if flavour == "s4":
        rows = [f"{s.clip_id},0,{classes[s.sources[0].cls].name},{split}" for s, split in items]
        _write_lines(root / "AVSBench" / "Single-source" / "s4_meta_data.csv", ["name,start,category,split", *rows])
    else:
        rows = [f"{s.clip_id},{split}" for s, split in items]
        _write_lines(root / "AVSBench" / "Multi-sources" / "ms3_meta_data.csv", ["video_id,split", *rows])


def avs_paths(root: Path, scene: Scene, split: str, classes: tuple[ClassSpec, ...]) -> dict[str, Path]:
    """Where the AVSBench frames, masks and wav of ``scene`` go (``{i}`` in the frame/mask names is 1-based)."""
    name = scene.clip_id
    if scene.flavour == "s4":
        base = root / "AVSBench" / "Single-source" / "s4_data"
        category = classes[scene.sources[0].cls].name
        return {
            "frame": base / "visual_frames" / split / category / name / (name + "_{i}.png"),
            "mask": base / "gt_masks" / split / category / name / (name + "_{i}.png"),
            "wav": base / "audio_wav" / split / category / f"{name}.wav",
        }
    base = root / "AVSBench" / "Multi-sources" / "ms3_data"
    return {
        "frame": base / "visual_frames" / name / (name + ".mp4_{i}.png"),
        "mask": base / "gt_masks" / split / name / (name + "_{i}.png"),
        "wav": base / "audio_wav" / split / f"{name}.wav",
    }


def _onscreen_sounding(scene: Scene) -> list[Source]:
    return sorted((s for s in scene.sources if s.visible and s.audible), key=lambda s: s.audible[0][0])


def _questions(scene: Scene, classes: tuple[ClassSpec, ...], rng: np.random.Generator) -> list[tuple]:
    """(type, template, templ_values, answer) tuples for one multi-source clip."""
    names = [c.name for c in classes]
    playing = _onscreen_sounding(scene)  # ordered by onset
    by_x = sorted(playing, key=lambda s: s.x)
    heard = {names[s.cls] for s in scene.sources if s.audible}
    absent = [n for n in names if n not in heard]
    asked = str(rng.choice(sorted(heard))) if (rng.random() < 0.5 or not absent) else str(rng.choice(absent))
    first_or_last = str(rng.choice(["first", "last"]))
    nth = int(rng.integers(len(playing)))
    ordinal = ("first", "second", "third")[nth]
    k = int(rng.integers(1, len(by_x)))  # ask for the left neighbour of the k-th object from the left
    offscreen = any(s.audible and not s.visible for s in scene.sources)
    return [
        (["Audio", "Counting"], "Is there a <Object> sound?", [asked], "yes" if asked in heard else "no"),
        (["Audio-Visual", "Counting"], "How many instruments are sounding in the video?", [], NUMBERS[len(playing)]),
        (
            ["Audio-Visual", "Temporal"],
            "Where is the <FL> sounding instrument?",
            [first_or_last],
            (playing[0] if first_or_last == "first" else playing[-1]).side,
        ),
        (
            ["Audio-Visual", "Temporal"],
            "What is the <TH> instrument that comes in?",
            [ordinal],
            names[playing[nth].cls],
        ),
        (
            ["Visual", "Location"],
            "What is the instrument on the <LR> of <Object>?",
            ["left", names[by_x[k].cls]],
            names[by_x[k - 1].cls],
        ),
        (["Audio-Visual", "Existential"], "Is there a voiceover?", [], "yes" if offscreen else "no"),
    ]


def write_avqa(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...], seed: int) -> None:
    """MUSIC-AVQA json files (one per split) and the answer vocabulary."""
    rng = np.random.default_rng([seed, 7])
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    qid = 0
    for scene, split in items:
        for qtype, template, values, answer in _questions(scene, classes, rng):
            per_split[split].append(
                {
                    "video_id": scene.clip_id,
                    "question_id": qid,
                    "type": json.dumps(qtype),
                    "question_content": template,
                    "templ_values": json.dumps(values),
                    "question_deleted": 0,
                    "anser": answer,
                }
            )
            qid += 1
    out = root / "MUSIC-AVQA"
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in per_split.items():
        (out / f"avqa-{split}.json").write_text(json.dumps(rows, indent=1))
    vocab = ["yes", "no", *NUMBERS, "left", "middle", "right", *(c.name for c in classes)]
    _write_lines(out / "ans_vocab.txt", vocab)


def captions(scene: Scene, classes: tuple[ClassSpec, ...]) -> list[str]:
    cls, start, end = scene.event
    spec, main = classes[cls], scene.sources[0]
    caps = [
        f"a {spec.describe()} on the {main.side} sounds like a {spec.name} from second {start} to {end}",
        f"the {spec.name} is heard while the {spec.describe()} is visible",
    ]
    for src in scene.sources[1:]:
        other = classes[src.cls]
        caps.append(
            f"a silent {other.describe()} is also visible" if src.visible else f"an unseen {other.name} is also heard"
        )
    return caps


def write_vggsound_and_captions(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """VGGSound-style classification csv (the event class) and VALOR-style captions for the event clips."""
    rows = [f"{s.clip_id},0,{classes[s.event[0]].name},{split}" for s, split in items if split != "val"]
    _write_lines(root / "VGGSound" / "vggsound.csv", rows)
    out = root / "captions"
    out.mkdir(parents=True, exist_ok=True)
    (out / "txt_mapper.json").write_text(json.dumps({s.clip_id: captions(s, classes) for s, _ in items}, indent=1))
    for split in SPLITS:
        (out / f"{split}_id.json").write_text(json.dumps([s.clip_id for s, sp in items if sp == split]))


def write_vggsound_avel40k(root: Path, items: Sequence[Split], classes: tuple[ClassSpec, ...]) -> None:
    """VGGSound-AVEL40K as DG-SCT's pre-training reads it: one row per event clip, its per-second event flags."""
    rows = []
    for scene, split in items:
        flags = ", ".join(str(int(on)) for on in scene.av_labels() >= 0)  # seen and heard in that second
        rows.append(f'{classes[scene.event[0]].name},{scene.clip_id},"[{flags}]",{split}')
    out = root / "VGGSound-AVEL40K"
    _write_lines(out / "vggsound-avel40k_labels.csv", ["category,video_id,label,split", *rows])
    _write_lines(out / "VggsoundAVEL40kCategories.txt", [c.name for c in classes])

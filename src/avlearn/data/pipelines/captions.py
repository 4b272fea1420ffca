"""AVE-layout clips with captions -> the caption-pretraining, zero-shot and retrieval tasks' tensors; and the clips
of a caption benchmark (``data.benchmark``, read by ``clips.clip_splits``) with their captions embedded the same way
(``benchmark_caption_segments``, ``task=retrieve``).

Follows DG-SCT's pre-training / zero-shot split (haoyi-duan/DG-SCT ``pretrain/``, ``zero-shot/``): a model is
pre-trained on one set of clips and evaluated, without training, on classes described only by text. The clips come
from an AVE-layout dataset (AVSynth writes one, with ``captions/txt_mapper.json`` keyed by video id); each clip is
decoded into ten one-second segments (``avlearn.data.segments.decode_segments``) with its per-second labels.

What we changed, and why:

* The seed pre-trains on VGGSound-AVEL-40K with class labels; here the pre-training signal is the clips' captions,
  embedded once by the task's frozen text tower (``task.text``) and held as tensors, one caption drawn per read.
* Honest zero-shot: ``task.holdout`` classes are left out of pre-training, together with every clip whose captions
  mention a held-out class (a distractor's name or look), so no text or pixel of a held-out class is trained on;
  ``task.classes`` selects the evaluated classes, relabelled ``0..K-1`` with background ``K``.
* Class descriptions: AVSynth class names are arbitrary words, its meaning is in the look ("red striped circle");
  ``DescribedInfo.descriptions`` carries it (from ``avsynth.json``) so prompts can name it. Elsewhere it is the name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.data.pipelines import Splits, dataset_root
from avlearn.data.schema import DatasetInfo
from avlearn.data.segments import LazySegments, SegmentTensors
from avlearn.errors import ConfigError
from avlearn.layers.prompts import embed_prompts

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DescribedInfo(DatasetInfo):
    """``DatasetInfo`` plus a text description per class (empty: the class names describe themselves)."""

    descriptions: tuple[str, ...] = ()


@dataclass
class CaptionSegments:
    """Decoded clips with their caption embeddings.

    Attributes:
        clips: Frames, log-mels (and segment labels) of N clips: the AVE layout's segments, or a benchmark's
            ``clips.ClipSet``.
        texts: (N, M, Ct) L2-normalised caption embeddings, padded with zeros to the most captions M of a clip.
        counts: (N,) captions per clip (>= 1).
        draw: Pick a random caption of the clip at every read (training); otherwise its first caption.
        tokens: (N, M, L) ``input_ids`` and ``attention_mask`` of the captions by the text tower's tokenizer, for a
            task that runs the tower itself (None: the embeddings only).
    """

    clips: SegmentTensors | LazySegments | Any
    texts: torch.Tensor
    counts: torch.Tensor
    draw: bool = False
    tokens: dict[str, torch.Tensor] | None = None

    @property
    def labels(self) -> torch.Tensor:
        """(N, S) segment labels (background = number of classes)."""
        return self.clips.labels

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        pick = int(torch.randint(int(self.counts[i]), ())) if self.draw else 0  # torch's global generator
        words = {key: value[i, pick] for key, value in (self.tokens or {}).items()}  # (L,) each
        return {**self.clips[i], "text": self.texts[i, pick], **words}


def class_descriptions(root: Path, class_names: Sequence[str]) -> tuple[str, ...]:
    """Each class's look from AVSynth's ``avsynth.json`` ("red striped circle"); the class name elsewhere."""
    from avlearn.data.synth import read_meta
    from avlearn.data.synth.classes import ClassSpec

    meta = read_meta(root) or {}
    looks = {c["name"]: ClassSpec(**c).describe() for c in meta.get("classes", [])}
    return tuple(looks.get(name, name) for name in class_names)


def class_positions(field: str, wanted: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """Indices of the class names ``wanted``; an unknown name is a one-line ConfigError naming ``field``."""
    unknown = [name for name in wanted if name not in class_names]
    if unknown:
        raise ConfigError(f"{field}: unknown class {unknown[0]!r}; expected names from {', '.join(class_names)}")
    return [list(class_names).index(name) for name in wanted]


def _read(root: Path) -> tuple[dict, tuple[str, ...]]:
    """The AVE reader of each split, and the class names."""
    from avlearn import register_all
    from avlearn.registry import DATASETS

    register_all()
    readers = {split: DATASETS.get("ave")(root, split) for split in SPLITS}
    return readers, tuple(readers["train"].classes)


def _read_captions(root: Path) -> dict[str, list[str]]:
    from avlearn.data.datasets.base import find_file
    from avlearn.data.datasets.valor32k import read_txt_mapper

    return read_txt_mapper(find_file(root, ["captions/txt_mapper.json", "txt_mapper.json"], "captions txt_mapper"))


def _embed_captions(
    text_tower: str, pretrained: str | None, captions: Sequence[list[str]], chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, M, Ct) embeddings of each clip's captions (zero-padded) as the prompts are embedded, (N,) their counts."""
    flat = [c for caps in captions for c in caps]
    parts = [flat[i : i + chunk] for i in range(0, len(flat), chunk)]
    embedded = torch.cat([embed_prompts(text_tower, part, pretrained) for part in parts])  # (sum of counts, Ct)
    counts = torch.tensor([len(caps) for caps in captions])
    texts = torch.zeros(len(captions), int(counts.max()), embedded.shape[-1])
    for row, part in enumerate(embedded.split(counts.tolist())):
        texts[row, : len(part)] = part
    return texts, counts


def _tokenize_captions(
    text_tower: str, pretrained: str | None, captions: Sequence[list[str]]
) -> dict[str, torch.Tensor]:
    """(N, M, L) ``input_ids`` and ``attention_mask`` of each clip's captions by the tower's tokenizer (rows past a
    clip's count are all padding)."""
    from avlearn.registry import BACKBONES

    tower = BACKBONES.build(text_tower, pretrained=pretrained or None)
    flat = tower.tokenize([c for caps in captions for c in caps])  # (sum of counts, L) each
    counts = [len(caps) for caps in captions]
    out = {key: value.new_zeros(len(captions), max(counts), value.shape[1]) for key, value in flat.items()}
    for key, value in flat.items():
        for row, part in enumerate(value.split(counts)):
            out[key][row, : len(part)] = part  # (N, M, L): row = clip, then its captions
    return out


def _decode(cfg: Any, audio_pre: Any, items: list, split: str) -> SegmentTensors | LazySegments:
    from avlearn.data.segments import segment_split

    if not items:
        raise ConfigError(f"task: no {split} clip is left after selecting classes; check task.holdout / task.classes")
    return segment_split(items, cfg.data, audio_pre, desc=f"decoding {split}")


def captions_splits(cfg: Any, audio_pre: Any, words: bool = False) -> Splits:
    """Caption pre-training data: the clips of every class but ``task.holdout``, with their caption embeddings (and,
    with ``words``, their token ids by the text tower's tokenizer)."""
    root = dataset_root(cfg)
    readers, class_names = _read(root)
    descriptions = class_descriptions(root, class_names)
    held = class_positions("task.holdout", list(cfg.task.holdout), class_names)
    banned = [text for k in held for text in {class_names[k], descriptions[k]}]
    captions = _read_captions(root)
    kept = {split: [(item, captions[r.media]) for item, r in zip(reader.items, reader.records, strict=True)
                    if r.media in captions and r.targets["label"] not in held
                    and not any(word in c for c in captions[r.media] for word in banned)]
            for split, reader in readers.items()}  # fmt: skip
    clips = {split: _decode(cfg, audio_pre, [item for item, _ in kept[split]], split) for split in SPLITS}
    out = caption_segments(cfg, clips, {split: [caps for _, caps in kept[split]] for split in SPLITS}, words)
    info = DescribedInfo(class_names, readers["train"].segments, descriptions)
    return Splits(out["train"], out["val"], out["test"], info, root)


def caption_segments(cfg: Any, clips: dict[str, Any], captions: dict[str, list[list[str]]], words: bool
                     ) -> dict[str, CaptionSegments]:  # fmt: skip
    """Each split's clips with the embeddings (and, with ``words``, the token ids) of their captions by the text
    tower ``task.text`` (``captions[split]``: one list per clip, in the clips' order); training reads draw one."""
    pretrained = cfg.task.get("text_pretrained") or None
    per_clip = [caps for split in SPLITS for caps in captions[split]]
    texts, counts = _embed_captions(cfg.task.text, pretrained, per_clip)
    sizes = [len(captions[split]) for split in SPLITS]
    flat = _tokenize_captions(cfg.task.text, pretrained, per_clip) if words else {}
    tokens = [{key: value.split(sizes)[k] for key, value in flat.items()} or None for k in range(len(SPLITS))]
    parts = zip(SPLITS, texts.split(sizes), counts.split(sizes), tokens, strict=True)
    return {split: CaptionSegments(clips[split], t, c, draw=split == "train", tokens=w) for split, t, c, w in parts}


def benchmark_caption_segments(cfg: Any, splits: Splits, words: bool = False) -> Splits:
    """A caption benchmark's clip splits (``clips.clip_splits``: ``ClipSet``s, every caption of a clip in its
    ``references``) with the captions embedded (and, with ``words``, tokenised) as ``captions_splits`` does."""
    sets = {split: getattr(splits, split) for split in SPLITS}
    out = caption_segments(cfg, sets, {split: [s.references[i] for i in s.ids] for split, s in sets.items()}, words)
    return dataclasses.replace(splits, **out)


def _relabel(labels: np.ndarray, chosen: list[int], background: int) -> np.ndarray:
    """(S,) segment labels over the dataset's classes -> over ``chosen`` (background = ``len(chosen)``)."""
    mapping = {old: new for new, old in enumerate(chosen)} | {background: len(chosen)}
    return np.array([mapping[int(x)] for x in labels], dtype=labels.dtype)


def zeroshot_splits(cfg: Any, audio_pre: Any) -> Splits:
    """Zero-shot evaluation data: the clips whose event class is one of ``task.classes`` (all when empty)."""
    root = dataset_root(cfg)
    readers, class_names = _read(root)
    chosen = class_positions("task.classes", list(cfg.task.classes), class_names) or list(range(len(class_names)))
    out = {}
    for split, reader in readers.items():
        items = [(vid, path, _relabel(labels, chosen, len(class_names)))
                 for (vid, path, labels), r in zip(reader.items, reader.records, strict=True)
                 if r.targets["label"] in chosen]  # fmt: skip
        out[split] = _decode(cfg, audio_pre, items, split)
    names = tuple(class_names[k] for k in chosen)
    info = DescribedInfo(names, readers["train"].segments, class_descriptions(root, names))
    return Splits(out["train"], out["val"], out["test"], info, root)

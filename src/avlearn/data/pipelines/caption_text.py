"""Clips with their captions as WordPiece tokens -> the caption task's tensors.

The clips of an AVE-layout dataset with VALOR-style captions (AVSynth writes ``captions/txt_mapper.json``, keyed by
video id, for its event clips) are decoded into ten one-second segments (``avlearn.data.segments.decode_segments``);
every caption is tokenised once with the decoder's vocabulary (``avlearn.layers.text_decoder.wordpiece``:
``[CLS] words [SEP]``, padded to ``task.max_words``). A training read draws one of the clip's captions at random
(VALOR trains on every caption of a clip); an evaluation read gives the first, and the task scores its generated
caption against all of them (``TextInfo.references``); the decoder's output vocabulary can be the
WordPiece ids of the training captions (``TextInfo.vocab``), as captioning vocabularies are built from the training
captions.

``benchmark_caption_splits`` does the same for a caption benchmark named by ``data.benchmark`` (VALOR-32K, MSR-VTT,
the VALOR-layout readers; ``clips.clip_splits``): ``task=caption`` reads it when ``data.benchmark`` is one.
``benchmark_question_splits`` reads a VALOR-layout QA benchmark for ``task=qa_open``: one item per question, the
question tokenised as MUSIC-AVQA's (the same WordPiece, ``QUESTION_WORDS``), the answer an index into the answer
texts. Both take the splits ``clips.clip_splits`` read (the task composes the two pipelines).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from avlearn.data.pipelines import Splits, dataset_root
from avlearn.data.schema import DatasetInfo
from avlearn.data.segments import SegmentTensors
from avlearn.errors import DataError
from avlearn.layers.text_decoder import tokenize

SPLITS = ("train", "val", "test")
QUESTION_WORDS = 24  # WordPiece tokens per question, [CLS] and [SEP] included (as MUSIC-AVQA's: avqa.MAX_WORDS)


@dataclass(frozen=True)
class TextInfo(DatasetInfo):
    """``DatasetInfo`` plus the facts of a text-generating task: every clip's reference texts (clip id -> texts) and
    the WordPiece ids that occur in the training texts (the decoder's vocabulary with ``task.vocab=train``)."""

    references: dict[str, list[str]] = field(default_factory=dict)
    vocab: tuple[int, ...] = ()


def text_vocab(*ids: torch.Tensor) -> tuple[int, ...]:
    """The distinct token ids of the given id tensors, sorted."""
    return tuple(torch.unique(torch.cat([x.flatten() for x in ids])).tolist())


@dataclass
class CaptionClips:
    """Decoded clips with their tokenised captions.

    Attributes:
        clips: Frames and log-mels of N clips (the AVE layout's segments, or a benchmark's ``clips.ClipSet``).
        ids: (N, M, L) caption token ids, M the most captions of a clip (rows past a clip's count are padding).
        mask: (N, M, L) 1 = real token.
        counts: (N,) captions per clip (>= 1).
        draw: Pick a random caption at every read (training); otherwise the first.
    """

    clips: SegmentTensors | Any
    ids: torch.Tensor
    mask: torch.Tensor
    counts: torch.Tensor
    draw: bool = False

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        pick = int(torch.randint(int(self.counts[i]), ())) if self.draw else 0  # torch's global generator
        clip = self.clips[i]
        return {"frames": clip["frames"], "audio": clip["audio"], "id": clip["id"],
                "caption_ids": self.ids[i, pick], "caption_mask": self.mask[i, pick]}  # fmt: skip


@dataclass
class ClipQuestions:
    """Questions over decoded clips, one item per question (the items of ``avqa.AVQATensors``).

    Attributes:
        clips: The benchmark's ``clips.ClipSet``, one row per question (its video's frames and log-mels).
        input_ids: (Q, L) question tokens; ``attention_mask`` (Q, L), 1 = real token.
        answers: (Q,) int64 index of each answer in the answer texts (``DatasetInfo.class_names``).
        question_types: Q strings (the benchmark's name: VALOR's QA sets have no question types).
    """

    clips: Any
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answers: torch.Tensor
    question_types: list[str]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        return {"frames": clip["frames"], "audio": clip["audio"], "id": clip["id"], "input_ids": self.input_ids[i],
                "attention_mask": self.attention_mask[i], "answer": self.answers[i],
                "question_type": self.question_types[i]}  # fmt: skip


def _captions(root: Any) -> dict[str, list[str]]:
    from avlearn.data.datasets.base import find_file
    from avlearn.data.datasets.valor32k import read_txt_mapper

    return read_txt_mapper(find_file(root, ["captions/txt_mapper.json", "txt_mapper.json"], "captions txt_mapper"))


def _tokenised(captions: list[list[str]], max_words: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per clip, its captions as (N, M, L) ids and mask (zero-padded to M captions), and (N,) the counts."""
    counts = torch.tensor([len(caps) for caps in captions])
    tokens = tokenize([c for caps in captions for c in caps], max_words)
    ids = torch.zeros(len(captions), int(counts.max()), max_words, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (part, part_mask) in enumerate(
        zip(tokens["input_ids"].split(counts.tolist()), tokens["attention_mask"].split(counts.tolist()), strict=True)
    ):
        ids[row, : len(part)], mask[row, : len(part)] = part, part_mask
    return ids, mask, counts


def caption_splits(cfg: Any, audio_pre: Any) -> Splits:
    """The AVE-layout clips that have captions, per split, with their captions tokenised to ``task.max_words``."""
    from avlearn import register_all
    from avlearn.data.segments import decode_segments
    from avlearn.registry import DATASETS

    register_all()
    root = dataset_root(cfg)
    readers = {split: DATASETS.get("ave")(root, split) for split in SPLITS}
    captions = _captions(root)
    out, references = {}, {}
    for split, reader in readers.items():
        kept = [(item, captions[r.media]) for item, r in zip(reader.items, reader.records, strict=True)
                if r.media in captions]  # fmt: skip
        if not kept:
            raise DataError(f"{root}: no {split} clip has a caption in captions/txt_mapper.json")
        items, texts = [item for item, _ in kept], [caps for _, caps in kept]
        references.update({vid: caps for (vid, _, _), caps in zip(items, texts, strict=True)})
        clips = decode_segments(
            items, cfg.data.frame_size, audio_pre, workers=cfg.data.workers, desc=f"decoding {split}"
        )
        out[split] = CaptionClips(clips, *_tokenised(texts, cfg.task.max_words), draw=split == "train")
    vocab = text_vocab(out["train"].ids)
    info = TextInfo(tuple(readers["train"].classes), readers["train"].segments, references, vocab)
    return Splits(out["train"], out["val"], out["test"], info, root)


def benchmark_caption_splits(cfg: Any, splits: Splits) -> Splits:
    """A caption benchmark's clip splits (``clips.clip_splits``: ``ClipSet``s, every caption of a clip in its
    ``references``) with every caption tokenised to ``task.max_words``; each clip's references are all of them."""
    sets = {split: getattr(splits, split) for split in SPLITS}
    captions = {split: [s.references[i] for i in s.ids] for split, s in sets.items()}
    out = {split: CaptionClips(sets[split], *_tokenised(captions[split], cfg.task.max_words), draw=split == "train")
           for split in SPLITS}  # fmt: skip
    references = {vid: caps for split in SPLITS for vid, caps in zip(sets[split].ids, captions[split], strict=True)}
    info = TextInfo(splits.info.class_names, splits.info.segments, references, text_vocab(out["train"].ids))
    return dataclasses.replace(splits, **out, info=info)


def benchmark_question_splits(cfg: Any, splits: Splits) -> Splits:
    """A QA benchmark's clip splits (``clips.clip_splits``: one ``ClipSet`` row per question) as ``ClipQuestions``;
    the answer texts (``info.class_names``) are every split's distinct answers in the order first met."""
    sets = {split: getattr(splits, split) for split in SPLITS}
    answers = list(dict.fromkeys(a for clips in sets.values() for a in clips.targets["answer"]))
    index = {answer: k for k, answer in enumerate(answers)}
    out = {split: ClipQuestions(clips, **tokenize(clips.targets["question"], QUESTION_WORDS),
                                answers=torch.tensor([index[a] for a in clips.targets["answer"]], dtype=torch.long),
                                question_types=[cfg.data.benchmark] * len(clips))
           for split, clips in sets.items()}  # fmt: skip
    return dataclasses.replace(splits, **out, info=DatasetInfo(tuple(answers), splits.info.segments))

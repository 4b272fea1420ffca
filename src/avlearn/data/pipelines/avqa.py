"""MUSIC-AVQA questions -> the AVQA task's tensors: 10 segments of their video, the tokenised question, the answer.

Follows the MUSIC-AVQA inputs of the AVST code (Li et al., CVPR 2022; reused by DG-SCT ``AVQA/net_grd_avst``): ten
frames spread over the video and, for each, one second of audio; the question with its ``<Object>``-style slots filled
(``avlearn.data.datasets.music_avqa``); the answer as an index in the answer vocabulary.

What we changed, and why:

* Each video is decoded once and shared by all its questions (MUSIC-AVQA asks several questions per video), and
  ``AVQATensors.by_video`` serves one item per video with all its questions, so that training encodes each video
  once per step instead of once per question.
* Segment s's audio is the one-second window centred on frame s (the seed ships pre-cut 1-s waveforms whose cutting
  is undocumented), as a log-mel from ``avlearn.data.segments.segment_log_mel``; on a 10-second clip the windows are
  exactly the ten seconds.
* With ``data.store`` (a clip store of the videos, ``avlearn extract --fps 2``: frames at the segment centres of a
  10-second video) the videos are read from the store instead of decoded, into memory (no lazy samples yet).
* Questions are tokenised with a fixed WordPiece vocabulary (all-MiniLM-L6-v2's, shipped offline) instead of a word
  list rebuilt from ``avqa-train.json``: the ids do not depend on the training split, so a trained model needs nothing
  but its weights to answer new questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import Dataset

from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.data.datasets.media import Decode
from avlearn.data.pipelines import Splits, dataset_root, load_media
from avlearn.data.schema import DatasetInfo
from avlearn.data.segments import segment_log_mel
from avlearn.registry import DATASETS

SEGMENTS = 10
MAX_WORDS = 24  # WordPiece tokens per question, [CLS] and [SEP] included (MUSIC-AVQA's longest: 14 words)


@lru_cache(maxsize=1)
def question_tokenizer() -> Any:
    """The all-MiniLM-L6-v2 WordPiece tokenizer (uncased, 30522 tokens), loaded from its offline package."""
    from avlearn.backbones.base import load_tokenizer
    from avlearn.backbones.bert import minilm_folder

    return load_tokenizer(str(minilm_folder()))


def tokenize_questions(questions: Sequence[str], max_length: int = MAX_WORDS) -> dict[str, torch.Tensor]:
    """Questions -> ``input_ids`` and ``attention_mask`` (Q, ``max_length``), padded to ``max_length``."""
    batch = question_tokenizer()(list(questions), padding="max_length", truncation=True, max_length=max_length,
                                 return_tensors="pt")  # fmt: skip
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def segment_windows(wave: np.ndarray, sample_rate: int, segments: int) -> np.ndarray:
    """(N,) waveform -> (S, sample_rate): one second centred on the middle of each of S equal parts (clamped)."""
    duration = len(wave) / sample_rate
    centres = (np.arange(segments) + 0.5) * duration / segments
    starts = np.clip(np.round((centres - 0.5) * sample_rate).astype(int), 0, max(0, len(wave) - sample_rate))
    padded = np.pad(wave, (0, max(0, sample_rate - len(wave))))
    return np.stack([padded[s : s + sample_rate] for s in starts])


@dataclass
class AVQATensors:
    """Decoded questions over decoded videos.

    Attributes:
        ids: Question ids (as strings).
        video: (Q,) int64 index of each question's video in ``frames`` / ``audio``.
        frames: (V, S, H, W, 3) uint8.
        audio: (V, S, F, T) float32 normalised log-mel per segment.
        input_ids: (Q, L) int64 question tokens; ``attention_mask`` (Q, L), 1 = real token.
        answers: (Q,) int64 index in the answer vocabulary.
        question_types: Q strings ``"Group/Type"``.
        questions: Q question texts (slots filled).
        video_ids: V video ids.
    """

    ids: list[str]
    video: torch.Tensor
    frames: torch.Tensor
    audio: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answers: torch.Tensor
    question_types: list[str]
    questions: list[str]
    video_ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        v = int(self.video[i])
        return {"frames": self.frames[v], "audio": self.audio[v], "input_ids": self.input_ids[i],
                "attention_mask": self.attention_mask[i], "answer": self.answers[i], "video": self.video[i],
                "question_type": self.question_types[i], "id": self.ids[i]}  # fmt: skip

    def by_video(self) -> AVQAVideos:
        """The same questions with one item per video (all its questions): each video is encoded once per step."""
        return AVQAVideos(self)


class AVQAVideos(Dataset):
    """One item per video of an ``AVQATensors``: ``frames``, ``audio``, ``video ()`` and all its questions,
    ``input_ids`` / ``attention_mask (Q, L)`` and ``answer (Q,)``, Q the most questions of any video (shorter
    videos are padded with empty questions, answer -100; ``avlearn.tasks.avqa.split_batch`` drops them)."""

    def __init__(self, questions: AVQATensors) -> None:
        self.questions = questions
        order = torch.argsort(questions.video, stable=True)  # question indices grouped by video
        counts = torch.bincount(questions.video, minlength=len(questions.frames)).tolist()
        self.index = list(order.split(counts))  # V tensors of question indices
        self.width = max(counts)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def answers(self) -> torch.Tensor:
        """(Q,) the answers of every question (as ``AVQATensors.answers``; chance levels read them)."""
        return self.questions.answers

    @property
    def question_types(self) -> list[str]:
        """The type of every question (as ``AVQATensors.question_types``)."""
        return self.questions.question_types

    def __getitem__(self, v: int) -> dict:
        q, pad = self.questions, self.width - len(self.index[v])
        idx = self.index[v]
        return {"frames": q.frames[v], "audio": q.audio[v], "video": torch.tensor(v),
                "input_ids": F.pad(q.input_ids[idx], (0, 0, 0, pad)),  # (Q, L)
                "attention_mask": F.pad(q.attention_mask[idx], (0, 0, 0, pad)),
                "answer": F.pad(q.answers[idx], (0, pad), value=-100)}  # fmt: skip


def decode_avqa(dataset, audio: AudioPreprocess, workers: int = 1) -> AVQATensors:  # noqa: ANN001 (a MUSIC-AVQA reader)
    """Decode every video of a MUSIC-AVQA reader once (its ``decode`` sets frames, size, rate) and its questions."""
    first = {}
    for record in dataset.records:
        first.setdefault(record.media, record)
    video_ids = list(first)
    loaded = load_media(dataset.media, list(first.values()), dataset.decode, workers, f"decoding {dataset.split}")
    rate = dataset.decode.sample_rate
    frames = torch.from_numpy(np.stack([x["frames"] for x in loaded]))  # (V, S, H, W, 3)
    windows = torch.from_numpy(np.stack([segment_windows(x["wave"], rate, SEGMENTS) for x in loaded]))  # (V, S, sr)
    mels = torch.cat([segment_log_mel(chunk, 1, audio)[:, :, 0] for chunk in windows.split(64)])  # (V, S, F, T)
    records = dataset.records
    tokens = tokenize_questions([r.targets["question"] for r in records])
    index = {vid: i for i, vid in enumerate(video_ids)}
    return AVQATensors(
        ids=[r.id for r in records],
        video=torch.tensor([index[r.media] for r in records], dtype=torch.long),
        frames=frames,
        audio=mels,
        input_ids=tokens["input_ids"],
        attention_mask=tokens["attention_mask"],
        answers=torch.tensor([r.targets["answer"] for r in records], dtype=torch.long),
        question_types=[r.targets["question_type"] for r in records],
        questions=[r.targets["question"] for r in records],
        video_ids=video_ids,
    )


def avqa_splits(
    root: str | Path, frame_size: int, audio: AudioPreprocess, workers: int = 1, store: str | None = None
) -> dict:
    """The train/val/test ``AVQATensors`` of MUSIC-AVQA under ``root``, and ``"answers"``: the answer vocabulary.
    ``store``: a clip store of the videos (``avlearn extract``) read instead of decoding them, into memory."""
    reader = DATASETS.get("music_avqa")
    decode = Decode(frames=SEGMENTS, seconds=None, size=frame_size, sample_rate=audio.sample_rate)
    readers = {s: reader(root, s, decode=decode, media=store) for s in ("train", "val", "test")}
    return {**{s: decode_avqa(r, audio, workers) for s, r in readers.items()}, "answers": readers["train"].classes}


def avqa_pipeline(cfg: DictConfig, audio_pre: AudioPreprocess) -> Splits:
    """MUSIC-AVQA: questions over 10-segment videos; the head's classes are the answer vocabulary. Training items are
    whole videos with all their questions (``train.batch_size`` counts videos; each is encoded once per step);
    validation and test items are questions, in the annotation order."""
    root = dataset_root(cfg)
    s = avqa_splits(root, cfg.data.frame_size, audio_pre, cfg.data.workers, cfg.data.get("store") or None)
    return Splits(s["train"].by_video(), s["val"], s["test"], DatasetInfo(tuple(s["answers"])), root)

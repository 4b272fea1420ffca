"""A trained AVE model on one real video file: its inputs decoded as in training, and the event timeline.

The window ``[start, start + S)`` seconds (S = the model's segments, 10 for AVE) is decoded exactly as the
training data is (``avlearn.data.segments``: the frame nearest each segment's centre, the log-mel of the whole
window cut into S pieces), the task predicts a class per segment, and consecutive segments of the same class are
merged into events. A file shorter than the window is an error (``MediaError``), not a padded guess, unless
``short='pad'`` (``--short pad``); a video track ending before its audio holds its last frame (``read_clip``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from avlearn.errors import ConfigError


def video_batch(
    path: str | Path, cfg: DictConfig, segments: int, start: float = 0.0, missing_audio: str = "error",
    short: str = "error",
) -> dict[str, torch.Tensor]:  # fmt: skip
    """``frames (1, S, H, W, 3)`` uint8 and ``audio (1, S, F, T)`` of one video, as ``decode_segments`` makes them.

    ``missing_audio`` and ``short`` are ``read_clip``'s policies (``avlearn predict --missing-audio/--short``).
    """
    from avlearn.build import audio_preprocess
    from avlearn.data.segments import segment_log_mel
    from avlearn.io import read_clip

    pre = audio_preprocess(cfg)
    clip = read_clip(path, timestamps=start + np.arange(segments) + 0.5, size=cfg.data.frame_size,
                     sample_rate=pre.sample_rate, duration=float(segments), start=start,
                     missing_audio=missing_audio, short=short)  # fmt: skip
    frames = torch.from_numpy(clip.frames)[None]  # (1, S, H, W, 3)
    audio = segment_log_mel(torch.from_numpy(clip.wave)[None], segments, pre)  # (1, S, F, T)
    return {"frames": frames, "audio": audio}


def events(labels: list[int], probs: list[float], class_names: tuple[str, ...], start: float = 0.0) -> list[dict]:
    """Runs of equal non-background labels -> ``{"class", "label", "start", "end", "probability"}`` (run mean)."""
    out, s = [], 0
    for c, run in itertools.groupby(labels):
        n = len(list(run))
        if c != len(class_names):
            out.append({"class": c, "label": class_names[c], "start": start + s, "end": start + s + n,
                        "probability": float(np.mean(probs[s : s + n]))})  # fmt: skip
        s += n
    return out


@torch.no_grad()
def predict_timeline(
    task: nn.Module, cfg: DictConfig, path: str | Path, start: float = 0.0, **media: str
) -> dict[str, Any]:
    """The AVE timeline of ``path``: per segment its class and probability, and the merged events.

    ``media``: ``missing_audio`` and ``short``, as ``video_batch`` takes them.
    """
    names = tuple(task.info.class_names)
    batch = video_batch(path, cfg, task.info.segments, start, **media)
    device = next(task.parameters()).device
    out = task.predict({k: v.to(device) for k, v in batch.items()})
    if "segment_labels" not in out:
        raise ConfigError(f"predict draws AVE event timelines; task '{cfg.task.name}' predicts {', '.join(out)}")
    labels = out["segment_labels"][0].tolist()  # (S,)
    probs = out["probs"][0].gather(-1, out["segment_labels"][0][:, None])[:, 0].tolist()  # (S,) of the chosen class
    segments = [
        {"start": start + s, "end": start + s + 1, "class": c, "label": "background" if c == len(names) else names[c],
         "probability": p}
        for s, (c, p) in enumerate(zip(labels, probs, strict=True))
    ]  # fmt: skip
    return {"video": str(path), "segments": segments, "events": events(labels, probs, names, start)}


@torch.no_grad()
def predict_text(
    task: nn.Module, cfg: DictConfig, path: str | Path, start: float = 0.0, question: str | None = None
) -> dict[str, Any]:
    """The generated text of a caption or open-QA task for ``path``: ``{"video", "caption"}`` or, with ``question``,
    ``{"video", "question", "answer"}``. The window is decoded as for AVE (S one-second segments from ``start``)."""
    from avlearn.layers.text_decoder import tokenize

    batch = video_batch(path, cfg, task.info.segments, start)
    if question is not None:
        tokens = tokenize([question], 64)  # (1, 64): [CLS] question [SEP], padded
        batch = {**batch, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
                 "answer": torch.zeros(1, dtype=torch.long)}  # fmt: skip
    device = next(task.parameters()).device
    out = task.predict({k: v.to(device) for k, v in batch.items()})
    if question is not None and "answer_text" in out:
        return {"video": str(path), "question": question, "answer": out["answer_text"][0]}
    if question is None and "caption" in out:
        return {"video": str(path), "caption": out["caption"][0]}
    wants = "an open-QA task (qa_open)" if question is not None else "a caption task (caption)"
    raise ConfigError(f"this predict needs {wants}; task '{cfg.task.name}' predicts {', '.join(out)}")

"""Structured (dataclass) schemas of the run config and of the shared config groups.

The run config has five Hydra groups — ``task``, ``method``, ``backbone``, ``data``, ``train`` — and a few
top-level keys. ``backbone``, ``data`` and ``train`` have one schema each (below); ``task`` and ``method`` options
are validated against the ``Config`` dataclass of the registered task/method of the same name, so a new method
brings its own typed schema. Unknown keys and wrongly typed values are errors at composition time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackboneConfig:
    """Which encoders feed the method: registered backbone names per modality, weights and freezing."""

    name: str = "small_cnn"
    visual: str = "cnn_visual_small"
    audio: str = "cnn_audio_small"
    text: str | None = None
    pretrained: str | None = None  # a local folder or a cached Hugging Face id; None = random init
    freeze: str = "none"  # none | all | all_but_norm


@dataclass
class DataConfig:
    """Where the clips come from and how they are turned into tensors.

    ``name: avsynth`` generates (or reuses) AVSynth under ``root`` — by default a cache folder keyed by the
    AVSynth parameters (``clips`` ... ``avqa_clips``; the AVSBench and AVQA subsets are only rendered for the
    tasks that read them). ``frame_size``, ``n_mels`` and ``hop_ms`` shape the model inputs.
    """

    name: str = "avsynth"
    root: str | None = None
    clips: int = 400
    synth_seed: int = 0
    num_classes: int = 10
    size: int = 64
    seconds: int = 10
    fps: int = 4
    sample_rate: int = 16000
    avs_clips: int = 0
    avqa_clips: int = 0
    frame_size: int = 64
    n_mels: int = 64
    hop_ms: int = 20
    workers: int = 2


@dataclass
class TrainConfig:
    """The optimisation recipe: epochs, batch, AdamW, warmup + cosine schedule, precision, selection."""

    name: str = "default"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    grad_accum: int = 1
    precision: str = "fp32"  # fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 = all cores
    select_on: str = "val"  # model selection split; never the test split
    checkpoint: bool = True


@dataclass
class RunConfig:
    """The whole run: the five groups plus the run-level keys."""

    task: Any = field(default_factory=dict)
    method: Any = field(default_factory=dict)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    shots: int = 0  # few-shot: training examples per class (0 = the whole training split)
    out: str = "runs"  # run folders are created under this
    name: str = ""  # run name; default "<task>-<method>"

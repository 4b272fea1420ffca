"""Structured (dataclass) schemas of the run config and of the shared config groups.

The run config has five Hydra groups — ``task``, ``method``, ``backbone``, ``data``, ``train`` — and a few
top-level keys. ``backbone``, ``data`` and ``train`` have one schema each (below); ``task`` and ``method`` options
are validated against the ``Config`` dataclass of the registered task/method of the same name, so a new method
brings its own typed schema. Unknown keys and wrongly typed values are errors at composition time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def choice(default: str, options: tuple[str, ...], pattern: str | None = None) -> Any:
    """A string field that must be one of ``options`` (or match the regex ``pattern``); checked by ``check_choices``
    when a run config is composed, so a bad value is a one-line error listing the valid ones."""
    return field(default=default, metadata={"choices": options, "pattern": pattern})


def check_choices(schema: type, values: Any, where: str) -> None:
    """Raise a ConfigError for the first ``choice`` field of ``schema`` whose value in ``values`` is not valid."""
    import re

    from avlearn.errors import ConfigError

    for f in fields(schema):
        options = f.metadata.get("choices")
        value = getattr(values, f.name, None) if not isinstance(values, dict) else values.get(f.name)
        if options is None or value in options:
            continue
        pattern = f.metadata.get("pattern")
        if pattern and isinstance(value, str) and re.fullmatch(pattern, value):
            continue
        raise ConfigError(f"{where}.{f.name}={value!r} is not valid; expected one of: {', '.join(options)}")


@dataclass
class BackboneConfig:
    """Which towers feed the method: registered backbone names per modality, weights and freezing.

    ``visual`` and ``audio`` are required, ``text`` optional (None: no text tower). ``features`` in a slot reads that
    modality's cached features from ``store``, a folder made by ``avlearn extract --features``, and runs no network.
    """

    name: str = "small_cnn"
    visual: str = "cnn_visual_small"
    audio: str = "cnn_audio_small"
    text: str | None = None  # a registered text backbone (e.g. minilm_l6, bert_tiny), built and given to the method
    pretrained: str | None = None  # visual and audio weights: a local folder or a cached Hugging Face id; None = random
    visual_pretrained: str | None = None  # the visual tower's weights; None = ``pretrained``
    audio_pretrained: str | None = None  # the audio tower's weights; None = ``pretrained``
    text_pretrained: str | None = None  # the text tower's weights (and tokenizer); None = the tower's default
    store: str | None = None  # the feature store that ``features`` towers read
    freeze: str = choice("none", ("none", "all", "all_but_norm"))


# The readers a generic (clip-level) task can read, named by ``data.benchmark``; the table behind it is
# ``avlearn.data.pipelines.clips.BENCHMARKS`` (a test checks that the two agree).
BENCHMARKS = ("vggsound", "audioset", "esc50", "ucf101", "coop", "imagenet_esc", "imagenet_esc_image",
              "valor32k", "valor1m", "msrvtt", "vggsound_avel40k", "valor_qa", "msrvtt_std", "didemo", "activitynet",
              "lsmdc", "vatex", "vatex_cap", "msvd", "audiocaps", "audiocaps_ret", "clotho", "msrvtt_qa", "msvd_qa",
              "tgif_qa", "activitynet_qa", "music_avqa_valor")  # fmt: skip


@dataclass
class DataConfig:
    """Where the clips come from and how they are turned into tensors.

    ``name: avsynth`` generates (or reuses) AVSynth under ``root`` — by default a cache folder keyed by the
    AVSynth parameters (``clips`` ... ``avqa_clips``). Only the part the task reads is rendered: ``clips`` event
    clips (AVE, AVVP, few-shot), ``avs_clips`` AVSBench S4 and MS3 clips each, ``avqa_clips`` AVQA videos (-1: as
    many as ``clips``). Another ``name`` reads the real dataset of the task under ``root``. ``frame_size``,
    ``n_mels`` and ``hop_ms`` shape the model inputs; ``flip`` mirrors AVS training clips left-right.
    ``store``, ``preload`` and ``preload_gb``: see below and docs/media.md ("Lazy samples").

    Generic clip-level tasks (classification, retrieval, captioning, QA) read the reader ``benchmark`` names, and
    on AVSynth its part: event clips (``clips``), ``sound_clips`` ESC-50 sounds or ``image_clips`` CoOp images
    (-1: as many as ``clips``); ``fold`` is the test fold of ESC-50 / ImageNet-ESC (1-5) and UCF101 (1-3);
    ``audioset_train`` the AudioSet training list(s). See docs/datasets.md ("Clip pipelines").
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
    avs_clips: int = -1
    avqa_clips: int = -1
    benchmark: str = choice("vggsound", BENCHMARKS)
    sound_clips: int = -1
    image_clips: int = -1
    sound_background: float = 0.0  # AVSynth's sounds: probability of a background sound of another class (0-1)
    # AVSynth's event clips: ``half`` (one seen-only or heard-only distractor in half the clips) or ``both`` (a
    # seen-only and a heard-only distractor of two other classes in every clip: one modality alone is right half the
    # time; docs/avsynth.md)
    event_distractors: str = choice("half", ("half", "both"))
    # AVSynth's event clips: this many more, all test clips (the first ``clips`` keep their 80/10/10 splits), for a
    # more precise test score at the same training split (docs/avsynth.md, "Splits")
    extra_test_clips: int = 0
    fold: int = 1
    audioset_train: str = choice("balanced", ("balanced", "unbalanced", "full"))
    frame_size: int = 64
    n_mels: int = 64
    hop_ms: int = 20
    flip: bool = True
    workers: int = 2
    # Lazy samples (avlearn.data.lazy): ``store`` reads the clips from a clip store made by ``avlearn extract``
    # instead of decoding the videos; ``preload`` holds a split in memory (``auto``: when its decoded size fits in
    # ``preload_gb`` GiB; ``true``/``false``: always/never), else each sample is decoded in the loader's workers.
    store: str | None = None
    preload: str = "auto"
    preload_gb: float = 4.0


@dataclass
class TrainConfig:
    """The optimisation recipe: length, batch, optimizer and parameter groups, schedule, precision, validation and
    selection, scale-out, checkpoints. Every key is described in docs/training.md ("The ``train`` keys").

    ``batch_size`` is the global batch of one optimizer step: over all processes and all ``grad_accum``
    micro-batches (each process runs ``batch_size / (processes * grad_accum)`` samples per forward), so changing
    the number of processes or the accumulation keeps the optimisation the same.
    """

    name: str = "default"
    # Length: ``epochs`` passes over the training split, or ``steps`` optimizer steps when > 0 (then training stops
    # after ``steps`` steps, mid-epoch if need be, and ``epochs`` is not read; the schedule spans ``steps``).
    epochs: int = 20
    steps: int = 0
    batch_size: int = 32
    grad_accum: int = 1  # micro-batches per process per optimizer step
    drop_last: bool = False  # drop each epoch's partial last global batch (e.g. a probe's batch norm needs >= 2)
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    # Optimizer (engine/optim.py): adamw / adam (betas, eps), sgd (momentum, nesterov), lars (momentum, lars_eta).
    optimizer: str = choice("adamw", ("adamw", "adam", "sgd", "lars"))
    lr: float = 2e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    lars_eta: float = 0.001  # LARS trust coefficient
    # Parameter groups: {pattern: multiplier} (module name, glob or regex; first match wins; 0 = not trained),
    # layer-wise lr decay (1.0 = off; needs the model's layer_id/num_layers), no weight decay on biases, norms,
    # embeddings and learned tokens.
    lr_mult: dict[str, float] = field(default_factory=dict)
    # {pattern: fraction}: those parameters' lr multiplier rises 0 -> 1 by a half cosine over that fraction of the
    # run's steps (DeepAVFusion holds its pretrained towers back so); patterns as lr_mult; not every parameter.
    lr_ramp: dict[str, float] = field(default_factory=dict)
    layer_decay: float = 1.0
    no_decay: bool = True
    # Schedule, per optimizer step: linear warmup over warmup_epochs, then cosine (to min_lr_ratio), step
    # (x step_gamma every step_every epochs), linear (to 0) or constant.
    schedule: str = choice("cosine", ("cosine", "step", "linear", "constant"))
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0
    step_every: float = 1.0
    step_gamma: float = 0.1
    # fp16: autocast + gradient scaler (steps with inf/nan gradients are skipped); bf16: autocast; trained
    # parameters and optimizer state stay fp32 in both.
    precision: str = choice("fp32", ("fp32", "bf16", "fp16"))
    frozen_bf16: bool = True  # bf16: store frozen Linear/conv weights in bf16 (autocast's numbers, half the memory)
    # Validation and selection: validate every val_every steps (0 = at each epoch end, -1 = never); checkpoint/
    # keeps the best validation (select=best) or the last state (select=last); stop after `patience`
    # validations without improvement (0 = never); score the test split at the end (test).
    val_every: int = 0
    select: str = choice("best", ("best", "last"))
    patience: int = 0
    test: bool = True
    device: str = choice("auto", ("auto", "cpu", "cuda", "cuda:N"), pattern=r"cuda:\d+")  # cuda: cuda:LOCAL_RANK
    threads: int = 0  # torch CPU threads; 0 = all cores
    checkpoint: bool = True  # write checkpoint/ (selected model) and last/ (resumable)
    strategy: str = choice("ddp", ("ddp", "fsdp"))  # how several processes share the model (one process: neither)
    fsdp_min_params: int = 1_000_000  # fsdp: shard every sub-module holding at least this many parameters
    compile: bool = False  # torch.compile the training forward
    ema: float = 0.0  # decay of an exponential moving average of the weights, used for selection; 0 = off
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPUs)
    log_every: int = 10  # optimizer steps between metrics.jsonl lines and progress-bar updates
    save_every: int = 0  # optimizer steps between mid-epoch last/ checkpoints; 0 = at epoch ends only
    loader_workers: int = 0  # DataLoader worker processes per rank
    init_from: str = ""  # weights to start from: a run folder, checkpoint folder, .safetensors or .pt/.pth file
    init_only: str = ""  # load only the weights of this sub-module from init_from (e.g. method); "" = all of them


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
    resume: str = ""  # "true": continue the newest run of out/name from its last/ checkpoint; or a run folder

"""The contract between methods and tasks: ``AVFeatures``, the ``Method`` protocol, and the pairing check.

A method turns a batch's media tensors into ``AVFeatures``; a task head consumes them. The contract:

* **Towers.** A method is built as ``Method(cfg, visual, audio, text=None)`` from registered backbones (towers):
  a visual and an audio tower and an optional text tower (``backbone.text``). A tower may be the ``features``
  backbone (``avlearn.backbones.features``), which passes precomputed features from an ``avlearn extract`` store
  through: the batch then carries ``visual_features`` / ``audio_features`` instead of ``frames`` / ``audio``.
* **What it produces.** ``produces`` names the ``AVFeatures`` fields the method sets (``FIELDS``); a class lists
  what every instance gives, an instance may add fields that depend on its towers (a visual tower with a token
  grid adds ``grid`` and ``visual_pyramid``; a text tower adds ``text`` and ``text_pooled``).
* **Widths, before any forward.** ``dims`` maps every produced field except ``grid`` to its width, so that task
  heads size themselves at construction: an int ``C`` for a tensor field; a tuple ``(C_1, ..., C_L)`` for
  ``visual_pyramid``; for ``layers`` a dict modality -> tuple of per-layer widths; for ``codes`` a dict
  modality -> codebook size. Heads read widths from ``dims`` only, never from a tower's attributes.
* **Segments.** Audio and visual segment counts ``S_a`` and ``S_v`` may differ (e.g. several frames per second of
  audio); a head that pairs them segment by segment checks that they are equal (``tasks.base.paired_segments``).
* **Requests.** Per-layer tokens cost memory, so a method listing ``layers`` in ``produces`` returns them only when
  a task asks: ``method(batch, layers=True)``.
* **Method-side losses.** ``AVFeatures.losses`` holds the method's own loss terms (VQ commitment, masked
  reconstruction, mutual information ...): the task adds their sum to its loss and reports each term
  (``tasks.base.add_method_losses``), so the engine logs each one.

``check_pairing`` refuses, at build time, a task that needs a field the method does not produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from avlearn.errors import ConfigError

FIELDS = ("audio", "audio_pooled", "visual", "visual_pooled", "grid", "visual_pyramid", "fused", "text",
          "text_pooled", "layers", "codes")  # fmt: skip

# A field's width in ``Method.dims``: C, per-level widths (visual_pyramid), or per-modality ones (layers, codes).
Width = int | tuple[int, ...] | dict[str, int] | dict[str, tuple[int, ...]]


@dataclass
class AVFeatures:
    """Audio-visual(-text) features; B batch, S_a / S_v audio / visual segments, N tokens, C channels, L text length.

    Attributes:
        audio: (B, S_a, Na, Ca) audio tokens per segment.
        audio_pooled: (B, S_a, Ca).
        visual: (B, S_v, Nv, Cv) visual tokens per segment, laid out on ``grid`` when there is one.
        visual_pooled: (B, S_v, Cv).
        grid: (h, w) with h * w = Nv, for visual tokens on a 2-D grid; None for token sequences (a CLS token) and
            precomputed features.
        visual_pyramid: one (B, S_v, C_i, H_i, W_i) feature map per visual stage, finest first (dense tasks such as
            segmentation decode from it), else None.
        fused: (B, S, Nf, Cf) tokens of methods that fuse early or quantise, else None.
        text: (B, L, Ct) text tokens, else None; ``text_pooled`` (B, Ct).
        layers: per-layer tokens when a task asked for them (``method(batch, layers=True)``): modality ("audio",
            "visual", "fused") -> one (B, S, N_l, C_l) tensor per layer, first layer first; else None.
        codes: discrete codes of quantising methods: modality -> (B, S) or (B, S, N) long indices into a codebook
            of ``dims["codes"][modality]`` entries; else None.
        losses: the method's own loss terms, name -> scalar tensor (empty for most methods); the task adds them.
    """

    audio: torch.Tensor | None = None
    audio_pooled: torch.Tensor | None = None
    visual: torch.Tensor | None = None
    visual_pooled: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    visual_pyramid: tuple[torch.Tensor, ...] | None = None
    fused: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_pooled: torch.Tensor | None = None
    layers: dict[str, tuple[torch.Tensor, ...]] | None = None
    codes: dict[str, torch.Tensor] | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)

    def produced(self) -> tuple[str, ...]:
        """Names of the fields that are set."""
        return tuple(f for f in FIELDS if getattr(self, f) is not None)


@runtime_checkable
class Method(Protocol):
    """What every registered method defines (an ``nn.Module``; ``avlearn.build.build_task`` builds it).

    Required:
        Config: the dataclass schema of its ``method/<name>.yaml`` (``cfg`` below is an instance).
        produces: the ``AVFeatures`` fields it sets (see the module docstring; an instance may add some).
        dims: every produced field's width except ``grid`` (``Width``), known right after construction.
        __init__(cfg, visual, audio, text=None): built from its towers.
        forward(batch) -> AVFeatures: ``batch`` holds ``frames (B, S_v, H, W, 3)`` uint8 and ``audio (B, S_a, F,
            T)`` log-mels (or ``visual_features`` / ``audio_features`` for ``features`` towers, and ``text_ids`` /
            ``text_mask (B, L)`` for a text tower). A method that produces ``layers`` takes ``layers=True``.

    Optional:
        loss_terms: the names of the terms its forward puts in ``AVFeatures.losses`` (self-supervised methods; empty
            or absent otherwise). ``task=pretrain`` trains on these terms alone and refuses a method without any.
        encode_text(input_ids, attention_mask) -> (text (B, L, Ct), text_pooled (B, Ct)): methods with a text tower.
        layer_id(param_name) -> int and num_layers() -> int: the depth of each parameter (0 embeddings, 1 ..
            num_layers() the blocks, num_layers() + 1 the rest), for layer-wise learning rate decay (the engine scales
            a parameter's lr by ``decay ** (num_layers() + 1 - layer_id(name))``; the classify task passes them on;
            ``train.layer_decay`` < 1 without them is a ConfigError).
    """

    Config: ClassVar[type]
    produces: tuple[str, ...]
    dims: dict[str, Width]

    def forward(self, batch: dict[str, torch.Tensor]) -> AVFeatures: ...


def check_pairing(method_name: str, produces: tuple[str, ...], task_name: str, needs: tuple[str, ...]) -> None:
    """Raise a ConfigError naming both sides if ``task_name`` needs a field ``method_name`` does not produce."""
    missing = [f for f in needs if f not in produces]
    if missing:
        raise ConfigError(
            f"task '{task_name}' needs AVFeatures.{', '.join(missing)}, which method '{method_name}' does not "
            f"produce (it produces: {', '.join(produces)}); pick another method or task"
        )


def text_features(tower: nn.Module | None, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``text`` (B, L, Ct) and ``text_pooled`` (B, Ct) of the batch's ``text_ids`` / ``text_mask`` by a text tower;
    empty without a tower or when the batch carries no text."""
    if tower is None or "text_ids" not in batch:
        return {}
    inputs = {"input_ids": batch["text_ids"], "attention_mask": batch.get("text_mask")}
    tokens = tower.forward_features(**inputs)  # (B, L, Ct)
    return {"text": tokens, "text_pooled": tower.pool(tokens, **inputs)}  # (B, Ct)


@torch.no_grad()
def stage_shapes(backbone: nn.Module) -> tuple[tuple[int, bool], ...]:
    """(width, on a 2-D token grid) of each stage output of ``backbone``; empty for a tower without stages
    (precomputed features). The grid stages' widths are those of ``visual_pyramid``, all of them those of ``layers``.

    Runs the stage loop once on the backbone's dummy inputs in eval mode (batch-norm statistics stay untouched) and
    with the random state restored (building a method draws no random numbers here).
    """
    if getattr(backbone, "num_stages", 0) == 0:
        return ()
    was_training = backbone.training
    backbone.eval()
    with torch.random.fork_rng(devices=[]):
        hidden, shapes = backbone.embed(**backbone.dummy_inputs(1)), []
        for i in range(backbone.num_stages):
            hidden = backbone.run_stage(i, hidden)
            shapes.append((hidden.tokens.shape[-1], hidden.grid is not None and len(hidden.grid) == 2))
    backbone.train(was_training)
    return tuple(shapes)

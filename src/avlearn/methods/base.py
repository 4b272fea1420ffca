"""The contract between methods and tasks: ``AVFeatures``, and how a method is built and paired with a task.

A method turns a batch's media tensors into ``AVFeatures``; a task head consumes them. A task declares the fields
it needs (``Task.needs``); ``check_pairing`` refuses, at build time, a method that does not produce one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avlearn.errors import ConfigError

FIELDS = ("audio", "audio_pooled", "visual", "visual_pooled", "visual_pyramid", "fused", "text", "text_pooled")


@dataclass
class AVFeatures:
    """Audio-visual(-text) features; B batch, S segments, N tokens, C channels, L text length.

    Attributes:
        audio: (B, S, Na, Ca) audio tokens per segment.
        audio_pooled: (B, S, Ca).
        visual: (B, S, Nv, Cv) visual tokens per segment, laid out on ``visual_grid`` (h, w).
        visual_pooled: (B, S, Cv).
        visual_grid: (h, w) with h * w = Nv.
        visual_pyramid: one (B, S, C_i, H_i, W_i) feature map per backbone stage, finest first (dense tasks
            such as segmentation decode from it), else None.
        fused: (B, S, Nf, Cf) tokens of methods that fuse early or quantise, else None.
        text: (B, L, Ct) text tokens, else None; ``text_pooled`` (B, Ct).
    """

    audio: torch.Tensor | None = None
    audio_pooled: torch.Tensor | None = None
    visual: torch.Tensor | None = None
    visual_pooled: torch.Tensor | None = None
    visual_grid: tuple[int, int] | None = None
    visual_pyramid: tuple[torch.Tensor, ...] | None = None
    fused: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_pooled: torch.Tensor | None = None

    def produced(self) -> tuple[str, ...]:
        """Names of the fields that are set."""
        return tuple(f for f in FIELDS if getattr(self, f) is not None)


def check_pairing(method_name: str, produces: tuple[str, ...], task_name: str, needs: tuple[str, ...]) -> None:
    """Raise a ConfigError naming both sides if ``task_name`` needs a field ``method_name`` does not produce."""
    missing = [f for f in needs if f not in produces]
    if missing:
        raise ConfigError(
            f"task '{task_name}' needs AVFeatures.{', '.join(missing)}, which method '{method_name}' does not "
            f"produce (it produces: {', '.join(produces)}); pick another method or task"
        )

"""Text prompts as fixed class embeddings: texts -> L2-normalised vectors of a frozen, registered text tower.

Used by the prompt classifiers (few-shot, zero-shot) for their class prompts and by the caption pipeline for its
captions, so that both land in the same text space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from avlearn.registry import BACKBONES


@torch.no_grad()
def embed_prompts(text_tower: str, prompts: Sequence[str], pretrained: str | None = None) -> torch.Tensor:
    """(P, Ct) L2-normalised embeddings of ``prompts`` by the registered text backbone ``text_tower``.

    Towers of a joint space (CLIP, CLAP) give their projected embedding, others (MiniLM, BERT) their pooled one.
    """
    tower = BACKBONES.build(text_tower, pretrained=pretrained or None).eval()
    embedded = tower(**tower.tokenize(list(prompts)))  # (P, C)
    if getattr(tower, "proj_dim", None):
        embedded = tower.project(embedded)  # (P, Ct)
    return F.normalize(embedded, dim=-1)

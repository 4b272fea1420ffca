"""The ``features`` tower: precomputed backbone features passed through, so a method or head trains on a cache.

``avlearn extract --features`` (``avlearn.data.features``) stores, per clip, a visual and/or audio backbone's
per-second features: the pooled embedding ``(S, C)`` or the tokens ``(S, N, C)``. A method built with
``backbone.visual=features`` (or ``audio``) and ``backbone.store=<that store>`` gets a :class:`FeatureTower` in that
slot: it runs no network; the batch carries the cached features as ``visual_features`` / ``audio_features``
``(B, S, C)`` or ``(B, S, N, C)``, and the tower hands them over as tokens ``(B, S, N, C)`` (pooled features as one
token, ``N = 1``). Cross-Modal Adaptation and CMG train this way: the frozen encoders run once, at extraction.

The tower's width and output kind come from the store's settings (``avlearn.build`` reads them), so heads are sized
before any batch is seen. It has no stages, no token grid and no parameters: methods that work inside the towers'
blocks (DG-SCT's adapters) refuse it.
"""

from __future__ import annotations

import torch
from torch import nn

from avlearn.backbones.base import FREEZE_POLICIES
from avlearn.errors import ConfigError
from avlearn.registry import BACKBONES

MODALITIES = ("visual", "audio")


class FeatureTower(nn.Module):
    """Precomputed features of one modality, read from the batch key ``<modality>_features``.

    Args:
        modality: ``"visual"`` or ``"audio"``: the tower slot, and which stored array the batch carries.
        num_features: C, the stored width.
        tokens: the store holds tokens ``(S, N, C)`` (else pooled ``(S, C)``).
    """

    num_stages = 0  # nothing to run between blocks

    def __init__(self, modality: str, num_features: int, tokens: bool) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ConfigError(f"features tower: modality {modality!r} is not one of {', '.join(MODALITIES)}")
        self.modality, self.num_features, self.tokens = modality, num_features, tokens
        self.batch_key = f"{modality}_features"
        self.freeze_policy = "none"

    def freeze(self, policy: str = "all") -> FeatureTower:
        """Nothing to freeze (no parameters); the policy is checked and recorded."""
        if policy not in FREEZE_POLICIES:
            raise ConfigError(f"unknown freeze policy '{policy}'; expected one of {', '.join(FREEZE_POLICIES)}")
        self.freeze_policy = policy
        return self

    def read(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's cached features as float32 tokens ``(B, S, N, C)``."""
        if self.batch_key not in batch:
            raise ConfigError(f"backbone.{self.modality}=features: the batch has no '{self.batch_key}' (the cached "
                              f"features); it has {', '.join(batch)}")  # fmt: skip
        features = batch[self.batch_key].float()
        expected = 4 if self.tokens else 3
        if features.dim() != expected or features.shape[-1] != self.num_features:
            layout = "(B, S, N, C)" if self.tokens else "(B, S, C)"
            raise ConfigError(f"{self.batch_key}: shape {tuple(features.shape)}, expected {layout} with C = "
                              f"{self.num_features} (the store's width)")  # fmt: skip
        return features if self.tokens else features.unsqueeze(2)  # (B, S, C) -> (B, S, 1, C)


@BACKBONES.register("features")
def features(modality: str = "visual", num_features: int = 0, tokens: bool = False) -> FeatureTower:
    """Precomputed features from an ``avlearn extract --features`` store (``backbone.store``); runs no network."""
    if num_features <= 0:
        raise ConfigError("backbone 'features' needs the store's width: set backbone.store=<a feature store folder>")
    return FeatureTower(modality, num_features, tokens)

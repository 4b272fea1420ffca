"""ViT image encoder on ``transformers.ViTModel``.

Paper: Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021 (arXiv:2010.11929).
Weights: any ``ViTModel`` folder, e.g. ``google/vit-base-patch16-224-in21k`` (ImageNet-21k, mean/std 0.5).
Differs: built without the tanh pooler (no seed method uses it); the pooled embedding is the CLS token after the final
LayerNorm, as in timm and the seed methods. Stage loop: every transformer layer is a stage of one block.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, load_hf_model
from avlearn.backbones.preprocess import HALF, ImagePreprocess
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")


class ViT(Backbone):
    """ViT: ``pixel_values`` (B, 3, H, W) -> tokens (B, 1 + N, C), CLS first; pooled: the CLS token.

    Args:
        config: ``ViTConfig`` fields of the registered size.
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import ViTConfig, ViTModel

        no_pooler = {"add_pooling_layer": False}
        model = load_hf_model(ViTModel, ViTConfig, config, pretrained, _ARCH_FIELDS, model_kwargs=no_pooler)
        size = (model.config.image_size, model.config.image_size)
        super().__init__(model, "visual", model.config.hidden_size, ImagePreprocess(size, HALF, HALF))

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 1 + N, C)``."""
        return self.model(pixel_values=pixel_values).last_hidden_state

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """CLS token ``(B, C)``."""
        return tokens[:, 0]

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``pixel_values`` at the model's image size."""
        return {"pixel_values": torch.randn(batch_size, 3, *self.preprocess.size, device=self._device())}

    def embed(self, pixel_values: torch.Tensor) -> Hidden:
        """Patch embedding + CLS + position embedding -> ``(B, 1 + N, C)``."""
        return Hidden(self.model.embeddings(pixel_values))

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm."""
        return self.model.layernorm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.model.layernorm]

    def _layers(self) -> nn.ModuleList:
        return self.model.layers


def _vit(pretrained: str | None, base: dict[str, Any], overrides: dict[str, Any]) -> ViT:
    return ViT({**base, **overrides}, pretrained)


@BACKBONES.register("vit_base_patch16")
def vit_base_patch16(pretrained: str | None = None, **overrides: Any) -> ViT:
    """ViT-B/16 at 224 px, 768 wide, 12 layers (86 M); weights e.g. google/vit-base-patch16-224-in21k."""
    return _vit(pretrained, {"image_size": 224, "patch_size": 16}, overrides)


@BACKBONES.register("vit_tiny")
def vit_tiny(pretrained: str | None = None, **overrides: Any) -> ViT:
    """Test-size ViT: 32 px, patch 8, 2 layers of width 32 (random init, CPU-fast)."""
    base = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    return _vit(pretrained, {**base, "intermediate_size": 64}, overrides)

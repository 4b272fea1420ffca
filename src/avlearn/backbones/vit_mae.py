"""ViT-MAE image encoder on ``transformers.ViTMAEModel`` (the encoder half of a masked autoencoder).

Paper: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (arXiv:2111.06377).
Weights: ``ViTMAEModel`` folders, e.g. ``facebook/vit-mae-base`` (DeepAVFusion's image encoder starts from the MAE
ImageNet-1k ViT-B/16).
Differs: ``transformers`` always shuffles patches through random masking; here ``noise`` defaults to the patch index,
so with ``mask_ratio=0`` (our default) the tokens keep their grid order and the output is deterministic. A method that
pretrains with masking sets ``mask_ratio`` and passes random ``noise``; ``embed`` returns ``mask`` and ``ids_restore``
in ``hidden.extra``. Pooled: mean of the patch tokens (MAE's global pool), CLS excluded.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, load_hf_model
from avlearn.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")


class ViTMAE(Backbone):
    """MAE encoder: ``pixel_values`` (B, 3, H, W) -> tokens (B, 1 + kept N, C), CLS first.

    Args:
        config: ``ViTMAEConfig`` fields of the registered size (``mask_ratio`` 0 unless overridden).
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import ViTMAEConfig, ViTMAEModel

        model = load_hf_model(ViTMAEModel, ViTMAEConfig, config, pretrained, _ARCH_FIELDS)
        model.config.mask_ratio = config["mask_ratio"]  # a feature extractor does not inherit the pretraining ratio
        size = (model.config.image_size, model.config.image_size)
        super().__init__(model, "visual", model.config.hidden_size, ImagePreprocess(size, IMAGENET_MEAN, IMAGENET_STD))

    def _noise(self, pixel_values: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is not None:
            return noise
        num_patches = self.model.embeddings.patch_embeddings.num_patches
        order = torch.arange(num_patches, device=pixel_values.device, dtype=torch.float32)  # exact in float32
        return order.expand(pixel_values.shape[0], -1)  # (B, N): argsort keeps the grid order

    def forward_features(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 1 + N_kept, C)``; ``noise`` (B, N) picks the kept patches (lowest first)."""
        return self.model(pixel_values=pixel_values, noise=self._noise(pixel_values, noise)).last_hidden_state

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean of the patch tokens ``(B, C)``."""
        return tokens[:, 1:].mean(dim=1)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``pixel_values`` at the model's image size."""
        return {"pixel_values": torch.randn(batch_size, 3, *self.preprocess.size, device=self._device())}

    def embed(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None) -> Hidden:
        """Patch + position embedding, masking, CLS; ``extra`` holds ``mask`` (B, N) and ``ids_restore`` (B, N)."""
        tokens, mask, ids_restore = self.model.embeddings(pixel_values, noise=self._noise(pixel_values, noise))
        return Hidden(tokens, extra={"mask": mask, "ids_restore": ids_restore})

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm."""
        return self.model.layernorm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.model.layernorm]

    def _layers(self) -> nn.ModuleList:
        return self.model.layers


@BACKBONES.register("vit_mae_base")
def vit_mae_base(pretrained: str | None = None, **overrides: Any) -> ViTMAE:
    """MAE ViT-B/16 encoder at 224 px (86 M); weights e.g. facebook/vit-mae-base."""
    return ViTMAE({"mask_ratio": 0.0, **overrides}, pretrained)


@BACKBONES.register("vit_mae_tiny")
def vit_mae_tiny(pretrained: str | None = None, **overrides: Any) -> ViTMAE:
    """Test-size MAE encoder: 32 px, patch 8, 2 layers of width 32 (random init)."""
    base = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    return ViTMAE({**base, "intermediate_size": 64, "mask_ratio": 0.0, **overrides}, pretrained)

"""Swin Transformer V2 image encoder on ``transformers.Swinv2Model``.

Paper: Liu et al., "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022 (arXiv:2111.09883).
Weights: ``Swinv2Model`` folders, e.g. ``microsoft/swinv2-large-patch4-window12-192-22k`` (the visual backbone of
DG-SCT, which loads timm's ``swinv2_large_window12_192_22k``; same architecture, ImageNet-22k at 192 px).
Differs: DG-SCT resizes frames straight to 192x192 with ImageNet mean/std, so ``preprocess.resize`` is ``"exact"``.
Stage loop: 4 stages of post-norm Swin-V2 blocks; ``end_stage`` is the patch merging that ends stages 1-3, and
``hidden.grid`` carries the ``(H, W)`` token grid the blocks need. Pooled embedding: mean of the final tokens.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, load_hf_model
from avlearn.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from avlearn.errors import ConfigError
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size", "image_size")


class SwinV2(Backbone):
    """Swin-V2: ``pixel_values`` (B, 3, H, W) -> tokens (B, H/32 * W/32, 8 * embed_dim); pooled: token mean.

    Args:
        config: ``Swinv2Config`` fields of the registered size.
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import Swinv2Config, Swinv2Model

        model = load_hf_model(Swinv2Model, Swinv2Config, config, pretrained, _ARCH_FIELDS)
        size = (model.config.image_size, model.config.image_size)
        preprocess = ImagePreprocess(size, IMAGENET_MEAN, IMAGENET_STD, resize="exact")
        super().__init__(model, "visual", model.num_features, preprocess)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, N, C)``, N = (H/32)(W/32)."""
        return self.model(pixel_values=pixel_values).last_hidden_state

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean over tokens ``(B, C)``."""
        return tokens.mean(dim=1)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``pixel_values`` at the model's image size."""
        return {"pixel_values": torch.randn(batch_size, 3, *self.preprocess.size, device=self._device())}

    def embed(self, pixel_values: torch.Tensor) -> Hidden:
        """Patch embedding -> ``(B, H/4 * W/4, embed_dim)`` with its grid."""
        tokens, grid = self.model.embeddings(pixel_values)
        return Hidden(tokens, tuple(grid))

    def stage_blocks(self, i: int) -> Sequence[nn.Module]:
        """The ``Swinv2Layer`` blocks of stage ``i``."""
        return self.model.encoder.layers[i].blocks

    def run_block(self, i: int, j: int, hidden: Hidden) -> Hidden:
        """One shifted-window block on the ``(H, W)`` grid."""
        tokens = self.stage_blocks(i)[j](hidden.tokens, hidden.grid)[0]
        return Hidden(tokens, hidden.grid, hidden.attention_mask, hidden.extra)

    def end_stage(self, i: int, hidden: Hidden) -> Hidden:
        """Patch merging (stages 1-3): 2x2 tokens -> 1, width doubled."""
        stage = self.model.encoder.layers[i]
        if stage.downsample is None:
            return hidden
        height, width = hidden.grid
        tokens = stage.downsample(hidden.tokens, (height, width))  # (B, N/4, 2C)
        return Hidden(tokens, ((height + 1) // 2, (width + 1) // 2), hidden.attention_mask, hidden.extra)

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm."""
        return self.model.layernorm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.model.layernorm]

    def _layers(self) -> nn.ModuleList:
        return self.model.encoder.layers


@BACKBONES.register("swinv2_large_192")
def swinv2_large_192(pretrained: str | None = None, **overrides: Any) -> SwinV2:
    """Swin-V2-L, window 12, 192 px, dims 192-1536, depths 2-2-18-2 (DG-SCT's visual backbone, 197 M)."""
    base = {"image_size": 192, "embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48]}
    return SwinV2({**base, "window_size": 12, "drop_path_rate": 0.1, **overrides}, pretrained)


@BACKBONES.register("swinv2_tiny")
def swinv2_tiny(pretrained: str | None = None, size: int = 64, **overrides: Any) -> SwinV2:
    """Test-size Swin-V2: ``size`` px (default 64; a multiple of 16), window size / 16 (the four stages end at 1x1),
    dims 16-128, depths 1-2-1-1 (random init, CPU-fast)."""
    if size % 16:
        raise ConfigError(f"swinv2_tiny: image size {size} (data.frame_size) must be a multiple of 16")
    base = {"image_size": size, "embed_dim": 16, "depths": [1, 2, 1, 1], "num_heads": [1, 2, 2, 4],
            "window_size": size // 16}  # fmt: skip
    return SwinV2({**base, **overrides}, pretrained)

"""VideoMAE video encoder on ``transformers.VideoMAEModel``.

Paper: Tong et al., "VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video
Pre-Training", NeurIPS 2022 (arXiv:2203.12602).
Weights: ``VideoMAEModel`` folders, e.g. ``MCG-NJU/videomae-base`` (16 frames, tubelets of 2, 224 px).
Differs: none; ``bool_masked_pos`` (B, N) is passed through for masked pretraining. Tokens are ordered
(time, height, width) over the tubelet grid; pooled: the token mean (VideoMAE's mean pooling).
Stage loop: every transformer layer is a stage of one block.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, load_hf_model
from avlearn.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "tubelet_size", "num_frames")


class VideoMAE(Backbone):
    """VideoMAE: ``pixel_values`` (B, T, 3, H, W) -> tokens (B, T/t * H/p * W/p, C); pooled: token mean.

    Args:
        config: ``VideoMAEConfig`` fields of the registered size.
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import VideoMAEConfig, VideoMAEModel

        model = load_hf_model(VideoMAEModel, VideoMAEConfig, config, pretrained, _ARCH_FIELDS)
        cfg = model.config
        size = (cfg.image_size, cfg.image_size)
        preprocess = ImagePreprocess(size, IMAGENET_MEAN, IMAGENET_STD, num_frames=cfg.num_frames)
        super().__init__(model, "video", cfg.hidden_size, preprocess)

    def forward_features(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, N, C)`` (visible tokens only when ``bool_masked_pos`` is given)."""
        return self.model(pixel_values=pixel_values, bool_masked_pos=bool_masked_pos).last_hidden_state

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean over tokens ``(B, C)``."""
        return tokens.mean(dim=1)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``pixel_values`` ``(B, T, 3, H, W)``."""
        shape = (batch_size, self.preprocess.num_frames, 3, *self.preprocess.size)
        return {"pixel_values": torch.randn(*shape, device=self._device())}

    def embed(self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> Hidden:
        """Tubelet embedding + fixed sin-cos position table, masked tokens dropped."""
        cfg = self.model.config
        grid = (cfg.num_frames // cfg.tubelet_size, cfg.image_size // cfg.patch_size, cfg.image_size // cfg.patch_size)
        return Hidden(self.model.embeddings(pixel_values, bool_masked_pos), grid)

    def run_block(self, i: int, j: int, hidden: Hidden) -> Hidden:
        """One layer (VideoMAE layers take no attention mask)."""
        tokens = self.stage_blocks(i)[j](hidden.tokens)
        return Hidden(tokens, hidden.grid, hidden.attention_mask, hidden.extra)

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm (absent in mean-pooling checkpoints)."""
        norm = self.model.layernorm
        return hidden.tokens if norm is None else norm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm, if the checkpoint has one."""
        return [] if self.model.layernorm is None else [self.model.layernorm]

    def _layers(self) -> nn.ModuleList:
        return self.model.encoder.layer


@BACKBONES.register("videomae_base")
def videomae_base(pretrained: str | None = None, **overrides: Any) -> VideoMAE:
    """VideoMAE ViT-B: 16 frames, tubelets of 2, 224 px, 1568 tokens (86 M); weights e.g. MCG-NJU/videomae-base."""
    return VideoMAE(overrides, pretrained)


@BACKBONES.register("videomae_tiny")
def videomae_tiny(pretrained: str | None = None, **overrides: Any) -> VideoMAE:
    """Test-size VideoMAE: 4 frames of 32 px, patch 8, 2 layers of width 32 (random init)."""
    base = {"num_frames": 4, "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2}
    size = {"num_attention_heads": 2, "intermediate_size": 64}
    return VideoMAE({**base, **size, **overrides}, pretrained)

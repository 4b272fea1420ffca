"""ViT-MAE image encoder on ``transformers.ViTMAEModel`` (the encoder half of a masked autoencoder).

Paper: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022 (arXiv:2111.06377).
Weights: ``ViTMAEModel`` folders, e.g. ``facebook/vit-mae-base`` (DeepAVFusion's image encoder starts from the MAE
ImageNet-1k ViT-B/16).
Differs: ``transformers`` always shuffles patches through random masking; here ``noise`` defaults to the patch index,
so with ``mask_ratio=0`` (our default) the tokens keep their grid order and the output is deterministic. A method that
pretrains with masking sets ``mask_ratio`` and passes random ``noise``; ``embed`` returns ``mask`` and ``ids_restore``
in ``hidden.extra``. Pooled: mean of the patch tokens (MAE's global pool), CLS excluded.
Audio: :class:`AudioViTMAE` is the same encoder on a one-channel log-mel ``(B, 1, F, T)`` (frequency on H, time on
W; DeepAVFusion's audio tower, AudioMAE-initialised in the seed). ``transformers`` builds MAE's sin-cos table for a
square grid only; the audio sizes rebuild it for their ``F/p x T/p`` grid, in MAE's layout.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, load_hf_model
from avlearn.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, AudioPreprocess, ImagePreprocess
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")


class ViTMAE(Backbone):
    """MAE encoder: ``pixel_values`` (B, 3, H, W) -> tokens (B, 1 + kept N, C), CLS first.

    Args:
        config: ``ViTMAEConfig`` fields of the registered size (``mask_ratio`` 0 unless overridden).
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        model = _mae_model(config, pretrained)
        size = (model.config.image_size, model.config.image_size)
        super().__init__(model, "visual", model.config.hidden_size, ImagePreprocess(size, IMAGENET_MEAN, IMAGENET_STD))
        if pretrained is None:  # transformers 5 leaves a randomly initialised model's fixed table at zero
            self._fixed_positions()

    def _fixed_positions(self) -> None:
        """Write MAE's fixed sin-cos table for :attr:`grid` into the position embedding, its CLS row zero."""
        table = self.model.embeddings.position_embeddings  # (1, 1 + N, C), fixed; row 0 is the CLS slot
        with torch.no_grad():
            table[0, 1:] = sincos_position_table(self.grid, table.shape[-1])  # (N, C), row-major over the grid
            table[0, 0] = 0.0

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid ``(H / p, W / p)``."""
        patches = self.model.embeddings.patch_embeddings
        return patches.image_size[0] // patches.patch_size[0], patches.image_size[1] // patches.patch_size[1]

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


def _mae_model(config: dict[str, Any], pretrained: str | None) -> nn.Module:
    # Imported here, not with the module: importing transformers takes seconds.
    from transformers import ViTMAEConfig, ViTMAEModel

    model = load_hf_model(ViTMAEModel, ViTMAEConfig, config, pretrained, _ARCH_FIELDS)
    model.config.mask_ratio = config["mask_ratio"]  # a feature extractor does not inherit the pretraining ratio
    return model


def sincos_position_table(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position table ``(H * W, dim)`` for a ``grid = (H, W)`` patch grid, row-major: per
    patch ``[sin(w w_k) | cos(w w_k) | sin(h w_k) | cos(h w_k)]`` with ``w_k = 10000^(-k / (dim / 4))``."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos table needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (dim/4,)
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")  # (H, W) each
    angle_w = cols.flatten().double().outer(omega)  # (H*W, dim/4)
    angle_h = rows.flatten().double().outer(omega)
    return torch.cat([angle_w.sin(), angle_w.cos(), angle_h.sin(), angle_h.cos()], dim=1).float()  # (H*W, dim)


class AudioViTMAE(ViTMAE):
    """MAE encoder on a log-mel: ``pixel_values`` (B, 1, F, T) -> tokens (B, 1 + N, C), CLS first.

    Args:
        config: ``ViTMAEConfig`` fields; ``image_size`` is ``(F, T)`` and ``num_channels`` 1.
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
        preprocess: The audio front end the sizes declare (DeepAVFusion's: :func:`avlearn.audio.deepavfusion_input`).
    """

    def __init__(self, config: dict[str, Any], preprocess: AudioPreprocess, pretrained: str | None = None) -> None:
        model = _mae_model(config, pretrained)
        Backbone.__init__(self, model, "audio", model.config.hidden_size, preprocess)
        self._fixed_positions()  # transformers assumes a square grid

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random one-channel log-mels ``(B, 1, F, T)``."""
        size = self.model.embeddings.patch_embeddings.image_size
        return {"pixel_values": torch.randn(batch_size, 1, *size, device=self._device())}


# DeepAVFusion's audio front end (16 kHz, 3 s: 192 frames of 128 HTK mel bands every 250 samples).
DEEPAVFUSION_AUDIO = AudioPreprocess(16_000, "log_mel", 128, 192, n_fft=800, hop_length=250, win_length=800,
                                     f_max=8_000.0)  # fmt: skip


@BACKBONES.register("vit_mae_audio_base")
def vit_mae_audio_base(pretrained: str | None = None, **overrides: Any) -> AudioViTMAE:
    """DeepAVFusion's audio ViT-B/16: one-channel 128 x 192 log-mel (8 x 12 patches), LayerNorm eps 1e-6 (85 M)."""
    base = {"image_size": [128, 192], "num_channels": 1, "layer_norm_eps": 1e-6, "mask_ratio": 0.0}
    return AudioViTMAE({**base, **overrides}, DEEPAVFUSION_AUDIO, pretrained)


@BACKBONES.register("vit_mae_audio_tiny")
def vit_mae_audio_tiny(pretrained: str | None = None, **overrides: Any) -> AudioViTMAE:
    """Test-size audio MAE encoder: 32 x 48 log-mel, patch 8 (4 x 6 patches), 2 layers of width 32 (random init)."""
    base = {"image_size": [32, 48], "patch_size": 8, "num_channels": 1, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64, "layer_norm_eps": 1e-6, "mask_ratio": 0.0}  # fmt: skip
    pre = AudioPreprocess(16_000, "log_mel", 32, 48, n_fft=2000, hop_length=1000, win_length=2000, f_max=8_000.0)
    return AudioViTMAE({**base, **overrides}, pre, pretrained)


@BACKBONES.register("vit_mae_base")
def vit_mae_base(pretrained: str | None = None, **overrides: Any) -> ViTMAE:
    """MAE ViT-B/16 encoder at 224 px (86 M); weights e.g. facebook/vit-mae-base."""
    return ViTMAE({"mask_ratio": 0.0, **overrides}, pretrained)


@BACKBONES.register("vit_mae_tiny")
def vit_mae_tiny(pretrained: str | None = None, **overrides: Any) -> ViTMAE:
    """Test-size MAE encoder: 32 px, patch 8, 2 layers of width 32 (random init)."""
    base = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    return ViTMAE({**base, "intermediate_size": 64, "mask_ratio": 0.0, **overrides}, pretrained)


@BACKBONES.register("vit_mae_64_tiny")
def vit_mae_64_tiny(pretrained: str | None = None, **overrides: Any) -> ViTMAE:
    """``vit_mae_tiny`` at 64 px: patch 8, an 8 x 8 grid (64 tokens instead of 16; random init)."""
    return vit_mae_tiny(pretrained, **{"image_size": 64, **overrides})

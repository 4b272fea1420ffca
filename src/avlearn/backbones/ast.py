"""Audio Spectrogram Transformer (AST) on ``transformers.ASTModel``.

Paper: Gong, Chung and Glass, "AST: Audio Spectrogram Transformer", Interspeech 2021 (arXiv:2104.01778).
Weights: ``ASTModel`` folders, e.g. ``MIT/ast-finetuned-audioset-10-10-0.4593`` (the checkpoint VALOR starts from).
Input: Kaldi-compatible fbank, 16 kHz, 128 bins, 10 ms shift, 1024 frames, normalised as AST does,
``(x + 4.2677393) / (2 * 4.5689974)``; computed by ``avlearn.audio`` from ``preprocess``.
Differs: VALOR re-grids AST to non-overlapping 16 x 16 patches on 64 bins x 512 frames (``ast_valor``, by
``regrid``: the AudioSet weights with their 12 x 101 position embeddings interpolated bilinearly to 4 x 32).
Stage loop: every transformer layer is a stage of one block. Pooled: mean of the CLS and distillation tokens (AST).
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, load_hf_model
from avlearn.backbones.preprocess import AudioPreprocess
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "num_mel_bins", "max_length")
# AudioSet statistics of the fbank, published with AST; AST divides by twice the std.
_AST_MEAN, _AST_STD = -4.2677393, 4.5689974


class AST(Backbone):
    """AST: ``spectrogram`` (B, T, F) fbank -> tokens (B, 2 + N, C) (CLS, distillation, patches).

    Args:
        config: ``ASTConfig`` fields of the registered size.
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import ASTConfig, ASTModel

        model = load_hf_model(ASTModel, ASTConfig, config, pretrained, _ARCH_FIELDS)
        cfg = model.config
        preprocess = AudioPreprocess(
            sample_rate=16_000,
            features="kaldi_fbank",
            num_mel_bins=cfg.num_mel_bins,
            num_frames=cfg.max_length,
            n_fft=512,
            hop_length=160,
            win_length=400,
            f_min=20.0,
            norm_shift=_AST_MEAN,
            norm_scale=2 * _AST_STD,
        )
        super().__init__(model, "audio", cfg.hidden_size, preprocess)

    def forward_features(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` -> ``(B, 2 + N, C)``."""
        return self.model(input_values=spectrogram).last_hidden_state

    def inputs_from_wave(self, wave: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
        """Waveforms ``(B, N)`` at any rate -> ``{"spectrogram": (B, T, F)}`` by ``avlearn.audio.ast_input``."""
        from avlearn.audio import ast_input

        p = self.preprocess
        return {
            "spectrogram": ast_input(wave, sample_rate, p.num_mel_bins, p.num_frames, p.norm_shift, p.norm_scale / 2)
        }

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean of the CLS and distillation tokens ``(B, C)``, as AST's classifier."""
        return (tokens[:, 0] + tokens[:, 1]) / 2

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random normalised fbank ``(B, T, F)``."""
        shape = (batch_size, self.preprocess.num_frames, self.preprocess.num_mel_bins)
        return {"spectrogram": torch.randn(*shape, device=self._device())}

    def embed(self, spectrogram: torch.Tensor) -> Hidden:
        """Overlapping patches + CLS/distillation tokens + position embedding."""
        return Hidden(self.model.embeddings(spectrogram))

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm."""
        return self.model.layernorm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.model.layernorm]

    def _layers(self) -> nn.ModuleList:
        return self.model.layers


@BACKBONES.register("ast_base")
def ast_base(pretrained: str | None = None, **overrides: Any) -> AST:
    """AST-base: ViT-B on 1024x128 fbank, 16x16 patches at stride 10 (86 M); weights e.g. MIT/ast-finetuned-audioset-10-10-0.4593."""  # noqa: E501
    base = {"max_length": 1024, "num_mel_bins": 128, "frequency_stride": 10, "time_stride": 10}
    return AST({**base, **overrides}, pretrained)


def regrid(ast: AST, num_mel_bins: int, max_length: int, stride: int) -> AST:
    """A copy of ``ast`` on ``num_mel_bins`` x ``max_length`` inputs with patches at ``stride`` in both directions:
    the same weights, the patch position embeddings interpolated bilinearly from the old patch grid to the new
    one (the CLS and distillation positions kept), as VALOR imports AST."""
    import torch.nn.functional as F

    old = ast.model.config
    geometry = {"num_mel_bins": num_mel_bins, "max_length": max_length, "frequency_stride": stride,
                "time_stride": stride}  # fmt: skip
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")
    new = AST({**{k: getattr(old, k) for k in fields}, **geometry})
    state = ast.model.state_dict()
    position = state["embeddings.position_embeddings"]  # (1, 2 + F_old * T_old, C)
    grid = ast.model.embeddings.get_shape(old)
    patches = position[0, 2:].T.reshape(1, -1, *grid)  # (1, C, F_old, T_old)
    patches = F.interpolate(patches, size=new.model.embeddings.get_shape(new.model.config), mode="bilinear")
    patches = patches.flatten(2).transpose(1, 2)  # (1, C, F', T') -> (1, F' * T', C), frequency-major
    state["embeddings.position_embeddings"] = torch.cat([position[:, :2], patches], dim=1)
    new.model.load_state_dict(state)
    return new


@BACKBONES.register("ast_valor")
def ast_valor(pretrained: str | None = None, **overrides: Any) -> AST:
    """AST-base re-gridded as VALOR: 16x16 patches at stride 16 on 64 bins x 512 frames (4 x 32 patches); AudioSet weights (e.g. MIT/ast-finetuned-audioset-10-10-0.4593) interpolated by ``regrid``."""  # noqa: E501
    return regrid(ast_base(pretrained, **overrides), num_mel_bins=64, max_length=512, stride=16)


@BACKBONES.register("ast_tiny")
def ast_tiny(pretrained: str | None = None, **overrides: Any) -> AST:
    """Test-size AST: 64 frames x 32 bins, patch 16 at stride 8, 2 layers of width 32 (random init)."""
    base = {"max_length": 64, "num_mel_bins": 32, "frequency_stride": 8, "time_stride": 8, "hidden_size": 32}
    size = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    return AST({**base, **size, **overrides}, pretrained)


@BACKBONES.register("ast_valor_tiny")
def ast_valor_tiny(pretrained: str | None = None, **overrides: Any) -> AST:
    """Test-size VALOR AST: 16x16 patches at stride 16 on 32 bins x 160 frames (2 x 10 patches), 2 layers of width 32 (random init)."""  # noqa: E501
    base = {"max_length": 160, "num_mel_bins": 32, "frequency_stride": 16, "time_stride": 16, "hidden_size": 32}
    size = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    return AST({**base, **size, **overrides}, pretrained)

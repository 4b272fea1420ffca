"""The backbone contract, and the helpers every family shares: loading weights offline and freezing.

Every backbone in the zoo is a :class:`Backbone`, a thin ``nn.Module`` around one ``transformers`` model class
(random init from a config, or weights from a local folder / the local Hugging Face cache). The contract:

* ``modality``: ``"audio"``, ``"visual"``, ``"video"`` or ``"text"``; ``num_features``: the width ``C``.
* ``forward_features(**inputs) -> (B, N, C)`` tokens, computed by the wrapped model's own forward.
* ``forward(**inputs) -> (B, C)`` the pooled embedding (the family's usual pooling; documented per family).
* ``dummy_inputs(batch_size) -> dict`` inputs of the right shapes, so ``model(**model.dummy_inputs(2))`` runs.
* ``preprocess``: an :mod:`avlearn.backbones.preprocess` dataclass (image size and mean/std, audio features, text
  length).
* ``freeze(policy)`` with ``"none"``, ``"all"``, ``"all_but_norm"``, ``"all_but_last_stage"``, and
  ``trainable_parameters()``.
* ``proj_dim`` and ``project(pooled)`` for towers of a joint embedding space (CLIP, CLAP); ``None`` elsewhere.

**Stage-by-stage access** (so that methods can put adapters or cross-modal layers between blocks). A backbone is
``embed`` -> stages -> ``head``; each stage is a list of blocks followed by ``end_stage`` (Swin patch merging; nothing
for plain transformers, where every layer is a stage of one block). The state passed along is a :class:`Hidden`::

    hidden = backbone.embed(**inputs)
    for i in range(backbone.num_stages):
        for j in range(len(backbone.stage_blocks(i))):
            hidden = backbone.run_block(i, j, hidden)
            # a method may replace hidden.tokens here, e.g. hidden.tokens = hidden.tokens + adapter(hidden.tokens)
        hidden = backbone.end_stage(i, hidden)
    tokens = backbone.head(hidden)  # == backbone.forward_features(**inputs), tested for every family

A method that needs finer access than a block (DG-SCT's adapters around a Swin block's attention and MLP) gets the
block module from ``stage_blocks(i)[j]`` and calls its sub-modules; the shapes and the grid it needs are in
``hidden``. Nothing here uses hooks, so the loop is visible in the method's own forward.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from avlearn.backbones.preprocess import Preprocess
from avlearn.errors import AvlearnError

Modality = Literal["audio", "visual", "video", "text"]
FreezePolicy = Literal["none", "all", "all_but_norm", "all_but_last_stage"]
FREEZE_POLICIES: tuple[str, ...] = ("none", "all", "all_but_norm", "all_but_last_stage")
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, *_BATCH_NORMS)


class WeightsNotFoundError(AvlearnError):
    """Pretrained weights that are not on this machine, or that do not fit the requested backbone."""


@dataclass
class Hidden:
    """The state carried from block to block in the stage loop.

    Attributes:
        tokens: ``(B, N, C)`` the hidden states; a method may replace it between blocks (same shape).
        grid: The token grid where the family knows it: ``(H, W)`` for Swin-style stages (their blocks need it),
            ``(T, H, W)`` for VideoMAE; ``None`` for token sequences with a CLS token or text.
        attention_mask: The mask in the form the blocks take (text towers with padding), else ``None``.
        extra: Family-specific values the head or pooling needs (e.g. MAE's ``mask`` and ``ids_restore``).
    """

    tokens: torch.Tensor
    grid: tuple[int, ...] | None = None
    attention_mask: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backbone(nn.Module):
    """Base of every zoo backbone: the contract above, stage loop defaults for plain transformers, freezing.

    A family subclass sets ``self.model`` (the ``transformers`` module) and implements ``forward_features``,
    ``pool``, ``dummy_inputs``, ``embed``, ``head`` and ``_layers`` (plus ``run_block``/``end_stage`` when its
    blocks need more than ``layer(tokens, attention_mask)``).

    Args:
        model: The wrapped ``transformers`` model.
        modality: What the backbone encodes.
        num_features: Width ``C`` of the tokens and of the pooled embedding.
        preprocess: The input settings (see :mod:`avlearn.backbones.preprocess`).
    """

    def __init__(self, model: nn.Module, modality: Modality, num_features: int, preprocess: Preprocess) -> None:
        super().__init__()
        self.model = model
        self.modality = modality
        self.num_features = num_features
        self.preprocess = preprocess
        self.proj_dim: int | None = None
        self.freeze_policy: str = "none"
        # Parameters the model itself keeps fixed (e.g. MAE's sin-cos position table) stay fixed under any policy.
        self._fixed_parameters = {name for name, p in self.named_parameters() if not p.requires_grad}
        parameters = inspect.signature(self.forward_features).parameters.values()
        self._input_names = tuple(p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD)

    # ---- the contract every family fills in -------------------------------------------------------------------
    def forward_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, C)`` from the wrapped model's own forward."""
        raise NotImplementedError

    def pool(self, tokens: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` tokens -> ``(B, C)`` embedding (inputs give e.g. the text padding mask)."""
        raise NotImplementedError

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random inputs of the shapes this backbone takes, on its device."""
        raise NotImplementedError

    def embed(self, **inputs: torch.Tensor) -> Hidden:
        """Stem: inputs -> the :class:`Hidden` entering the first block."""
        raise NotImplementedError

    def head(self, hidden: Hidden) -> torch.Tensor:
        """After the last stage: final norm (and any re-ordering) -> tokens ``(B, N, C)``."""
        raise NotImplementedError

    def _layers(self) -> nn.ModuleList:
        """The stages, in order."""
        raise NotImplementedError

    # ---- pooled output and joint-space projection -------------------------------------------------------------
    def forward(self, *args: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled embedding ``(B, num_features)``; inputs by name, or the main ones by position (``model(pixels)``)."""
        inputs.update(zip(self._input_names, args, strict=False))
        return self.pool(self.forward_features(**inputs), **inputs)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, num_features)`` -> ``(B, proj_dim)`` in the joint embedding space (CLIP, CLAP towers only)."""
        raise AvlearnError(f"{type(self).__name__} has no joint-space projection (proj_dim is None)")

    # ---- stage loop -------------------------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        """Number of stages (Swin: 4; plain transformers: one per layer)."""
        return len(self._layers())

    def stages(self) -> nn.ModuleList:
        """The stage modules, in order."""
        return self._layers()

    def stage_blocks(self, i: int) -> Sequence[nn.Module]:
        """The blocks of stage ``i`` (plain transformers: the layer itself)."""
        return [self._layers()[i]]

    def run_block(self, i: int, j: int, hidden: Hidden) -> Hidden:
        """Block ``j`` of stage ``i``; returns the updated state (a new object, ``hidden`` is not changed)."""
        tokens = self.stage_blocks(i)[j](hidden.tokens, hidden.attention_mask, **self._block_kwargs())
        return Hidden(tokens, hidden.grid, hidden.attention_mask, hidden.extra)

    def _block_kwargs(self) -> dict[str, Any]:
        return {}

    def end_stage(self, i: int, hidden: Hidden) -> Hidden:
        """What follows the blocks of stage ``i`` (Swin: patch merging); plain transformers: nothing."""
        return hidden

    def run_stage(self, i: int, hidden: Hidden) -> Hidden:
        """All blocks of stage ``i``, then ``end_stage``."""
        for j in range(len(self.stage_blocks(i))):
            hidden = self.run_block(i, j, hidden)
        return self.end_stage(i, hidden)

    def forward_stages(self, **inputs: torch.Tensor) -> torch.Tensor:
        """``forward_features`` through the stage loop: the reference loop a method copies and extends."""
        hidden = self.embed(**inputs)
        for i in range(self.num_stages):
            hidden = self.run_stage(i, hidden)
        return self.head(hidden)

    # ---- freezing ---------------------------------------------------------------------------------------------
    def head_modules(self) -> list[nn.Module]:
        """Modules after the last stage (final norm, pooler, projection): trainable under ``all_but_last_stage``."""
        return []

    def freeze(self, policy: FreezePolicy = "all") -> Backbone:
        """Set ``requires_grad`` by policy; returns ``self``.

        ``"none"``: everything trains. ``"all"``: nothing trains, and normalisation layers with running statistics
        stay in eval mode even under ``train()`` (a frozen backbone does not drift). ``"all_but_norm"``: only the
        normalisation layers (LayerNorm, BatchNorm, GroupNorm) train. ``"all_but_last_stage"``: the last stage and
        the head modules train (CLIP partial fine-tuning).
        """
        if policy not in FREEZE_POLICIES:
            raise AvlearnError(f"unknown freeze policy '{policy}'; expected one of {', '.join(FREEZE_POLICIES)}")
        self.requires_grad_(policy == "none")
        for module in self._unfrozen_modules(policy):
            module.requires_grad_(True)
        for name, parameter in self.named_parameters():
            if name in self._fixed_parameters:
                parameter.requires_grad_(False)
        self.freeze_policy = policy
        return self.train(self.training)

    def _unfrozen_modules(self, policy: str) -> Iterator[nn.Module]:
        if policy == "all_but_norm":
            yield from (m for m in self.modules() if isinstance(m, _NORM_TYPES))
        elif policy == "all_but_last_stage":
            yield self._layers()[-1]
            yield from self.head_modules()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters with ``requires_grad``, in module order (what an optimizer should get)."""
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> Backbone:
        """As ``nn.Module.train``, except that a fully frozen backbone keeps its batch-norm statistics fixed."""
        super().train(mode)
        if self.freeze_policy == "all":
            for module in self.modules():
                if isinstance(module, _BATCH_NORMS):
                    module.eval()
        return self

    def _device(self) -> torch.device:
        return next(self.parameters()).device


# ---- loading ----------------------------------------------------------------------------------------------------
def _looks_like_path(pretrained: str) -> bool:
    return pretrained.startswith(("/", "./", "../", "~")) or Path(pretrained).exists()


def _how_to_get(pretrained: str) -> str:
    if _looks_like_path(pretrained):
        return "pass pretrained= a folder holding config.json and model.safetensors (from save_pretrained)"
    return (
        f"download it once on a machine with internet (`hf download {pretrained}`, then copy the Hugging Face cache "
        f"here), or pass pretrained= a local folder holding config.json and model.safetensors"
    )


def load_hf_model(
    model_class: Any,
    config_class: Any,
    fields: dict[str, Any],
    pretrained: str | None,
    arch_fields: Iterable[str],
    allowed_missing: Iterable[str] = (),
    model_kwargs: dict[str, Any] | None = None,
) -> Any:
    """Build ``model_class`` from ``config_class(**fields)`` (random init) or load it from ``pretrained``, offline.

    ``pretrained`` is a local folder or a Hugging Face id; ids are resolved only from the local cache
    (``local_files_only=True``, so ``HF_HUB_OFFLINE`` machines behave the same as online ones). The checkpoint must
    match ``config`` in every field of ``arch_fields`` and must hold every tensor the model has (except names
    starting with one of ``allowed_missing``): anything else raises instead of silently initialising at random.

    Args:
        model_class: A ``transformers`` ``PreTrainedModel`` subclass.
        config_class: Its config class.
        fields: The registered size's config fields; its ``arch_fields`` are compared with the checkpoint's.
        pretrained: ``None`` (random init), a folder, or a Hugging Face id.
        arch_fields: Config attributes that define the architecture.
        allowed_missing: Parameter-name prefixes a checkpoint may lack (e.g. an unused pooler).
        model_kwargs: Extra constructor arguments of ``model_class`` (e.g. ``add_pooling_layer=False``).

    Raises:
        WeightsNotFoundError: The weights are not on this machine, or do not fit the registered size.
    """
    model_kwargs = model_kwargs or {}
    config = config_with(config_class, fields)
    if pretrained is None:
        return model_class(config, **model_kwargs)
    if _looks_like_path(pretrained) and not Path(pretrained).expanduser().is_dir():
        raise WeightsNotFoundError(f"pretrained folder {pretrained} does not exist; {_how_to_get(pretrained)}")
    source = str(Path(pretrained).expanduser()) if _looks_like_path(pretrained) else pretrained
    try:
        model, info = model_class.from_pretrained(
            source, local_files_only=True, output_loading_info=True, **model_kwargs
        )
    except (OSError, ValueError, RuntimeError) as err:  # missing files; malformed config; tensor shape mismatch
        raise WeightsNotFoundError(
            f"cannot load {model_class.__name__} weights from '{pretrained}' without downloading "
            f"({type(err).__name__}: {str(err).splitlines()[0]}); {_how_to_get(pretrained)}"
        ) from None
    _check_architecture(model.config, config, arch_fields, pretrained)
    missing = [k for k in info["missing_keys"] if not k.startswith(tuple(allowed_missing))]
    if missing:
        raise WeightsNotFoundError(
            f"'{pretrained}' lacks {len(missing)} tensors of {model_class.__name__} (e.g. {', '.join(missing[:3])}); "
            f"they would be initialised at random. Use the checkpoint made for this architecture."
        )
    return model


def _check_architecture(loaded: Any, expected: Any, fields: Iterable[str], pretrained: str) -> None:
    wrong = {f: (getattr(loaded, f), getattr(expected, f)) for f in fields if _differs(loaded, expected, f)}
    if wrong:
        detail = "; ".join(f"{f} is {got!r}, expected {want!r}" for f, (got, want) in wrong.items())
        raise WeightsNotFoundError(f"'{pretrained}' is a different architecture from the requested backbone: {detail}")


def _differs(loaded: Any, expected: Any, name: str) -> bool:
    got, want = getattr(loaded, name), getattr(expected, name)
    as_tuple = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731 - configs mix lists/tuples
    return as_tuple(got) != as_tuple(want)


def load_tokenizer(pretrained: str | None, min_vocab: int = 1000) -> Any:
    """The tokenizer saved with ``pretrained`` (local only), or ``None`` for a random-init backbone.

    A tokenizer whose vocabulary is smaller than ``min_vocab`` is refused: with ``HF_HUB_OFFLINE`` some
    ``transformers`` tokenizer classes return a 5-token placeholder instead of raising (dependencies.md, section 2).
    """
    if pretrained is None:
        return None
    from transformers import AutoTokenizer

    source = str(Path(pretrained).expanduser()) if _looks_like_path(pretrained) else pretrained
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"cannot load the tokenizer from '{pretrained}' without downloading "
            f"({type(err).__name__}: {str(err).splitlines()[0]}); a text backbone needs its tokenizer files "
            f"(tokenizer.json or vocab files, as save_pretrained writes them) next to its weights"
        ) from None
    if len(tokenizer) < min_vocab:
        raise WeightsNotFoundError(
            f"the tokenizer in '{pretrained}' has only {len(tokenizer)} tokens (a placeholder, not the real "
            f"vocabulary); {_how_to_get(pretrained)}"
        )
    return tokenizer


def config_with(config_class: Any, fields: dict[str, Any]) -> Any:
    """``config_class(**fields)``; a field that ``config_class`` does not have is a clear error, not ignored."""
    known = config_class()
    unknown = [k for k in fields if not hasattr(known, k)]
    if unknown:
        raise AvlearnError(f"unknown {config_class.__name__} fields: {', '.join(unknown)}")
    return config_class(**fields)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Texts -> padded ``input_ids`` and ``attention_mask`` ``(B, L)`` on ``device``, cut to ``max_length``."""
    if tokenizer is None:
        raise AvlearnError("this text backbone was built without pretrained=, so it has no tokenizer")
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}


def dummy_text_inputs(
    batch_size: int, length: int, vocab: int, eos: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Random ids in ``[0, min(vocab, eos))`` with ``eos`` last; the last row is padding after half its length."""
    input_ids = torch.randint(0, min(vocab, eos), (batch_size, length), device=device)
    input_ids[:, -1] = eos
    attention_mask = torch.ones_like(input_ids)
    input_ids[-1, length // 2 - 1] = eos
    attention_mask[-1, length // 2 :] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}

"""DeepAVFusion: an early-fusion audio-visual transformer with fusion tokens, pretrained by masked autoencoding.

Paper: Mo & Morgado, "Unveiling the Power of Audio-Visual Early Fusion Transformers with Dense Interactions through
Masked Modeling", CVPR 2024 (arXiv:2312.01017); code studied: stoneMo/DeepAVFusion (``models/deepavfusion.py``,
``models/fusion_blocks.py``, ``models/avmae.py``; spec in the project's ``specs/deepavfusion.md``).

Two ViT towers (MAE encoders from ``avlearn.backbones.vit_mae``: an image one and a one-channel log-mel one, no CLS
token, fixed 2-D sin-cos positions) run in lock-step with ``sum(fusion_tokens)`` learned fusion tokens, laid out as
[fusion | visual aggregation | audio aggregation]. At a fusion layer each tower block runs on ``[fusion ; own
tokens]`` and its fusion-token outputs are dropped; the fusion tokens are updated by a :class:`FusionBlock` from the
tokens *entering* the layer: the aggregation tokens cross-attend to their modality, then the fusion tokens attend to
every (visual, audio) pair of aggregation tokens. That pair attention is computed in its additive form
(:func:`pair_attention_additive`): attention over the concatenated pairs equals two cross-attentions sharing the
query, summed, because the pair's key and value are linear in the concatenation (spec section 2.5); it costs
O(nv + na) instead of O(nv * na). :func:`pair_attention_pairs` is the seed's form, kept as the reference.

Masked pretraining (``pretrain: true``): per-sample random masks (75 % of the image patches, 80 % of the audio
patches), the encoder on the visible patches, one plain ViT decoder per modality with the fusion tokens prepended,
and the per-patch-normalised MSE on the masked patches (``AVFeatures.losses``: ``mae_visual``, ``mae_audio``).

What we changed, and why:

* Inputs come from avlearn's pipelines: each one-second segment (frame, log-mel) is one sample; the log-mel is tiled
  along time (then cut) to the audio tower's width. The seed's own front end (3 s at 16 kHz, ``log10``) is
  :func:`avlearn.audio.deepavfusion_input`.
* The towers are ``transformers`` ViT-MAE encoders; the method sets their LayerNorms to the seed's eps (1e-6) and
  leaves their (unused) CLS token out of training.
* The pair attention's key bias is not trained: its gradient is exactly zero (a softmax is shift-invariant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.base import Hidden
from avlearn.backbones.droppath import DropPath
from avlearn.backbones.vit_mae import sincos_position_table
from avlearn.errors import ConfigError, DataError
from avlearn.methods.base import AVFeatures
from avlearn.registry import METHODS

TOWER_NORM_EPS = 1e-6  # the seed's ViT LayerNorms (timm Block with eps 1e-6)


@dataclass
class DeepAVFusionConfig:
    """Schema of ``method/deepavfusion*.yaml`` (defaults: the seed's VGGSound model)."""

    name: str = "deepavfusion"
    fusion_tokens: list[int] = field(default_factory=lambda: [16, 8, 8])  # fusion, visual / audio aggregation
    fusion_layers: str = "all"  # all, none, or layer indices joined by '-' (e.g. 6-7-8-9-10-11)
    fusion_heads: int = 12
    attn_ratio: float = 0.25  # width of the pair attention's query/key (x tower width)
    mlp_ratio: float = 1.0  # width of the fusion MLP (x tower width)
    drop_path: float = 0.0  # stochastic depth of every tower block and fusion block alike (the seed fine-tunes at 0.2)
    pretrain: bool = False  # masked autoencoding: losses mae_visual / mae_audio, features of the visible patches
    visual_mask_ratio: float = 0.75
    audio_mask_ratio: float = 0.8
    norm_pix_loss: bool = True  # targets normalised per patch (mean 0, unbiased variance 1)
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16


# ---- attention pieces ------------------------------------------------------------------------------------------
def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, c) -> (B, N, heads * c)."""
    return x.transpose(1, 2).flatten(2)


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x`` (B, N1, C), keys and values from ``context`` (B, N2, C)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        key, value = self.kv(context).chunk(2, dim=-1)  # (B, N2, C) each
        out = F.scaled_dot_product_attention(*(_heads(t, self.heads) for t in (self.q(x), key, value)))
        return self.proj(_merge(out))  # (B, N1, C)


class Mlp(nn.Sequential):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)


class Block(nn.Module):
    """Pre-norm transformer block (self-attention, MLP x4), the decoders' block: ``(B, N, C) -> (B, N, C)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(t, self.heads) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))  # (B, heads, N, c)
        x = x + self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))
        return x + self.mlp(self.norm2(x))


def pair_attention_pairs(block: FusionBlock, fused: torch.Tensor, visual: torch.Tensor, audio: torch.Tensor
                         ) -> torch.Tensor:  # fmt: skip
    """The seed's pair attention: ``fused`` (B, nF, C) attends over all nv x na concatenated pairs
    ``[visual_i ; audio_j]`` (B, nv * na, 2C); the reference for :func:`pair_attention_additive`."""
    nv, na = visual.shape[1], audio.shape[1]
    pairs = torch.cat([visual.unsqueeze(2).expand(-1, -1, na, -1), audio.unsqueeze(1).expand(-1, nv, -1, -1)], dim=3)
    pairs = pairs.flatten(1, 2)  # (B, nv, na, 2C) -> (B, nv * na, 2C), pair index i * na + j
    q, k, v = (_heads(t, block.heads) for t in (block.q(fused), block.k(pairs), block.v(pairs)))
    return _merge(F.scaled_dot_product_attention(q, k, v, scale=block.scale))  # (B, nF, C)


def pair_attention_additive(block: FusionBlock, fused: torch.Tensor, visual: torch.Tensor, audio: torch.Tensor
                            ) -> torch.Tensor:  # fmt: skip
    """:func:`pair_attention_pairs` as two cross-attentions sharing the query, summed.

    A pair's key is ``K_v v_i + K_a a_j + b`` and its value ``U_v v_i + U_a a_j + c``, so the logits are
    ``s_i + t_j + const`` and the joint softmax over (i, j) is ``softmax(s)_i softmax(t)_j``: the output is
    ``sum_i softmax(s)_i U_v v_i + sum_j softmax(t)_j U_a a_j + c`` (the key bias drops out).
    """
    dim = visual.shape[-1]
    q = _heads(block.q(fused), block.heads)  # (B, H, nF, d / H)
    out = block.v.bias
    for tokens, cols in ((visual, slice(0, dim)), (audio, slice(dim, 2 * dim))):
        k = _heads(F.linear(tokens, block.k.weight[:, cols]), block.heads)  # (B, H, n, d / H)
        v = _heads(F.linear(tokens, block.v.weight[:, cols]), block.heads)  # (B, H, n, C / H)
        out = out + _merge(F.scaled_dot_product_attention(q, k, v, scale=block.scale))  # (B, nF, C)
    return out


class FusionBlock(nn.Module):
    """The factorized audio-visual interaction block: fusion tokens (B, nF + nv + na, C) updated from the visual
    (B, Nv, C) and audio (B, Na, C) tokens entering the layer.

    Aggregation tokens cross-attend to their modality, the fusion tokens attend to every (visual, audio) pair of
    aggregation tokens (query/key width ``attn_ratio * C``, scale ``(C / heads)^-1/2``), and the residual is added to
    the *normalised* tokens, then an MLP residual (the seed's block, spec section 2.4).
    """

    def __init__(self, dim: int, heads: int, split: tuple[int, int, int], attn_ratio: float, mlp_ratio: float,
                 pairs: bool = False, drop_path: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.heads, self.split, self.pairs = heads, split, pairs
        self.drop_path = DropPath(drop_path)  # on both residual branches, per sample
        self.scale = (dim // heads) ** -0.5
        width = int(dim * attn_ratio)
        self.norm_fused, self.norm_visual, self.norm_audio = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn_visual, self.attn_audio = CrossAttention(dim, heads), CrossAttention(dim, heads)
        self.q, self.k, self.v = nn.Linear(dim, width), nn.Linear(2 * dim, width), nn.Linear(2 * dim, dim)
        self.k.bias.requires_grad_(False)  # its gradient is exactly zero: a softmax is shift-invariant
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, fused: torch.Tensor, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        fused, visual, audio = self.norm_fused(fused), self.norm_visual(visual), self.norm_audio(audio)
        tokens, agg_visual, agg_audio = fused.split(self.split, dim=1)  # (B, nF, C), (B, nv, C), (B, na, C)
        agg_visual = self.attn_visual(agg_visual, visual)
        agg_audio = self.attn_audio(agg_audio, audio)
        pair_attention = pair_attention_pairs if self.pairs else pair_attention_additive
        tokens = self.proj(pair_attention(self, tokens, agg_visual, agg_audio))
        fused = fused + self.drop_path(torch.cat([tokens, agg_visual, agg_audio], dim=1))  # (B, nF + nv + na, C)
        return fused + self.drop_path(self.mlp(self.norm2(fused)))


# ---- masked autoencoding -----------------------------------------------------------------------------------------
def random_masking(noise: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE masking from ``noise`` (B, N): the ``int(N * (1 - ratio))`` patches of lowest noise are kept.

    Returns:
        ``keep`` (B, N_keep) kept patch indices, ``mask`` (B, N) 1 = masked, ``restore`` (B, N) the inverse
        permutation of the noise order.
    """
    order = noise.argsort(dim=1)  # (B, N): kept patches first
    restore = order.argsort(dim=1)
    keep = order[:, : int(noise.shape[1] * (1 - ratio))]
    mask = torch.ones_like(noise).scatter_(1, keep, 0.0)
    return keep, mask, restore


def patchify(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/q, p * q * C), each patch ordered (row, column, channel) as in MAE."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch[0], patch[0], w // patch[1], patch[1])  # (B, C, gh, p, gw, q)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch[0]) * (w // patch[1]), -1)  # (B, gh * gw, p * q * C)


def masked_mse(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    """Mean over masked patches (``mask`` (B, N), 1 = masked) of the per-patch mean squared error of ``pred``
    (B, N, P) against ``target`` (B, N, P), normalised per patch first when ``norm_pix``."""
    if norm_pix:
        target = (target - target.mean(dim=-1, keepdim=True)) / (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = (pred - target).square().mean(dim=-1)  # (B, N)
    return (per_patch * mask).sum() / mask.sum()


class Decoder(nn.Module):
    """MAE decoder of one modality: visible tokens (B, N_keep, C) + fusion tokens (B, nT, C) -> patches (B, N, P).

    Mask tokens fill the masked positions, a trainable position table (sin-cos initialised) is added, the fusion
    tokens are prepended (no position), then ``depth`` blocks, a LayerNorm and the patch predictor.
    """

    def __init__(self, dim: int, width: int, depth: int, heads: int, grid: tuple[int, int], patch_dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos_embed = nn.Parameter(sincos_position_table(grid, width).unsqueeze(0))  # (1, N, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.pred = nn.Linear(width, patch_dim)

    def forward(self, visible: torch.Tensor, fused: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        x, fused = self.embed(visible), self.embed(fused)  # (B, N_keep, W), (B, nT, W)
        masked = self.mask_token.expand(x.shape[0], restore.shape[1] - x.shape[1], -1)
        x = torch.cat([x, masked], dim=1).gather(1, restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, N, W)
        x = torch.cat([fused, x + self.pos_embed], dim=1)  # (B, nT + N, W)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x[:, fused.shape[1] :]))  # (B, N, P)


# ---- the method ----------------------------------------------------------------------------------------------------
def fusion_layer_set(spec: str, depth: int) -> list[int]:
    """``method.fusion_layers`` (``all``, ``none`` or indices joined by '-') -> sorted layer indices."""
    if spec in ("all", "none"):
        return list(range(depth)) if spec == "all" else []
    try:
        layers = sorted({int(part) for part in spec.split("-")})
    except ValueError:
        layers = [-1]
    if not layers or layers[0] < 0 or layers[-1] >= depth:
        raise ConfigError(f"method.fusion_layers={spec!r}: expected all, none or layer indices in [0, {depth - 1}] "
                          "joined by '-' (e.g. 6-7-8)")  # fmt: skip
    return layers


def _check_config(cfg: DeepAVFusionConfig, dim: int) -> None:
    if len(cfg.fusion_tokens) != 3 or min(cfg.fusion_tokens) < 1:
        raise ConfigError(f"method.fusion_tokens={list(cfg.fusion_tokens)}: expected 3 positive counts (fusion, "
                          "visual aggregation, audio aggregation)")  # fmt: skip
    for key in ("visual_mask_ratio", "audio_mask_ratio"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise ConfigError(f"method.{key}={getattr(cfg, key)}: expected a fraction in [0, 1)")
    if dim % cfg.fusion_heads or int(dim * cfg.attn_ratio) % cfg.fusion_heads or cfg.attn_ratio <= 0:
        raise ConfigError(f"method.fusion_heads={cfg.fusion_heads}, method.attn_ratio={cfg.attn_ratio}: the tower "
                          f"width {dim} and int({dim} * attn_ratio) must be positive multiples of "
                          "fusion_heads")  # fmt: skip
    if not 0.0 <= cfg.drop_path < 1.0:
        raise ConfigError(f"method.drop_path={cfg.drop_path}: expected a rate in [0, 1)")
    if cfg.mlp_ratio <= 0 or cfg.decoder_dim % cfg.decoder_heads or cfg.decoder_depth < 1:
        raise ConfigError(f"method.mlp_ratio={cfg.mlp_ratio}, method.decoder_dim={cfg.decoder_dim}, "
                          f"method.decoder_heads={cfg.decoder_heads}, method.decoder_depth={cfg.decoder_depth}: "
                          "expected mlp_ratio > 0, decoder_dim a multiple of decoder_heads, depth >= 1")  # fmt: skip


def _check_towers(visual: nn.Module, audio: nn.Module) -> None:
    for slot, tower in (("visual", visual), ("audio", audio)):
        if not hasattr(tower, "grid") or not hasattr(getattr(tower, "model", None), "embeddings"):
            raise ConfigError(f"method=deepavfusion: backbone.{slot}={type(tower).__name__} is not a ViT-MAE "
                              "encoder (use vit_mae_* towers, e.g. backbone=deepavfusion)")  # fmt: skip
    if visual.num_features != audio.num_features or visual.num_stages != audio.num_stages:
        raise ConfigError(f"method=deepavfusion: the towers must have the same width and depth, got visual "
                          f"{visual.num_features} x {visual.num_stages}, audio {audio.num_features} x "
                          f"{audio.num_stages}")  # fmt: skip


def _set_drop_path(tower: nn.Module, rate: float) -> None:
    """Stochastic depth ``rate`` on both residual branches of every block of a ViT-MAE ``tower``: a
    ``ViTMAELayer`` applies its ``dropout`` to the attention and the MLP output just before each residual sum, the
    places of timm's ``drop_path1`` / ``drop_path2``, so a :class:`DropPath` takes its place (the towers have no
    hidden dropout: ``hidden_dropout_prob`` 0, checked)."""
    if rate == 0.0:
        return
    hidden_dropout = tower.model.config.hidden_dropout_prob
    if hidden_dropout:
        raise ConfigError(f"method.drop_path={rate}: the tower's hidden dropout ({hidden_dropout}) sits where drop "
                          "path goes; set it to 0")  # fmt: skip
    for i in range(tower.num_stages):
        for block in tower.stage_blocks(i):
            block.dropout = DropPath(rate)


def _init_weights(module: nn.Module) -> None:
    """The seed's initialisation of its own modules: xavier-uniform linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


@dataclass
class Encoded:
    """The encoder's outputs: final-normed tokens, and the per-layer tokens before the final norms when asked."""

    visual: torch.Tensor  # (B, Nv, C)
    audio: torch.Tensor  # (B, Na, C)
    fused: torch.Tensor  # (B, nT, C)
    layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None  # (visual, audio, fused) per layer


@METHODS.register("deepavfusion")
@METHODS.register("deepavfusion_tiny")  # the same class; method/deepavfusion_tiny.yaml holds the test-size settings
class DeepAVFusion(nn.Module):
    """Early-fusion ViT pair with fusion tokens and factorized audio-visual interactions (MAE-pretrainable).

    Input ``frames (B, S, H, W, 3)`` uint8 and ``audio (B, S, F, T)`` log-mels, one frame per segment (S_v = S_a);
    each segment is one sample. Output: each tower's final tokens and their mean (``visual`` on the patch ``grid``),
    the fusion tokens as ``fused``, per-layer tokens (``layers``: visual, audio, fused) on request, and with
    ``pretrain: true`` the masked-autoencoding losses.
    """

    Config = DeepAVFusionConfig
    produces = ("audio", "audio_pooled", "visual", "visual_pooled", "grid", "fused", "layers")

    def __init__(self, cfg: DeepAVFusionConfig, visual: nn.Module, audio: nn.Module, text: nn.Module | None = None
                 ) -> None:  # fmt: skip
        super().__init__()
        _check_towers(visual, audio)
        dim, depth = visual.num_features, visual.num_stages
        _check_config(cfg, dim)
        self.cfg, self.visual_backbone, self.audio_backbone = cfg, visual, audio
        for tower in (visual, audio):
            tower.model.embeddings.cls_token.requires_grad_(False)  # no CLS token (its slot is never used)
            for module in tower.modules():
                if isinstance(module, nn.LayerNorm):
                    module.eps = TOWER_NORM_EPS
            _set_drop_path(tower, cfg.drop_path)
        split = tuple(cfg.fusion_tokens)
        self.fusion_tokens = nn.Parameter(torch.randn(1, sum(split), dim) * 0.02)
        self.fusion_blocks = nn.ModuleDict(
            {str(i): FusionBlock(dim, cfg.fusion_heads, split, cfg.attn_ratio, cfg.mlp_ratio, drop_path=cfg.drop_path)
             for i in fusion_layer_set(cfg.fusion_layers, depth)}
        )  # fmt: skip
        self.fusion_norm = nn.LayerNorm(dim)
        self.decoders = nn.ModuleDict(self._decoders(cfg, dim) if cfg.pretrain else {})
        for module in (self.fusion_blocks, self.decoders):
            module.apply(_init_weights)
        self.loss_terms = ("mae_visual", "mae_audio") if cfg.pretrain else ()  # what task=pretrain trains on
        self.dims = {name: dim for name in self.produces if name not in ("grid", "layers")}
        self.dims["layers"] = {m: (dim,) * depth for m in ("visual", "audio", "fused")}
        self._layer_ids = self._embedding_and_block_layer_ids()

    def _decoders(self, cfg: DeepAVFusionConfig, dim: int) -> dict[str, Decoder]:
        out = {}
        for slot, tower in (("visual", self.visual_backbone), ("audio", self.audio_backbone)):
            patch = tower.model.embeddings.patch_embeddings
            patch_dim = patch.patch_size[0] * patch.patch_size[1] * patch.num_channels
            out[slot] = Decoder(dim, cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, tower.grid, patch_dim)
        return out

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        """A masked-pretraining checkpoint loads into a downstream DeepAVFusion (``pretrain: false``, no decoders):
        its decoders are left out, as the seed's downstream scripts load only the encoder (``encoder.*``)."""
        if not self.decoders:
            for key in [k for k in state_dict if k.startswith(f"{prefix}decoders.")]:
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- layer-wise learning-rate decay (train.layer_decay) --------------------------------------------------
    def _embedding_and_block_layer_ids(self) -> dict[str, int]:
        """Parameter name -> layer id of the fusion tokens and the towers' embeddings (0) and of layer ``i``'s tower
        blocks and fusion block (``i + 1``); the seed's ``params_layer_ids``."""
        towers = (self.visual_backbone, self.audio_backbone)
        layer_of = {tower.model.embeddings: 0 for tower in towers}
        for i in range(self.num_layers()):
            layer_of |= {tower.stages()[i]: i + 1 for tower in towers}
            layer_of |= {self.fusion_blocks[str(i)]: i + 1} if str(i) in self.fusion_blocks else {}
        ids = {"fusion_tokens": 0}
        for prefix, module in self.named_modules():
            if module in layer_of:
                ids |= {f"{prefix}.{name}": layer_of[module] for name, _ in module.named_parameters()}
        return ids

    def num_layers(self) -> int:
        """The towers' depth: layer ids run 0 (embeddings, fusion tokens) .. depth, then ``depth + 1`` (the rest)."""
        return self.visual_backbone.num_stages

    def layer_id(self, name: str) -> int:
        """The layer of parameter ``name``: 0 for the patch / position embeddings and the fusion tokens, ``i + 1``
        for layer ``i``'s tower blocks and fusion block, ``num_layers() + 1`` for the final norms (and the
        pretraining decoders), as the seed's fine-tuning assigns them."""
        return self._layer_ids.get(name, self.num_layers() + 1)

    # ---- encoder ---------------------------------------------------------------------------------------------
    @staticmethod
    def patch_tokens(tower: nn.Module, pixels: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Patch embedding + the fixed position table, then (with ``keep`` (B, N_keep)) the kept patches."""
        embeddings = tower.model.embeddings
        tokens = embeddings.patch_embeddings(pixels) + embeddings.position_embeddings[:, 1:]  # (B, N, C), no CLS
        if keep is None:
            return tokens
        return tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))  # (B, N_keep, C)

    def encode(self, pixels: torch.Tensor, spec: torch.Tensor, visual_keep: torch.Tensor | None = None,
               audio_keep: torch.Tensor | None = None, layers: bool = False) -> Encoded:  # fmt: skip
        """The fused encoder on ``pixels`` (B, 3, H, W) and ``spec`` (B, 1, F, T), optionally on kept patches."""
        visual = self.patch_tokens(self.visual_backbone, pixels, visual_keep)  # (B, Nv, C)
        audio = self.patch_tokens(self.audio_backbone, spec, audio_keep)  # (B, Na, C)
        fused = self.fusion_tokens.expand(visual.shape[0], -1, -1)  # (B, nT, C)
        per_layer = []
        for i in range(self.visual_backbone.num_stages):
            block = self.fusion_blocks[str(i)] if str(i) in self.fusion_blocks else None
            new_visual = self._tower_block(self.visual_backbone, i, visual, fused if block else None)
            new_audio = self._tower_block(self.audio_backbone, i, audio, fused if block else None)
            fused = block(fused, visual, audio) if block else fused  # from the tokens entering the layer
            visual, audio = new_visual, new_audio
            per_layer += [(visual, audio, fused)] if layers else []
        return Encoded(
            self.visual_backbone.head(Hidden(visual)),
            self.audio_backbone.head(Hidden(audio)),
            self.fusion_norm(fused),
            per_layer if layers else None,
        )

    @staticmethod
    def _tower_block(tower: nn.Module, i: int, tokens: torch.Tensor, fused: torch.Tensor | None) -> torch.Tensor:
        """Layer ``i`` of ``tower`` on ``[fused ; tokens]`` (the fusion-token outputs dropped), or on ``tokens``."""
        if fused is None:
            return tower.run_block(i, 0, Hidden(tokens)).tokens
        out = tower.run_block(i, 0, Hidden(torch.cat([fused, tokens], dim=1))).tokens  # (B, nT + N, C)
        return out[:, fused.shape[1] :]

    # ---- masked autoencoding ----------------------------------------------------------------------------------
    def mae_losses(self, pixels: torch.Tensor, spec: torch.Tensor, visual_noise: torch.Tensor | None = None,
                   audio_noise: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], Encoded]:  # fmt: skip
        """Masked-autoencoding losses ``mae_visual`` and ``mae_audio`` on random masks (``*_noise`` (B, N) picks
        them: lowest noise kept; uniform random by default), and the encoding of the visible patches."""
        if not self.decoders:
            raise ConfigError("method.pretrain=false: this DeepAVFusion has no decoders; set method.pretrain=true")
        masks = {}
        for slot, tower, noise, ratio in (
            ("visual", self.visual_backbone, visual_noise, self.cfg.visual_mask_ratio),
            ("audio", self.audio_backbone, audio_noise, self.cfg.audio_mask_ratio),
        ):
            length = tower.grid[0] * tower.grid[1]
            noise = torch.rand(pixels.shape[0], length, device=pixels.device) if noise is None else noise
            masks[slot] = random_masking(noise, ratio)
        encoded = self.encode(pixels, spec, masks["visual"][0], masks["audio"][0])
        losses = {}
        for slot, tower, inputs, visible in (("visual", self.visual_backbone, pixels, encoded.visual),
                                             ("audio", self.audio_backbone, spec, encoded.audio)):  # fmt: skip
            _, mask, restore = masks[slot]
            pred = self.decoders[slot](visible, encoded.fused, restore)  # (B, N, P)
            target = patchify(inputs, tower.model.embeddings.patch_embeddings.patch_size)  # (B, N, P)
            losses[f"mae_{slot}"] = masked_mse(target, pred, mask, self.cfg.norm_pix_loss)
        return losses, encoded

    # ---- AVFeatures ----------------------------------------------------------------------------------------------
    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames`` (B, S, H, W, 3) and ``audio`` (B, S, F, T) -> pixels (B*S, 3, h, w) and spectrograms
        (B*S, 1, F, T') with the log-mel tiled along time and cut to the audio tower's width T'."""
        frames, audio = batch["frames"], batch["audio"]
        if frames.shape[1] != audio.shape[1]:
            raise DataError(f"method=deepavfusion pairs one frame with each audio segment; the batch has "
                            f"{frames.shape[1]} frames and {audio.shape[1]} audio segments per clip")  # fmt: skip
        size = self.audio_backbone.model.embeddings.patch_embeddings.image_size
        if audio.shape[2] != size[0]:
            raise DataError(f"method=deepavfusion: the audio tower takes {size[0]} mel bins, the batch has "
                            f"{audio.shape[2]} (set data.n_mels={size[0]})")  # fmt: skip
        pixels = self.visual_backbone.preprocess(frames.flatten(0, 1))  # (B*S, H, W, 3) -> (B*S, 3, h, w)
        spec = audio.flatten(0, 1).unsqueeze(1)  # (B*S, 1, F, T)
        repeats = -(-size[1] // spec.shape[-1])  # ceil(T' / T) copies
        return pixels, spec.repeat(1, 1, 1, repeats)[..., : size[1]]  # (B*S, 1, F, T')

    def forward(self, batch: dict[str, torch.Tensor], layers: bool = False) -> AVFeatures:
        pixels, spec = self.inputs(batch)
        losses = {}
        if self.cfg.pretrain:
            losses, encoded = self.mae_losses(pixels, spec)
            encoded = self.encode(pixels, spec, layers=True) if layers else encoded  # layers: of every patch
        else:
            encoded = self.encode(pixels, spec, layers=layers)
        return self._features(batch, encoded, losses)

    def downstream(self, batch: dict[str, torch.Tensor]) -> AVFeatures:
        """The features a downstream task sees (the encoder on every patch, no losses), also with ``pretrain:
        true``: what ``task=pretrain``'s kNN monitor probes."""
        return self._features(batch, self.encode(*self.inputs(batch)), {})

    def _features(self, batch: dict[str, torch.Tensor], encoded: Encoded, losses: dict[str, torch.Tensor]
                  ) -> AVFeatures:  # fmt: skip
        """``encoded`` (B*S, ...) tokens -> ``AVFeatures`` of (B, S, ...) tensors."""
        b, s = batch["frames"].shape[:2]
        per_segment = lambda x: x.unflatten(0, (b, s))  # noqa: E731  (B*S, ...) -> (B, S, ...)
        visual, audio = per_segment(encoded.visual), per_segment(encoded.audio)  # (B, S, N, C)
        grid = self.visual_backbone.grid
        grid = grid if visual.shape[2] == grid[0] * grid[1] else None  # masked (pretraining): no grid
        return AVFeatures(
            audio=audio,
            audio_pooled=audio.mean(dim=2),
            visual=visual,
            visual_pooled=visual.mean(dim=2),
            grid=grid,
            fused=per_segment(encoded.fused),
            layers=None if encoded.layers is None else self._layers(encoded, per_segment),
            losses=losses,
        )

    @staticmethod
    def _layers(encoded: Encoded, per_segment: Callable[[torch.Tensor], torch.Tensor]
                ) -> dict[str, tuple[torch.Tensor, ...]]:  # fmt: skip
        """The per-layer (visual, audio, fused) triples -> modality -> per-layer (B, S, N, C) tokens."""
        names = ("visual", "audio", "fused")
        return {m: tuple(per_segment(layer[k]) for layer in encoded.layers) for k, m in enumerate(names)}

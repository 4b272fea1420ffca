"""DG-SCT: dual-guided spatial-channel-temporal adapters between a frozen visual and a frozen audio transformer.

Paper: Duan et al., "Cross-modal Prompts: Adapting Large Pre-trained Models for Audio-Visual Downstream Tasks",
NeurIPS 2023; code studied: haoyi-duan/DG-SCT (``DG-SCT/AVE/nets/net_trans.py``, the AVE and AVVP variants, and
``few-shot/nets/net_trans.py``; spec in the project's ``specs/dgsct.md``).

The two backbones (Swin-V2 for frames, HTS-AT for the log-mel of each one-second segment) run in lock-step. Blocks of
the shallower side are paired with evenly spaced blocks of the deeper one (:func:`pair_blocks`): stage by stage when
both have the same number of stages (the paper's Swin-V2-L 2-2-18-2 with HTS-AT 2-2-6-2 gives 12 pairs; stage 3 pairs
HTS-AT block k with Swin block 3k+2), over the flattened block sequences otherwise (the few-shot CLIP ViT-B/32, twelve
one-block stages, with HTS-AT's 2-2-6-2 gives 12 pairs, 1:1); each side ends its stages (patch merging) at its own
stage boundaries (:func:`plan_pairs`). Each pair gets four :class:`DGSCTAdapter`: audio-p1, visual-p1 (computed from
the tokens entering the pair) and audio-p2, visual-p2 (from the tokens after the first half). A Swin-V2 or CLIP block
is split into its attention residual (p1 is added beside it) and its MLP residual (p2 beside it); any other block
(HTS-AT) runs whole, then p1 and p2 are added one after the other, as in the seed. Each adapter aligns the other
modality to its own token count and width, lets 32 latent tokens gather from it, derives channel and spatial
attention maps guided by it, modulates its own tokens with ``alpha * Mc + beta * sigmoid(Ms) (+ gamma * Mt) + 1 -
alpha`` and returns a zero-gated grouped bottleneck of the result. The per-segment embeddings are the final tokens
pooled with the softmax spatial map of the last p2 adapter, except for visual backbones with a CLS token (ViT-style,
no token grid), whose embedding is the CLS token after the final norm, as in the few-shot seed.

What we changed, and why:

* One adapter class and one runner for every depth: the pairing rule is computed from the stage depths, so the test
  sizes (``swinv2_tiny`` / ``clip_vit_tiny`` + ``htsat_tiny``) run the same code as the paper size.
* The few-shot seed computes its p1 adapters after the attention / HTS-AT block, we keep the AVE order (from the
  tokens entering the pair) for every backbone pair.
* The audio input (``audio_frontend``): ``generic`` (default) is the pipeline's log-mel of each one-second segment
  (``data.sample_rate`` / ``data.hop_ms``), tiled ``audio_tile`` times along time. ``seed`` is the seed's exactly: the
  pipeline hands over each segment's 32 kHz waveform, which is tiled ``audio_tile`` times and turned into HTS-AT's
  own log-mel (``avlearn.audio.htsat_segment_input``) on the model's device; the paper recipes use it.
  ``spec_augment`` adds HTS-AT's training-time SpecAugment (time 64 x 2, frequency 8 x 2) after its input norm.
* Frozen backbones keep their batch-norm statistics (``Backbone.freeze("all")``); the seed lets HTS-AT's input batch
  norm drift in ``train()``.
* Unused seed parameters are not created (``gate_tk``, ``adapter_token_downsampler``, ``fc_caption``, the temporal
  gate of the supervised variants), so every parameter of the method receives a gradient.
* The few-shot temporal gate (``gamma > 0``: ``+ gamma * sigmoid(W_t mean_N(y_t))``, one scalar per segment t) is off
  by default, as in the supervised seed code; the seed hard-codes 10 segments per clip, ours works for any S. The
  CMBS-style temporal module of the supervised tasks lives in the task heads (``avlearn.tasks.ave``,
  ``avlearn.tasks.avvp``), applied once after the backbones as in the seed.
* Per-task adapters (``adapter_variant``): the seed re-implements the adapter per task with structural drift;
  ``ave`` (also AVVP), ``avs_s4``, ``avs_ms3`` and ``avqa`` reproduce each (latent init, token alignment by
  convolution or by re-gridding, LayerNorm before the bottleneck, gate/LayerNorm order; ``ADAPTER_VARIANTS``), the
  numbers (latents, reduction, groups, alpha/beta, batch norm, audio gate) are the ordinary keys. Parity with each
  seed adapter: ``tests/reference/test_dgsct_adapter.py``.
* ``visual_pyramid`` (for AVS): each visual stage's tokens before its patch merging, the last one after the final
  norm, as the seed's AVS model takes them.
* Optional activation checkpointing (``checkpointing``), which the seed lacks: of every paired step and unpaired block
  (``checkpoint_unit: step``), or of every adapter, half-block and unpaired block (``piece``: more saved inputs, but
  backward recomputes one piece at a time instead of a whole paired step with its four adapters). Eager
  recomputation restores the batch-norm statistics it changed, so a step updates them once, as without
  checkpointing; under ``torch.compile`` the compiled backward does not update them again by itself.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avlearn.audio.presets import HTSAT_SAMPLE_RATE, htsat_segment_input
from avlearn.audio.specaugment import SpecAugment
from avlearn.backbones.base import Hidden
from avlearn.errors import ConfigError, DataError
from avlearn.methods.base import AVFeatures, text_features
from avlearn.registry import METHODS

Step = tuple[int | None, int | None, int | None]  # (visual block, audio block, pair index or None)
Block = tuple[int, int]  # (stage, block within the stage)
PlanStep = tuple[Block | None, Block | None, int | None]  # (visual block, audio block, pair index or None)
Half = Callable[[Hidden], Hidden]
SEED_MEL_BINS = 64  # HTS-AT's AudioSet front end


@dataclass
class DGSCTConfig:
    """Schema of ``method/dgsct*.yaml`` (defaults: the seed's AVE/AVVP settings)."""

    name: str = "dgsct"
    num_latents: int = 32  # latent cross-modal tokens per adapter
    reduction: int = 8  # bottleneck width = channels / reduction
    groups: int = 2  # groups of the bottleneck's 1x1 convolutions
    alpha: float = 0.3  # weight of the channel map in the modulation
    beta: float = 0.05  # weight of the spatial map
    gamma: float = 0.0  # weight of the few-shot temporal gate; 0 = none (supervised tasks)
    batch_norm: bool = True  # batch norm inside the bottleneck
    audio_gate: bool = True  # zero-initialised output gate on the audio adapters (visual ones always have it)
    split_visual_blocks: bool = True  # visual p1/p2 beside a Swin-V2 block's attention/MLP residuals
    audio_tile: int = 10  # one-second log-mel tiled this many times along time before the audio backbone
    checkpointing: bool = False  # recompute activations in backward instead of keeping them (training only)
    checkpoint_unit: str = "piece"  # piece: each adapter, half-block and unpaired block; step: a paired step at a time
    adapter_variant: str = "ave"  # the seed task whose adapter structure to use: ave, avs_s4, avs_ms3, avqa
    audio_frontend: str = "generic"  # generic: the pipeline's one-second log-mel; seed: HTS-AT's own from the waveform
    spec_augment: bool = False  # HTS-AT's SpecAugment (time 64 x 2, frequency 8 x 2) in training


@dataclass(frozen=True)
class AdapterVariant:
    """Structural differences between the seed's per-task adapters (its numbers are ordinary config keys)."""

    zero_latents: bool  # latent tokens start at 0 (else uniform in [0, 1))
    regrid: bool  # align the other side by width, then bicubic resampling of its square token grid (else token conv)
    norm_before: bool  # LayerNorm before the bottleneck
    gate_before_norm: bool  # output gate, then the last LayerNorm (else the LayerNorm, then the gate)


# The seed's adapters (spec section 2.6). Their other settings, for recipes: AVE/AVVP: 32 latents, r 8, 2 groups,
# batch norm, audio gate, alpha/beta 0.3/0.05; AVS-S4: 32 latents, r 8, no batch norm, no audio gate; AVS-MS3: r 2,
# alpha/beta 0.2/0.1, no batch norm, no audio gate; AVQA: 2 latents, r 8, 4 groups, no batch norm, no audio gate.
ADAPTER_VARIANTS = {
    "ave": AdapterVariant(zero_latents=False, regrid=False, norm_before=True, gate_before_norm=False),
    "avs_s4": AdapterVariant(zero_latents=True, regrid=True, norm_before=False, gate_before_norm=True),
    "avs_ms3": AdapterVariant(zero_latents=True, regrid=False, norm_before=False, gate_before_norm=True),
    "avqa": AdapterVariant(zero_latents=True, regrid=False, norm_before=True, gate_before_norm=False),
}


def adapter_variant(cfg: DGSCTConfig) -> AdapterVariant:
    """The adapter structure named by ``method.adapter_variant``."""
    if cfg.adapter_variant not in ADAPTER_VARIANTS:
        raise ConfigError(f"method.adapter_variant={cfg.adapter_variant!r}: expected one of "
                          f"{', '.join(ADAPTER_VARIANTS)}")  # fmt: skip
    return ADAPTER_VARIANTS[cfg.adapter_variant]


def _square_side(tokens: int, what: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ConfigError(f"method.adapter_variant=avs_s4 re-grids square token grids; the {what} side has {tokens}")
    return side


class DGSCTAdapter(nn.Module):
    """One DG-SCT adapter: own tokens ``x (B', N, C)`` guided by the other modality ``y (B', N', C')``.

    Returns the residual ``(B', N, C)`` to add to ``x`` and the softmax spatial map ``(B', 1, N)`` used for pooling.

    Args:
        dim: C, width of the tokens it updates.
        tokens: N, their number.
        other_dim: C', width of the other modality's tokens.
        other_tokens: N', their number.
        cfg: Latent count, reduction, groups, alpha/beta/gamma, batch norm.
        gate: Multiply the output by a scalar initialised to 0 (the adapter starts as the identity).
    """

    def __init__(
        self, dim: int, tokens: int, other_dim: int, other_tokens: int, cfg: DGSCTConfig, gate: bool = True
    ) -> None:
        super().__init__()
        if dim % cfg.reduction or (dim // cfg.reduction) % cfg.groups:
            raise ConfigError(f"DG-SCT adapter width {dim}: reduction {cfg.reduction} and groups {cfg.groups} "
                              f"must divide it (method.reduction, method.groups)")  # fmt: skip
        self.alpha, self.beta, self.gamma = cfg.alpha, cfg.beta, cfg.gamma
        self.variant = adapter_variant(cfg)
        half, hidden = dim // 2, dim // cfg.reduction
        if self.variant.regrid:
            self.grids = (_square_side(other_tokens, "other"), _square_side(tokens, "own"))
        else:
            self.token_align = nn.Conv1d(other_tokens, tokens, 1)  # mixes over the token axis: N' -> N
        self.width_align = nn.Linear(other_dim, dim)
        init = torch.zeros if self.variant.zero_latents else torch.rand
        self.latents = nn.Parameter(init(cfg.num_latents, dim))
        self.latent_gate = nn.Parameter(torch.zeros(1))
        self.channel_other, self.channel_own = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.channel_mid, self.channel_out = nn.Linear(dim, half), nn.Linear(half, dim)
        self.spatial_own, self.spatial_other = nn.Linear(dim, half), nn.Linear(dim, half)
        self.spatial_out = nn.Linear(half, 1)
        self.temporal = nn.Linear(dim, 1) if cfg.gamma > 0 else None
        self.norm_in = nn.LayerNorm(dim) if self.variant.norm_before else nn.Identity()
        self.norm_out = nn.LayerNorm(dim)
        self.down = nn.Conv1d(dim, hidden, 1, groups=cfg.groups, bias=False)
        self.up = nn.Conv1d(hidden, dim, 1, groups=cfg.groups, bias=False)
        self.bn_down = nn.BatchNorm1d(hidden) if cfg.batch_norm else nn.Identity()
        self.bn_up = nn.BatchNorm1d(dim) if cfg.batch_norm else nn.Identity()
        self.gate = nn.Parameter(torch.zeros(1)) if gate else None

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self._align(other)  # (B', N', C') -> (B', N, C)
        x = x + self.latent_gate * self._latent_read(x, y)
        guide = y.mean(dim=1)  # (B', C)
        channel = self._channel_map(x, guide)  # (B', 1, C)
        spatial = self.spatial_out(
            F.relu(self.spatial_own(x * (channel + 1))) * F.relu(self.spatial_other(guide))[:, None]
        )
        scale = self.alpha * channel + self.beta * spatial.sigmoid() + 1 - self.alpha  # (B', N, C)
        if self.temporal is not None:
            scale = scale + self.gamma * self.temporal(guide).sigmoid()[:, None]  # (B', 1, 1)
        z = self._bottleneck(x * scale)  # (B', N, C)
        z = self.norm_out(self._gated(z)) if self.variant.gate_before_norm else self._gated(self.norm_out(z))
        pool = torch.tanh(spatial).transpose(1, 2).softmax(dim=-1)  # (B', 1, N)
        return z, pool

    def _align(self, other: torch.Tensor) -> torch.Tensor:
        """The other side at this side's token count and width: a 1x1 convolution over tokens then a linear map, or
        (``regrid``) the linear map then a bicubic resampling of the square token grid."""
        if not self.variant.regrid:
            return self.width_align(self.token_align(other))  # (B', N', C') -> (B', N, C') -> (B', N, C)
        (side_other, side), y = self.grids, self.width_align(other)  # (B', N', C)
        grid = y.transpose(1, 2).unflatten(-1, (side_other, side_other))  # (B', C, h', w')
        grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False)  # (B', C, h, w)
        return grid.flatten(2).transpose(1, 2)  # (B', N, C)

    def _gated(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.gate is None else self.gate * z

    def _latent_read(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Latent tokens gather from ``y``; ``x`` reads them back (unscaled dot products, as in LAVISH/DG-SCT)."""
        latents = self.latents.expand(x.shape[0], -1, -1)  # (B', K, C)
        latents = latents + (latents @ y.transpose(1, 2)).softmax(dim=-1) @ y  # (B', K, C)
        return (x @ latents.transpose(1, 2)).softmax(dim=-1) @ latents  # (B', N, C)

    def _channel_map(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        query = (F.relu(self.channel_other(guide))[:, None] * F.relu(self.channel_own(x))).mean(dim=1)  # (B', C)
        return self.channel_out(F.relu(self.channel_mid(query))).sigmoid()[:, None]  # (B', 1, C)

    def _bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm_in(x).transpose(1, 2)  # (B', C, N)
        z = self.bn_up(self.up(F.relu(self.bn_down(self.down(z)))))  # (B', C, N)
        return z.transpose(1, 2)  # (B', N, C)


class _PairAdapters(nn.Module):
    """The four adapters of one paired block."""

    def __init__(self, visual: tuple[int, int], audio: tuple[int, int], cfg: DGSCTConfig) -> None:
        super().__init__()
        (nv, cv), (na, ca) = visual, audio
        self.audio_p1 = DGSCTAdapter(ca, na, cv, nv, cfg, gate=cfg.audio_gate)
        self.visual_p1 = DGSCTAdapter(cv, nv, ca, na, cfg)
        self.audio_p2 = DGSCTAdapter(ca, na, cv, nv, cfg, gate=cfg.audio_gate)
        self.visual_p2 = DGSCTAdapter(cv, nv, ca, na, cfg)


def pair_blocks(visual_blocks: int, audio_blocks: int) -> list[Step]:
    """The run order of one stage: ``(visual block, audio block, pair)`` per step.

    The shorter stage's block k is paired with block ``(k + 1) * n // m - 1`` of the longer one (n, m the longer and
    shorter depths): the last of each group of n / m blocks, so 18 Swin with 6 HTS-AT blocks pairs 2, 5, ..., 17.
    Blocks of the longer stage without a partner run alone, in order.
    """
    n, m = max(visual_blocks, audio_blocks), min(visual_blocks, audio_blocks)
    partner = {(k + 1) * n // m - 1: k for k in range(m)}
    visual_longer = visual_blocks >= audio_blocks
    steps, pair = [], 0
    for j in range(n):
        k = partner.get(j)
        v, a = (j, k) if visual_longer else (k, j)
        steps.append((v, a, pair if k is not None else None))
        pair += k is not None
    return steps


def plan_pairs(visual_depths: Sequence[int], audio_depths: Sequence[int]) -> list[PlanStep]:
    """The run order of the whole model: ``((stage, block) or None, (stage, block) or None, pair)`` per step.

    With as many visual as audio stages, :func:`pair_blocks` pairs each stage with the same stage of the other side
    (the paper's layout). Otherwise it pairs the two flattened block sequences (blocks in stage order), so that e.g.
    CLIP ViT-B/32's 12 one-block stages meet HTS-AT's 2-2-6-2 blocks 1:1. Pair indices count up over the model.
    """
    if len(visual_depths) == len(audio_depths):
        stages = enumerate(zip(visual_depths, audio_depths, strict=True))
        groups = [(_blocks([d_v], i), _blocks([d_a], i)) for i, (d_v, d_a) in stages]
    else:
        groups = [(_blocks(visual_depths), _blocks(audio_depths))]
    plan, pairs = [], 0
    for visual, audio in groups:
        for j_v, j_a, pair in pair_blocks(len(visual), len(audio)):
            plan.append((_at(visual, j_v), _at(audio, j_a), None if pair is None else pairs + pair))
        pairs += min(len(visual), len(audio))
    return plan


def _blocks(depths: Sequence[int], first_stage: int = 0) -> list[Block]:
    return [(first_stage + i, j) for i, depth in enumerate(depths) for j in range(depth)]


def _at(blocks: list[Block], index: int | None) -> Block | None:
    return None if index is None else blocks[index]


def _swinv2_attention_residual(block: nn.Module, hidden: Hidden) -> Hidden:
    """First half of a ``Swinv2Layer``: ``x + drop_path(norm(window_attention(x)))``, as its own forward does."""
    from transformers.models.swinv2.modeling_swinv2 import window_partition, window_reverse

    (height, width), tokens = hidden.grid, hidden.tokens
    b, n, c = tokens.shape
    size, shift = block.window_size, block.shift_size
    x, _ = block.maybe_pad(tokens.view(b, height, width, c), height, width)  # (B, Hp, Wp, C)
    padded_h, padded_w = x.shape[1:3]
    if shift > 0:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows = window_partition(x, size).view(-1, size * size, c)  # (B * windows, size^2, C)
    mask = block.get_attn_mask(padded_h, padded_w, dtype=x.dtype, device=x.device)
    out = block.attention(windows, mask)[0].view(-1, size, size, c)  # (B * windows, size, size, C)
    x = window_reverse(out, size, padded_h, padded_w)  # (B, Hp, Wp, C)
    if shift > 0:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    x = x[:, :height, :width].reshape(b, n, c)  # (B, N, C)
    return replace(hidden, tokens=tokens + block.drop_path(block.layernorm_before(x)))


def _swinv2_mlp_residual(block: nn.Module, hidden: Hidden) -> Hidden:
    """Second half of a ``Swinv2Layer``: ``x + drop_path(norm(mlp(x)))``."""
    x = hidden.tokens
    return replace(hidden, tokens=x + block.drop_path(block.layernorm_after(block.output(block.intermediate(x)))))


def _clip_attention_residual(block: nn.Module, hidden: Hidden) -> Hidden:
    """First half of a ``CLIPEncoderLayer``: ``x + attention(norm(x))``."""
    x = hidden.tokens
    attended = block.self_attn(hidden_states=block.layer_norm1(x), attention_mask=hidden.attention_mask)[0]
    return replace(hidden, tokens=x + attended)


def _clip_mlp_residual(block: nn.Module, hidden: Hidden) -> Hidden:
    """Second half of a ``CLIPEncoderLayer``: ``x + mlp(norm(x))``."""
    x = hidden.tokens
    return replace(hidden, tokens=x + block.mlp(block.layer_norm2(x)))


def _halves(backbone: nn.Module, block: Block, split: bool) -> tuple[Half, Half]:
    """A block as two steps: attention and MLP residuals for Swin-V2 and CLIP blocks when ``split``; otherwise the
    whole block, then nothing."""
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer
    from transformers.models.swinv2.modeling_swinv2 import Swinv2Layer

    module = backbone.stage_blocks(block[0])[block[1]]
    if split and isinstance(module, Swinv2Layer):
        return partial(_swinv2_attention_residual, module), partial(_swinv2_mlp_residual, module)
    if split and isinstance(module, CLIPEncoderLayer):
        return partial(_clip_attention_residual, module), partial(_clip_mlp_residual, module)
    return partial(backbone.run_block, *block), _unchanged


def _unchanged(hidden: Hidden) -> Hidden:
    return hidden


def _input_name(backbone: nn.Module, *names: str) -> str:
    accepted = inspect.signature(backbone.embed).parameters
    for name in names:
        if name in accepted:
            return name
    raise ConfigError(f"DG-SCT: backbone {type(backbone).__name__} takes none of the inputs {', '.join(names)}")


@torch.no_grad()
def _stage_shapes(backbone: nn.Module) -> tuple[list[tuple[int, int]], bool]:
    """(tokens, width) entering each stage, from the stem and the stage ends on a dummy input (in eval mode, so
    batch-norm statistics stay untouched), and whether the tokens lie on a 2-D grid (else: a CLS token first).

    Blocks keep the token shape (transformer stages), so only ``embed`` and ``end_stage`` are run.
    """
    was_training = backbone.training
    backbone.eval()
    hidden, shapes = backbone.embed(**backbone.dummy_inputs(1)), []
    has_grid = hidden.grid is not None and len(hidden.grid) == 2
    for i in range(backbone.num_stages):
        shapes.append(tuple(hidden.tokens.shape[1:]))
        hidden = backbone.end_stage(i, hidden)
    backbone.train(was_training)
    return shapes, has_grid


def _check_audio_options(cfg: DGSCTConfig, audio: nn.Module) -> None:
    """Validate ``audio_frontend`` / ``spec_augment`` against the audio backbone; switch its SpecAugment on."""
    if cfg.audio_frontend not in ("generic", "seed"):
        raise ConfigError(f"method.audio_frontend={cfg.audio_frontend!r}: expected generic or seed")
    pre = getattr(audio, "preprocess", None)
    is_htsat = hasattr(audio, "spec_augment")
    if cfg.audio_frontend == "seed" and not (
        is_htsat and pre.sample_rate == HTSAT_SAMPLE_RATE and pre.num_mel_bins == SEED_MEL_BINS
    ):
        raise ConfigError(f"method.audio_frontend=seed needs a 32 kHz, 64-band HTS-AT audio backbone (htsat_base), "
                          f"not {type(audio).__name__}; use generic")  # fmt: skip
    if cfg.spec_augment:
        if not is_htsat:
            raise ConfigError(f"method.spec_augment=true needs an HTS-AT audio backbone, not {type(audio).__name__}")
        audio.spec_augment = SpecAugment()


def _last_blocks(depths: Sequence[int]) -> list[Block]:
    return [(i, depth - 1) for i, depth in enumerate(depths)]


def _grid_map(tokens: torch.Tensor, grid: tuple[int, int], b: int, s: int) -> torch.Tensor:
    """``(B*S, H*W, C)`` tokens -> ``(B, S, C, H, W)`` map."""
    return tokens.transpose(1, 2).unflatten(-1, grid).unflatten(0, (b, s))  # (B*S, C, H*W) -> (B, S, C, H, W)


@METHODS.register("dgsct")
@METHODS.register("dgsct_tiny")  # the same class; method/dgsct_tiny.yaml holds the test-size settings
@METHODS.register("dgsct_fewshot")  # the few-shot settings (CLIP + CLAP towers, temporal gate): method/dgsct_fewshot*
@METHODS.register("dgsct_fewshot_tiny")
class DGSCT(nn.Module):
    """DG-SCT adapters between paired visual / HTS-AT blocks; ``frames (B, S, H, W, 3)`` uint8 and ``audio (B, S, F,
    T)`` log-mel per segment (``audio_frontend: seed``: ``(B, S, 1, N)`` 32 kHz waveforms) -> AVFeatures (tokens,
    pooled embeddings and, for grid backbones, the stage pyramid).

    ``produces`` (class): what every visual backbone gives; an instance adds ``grid`` and ``visual_pyramid`` when
    its visual backbone has a token grid (Swin-V2), so a pairing check on the built method refuses AVS and AVQA for
    CLIP / ViT, and ``text`` / ``text_pooled`` with a text tower. ``dims``: the widths (contract in ``base.py``).
    """

    Config = DGSCTConfig
    produces = ("audio", "audio_pooled", "visual", "visual_pooled")

    def __init__(self, cfg: DGSCTConfig, visual: nn.Module, audio: nn.Module, text: nn.Module | None = None) -> None:
        super().__init__()
        if cfg.checkpoint_unit not in ("step", "piece"):
            raise ConfigError(f"method.checkpoint_unit={cfg.checkpoint_unit!r}: expected step or piece")
        for slot, tower in (("visual", visual), ("audio", audio)):
            if not getattr(tower, "num_stages", 0):
                raise ConfigError(f"backbone.{slot}: DG-SCT puts adapters between a tower's blocks and "
                                  f"{type(tower).__name__} has none (cached features); use a transformer")  # fmt: skip
        _check_audio_options(cfg, audio)
        adapter_variant(cfg)
        self.cfg = cfg
        self.visual_backbone, self.audio_backbone, self.text_backbone = visual, audio, text
        self._audio_input = _input_name(audio, "spectrogram", "input_features")
        (v_shapes, self._visual_grid), (a_shapes, _) = _stage_shapes(visual), _stage_shapes(audio)
        depths = [[len(b.stage_blocks(i)) for i in range(b.num_stages)] for b in (visual, audio)]
        self.plan = plan_pairs(*depths)
        self.pairs = nn.ModuleList(
            _PairAdapters(v_shapes[v[0]], a_shapes[a[0]], cfg) for v, a, pair in self.plan if pair is not None
        )
        self._stage_ends = [set(_last_blocks(d)) for d in depths]
        self.dims = {"audio": audio.num_features, "audio_pooled": audio.num_features, "visual": visual.num_features,
                     "visual_pooled": visual.num_features}  # fmt: skip
        if self._visual_grid:
            self.produces = self.produces + ("grid", "visual_pyramid")
            self.dims["visual_pyramid"] = tuple(c for _, c in v_shapes)
        if text is not None:
            self.produces = self.produces + ("text", "text_pooled")
            self.dims.update(text=text.num_features, text_pooled=text.num_features)

    def _embed(self, frames: torch.Tensor, audio: torch.Tensor) -> tuple[Hidden, Hidden]:
        pixels = self.visual_backbone.preprocess(frames.flatten(0, 1))  # (B*S, H, W, 3) uint8 -> (B*S, 3, h, w)
        if self.cfg.audio_frontend == "seed":  # audio: (B, S, 1, N) waveforms at 32 kHz
            mel = htsat_segment_input(audio.flatten(0, 2), HTSAT_SAMPLE_RATE, self.cfg.audio_tile)  # (B*S, T', F)
        else:
            mel = audio.flatten(0, 1).repeat(1, 1, self.cfg.audio_tile)  # (B*S, F, tile * T)
            if self._audio_input == "spectrogram":
                mel = mel.transpose(1, 2)  # (B*S, tile * T, F), HTS-AT's layout
        return self.visual_backbone.embed(pixel_values=pixels), self.audio_backbone.embed(**{self._audio_input: mel})

    def _run(self, fn: Callable, *args: object, unit: str = "step") -> tuple:
        """``fn(*args)``; recomputed in backward instead of keeping its activations when checkpointing a training
        step at this ``unit`` (``method.checkpoint_unit``)."""
        checkpointed = self.cfg.checkpointing and self.cfg.checkpoint_unit == unit and self.training
        if not (checkpointed and torch.is_grad_enabled()):
            return fn(*args)
        if torch.compiler.is_compiling():  # the compiled backward recomputes without updating buffers again
            return checkpoint(fn, *args, use_reentrant=False)
        return checkpoint(fn, *args, use_reentrant=False, context_fn=self._checkpoint_contexts)

    def _checkpoint_contexts(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """(forward, recomputation) contexts of a checkpointed step."""
        return contextlib.nullcontext(), self._norm_stats_kept()

    @contextlib.contextmanager
    def _norm_stats_kept(self) -> Iterator[None]:
        """Restores the batch-norm buffers the recomputation changed (it must not count a second update). Buffers it
        left alone are not written: a norm outside the recomputed piece (HTS-AT's input norm) may have saved them for
        its own backward, which a write would invalidate."""
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [[b.clone() for b in m.buffers()] for m in norms]
        try:
            yield
        finally:
            with torch.no_grad():
                for module, buffers in zip(norms, saved, strict=True):
                    for buffer, value in zip(module.buffers(), buffers, strict=True):
                        if not torch.equal(buffer, value):
                            buffer.copy_(value)

    def _step(
        self, v_block: Block | None, a_block: Block | None, pair: int | None, v: Hidden, a: Hidden
    ) -> tuple[Hidden, Hidden, tuple[torch.Tensor, torch.Tensor] | None]:
        """One plan step: a paired block (with its spatial pooling maps) or one block of one side."""
        if pair is not None:
            return self._paired_step(v_block, a_block, self.pairs[pair], v, a)
        if v_block is not None:
            return self._run(self.visual_backbone.run_block, *v_block, v, unit="piece"), a, None
        return v, self._run(self.audio_backbone.run_block, *a_block, a, unit="piece"), None

    def _paired_step(
        self, v_block: Block, a_block: Block, adapters: _PairAdapters, v: Hidden, a: Hidden
    ) -> tuple[Hidden, Hidden, tuple[torch.Tensor, torch.Tensor]]:
        v_first, v_second = _halves(self.visual_backbone, v_block, self.cfg.split_visual_blocks)
        a_first, a_second = _halves(self.audio_backbone, a_block, split=False)
        piece = partial(self._run, unit="piece")
        residual_v, _ = piece(adapters.visual_p1, v.tokens, a.tokens)
        residual_a, _ = piece(adapters.audio_p1, a.tokens, v.tokens)
        v, a = piece(v_first, v), piece(a_first, a)
        v, a = replace(v, tokens=v.tokens + residual_v), replace(a, tokens=a.tokens + residual_a)
        residual_v, pool_v = piece(adapters.visual_p2, v.tokens, a.tokens)
        residual_a, pool_a = piece(adapters.audio_p2, a.tokens, v.tokens)
        v, a = piece(v_second, v), a_second(a)  # a_second: nothing (HTS-AT blocks run whole in a_first)
        return replace(v, tokens=v.tokens + residual_v), replace(a, tokens=a.tokens + residual_a), (pool_v, pool_a)

    def forward(self, batch: dict[str, torch.Tensor]) -> AVFeatures:
        frames = batch["frames"]
        b, s = frames.shape[:2]
        audio = batch["audio"]
        if audio.shape[1] != s:
            raise DataError(f"DG-SCT pairs each visual segment with its audio segment: S_v={s}, S_a={audio.shape[1]}")
        v, a = self._embed(frames, audio)
        pools, stage_outputs = None, []  # stage_outputs: visual state at each stage end, before its patch merging
        for v_block, a_block, pair in self.plan:
            v, a, step_pools = self._run(self._step, v_block, a_block, pair, v, a)
            pools = step_pools or pools
            if v_block in self._stage_ends[0]:
                stage_outputs.append(v)
                v = self.visual_backbone.end_stage(v_block[0], v)
            if a_block in self._stage_ends[1]:
                a = self.audio_backbone.end_stage(a_block[0], a)
        pool_v, pool_a = pools
        v_tokens = self.visual_backbone.head(v)  # (B*S, Nv, Cv)
        a_tokens = self.audio_backbone.head(a)  # (B*S, Na, Ca)
        # With a token grid: pooled by the last visual p2 map; otherwise the CLS token after the final norm.
        visual_pooled = (pool_v @ v_tokens).squeeze(1) if self._visual_grid else v_tokens[:, 0]  # (B*S, Cv)
        return AVFeatures(
            audio=a_tokens.unflatten(0, (b, s)),  # (B, S, Na, Ca)
            # The seed pools the audio tokens before HTS-AT's final norm and re-ordering (the map's token order).
            audio_pooled=(pool_a @ a.tokens).squeeze(1).unflatten(0, (b, s)),  # (B, S, Ca)
            visual=v_tokens.unflatten(0, (b, s)),  # (B, S, Nv, Cv)
            visual_pooled=visual_pooled.unflatten(0, (b, s)),  # (B, S, Cv)
            grid=v.grid if self._visual_grid else None,
            visual_pyramid=self._pyramid(stage_outputs, v_tokens, v.grid, b, s) if self._visual_grid else None,
            **text_features(self.text_backbone, batch),
        )

    @staticmethod
    def _pyramid(
        stage_outputs: list[Hidden], v_tokens: torch.Tensor, grid: tuple[int, int], b: int, s: int
    ) -> tuple[torch.Tensor, ...]:
        """One ``(B, S, C_i, H_i, W_i)`` map per visual stage, finest first: each stage's tokens before its patch
        merging; the last stage's after the final norm (the seed's AVS model applies ``swin.norm`` there)."""
        maps = [_grid_map(h.tokens, h.grid, b, s) for h in stage_outputs[:-1]]
        return (*maps, _grid_map(v_tokens, grid, b, s))

"""Audio-visual video parsing (AVVP; Tian et al., ECCV 2020, the LLP dataset): weakly supervised.

Training sees only the video-level labels (the union of the audio and the visual events, multi-hot over K classes);
prediction is per modality and per one-second segment: which classes are audible, which are visible, in which
segments. Scored by ``avlearn.metrics.avvp.avvp_scores`` (segment- and event-level F1 of audio, visual, audio-visual,
Type@AV and Event@AV, the reference semantics); model selection uses segment-level Type@AV, as the seed does.

Two heads, chosen by ``task.head``:

``mgn`` (the default) is the head DG-SCT uses, exactly (MGN: Mo and Tian, "Multi-modal Grouping Network for
Weakly-Supervised Audio-Visual Video Parsing", NeurIPS 2022; haoyi-duan/DG-SCT ``AVVP/nets/mgn.py``, ``MGN_Net``
after the backbones, with its ``TemporalAttention``; soft assignment; parity in tests/reference/test_dgsct_heads.py):
GroupViT grouping blocks (MGN's ``ModalityTrans`` on GroupViT's grouping block, Xu et al., CVPR 2022; below), the
audio regrouped by the visual segments (HAN step, hard Gumbel assignment), the visual features gated by the audio's
temporal encoder (the only output of ``TemporalAttention`` the seed uses), the segment probability
``sigmoid(modality logit) * (1 + softmax)`` (so up to 2) and the video probability from the cross-modal grouping.
Loss (MGN's): BCE(video, y) + BCE(audio, y) + BCE(visual, 0.9 y + 0.05) + CE of the class tokens' own classes.
Prediction (the seed's): a class is on in a segment of a modality when its segment probability and the video-level
probability both reach 0.5. Without an R(2+1)D stream, the seed's ``fc_fusion([2D; fc_st(3D)])`` becomes
``visual_fuse`` of the 2D part: the seed's with a zero 3D input (its ``fc_st`` bias folded in). The seed's grouping
needs ``segments`` (10) segments; no audio mixup (the seed mixes audio between clips without mixing the labels).
Trained from scratch on AVSynth it predicts no visual event: its visual grouping settles on the class prior within
two epochs and stops passing gradient to the backbone (docs/methods/dgsct.md, issue #18).

``class_grouping`` (avlearn's, an option): pooled per-segment features are projected to ``dim`` and passed through
the gated temporal encoder (``avlearn.layers.temporal.GatedTemporalEncoder`` without decoders, its audio output used:
in the seed it is computed and overwritten). Each modality then has K learnable class tokens: a transformer runs
over [segments; class tokens] (the audio segments also attend to the visual ones, MGN's HAN step), and class-aware
grouping scores every (class, segment) pair. A cross-modal transformer over the two sets of class groups gives the
video-level probability per class. Loss: MGN's plus the direct MIL terms below; prediction as ``mgn``. It differs
from MGN in two ways:

* The segment probability of class k is the sigmoid of its grouping score with the segment, and a modality's
  video-level probability is the softmax-weighted mean of those scores over segments. MGN multiplies the video
  probability by ``1 + softmax`` over segments, a number that can never fall below the video probability, so a
  class present in the video is predicted in nearly every segment.
* Direct multiple-instance terms (``direct_weight``, 1; HAN-style per-segment classifiers): a linear classifier per
  modality on the method's own pooled segment features, smooth-max pooled over segments, trained with the same
  targets as that modality (BCE(audio, y), BCE(visual, 0.9 y + 0.05)); training only, prediction does not use
  them. They give the backbones a short gradient path from each modality's weak labels. Without them the visual
  branch of a from-scratch DG-SCT tiny settles on the class prior (test visual segment F1 0 on AVSynth LLP after
  24 epochs, 62-69 with them at lr 2e-3 on 160 clips; 71-72 at lr 3e-4 on 400 clips: docs/methods/dgsct.md).

Modality-aware exchange (MA: Wu and Yang, "Exploring Heterogeneous Clues for Weakly-Supervised Audio-Visual Video
Parsing", CVPR 2021), two optional training pieces for either head, both off by default. ``exchange``: a share of the
training videos take the audio track of a batch partner that shares none of their labels; their audio targets become
the partner's labels, their visual targets stay their own and their video target is the union, so the visual stream
cannot score by reading the audio (DG-SCT's visual features are audio-guided). ``refine_after``: from that training
step on, MA's label refinement runs on every batch: with the partner's frames (or audio) swapped in, a labelled class
the model finds in neither stream's probability (< threshold) leaves that video's audio (or visual) targets. MA uses
a trained model once and scales the probabilities by per-class error rates; here the current model decides online (a
two-stage run: ``train.init_from=<first run> task.refine_after=0``), without the scaling, and a class dropped from
both modalities stays in both (the video label says it is somewhere). The step count is saved with the weights.
Measured on AVSynth from scratch (lr 2e-3, 160 clips, ``class_grouping``): neither helps, because the visual stream
there reads the audio instead of seeing (docs/methods/dgsct.md, acceptance runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.droppath import drop_path
from avlearn.data.pipelines.avvp import avvp_pipeline
from avlearn.errors import ConfigError, DataError
from avlearn.layers.temporal import GatedTemporalEncoder
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses, paired_segments, pooled_widths
from avlearn.viz.reports import AVVP


@dataclass
class AVVPConfig:
    """Schema of ``task/avvp*.yaml`` (defaults: DG-SCT's MGN settings)."""

    name: str = "avvp"
    head: str = "mgn"  # mgn (the seed's) | class_grouping
    dim: int = 128  # width of the projected segment features and class tokens
    temporal_dim: int = 64  # d_model of the gated temporal encoder
    temporal_gamma: float = 0.05
    heads: int = 8
    depth_audio: int = 3
    depth_visual: int = 3
    depth_av: int = 6
    dropout: float = 0.0
    visual_smoothing: float = 0.9  # visual targets 0.9 y + 0.05 (MGN's label smoothing)
    direct_weight: float = 1.0  # class_grouping: weight of its direct per-segment MIL losses (0: off)
    exchange: float = 0.0  # share of training videos given a label-disjoint partner's audio track (not in MGN)
    refine_after: int = -1  # training steps before MA's modality-aware label refinement starts (-1: never)
    threshold: float = 0.5
    segments: int = 10  # mgn: the segment count its HAN grouping is built for
    seed_ffn: int = 1024  # mgn: feed-forward width of its temporal encoder


HEADS = ("mgn", "class_grouping")


def _transformer(dim: int, heads: int, depth: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class ClassGrouping(nn.Module):
    """Class-aware grouping of one modality: (B, S, C) segments and K class tokens ->

    ``groups`` (B, K, C) one feature per class (segments softly assigned to it) and ``scores`` (B, K, S) the
    class-segment grouping logits.
    """

    def __init__(self, dim: int, num_classes: int, heads: int, depth: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        self.blocks = _transformer(dim, heads, depth, dropout)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True) if cross else None
        self.cross_norm = nn.LayerNorm(dim) if cross else None
        self.norm_tokens, self.norm_segments = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, _ = x.shape
        joint = self.blocks(torch.cat([x, self.tokens.expand(b, -1, -1)], dim=1))  # (B, S + K, C)
        segments, tokens = joint[:, :s], joint[:, s:]  # (B, S, C), (B, K, C)
        if self.cross is not None:
            segments = self.cross_norm(segments + self.cross(segments, other, other, need_weights=False)[0])
        tokens, segments = self.norm_tokens(tokens), self.norm_segments(segments)
        scores = self.query(tokens) @ self.key(segments).transpose(1, 2) * self.scale  # (B, K, S)
        groups = tokens + scores.softmax(dim=-1) @ self.value(segments)  # (B, K, C)
        return groups, scores


class ClassGroupingHead(nn.Module):
    """``task.head=class_grouping`` (see the module docstring): (B, S, Ca) audio, (B, S, Cv) visual ->
    probabilities: ``video`` (B, K), ``audio``/``visual`` (B, K) per modality, ``audio_segments``/
    ``visual_segments`` (B, K, S); plus the class-token logits (K, K) of each."""

    def __init__(self, audio_in: int, visual_in: int, num_classes: int, cfg: AVVPConfig) -> None:
        super().__init__()
        self.audio_in, self.visual_in = nn.Linear(audio_in, cfg.dim), nn.Linear(visual_in, cfg.dim)
        self.temporal = GatedTemporalEncoder(
            cfg.dim, cfg.dim, cfg.dim, cfg.dim, cfg.temporal_dim, 4, 4 * cfg.temporal_dim, 2, cfg.temporal_gamma,
            decoders=False,
        )  # fmt: skip
        self.audio = ClassGrouping(cfg.dim, num_classes, cfg.heads, cfg.depth_audio, cfg.dropout, cross=True)
        self.visual = ClassGrouping(cfg.dim, num_classes, cfg.heads, cfg.depth_visual, cfg.dropout, cross=False)
        self.cross_modal = _transformer(cfg.dim, cfg.heads, cfg.depth_av, cfg.dropout)
        self.video_prob = nn.Linear(cfg.dim, 1)
        self.classify_tokens = nn.Linear(cfg.dim, num_classes)
        self.audio_direct = nn.Linear(audio_in, num_classes)
        self.visual_direct = nn.Linear(visual_in, num_classes)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        direct = {
            "audio_direct": _pool(self.audio_direct(audio).transpose(1, 2)).sigmoid(),  # (B, K, S) pooled to (B, K)
            "visual_direct": _pool(self.visual_direct(visual).transpose(1, 2)).sigmoid(),
        }
        visual, audio, _ = self.temporal(self.audio_in(audio), self.visual_in(visual))  # (B, S, dim) each
        visual_groups, visual_scores = self.visual(visual)  # (B, K, dim), (B, K, S)
        audio_groups, audio_scores = self.audio(audio, visual)
        k = audio_groups.shape[1]
        joint = self.cross_modal(torch.cat([audio_groups, visual_groups], dim=1))  # (B, 2K, dim)
        video = self.video_prob((joint[:, :k] + joint[:, k:]) / 2).squeeze(-1)  # (B, K) logits
        return {
            "video": video.sigmoid(),
            "audio": _pool(audio_scores).sigmoid(),  # (B, K)
            "visual": _pool(visual_scores).sigmoid(),
            "audio_segments": audio_scores.sigmoid(),  # (B, K, S)
            "visual_segments": visual_scores.sigmoid(),
            "audio_tokens": self.classify_tokens(self.audio.tokens),  # (K, K)
            "visual_tokens": self.classify_tokens(self.visual.tokens),
            **direct,
        }


# ---- task.head=mgn: MGN's grouping layers (seed ``AVVP/nets/grouping.py``; submodule names are the seed's)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear over the last axis."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head attention with a fused ``qkv`` projection (self-attention) or separate ``q_proj``/``k_proj``/
    ``v_proj`` ones (cross-attention); (B, N, C) queries, (B, S, C) keys -> (B, N, C)."""

    def __init__(self, dim: int, heads: int, fused: bool) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        if fused:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # (B, heads, N, C / heads)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor:
        if self.fused:
            q, k, v = self.qkv(query).chunk(3, dim=-1)  # (B, N, C) each
        else:
            key = query if key is None else key
            q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(key)
        out = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))  # (B, heads, N, C / h)
        return self.proj(out.transpose(1, 2).flatten(2))  # (B, N, C)


class SelfBlock(nn.Module):
    """Pre-norm transformer block (MLP ratio 4) with stochastic depth ``drop``: (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, heads: int, drop: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.mlp = Attention(dim, heads, fused=True), Mlp(dim, 4 * dim, dim)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop, self.training)


class CrossBlock(nn.Module):
    """GroupViT's post-norm cross-attention block: (B, N, C) queries attend to (B, S, C) keys -> (B, N, C)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn, self.mlp = Attention(dim, heads, fused=False), Mlp(dim, 4 * dim, dim)
        self.norm2, self.norm_post = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        x = query + self.attn(query, key)
        return self.norm_post(x + self.mlp(self.norm2(x)))


class AssignAttention(nn.Module):
    """GroupViT's assignment (one head): each of S inputs (B, S, C) is assigned over the N groups (B, N, C), softly
    or, with ``hard``, one-hot with a straight-through gradient (with Gumbel noise in training when ``gumbel``).

    Returns the (B, N, C) groups and the (B, N, S) map ``1 + softmax_S(softmax_N(logits))`` that MGN reads as the
    per-segment weight of each group.
    """

    def __init__(self, dim: int, hard: bool, gumbel: bool) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.hard, self.gumbel, self.scale = hard, gumbel, dim**-0.5

    def _assign(self, logits: torch.Tensor) -> torch.Tensor:
        if self.gumbel and self.training:
            noise = -torch.empty_like(logits).exponential_().log()  # Gumbel(0, 1)
            logits = logits + noise
        soft = logits.softmax(dim=-2)  # (B, N, S) over the groups
        if not self.hard:
            return soft
        hard = F.one_hot(soft.argmax(dim=-2), soft.shape[-2]).transpose(-1, -2).to(soft.dtype)  # (B, N, S)
        return hard - soft.detach() + soft

    def forward(self, groups: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.q_proj(groups) @ self.k_proj(x).transpose(1, 2) * self.scale  # (B, N, S)
        assign = self._assign(logits)
        weights = assign / (assign.sum(dim=-1, keepdim=True) + 1.0)  # (B, N, S)
        segment_map = 1.0 + logits.softmax(dim=-2).softmax(dim=-1)  # (B, N, S)
        return self.proj(weights @ self.v_proj(x)), segment_map


class GroupingBlock(nn.Module):
    """GroupViT's grouping block: (B, S, C) inputs and (B, N_in, C) tokens -> (B, N_out, C) groups and the
    (B, N_out, S) segment map of ``AssignAttention``."""

    def __init__(self, dim: int, tokens_in: int, tokens_out: int, heads: int, hard: bool, gumbel: bool) -> None:
        super().__init__()
        self.norm_tokens, self.norm_x = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp_inter = Mlp(tokens_in, dim // 2, tokens_out)  # mixes the tokens (over the token axis)
        self.norm_post_tokens, self.norm_new_x = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pre_assign_attn = CrossBlock(dim, heads)
        self.assign = AssignAttention(dim, hard, gumbel)
        self.mlp_channels = Mlp(dim, 4 * dim, dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, x = self.norm_tokens(tokens), self.norm_x(x)
        groups = self.norm_post_tokens(self.mlp_inter(tokens.transpose(1, 2)).transpose(1, 2))  # (B, N_out, C)
        groups = self.pre_assign_attn(groups, x)
        assigned, segment_map = self.assign(groups, x)
        new = assigned + groups  # (B, N_out, C)
        return new + self.mlp_channels(self.norm_new_x(new)), segment_map


class ModalityGrouping(nn.Module):
    """MGN's ``ModalityTrans``: (B, S, C) inputs and (K, C) or (B, K, C) group tokens -> (B, K, C) groups and the
    (B, K, S) segment map. ``han`` (audio): before grouping, the inputs are regrouped with the other modality's
    (B, S, C) segments as tokens (hard Gumbel assignment, as MGN configures it). The inputs are assigned to the
    groups softly (MGN's default ``soft``; its ``hard`` option is not built)."""

    def __init__(
        self, dim: int, depth: int, heads: int, tokens: int, segments: int, han: bool, drop: float = 0.1
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([SelfBlock(dim, heads, drop) for _ in range(depth)])
        self.han_encoder = GroupingBlock(dim, segments, segments, heads, hard=True, gumbel=True) if han else None
        self.grouping = GroupingBlock(dim, tokens, tokens, heads, hard=False, gumbel=False)

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor, other: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s = x.shape[1]
        joint = torch.cat([x, tokens.expand(x.shape[0], -1, -1)], dim=1)  # (B, S + K, C)
        for block in self.blocks:
            joint = block(joint)
        x, tokens = joint[:, :s], joint[:, s:]  # (B, S, C), (B, K, C)
        if self.han_encoder is not None and other is not None:
            x = self.han_encoder(x, other)[0]  # (B, S, C): the inputs regrouped by the other modality's segments
        return self.grouping(x, tokens)


class SeedVisualGate(nn.Module):
    """The part of the seed AVVP ``TemporalAttention`` whose output is used: (B, S, C) audio, (B, S, C) visual ->
    (B, S, C) visual scaled by ``1 + gamma * g_a``, the audio gate from a BiLSTM (``temporal_dim`` per direction)
    and a two-layer post-norm encoder (width ``temporal_dim``) over the audio. The seed's visual BiLSTM, encoder
    and gate only feed its gated audio, which it discards; they are not built."""

    def __init__(self, dim: int, temporal_dim: int, ffn: int, gamma: float) -> None:
        super().__init__()
        self.audio_rnn = nn.LSTM(dim, temporal_dim, batch_first=True, bidirectional=True)
        layer = nn.TransformerEncoderLayer(temporal_dim, 4, ffn, 0.1, batch_first=True)  # post-norm, ReLU
        encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.audio_key = nn.Sequential(nn.Linear(2 * temporal_dim, temporal_dim), encoder)
        self.audio_gate = nn.Linear(temporal_dim, 1)
        self.gamma = gamma

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        gate = self.audio_gate(self.audio_key(self.audio_rnn(audio)[0])).sigmoid()  # (B, S, 1)
        return visual * (1 + self.gamma * gate)


class MGNHead(nn.Module):
    """The seed's MGN head (``task.head=mgn``, see the module docstring): the same outputs as
    ``ClassGroupingHead`` without the direct terms."""

    def __init__(self, audio_in: int, visual_in: int, num_classes: int, cfg: AVVPConfig) -> None:
        super().__init__()
        dim, heads = cfg.dim, cfg.heads
        self.audio_in, self.visual_in = nn.Linear(audio_in, dim), nn.Linear(visual_in, dim)
        self.visual_fuse = nn.Linear(dim, dim)
        self.audio_tokens = nn.Parameter(torch.zeros(num_classes, dim))
        self.visual_tokens = nn.Parameter(torch.zeros(num_classes, dim))
        self.audio = ModalityGrouping(dim, cfg.depth_audio, heads, num_classes, cfg.segments, han=True)
        self.visual = ModalityGrouping(dim, cfg.depth_visual, heads, num_classes, cfg.segments, han=False)
        self.cross_modal = ModalityGrouping(dim, cfg.depth_av, heads, num_classes, cfg.segments, han=False)
        self.video_prob, self.audio_prob, self.visual_prob = nn.Linear(dim, 1), nn.Linear(dim, 1), nn.Linear(dim, 1)
        self.classify_tokens = nn.Linear(dim, num_classes)
        self.apply(_seed_init)  # before the temporal gate, as the seed
        self.temporal = SeedVisualGate(dim, cfg.temporal_dim, cfg.seed_ffn, cfg.temporal_gamma)
        self.segments = cfg.segments

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        if audio.shape[1] != self.segments:
            raise DataError(f"task.head=mgn: {audio.shape[1]} segments, built for task.segments={self.segments}")
        audio = self.audio_in(audio)  # (B, S, dim)
        visual = self.visual_fuse(self.temporal(audio, self.visual_in(visual)))  # (B, S, dim)
        visual_groups, visual_map = self.visual(visual, self.visual_tokens)  # (B, K, dim), (B, K, S)
        audio_groups, audio_map = self.audio(audio, self.audio_tokens, visual)
        joint, _ = self.cross_modal(audio_groups, visual_groups)  # (B, K, dim)
        audio_prob = self.audio_prob(audio_groups).sigmoid()  # (B, K, 1)
        visual_prob = self.visual_prob(visual_groups).sigmoid()
        return {
            "video": self.video_prob(joint).sigmoid().squeeze(-1),  # (B, K)
            "audio": audio_prob.squeeze(-1),
            "visual": visual_prob.squeeze(-1),
            "audio_segments": audio_prob * audio_map,  # (B, K, S), in [0, 2]
            "visual_segments": visual_prob * visual_map,
            "audio_tokens": self.classify_tokens(self.audio_tokens),  # (K, K)
            "visual_tokens": self.classify_tokens(self.visual_tokens),
        }


def _seed_init(module: nn.Module) -> None:
    """The seed's initialisation of its head: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _build_head(cfg: AVVPConfig, audio_dim: int, visual_dim: int, num_classes: int) -> nn.Module:
    if cfg.head == "mgn":
        return MGNHead(audio_dim, visual_dim, num_classes, cfg)
    if cfg.head == "class_grouping":
        return ClassGroupingHead(audio_dim, visual_dim, num_classes, cfg)
    raise ConfigError(f"unknown task.head '{cfg.head}' for task '{cfg.name}'; expected one of {', '.join(HEADS)}")


def _pool(scores: torch.Tensor) -> torch.Tensor:
    """(B, K, S) segment logits -> (B, K): their softmax-weighted mean over segments (a smooth maximum)."""
    return (scores.softmax(dim=-1) * scores).sum(dim=-1)


@TASKS.register("avvp", pipeline=avvp_pipeline, report=AVVP, stores=("clips",))
class AVVPTask(nn.Module):
    """Weakly supervised AVVP: batch ``frames``, ``audio``, ``labels (B, K)`` multi-hot video labels; for scoring
    also ``gt_audio``/``gt_visual (B, K, S)`` bool per-modality segment labels."""

    Config = AVVPConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "segment_type_at_av"

    def __init__(self, cfg: AVVPConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        audio_dim, visual_dim = pooled_widths(method)
        self.head = _build_head(cfg, audio_dim, visual_dim, info.num_classes)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training steps taken (for refine_after)

    def outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The head's probabilities (see ``MGNHead``, ``ClassGroupingHead``) and the method's own loss terms."""
        feats = paired_segments(self.method(batch), self.cfg.name)
        return {**self.head(feats.audio_pooled, feats.visual_pooled), "method_losses": feats.losses}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        y = batch["labels"].float()
        y_audio, y_visual = self.modality_targets(batch, y)
        if self.training:
            self.steps += 1
            batch, y_audio = exchange_audio(batch, y_audio, disjoint_partner(y), self.cfg.exchange)
            y = torch.maximum(y_audio, y_visual)
        out, smooth = self.outputs(batch), self.cfg.visual_smoothing
        y_visual = smooth * y_visual + (1 - smooth) / 2
        own_class = torch.arange(self.info.num_classes, device=y.device)
        losses = {
            "loss_video": _bce(out["video"], y),
            "loss_audio": _bce(out["audio"], y_audio),
            "loss_visual": _bce(out["visual"], y_visual),
        }
        if "audio_direct" in out:  # class_grouping's direct terms (mgn has none); summed in this order
            direct = _bce(out["audio_direct"], y_audio) + _bce(out["visual_direct"], y_visual)
            losses["loss_direct"] = self.cfg.direct_weight * direct
        tokens = F.cross_entropy(out["audio_tokens"], own_class) + F.cross_entropy(out["visual_tokens"], own_class)
        losses["loss_tokens"] = tokens
        total = {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        return add_method_losses(total, out["method_losses"])

    def modality_targets(self, batch: dict[str, torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K) audio and visual targets: the video labels ``y`` for both, or, once ``steps`` reaches
        ``refine_after``, ``y`` less the classes that MA's exchange evidence says a modality does not carry."""
        if self.cfg.refine_after < 0 or int(self.steps) < self.cfg.refine_after:
            return y, y
        keep_audio, keep_visual = self.exchange_evidence(batch, disjoint_partner(y))
        neither = ~(keep_audio | keep_visual)  # a labelled class is somewhere: never drop it from both
        return y * (keep_audio | neither), y * (keep_visual | neither)

    @torch.no_grad()
    def exchange_evidence(self, batch: dict[str, torch.Tensor], partner: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """MA's test (Wu and Yang, CVPR 2021): give each video the other track of a ``partner`` (B,) video that
        shares none of its labels (-1: none). Class k stays in the audio targets when the model still finds it
        (audio or visual probability >= threshold) with the partner's frames, and in the visual targets when it
        still finds it with the partner's audio. Returns (B, K) bool ``keep_audio``, ``keep_visual``."""
        b, has = partner.shape[0], partner >= 0
        other = torch.where(has, partner, torch.arange(b, device=partner.device))  # (B,) self where no partner
        frames, audio = batch["frames"], batch["audio"]
        mixed = {"frames": torch.cat([frames, frames[other]]), "audio": torch.cat([audio[other], audio])}  # (2B, ...)
        training = self.training
        self.eval()
        out = self.outputs(mixed)
        self.train(training)
        found = torch.maximum(out["audio"], out["visual"]) >= self.cfg.threshold  # (2B, K)
        keep_visual, keep_audio = found[:b] | ~has[:, None], found[b:] | ~has[:, None]
        return keep_audio, keep_visual

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``audio``/``visual`` (B, K, S) bool: on where the segment and the video probabilities reach the
        threshold; ``video_probs`` (B, K)."""
        out, t = self.outputs(batch), self.cfg.threshold
        present = (out["video"] >= t)[..., None]  # (B, K, 1)
        return {
            "audio": (out["audio_segments"] >= t) & present,
            "visual": (out["visual_segments"] >= t) & present,
            "video_probs": out["video"].float(),
        }

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Segment- and event-level F1 (percent) by the reference AVVP semantics."""
        from avlearn.metrics.avvp import avvp_scores

        return avvp_scores(preds["audio"], preds["visual"], targets["gt_audio"], targets["gt_visual"])


def disjoint_partner(y: torch.Tensor) -> torch.Tensor:
    """(B, K) multi-hot labels -> (B,) long: for each video the next one in the batch (cyclically) that shares none
    of its labels, -1 where there is none."""
    b = y.shape[0]
    if b < 2:
        return torch.full((b,), -1, dtype=torch.long, device=y.device)
    order = (torch.arange(b)[:, None] + torch.arange(1, b)[None]) % b  # (B, B - 1) the others, from i + 1 on
    order = order.to(y.device)
    disjoint = (y[:, None] * y[order]).sum(-1) == 0  # (B, B - 1)
    first = disjoint.float().argmax(dim=1)  # (B,) first disjoint position (0 where none)
    chosen = order.gather(1, first[:, None]).squeeze(1)
    return torch.where(disjoint.any(dim=1), chosen, torch.full_like(chosen, -1))


def exchange_audio(
    batch: dict[str, torch.Tensor], y_audio: torch.Tensor, partner: torch.Tensor, share: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """MA's exchange as training data: each video that has a ``partner`` (B,) sharing none of its labels takes,
    with probability ``share``, the partner's audio track and (B, K) audio targets. Its frames keep their own
    visual targets, so the visual stream cannot score by reading the audio."""
    if share <= 0:
        return batch, y_audio
    swap = (partner >= 0) & (torch.rand(partner.shape, device=partner.device) < share)  # (B,)
    source = torch.where(swap, partner, torch.arange(partner.shape[0], device=partner.device))  # (B,)
    return {**batch, "audio": batch["audio"][source]}, y_audio[source]


def _bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on probabilities clamped away from 0 and 1, as the seed does."""
    return F.binary_cross_entropy(prob.float().clamp(1e-7, 1 - 1e-7), target)

"""Modality grouping blocks of MGN (Mo and Tian, "Multi-modal Grouping Network for Weakly-Supervised Audio-Visual
Video Parsing", NeurIPS 2022), built on GroupViT's grouping block (Xu et al., CVPR 2022), as DG-SCT's AVVP head
uses them (haoyi-duan/DG-SCT ``AVVP/nets/grouping.py``; ``task.head=mgn_seed``).

A ``ModalityGrouping`` runs pre-norm transformer blocks over [segments; group tokens], optionally lets the segments
be regrouped by another modality's segments (MGN's HAN step: a grouping block whose tokens are the other modality's
segments), then assigns the segments to the group tokens (one output group per token). Submodule names follow the
seed's, so its weights move by prefix alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """Linear -> GELU -> Linear over the last axis."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: each sample's residual branch ``x`` (B, ...) is dropped with probability ``rate`` in
    training, the kept ones scaled by 1 / (1 - rate)."""
    if not training or rate == 0.0:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= rate  # (B, 1, ...)
    return x * keep.to(x.dtype) / (1 - rate)


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

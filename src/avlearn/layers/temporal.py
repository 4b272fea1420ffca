"""Gated cross-modal temporal encoder over S one-second segments (CMBS; DG-SCT's ``TemporalAttention``).

From CMBS (Xia and Zhao, "Cross-Modal Background Suppression for Audio-Visual Event Localization", CVPR 2022; as in
haoyi-duan/DG-SCT ``AVE/nets/net_trans.py``): the AVE CMBS head uses it with cross-modal decoders, the AVVP MGN head
(DG-SCT's ``AVVP/nets/mgn.py``) without.
"""

from __future__ import annotations

import torch
from torch import nn


class _CrossDecoder(nn.Module):
    """One post-norm decoder layer with cross-attention only; the memory is ``[memory; query]`` along time."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        memory = torch.cat([memory, query], dim=1)  # (B, 2S, d)
        x = self.norm1(query + self.drop(self.attn(query, memory, memory, need_weights=False)[0]))  # (B, S, d)
        return self.norm2(x + self.drop(self.ffn(x)))  # (B, S, d)


def _encoder(d_model: int, heads: int, ffn: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout, batch_first=True)  # post-norm, ReLU
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class GatedTemporalEncoder(nn.Module):
    """CMBS's gated cross-modal temporal encoder (DG-SCT's ``TemporalAttention``), over S segments.

    Audio and visual features are projected (``audio_dim``, ``visual_dim``), run through a BiLSTM each (hidden size
    per direction ``audio_hidden`` / ``visual_hidden``, default half the projection width, so that the sequences
    keep it; the seed's AVE encoder uses d_model / 2 and d_model) and a self-attention encoder each (keys/values,
    width ``d_model``); sigmoid gates ``g_a``, ``g_v`` (B, S, 1) come from them. With ``decoders`` (AVE), each
    modality's query attends to the other's encoding and is scaled by ``1 + gamma * g_other``; without (DG-SCT's
    AVVP variant), the projected inputs themselves are scaled that way.

    Returns ``visual``, ``audio`` (B, S, d_model with decoders, else the projection widths) and ``gate = g_a * g_v``.
    """

    def __init__(
        self,
        audio_in: int,
        visual_in: int,
        audio_dim: int,
        visual_dim: int,
        d_model: int,
        heads: int,
        ffn: int,
        layers: int,
        gamma: float,
        decoders: bool,
        dropout: float = 0.1,
        audio_hidden: int | None = None,
        visual_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.gamma = gamma
        audio_hidden, visual_hidden = audio_hidden or audio_dim // 2, visual_hidden or visual_dim // 2
        audio_seq, visual_seq = 2 * audio_hidden, 2 * visual_hidden  # BiLSTM output widths
        self.audio_in = nn.Linear(audio_in, audio_dim)
        self.visual_in = nn.Sequential(nn.Linear(visual_in, visual_dim), nn.ReLU(), nn.Dropout(0.2))
        self.audio_rnn = nn.LSTM(audio_dim, audio_hidden, batch_first=True, bidirectional=True)
        self.visual_rnn = nn.LSTM(visual_dim, visual_hidden, batch_first=True, bidirectional=True)
        self.audio_key = nn.Sequential(nn.Linear(audio_seq, d_model), _encoder(d_model, heads, ffn, layers, dropout))
        self.visual_key = nn.Sequential(nn.Linear(visual_seq, d_model), _encoder(d_model, heads, ffn, layers, dropout))
        self.audio_gate, self.visual_gate = nn.Linear(d_model, 1), nn.Linear(d_model, 1)
        self.decoders = decoders
        if decoders:
            self.audio_query, self.visual_query = nn.Linear(audio_seq, d_model), nn.Linear(visual_seq, d_model)
            self.audio_decoder = _CrossDecoder(d_model, heads, ffn, dropout)
            self.visual_decoder = _CrossDecoder(d_model, heads, ffn, dropout)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        audio, visual = self.audio_in(audio), self.visual_in(visual)  # (B, S, audio_dim), (B, S, visual_dim)
        audio_seq, visual_seq = self.audio_rnn(audio)[0], self.visual_rnn(visual)[0]  # (B, S, 2 * hidden)
        audio_kv, visual_kv = self.audio_key(audio_seq), self.visual_key(visual_seq)  # (B, S, d_model)
        gate_a, gate_v = self.audio_gate(audio_kv).sigmoid(), self.visual_gate(visual_kv).sigmoid()  # (B, S, 1)
        if self.decoders:
            audio = self.audio_decoder(self.audio_query(audio_seq), visual_kv)  # (B, S, d_model)
            visual = self.visual_decoder(self.visual_query(visual_seq), audio_kv)  # (B, S, d_model)
        return visual * (1 + self.gamma * gate_a), audio * (1 + self.gamma * gate_v), gate_a * gate_v

"""Audio-visual question answering (MUSIC-AVQA): one answer, from a fixed vocabulary, per question about a video.

Follows the AVST head (Li et al., "Learning to Answer Questions in Dynamic Audio-Visual Scenarios", CVPR 2022) as
DG-SCT uses it (haoyi-duan/DG-SCT ``AVQA/net_grd_avst/net_avst.py``):

* question encoder: word embedding, tanh, one-layer LSTM, ``tanh([h; c])``, linear;
* audio-guided spatial grounding, per segment: cosine attention of the segment's audio over the visual tokens, then
  ``fc_gl(tanh([mean of the tokens; attended tokens]))``; a match MLP tells the segment's own frame (positive) from
  the same segment of ANOTHER video (negative) for the same audio, trained with cross-entropy (weight 0.5);
* question-guided temporal grounding: the question attends over the S grounded visual features and, separately,
  over the S audio features (multi-head attention, FFN and LayerNorm each); their attention weights are the temporal
  grounding weights ``predict`` returns;
* answer: ``fc_ans(tanh(fc_fusion(tanh([audio; visual])) * question))`` over the answer vocabulary, cross-entropy.

Scored by ``avlearn.metrics.avqa_accuracy``: accuracy per question type, per modality group and overall (percent).

What we changed, and why:

* Negatives come from another video of the batch, never from the same one (the seed's rejection test divides by 60
  instead of 10 and can draw the same video); a batch holding a single video has no negatives and no grounding loss.
  Negatives are not random at test time: ``predict`` does not use them.
* The visual tokens get a position embedding (a linear map of their grid coordinates) and the segments a learned
  time embedding before the temporal attention: without them the mean, the attended sum and the attention over
  segments cannot tell left from right or first from last, which half of the question types ask about.
* The cosine spatial attention has a learnable temperature (initially 1/10): the seed's plain cosine softmax over
  the tokens is almost uniform.
* The question words are WordPiece ids of a fixed vocabulary (``avlearn.data.pipelines.avqa``), not a word list
  rebuilt from the training questions; sequences are packed, so padding does not reach the LSTM's state.
* The grounding MLP is trained with the rest from the start; the seed initialises it from a separate pre-training
  run (``grounding_gen``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo


@dataclass
class AVQAConfig:
    """Schema of ``task/avqa.yaml``."""

    name: str = "avqa"
    dim: int = 128  # width of every feature after its projection (AVST: 512)
    heads: int = 4  # temporal attention heads
    vocab_size: int = 30522  # question token vocabulary (the tokenizer's)
    dropout: float = 0.1
    grounding_weight: float = 0.5  # weight of the positive/negative match loss
    max_segments: int = 64  # size of the learned time embedding


class QuestionEncoder(nn.Module):
    """``input_ids`` and ``attention_mask`` (B, L) -> (B, dim): embedding, tanh, LSTM, ``tanh([h; c])``, linear."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        words = torch.tanh(self.embed(input_ids))  # (B, L, dim)
        lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        _, (h, c) = self.lstm(pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False))
        return self.out(torch.tanh(torch.cat([h[-1], c[-1]], dim=-1)))  # (B, 2*dim) -> (B, dim)


class SpatialGrounding(nn.Module):
    """Audio-guided grounding of one segment: tokens (B', N, d), audio (B', d) -> visual (B', d), weights (B', N)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(10.0).log())
        self.fc_gl = nn.Linear(2 * dim, dim)

    def forward(self, tokens: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cosine = torch.einsum("bnd,bd->bn", F.normalize(tokens, dim=-1), F.normalize(audio, dim=-1))  # (B', N)
        weights = (self.log_scale.exp() * cosine).softmax(dim=-1)  # (B', N)
        attended = torch.einsum("bn,bnd->bd", weights, tokens)  # (B', d)
        return self.fc_gl(torch.tanh(torch.cat([tokens.mean(dim=1), attended], dim=-1))), weights  # (B', d)


class _QuestionAttention(nn.Module):
    """The question attends over S segment features: (B, d), (B, S, d) -> attended (B, d), weights (B, S)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop, self.norm = nn.Dropout(dropout), nn.LayerNorm(dim)

    def forward(self, question: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attn(question[:, None], segments, segments)  # (B, 1, d), (B, 1, S)
        attended = attended[:, 0]  # (B, d)
        return self.norm(attended + self.drop(self.ffn(attended))), weights[:, 0]


def match_head(dim: int) -> nn.Sequential:
    """AVST's match MLP: [audio; grounded visual] (2d) -> 2 logits (negative, positive)."""
    return nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim // 2), nn.ReLU(),
                         nn.Linear(dim // 2, dim // 4), nn.ReLU(), nn.Linear(dim // 4, 2))  # fmt: skip


def grid_positions(grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(h*w, 2) token coordinates in [-1, 1], row-major like the tokens."""
    ys, xs = (torch.linspace(-1, 1, n, device=device) for n in grid)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)  # (h, w, 2) -> (h*w, 2)


def other_video(video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row, the nearest later row (cyclically) of a DIFFERENT video: (B,) indices and (B,) bool found."""
    b = len(video)
    candidates = (torch.arange(b, device=video.device)[:, None] + torch.arange(1, max(b, 2), device=video.device)) % b
    different = video[candidates] != video[:, None]  # (B, B-1)
    first = different.int().argmax(dim=1)  # (B,) the first candidate from another video
    return candidates[torch.arange(b, device=video.device), first], different.any(dim=1)


@TASKS.register("avqa")
class AVQATask(nn.Module):
    """MUSIC-AVQA with the AVST head: batch ``frames``, ``audio``, ``input_ids``, ``attention_mask``, ``answer (B,)``,
    ``video (B,)`` (ids telling videos apart, for the negatives) and ``question_type`` (B strings)."""

    Config = AVQAConfig
    needs = ("audio_pooled", "visual")
    primary_metric = "overall"

    def __init__(self, cfg: AVQAConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        d = cfg.dim
        audio_dim, visual_dim = getattr(method, "audio_dim", method.out_dim), method.visual_backbone.num_features
        self.question = QuestionEncoder(cfg.vocab_size, d)
        self.audio_proj = nn.Sequential(nn.Linear(audio_dim, d), nn.ReLU(), nn.Linear(d, d))
        self.visual_proj = nn.Linear(visual_dim, d)
        self.position = nn.Linear(2, d)
        self.time = nn.Embedding(cfg.max_segments, d)
        self.grounding = SpatialGrounding(d)
        self.match = match_head(d)
        self.attend_visual = _QuestionAttention(d, cfg.heads, cfg.dropout)
        self.attend_audio = _QuestionAttention(d, cfg.heads, cfg.dropout)
        self.fusion = nn.Linear(2 * d, d)
        self.answer = nn.Linear(d, info.num_classes)

    def _tokens(self, visual: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, S, N, Cv) method tokens -> (B*S, N, d) with their position embedding."""
        return self.visual_proj(visual.flatten(0, 1)) + self.position(grid_positions(grid, visual.device))

    def outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Answer logits (B, K), temporal weights (B, S) of each modality, and the grounding inputs."""
        feats = self.method(batch)
        b, s = feats.audio_pooled.shape[:2]
        audio = self.audio_proj(feats.audio_pooled)  # (B, S, d)
        tokens = self._tokens(feats.visual, feats.visual_grid)  # (B*S, N, d)
        visual, _ = self.grounding(tokens, audio.flatten(0, 1))  # (B*S, d)
        time = self.time(torch.arange(s, device=audio.device))  # (S, d)
        question = self.question(batch["input_ids"], batch["attention_mask"])  # (B, d)
        v_att, v_weights = self.attend_visual(question, visual.unflatten(0, (b, s)) + time)  # (B, d), (B, S)
        a_att, a_weights = self.attend_audio(question, audio + time)
        fused = torch.tanh(torch.cat([a_att + audio.mean(dim=1), v_att + visual.unflatten(0, (b, s)).mean(dim=1)], -1))
        logits = self.answer(torch.tanh(self.fusion(fused) * question))  # (B, K)
        return {"logits": logits, "visual_weights": v_weights, "audio_weights": a_weights, "tokens": tokens,
                "audio": audio, "visual": visual}  # fmt: skip

    def grounding_loss(self, out: dict[str, torch.Tensor], video: torch.Tensor) -> torch.Tensor:
        """Match cross-entropy: each segment's audio with its own grounded frame (1) and with another video's (0)."""
        b, s, d = out["audio"].shape
        negative, found = other_video(video)
        if not found.any():
            return out["logits"].sum() * 0.0  # keeps the graph: one video in the batch, no negatives
        keep = found.repeat_interleave(s)  # (B*S,)
        audio = out["audio"].flatten(0, 1)[keep]  # (B'*S, d)
        tokens = out["tokens"].unflatten(0, (b, s))[negative].flatten(0, 1)[keep]  # other videos' segments
        visual_neg, _ = self.grounding(tokens, audio)
        positives = torch.cat([audio, out["visual"][keep]], dim=-1)  # (B'*S, 2d)
        negatives = torch.cat([audio, visual_neg], dim=-1)
        logits = self.match(torch.cat([positives, negatives]))  # (2*B'*S, 2)
        labels = torch.cat([torch.ones(len(audio)), torch.zeros(len(audio))]).long().to(logits.device)
        return F.cross_entropy(logits, labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.outputs(batch)
        loss_answer = F.cross_entropy(out["logits"], batch["answer"])
        loss_grounding = self.grounding_loss(out, batch["video"])
        loss = loss_answer + self.cfg.grounding_weight * loss_grounding
        return {"loss": loss, "loss_answer": loss_answer.detach(), "loss_grounding": loss_grounding.detach()}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``answer (B,)``, ``probs (B, K)``, and the temporal grounding weights ``visual_weights`` /
        ``audio_weights`` (B, S): how much the question attends to each segment."""
        out = self.outputs(batch)
        probs = out["logits"].float().softmax(dim=-1)
        return {"answer": probs.argmax(dim=-1), "probs": probs, "visual_weights": out["visual_weights"].float(),
                "audio_weights": out["audio_weights"].float()}  # fmt: skip

    def score(self, preds: dict[str, torch.Tensor], targets: dict) -> dict[str, float]:
        """MUSIC-AVQA accuracy (percent) per question type, per group and ``overall``."""
        from avlearn.metrics.avqa import avqa_accuracy

        correct = (preds["answer"] == targets["answer"]).numpy()
        return avqa_accuracy(correct, list(targets["question_type"]))

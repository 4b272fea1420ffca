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

``task.head=avst`` (the default, ``AVSTSeedHead``) is the seed's head exactly (parity in
``tests/reference/test_dgsct_heads.py``), without the changes below (which are those of ``task.head=grounded_qa``,
avlearn's variant, an option); it keeps only the data plumbing: negatives from another video of the batch (their
tokens without gradient, as the seed's ``no_grad`` negatives), WordPiece questions run packed, one encoding per
video.

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
* Each video is encoded once per batch: questions with the same ``video`` id share one pass through the method and
  the video-level features (``split_batch``), and training batches can hold whole videos with all their questions
  (``AVQATensors.by_video``). The seed re-encodes a video for every question, the cost the DG-SCT spec lists first.
* The word embedding table is ``word_dim`` (16) wide and lifted to ``dim``: at full width its 30522 rows took about
  40 % of a CPU training step (optimizer and dense gradient) while the questions use a few hundred tokens.
* Audio: besides the method's pooled feature, a per-token MLP over the audio tokens plus a learned embedding of
  their index, averaged. Mean pooling a CNN's tokens discards where in frequency the energy lies (pitch), which
  tells several AVSynth classes apart. Visual tokens get a residual MLP after their position embedding, so the
  mean and the attended sums keep which content is where (a plain sum of content and position does not bind them).
* Each audio segment adds a linear map of its change from the previous segment (a temporal difference: what comes
  in), and transformer layers (``segment_layers``, 2; one fitted the training questions less well) run over
  the 2S audio and visual segment features (time and modality embeddings) before the question attends over them,
  so audio segments can see what is visible (voiceovers).
* The question also attends over all S*N visual tokens of its video (one head; the tokens are keys and values) and
  the result is added to the visual term: question-guided spatial attention, so the question, not only the audio,
  can pick tokens.
* A clip-level audio-visual contrastive loss (symmetric InfoNCE between each video's mean audio and mean visual
  token, the batch's other videos as negatives, weight ``contrast_weight``) is added to the match loss: from random
  initialisation the answer loss alone trains small encoders slowly (docs/tasks/avqa.md has the measurements).

Removed (issue #18): readouts shaped around AVSynth's question templates (a soft onset count and onset places,
answer names matched in the question and scored against the audio, answers ranked by onset among the visible ones,
places relative to a named answer). With them this head reached 80.4 % on AVSynth's slow test (69.5 % without any
of them, one segment layer), the gain on the templated question types; docs/methods/dgsct.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from avlearn.data.pipelines.avqa import avqa_pipeline
from avlearn.errors import ConfigError
from avlearn.losses.contrastive import info_nce
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses, paired_segments
from avlearn.viz.reports import AVQA

if TYPE_CHECKING:
    from avlearn.methods.base import AVFeatures


@dataclass
class AVQAConfig:
    """Schema of ``task/avqa.yaml``."""

    name: str = "avqa"
    head: str = "avst"  # avst (the seed's AVST head exactly) | grounded_qa (avlearn's, with the readouts below)
    dim: int = 128  # width of every feature after its projection (AVST: 512); avst: the visual width
    heads: int = 4  # temporal attention heads
    vocab_size: int = 30522  # question token vocabulary (the tokenizer's)
    word_dim: int = 16  # width of the word embedding table, lifted to ``dim`` (the table dominates the step)
    dropout: float = 0.1
    grounding_weight: float = 0.5  # weight of the positive/negative match loss
    contrast_weight: float = 0.5  # weight of the clip-level audio-visual contrastive loss over the batch's videos
    max_segments: int = 64  # size of the learned time embedding
    max_audio_tokens: int = 256  # size of the learned audio token position embedding
    segment_layers: int = 2  # transformer layers over the 2S audio and visual segment features (0: none)


class QuestionEncoder(nn.Module):
    """``input_ids`` and ``attention_mask`` (B, L) -> (B, dim): embedding (``word_dim`` wide, lifted to ``dim``;
    ``dim`` wide with no lift when ``word_dim`` is None, as the seed), tanh, LSTM, ``tanh([h; c])``, linear."""

    def __init__(self, vocab_size: int, dim: int, word_dim: int | None) -> None:
        super().__init__()
        if word_dim is None:
            self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        else:
            self.embed = nn.Sequential(nn.Embedding(vocab_size, word_dim, padding_idx=0), nn.Linear(word_dim, dim))
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


class _QuestionTokens(nn.Module):
    """The question attends over each of its video's S*N visual tokens (one head, the tokens as keys and values):
    (Q, d), (Q, S*N, d) -> (Q, d)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, question: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("qd,qnd->qn", self.query(question), tokens) / tokens.shape[-1] ** 0.5  # (Q, S*N)
        attended = torch.einsum("qn,qnd->qd", scores.softmax(dim=-1), tokens)  # (Q, d)
        return self.norm(attended + self.ffn(attended))


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))


def match_head(dim: int, widths: tuple[int, int, int] | None = None) -> nn.Sequential:
    """AVST's match MLP: [audio; grounded visual] (2d) -> 2 logits (negative, positive); hidden ``widths``
    (default d, d/2, d/4; the seed's are 512, 256, 128 whatever d)."""
    w1, w2, w3 = widths or (dim, dim // 2, dim // 4)
    return nn.Sequential(nn.Linear(2 * dim, w1), nn.ReLU(), nn.Linear(w1, w2), nn.ReLU(),
                         nn.Linear(w2, w3), nn.ReLU(), nn.Linear(w3, 2))  # fmt: skip


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


HEADS = ("avst", "grounded_qa")
SEED_MATCH_WIDTHS = (512, 256, 128)  # the seed's match MLP (fc1..fc3), fixed whatever the feature width


class AVSTSeedHead(nn.Module):
    """The seed's AVST head (``task.head=avst``; DG-SCT ``AVQA/net_grd_avst/net_avst.py``
    ``AVQA_Fusion_Net`` after the backbones), every feature ``dim`` (= the visual width) wide.

    Audio ``fc_a2(relu(fc_a1(a)))``; grounding of each segment: the softmax of the cosine between its audio and its
    L2-normalised visual tokens weights those NORMALISED tokens, ``fc_gl(tanh([token mean; attended]))``; the
    match MLP (2d -> 512 -> 256 -> 128 -> 2); the question (embedding ``dim`` wide, tanh, LSTM, ``tanh([h; c])``,
    linear) attends over the S grounded visual and, separately, the S audio features (multi-head attention, FFN,
    LayerNorm); answer ``fc_ans(tanh(fc_fusion(tanh([audio_att + mean_S audio; visual_att + mean_S visual])) *
    question))``.
    """

    def __init__(self, audio_dim: int, dim: int, vocab_size: int, num_answers: int, heads: int, dropout: float):
        super().__init__()
        self.audio = nn.Sequential(nn.Linear(audio_dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.fc_gl = nn.Linear(2 * dim, dim)
        self.match = match_head(dim, SEED_MATCH_WIDTHS)
        self.question = QuestionEncoder(vocab_size, dim, word_dim=None)
        self.attend_visual = _QuestionAttention(dim, heads, dropout)
        self.attend_audio = _QuestionAttention(dim, heads, dropout)
        self.fusion = nn.Linear(2 * dim, dim)
        self.answer = nn.Linear(dim, num_answers)

    def ground(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Visual tokens (B', N, d) grounded by each row's audio (B', d) -> (B', d)."""
        unit = F.normalize(tokens, dim=-1)  # (B', N, d)
        weights = torch.einsum("bnd,bd->bn", unit, F.normalize(audio, dim=-1)).softmax(dim=-1)  # (B', N)
        attended = torch.einsum("bn,bnd->bd", weights, unit)  # (B', d)
        return self.fc_gl(torch.tanh(torch.cat([tokens.mean(dim=1), attended], dim=-1)))

    def encode(self, audio_pooled: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled audio (V, S, Ca) and visual tokens (V, S, N, d) -> audio (V, S, d) and grounded visual (V, S, d)."""
        audio = self.audio(audio_pooled)  # (V, S, d)
        grounded = self.ground(visual.flatten(0, 1), audio.flatten(0, 1))  # (V*S, N, d), (V*S, d) -> (V*S, d)
        return audio, grounded.unflatten(0, audio.shape[:2])  # (V, S, d)

    def forward(self, question: torch.Tensor, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """Question features (Q, d), its video's audio and grounded visual segments (Q, S, d) -> answer ``logits``
        (Q, K) and the temporal attention weights (Q, S) of each modality."""
        v_att, v_weights = self.attend_visual(question, visual)  # (Q, d), (Q, S)
        a_att, a_weights = self.attend_audio(question, audio)
        fused = torch.tanh(torch.cat([a_att + audio.mean(dim=1), v_att + visual.mean(dim=1)], dim=-1))  # (Q, 2d)
        logits = self.answer(torch.tanh(self.fusion(fused) * question))  # (Q, K)
        return {"logits": logits, "visual_weights": v_weights, "audio_weights": a_weights}


@dataclass
class Questions:
    """The questions of a batch, one row each: ``row (Q,)`` indexes their video among the batch's distinct videos;
    ``input_ids`` / ``attention_mask (Q, L)``; ``answer (Q,)``."""

    row: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answer: torch.Tensor


def split_batch(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, Questions]:
    """A batch -> the media of its distinct videos (V rows), their ids (V,), and its questions.

    Two layouts: one question per row (``input_ids (B, L)``; rows of the same ``video`` id share one encoding), or
    one video per row with all its questions (``input_ids (B, Q, L)``, ``answer (B, Q)``; padding questions have an
    empty attention mask and are dropped).
    """
    ids, mask, answer = batch["input_ids"], batch["attention_mask"], batch["answer"]
    if ids.dim() == 3:
        b, q = ids.shape[:2]
        real = mask.flatten(0, 1).sum(dim=1) > 0  # (B*Q,)
        row = torch.arange(b, device=ids.device).repeat_interleave(q)[real]
        questions = Questions(row, ids.flatten(0, 1)[real], mask.flatten(0, 1)[real], answer.flatten()[real])
        return {"frames": batch["frames"], "audio": batch["audio"]}, batch["video"], questions
    videos, row = torch.unique(batch["video"], return_inverse=True)  # (V,), (B,)
    first = torch.zeros(len(videos), dtype=torch.long, device=row.device).scatter_(0, row, torch.arange(len(row)))
    media = {"frames": batch["frames"][first], "audio": batch["audio"][first]}  # one (any) row per video
    return media, videos, Questions(row, ids, mask, answer)


@TASKS.register("avqa", pipeline=avqa_pipeline, synth_part="avqa", report=AVQA, stores=("clips",))
class AVQATask(nn.Module):
    """MUSIC-AVQA with the AVST head: batch ``frames``, ``audio``, ``input_ids``, ``attention_mask``, ``answer``,
    ``video`` (ids telling videos apart, for the negatives and for encoding each video once) and, for scoring,
    ``question_type`` (B strings). See ``split_batch`` for the two layouts (a question or a video per row)."""

    Config = AVQAConfig
    needs = ("audio", "audio_pooled", "visual", "grid")
    primary_metric = "overall"

    def __init__(self, cfg: AVQAConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        audio_dim, visual_dim = method.dims["audio_pooled"], method.dims["visual"]
        if cfg.head not in HEADS:
            raise ConfigError(f"unknown task.head '{cfg.head}' for task 'avqa'; expected one of {', '.join(HEADS)}")
        if cfg.head == "avst":
            if visual_dim % cfg.heads:
                raise ConfigError(f"task.head=avst works at the visual width {visual_dim}, which "
                                  f"task.heads={cfg.heads} does not divide")  # fmt: skip
            self.seed_head = AVSTSeedHead(audio_dim, visual_dim, cfg.vocab_size, info.num_classes, cfg.heads,
                                          cfg.dropout)  # fmt: skip
        else:
            self.seed_head = None
            self._build_avst(cfg, audio_dim, visual_dim, method.dims["audio"], info)

    def _build_avst(self, cfg: AVQAConfig, audio_dim: int, visual_dim: int, audio_token_dim: int,
                    info: DatasetInfo) -> None:  # fmt: skip
        """avlearn's variant of the AVST head (``task.head=grounded_qa``)."""
        d = cfg.dim
        self.question = QuestionEncoder(cfg.vocab_size, d, cfg.word_dim)
        self.audio_proj = nn.Sequential(nn.Linear(audio_dim, d), nn.ReLU(), nn.Linear(d, d))
        self.audio_token_proj = nn.Linear(audio_token_dim, d)
        self.audio_token_pos = nn.Embedding(cfg.max_audio_tokens, d)
        self.audio_token_mlp = _mlp(d)
        self.onset = nn.Linear(d, d)
        self.visual_proj = nn.Linear(visual_dim, d)
        self.position = nn.Linear(2, d)
        self.token_mlp = _mlp(d)
        self.time = nn.Embedding(cfg.max_segments, d)
        self.modality = nn.Embedding(2, d)
        self.grounding = SpatialGrounding(d)
        self.match = match_head(d)
        self.contrast = nn.ModuleDict({"audio": nn.Linear(d, d), "visual": nn.Linear(d, d)})
        self.contrast_log_scale = nn.Parameter(torch.tensor(10.0).log())
        self.segments = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True),
            cfg.segment_layers, enable_nested_tensor=False) if cfg.segment_layers else None  # fmt: skip
        self.attend_tokens = _QuestionTokens(d, cfg.dropout)
        self.attend_visual = _QuestionAttention(d, cfg.heads, cfg.dropout)
        self.attend_audio = _QuestionAttention(d, cfg.heads, cfg.dropout)
        self.fusion = nn.Linear(2 * d, d)
        self.answer = nn.Linear(d, info.num_classes)

    def _tokens(self, visual: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """(B, S, N, Cv) method tokens, grid (N, 2) their coordinates -> (B*S, N, d) with their position embedding."""
        tokens = self.visual_proj(visual.flatten(0, 1)) + self.position(grid)
        return tokens + self.token_mlp(tokens)  # binds each token's content to its place

    def _audio(self, feats: AVFeatures) -> torch.Tensor:
        """(V, S, d) audio segment features: the method's pooled features plus the mean of a per-token MLP over
        its tokens with their position (for CNN tokens, frequency x time: pitch survives the pooling)."""
        tokens = self.audio_token_proj(feats.audio) + self.audio_token_pos.weight[: feats.audio.shape[2]]  # (V,S,Na,d)
        return self.audio_proj(feats.audio_pooled) + self.audio_token_mlp(tokens).mean(dim=2)  # (V, S, d)

    def encode(self, media: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each video once: audio (V, S, d), tokens (V*S, N, d), grounded visual (V*S, d), and the segment
        features the questions attend to (``audio_seg`` / ``visual_seg``, (V, S, d)); ``method_losses``: the method's
        own loss terms."""
        feats = paired_segments(self.method(media), self.cfg.name)
        audio = self._audio(feats)
        v, s = audio.shape[:2]
        grid = grid_positions(feats.grid, audio.device)  # (N, 2)
        tokens = self._tokens(feats.visual, grid)  # (V*S, N, d)
        visual, _ = self.grounding(tokens, audio.flatten(0, 1))  # (V*S, d)
        time = self.time(torch.arange(s, device=audio.device))  # (S, d)
        change = audio - F.pad(audio, (0, 0, 1, 0))[:, :-1]  # (V, S, d): change from segment s-1
        audio_seg, visual_seg = audio + self.onset(change) + time, visual.unflatten(0, (v, s)) + time  # (V, S, d)
        if self.segments is not None:
            both = torch.cat([audio_seg + self.modality.weight[0], visual_seg + self.modality.weight[1]], dim=1)
            audio_seg, visual_seg = self.segments(both).split(s, dim=1)  # (V, 2S, d) -> 2 x (V, S, d)
        return {"audio": audio, "tokens": tokens, "visual": visual, "audio_seg": audio_seg, "visual_seg": visual_seg,
                "method_losses": feats.losses}  # fmt: skip

    def _seed_outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``outputs`` of ``task.head=avst``: each video encoded and grounded once, each question answered."""
        media, videos, q = split_batch(batch)
        feats = paired_segments(self.method(media), self.cfg.name)
        audio, visual = self.seed_head.encode(feats.audio_pooled, feats.visual)  # (V, S, d) each
        question = self.seed_head.question(q.input_ids, q.attention_mask)  # (Q, d)
        out = self.seed_head(question, audio[q.row], visual[q.row])
        return {**out, "answer": q.answer, "videos": videos, "audio": audio, "visual": visual.flatten(0, 1),
                "tokens": feats.visual.flatten(0, 1), "method_losses": feats.losses}  # fmt: skip

    def outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Answer logits (Q, K), temporal weights (Q, S) of each modality, and the grounding inputs: ``audio``
        (V, S, d), the method's or projected visual ``tokens`` (V*S, N, d) and the grounded ``visual`` (V*S, d)."""
        if self.seed_head is not None:
            return self._seed_outputs(batch)
        media, videos, q = split_batch(batch)
        enc = self.encode(media)
        v, s = enc["audio"].shape[:2]
        tokens = enc["tokens"].unflatten(0, (v, s)).flatten(1, 2)[q.row]  # (V*S, N, d) -> (V, S*N, d) -> (Q, S*N, d)
        question = self.question(q.input_ids, q.attention_mask)  # (Q, d)
        v_att, v_weights = self.attend_visual(question, enc["visual_seg"][q.row])  # (Q, d), (Q, S)
        a_att, a_weights = self.attend_audio(question, enc["audio_seg"][q.row])
        visual = v_att + enc["visual"].unflatten(0, (v, s)).mean(dim=1)[q.row] + self.attend_tokens(question, tokens)
        fused = torch.tanh(torch.cat([a_att + enc["audio"].mean(dim=1)[q.row], visual], dim=-1))
        logits = self.answer(torch.tanh(self.fusion(fused) * question))  # (Q, K)
        return {"logits": logits, "visual_weights": v_weights, "audio_weights": a_weights, "answer": q.answer,
                "videos": videos, **enc}  # fmt: skip

    def grounding_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Match cross-entropy: each segment's audio with its own grounded frame (1) and with another video's (0)."""
        b, s, d = out["audio"].shape
        negative, found = other_video(out["videos"])
        if not found.any():
            return out["logits"].sum() * 0.0  # keeps the graph: one video in the batch, no negatives
        keep = found.repeat_interleave(s)  # (B*S,)
        audio = out["audio"].flatten(0, 1)[keep]  # (B'*S, d)
        tokens = out["tokens"].unflatten(0, (b, s))[negative].flatten(0, 1)[keep]  # other videos' segments
        positives = torch.cat([audio, out["visual"][keep]], dim=-1)  # (B'*S, 2d)
        negatives = torch.cat([audio, self._ground_negative(tokens, audio)], dim=-1)
        match = self.match if self.seed_head is None else self.seed_head.match
        logits = match(torch.cat([positives, negatives]))  # (2*B'*S, 2)
        labels = torch.cat([torch.ones(len(audio)), torch.zeros(len(audio))]).long().to(logits.device)
        return F.cross_entropy(logits, labels)

    def contrastive_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Symmetric InfoNCE between each video's mean audio and mean visual token over the batch's V videos."""
        v, s = out["audio"].shape[:2]
        if v < 2:
            return out["logits"].sum() * 0.0
        audio = F.normalize(self.contrast["audio"](out["audio"].mean(dim=1)), dim=-1)  # (V, d)
        visual = F.normalize(self.contrast["visual"](out["tokens"].unflatten(0, (v, s)).mean(dim=(1, 2))), dim=-1)
        return info_nce(audio, visual, self.contrast_log_scale.exp())

    def _ground_negative(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Another video's tokens (B', N, d) grounded by this audio (B', d) -> (B', d). ``avst``: the tokens
        carry no gradient (the seed encodes its negative frames under ``no_grad``)."""
        if self.seed_head is not None:
            return self.seed_head.ground(tokens.detach(), audio)
        return self.grounding(tokens, audio)[0]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.outputs(batch)
        loss_answer = F.cross_entropy(out["logits"], out["answer"])
        loss_grounding = self.grounding_loss(out)
        terms = {"loss": loss_answer + self.cfg.grounding_weight * loss_grounding,
                 "loss_answer": loss_answer.detach(), "loss_grounding": loss_grounding.detach()}  # fmt: skip
        if self.seed_head is None:  # the seed has no contrastive term
            loss_contrast = self.contrastive_loss(out)
            terms["loss"] = terms["loss"] + self.cfg.contrast_weight * loss_contrast
            terms["loss_contrast"] = loss_contrast.detach()
        return add_method_losses(terms, out["method_losses"])

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``answer (B,)``, ``probs (B, K)``, and the temporal grounding weights ``visual_weights`` /
        ``audio_weights`` (B, S): how much the question attends to each segment (one question per row)."""
        out = self.outputs(batch)
        probs = out["logits"].float().softmax(dim=-1)
        return {"answer": probs.argmax(dim=-1), "probs": probs, "visual_weights": out["visual_weights"].float(),
                "audio_weights": out["audio_weights"].float()}  # fmt: skip

    def score(self, preds: dict[str, torch.Tensor], targets: dict) -> dict[str, float]:
        """MUSIC-AVQA accuracy (percent) per question type, per group and ``overall``."""
        from avlearn.metrics.avqa import avqa_accuracy

        correct = (preds["answer"] == targets["answer"]).numpy()
        return avqa_accuracy(correct, list(targets["question_type"]))

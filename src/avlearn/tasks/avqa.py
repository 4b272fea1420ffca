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

``task.head=avst_seed`` (``AVSTSeedHead``) is the seed's head exactly, without the changes below (which are those of
the default ``task.head=avst``); it keeps only the data plumbing: negatives from another video of the batch (their
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
* Each audio segment adds a linear map of its change from the previous segment (onsets: "which instrument comes in
  second"), and transformer layers (``segment_layers``, 2; one fitted the training questions less well) run over
  the 2S audio and visual segment features (time and modality embeddings) before the question attends over them,
  so audio segments can see what is visible (voiceovers).
* Onsets (``Onsets``, ``onset_count``): each audio segment also adds what is new in it (non-negative evidence above
  its running maximum over the earlier segments) and a soft count of the onsets so far, so that "the second
  instrument that comes in" can be found by attention (the count) and read off (what is new there); attention with
  a softmax over segments cannot count by itself.
* Onset places (``onset_place``): each audio segment also adds where its change from the previous segment is seen:
  the spatial grounding (its own weights) queried with the change instead of the whole audio, and a map of the
  attention's mean token coordinates ("where is the first sounding instrument": the place of the sound that comes
  in, not of every sounding object).
* Answer names (``AnswerNames``, ``answer_names``): each answer also has an embedding that audio segments are
  scored against. The question's temporal attention weights pool those scores into extra answer logits ("what is
  the first instrument that comes in"), and a question that names an answer (all of its WordPiece ids occur in the
  question: "is there a violin sound?") gets the best segment's score for it, read through a linear map of the
  question into logits. One audio embedding per answer name is then trained by both kinds of question; the plain
  classifier keeps answer rows that the questions' words never reach.
* Answers seen (``SeenNames``): each answer's embedding, mapped to the tokens' space, is also looked for in the
  frames, which gives whether it is visible and where. Two readouts use it. Onset order (``OnsetOrder``,
  ``onset_order``): the answer names' audio scores also say when each answer's sound is first heard; the visible
  answers are ranked by that onset, and a question picks a rank (first, second, third, last) and reads off the
  answer at it or its place. Attention over segments plus an onset count left "the second instrument that comes in"
  near chance (the head did not fit these questions on the training videos either); this ranks the sounds
  explicitly. Relative place (``RelativePlace``, ``relative_place``): the visible answers are scored by their place
  relative to the answer the question names, at an offset read from the question ("the instrument on the left of
  the violin"); it also trains where each answer is seen, which "where is the first sounding instrument" needs
  (docs/tasks/avqa.md has the measurements).
* The question also attends over all S*N visual tokens of its video (one head; the tokens are keys and values) and
  the result is added to the visual term: "the instrument on the left of X" asks the question, not the audio, to
  pick tokens.
* A clip-level audio-visual contrastive loss (symmetric InfoNCE between each video's mean audio and mean visual
  token, the batch's other videos as negatives, weight ``contrast_weight``) is added to the match loss: from random
  initialisation the answer loss alone trains small encoders slowly (docs/tasks/avqa.md has the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from avlearn.data.pipelines.avqa import avqa_pipeline, question_tokenizer
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
    head: str = "avst"  # avst (avlearn's, with the readouts below) | avst_seed (the seed's AVST head exactly)
    dim: int = 128  # width of every feature after its projection (AVST: 512); avst_seed: the visual width
    heads: int = 4  # temporal attention heads
    vocab_size: int = 30522  # question token vocabulary (the tokenizer's)
    word_dim: int = 16  # width of the word embedding table, lifted to ``dim`` (the table dominates the step)
    dropout: float = 0.1
    grounding_weight: float = 0.5  # weight of the positive/negative match loss
    contrast_weight: float = 0.5  # weight of the clip-level audio-visual contrastive loss over the batch's videos
    max_segments: int = 64  # size of the learned time embedding
    max_audio_tokens: int = 256  # size of the learned audio token position embedding
    segment_layers: int = 2  # transformer layers over the 2S audio and visual segment features (0: none)
    onset_count: bool = True  # audio segments add what is new in them and a soft count of the onsets so far
    onset_place: bool = True  # audio segments add where their change from the previous segment is seen
    max_onsets: int = 6  # the soft onset count is encoded by its distance to 0..max_onsets
    answer_names: bool = True  # answers are also scored against the audio, and questions naming one get its evidence
    onset_order: bool = True  # per-answer onsets ranked among the visible ones (needs ``answer_names``)
    order_slots: int = 4  # ranks the order readout can be asked for: 1st..(order_slots-1)th and the last
    relative_place: bool = True  # answers seen where the question says, relative to the one it names


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


class Onsets(nn.Module):
    """What comes in, and when: audio segments (V, S, d) -> (V, S, d).

    Each segment's non-negative evidence ``relu(W a)`` above its running maximum over the earlier segments is what
    is new in it (a sound that comes in; zero for one that goes on or comes back); a sigmoid of a linear map of it,
    summed over time, softly counts the onsets so far (the bias learns what a segment with nothing new adds),
    encoded by its distance to 0..``max_onsets``. Both are mapped to ``d``.
    """

    def __init__(self, dim: int, max_onsets: int) -> None:
        super().__init__()
        self.evidence, self.new = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.strength = nn.Linear(dim, 1)
        self.count = nn.Linear(max_onsets + 1, dim)
        self.register_buffer("levels", torch.arange(max_onsets + 1, dtype=torch.float32), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        evidence = F.relu(self.evidence(audio))  # (V, S, d)
        before = F.pad(evidence.cummax(dim=1).values, (0, 0, 1, 0))[:, :-1]  # (V, S, d): max over segments < s
        new = F.relu(evidence - before)  # (V, S, d)
        count = torch.sigmoid(self.strength(new)).cumsum(dim=1)  # (V, S, 1) onsets up to segment s
        levels = torch.exp(-((count - self.levels) ** 2))  # (V, S, max_onsets + 1)
        return self.new(new) + self.count(levels)


def answer_token_ids(names: tuple[str, ...]) -> torch.Tensor:
    """(K, T) WordPiece ids of each answer (no [CLS]/[SEP]), padded with -1."""
    ids = question_tokenizer()(list(names), add_special_tokens=False)["input_ids"]
    width = max(1, *(len(i) for i in ids))
    return torch.tensor([i + [-1] * (width - len(i)) for i in ids], dtype=torch.long)


class AnswerNames(nn.Module):
    """Answers as sounds to find. Each answer has an embedding; audio segments (V, S, d) are scored against them.

    ``forward`` gives, per question, logits for the audio its temporal attention picked (the question's segment
    weights (Q, S) pool the segments: "what is the first instrument that comes in") and the evidence that the
    answers the question names are heard (all of an answer's WordPiece ids occur in the question, "is there a
    violin sound?"; the best segment's score, averaged over the named answers; 0 when it names none). Both tie an
    answer's name to one audio embedding whatever the question type.
    """

    def __init__(self, dim: int, answer_ids: torch.Tensor) -> None:
        super().__init__()
        self.names = nn.Parameter(torch.randn(len(answer_ids), dim) * dim**-0.5)
        self.audio = nn.Linear(dim, dim)
        self.register_buffer("answer_ids", answer_ids, persistent=False)

    def scores(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio segments (V, S, d) -> (V, S, K): how much each answer's sound is in each segment."""
        return self.audio(audio) @ self.names.T / audio.shape[-1] ** 0.5

    def mentions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(Q, L) question ids -> (Q, K) 1 where all of answer k's ids occur in question q."""
        ids = self.answer_ids  # (K, T)
        found = (ids[None, :, :, None] == input_ids[:, None, None, :]).any(dim=-1) | (ids < 0)  # (Q, K, T)
        return (found.all(dim=-1) & (ids >= 0).any(dim=-1)).float()  # (Q, K)

    def forward(
        self, scores: torch.Tensor, row: torch.Tensor, weights: torch.Tensor, named: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """scores (V, S, K) from ``scores``, row (Q,) video of each question, weights (Q, S), named (Q, K) from
        ``mentions`` -> logits (Q, K), evidence (Q, 1)."""
        logits = torch.einsum("qs,qsk->qk", weights, scores[row])  # (Q, K): scores are linear in the audio
        heard = (named * scores.amax(dim=1)[row]).sum(dim=-1) / named.sum(dim=-1).clamp(min=1)  # (Q,)
        return logits, heard[:, None]


class SeenNames(nn.Module):
    """Answers as things to see: each answer's embedding (K, d), mapped to the tokens' space, against a video's
    visual tokens (V, S, N, d) gives whether it is visible, ``sigmoid(scale * best cosine + b)`` times a learned gate
    of whether answer k names a thing at all, (V, K), and its place, the mean token coordinate under a softmax of
    the cosines, (V, K, 2)."""

    def __init__(self, dim: int, num_answers: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.log_scale = nn.Parameter(torch.tensor(10.0).log())
        self.bias = nn.Parameter(torch.zeros(()))
        self.countable = nn.Parameter(torch.zeros(num_answers))

    def forward(self, names: torch.Tensor, tokens: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """names (K, d), tokens (V, S, N, d), grid (N, 2) -> visible (V, K), place (V, K, 2)."""
        query = F.normalize(self.query(names), dim=-1)  # (K, d)
        cosine = torch.einsum("vnd,kd->vkn", F.normalize(tokens.mean(dim=1), dim=-1), query)  # (V, K, N)
        scale = self.log_scale.exp()
        place = (scale * cosine).softmax(dim=-1) @ grid  # (V, K, N) @ (N, 2) -> (V, K, 2)
        visible = torch.sigmoid(scale * cosine.amax(dim=-1) + self.bias) * torch.sigmoid(self.countable)
        return visible, place


def _gate(dim: int, outputs: int) -> nn.Linear:
    """A linear map of the question whose softplus scales a readout; starts at softplus(-1) = 0.31 for every
    question, so that readouts start weak."""
    gate = nn.Linear(dim, outputs)
    nn.init.constant_(gate.bias, -1.0)
    return gate


class OnsetOrder(nn.Module):
    """Which answer's sound comes in when, among the visible ones ("what is the second instrument that comes in",
    "where is the last sounding instrument"): extra answer logits per question.

    Answer k is heard in segment s with probability ``p = sigmoid(a * score + b_k)`` (the answer names' audio scores)
    and comes in at s with ``p * prod_{s' < s} (1 - p)`` (heard for the first time); ``SeenNames`` says whether it is
    visible and where. Visible onsets add to a running count, so k's rank is one plus the expected count before it
    comes in. Rank slot j (1 .. slots-1) holds ``exp(-(rank_k - j)^2 / width)`` times k's probability of being heard
    and seen; the last slot compares rank_k with the total count. A question picks a slot (softmax over a linear map
    of it) and two non-negative gates read from it scale the log of the slot's answer distribution and a linear map
    of its place (left / middle / right) into the answer logits.
    """

    def __init__(self, dim: int, num_answers: int, slots: int) -> None:
        super().__init__()
        self.heard_scale = nn.Parameter(torch.tensor(1.0))
        self.heard_bias = nn.Parameter(torch.zeros(num_answers))
        self.log_width = nn.Parameter(torch.tensor(0.25).log())  # ranks one apart: exp(-4) = 0.02
        self.slot = nn.Linear(dim, slots)
        self.gate = _gate(dim, 2)
        self.place = nn.Linear(2, num_answers)
        self.register_buffer("ranks", torch.arange(1, slots, dtype=torch.float32), persistent=False)

    def readouts(self, scores: torch.Tensor, visible: torch.Tensor,
                 place: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """scores (V, S, K), visible (V, K), place (V, K, 2) -> per slot J: answers (V, J, K) and place (V, J, 2)."""
        heard = torch.sigmoid(self.heard_scale * scores + self.heard_bias)  # (V, S, K)
        unheard_before = F.pad(torch.cumprod(1 - heard, dim=1), (0, 0, 1, 0), value=1.0)[:, :-1]  # (V, S, K)
        comes_in = heard * unheard_before  # (V, S, K): heard for the first time at s
        onsets = (comes_in * visible[:, None]).sum(dim=-1)  # (V, S) visible onsets at s
        before = F.pad(onsets.cumsum(dim=1), (1, 0))[:, :-1]  # (V, S): visible onsets before s
        ever = comes_in.sum(dim=1)  # (V, K): heard at all
        rank = 1 + (comes_in * before[..., None]).sum(dim=1) / ever.clamp(min=1e-6)  # (V, K)
        targets = torch.cat([self.ranks.expand(len(rank), -1), onsets.sum(dim=1, keepdim=True)], dim=1)  # (V, J)
        match = torch.exp(-((rank[:, None] - targets[..., None]) ** 2) / self.log_width.exp())  # (V, J, K)
        answers = match * (ever * visible)[:, None]  # (V, J, K)
        where = answers @ place / answers.sum(dim=-1, keepdim=True).clamp(min=1e-6)  # (V, J, K) @ (V, K, 2)
        return answers, where

    def forward(self, question: torch.Tensor, row: torch.Tensor, scores: torch.Tensor, visible: torch.Tensor,
                place: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """question (Q, d), row (Q,) its video, the ``readouts`` inputs -> logits (Q, K)."""
        answers, where = self.readouts(scores, visible, place)  # (V, J, K), (V, J, 2)
        slot = self.slot(question).softmax(dim=-1)  # (Q, J)
        answer = torch.einsum("qj,qjk->qk", slot, answers[row])  # (Q, K)
        where = torch.einsum("qj,qjc->qc", slot, where[row])  # (Q, 2)
        gate = F.softplus(self.gate(question))  # (Q, 2)
        return gate[:, :1] * torch.log(answer + 1e-4) + gate[:, 1:] * self.place(where)


class RelativePlace(nn.Module):
    """Which visible answer is where relative to the one the question names ("what is the instrument on the left of
    the violin?"): extra answer logits per question.

    The named answers' mean place is the anchor; answer k scores ``-|place_k - anchor - offset|^2 / width`` plus the
    log of its visibility, where the offset (2,) is read from the question; a non-negative gate read from the
    question scales the scores into the answer logits.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.offset = nn.Linear(dim, 2)
        self.log_width = nn.Parameter(torch.tensor(0.25).log())
        self.gate = _gate(dim, 1)

    def forward(self, question: torch.Tensor, row: torch.Tensor, named: torch.Tensor, visible: torch.Tensor,
                place: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """question (Q, d), row (Q,), named (Q, K) answers the question names, visible (V, K), place (V, K, 2) ->
        logits (Q, K)."""
        place = place[row]  # (Q, K, 2)
        weights = named / named.sum(dim=-1, keepdim=True).clamp(min=1)  # (Q, K)
        anchor = torch.einsum("qk,qkc->qc", weights, place)  # (Q, 2)
        target = anchor + self.offset(question)  # (Q, 2)
        distance = ((place - target[:, None]) ** 2).sum(dim=-1)  # (Q, K)
        score = torch.log(visible[row] + 1e-4) - distance / self.log_width.exp()
        return F.softplus(self.gate(question)) * score


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


HEADS = ("avst", "avst_seed")
SEED_MATCH_WIDTHS = (512, 256, 128)  # the seed's match MLP (fc1..fc3), fixed whatever the feature width


class AVSTSeedHead(nn.Module):
    """The seed's AVST head (``task.head=avst_seed``; DG-SCT ``AVQA/net_grd_avst/net_avst.py``
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
        if cfg.head == "avst_seed":
            if visual_dim % cfg.heads:
                raise ConfigError(f"task.head=avst_seed works at the visual width {visual_dim}, which "
                                  f"task.heads={cfg.heads} does not divide")  # fmt: skip
            self.seed_head = AVSTSeedHead(audio_dim, visual_dim, cfg.vocab_size, info.num_classes, cfg.heads,
                                          cfg.dropout)  # fmt: skip
        else:
            self.seed_head = None
            self._build_avst(cfg, audio_dim, visual_dim, method.dims["audio"], info)

    def _build_avst(self, cfg: AVQAConfig, audio_dim: int, visual_dim: int, audio_token_dim: int,
                    info: DatasetInfo) -> None:  # fmt: skip
        """avlearn's AVST head (``task.head=avst``) and its readouts."""
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
        self.onsets = Onsets(d, cfg.max_onsets) if cfg.onset_count else None
        self.onset_grounding = SpatialGrounding(d) if cfg.onset_place else None
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
        if cfg.answer_names:
            self.names = AnswerNames(d, answer_token_ids(info.class_names))
            self.heard_answer = nn.Linear(d, info.num_classes)  # how the question reads the named answer's evidence
        else:
            self.names = None
        places = cfg.answer_names and (cfg.onset_order or cfg.relative_place)
        self.seen_names = SeenNames(d, info.num_classes) if places else None
        self.order = OnsetOrder(d, info.num_classes, cfg.order_slots) if places and cfg.onset_order else None
        self.relative = RelativePlace(d) if places and cfg.relative_place else None

    def _tokens(self, visual: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """(B, S, N, Cv) method tokens, grid (N, 2) their coordinates -> (B*S, N, d) with their position embedding."""
        tokens = self.visual_proj(visual.flatten(0, 1)) + self.position(grid)
        return tokens + self.token_mlp(tokens)  # binds each token's content to its place

    def _audio(self, feats: AVFeatures) -> torch.Tensor:
        """(V, S, d) audio segment features: the method's pooled features plus the mean of a per-token MLP over
        its tokens with their position (for CNN tokens, frequency x time: pitch survives the pooling)."""
        tokens = self.audio_token_proj(feats.audio) + self.audio_token_pos.weight[: feats.audio.shape[2]]  # (V,S,Na,d)
        return self.audio_proj(feats.audio_pooled) + self.audio_token_mlp(tokens).mean(dim=2)  # (V, S, d)

    def _onset_place(self, tokens: torch.Tensor, change: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Where each segment's audio change is seen: tokens (V*S, N, d), change (V, S, d), grid (N, 2) -> (V, S, d),
        the change-guided grounded feature plus a map of the attention's mean token coordinates."""
        seen, weights = self.onset_grounding(tokens, change.flatten(0, 1))  # (V*S, d), (V*S, N)
        place = self.position(weights @ grid)  # (V*S, N) @ (N, 2) -> (V*S, d)
        return (seen + place).unflatten(0, change.shape[:2])  # (V*S, d) -> (V, S, d)

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
        if self.onsets is not None:
            audio_seg = audio_seg + self.onsets(audio)
        if self.onset_grounding is not None:
            audio_seg = audio_seg + self._onset_place(tokens, change, grid)
        if self.segments is not None:
            both = torch.cat([audio_seg + self.modality.weight[0], visual_seg + self.modality.weight[1]], dim=1)
            audio_seg, visual_seg = self.segments(both).split(s, dim=1)  # (V, 2S, d) -> 2 x (V, S, d)
        return {"audio": audio, "tokens": tokens, "visual": visual, "audio_seg": audio_seg, "visual_seg": visual_seg,
                "grid": grid, "method_losses": feats.losses}  # fmt: skip

    def _seed_outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``outputs`` of ``task.head=avst_seed``: each video encoded and grounded once, each question answered."""
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
        if self.names is not None:
            scores, named = self.names.scores(enc["audio"]), self.names.mentions(q.input_ids)  # (V, S, K), (Q, K)
            name_logits, heard = self.names(scores, q.row, a_weights, named)  # (Q, K), (Q, 1)
            logits = logits + name_logits + heard * self.heard_answer(question)
        if self.seen_names is not None:
            tokens_vsn = enc["tokens"].unflatten(0, (v, s))  # (V*S, N, d) -> (V, S, N, d)
            visible, place = self.seen_names(self.names.names, tokens_vsn, enc["grid"])  # (V, K), (V, K, 2)
        if self.order is not None:
            logits = logits + self.order(question, q.row, scores, visible, place)
        if self.relative is not None:
            logits = logits + self.relative(question, q.row, named, visible, place)
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
        """Another video's tokens (B', N, d) grounded by this audio (B', d) -> (B', d). ``avst_seed``: the tokens
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

"""Text <-> clip retrieval (MSR-VTT, VALOR-32K style): a clip and its caption embedded in one space by a contrastive
loss; scored by R@1/5/10, median and mean rank in both directions.

Follows the contrastive retrieval heads of CLIP4Clip (Luo et al., 2022, its ``seqTransf`` temporal encoder) and
VALOR (Chen et al., 2023; ``compute_metric_ret``, dual softmax):

* Text: captions are embedded once by a frozen text tower held by the task (``task.text``, default ``minilm_l6``,
  all-MiniLM-L6-v2; the caption pipeline ``avlearn.data.pipelines.captions`` embeds them, as for caption
  pre-training), then standardised per dimension (batch norm) and mapped by a trained two-layer MLP. Why not the
  method's own text tower (``backbone.text``): every method can then be put on this task (it reads only
  ``audio_pooled`` / ``visual_pooled``), and a step costs only the clip side; a trainable text tower (VALOR) is a
  method's business and would arrive as ``text_pooled``.
* Clip: ``task.features`` = ``audio``, ``visual`` or ``av`` (audio and visual pooled segment features
  concatenated); each segment is projected, given a learned position embedding, mixed over the segments by one
  transformer encoder layer, averaged and projected (CLIP4Clip's ``seqTransf``): captions say *when* things happen.
* Loss: symmetric info-NCE over the global batch (``avlearn.distributed.all_gather_with_grad``: every process sees
  every clip and caption of the step as negatives), with a learnable temperature: the logit scale is
  ``exp(log_scale)`` with ``log_scale`` clamped to ``[0, log(max_scale)]`` (CLIP: at most 100). Captions of a
  batch that are identical are positives of each other (a soft target): a repeated caption is no negative.
* Training draws one of a clip's captions at random each time it is read; validation and test use each clip's
  first caption as its query (one query per clip, the MSR-VTT 1k-A protocol).
* Evaluation: the (texts, clips) cosine-similarity matrix of the whole split, scored by
  ``avlearn.metrics.retrieval.retrieval_scores`` (``t2v_*``, ``v2t_*``); ``task.dual_softmax`` > 0 adds the
  dual-softmax scores at that temperature (``*_dsl``). ``t2v_r1`` selects.
* ``task.similarity=method``: the method's own text side and similarity replace the task's (VALOR's MGA score):
  the captions' token ids (the caption pipeline carries them, by ``task.text``'s tokenizer) go to the method's
  optional ``retrieval_features(feats, ids, mask)`` / ``retrieval_similarity(features)`` /
  ``retrieval_loss(features)`` hooks (docs/architecture.md, "Contract"); the task's clip encoder, text MLP and
  scale are not built, and ``task.dual_softmax`` still applies to the similarity.
* Identical query captions cap what any model can reach: of g clips whose queries are the same text, one ranking
  puts one first (``avlearn.viz.retrieval.caption_ceiling``, the report's ``ceiling``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines import Splits
from avlearn.data.pipelines.captions import captions_splits
from avlearn.distributed import all_gather_with_grad
from avlearn.errors import ConfigError
from avlearn.losses.contrastive import symmetric_nce
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses, paired_segments, pooled_widths
from avlearn.viz.retrieval import RETRIEVE

FEATURES = ("audio", "visual", "av")
METHOD_SIMILARITY = ("retrieval_features", "retrieval_similarity", "retrieval_loss")  # task.similarity=method hooks


@dataclass
class RetrieveConfig:
    """Schema of ``task/retrieve.yaml``."""

    name: str = "retrieve"
    text: str = "minilm_l6"  # frozen text tower that embeds the captions (read by the caption pipeline)
    text_pretrained: str = ""  # its weights ("" = the tower's default)
    holdout: list[str] = field(default_factory=list)  # classes left out of every split (caption pipeline)
    features: str = "av"  # audio | visual | av
    dim: int = 256  # joint space width
    heads: int = 4  # temporal encoder attention heads
    dropout: float = 0.1
    init_scale: float = 1 / 0.07  # initial logit scale (CLIP's)
    max_scale: float = 100.0
    dual_softmax: float = 0.0  # > 0: also score with dual softmax at this temperature
    similarity: str = "task"  # task: its own text and clip embeddings; method: the method's hooks (METHOD_SIMILARITY)


def mlp(width_in: int, width_out: int) -> nn.Sequential:
    """Two linear layers with a GELU: (..., width_in) -> (..., width_out)."""
    return nn.Sequential(nn.Linear(width_in, width_out), nn.GELU(), nn.Linear(width_out, width_out))


class ClipEncoder(nn.Module):
    """(B, S, C) segment features -> (B, D) L2-normalised clip embedding: projection, position embedding, one
    transformer encoder layer over the segments, mean, projection."""

    def __init__(self, width: int, dim: int, segments: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(width, dim)
        self.position = nn.Parameter(torch.zeros(segments, dim))
        self.mix = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        h = self.proj(segments) + self.position[: segments.shape[1]]  # (B, S, D)
        return F.normalize(self.out(self.mix(h).mean(dim=1)), dim=-1)  # (B, S, D) -> (B, D)


def retrieve_splits(cfg: Any, audio_pre: Any) -> Splits:
    """The caption pipeline, with the captions' token ids when the method scores them (``task.similarity=method``)."""
    return captions_splits(cfg, audio_pre, words=cfg.task.similarity == "method")


def _check_method_similarity(cfg: RetrieveConfig, method: nn.Module) -> None:
    """``task.similarity``: 'task' or 'method'; with 'method' the method must have the hooks. One-line ConfigErrors."""
    if cfg.similarity != "method":
        raise ConfigError(f"task.similarity={cfg.similarity!r}: expected 'task' (its own embeddings) or 'method'")
    missing = [hook for hook in METHOD_SIMILARITY if not callable(getattr(method, hook, None))]
    if missing:
        name = getattr(getattr(method, "cfg", None), "name", type(method).__name__)
        raise ConfigError(f"task.similarity=method: method '{name}' has no {' / '.join(missing)} (its own retrieval "
                          "score); use task.similarity=task")  # fmt: skip


@TASKS.register("retrieve", pipeline=retrieve_splits, synth_part="events", report=RETRIEVE, stores=("clips",))
class RetrieveTask(nn.Module):
    """Text <-> clip retrieval: batch ``frames``, ``audio`` and ``text (B, Ct)``, the caption's frozen embedding."""

    Config = RetrieveConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "t2v_r1"

    def __init__(self, cfg: RetrieveConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        if cfg.features not in FEATURES:
            raise ConfigError(f"task.features={cfg.features!r}: expected one of {', '.join(FEATURES)}")
        if not 1.0 <= cfg.init_scale <= cfg.max_scale:
            raise ConfigError(f"task.init_scale={cfg.init_scale}: expected 1 <= init_scale <= task.max_scale "
                              f"({cfg.max_scale})")  # fmt: skip
        self.cfg, self.info, self.method = cfg, info, method
        if cfg.similarity != "task":
            _check_method_similarity(cfg, method)
            return
        audio_dim, visual_dim = pooled_widths(method)
        width = {"audio": audio_dim, "visual": visual_dim, "av": audio_dim + visual_dim}[cfg.features]
        self.clip = ClipEncoder(width, cfg.dim, info.segments, cfg.heads, cfg.dropout)
        width = text_width(cfg)
        # Standardised per dimension first: captions that differ in a word (a side, a second) are within a few
        # hundredths of cosine of each other in a sentence embedding; standardising makes those directions count.
        self.text = nn.Sequential(nn.BatchNorm1d(width), mlp(width, cfg.dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(cfg.init_scale)))

    def scale(self) -> torch.Tensor:
        """The logit scale, ``exp`` of the log-scale clamped to ``[0, log(max_scale)]``."""
        return self.log_scale.clamp(0.0, math.log(self.cfg.max_scale)).exp()

    def clip_embedding(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, D) L2-normalised clip embeddings of ``task.features`` and the method's own loss terms."""
        feats = self.method(batch)
        if self.cfg.features == "av":
            feats = paired_segments(feats, self.cfg.name)
            segments = torch.cat([feats.audio_pooled, feats.visual_pooled], dim=-1)  # (B, S, Ca + Cv)
        else:
            segments = getattr(feats, f"{self.cfg.features}_pooled")  # (B, S, C)
        return self.clip(segments), feats.losses

    def text_embedding(self, text: torch.Tensor) -> torch.Tensor:
        """(B, Ct) frozen caption embeddings -> (B, D) L2-normalised."""
        return F.normalize(self.text(text.to(self.log_scale.dtype)), dim=-1)

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(B, D) clip and (B, D) text embeddings (L2-normalised) and the method's own loss terms."""
        clip, losses = self.clip_embedding(batch)
        return clip, self.text_embedding(batch["text"]), losses

    def method_features(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``task.similarity=method``: the method's retrieval features of the clips and their captions (per row) and
        its own loss terms."""
        feats = self.method(batch)
        return self.method.retrieval_features(feats, batch["input_ids"], batch["attention_mask"]), feats.losses

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.cfg.similarity == "method":
            features, losses = self.method_features(batch)
            return add_method_losses({"loss": self.method.retrieval_loss(features)}, losses)
        clip, text, losses = self.embed(batch)
        clip, text = all_gather_with_grad(clip), all_gather_with_grad(text)  # (N, D): the global batch
        captions = all_gather_with_grad(F.normalize(batch["text"].float(), dim=-1))  # (N, Ct)
        same = (captions @ captions.T > 1.0 - 1e-4).float()  # (N, N) identical captions are positives
        loss = symmetric_nce(text, clip, same / same.sum(dim=1, keepdim=True), self.scale())
        return add_method_losses({"loss": loss}, losses)

    @torch.no_grad()
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """``clip (B, D)`` and ``text (B, D)``: the embeddings of each clip and of its query caption (with
        ``task.similarity=method``: the method's retrieval features)."""
        if self.cfg.similarity == "method":
            return self.method_features(batch)[0]
        clip, text, _ = self.embed(batch)
        return {"clip": clip, "text": text}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Retrieval R@1/5/10, ravg, median and mean rank, text -> clip and clip -> text (percent; ranks 1-based)."""
        from avlearn.metrics.retrieval import retrieval_scores

        if self.cfg.similarity == "method":
            similarity = self.method.retrieval_similarity(preds).double()  # (T, V), text t is clip t's query
        else:
            similarity = preds["text"].double() @ preds["clip"].double().T  # (T, V), text t is clip t's query
        truth = torch.arange(len(similarity))
        return retrieval_scores(similarity, truth, dual_softmax_temperature=self.cfg.dual_softmax or None)


def text_width(cfg: RetrieveConfig) -> int:
    """The width of the frozen text tower's caption embedding (its projected width for joint-space towers)."""
    from avlearn.registry import BACKBONES

    tower = BACKBONES.build(cfg.text, pretrained=cfg.text_pretrained or None)
    return getattr(tower, "proj_dim", None) or tower.num_features

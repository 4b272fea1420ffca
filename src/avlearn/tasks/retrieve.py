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
* Token level (options, off by default): ``task.text_layers=N`` holds the text tower in the task and trains its top
  N layers on the captions' WordPiece ids (the caption pipeline carries them; the tower's lr by ``train.lr_mult``);
  ``task.text_pool=attention`` pools its token features by one learned query (``AttentionPool``) instead of its
  sentence vector; ``task.clip_pool=attention`` pools each segment's tokens of the method the same way, with a
  fixed encoding of the token index, instead of the method's pooled feature, so the side of the frame can reach the
  clip embedding.
* Clip: ``task.features`` = ``audio``, ``visual`` or ``av`` (audio and visual pooled segment features
  concatenated); each segment is projected, given a learned position embedding and mixed over the segments by one
  transformer encoder layer (CLIP4Clip's ``seqTransf``); then ``task.temporal_pool=flatten`` (default) concatenates
  the segment outputs and projects them, each second with its own weights (captions say *when* things happen; it
  doubled test R@1 on AVSynth, docs/tasks/retrieve.md; a fixed segment count), or ``mean`` averages them (CLIP4Clip).
* Loss: symmetric info-NCE over the global batch (``avlearn.distributed.all_gather_with_grad``: every process sees
  every clip and caption of the step as negatives), with a learnable temperature: the logit scale is
  ``exp(log_scale)`` with ``log_scale`` clamped to ``[0, log(max_scale)]`` (CLIP: at most 100). Captions of a
  batch that are identical are positives of each other (a soft target): a repeated caption is no negative.
* Data: the caption benchmark ``data.benchmark`` names (``clips.CAPTION_BENCHMARKS``: VALOR-32K, MSR-VTT and the
  VALOR-layout readers, read by ``clips.clip_splits``), or with the default (``vggsound``) the AVE layout with
  ``captions/txt_mapper.json`` (AVSynth's event clips); another benchmark is a one-line ConfigError.
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
from avlearn.data.pipelines.captions import benchmark_caption_segments, captions_splits
from avlearn.data.pipelines.clips import CAPTION_BENCHMARKS, clip_splits, text_benchmark
from avlearn.distributed import all_gather_with_grad
from avlearn.errors import ConfigError, DataError
from avlearn.layers.prompts import embed_prompts
from avlearn.losses.contrastive import symmetric_nce
from avlearn.methods.base import AVFeatures
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses, paired_segments, pooled_widths
from avlearn.viz.retrieval import RETRIEVE

FEATURES = ("audio", "visual", "av")
TEXT_POOLS = ("sentence", "attention")
CLIP_POOLS = ("mean", "attention")
TEMPORAL_POOLS = ("mean", "flatten")
SIMILARITIES = ("task", "method")
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
    text_layers: int = 0  # top layers of the text tower trained in the task (0: frozen)
    text_pool: str = "sentence"  # sentence (the tower's pooled embedding) | attention (over its token features)
    clip_pool: str = "mean"  # mean (the method's pooled segment features) | attention (over the method's tokens)
    temporal_pool: str = "flatten"  # flatten (each second its own weights; S fixed) | mean (CLIP4Clip)
    similarity: str = "task"  # task: its own text and clip embeddings; method: the method's hooks (METHOD_SIMILARITY)


def mlp(width_in: int, width_out: int) -> nn.Sequential:
    """Two linear layers with a GELU: (..., width_in) -> (..., width_out)."""
    return nn.Sequential(nn.Linear(width_in, width_out), nn.GELU(), nn.Linear(width_out, width_out))


def index_encoding(length: int, width: int) -> torch.Tensor:
    """(length, width) fixed sinusoidal encoding of the token index (Vaswani et al., 2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))  # (C/2,)
    out = torch.zeros(length, width)
    out[:, 0::2], out[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate[: width // 2])
    return out


class AttentionPool(nn.Module):
    """(B, L, C) tokens (and a (B, L) mask of the real ones) -> (B, D): the tokens are projected to D (plus a fixed
    encoding of their index where ``indexed``: where a token lies reaches the pooled vector), and one learned query
    attends over them with ``heads`` heads (the attention pooling of CLIP's ResNet and of Set Transformer's PMA)."""

    def __init__(self, width: int, dim: int, heads: int, indexed: bool) -> None:
        super().__init__()
        self.proj, self.indexed = nn.Linear(width, dim), indexed
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.proj(tokens)  # (B, L, D)
        if self.indexed:
            h = h + index_encoding(h.shape[1], h.shape[2]).to(h)
        padding = None if mask is None else mask == 0  # (B, L), True where padded
        pooled, _ = self.attend(self.query.expand(len(h), -1, -1), h, h, key_padding_mask=padding)  # (B, 1, D)
        return pooled[:, 0]


class ClipEncoder(nn.Module):
    """(B, S, C) segment features -> (B, D) L2-normalised clip embedding: projection, position embedding, one
    transformer encoder layer over the segments, then ``temporal``: ``mean`` over the segments and a projection
    (CLIP4Clip), or ``flatten``: the S normalised segment outputs concatenated and projected, so each second has
    its own weights and *when* something happens maps linearly into the embedding (needs exactly S segments)."""

    def __init__(self, width: int, dim: int, segments: int, heads: int, dropout: float, temporal: str = "mean") -> None:
        super().__init__()
        self.proj = nn.Linear(width, dim)
        self.position = nn.Parameter(torch.zeros(segments, dim))
        self.mix = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.segments, self.flatten = segments, temporal == "flatten"
        tail = [nn.Flatten(1), nn.Linear(segments * dim, dim)] if self.flatten else [nn.Linear(dim, dim)]
        self.out = nn.Sequential(nn.LayerNorm(dim), *tail)

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        if self.flatten and segments.shape[1] != self.segments:
            raise DataError(f"task.temporal_pool=flatten needs {self.segments} segments per clip, the batch has "
                            f"{segments.shape[1]}")  # fmt: skip
        h = self.mix(self.proj(segments) + self.position[: segments.shape[1]])  # (B, S, D)
        return F.normalize(self.out(h if self.flatten else h.mean(dim=1)), dim=-1)  # (B, S, D) -> (B, D)


def reads_words(cfg: RetrieveConfig) -> bool:
    """Whether the captions' token ids are read: by the task's own text tower (a trained or token-level text side) or
    by the method's (``task.similarity=method``)."""
    return cfg.text_layers > 0 or cfg.text_pool == "attention" or cfg.similarity == "method"


def retrieve_splits(cfg: Any, audio_pre: Any) -> Splits:
    """The caption pipeline (the caption benchmark ``data.benchmark``, or by default the AVE layout with
    ``captions/txt_mapper.json``), with the captions' token ids when the task runs the text tower (``reads_words``)."""
    words = reads_words(cfg.task)
    if not text_benchmark(cfg, CAPTION_BENCHMARKS, "the AVE layout with captions/txt_mapper.json"):
        return captions_splits(cfg, audio_pre, words=words)
    if cfg.task.holdout:
        raise ConfigError(f"task.holdout={list(cfg.task.holdout)}: classes are held out of the AVE layout only; "
                          f"data.benchmark={cfg.data.benchmark} has none to hold out: leave it empty")  # fmt: skip
    return benchmark_caption_segments(cfg, clip_splits(cfg, audio_pre), words=words)


def _check(cfg: RetrieveConfig, method: nn.Module) -> None:
    """One-line ConfigErrors for the values the schema's types cannot check."""
    for key, value, allowed in (("features", cfg.features, FEATURES), ("text_pool", cfg.text_pool, TEXT_POOLS),
                                ("clip_pool", cfg.clip_pool, CLIP_POOLS),
                                ("temporal_pool", cfg.temporal_pool, TEMPORAL_POOLS),
                                ("similarity", cfg.similarity, SIMILARITIES)):  # fmt: skip
        if value not in allowed:
            raise ConfigError(f"task.{key}={value!r}: expected one of {', '.join(allowed)}")
    if not 1.0 <= cfg.init_scale <= cfg.max_scale:
        raise ConfigError(f"task.init_scale={cfg.init_scale}: expected 1 <= init_scale <= task.max_scale "
                          f"({cfg.max_scale})")  # fmt: skip
    modalities = ("audio", "visual") if cfg.features == "av" else (cfg.features,)
    missing = [m for m in modalities if cfg.clip_pool == "attention" and m not in method.produces]
    if missing:
        raise ConfigError(f"task.clip_pool=attention pools the method's {missing[0]} tokens, which it does not "
                          f"produce (it produces: {', '.join(method.produces)}); use task.clip_pool=mean")  # fmt: skip
    if cfg.similarity == "method":
        _check_method_hooks(method)


def _check_method_hooks(method: nn.Module) -> None:
    """``task.similarity=method``: the method must have the retrieval hooks (``METHOD_SIMILARITY``)."""
    missing = [hook for hook in METHOD_SIMILARITY if not callable(getattr(method, hook, None))]
    if missing:
        name = getattr(getattr(method, "cfg", None), "name", type(method).__name__)
        raise ConfigError(f"task.similarity=method: method '{name}' has no {' / '.join(missing)} (its own retrieval "
                          "score); use task.similarity=task")  # fmt: skip


def text_tower(cfg: RetrieveConfig) -> nn.Module:
    """The text tower run in the task: frozen but for its top ``task.text_layers`` layers."""
    from avlearn.registry import BACKBONES

    tower = BACKBONES.build(cfg.text, pretrained=cfg.text_pretrained or None)
    if not 0 <= cfg.text_layers <= tower.num_stages:
        raise ConfigError(f"task.text_layers={cfg.text_layers}: expected 0 to {tower.num_stages} (the layers of "
                          f"task.text={cfg.text})")  # fmt: skip
    tower.freeze("all")
    for stage in range(tower.num_stages - cfg.text_layers, tower.num_stages):
        for block in tower.stage_blocks(stage):
            block.requires_grad_(True)
    return tower


def similarity(text: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """(T, D) and (V, D) L2-normalised embeddings -> (T, V) cosine similarities (in float64, for scoring)."""
    return text.double() @ clip.double().T


@TASKS.register("retrieve", pipeline=retrieve_splits, synth_part="events", report=RETRIEVE, stores=("clips",))
class RetrieveTask(nn.Module):
    """Text <-> clip retrieval: batch ``frames``, ``audio`` and ``text (B, Ct)``, the caption's frozen embedding
    (plus ``input_ids`` / ``attention_mask (B, L)``, its token ids, when the task runs the text tower)."""

    Config = RetrieveConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "t2v_r1"

    def __init__(self, cfg: RetrieveConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        _check(cfg, method)
        self.cfg, self.info, self.method = cfg, info, method
        if cfg.similarity == "method":  # the method's hooks score; no clip encoder, text side or scale of the task
            return
        self.modalities = ("audio", "visual") if cfg.features == "av" else (cfg.features,)
        if cfg.clip_pool == "attention":  # each segment's tokens -> (D,), where each token lies kept
            self.clip_pools = nn.ModuleDict({m: AttentionPool(method.dims[m], cfg.dim, cfg.heads, indexed=True)
                                             for m in self.modalities})  # fmt: skip
            width = cfg.dim * len(self.modalities)
        else:
            width = sum(dict(zip(("audio", "visual"), pooled_widths(method), strict=True))[m] for m in self.modalities)
        self.clip = ClipEncoder(width, cfg.dim, info.segments, cfg.heads, cfg.dropout, cfg.temporal_pool)
        self.text_tower = text_tower(cfg) if reads_words(cfg) else None
        width = text_width(cfg) if self.text_tower is None else self.text_tower.num_features
        if cfg.text_pool == "attention":
            self.text_pool = AttentionPool(width, cfg.dim, cfg.heads, indexed=False)  # BERT tokens carry positions
            self.text = mlp(cfg.dim, cfg.dim)
        else:
            # Standardised per dimension first: captions that differ in a word (a side, a second) are within a few
            # hundredths of cosine of each other in a sentence embedding; standardising makes those directions count.
            self.text = nn.Sequential(nn.BatchNorm1d(width), mlp(width, cfg.dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(cfg.init_scale)))

    def scale(self) -> torch.Tensor:
        """The logit scale, ``exp`` of the log-scale clamped to ``[0, log(max_scale)]``."""
        return self.log_scale.clamp(0.0, math.log(self.cfg.max_scale)).exp()

    def _segments(self, feats: AVFeatures, modality: str) -> torch.Tensor:
        """(B, S, C) per-segment features of one modality: the method's pooled ones, or its tokens attention-pooled."""
        if self.cfg.clip_pool == "mean":
            return getattr(feats, f"{modality}_pooled")  # (B, S, C)
        tokens = getattr(feats, modality)  # (B, S, N, C)
        return self.clip_pools[modality](tokens.flatten(0, 1)).unflatten(0, tokens.shape[:2])  # (B*S, D) -> (B, S, D)

    def clip_embedding(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, D) L2-normalised clip embeddings of ``task.features`` and the method's own loss terms."""
        feats = self.method(batch)
        if self.cfg.features == "av":
            feats = paired_segments(feats, self.cfg.name)
        segments = torch.cat([self._segments(feats, m) for m in self.modalities], dim=-1)  # (B, S, Ca + Cv)
        return self.clip(segments), feats.losses

    def text_embedding(self, batch: dict) -> torch.Tensor:
        """(B, D) L2-normalised caption embeddings: from the frozen caption embedding ``text (B, Ct)``, or from the
        token ids ``input_ids`` / ``attention_mask (B, L)`` through the task's text tower."""
        if self.text_tower is None:
            return F.normalize(self.text(batch["text"].to(self.log_scale.dtype)), dim=-1)
        mask = batch["attention_mask"]
        tokens = self.text_tower.forward_features(batch["input_ids"], mask)  # (B, L, Ct)
        if self.cfg.text_pool == "attention":
            pooled = self.text_pool(tokens, mask)  # (B, D)
        else:  # the tower's sentence embedding, L2-normalised as the cached one
            pooled = F.normalize(self.text_tower.pool(tokens, attention_mask=mask), dim=-1)  # (B, Ct)
        return F.normalize(self.text(pooled), dim=-1)

    def query_embedding(self, queries: list[str]) -> torch.Tensor:
        """(Q, D) L2-normalised embeddings of text queries, as captions are embedded."""
        if self.cfg.similarity == "method":
            raise ConfigError("predict --query embeds queries with the task's text side; task.similarity=method has "
                              "none (the method scores pairs): use task.similarity=task")  # fmt: skip
        if self.text_tower is not None:
            return self.text_embedding(self.text_tower.tokenize(queries))
        text = embed_prompts(self.cfg.text, queries, self.cfg.text_pretrained or None)  # (Q, Ct)
        return self.text_embedding({"text": text.to(self.log_scale.device)})

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(B, D) clip and (B, D) text embeddings (L2-normalised) and the method's own loss terms."""
        clip, losses = self.clip_embedding(batch)
        return clip, self.text_embedding(batch), losses

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
            scores = self.method.retrieval_similarity(preds).double()  # (T, V), text t is clip t's query
        else:
            scores = similarity(preds["text"], preds["clip"])  # (T, V), text t is clip t's query
        truth = torch.arange(len(scores))
        return retrieval_scores(scores, truth, dual_softmax_temperature=self.cfg.dual_softmax or None)


def text_width(cfg: RetrieveConfig) -> int:
    """The width of the frozen text tower's caption embedding (its projected width for joint-space towers)."""
    from avlearn.registry import BACKBONES

    tower = BACKBONES.build(cfg.text, pretrained=cfg.text_pretrained or None)
    return getattr(tower, "proj_dim", None) or tower.num_features

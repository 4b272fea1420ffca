"""Prompt classifiers: few-shot audio-visual classification with text prompts per class (three variants), DG-SCT's
pre-training and prompt zero-shot tasks on the same classifier, and the few-shot shots x seeds protocol.

Follows DG-SCT's few-shot setting (Duan et al., NeurIPS 2023; haoyi-duan/DG-SCT ``few-shot/nets/net_trans.py``,
``prompt_learner.py``, ``main_AVE.py``, ``main_AVE_class.py``, ``main_LLP_class.py``; spec ``specs/dgsct.md`` §4):
every class is described by a visual prompt ("a photo of a {class}.", as CLIP's) and an audio prompt ("the sound of
a {class}.", as CLAP's); each segment's visual and audio features are mapped into the text space and compared by
cosine similarity with a learnable scale; the two similarities are added (the seed: ``2 * logits_v + 2 * logits_a``).

* ``fewshot``: AVE segment classification over the K classes plus background, described by its own prompts (the
  seed's ``weak=0``); cross-entropy per segment; scored by segment accuracy, background included.
* ``fewshot_ave_cls``: AVE classification (the seed's ``weak=1 classification=1``): no background class; a clip's
  label is the class of its first event segment, its logits the mean of its segment logits; scored by accuracy.
* ``fewshot_llp_cls``: LLP video classification: the same clip logits; cross-entropy against the un-normalised
  multi-hot weak labels as a soft target; accuracy of the argmax against the argmax of the multi-hot (the first
  label in class order for multi-label videos), as the seed scores it.

``few_shot_grid`` runs the protocol in one process: for each number of shots and each seed, K training clips per
class (``avlearn.data.samplers.few_shot_indices``), a training run, a score; mean and population std over seeds. The
CLI does the same with ``avlearn train -m task=fewshot shots=1,2,4,8,16 seed=0,1,2`` (data:
``avlearn.data.pipelines.fewshot``).

What we changed, and why:

* The prompts are embedded once by frozen text towers given by name (default ``minilm_l6``, the sentence encoder
  that ships offline; ``clip_text_*`` / ``clap_text_*`` for the seed's CLIP and CLAP text sides, weights by
  ``text_pretrained`` / ``audio_text_pretrained``). CoOp's learnable context vectors are replaced by these fixed
  embeddings: the trainable parts are the two projections (the role of the seed's CLIP-Adapter residuals) and one
  learnable logit scale (the seed also uses CLAP's log-scale un-exponentiated, a bug not copied).
* Fixed loss weights: segment (or clip) cross-entropy plus ``contrastive`` times the symmetric audio-image InfoNCE
  over clip-mean embeddings (the seed: ``500 CE`` for 10 epochs then ``5 CE``, plus ``2 CE_ai + 1.5 CE_ia``; its
  classification scripts use loss-dependent weights that are not detached, so the weights themselves are trained,
  and ``main_AVE_class.py`` misplaces a parenthesis in one of them). Neither the epoch schedule nor the
  loss-dependent weights are reproduced.
* Model selection on the validation split (the seed selects and reports on the test split).
* Clips without an event have no AVE-classification label: they are left out of ``fewshot_ave_cls``'s loss and score.

DG-SCT's own recipe, on the same prompt classifier (docs/tasks/zeroshot.md):
``pretrain_segments`` trains it on VGGSound-AVEL40K with the seed's segment cross-entropy over the class prompts plus
a background prompt (and the few-shot audio-image InfoNCE); ``zeroshot_ave`` (segments, background included),
``zeroshot_ave_cls`` and ``zeroshot_llp_cls`` rebuild the prompts for the target dataset's classes and keep every
pre-trained weight (``train.init_from``). What differs from the seed: the prompts are fixed text-tower embeddings
(the seed discards its learned CoOp context in zero-shot anyway), ``zeroshot_ave`` keeps the background prompt (the
seed sets ``weak=True``: no background, so AVE background segments can never be right), the branches are summed as
in pre-training (not the seed's unstable ``w1 = logits_v / (logits_v + logits_a)``), and LLP is also scored by
whether the predicted class is any of the video's labels and by mAP (the seed: argmax of the multi-hot only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines.fewshot import fewshot_splits
from avlearn.errors import ConfigError
from avlearn.layers.prompts import embed_prompts
from avlearn.losses.contrastive import info_nce
from avlearn.metrics.ave import clip_class
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, EvaluationOnly, add_method_losses, paired_segments, pooled_widths
from avlearn.viz.reports import AVE, AVE_CLS, LLP_CLS


@dataclass
class FewShotConfig:
    """Schema of ``task/fewshot*.yaml``."""

    name: str = "fewshot"
    text: str = "minilm_l6"  # frozen text tower that embeds the visual prompts (and the audio ones by default)
    text_pretrained: str = ""  # its weights (folder or cached HF id); "" = the tower's default
    audio_text: str = ""  # text tower of the audio prompts; "" = ``text`` (the seed: CLAP's RoBERTa)
    audio_text_pretrained: str = ""
    visual_prompt: str = "a photo of a {}."
    audio_prompt: str = "the sound of a {}."
    background: str = "background"  # name of the background class in its prompts ("" = no background class)
    init_scale: float = 10.0  # initial cosine-logit scale
    contrastive: float = 0.0  # weight of the audio-image InfoNCE term (0 = off)


def class_prompts(template: str, class_names: Sequence[str], background: str) -> list[str]:
    """``template`` filled with each class name, then with ``background`` when it is not empty."""
    return [template.format(name) for name in (*class_names, *([background] if background else []))]


def _class_embeddings(cfg: FewShotConfig, class_names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Ct) visual and (P, Ct') audio prompt embeddings; one tower call when both prompts use the same tower."""
    visual = class_prompts(cfg.visual_prompt, class_names, cfg.background)
    audio = class_prompts(cfg.audio_prompt, class_names, cfg.background)
    tower, weights = (cfg.audio_text, cfg.audio_text_pretrained) if cfg.audio_text else (cfg.text, cfg.text_pretrained)
    if (tower, weights) != (cfg.text, cfg.text_pretrained):
        return embed_prompts(cfg.text, visual, cfg.text_pretrained), embed_prompts(tower, audio, weights)
    both = embed_prompts(cfg.text, [*visual, *audio], cfg.text_pretrained)
    return both[: len(visual)], both[len(visual) :]


class _PromptClassifier(nn.Module):
    """Prompt embeddings, the projections into the text space and the scaled cosine logits, shared by the variants."""

    Config = FewShotConfig
    needs = ("audio_pooled", "visual_pooled")
    with_background = True
    persistent_prompts = True  # False: prompts are rebuilt from the class names, never saved nor loaded

    def __init__(self, cfg: FewShotConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        if cfg.background and not self.with_background:
            raise ConfigError(f"task.background={cfg.background!r}: task '{cfg.name}' has no background class; "
                              "expected ''")  # fmt: skip
        self.cfg, self.info, self.method = cfg, info, method
        visual, audio = _class_embeddings(cfg, info.class_names)
        if cfg.contrastive and visual.shape[1] != audio.shape[1]:
            raise ConfigError(f"task.contrastive={cfg.contrastive}: the two text towers' widths differ "
                              f"({visual.shape[1]} vs {audio.shape[1]}); expected 0 or equal widths")  # fmt: skip
        self.register_buffer("visual_classes", visual, persistent=self.persistent_prompts)  # (K [+ 1], Ct)
        self.register_buffer("audio_classes", audio, persistent=self.persistent_prompts)  # (K [+ 1], Ct')
        audio_dim, visual_dim = pooled_widths(method)
        self.visual_proj = nn.Linear(visual_dim, visual.shape[1])
        self.audio_proj = nn.Linear(audio_dim, audio.shape[1])
        self.log_scale = nn.Parameter(torch.tensor(float(cfg.init_scale)).log())

    def segment_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, S, K [+ 1]) logits (scaled cosine to the visual plus to the audio prompts) and the auxiliary loss
        terms: the method's own and, in training with ``contrastive > 0``, the audio-image InfoNCE."""
        feats = paired_segments(self.method(batch), self.cfg.name)
        visual = F.normalize(self.visual_proj(feats.visual_pooled), dim=-1)  # (B, S, Ct)
        audio = F.normalize(self.audio_proj(feats.audio_pooled), dim=-1)  # (B, S, Ct')
        scale = self.log_scale.exp()
        logits = scale * (visual @ self.visual_classes.T + audio @ self.audio_classes.T)
        aux = dict(feats.losses)
        if self.cfg.contrastive and self.training:
            clip_v, clip_a = F.normalize(visual.mean(1), dim=-1), F.normalize(audio.mean(1), dim=-1)  # (B, Ct)
            aux["contrastive"] = self.cfg.contrastive * info_nce(clip_a, clip_v, scale)
        return logits, aux

    def clip_logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, K) the mean of the segment logits (the seed's classification score) and the auxiliary loss terms."""
        logits, aux = self.segment_logits(batch)
        return logits.mean(dim=1), aux

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``clip_labels (B,)``: the argmax of the clip logits, and ``probs (B, K)``."""
        probs = self.clip_logits(batch)[0].float().softmax(dim=-1)
        return {"clip_labels": probs.argmax(dim=-1), "probs": probs}


@TASKS.register("fewshot", pipeline=fewshot_splits, report=AVE, stores=("clips",))
class PromptClassifierTask(_PromptClassifier):
    """Prompt-based AVE segment classification: batch ``frames``, ``audio``, ``labels (B, S)`` (K = background)."""

    primary_metric = "segment_accuracy"

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, aux = self.segment_logits(batch)
        ce = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())  # (B, S, K + 1) -> (B*S, K + 1)
        return add_method_losses({"loss": ce, "loss_ce": ce.detach()}, aux)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``segment_labels (B, S)`` and ``probs (B, S, K [+ 1])``."""
        probs = self.segment_logits(batch)[0].float().softmax(dim=-1)
        return {"segment_labels": probs.argmax(dim=-1), "probs": probs}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """AVE segment accuracy (percent), background included."""
        from avlearn.metrics.ave import ave_segment_accuracy

        return {"segment_accuracy": float(ave_segment_accuracy(preds["segment_labels"], targets["labels"]))}


@TASKS.register("fewshot_ave_cls", pipeline=fewshot_splits, report=AVE_CLS, stores=("clips",))
class PromptAVEClassTask(_PromptClassifier):
    """Prompt-based AVE classification: batch ``labels (B, S)`` as for AVE; the clip's class is its first event's."""

    primary_metric = "accuracy"
    with_background = False

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, aux = self.clip_logits(batch)
        target = clip_class(batch["labels"], self.info.num_classes)  # (B,), -100 for clips without an event
        ce = F.cross_entropy(logits, target, reduction="sum") / (target >= 0).sum().clamp_min(1)
        return add_method_losses({"loss": ce, "loss_ce": ce.detach()}, aux)

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Clip accuracy (percent) over the clips that have an event."""
        from avlearn.metrics.ave import ave_video_accuracy

        target = clip_class(targets["labels"], self.info.num_classes)
        keep = target >= 0
        return {"accuracy": float(ave_video_accuracy(preds["clip_labels"][keep], target[keep]))}


@TASKS.register("fewshot_llp_cls", pipeline=fewshot_splits, report=LLP_CLS, stores=("clips",))
class PromptLLPClassTask(_PromptClassifier):
    """Prompt-based LLP video classification: batch ``labels (B, K)``, the multi-hot weak labels."""

    primary_metric = "accuracy"
    with_background = False

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits, aux = self.clip_logits(batch)
        ce = F.cross_entropy(logits, batch["labels"].to(logits.dtype))  # soft target: the un-normalised multi-hot
        return add_method_losses({"loss": ce, "loss_ce": ce.detach()}, aux)

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Accuracy (percent) of the predicted class against the first labelled class of each video."""
        from avlearn.metrics.ave import ave_video_accuracy

        return {"accuracy": float(ave_video_accuracy(preds["clip_labels"], targets["labels"].argmax(dim=-1)))}


def few_shot_grid(
    clip_labels: Sequence[int],
    shots: Sequence[int],
    seeds: Sequence[int],
    run: Callable[[list[int], int], dict[str, float]],
) -> dict[int, dict[str, float]]:
    """The few-shot protocol: ``run(train positions, seed) -> scores`` for every (shots, seed), summarised per shots.

    Args:
        clip_labels: The class of each training clip (AVE: the class of its event).
        shots: Numbers of clips per class (DG-SCT: 1, 2, 4, 8, 16).
        seeds: One draw (and training run) per seed.
        run: Trains on the given training positions with the given seed and returns its test scores.

    Returns:
        ``{shots: {"<metric>_mean", "<metric>_std"}}`` (``avlearn.metrics.classification.fewshot_summary``: the
        population standard deviation over seeds).
    """
    from avlearn.data.samplers import few_shot_indices
    from avlearn.metrics.classification import fewshot_summary

    return {k: fewshot_summary([run(few_shot_indices(clip_labels, k, seed), seed) for seed in seeds]) for k in shots}


@dataclass
class PretrainSegmentsConfig(FewShotConfig):
    """Schema of ``task/pretrain_segments.yaml`` (and, with their names, of ``task/zeroshot_{ave,ave_cls,llp_cls}``)."""

    name: str = "pretrain_segments"


@TASKS.register("pretrain_segments", pipeline=fewshot_splits, report=AVE, stores=("clips",))
class SegmentPretrainTask(PromptClassifierTask):
    """DG-SCT's pre-training: segment cross-entropy over K class prompts + background, batch ``labels (B, S)``.

    The prompts are rebuilt from the class names, so the checkpoint holds no class-specific tensor and the zero-shot
    tasks load it exactly whatever their classes. Validation: segment accuracy, background included.
    """

    Config = PretrainSegmentsConfig
    persistent_prompts = False


class _FreshPrompts(EvaluationOnly):
    """Zero-shot from ``pretrain_segments``: the target dataset's class prompts, every pre-trained weight."""

    Config = PretrainSegmentsConfig
    persistent_prompts = False


@TASKS.register("zeroshot_ave", pipeline=fewshot_splits, report=AVE, stores=("clips",))
class PromptZeroShotTask(_FreshPrompts, PromptClassifierTask):
    """Zero-shot AVE segments over K class prompts + the background prompt; segment accuracy."""


@TASKS.register("zeroshot_ave_cls", pipeline=fewshot_splits, report=AVE_CLS, stores=("clips",))
class PromptZeroShotAVEClassTask(_FreshPrompts, PromptAVEClassTask):
    """Zero-shot AVE classification: the argmax of the segment-mean logits vs the first event's class."""


@TASKS.register("zeroshot_llp_cls", pipeline=fewshot_splits, report=LLP_CLS, stores=("clips",))
class PromptZeroShotLLPClassTask(_FreshPrompts, PromptLLPClassTask):
    """Zero-shot LLP video classification: the seed's accuracy, plus ``hit_accuracy`` and ``map`` (percent)."""

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """``accuracy`` vs the first labelled class (the seed's), ``hit_accuracy``: the predicted class is one of
        the video's labels; ``map``: mean average precision of the clip probabilities over the labelled classes."""
        from avlearn.metrics.classification import multilabel_scores

        labels = targets["labels"].bool()  # (B, K) multi-hot
        hit = labels.gather(1, preds["clip_labels"][:, None].long()).float().mean()  # (B, 1) -> ()
        ranked = multilabel_scores(preds["probs"].float(), labels)["map"]
        return {**super().score(preds, targets), "hit_accuracy": 100.0 * float(hit), "map": float(ranked)}

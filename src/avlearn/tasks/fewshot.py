"""Few-shot audio-visual classification with text prompts per class, and the shots x seeds protocol.

Follows DG-SCT's few-shot setting (haoyi-duan/DG-SCT ``few-shot/nets/net_trans.py``, ``prompt_learner.py``): every
class is described by a visual prompt ("a photo of a {class}.", as CLIP's) and an audio prompt ("the sound of a
{class}.", as CLAP's); the segment's visual and audio features are mapped into the text space and compared by cosine
similarity with a learnable scale; the two similarities are added (the seed: ``2 * logits_v + 2 * logits_a``). For AVE
the label space includes background, described by its own prompts (the seed's ``weak=0``); its zero-shot code has
none, so background segments can never be right there. ``few_shot_grid`` runs the protocol: for each number of shots
and each seed, K training clips per class (``avlearn.data.samplers.few_shot_indices``), a training run, a score; it
reports the mean and standard deviation over seeds.

What we changed, and why:

* The prompts are embedded once by a frozen text tower given by name (default ``minilm_l6``, the sentence encoder
  that ships offline) instead of CLIP's and CLAP's text towers with CoOp's learnable context: the class embeddings
  are fixed buffers, the trainable parts are the two projections (the role of the seed's CLIP-Adapter) and the scale.
* The seed selects the first K clips per class in file order with one fixed seed; here K clips per class are drawn
  per seed and the grid reports mean and standard deviation, as CoOp-style protocols do.

Not here (see docs/tasks/fewshot.md): DG-SCT's adapters inside CLIP + CLAP towers (that is the method's job), the
VGGSound-AVEL-40K pre-training recipe and the zero-shot evaluation after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.registry import BACKBONES, TASKS
from avlearn.tasks.base import DatasetInfo


@dataclass
class FewShotConfig:
    """Schema of ``task/fewshot*.yaml``."""

    name: str = "fewshot"
    text: str = "minilm_l6"  # frozen text tower that embeds the prompts
    visual_prompt: str = "a photo of a {}."
    audio_prompt: str = "the sound of a {}."
    background: str = "background"  # name of the background class in its prompts ("" = no background class)
    init_scale: float = 10.0  # initial cosine-logit scale


@torch.no_grad()
def embed_prompts(text_tower: str, prompts: Sequence[str]) -> torch.Tensor:
    """(P, Ct) L2-normalised pooled embeddings of ``prompts`` by the registered text backbone ``text_tower``."""
    tower = BACKBONES.build(text_tower).eval()
    tokens = tower.tokenize(list(prompts))
    return F.normalize(tower(**tokens), dim=-1)


def class_prompts(template: str, class_names: Sequence[str], background: str) -> list[str]:
    """``template`` filled with each class name, then with ``background`` when it is not empty."""
    return [template.format(name) for name in (*class_names, *([background] if background else []))]


@TASKS.register("fewshot")
class PromptClassifierTask(nn.Module):
    """Prompt-based AVE segment classification: batch ``frames``, ``audio``, ``labels (B, S)`` (K = background)."""

    Config = FewShotConfig
    needs = ("audio_pooled", "visual_pooled")
    primary_metric = "segment_accuracy"

    def __init__(self, cfg: FewShotConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        visual_prompts = class_prompts(cfg.visual_prompt, info.class_names, cfg.background)
        prompts = embed_prompts(cfg.text, [*visual_prompts, *class_prompts(cfg.audio_prompt, info.class_names,
                                                                           cfg.background)])  # fmt: skip
        visual, audio = prompts[: len(visual_prompts)], prompts[len(visual_prompts) :]
        self.register_buffer("visual_classes", visual)  # (K [+ 1], Ct)
        self.register_buffer("audio_classes", audio)
        audio_dim = getattr(method, "audio_dim", method.out_dim)
        self.visual_proj = nn.Linear(method.out_dim, visual.shape[1])
        self.audio_proj = nn.Linear(audio_dim, audio.shape[1])
        self.log_scale = nn.Parameter(torch.tensor(float(cfg.init_scale)).log())

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, S, K [+ 1]): scaled cosine similarity to the visual prompts plus that to the audio prompts."""
        feats = self.method(batch)
        visual = F.normalize(self.visual_proj(feats.visual_pooled), dim=-1)  # (B, S, Ct)
        audio = F.normalize(self.audio_proj(feats.audio_pooled), dim=-1)  # (B, S, Ct)
        return self.log_scale.exp() * (visual @ self.visual_classes.T + audio @ self.audio_classes.T)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.logits(batch).flatten(0, 1), batch["labels"].flatten())}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``segment_labels (B, S)`` and ``probs (B, S, K [+ 1])``."""
        probs = self.logits(batch).float().softmax(dim=-1)
        return {"segment_labels": probs.argmax(dim=-1), "probs": probs}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """AVE segment accuracy (percent), background included."""
        from avlearn.metrics.ave import ave_segment_accuracy

        return {"segment_accuracy": float(ave_segment_accuracy(preds["segment_labels"], targets["labels"]))}


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

"""Audio-visual segmentation (AVSBench-object S4 and MS3): a mask of the sounding objects in every frame.

Follows the AVSBench decoder (Zhou et al., "Audio-Visual Segmentation", ECCV 2022) as DG-SCT uses it
(haoyi-duan/DG-SCT ``AVS/avs_scripts/avs_{s4,ms3}/model/PVT_AVSModel.py``, ``model/TPAVI.py``, ``loss.py``): each
visual stage map is projected to ``dim`` channels, a TPAVI block (temporal pixel-wise audio-visual interaction, a
non-local block whose keys are the segment's audio) mixes the audio in, and an FPN of residual fusion blocks decodes
from the coarsest stage to the finest, then an output head upsamples to the frame size and gives one logit per pixel.

Losses: binary cross-entropy on the frames that carry a ground-truth mask (``mask_valid``: S4 training has the first
frame only, MS3 all five), plus, with ``kl_weight > 0`` (MS3: 0.5), the audio–masked-visual term: per stage, the KL
divergence from softmax(audio feature) to softmax(visual stage map averaged under the predicted mask), both features
L2-normalised first, summed over frames and channels, averaged over stages. Predictions are per-pixel probabilities,
scored per frame by ``avlearn.metrics.avs_scores`` (foreground mIoU and F-score, percent).

What we changed, and why:

* TPAVI is computed in factorised form. Its "dot" affinity between pixel i and position j is
  ``theta(x_i) . phi(a_t(j)) / N``: the key depends on j only through its segment, so ``sum_j f_ij g(x_j)`` equals
  ``sum_t (theta(x_i) . phi(a_t)) G_t / N`` with ``G_t`` the sum of ``g(x)`` over segment t's pixels. Same numbers
  (tested), O(N T) instead of O(N^2) memory (the seed's first stage forms a 15680^2 matrix per clip).
* The per-stage projection is a 3x3 convolution instead of AVSBench's ASPP (dilations 3..18 are wider than the maps
  of small backbones); fusion blocks upsample to the next stage's size instead of by 2, and the logits are resized to
  the frame size, so any pyramid works.
* The KL term reads the stage maps as the AVSBench loss does (before TPAVI) and the audio after TPAVI's projection.
* Frames are scored one by one (``avs_scores`` docstring), not averaged per test batch of 4.
* ``audio_film`` (on for MS3, off for S4; not in the seed): after TPAVI, each kept frame's stage maps are modulated
  by its own second's audio, ``x * (1 + gamma(a_t)) + beta(a_t)`` (zero-initialised, so it starts as the identity).
  TPAVI sums over all T frames, and its values are frame sums of ``g(x)``; where the frames barely change (AVSynth's
  objects drift a few pixels), every frame receives about the same audio mixture of the whole clip, so the decoder
  cannot tell which of the visible objects sounds in *this* second, which is what MS3 asks (its sources start and
  stop within the clip). On AVSynth MS3 (``tests/integration/test_avs_learning.py``) it took test mIoU from 47.7
  to 91.8 (``docs/tasks/avs.md``).
* DG-SCT's stage-wise CMBS gates (``TemporalAttention`` in the AVS model) are not here: they belong to the method,
  which hands the head its ``visual_pyramid``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines.avs import avs_pipeline
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses, paired_segments
from avlearn.viz.reports import AVS


@dataclass
class AVSConfig:
    """Schema of ``task/avs_s4.yaml`` and ``task/avs_ms3.yaml``."""

    name: str = "avs_s4"
    dim: int = 64  # decoder width (AVSBench: 256)
    tpavi: bool = True  # TPAVI on every stage (DG-SCT: stages 0-3)
    kl_weight: float = 0.0  # audio–masked-visual KL term (MS3: 0.5)
    audio_film: bool = False  # per-frame audio FiLM of every stage after TPAVI (not in the seed)


class TPAVI(nn.Module):
    """Temporal pixel-wise audio-visual interaction: ``x (B, C, T, H, W)``, audio ``(B, T, Ca)`` -> same shape.

    ``z = LayerNorm(W_z(y) + x)`` with ``y_i = sum_j theta(x_i) . phi(a_j) g(x_j) / N`` over the N = T*H*W positions,
    the audio broadcast over each frame's pixels; ``W_z`` ends in a zero-initialised batch norm, so the block starts
    as the identity (before the LayerNorm). Also returns the projected audio ``(B, T, C)``.
    """

    def __init__(self, channels: int, audio_dim: int) -> None:
        super().__init__()
        inner = max(1, channels // 2)
        self.align = nn.Linear(audio_dim, channels)
        self.theta, self.phi = nn.Conv3d(channels, inner, 1), nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.w_z = nn.Sequential(nn.Conv3d(inner, channels, 1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.w_z[1].weight)
        nn.init.zeros_(self.w_z[1].bias)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t, h, w = x.shape
        aligned = self.align(audio)  # (B, T, C)
        key = self.phi(aligned.transpose(1, 2)[..., None, None]).flatten(2)  # (B, C/2, T): one key per segment
        query = self.theta(x).flatten(2)  # (B, C/2, N)
        values = self.g(x).flatten(3).sum(dim=-1)  # (B, C/2, T): g summed over each frame's pixels
        weights = torch.einsum("bcn,bct->bnt", query, key) / (t * h * w)  # (B, N, T)
        y = torch.einsum("bnt,bct->bcn", weights, values).reshape(b, -1, t, h, w)  # (B, C/2, T, H, W)
        z = self.w_z(y) + x  # (B, C, T, H, W)
        return self.norm(z.movedim(1, -1)).movedim(-1, 1), aligned


class FrameFiLM(nn.Module):
    """``x * (1 + gamma(a)) + beta(a)`` per frame: each frame's map (K, C, H, W) modulated by its own second's audio
    (K, Ca). Zero-initialised, so it starts as the identity."""

    def __init__(self, audio_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(audio_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(audio)[..., None, None].chunk(2, dim=1)  # (K, 2C) -> 2 x (K, C, 1, 1)
        return x * (1 + gamma) + beta


class _ResidualConv(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions (AVSBench's ResidualConvUnit)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Fusion(nn.Module):
    """FPN step: add the refined skip map (if any), refine, upsample to ``size``."""

    def __init__(self, dim: int, with_skip: bool) -> None:
        super().__init__()
        self.skip = _ResidualConv(dim) if with_skip else None
        self.out = _ResidualConv(dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if self.skip is not None:
            x = x + self.skip(skip)
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=True)


class AVSDecoder(nn.Module):
    """Visual pyramid (finest first, each (B*T, C_i, H_i, W_i)) + audio (B, T, Ca) -> logits (B*T, H, W).

    Also returns the projected stage maps before TPAVI and the projected audio per stage, for the KL term.
    """

    def __init__(self, stage_channels: tuple[int, ...], audio_dim: int, cfg: AVSConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
            for c in stage_channels
        )
        self.tpavi = nn.ModuleList(TPAVI(dim, audio_dim) for _ in stage_channels) if cfg.tpavi else None
        self.film = nn.ModuleList(FrameFiLM(audio_dim, dim) for _ in stage_channels) if cfg.audio_film else None
        n = len(stage_channels)
        self.fusion = nn.ModuleList(_Fusion(dim, with_skip=i < n - 1) for i in range(n))  # index = stage
        self.head = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1), nn.ReLU(), nn.Conv2d(dim // 2, 1, 1))

    def forward(
        self, pyramid: list[torch.Tensor], audio: torch.Tensor, size: tuple[int, int], keep: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits (K, H, W) of the ``keep`` frames (indices into B*T); the projected stage maps (K, dim, H_i, W_i)
        and audio (K, dim) of those frames. TPAVI sees every frame; the FPN and head only the kept ones."""
        b, t = audio.shape[:2]
        maps = [proj(level) for proj, level in zip(self.project, pyramid, strict=True)]  # (B*T, dim, H_i, W_i)
        mixed, audio_feats = maps, []
        if self.tpavi is not None:
            mixed = []
            for block, level in zip(self.tpavi, maps, strict=True):
                x = level.unflatten(0, (b, t)).transpose(1, 2)  # (B*T, C, H, W) -> (B, C, T, H, W)
                z, aligned = block(x, audio)
                mixed.append(z.transpose(1, 2).flatten(0, 1)[keep])  # (K, C, H, W)
                audio_feats.append(aligned.flatten(0, 1)[keep])  # (B, T, C) -> (K, C)
        else:
            mixed = [level[keep] for level in maps]
        if self.film is not None:
            frame_audio = audio.flatten(0, 1)[keep]  # (B, T, Ca) -> (K, Ca)
            mixed = [film(level, frame_audio) for film, level in zip(self.film, mixed, strict=True)]
        x = None
        for i in reversed(range(len(mixed))):  # coarsest first
            target = mixed[i - 1].shape[-2:] if i > 0 else tuple(2 * s for s in mixed[0].shape[-2:])
            x = self.fusion[i](mixed[i] if x is None else x, None if x is None else mixed[i], target)
        logits = self.head(x)  # (K, 1, h, w), twice the finest stage's resolution
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (K, 1, H, W)
        return logits[:, 0], [level[keep] for level in maps], audio_feats


def masked_av_kl(logits: torch.Tensor, maps: list[torch.Tensor], audio_feats: list[torch.Tensor]) -> torch.Tensor:
    """AVSBench's audio–masked-visual KL term (MS3), averaged over stages.

    Args:
        logits: (K, H, W) mask logits of K frames.
        maps: per stage (K, C, H_i, W_i) visual maps of those frames.
        audio_feats: per stage (K, C) audio features of those frames.
    """
    prob = logits.sigmoid()[:, None]  # (K, 1, H, W)
    total = logits.new_zeros(())
    for v_map, audio in zip(maps, audio_feats, strict=True):
        mask = F.adaptive_avg_pool2d(prob, v_map.shape[-2:])  # (K, 1, H_i, W_i)
        visual = F.normalize((v_map * mask).mean(dim=(-2, -1)), dim=-1)  # (K, C)
        audio = F.normalize(audio, dim=-1)  # (K, C)
        total = total + F.kl_div(visual.log_softmax(dim=-1), audio.softmax(dim=-1), reduction="sum")
    return total / max(1, len(maps))


@TASKS.register("avs_s4", pipeline=avs_pipeline, synth_part="avs", report=AVS)
@TASKS.register("avs_ms3", pipeline=avs_pipeline, synth_part="avs", report=AVS)
class AVSTask(nn.Module):
    """AVSBench S4 / MS3: batch ``frames (B, T, H, W, 3)``, ``audio``, ``masks (B, T, H*W)``, ``mask_valid (B, T)``."""

    Config = AVSConfig
    needs = ("audio_pooled", "visual_pyramid")
    primary_metric = "miou"

    def __init__(self, cfg: AVSConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        self.decoder = AVSDecoder(method.dims["visual_pyramid"], method.dims["audio_pooled"], cfg)

    def outputs(self, batch: dict[str, torch.Tensor], keep: torch.Tensor | None = None) -> tuple:
        """Mask logits (K, H, W) of the frames ``keep`` selects from (B, T) (default: all, K = B*T), the stage
        maps and audio features of those frames, for the KL term, and the method's own loss terms."""
        feats = paired_segments(self.method(batch), self.cfg.name)
        b, t, h, w = batch["frames"].shape[:4]
        keep = torch.ones(b, t, dtype=torch.bool, device=feats.audio_pooled.device) if keep is None else keep
        pyramid = [level.flatten(0, 1) for level in feats.visual_pyramid]  # (B*T, C_i, H_i, W_i)
        return *self.decoder(pyramid, feats.audio_pooled, (h, w), keep.flatten().nonzero()[:, 0]), feats.losses

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        valid = batch["mask_valid"].bool()  # (B, T): only annotated frames are decoded in training
        logits, maps, audio, method_losses = self.outputs(batch, valid)  # (K, H, W)
        target = batch["masks"][valid].unflatten(-1, logits.shape[-2:]).float()  # (K, H*W) -> (K, H, W)
        loss_bce = F.binary_cross_entropy_with_logits(logits, target)
        out = {"loss_bce": loss_bce.detach()}
        loss = loss_bce
        if self.cfg.kl_weight > 0 and audio:
            loss_kl = masked_av_kl(logits, maps, audio)
            loss, out["loss_kl"] = loss + self.cfg.kl_weight * loss_kl, loss_kl.detach()
        return add_method_losses({"loss": loss, **out}, method_losses)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``probs (B, T, H, W)``: the foreground probability of every pixel of every frame."""
        b, t = batch["frames"].shape[:2]
        return {"probs": self.outputs(batch)[0].float().sigmoid().unflatten(0, (b, t))}

    def score(self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """AVSBench foreground mIoU and F-score (percent) over the annotated frames, each frame scored alone."""
        from avlearn.metrics.avs import avs_scores

        probs, valid = preds["probs"], targets["mask_valid"].bool()
        masks = targets["masks"].unflatten(-1, probs.shape[-2:])  # (N, T, H, W)
        return avs_scores(probs[valid], masks[valid])

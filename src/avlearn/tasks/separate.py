"""Visually guided source separation by mix-and-separate (Zhao et al., "The Sound of Pixels", ECCV 2018; the protocol
of DeepAVFusion, Mo and Morgado, CVPR 2024): two clips' sounds are mixed, and a mask on the mixture's spectrogram is
predicted for each clip from the clip's own frames. Scored by BSS Eval v3 SDR / SIR / SAR and the SDR improvement
over the mixture (SDRi).

Head. The mixture ``x = s_1 + s_2`` (the sources at ``task.sample_rate``) -> ``X = STFT(x)`` (``torch.stft``, periodic
Hann window of ``n_fft`` samples, hop ``hop_length``) -> ``log(|X| + 1e-3)`` -> a U-Net (``avlearn.layers.unet``)
conditioned (``fusion``: FiLM or channel concatenation at its bottleneck, or Sound of Pixels' per-sample weighting of
its last feature maps, ``output``) on the pooled features of the target clip:
``condition=visual`` the clip's visual vector, ``audio_visual`` that concatenated with the mean over segments of
``audio_pooled``. The visual vector (``pool``): ``mean``, the mean over segments of ``visual_pooled``; ``max``, the
maximum of the ``visual`` tokens over tokens and segments (Sound of Pixels max-pools its visual feature map over
space and time, so a small object's channels are not averaged away by the background). ``condition_time``:
``clip``, one vector for the whole clip (pooled over its segments, as Sound of Pixels); ``frame``, one vector per
STFT frame, the features of the segment (second) that frame lies in, pooled over tokens only (mean:
``visual_pooled``, max: the ``visual`` tokens' maximum), so the mask at each time is steered by what is seen at that
time (an option, off by default, beyond the seeds; a training crop's frames are placed by its ``offset``). The
method sees the target's frames and the **mixture's** audio (its segment log-mels, from the pipeline), never a
source alone. The U-Net predicts mask logits per time-frequency bin for each source (one pass per source,
conditioned on its frames); the estimate is ``ISTFT(mask * X)``, with the mixture's phase.

Masks (``mask``): ``ratio``, the ideal ratio mask ``|S_k| / (|S_1| + |S_2|)``, predicted through a sigmoid and
applied as is; ``binary``, the ideal binary mask ``|S_k| > |S_other|``, thresholded at 0.5 to separate. Both are
trained with binary cross-entropy, each bin weighted by ``clamp(log1p(|X|), 1e-3, 10)`` (``weighted_loss``; Sound of
Pixels). These are the masks the DeepAVFusion review asks for (its code's ``|S| / (|S| + |X|)`` is at most 0.5 and
its binary target ``|S| > |X|`` almost never true) and the mask is on the linear-frequency STFT, not mel, so an
all-pass mask gives the mixture back exactly (up to float rounding), which DeepAVFusion's mel -> linear mapping
does not (26.7 dB).

Head (``head``): ``unet`` (above, the default) or ``avsrcsep_seed``, DeepAVFusion's own decoder
(``avlearn.layers.avsrcsep``) on five layers of the method's per-layer audio tokens and its last layer's image
tokens (the method encodes each source's frames with the mixture's audio), its log-mel-domain logits resampled onto
this STFT. ``faithful``: the seed's targets (``|S|^2 > |X|^2``, ``|S|^2 / (|S|^2 + |X|^2)``) instead of the masks
above, to reproduce its degenerate training.

Scores (``score``): SDR, SIR, SAR of both estimates of every mixture against both sources (``bss_eval_sources``,
pairing known, no permutation search), the SDR of the mixture itself as the estimate of each source, and SDRi = SDR
- mixture SDR; also SDRi over Easy (two classes) and Hard (one class) mixtures. A mixture whose estimate is silent
(binary masks all off) cannot be scored by BSS Eval; it is left out and counted (``skipped``), as DeepAVFusion skips
pairs of energy < 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines.separation import separation_splits
from avlearn.errors import ConfigError
from avlearn.layers.avsrcsep import AVSrcSepHead, check_layers, seed_target_masks
from avlearn.layers.unet import FUSIONS, ConditionedUNet
from avlearn.metrics.separation import bss_eval_sources
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses
from avlearn.viz.reports import Report

MASKS = ("ratio", "binary")
CONDITIONS = ("visual", "audio_visual")
CONDITION_NORMS = ("none", "batch")
CONDITION_TIMES = ("clip", "frame")
POOLS = ("mean", "max")
HEADS = ("unet", "avsrcsep_seed")
EPS = 1e-8
SILENT = 1e-5  # an estimate with less energy (sum of squares) is not scored
SHOWN = 4  # test mixtures drawn in the report's plot


@dataclass
class SeparateConfig:
    """Schema of ``task/separate.yaml``."""

    name: str = "separate"
    sample_rate: int = 8000  # Hz of the separated waveforms (the pipeline resamples the clips' audio)
    train_seconds: float = 3.0  # training crops of both sources at one random offset; 0: whole clips
    n_fft: int = 256
    hop_length: int = 128
    mask: str = "ratio"  # ratio | binary
    condition: str = "visual"  # visual | audio_visual
    fusion: str = "film"  # film | concat (at the U-Net bottleneck) | output (Sound of Pixels' synthesizer)
    condition_norm: str = "none"  # none | batch: the conditioning vector standardised over the batch (no affine)
    pool: str = "mean"  # mean: visual_pooled over segments | max: visual tokens over tokens and segments
    condition_time: str = "clip"  # clip: one vector a clip | frame: each STFT frame its own second's vector
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    weighted_loss: bool = True
    head: str = "unet"  # unet | avsrcsep_seed (DeepAVFusion's decoder on the method's per-layer tokens)
    seed_layers: list[int] | None = None  # avsrcsep_seed: 5 audio layers, deepest first (None: the seed's rule)
    faithful: bool = False  # the seed's degenerate targets (avlearn.layers.avsrcsep.seed_target_masks)
    mel_rate: int = 16000  # avsrcsep_seed: Hz of the method's log-mel (the yaml: data.sample_rate)


def _check(cfg: SeparateConfig) -> None:
    """One-line ConfigErrors for invalid keys."""
    choices = {"mask": MASKS, "condition": CONDITIONS, "fusion": FUSIONS, "condition_norm": CONDITION_NORMS,
               "pool": POOLS, "head": HEADS, "condition_time": CONDITION_TIMES}  # fmt: skip
    for key, valid in choices.items():
        if (value := getattr(cfg, key)) not in valid:
            raise ConfigError(f"task.{key}={value!r}: expected one of {', '.join(valid)}")
    if not 0 < cfg.hop_length <= cfg.n_fft // 2:
        raise ConfigError(f"task.hop_length={cfg.hop_length}: expected 1 to n_fft / 2 = {cfg.n_fft // 2} (the "
                          "inverse STFT needs overlapping windows)")  # fmt: skip
    if len(cfg.channels) < 2 or min(cfg.channels) < 1:
        raise ConfigError(f"task.channels={list(cfg.channels)}: expected at least 2 positive U-Net widths")


def _require(method: nn.Module, field: str, key: str, instead: str) -> None:
    """A one-line ConfigError unless ``method`` produces the AVFeatures ``field`` that the setting ``key`` reads."""
    if field not in method.produces:
        raise ConfigError(f"{key} needs AVFeatures.{field}, which method '{type(method).__name__}' does not produce; "
                          f"use {instead}")  # fmt: skip


def _chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """SDRi of the mixture itself (0 by definition) and of the model given the other source's frames."""
    swapped = task.score(task.predict_split(splits.test, swap=True), out["targets"])
    return {"mixture": 0.0, "swapped_frames": swapped["sdri"]}


def _plot(splits: Any, out: dict, path: Path) -> Path:
    from avlearn.viz.separation import plot_separation

    n = min(SHOWN, len(splits.test))
    sources, estimates = out["targets"]["sources"][:n].numpy(), out["preds"]["estimates"][:n].numpy()
    sdr = bss_eval_sources(sources, estimates)["sdr"]  # (n, 2)
    return plot_separation(path, sources, estimates, splits.test.sample_rate, out["targets"]["id"][:n], sdr)


SEPARATION = Report(_chance, _plot, "separation.png")


def write_separation(stem: str | Path, sources: np.ndarray, estimates: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Write ``<stem>.mixture.wav``, ``<stem>.estimate1.wav`` / ``.estimate2.wav`` (one gain for the three, so none
    clips) and ``<stem>.png`` (spectrograms of mixture, sources and estimates) for one mixture of ``sources (2, N)``
    separated into ``estimates (2, N)``; returns the files and the estimates' SDRs (dB)."""
    from avlearn.io import write_wav
    from avlearn.viz.separation import plot_separation

    mixture = sources.sum(axis=0)  # (N,)
    gain = 1.0 / max(1.0, float(np.abs(mixture).max()), float(np.abs(estimates).max()))
    files = [write_wav(f"{stem}.mixture.wav", mixture * gain, sample_rate)]
    files += [write_wav(f"{stem}.estimate{k + 1}.wav", est * gain, sample_rate) for k, est in enumerate(estimates)]
    sdr = bss_eval_sources(sources, estimates)["sdr"][0]  # (2,)
    files.append(plot_separation(f"{stem}.png", sources[None], estimates[None], sample_rate, [Path(stem).name], [sdr]))
    return {"files": files, "sdr": [float(v) for v in sdr]}


def _seed_head(cfg: SeparateConfig, method: nn.Module) -> AVSrcSepHead:
    """DeepAVFusion's decoder for ``method``'s per-layer tokens; one-line ConfigErrors for what it cannot use."""
    tower = getattr(method, "audio_backbone", None)
    if "layers" not in method.produces or not hasattr(tower, "grid"):
        raise ConfigError(f"task.head=avsrcsep_seed needs per-layer audio tokens on a patch grid, which method "
                          f"'{type(method).__name__}' does not give; use task.head=unet")  # fmt: skip
    if cfg.train_seconds != 0:
        raise ConfigError(f"task.train_seconds={cfg.train_seconds}: task.head=avsrcsep_seed masks the whole clip the "
                          "method encodes; set task.train_seconds=0")  # fmt: skip
    if (cfg.condition, cfg.condition_norm, cfg.pool, cfg.condition_time) != ("visual", "none", "mean", "clip"):
        raise ConfigError(f"task.condition={cfg.condition} / task.condition_norm={cfg.condition_norm} / task.pool="
                          f"{cfg.pool} / task.condition_time={cfg.condition_time}: task.head=avsrcsep_seed conditions "
                          "on the image tokens itself; expected visual / none / mean / clip")  # fmt: skip
    widths = method.dims["layers"]["audio"]
    pre = tower.preprocess
    return AVSrcSepHead(widths[0], check_layers(cfg.seed_layers, len(widths)), tower.grid, pre.num_frames,
                        pre.num_mel_bins, cfg.mel_rate, cfg.n_fft, cfg.sample_rate)  # fmt: skip


@TASKS.register("separate", pipeline=separation_splits, synth_part="events", report=SEPARATION)
class SeparateTask(nn.Module):
    """Visually guided 2-source separation: a U-Net mask on the mixture spectrogram, conditioned on the target's
    pooled (audio-)visual features; BSS Eval SDR / SIR / SAR and SDRi."""

    Config = SeparateConfig
    needs = ("visual_pooled",)  # visual with pool=max, audio_pooled with condition=audio_visual (checked at build)
    primary_metric = "sdri"

    def __init__(self, cfg: SeparateConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        _check(cfg)
        self.cfg, self.info, self.method = cfg, info, method
        if cfg.pool == "max":
            _require(method, "visual", "task.pool=max", "task.pool=mean")
        width = method.dims["visual" if cfg.pool == "max" else "visual_pooled"]
        if cfg.condition == "audio_visual":
            _require(method, "audio_pooled", "task.condition=audio_visual", "task.condition=visual")
            width += method.dims["audio_pooled"]
        if cfg.head == "avsrcsep_seed":
            self.seed = _seed_head(cfg, method)
        else:
            self.norm = nn.BatchNorm1d(width, affine=False) if cfg.condition_norm == "batch" else nn.Identity()
            self.unet = ConditionedUNet(tuple(cfg.channels), width, cfg.fusion)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """``(..., N)`` -> complex ``(..., F, T)``, F = n_fft / 2 + 1."""
        return torch.stft(wave.flatten(0, -2), self.cfg.n_fft, self.cfg.hop_length, window=self.window,
                          return_complex=True).unflatten(0, wave.shape[:-1])  # fmt: skip

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Complex ``(..., F, T)`` -> ``(..., length)``."""
        return torch.istft(spec.flatten(0, -3), self.cfg.n_fft, self.cfg.hop_length, window=self.window,
                           length=length).unflatten(0, spec.shape[:-2])  # fmt: skip

    @staticmethod
    def _each_source(batch: dict[str, Any]) -> dict[str, Any]:
        """The batch twice: source 1's frames, then source 2's, each with the mixture's audio."""
        return {**batch, "frames": torch.cat([batch["frames"], batch["frames_other"]]),
                "audio": torch.cat([batch["audio"], batch["audio"]])}  # fmt: skip

    def _conditions(self, batch: dict[str, Any], frames: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Conditioning vectors, source 1's rows first, then source 2's: ``(2B, C)`` a clip, or ``(2B, C, T)`` one for
        each of the ``frames`` STFT frames (``condition_time``); and the method's loss terms."""
        feats = self.method(self._each_source(batch))
        max_pool = self.cfg.pool == "max"
        visual = feats.visual.amax(dim=2) if max_pool else feats.visual_pooled  # (2B, S_v, Cv)
        streams = [(visual, max_pool)]
        if self.cfg.condition == "audio_visual":
            streams.append((feats.audio_pooled, False))  # (2B, S_a, Ca)
        if self.cfg.condition_time == "clip":
            pooled = [x.amax(dim=1) if use_max else x.mean(dim=1) for x, use_max in streams]  # each (2B, C_i)
            return self.norm(torch.cat(pooled, dim=-1).float()), feats.losses  # (2B, Cv [+ Ca])
        offset = batch["offset"].to(visual.device)  # (B,) the crop's first sample (the pipeline's items carry it)
        timed = [self._at_frames(x, offset.repeat(2), frames) for x, _ in streams]  # each (2B, T, C_i)
        return self.norm(torch.cat(timed, dim=-1).float().transpose(1, 2)), feats.losses  # (2B, C, T)

    def _at_frames(self, segments: torch.Tensor, offset: torch.Tensor, frames: int) -> torch.Tensor:
        """Per-segment vectors ``(N, S, C)`` of clips of ``info.segments`` seconds -> ``(N, T, C)``: each STFT frame
        (``torch.stft`` centres frame t on sample ``offset + t * hop``) takes the vector of the segment it lies in."""
        sample = offset[:, None] + torch.arange(frames, device=offset.device) * self.cfg.hop_length  # (N, T)
        clip = self.info.segments * self.cfg.sample_rate  # samples a clip
        index = (sample * segments.shape[1] // clip).clamp(0, segments.shape[1] - 1)  # (N, T)
        return segments.gather(1, index[..., None].expand(-1, -1, segments.shape[-1]))  # (N, T, C)

    def mask_logits(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Mask logits ``(B, 2, F, T)`` of both sources, the mixture's STFT ``(B, F, T)`` and the method's losses."""
        spec = self.stft(batch["sources"].float().sum(dim=1))  # (B, 2, N) -> (B, N) -> (B, F, T)
        if self.cfg.head == "avsrcsep_seed":
            feats = self.method(self._each_source(batch), layers=True)
            logits = self.seed(feats.layers, batch["audio"].shape[-1], spec.shape[-1])  # (2B, F, T)
            return logits.unflatten(0, (2, -1)).transpose(0, 1), spec, feats.losses  # (B, 2, F, T)
        cond, losses = self._conditions(batch, spec.shape[-1])
        logmag = torch.log(spec.abs() + 1e-3)[:, None]  # (B, 1, F, T)
        logits = self.unet(logmag.repeat(2, 1, 1, 1), cond)  # (2B, 1, F, T): source 1 rows, then source 2
        return logits[:, 0].unflatten(0, (2, -1)).transpose(0, 1), spec, losses  # (B, 2, F, T)

    def target_masks(self, sources: torch.Tensor) -> torch.Tensor:
        """Ideal masks ``(B, 2, F, T)`` of ``sources (B, 2, N)``: ratio or binary (see the module docstring)."""
        mags = self.stft(sources.float()).abs()  # (B, 2, F, T)
        if self.cfg.faithful:
            return seed_target_masks(mags, self.stft(sources.float().sum(dim=1)).abs(), self.cfg.mask == "binary")
        if self.cfg.mask == "binary":
            return (mags > mags.flip(1)).float()
        return mags / (mags.sum(dim=1, keepdim=True) + EPS)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits, spec, losses = self.mask_logits(batch)
        bce = F.binary_cross_entropy_with_logits(logits.float(), self.target_masks(batch["sources"]), reduction="none")
        weight = torch.log1p(spec.abs()).clamp(1e-3, 10)[:, None] if self.cfg.weighted_loss else 1.0  # (B, 1, F, T)
        loss = (weight * bce).mean()
        return add_method_losses({"loss": loss, "loss_mask": loss.detach()}, losses)

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``estimates (B, 2, N)``: source 1 and source 2 separated from their mixture, each from its own frames."""
        logits, spec, _ = self.mask_logits(batch)
        masks = torch.sigmoid(logits.float()) if self.cfg.mask == "ratio" else (logits > 0).float()  # (B, 2, F, T)
        return {"estimates": self.istft(masks * spec[:, None], batch["sources"].shape[-1])}  # (B, 2, N)

    @torch.no_grad()
    def predict_split(self, data: Any, batch_size: int = 8, swap: bool = False) -> dict[str, torch.Tensor]:
        """``predict`` over a whole dataset of mixtures, in order; ``swap``: each source separated with the *other*
        source's frames (the check that the visual conditioning is used)."""
        was_training, device = self.training, self.window.device
        self.eval()
        estimates = []
        for batch in torch.utils.data.DataLoader(data, batch_size=batch_size, generator=torch.Generator()):
            if swap:
                batch = {**batch, "frames": batch["frames_other"], "frames_other": batch["frames"]}
            on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            estimates.append(self.predict(on_device)["estimates"].float().cpu())
        self.train(was_training)
        return {"estimates": torch.cat(estimates)}

    def score(self, preds: dict[str, Any], targets: dict[str, Any]) -> dict[str, float]:
        """SDR, SIR, SAR, mixture SDR and SDRi (dB, means over both sources of every scored mixture); SDRi over Easy
        and Hard mixtures (NaN without any); ``skipped``: mixtures with a silent estimate."""
        refs = np.asarray(targets["sources"], dtype=np.float64)  # (M, 2, N)
        ests = np.asarray(preds["estimates"], dtype=np.float64)  # (M, 2, N)
        keep = (ests**2).sum(axis=-1).min(axis=-1) >= SILENT  # (M,)
        if not keep.any():
            nan = float("nan")
            return {k: nan for k in ("sdri", "sdr", "sir", "sar", "sdr_mixture", "sdri_easy", "sdri_hard")} | {
                "skipped": float(len(keep))
            }
        hard = np.asarray(targets["hard"], dtype=bool)[keep]
        refs, ests = refs[keep], ests[keep]
        mixture = np.repeat(refs.sum(axis=1, keepdims=True), 2, axis=1)  # (M', 2, N) the mixture as both estimates
        est, mix = bss_eval_sources(refs, ests), bss_eval_sources(refs, mixture)
        sdri = est["sdr"] - mix["sdr"]  # (M', 2)
        kinds = {f"sdri_{name}": float(sdri[rows].mean()) if rows.any() else float("nan")
                 for name, rows in (("easy", ~hard), ("hard", hard))}  # fmt: skip
        return {"sdri": float(sdri.mean()), "sdr": float(est["sdr"].mean()), "sir": float(est["sir"].mean()),
                "sar": float(est["sar"].mean()), "sdr_mixture": float(mix["sdr"].mean()), **kinds,
                "skipped": float((~keep).sum())}  # fmt: skip

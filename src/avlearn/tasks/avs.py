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

``task.head=tpavi`` (``SeedAVSDecoder``, selected by every DG-SCT AVS recipe) is DG-SCT's AVS decoder exactly, with
its stage-wise temporal gates and without the changes below (which are those of the task's default
``task.head=avsbench``, avlearn's decoder, not named after a seed), except TPAVI's factorised form.
``task.head=avsegm_seed`` is DeepAVFusion's simple decoder (``avlearn.layers.avsegm``) on the method's per-layer
tokens (``AVFeatures.layers``) instead of a ``visual_pyramid``: every frame is decoded alone, with its own second of
audio, as the seed's samples are.

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
from avlearn.errors import ConfigError, DataError
from avlearn.layers.avsegm import AVSegmSeedDecoder, seed_layers
from avlearn.methods.base import check_pairing
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, MethodLayerIds, add_method_losses, paired_segments
from avlearn.viz.reports import AVS


@dataclass
class AVSConfig:
    """Schema of ``task/avs_s4.yaml`` and ``task/avs_ms3.yaml``."""

    name: str = "avs_s4"
    head: str = "avsbench"  # avsbench (avlearn's) | tpavi (DG-SCT's decoder) | avsegm_seed (DeepAVFusion's)
    dim: int = 64  # decoder width (AVSBench: 256)
    tpavi: bool = True  # TPAVI on every stage (DG-SCT: stages 0-3); avsbench only (task.head=tpavi always has it)
    kl_weight: float = 0.0  # audio–masked-visual KL term (MS3: 0.5)
    audio_film: bool = False  # per-frame audio FiLM of every stage after TPAVI (not in the seed); avsbench only
    seed_audio_dim: int = 128  # tpavi: width of the projected audio (the seed's ``audio_linear``)
    seed_ffn: int = 1024  # tpavi: feed-forward width of the stage gates' encoders
    temporal_gamma: float = 0.05  # tpavi: strength of the stage gates (seed: S4 0.05, MS3 train 0.1)
    avsegm_layers: list[int] | None = None  # avsegm_seed: layers read, coarsest branch first (None: the seed's)
    avsegm_min_channels: int = 128  # avsegm_seed: floor of the branch widths and the predictor's width (seed: 128)
    with_background: bool = False  # also score DeepAVFusion's background-inclusive mIoU (miou_with_background)


# The AVFeatures fields each head reads (checked when the task is built).
HEAD_NEEDS = {
    "avsbench": ("audio_pooled", "visual_pyramid"),
    "tpavi": ("audio_pooled", "visual_pyramid"),
    "avsegm_seed": ("layers",),
}
HEADS = tuple(HEAD_NEEDS)


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
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions (AVSBench's ResidualConvUnit). ``relu_residual``:
    ``relu(x) + ...``, what the seed's unit computes (its in-place ReLU overwrites the ``x`` it adds back)."""

    def __init__(self, dim: int, relu_residual: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1)
        )
        self.relu_residual = relu_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.relu(x) if self.relu_residual else x) + self.body(x)


class _Fusion(nn.Module):
    """FPN step: add the refined skip map (if any), refine, upsample to ``size``."""

    def __init__(self, dim: int, with_skip: bool, relu_residual: bool = False) -> None:
        super().__init__()
        self.skip = _ResidualConv(dim, relu_residual) if with_skip else None
        self.out = _ResidualConv(dim, relu_residual)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if self.skip is not None:
            x = x + self.skip(skip)
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=True)


def fpn(fusion: nn.ModuleList, maps: list[torch.Tensor]) -> torch.Tensor:
    """The FPN from the coarsest stage map to the finest, each step upsampled to the next finer map's size (the
    last to twice the finest): stage maps (K, C, H_i, W_i), finest first -> (K, C, 2 H_0, 2 W_0)."""
    x = None
    for i in reversed(range(len(maps))):  # coarsest first
        target = maps[i - 1].shape[-2:] if i > 0 else tuple(2 * s for s in maps[0].shape[-2:])
        x = fusion[i](maps[i] if x is None else x, None if x is None else maps[i], target)
    return x


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
        logits = self.head(fpn(self.fusion, mixed))  # (K, 1, h, w), twice the finest stage's resolution
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (K, 1, H, W)
        return logits[:, 0], [level[keep] for level in maps], audio_feats


class SeedStageGate(nn.Module):
    """One stage of the seed AVS model's ``TemporalAttention``: audio (B, T, Ca) and the stage map's spatial mean
    (B, T, C) -> the audio gate and the visual gate (B, T, 1) each.

    Visual: linear, ReLU, dropout 0.2, a BiLSTM (C per direction), a linear map 2C -> C and a two-layer post-norm
    encoder (4 heads, ``ffn``), a sigmoid of a linear map; audio: a BiLSTM (C/2 per direction), a linear map C -> C,
    the same encoder and gate. The seed also builds cross-modal decoders whose outputs it never uses: not built.
    """

    def __init__(self, audio_dim: int, dim: int, ffn: int) -> None:
        super().__init__()
        self.visual_in = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(0.2))
        self.audio_rnn = nn.LSTM(audio_dim, dim // 2, batch_first=True, bidirectional=True)
        self.visual_rnn = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.audio_key = nn.Sequential(nn.Linear(dim, dim), _seed_encoder(dim, ffn))
        self.visual_key = nn.Sequential(nn.Linear(2 * dim, dim), _seed_encoder(dim, ffn))
        self.audio_gate, self.visual_gate = nn.Linear(dim, 1), nn.Linear(dim, 1)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        audio_kv = self.audio_key(self.audio_rnn(audio)[0])  # (B, T, C)
        visual_kv = self.visual_key(self.visual_rnn(self.visual_in(visual))[0])  # (B, T, 2C) -> (B, T, C)
        return self.audio_gate(audio_kv).sigmoid(), self.visual_gate(visual_kv).sigmoid()


def _seed_encoder(dim: int, ffn: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, 4, ffn, 0.1, batch_first=True)  # post-norm, ReLU (CMRAN's layer)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class SeedAVSDecoder(nn.Module):
    """DG-SCT's AVS decoder (``task.head=tpavi``; ``AVS/avs_scripts/avs_{s4,ms3}/model/PVT_AVSModel.py``
    ``Pred_endecoder`` after the backbones): the same interface as ``AVSDecoder``.

    Each stage map is projected to ``dim`` channels by a linear map and resized bicubically to 1/4, 1/8, 1/16 and
    1/32 of the frame size (the seed's 56/28/14/7 at 224 px); the audio by a linear map to ``seed_audio_dim``.
    Stage-wise gates (``SeedStageGate``) scale each stage map by ``1 + gamma g_a`` and the audio by ``1 + gamma
    mean_i g_v,i``; TPAVI at every stage (the kept maps, as the seed returns them, are ReLU'd: its FPN's in-place
    ReLUs overwrite them); the FPN with the seed's residual units, upsampling by 2; the output convolutions (3x3
    to dim/2, x2 bilinear, 3x3 to dim/8, ReLU, 1x1 to one logit) give the frame size again.
    """

    def __init__(self, stage_channels: tuple[int, ...], audio_dim: int, cfg: AVSConfig) -> None:
        super().__init__()
        dim, n = cfg.dim, len(stage_channels)
        self.project = nn.ModuleList(nn.Linear(c, dim) for c in stage_channels)
        self.audio_in = nn.Linear(audio_dim, cfg.seed_audio_dim)
        self.gates = nn.ModuleList(SeedStageGate(cfg.seed_audio_dim, dim, cfg.seed_ffn) for _ in stage_channels)
        self.tpavi = nn.ModuleList(TPAVI(dim, cfg.seed_audio_dim) for _ in stage_channels)
        self.fusion = nn.ModuleList(_Fusion(dim, with_skip=i < n - 1, relu_residual=True) for i in range(n))
        self.head = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(dim // 2, dim // 8, 3, padding=1), nn.ReLU(), nn.Conv2d(dim // 8, 1, 1),
        )  # fmt: skip
        self.gamma = cfg.temporal_gamma

    def _stage_maps(self, pyramid: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """(B*T, C_i, H_i, W_i) -> (B*T, dim, H/2^(i+2), W/2^(i+2)): linear over channels, bicubic resize."""
        h, w = size
        if h % 2 ** (len(pyramid) + 1) or w % 2 ** (len(pyramid) + 1):
            raise DataError(f"task.head=tpavi decodes from 1/{2 ** (len(pyramid) + 1)} of the frame size; "
                            f"{h}x{w} frames are not divisible by it")  # fmt: skip
        return [
            F.interpolate(proj(level.movedim(1, -1)).movedim(-1, 1), size=(h >> (i + 2), w >> (i + 2)), mode="bicubic")
            for i, (proj, level) in enumerate(zip(self.project, pyramid, strict=True))
        ]

    def forward(
        self, pyramid: list[torch.Tensor], audio: torch.Tensor, size: tuple[int, int], keep: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """As ``AVSDecoder.forward``; the returned stage maps are the ReLU'd TPAVI outputs (the seed's KL input)."""
        b, t = audio.shape[:2]
        maps, audio = self._stage_maps(pyramid, size), self.audio_in(audio)  # (B*T, dim, h_i, w_i), (B, T, Ca')
        visual_gates = []
        for i, gate in enumerate(self.gates):
            gate_a, gate_v = gate(audio, maps[i].mean(dim=(-2, -1)).unflatten(0, (b, t)))  # (B, T, 1) each
            maps[i] = maps[i] * (1 + self.gamma * gate_a.flatten(0, 1)[..., None, None])  # (B*T, dim, h_i, w_i)
            visual_gates.append(gate_v)
        audio = audio * (1 + self.gamma * torch.stack(visual_gates).mean(dim=0))  # (B, T, Ca')
        mixed, audio_feats = [], []
        for block, level in zip(self.tpavi, maps, strict=True):
            z, aligned = block(level.unflatten(0, (b, t)).transpose(1, 2), audio)  # (B, dim, T, h_i, w_i)
            mixed.append(F.relu(z.transpose(1, 2).flatten(0, 1)[keep]))  # (K, dim, h_i, w_i)
            audio_feats.append(aligned.flatten(0, 1)[keep])  # (B, T, dim) -> (K, dim)
        return self.head(fpn(self.fusion, mixed))[:, 0], mixed, audio_feats  # (K, H, W)


def masked_av_kl(
    logits: torch.Tensor, maps: list[torch.Tensor], audio_feats: list[torch.Tensor], pool_logits: bool = False
) -> torch.Tensor:
    """AVSBench's audio–masked-visual KL term (MS3), averaged over stages.

    Args:
        logits: (K, H, W) mask logits of K frames.
        maps: per stage (K, C, H_i, W_i) visual maps of those frames.
        audio_feats: per stage (K, C) audio features of those frames.
        pool_logits: the mask at each stage is the sigmoid of the average-pooled logits (the seed's loss), not the
            average-pooled probabilities.
    """
    total = logits.new_zeros(())
    for v_map, audio in zip(maps, audio_feats, strict=True):
        if pool_logits:
            mask = F.adaptive_avg_pool2d(logits[:, None], v_map.shape[-2:]).sigmoid()  # (K, 1, H_i, W_i)
        else:
            mask = F.adaptive_avg_pool2d(logits.sigmoid()[:, None], v_map.shape[-2:])
        visual = F.normalize((v_map * mask).mean(dim=(-2, -1)), dim=-1)  # (K, C)
        audio = F.normalize(audio, dim=-1)  # (K, C)
        total = total + F.kl_div(visual.log_softmax(dim=-1), audio.softmax(dim=-1), reduction="sum")
    return total / max(1, len(maps))


def _avsegm_decoder(cfg: AVSConfig, method: nn.Module) -> tuple[AVSegmSeedDecoder, list[int]]:
    """``task.head=avsegm_seed``: the decoder sized from ``method.dims["layers"]`` and the layers it reads."""
    widths = method.dims["layers"]
    depth = len(widths["visual"])
    layers = seed_layers(depth) if cfg.avsegm_layers is None else list(cfg.avsegm_layers)
    if not layers or any(not 0 <= i < depth for i in layers):
        raise ConfigError(f"task.avsegm_layers={cfg.avsegm_layers}: expected a non-empty list of layer indices in "
                          f"[0, {depth - 1}] (coarsest branch first), or null (the seed's choice)")  # fmt: skip
    if len({widths["visual"][i] for i in layers}) != 1:
        raise ConfigError(f"task.head=avsegm_seed needs image tokens of one width in task.avsegm_layers={layers}; "
                          f"the method's layers have widths {[widths['visual'][i] for i in layers]}")  # fmt: skip
    if cfg.avsegm_min_channels < 1:
        raise ConfigError(f"task.avsegm_min_channels={cfg.avsegm_min_channels}: expected >= 1")
    if cfg.kl_weight > 0:
        raise ConfigError(f"task.head=avsegm_seed has no stage maps for the KL term: set task.kl_weight=0 "
                          f"(got {cfg.kl_weight})")  # fmt: skip
    decoder = AVSegmSeedDecoder(widths["visual"][layers[0]], widths["audio"][-1], len(layers), cfg.avsegm_min_channels)
    return decoder, layers


@TASKS.register("avs_s4", pipeline=avs_pipeline, synth_part="avs", report=AVS, stores=("clips",))
@TASKS.register("avs_ms3", pipeline=avs_pipeline, synth_part="avs", report=AVS, stores=("clips",))
class AVSTask(MethodLayerIds, nn.Module):
    """AVSBench S4 / MS3: batch ``frames (B, T, H, W, 3)``, ``audio``, ``masks (B, T, H*W)``, ``mask_valid (B, T)``.

    The method's layer ids go to ``train.layer_decay`` with the decoder last (``MethodLayerIds``: the seed's
    ``params_layer_ids`` for ``avsegm_seed``)."""

    Config = AVSConfig
    needs = ()  # depends on task.head (HEAD_NEEDS): checked in __init__ (still at build time)
    primary_metric = "miou"

    def __init__(self, cfg: AVSConfig, method: nn.Module, info: DatasetInfo) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        if cfg.head not in HEADS:
            raise ConfigError(
                f"unknown task.head '{cfg.head}' for task '{cfg.name}'; expected one of {', '.join(HEADS)}"
            )
        self.needs = HEAD_NEEDS[cfg.head]
        method_name = getattr(getattr(method, "cfg", None), "name", None) or type(method).__name__
        check_pairing(method_name, method.produces, f"{cfg.name}' with task.head='{cfg.head}", self.needs)
        self.layers: list[int] = []
        if cfg.head == "avsegm_seed":
            self.decoder, self.layers = _avsegm_decoder(cfg, method)
        else:
            decoder = SeedAVSDecoder if cfg.head == "tpavi" else AVSDecoder
            self.decoder = decoder(method.dims["visual_pyramid"], method.dims["audio_pooled"], cfg)

    def outputs(self, batch: dict[str, torch.Tensor], keep: torch.Tensor | None = None) -> tuple:
        """Mask logits (K, H, W) of the frames ``keep`` selects from (B, T) (default: all, K = B*T), the stage
        maps and audio features of those frames, for the KL term, and the method's own loss terms."""
        b, t, h, w = batch["frames"].shape[:4]
        keep = torch.ones(b, t, dtype=torch.bool, device=batch["frames"].device) if keep is None else keep
        if self.cfg.head == "avsegm_seed":
            logits, losses = self._frame_outputs(batch, keep, (h, w))
            return logits, [], [], losses
        feats = paired_segments(self.method(batch), self.cfg.name)
        pyramid = [level.flatten(0, 1) for level in feats.visual_pyramid]  # (B*T, C_i, H_i, W_i)
        return *self.decoder(pyramid, feats.audio_pooled, (h, w), keep.flatten().nonzero()[:, 0]), feats.losses

    def _frame_outputs(self, batch: dict[str, torch.Tensor], keep: torch.Tensor, size: tuple[int, int]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        """``task.head=avsegm_seed``: each kept frame with its own second of audio as a one-segment clip through the
        method (the seed's samples), its per-layer tokens through the decoder -> logits (K, H, W), resized to the
        frame size when the decoder's (2^L x the patch grid) differs; and the method's own loss terms."""
        frames = {key: batch[key][keep][:, None] for key in ("frames", "audio")}  # (B, T, ...) -> (K, 1, ...)
        feats = self.method(frames, layers=True)
        if feats.grid is None:
            raise DataError(f"task.head=avsegm_seed needs the method's image tokens on a grid (AVFeatures.grid); "
                            f"{type(self.method).__name__} gave none")  # fmt: skip
        visual = [feats.layers["visual"][i][:, 0] for i in self.layers]  # (K, 1, N, C) -> (K, N, C)
        logits = self.decoder(visual, feats.layers["audio"][-1][:, 0], feats.grid)  # (K, h', w')
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return logits, feats.losses

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        valid = batch["mask_valid"].bool()  # (B, T): only annotated frames are decoded in training
        logits, maps, audio, method_losses = self.outputs(batch, valid)  # (K, H, W)
        target = batch["masks"][valid].unflatten(-1, logits.shape[-2:]).float()  # (K, H*W) -> (K, H, W)
        loss_bce = F.binary_cross_entropy_with_logits(logits, target)
        out = {"loss_bce": loss_bce.detach()}
        loss = loss_bce
        if self.cfg.kl_weight > 0 and audio:
            loss_kl = masked_av_kl(logits, maps, audio, pool_logits=self.cfg.head == "tpavi")
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
        return avs_scores(probs[valid], masks[valid], with_background=self.cfg.with_background)

"""CMG / Uni-Code: one discrete codebook shared by audio, visual and text, learnt by DCID and a multimodal VQ.

Paper: Xia, Huang, Zhu, Zhao, *Achieving Cross Modal Generalization with Multimodal Unified Representation*,
NeurIPS 2023 (seed: haihuangcode/CMG). Per modality a *semantic* encoder (a linear map and a 2-layer post-LN
transformer over the T segments; video first pools its 7x7 grid with squeeze-excitation) gives z (B, T, D), which
is quantised by a codebook of K codes shared by all modalities; a *specific* encoder gives the rest, which the
decoders need to reconstruct the input from the code. Training objectives (all weight 1, summed by the task):

* reconstruction (MSE) of each modality from its code and its specific features;
* commitment: z pulled to its own code (2 beta) and to the other modalities' codes at the same step (beta / (M-1));
* CMCM (cross-modal code matching): row-wise info-NCE between the clips' code distributions of two modalities;
* Cross-CPC: each modality's LSTM context at a random step t predicts every modality's z at t + 1 (info-NCE over the
  batch; self pairs weighted 0.1);
* CLUB: an upper bound of the mutual information between the (straight-through) code and the specific features,
  minimised, its sampled estimate floored at 0 (``club_clamp``; the seed's unfloored estimate can run away); its
  variational network q(y|x) is trained by its own optimizer, ``club_steps`` Adam steps per batch on detached
  features, through the engine's auxiliary-optimizer hook (``CMG.auxiliary``).

The codebook has no gradient: an EMA of the vectors assigned to each code, where each modality's update averages its
own vector (weight 1/2) with the time-aligned vectors of the other modalities (the rest), one modality after the
other; codes no modality used for ``reset_after`` steps are re-seeded near a recently used code. Its statistics are
all-reduced over processes before they are applied (``avlearn.distributed``), and its random draws come from a
generator seeded by the step count, so every rank keeps the same codebook. The in-batch negatives of CMCM, CPC and
CLUB are gathered over processes, so N processes compute what one process computes on the global batch.

Variants: ``modalities`` avt (audio, visual, text), av, at. Inputs: visual tokens (B, T, N, C) on a square grid
(VGG-19 pool5: 7 x 7 x 512), audio (B, T, C) (VGGish: 128), text tokens (B, L, C) of a text tower (BERT, 768),
padded or cut to T and run through a trainable bidirectional LSTM. ``faithful`` keeps the seed's bugs that change
numbers (docs/methods/cmg.md lists them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from avlearn.backbones.features import FeatureTower
from avlearn.config.schema import choice
from avlearn.distributed import all_gather_with_grad, all_reduce_mean_, rank, world_size
from avlearn.errors import ConfigError, DataError
from avlearn.methods.base import AVFeatures
from avlearn.registry import METHODS

AUDIO, VISUAL, TEXT = "audio", "visual", "text"
VARIANTS = {"avt": (AUDIO, VISUAL, TEXT), "av": (AUDIO, VISUAL), "at": (AUDIO, TEXT)}  # the seed's EMA order
# Cross-modal transfer: "<source>_to_<target>".
TRANSFERS = ("none", *(f"{a}_to_{b}" for a in VARIANTS["avt"] for b in VARIANTS["avt"] if a != b))


@dataclass
class CMGConfig:
    """Schema of ``method/cmg*.yaml`` (defaults: the seed's AVT pretraining)."""

    name: str = "cmg"
    modalities: str = choice("avt", tuple(VARIANTS))
    dim: int = 256  # semantic / code width D
    codes: int = 400  # codebook size K
    heads: int = 4  # of the temporal transformers
    layers: int = 2
    ff_dim: int = 1024
    dropout: float = 0.1
    video_hidden: int = 2048  # width of the video-specific conv stack
    video_padding: int = 0  # its 3x3 convolutions' padding: 0 = the seed's (7x7 -> 3x3), 1 = keep the grid
    se_reduction: int = 8  # squeeze-excitation bottleneck of the video semantic encoder
    audio_hidden: int = 256  # width of the audio-specific features
    text_hidden: int = 256  # width of the text-specific features
    text_lstm: int = 128  # per direction: the text LSTM gives 2 * text_lstm
    decay: float = 0.99  # EMA decay
    epsilon: float = 1e-5  # Laplace smoothing of the EMA counts
    commitment: float = 0.25  # beta
    reset_after: int = 300  # a code unused for more steps than this is re-seeded
    active_within: int = 100  # a code used within this many steps may seed one
    reset_noise: float = 1 / 1024  # half-width of the uniform noise added to a re-seeded code
    club_hidden: int = 256
    club_steps: int = 5  # inner Adam steps of the CLUB estimators per training step
    club_lr: float = 1e-3
    # The CLUB estimate clamped at >= 0 (an upper bound of a mutual information is never negative). Off: the seed's
    # unclamped estimate, which the encoders can drive to -1e3 and below (docs/methods/cmg.md, "The CLUB divergence").
    club_clamp: bool = True
    cpc: bool = True  # false: the Cross-CPC ablation
    cpc_self_weight: float = 0.1
    objectives: bool = True  # compute the pretraining losses (false: a downstream head on frozen codes)
    # Cross-modal transfer (needs objectives false): in training the audio and visual slots both show the source
    # modality's codes, in evaluation the target's, so a head trained on one modality is tested on the other.
    transfer: str = choice("none", TRANSFERS)
    faithful: bool = False  # keep the seed's number-changing bugs (docs/methods/cmg.md)

    def __post_init__(self) -> None:
        positive = ("dim", "codes", "heads", "layers", "ff_dim", "video_hidden", "audio_hidden", "text_hidden",
                    "text_lstm", "club_hidden", "club_steps", "reset_after", "active_within")  # fmt: skip
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"method.{key}={getattr(self, key)}: expected a positive integer")
        if self.dim % self.heads:
            raise ConfigError(f"method.dim={self.dim} is not divisible by method.heads={self.heads}")
        if self.video_padding not in (0, 1):
            raise ConfigError(f"method.video_padding={self.video_padding}: expected 0 (the seed's) or 1 (same size)")
        if not 0 < self.decay < 1:
            raise ConfigError(f"method.decay={self.decay}: expected a value in (0, 1)")


# ---- encoders -------------------------------------------------------------------------------------------------------
class TemporalEncoder(nn.Module):
    """(B, T, C_in) -> (B, T, D): a linear map, then post-LN transformer layers (ReLU, no position encoding)."""

    def __init__(self, c_in: int, cfg: CMGConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(c_in, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ff_dim, cfg.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.proj(x))


class VideoSemantic(nn.Module):
    """(B, T, H, W, C) grid -> (B, T, C): squeeze-excitation channel attention with a residual, then attention
    pooling over the H*W positions guided by the grid mean. ``faithful``: the seed's softmax over a size-1 axis makes
    every weight 1, so the pooling is a plain sum (and the attention layers get no gradient)."""

    def __init__(self, c: int, reduction: int, faithful: bool) -> None:
        super().__init__()
        self.faithful = faithful
        self.se = nn.Sequential(nn.Linear(c, c // reduction, bias=False), nn.ReLU(),
                                nn.Linear(c // reduction, c, bias=False), nn.Sigmoid())  # fmt: skip
        self.query_mean = nn.Linear(c, c // 2)
        self.query_self = nn.Linear(c, c // 2)
        self.score = nn.Linear(c // 2, 1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = grid.shape
        x = grid.reshape(b * t, h * w, c)  # (B*T, N, C)
        mean = x.mean(dim=1)  # (B*T, C)
        x = x * self.se(mean).unsqueeze(1) + x  # (B*T, N, C)
        query = F.relu(self.query_self(x)) * F.relu(self.query_mean(mean)).unsqueeze(1)  # (B*T, N, C/2)
        score = torch.tanh(self.score(query))  # (B*T, N, 1)
        weights = torch.ones_like(score) if self.faithful else score.softmax(dim=1)  # (B*T, N, 1)
        return (weights * x).sum(dim=1).reshape(b, t, c)  # (B*T, C) -> (B, T, C)


class Residual(nn.Module):
    """relu(x) + conv1x1(relu(conv3x3(relu(x)))), then ReLU: the seed's one-layer residual stack, whose first ReLU
    works in place, so the skip carries relu(x)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU(),
                                   nn.Conv2d(c, c, 1, bias=False))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return F.relu(x + self.block(x))


class VideoSpecific(nn.Module):
    """(B, T, H, W, C) -> the map (B, T, H', W', C_h) for the decoder and its pooled projection (B, T, C) for CLUB."""

    def __init__(self, c: int, hidden: int, padding: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(c, hidden // 2, 3, padding=padding), nn.ReLU(),
                                   nn.Conv2d(hidden // 2, hidden, 3, padding=padding), nn.ReLU(),
                                   nn.Conv2d(hidden, hidden, 1), Residual(hidden))  # fmt: skip
        self.project = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, c))

    def forward(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, h, w, c = grid.shape
        maps = self.convs(grid.reshape(b * t, h, w, c).permute(0, 3, 1, 2))  # (B*T, C_h, H', W')
        pooled = self.project(maps.mean(dim=(2, 3)))  # (B*T, C)
        return maps.permute(0, 2, 3, 1).unflatten(0, (b, t)), pooled.reshape(b, t, c)  # (B, T, H', W', C_h)


class VideoDecoder(nn.Module):
    """(code (B, T, D), specific map (B, T, H', W', C_h)) -> the grid (B, T, H, W, C): the code, mapped and tiled over
    the map, concatenated with it, then transposed convolutions back to the input grid."""

    def __init__(self, dim: int, hidden: int, c: int, padding: int) -> None:
        super().__init__()
        self.code = nn.Linear(dim, dim)
        self.deconvs = nn.Sequential(nn.ConvTranspose2d(hidden + dim, hidden // 2, 3, padding=padding),
                                     Residual(hidden // 2), nn.ConvTranspose2d(hidden // 2, c, 3, padding=padding),
                                     nn.ReLU(), nn.ConvTranspose2d(c, c, 1))  # fmt: skip

    def forward(self, code: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = maps.shape
        tiled = self.code(code)[:, :, None, None].expand(-1, -1, h, w, -1)  # (B, T, H', W', D)
        x = torch.cat([tiled, maps], dim=-1).flatten(0, 1).permute(0, 3, 1, 2)  # (B*T, D + C_h, H', W')
        return self.deconvs(x).permute(0, 2, 3, 1).unflatten(0, (b, t))  # (B, T, H, W, C)


class FuseDecoder(nn.Module):
    """(code (B, T, D), specific (B, T, C_s)) -> (B, T, C): concat(linear(code), specific), then a linear map."""

    def __init__(self, dim: int, hidden: int, c: int) -> None:
        super().__init__()
        self.code = nn.Linear(dim, hidden)
        self.out = nn.Linear(2 * hidden, c)

    def forward(self, code: torch.Tensor, specific: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.code(code), specific], dim=-1))


# ---- CLUB ----------------------------------------------------------------------------------------------------------
def _mlp(c_in: int, hidden: int, c_out: int) -> list[nn.Module]:
    return [nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
            nn.ReLU(), nn.Linear(hidden, c_out)]  # fmt: skip


class Club(nn.Module):
    """Sampled CLUB (Cheng et al., 2020) over sequences: a Gaussian q(y | x) with mean ``mu(x)`` and log-variance
    ``logvar(x)`` in (-1, 1), x (B, T, D) a code sequence and y (B, T, C) specific features."""

    def __init__(self, dim: int, c: int, hidden: int) -> None:
        super().__init__()
        self.mu = nn.Sequential(*_mlp(dim, hidden // 2, c))
        self.logvar = nn.Sequential(*_mlp(dim, hidden // 2, c), nn.Tanh())

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unnormalised log q(y | x), summed over channels, averaged over B*T, halved."""
        mu, logvar = self.mu(x), self.logvar(x)  # (B, T, C)
        return (-((mu - y) ** 2) / logvar.exp() - logvar).sum(dim=-1).mean() / 2

    def mi_upper_bound(self, x: torch.Tensor, y: torch.Tensor, y_all: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """The seed's CLUB estimate: the time-averaged log-ratio of each clip's own y to a permuted clip's
        ``y_all[perm]`` (y_all (N, T, C): the global batch; perm (B,) indices into it for this rank's rows).
        Gradients reach x and y only: the estimator is trained by its own optimizer (``CMG.auxiliary``), never by the
        loss it bounds."""
        mu, logvar = (functional_call(net, {k: p.detach() for k, p in net.named_parameters()}, (x,))
                      for net in (self.mu, self.logvar))  # (B, T, C) each  # fmt: skip
        scale = logvar.mean(dim=1).exp()  # (B, C)
        positive = -((mu - y) ** 2).mean(dim=1) / scale  # (B, C)
        negative = -((mu - y_all[perm]) ** 2).mean(dim=1) / scale  # (B, C)
        return (positive.sum(dim=-1) - negative.sum(dim=-1)).mean() / 2


# ---- the multimodal codebook ---------------------------------------------------------------------------------------
def squared_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(R, D), (K, D) -> (R, K) squared L2 distances, at least in fp32 (also under autocast)."""
    dtype = torch.promote_types(z.dtype, torch.float32)
    z, codebook = z.to(dtype), codebook.to(dtype)
    with torch.autocast(z.device.type, enabled=False):
        return torch.addmm((codebook**2).sum(dim=1) + (z**2).sum(dim=1, keepdim=True), z, codebook.t(), alpha=-2.0)


class MultimodalCodebook(nn.Module):
    """K x D codes shared by the modalities, kept as an EMA (buffers only, no gradient); see the module docstring.

    Buffers: ``embedding`` (K, D) the codes, ``ema_weight`` (K, D) and ``ema_count`` (K,) their EMA statistics,
    ``unused`` (K,) steps since a code was last chosen (-1 at start), ``step`` the training steps seen.
    """

    def __init__(self, cfg: CMGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bound = 1 / cfg.codes
        self.register_buffer("embedding", torch.empty(cfg.codes, cfg.dim).uniform_(-bound, bound))
        self.register_buffer("ema_weight", self.embedding.clone())
        self.register_buffer("ema_count", torch.zeros(cfg.codes))
        self.register_buffer("unused", -torch.ones(cfg.codes))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T) index of the nearest code."""
        flat = z.detach().reshape(-1, z.shape[-1])  # (B*T, D)
        return squared_distances(flat, self.embedding).argmin(dim=-1).view(z.shape[:-1])

    def lookup(self, z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Straight-through quantisation: the codes' values, z's gradient."""
        return z + (self.embedding[idx].to(z.dtype) - z).detach()

    @torch.no_grad()
    def update(self, z: dict[str, torch.Tensor], idx: dict[str, torch.Tensor], generator: torch.Generator) -> None:
        """One training step of the EMA (each modality in turn) and of the dead-code reset, with statistics summed
        over processes (identical on every rank)."""
        names = list(z)
        k, d = self.embedding.shape
        flat = {m: z[m].detach().reshape(-1, d).to(self.embedding.dtype) for m in names}  # (B*T, D)
        if len({v.shape[0] for v in flat.values()}) > 1:
            raise DataError(f"CMG codebook: the modalities' step counts differ ({[tuple(z[m].shape) for m in names]}); "
                            "the EMA pairs the modalities' vectors step by step")  # fmt: skip
        counts, sums = [], []
        other = 0.5 / (len(names) - 1)
        for m in names:
            mix = 0.5 * flat[m] + sum(other * flat[o] for o in names if o != m)  # (B*T, D)
            one = idx[m].reshape(-1)
            counts.append(torch.bincount(one, minlength=k).to(mix.dtype))  # (K,)
            sums.append(torch.zeros_like(self.embedding).index_add_(0, one, mix))  # (K, D)
        stats = torch.cat([torch.stack(counts), torch.stack(sums).flatten(1)], dim=1)  # (M, K + K*D)
        stats = all_reduce_mean_(stats) * world_size()  # sums over the global batch
        gamma, eps = self.cfg.decay, self.cfg.epsilon
        for count, dw in zip(stats[:, :k], stats[:, k:].view(len(names), k, d), strict=True):
            self.ema_count.mul_(gamma).add_(count, alpha=1 - gamma)
            n = self.ema_count.sum()
            self.ema_count.copy_((self.ema_count + eps) / (n + k * eps) * n)
            self.ema_weight.mul_(gamma).add_(dw, alpha=1 - gamma)
            self.embedding.copy_(self.ema_weight / self.ema_count.unsqueeze(-1))
        self._reset(stats[:, :k].sum(dim=0) > 0, generator)
        self.step += 1

    def _reset(self, used: torch.Tensor, generator: torch.Generator) -> None:
        """Re-seed the codes unused for more than ``reset_after`` steps near a code used within ``active_within``."""
        self.unused.add_(1).masked_fill_(used, 0)
        dead = self.unused > self.cfg.reset_after
        active = ((self.unused >= 0) & (self.unused < self.cfg.active_within)).nonzero().squeeze(1)
        self.unused.masked_fill_(dead, 0)
        n_dead = int(dead.sum())
        if n_dead == 0 or active.numel() == 0:
            return
        source = active[torch.randint(active.numel(), (n_dead,), generator=generator).to(active.device)]
        noise = torch.rand(n_dead, self.embedding.shape[1], generator=generator, dtype=self.embedding.dtype)
        noise = (2 * noise - 1).to(self.embedding.device) * self.cfg.reset_noise  # U(-r, r)
        self.embedding[dead] = self.embedding[source] + noise
        if not self.cfg.faithful:  # the seed leaves the statistics stale: the next update undoes the reset
            self.ema_weight[dead] = self.embedding[dead] * self.ema_count[dead].unsqueeze(-1)

    def commitment(self, z: dict[str, torch.Tensor], q: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per modality: 2 beta MSE(z_m, sg q_m) + beta / (M - 1) sum over the others of MSE(z_m, sg q_o)."""
        beta, names = self.cfg.commitment, list(z)
        return {m: 2 * beta * F.mse_loss(z[m], q[m].detach())
                + sum(beta / (len(names) - 1) * F.mse_loss(z[m], q[o].detach()) for o in names if o != m)
                for m in names}  # fmt: skip

    def code_distribution(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, K): softmax of the negative (unsquared) distances to the codes, averaged over T."""
        b, t, d = z.shape
        codes = self.embedding.clone()  # the graph keeps this copy: the update changes the buffer in place
        dist = squared_distances(z.reshape(b * t, d), codes)  # (B*T, K)
        return (-dist.clamp_min(1e-12).sqrt()).softmax(dim=-1).view(b, t, -1).mean(dim=1)  # (B, K)

    def cmcm(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-modal code matching: 0.5 x the sum over modality pairs of a row-wise info-NCE on the clips' code
        distributions (this rank's rows against the global batch's columns)."""
        p = {m: self.code_distribution(v) for m, v in z.items()}  # (B, K)
        p_all = {m: all_gather_with_grad(v) for m, v in p.items()}  # (N, K)
        rows = _own_rows(next(iter(p.values())))
        total = 0
        for m, n in combinations(p, 2):
            scores = p[m] @ torch.log(p_all[n].t() + 1e-10) + p[n] @ torch.log(p_all[m].t() + 1e-10)  # (B, N)
            total = total + _row_nce(scores, rows, self.cfg.epsilon if self.cfg.faithful else None)
        return 0.5 * total


def _clamped(estimate: torch.Tensor) -> torch.Tensor:
    """This rank's share of max(global estimate, 0): zero (no gradient) where the mean of the processes' estimates
    is negative, so N processes clamp what one process on the global batch clamps."""
    keep = all_reduce_mean_(estimate.detach().clone()) > 0
    return estimate * keep


def _own_rows(x: torch.Tensor) -> torch.Tensor:
    """(B,) the indices of this rank's rows of ``x`` in the gathered global batch."""
    owner = all_gather_with_grad(torch.full((x.shape[0],), float(rank()), device=x.device))  # (N,)
    return (owner == rank()).nonzero().squeeze(1)


def _row_nce(scores: torch.Tensor, targets: torch.Tensor, seed_eps: float | None) -> torch.Tensor:
    """Mean over rows of -log softmax(scores)[row, target]. ``seed_eps``: the seed's form, exp shifted by the
    minimum score and ``seed_eps`` added to the denominator."""
    if seed_eps is None:
        return F.cross_entropy(scores, targets)
    shifted = scores - scores.min()
    own = shifted.gather(1, targets[:, None]).squeeze(1)  # (B,)
    return (torch.log(shifted.exp().sum(dim=1) + seed_eps) - own).mean()


# ---- Cross-CPC -----------------------------------------------------------------------------------------------------
class CrossCPC(nn.Module):
    """Per modality a 2-layer LSTM over z[:, :t+1] and a linear predictor of z[:, t+1]; info-NCE over the global batch
    of every (target, predicting) modality pair, cross pairs weighted 1, self pairs ``self_weight``."""

    def __init__(self, names: tuple[str, ...], dim: int, self_weight: float) -> None:
        super().__init__()
        self.self_weight = self_weight
        self.lstm = nn.ModuleDict({m: nn.LSTM(dim, dim, 2, batch_first=True) for m in names})
        self.predict = nn.ModuleDict({m: nn.Linear(dim, dim) for m in names})

    def forward(self, z: dict[str, torch.Tensor], t: int) -> torch.Tensor:
        pred = {m: self.predict[m](self.lstm[m](v[:, : t + 1])[0][:, t]) for m, v in z.items()}  # (B, D)
        pred_all = {m: all_gather_with_grad(v) for m, v in pred.items()}  # (N, D)
        rows = _own_rows(next(iter(pred.values())))
        total = 0
        for target in z:
            for source in z:
                scores = z[target][:, t + 1] @ pred_all[source].t()  # (B, N)
                weight = self.self_weight if target == source else 1.0
                total = total + weight * F.cross_entropy(scores, rows)
        return total


# ---- the method ----------------------------------------------------------------------------------------------------
def _square_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, N, C) tokens of a square grid -> (B, T, H, W, C)."""
    n = tokens.shape[2]
    h = math.isqrt(n)
    if h * h != n:
        raise DataError(f"CMG visual tokens: {n} per segment, expected a square grid (7 x 7 = 49 for VGG-19 pool5)")
    return tokens.unflatten(2, (h, h))


def _tower_tokens(tower: nn.Module, batch: dict[str, torch.Tensor], media: str) -> torch.Tensor:
    """(B, T, N, C): a ``features`` tower's cached features, or a tower run on the batch's ``frames`` / ``audio``."""
    if isinstance(tower, FeatureTower):
        return tower.read(batch)
    x = batch[media]
    if media == "frames":
        tokens = tower.forward_features(pixel_values=tower.preprocess(x.flatten(0, 1)))  # (B*T, N, C)
    else:
        tokens = tower.forward_features(input_features=x.flatten(0, 1))  # (B*T, N, C)
    return tokens.unflatten(0, x.shape[:2])


@dataclass
class Encoded:
    """One forward's encoder outputs per modality: semantic z (B, T, D), codes (B, T), quantised q (B, T, D), the
    specific features for CLUB (B, T, C_s) and for the decoder, and the inputs to reconstruct."""

    z: dict[str, torch.Tensor]
    idx: dict[str, torch.Tensor]
    q: dict[str, torch.Tensor]
    specific: dict[str, torch.Tensor]
    decoder_in: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]


@METHODS.register("cmg")
@METHODS.register("cmg_tiny")  # the same class; method/cmg_tiny.yaml holds the test-size settings
class CMG(nn.Module):
    """CMG (see the module docstring). ``forward(batch) -> AVFeatures``: ``audio_pooled`` / ``visual_pooled`` /
    ``text`` the quantised sequences (B, T, D) (straight-through), ``audio`` / ``visual`` the same as one token per
    segment (B, T, 1, D), ``text_pooled`` the text's mean, ``codes`` per modality (B, T), and in ``losses`` the
    pretraining terms (``objectives``). In training mode (with ``objectives``) the forward also updates the codebook.
    With ``transfer`` (source_to_target) the audio and visual slots both carry the source's codes in training and the
    target's in evaluation."""

    Config = CMGConfig

    def __init__(self, cfg: CMGConfig, visual: nn.Module, audio: nn.Module, text: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.names = VARIANTS[cfg.modalities]
        if TEXT in self.names and text is None:
            raise ConfigError(f"method.modalities={cfg.modalities} needs a text tower: set backbone.text (e.g. "
                              "bert_base, whose token embeddings CMG reads) or use method.modalities=av")  # fmt: skip
        self.visual_backbone = visual if VISUAL in self.names else None
        self.audio_backbone, self.text_backbone = audio, text if TEXT in self.names else None
        self.semantic, self.specific, self.decoder, self.club = (nn.ModuleDict() for _ in range(4))
        if AUDIO in self.names:
            self._add(AUDIO, audio.num_features, cfg.audio_hidden)
        if VISUAL in self.names:
            c = visual.num_features
            self.visual_pool = VideoSemantic(c, cfg.se_reduction, cfg.faithful)
            self.semantic[VISUAL] = TemporalEncoder(c, cfg)
            self.specific[VISUAL] = VideoSpecific(c, cfg.video_hidden, cfg.video_padding)
            self.decoder[VISUAL] = VideoDecoder(cfg.dim, cfg.video_hidden, c, cfg.video_padding)
            self.club[VISUAL] = Club(cfg.dim, c, cfg.club_hidden)
        if TEXT in self.names:
            self.text_lstm = nn.LSTM(text.num_features, cfg.text_lstm, 2, batch_first=True, bidirectional=True)
            self._add(TEXT, 2 * cfg.text_lstm, cfg.text_hidden)
        if cfg.transfer != "none" and (cfg.objectives or not set(cfg.transfer.split("_to_")) <= set(self.names)):
            raise ConfigError(f"method.transfer={cfg.transfer}: needs method.objectives=false (a head on frozen "
                              f"codes) and both modalities in method.modalities={cfg.modalities}")  # fmt: skip
        self.codebook = MultimodalCodebook(cfg)
        self.cpc = CrossCPC(self.names, cfg.dim, cfg.cpc_self_weight) if cfg.cpc else None
        fields = {AUDIO: ("audio", "audio_pooled"), VISUAL: ("visual", "visual_pooled"), TEXT: ("text", "text_pooled")}
        slots = [m for m in VARIANTS["avt"] if m in self.names or (cfg.transfer != "none" and m != TEXT)]
        self.produces = tuple(f for m in slots for f in fields[m]) + ("codes",)
        self.dims = dict.fromkeys(self.produces[:-1], cfg.dim)
        self.dims["codes"] = dict.fromkeys(self.names, cfg.codes)
        terms = [f"{k}_{m}" for k in ("recon", "commit", "mi") for m in self.names] + ["cpc"] * cfg.cpc + ["cmcm"]
        self.loss_terms = tuple(terms) if cfg.objectives else ()  # the names in AVFeatures.losses

    def _add(self, m: str, c: int, hidden: int) -> None:
        """The semantic and specific encoders, decoder and CLUB estimator of a sequence modality of width c."""
        self.semantic[m] = TemporalEncoder(c, self.cfg)
        self.specific[m] = nn.Sequential(nn.Linear(c, hidden), nn.ReLU())
        self.decoder[m] = FuseDecoder(self.cfg.dim, hidden, c)
        self.club[m] = Club(self.cfg.dim, hidden, self.cfg.club_hidden)

    # ---- inputs
    def inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The per-modality inputs: audio (B, T, C_a), visual (B, T, H, W, C_v), text tokens (B, L, C_t)."""
        out = {}
        if AUDIO in self.names:
            out[AUDIO] = _tower_tokens(self.audio_backbone, batch, "audio").mean(dim=2)  # (B, T, N, C) -> (B, T, C)
        if VISUAL in self.names:
            out[VISUAL] = _square_grid(_tower_tokens(self.visual_backbone, batch, "frames"))  # (B, T, H, W, C)
        if TEXT in self.names:
            out[TEXT] = self._text_tokens(batch)
        return out

    def _text_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, L, C_t): the batch's ``text_features`` (token embeddings the text tower computed beforehand, as the
        seed's BERT prompt features), else the text tower on ``text_ids`` / ``text_mask``."""
        if "text_features" in batch:
            return batch["text_features"].float()
        if "text_ids" not in batch:
            raise DataError(f"method.modalities={self.cfg.modalities}: the batch has neither 'text_features' nor "
                            "'text_ids' (the prompt tokens CMG embeds with its text tower)")  # fmt: skip
        return self.text_backbone.forward_features(input_ids=batch["text_ids"], attention_mask=batch.get("text_mask"))

    def _text_sequence(self, tokens: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, L, C_t) -> (B, T, 2 * text_lstm): zero-padded or cut to T tokens, then the bidirectional LSTM."""
        b, n, c = tokens.shape
        tokens = tokens[:, :steps] if n >= steps else torch.cat([tokens, tokens.new_zeros(b, steps - n, c)], dim=1)
        return self.text_lstm(tokens)[0]

    # ---- encoders
    def encode(self, inputs: dict[str, torch.Tensor]) -> Encoded:
        """Semantic and specific encoders and code assignment (no codebook update)."""
        steps, inputs = inputs[AUDIO].shape[1], dict(inputs)  # every variant has audio
        if TEXT in inputs:
            inputs[TEXT] = self._text_sequence(inputs[TEXT], steps)  # the reconstruction target too
        z, specific, decoder_in = {}, {}, {}
        for m in self.names:
            x = inputs[m]
            if m == VISUAL:
                z[m] = self.semantic[m](self.visual_pool(x))
                decoder_in[m], specific[m] = self.specific[m](x)
            else:
                z[m] = self.semantic[m](x)
                decoder_in[m] = specific[m] = self.specific[m](x)
        idx = {m: self.codebook.assign(v) for m, v in z.items()}
        q = {m: self.codebook.lookup(z[m], idx[m]) for m in self.names}
        return Encoded(z, idx, q, specific, decoder_in, inputs)

    def quantise(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """A modality's input (one batch) -> its code vectors (B, T, D), as the downstream protocols read them."""
        if modality == TEXT:
            x = self._text_sequence(x, x.shape[1])
        z = self.semantic[modality](self.visual_pool(x) if modality == VISUAL else x)
        return self.codebook.lookup(z, self.codebook.assign(z))

    # ---- losses
    def _generator(self, salt: int) -> torch.Generator:
        """A CPU generator seeded by the codebook's step count: the same draws on every rank."""
        return torch.Generator().manual_seed(int(self.codebook.step) * 1_000_003 + salt)

    def cpc_step(self, steps: int) -> int:
        """The random step t in [1, T - 2] from which Cross-CPC predicts t + 1 (shared by the batch)."""
        return int(torch.randint(steps - 2, (1,), generator=self._generator(1))) + 1

    def club_permutation(self, size: int, modality: str) -> torch.Tensor:
        """(N,) the permutation of the global batch that pairs each clip with another clip's specific features."""
        return torch.randperm(size, generator=self._generator(2 + self.names.index(modality)))

    def objectives(self, enc: Encoded) -> dict[str, torch.Tensor]:
        """The pretraining loss terms of one forward (before the codebook update)."""
        losses = {}
        for m in self.names:
            target = enc.inputs[m]
            if m == TEXT and not self.cfg.faithful:
                target = target.detach()  # the seed's target is the trainable LSTM's own output
            losses[f"recon_{m}"] = F.mse_loss(self.decoder[m](enc.q[m], enc.decoder_in[m]), target)
        losses.update({f"commit_{m}": v for m, v in self.codebook.commitment(enc.z, enc.q).items()})
        for m in self.names:
            y_all = all_gather_with_grad(enc.specific[m])  # (N, T, C_s)
            perm = self.club_permutation(y_all.shape[0], m).to(y_all.device)[_own_rows(enc.specific[m])]
            mi = self.club[m].mi_upper_bound(enc.q[m], enc.specific[m], y_all, perm)
            losses[f"mi_{m}"] = _clamped(mi) if self.cfg.club_clamp else mi
        if self.cpc is not None:
            losses["cpc"] = self.cpc(enc.z, self.cpc_step(next(iter(enc.z.values())).shape[1]))
        losses["cmcm"] = self.codebook.cmcm(enc.z)
        return losses

    def forward(self, batch: dict[str, torch.Tensor]) -> AVFeatures:
        enc = self.encode(self.inputs(batch))
        losses = self.objectives(enc) if self.cfg.objectives else {}
        if self.training and self.cfg.objectives:
            self.codebook.update(enc.z, enc.idx, self._generator(0))
        q = dict(enc.q)
        if self.cfg.transfer != "none":
            source, target = self.cfg.transfer.split("_to_")
            q[AUDIO] = q[VISUAL] = enc.q[source if self.training else target]  # (B, T, D) in both slots
        tokens = {m: q[m].unsqueeze(2) for m in (AUDIO, VISUAL) if m in q}  # (B, T, 1, D): one token per segment
        return AVFeatures(audio=tokens.get(AUDIO), audio_pooled=q.get(AUDIO), visual=tokens.get(VISUAL),
                          visual_pooled=q.get(VISUAL), text=q.get(TEXT),
                          text_pooled=q[TEXT].mean(dim=1) if TEXT in q else None, codes=enc.idx,
                          losses=losses)  # fmt: skip

    def train(self, mode: bool = True) -> CMG:
        """Without ``objectives`` (a head on frozen codes) the encoders stay in eval mode, so no dropout reaches the
        codes (the seed leaves it on while its heads train; ``faithful`` keeps that); the method's own ``training``
        flag still selects the transfer's source or target."""
        super().train(mode)
        if not self.cfg.objectives and not self.cfg.faithful:
            for child in self.children():
                child.train(False)
        return self

    # ---- the CLUB estimators' own optimizer (engine/auxiliary.py)
    def auxiliary(self) -> SimpleNamespace | None:
        """CLUB's q(y | x): ``club_steps`` Adam steps per training step on the negative log-likelihood of the
        detached codes and specific features (none without ``objectives``). The fields of the engine's
        ``engine.auxiliary.Auxiliary`` (a layer above methods); a task that trains CMG returns this from its own
        ``auxiliary()``."""
        if not self.cfg.objectives:
            return None
        return SimpleNamespace(params=list(self.club.parameters()), loss=self.club_loss, steps=self.cfg.club_steps,
                               lr=self.cfg.club_lr, optimizer="adam", weight_decay=0.0,
                               prepare=self.club_inputs)  # fmt: skip

    def club_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per modality the detached (code sequence, specific features) of the batch."""
        enc = self.encode(self.inputs(batch))
        return {m: (enc.q[m].detach(), enc.specific[m].detach()) for m in self.names}

    def club_loss(self, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The sum over modalities of CLUB's negative log-likelihood."""
        return sum(-self.club[m].log_likelihood(x, y) for m, (x, y) in pairs.items())

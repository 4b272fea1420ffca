"""DeepAVFusion's visually guided separation decoder (Mo & Morgado, CVPR 2024; seed ``models/avsrcsep.py``,
``AVSrcSepUNet``), as a head of the separate task (``task.head=avsrcsep_seed``).

The decoder reads five layers of the encoder's audio tokens, each laid out on the audio patch grid ``(h, w)`` after
its own LayerNorm, and the mean of the last layer's image tokens (LayerNorm), projected to each level's width and
tiled over it. The deepest chosen layer feeds the highest-resolution branch (the seed's ``[11, 8, 5, 2, 0]`` of a
12-layer encoder, ``np.linspace(0, depth - 1, 5)[::-1]``): the top ``DoubleConv`` reads the coarsest branch's audio
map and image vector at ``(h, w)``; each of the four lateral branches upsamples its audio map by 2, 4, 8, 16 with a
transposed convolution and concatenates the image vector tiled at that size; each ``up`` level doubles the running
map with a transposed convolution, concatenates the lateral map and applies a ``DoubleConv``; a 3x3 convolution
gives one map of mask logits at ``(16 h, 16 w)``, the resolution of the seed's log-mel (128 x 192 for 8 x 12).

The module keeps the seed's parameter names except its ``DoubleConv`` wrapper (``x.double_conv.k`` is ``x.k``
here; :func:`convert_avsrcsep_state_dict`).

Onto the separate task's STFT (:class:`MelToStft`): the seed applies its mel-domain mask through the mel filterbank
to a linear STFT of the same clip; the task's masks live on its own STFT (another rate and hop), so the logits are
resampled: along frequency by linear interpolation at each STFT bin's position on the log-mel's (Slaney) mel axis,
along time by linear interpolation, after each one-second segment's decoded columns are cut to the part of the
tower's input that holds the segment once (the pipeline tiles a one-second log-mel to the tower's width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.audio.mel import hz_to_mel
from avlearn.errors import ConfigError
from avlearn.layers.avsegm import UpBlock, tiled
from avlearn.layers.avsegm import seed_layers as evenly_spaced
from avlearn.layers.unet import _double_conv

LEVELS = 5  # audio layers read by the decoder; the output is 2 ** (LEVELS - 1) = 16 times the patch grid


def seed_layers(depth: int) -> list[int]:
    """The seed's choice of audio layers of a ``depth``-layer encoder, deepest first: ``[11, 8, 5, 2, 0]`` at 12
    (the segmentation decoder's evenly spaced layers, reversed)."""
    return evenly_spaced(depth, LEVELS)[::-1]


def check_layers(layers: list[int] | None, depth: int) -> list[int]:
    """``task.seed_layers`` (None: the seed's rule) -> five layer indices in ``[0, depth)``, or a ConfigError."""
    if layers is None:
        return seed_layers(depth)
    if len(layers) != LEVELS or not all(0 <= i < depth for i in layers):
        raise ConfigError(f"task.seed_layers={list(layers)}: expected {LEVELS} layer indices in [0, {depth - 1}], "
                          "deepest first (null: the seed's rule)")  # fmt: skip
    return list(layers)


class AVSrcSepUNet(nn.Module):
    """The seed's separation decoder: ``audio`` (five ``(N, h * w, C)`` token maps, deepest layer first) and
    ``visual`` ``(N, Nv, C)`` last-layer image tokens -> mask logits ``(N, 1, 16 h, 16 w)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 16:
            raise ConfigError(f"the avsrcsep_seed decoder halves the encoder width {dim} four times: expected a "
                              "multiple of 16")  # fmt: skip
        self.xv_norm = nn.LayerNorm(dim)
        self.xa_norm = nn.ModuleList([nn.LayerNorm(dim) for _ in range(LEVELS)])
        for level in range(1, LEVELS + 1):  # cond5 (the top, full width) .. cond1 (dim / 16)
            self.add_module(f"cond{level}", nn.Linear(dim, dim // 2 ** (LEVELS - level)))
        self.top = _double_conv(2 * dim, dim)
        for level in range(1, LEVELS):  # lat4 (x2, dim / 2) .. lat1 (x16, dim / 16); up4 .. up1 halve the width
            width = dim // 2 ** (LEVELS - level)
            self.add_module(f"lat{level}", UpBlock(dim, width, factor=2 ** (LEVELS - level)))
            self.add_module(f"up{level}", UpBlock(2 * width, width, skip=2 * width))
        self.pred = nn.Conv2d(dim // 16, 1, kernel_size=3, padding=1)
        self.apply(_init_weights)

    def forward(self, audio: list[torch.Tensor], visual: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        n, (h, w) = visual.shape[0], grid
        pairs = zip(self.xa_norm, audio, strict=True)
        maps = [norm(tokens).view(n, h, w, -1).permute(0, 3, 1, 2) for norm, tokens in pairs]  # 5 x (N, C, h, w)
        vector = self.xv_norm(visual).mean(dim=1)  # (N, Nv, C) -> (N, C)
        x = self.top(torch.cat([maps[-1], tiled(self.cond5(vector), (h, w))], dim=1))  # (N, 2C, h, w) -> (N, C, h, w)
        for level in range(LEVELS - 1, 0, -1):  # 4 .. 1: the running map doubles, the lateral map meets it
            scale = 2 ** (LEVELS - level)
            cond = tiled(getattr(self, f"cond{level}")(vector), (h * scale, w * scale))  # (N, C / scale, ...)
            lateral = torch.cat([getattr(self, f"lat{level}")(maps[level - 1]), cond], dim=1)  # (N, 2C / scale, ...)
            x = getattr(self, f"up{level}")(x, lateral)  # (N, C / scale, h * scale, w * scale)
        return self.pred(x)  # (N, 1, 16 h, 16 w)


def _init_weights(module: nn.Module) -> None:
    """The seed's init: Xavier-uniform linear maps with zero bias, Kaiming-normal (fan out) convolutions, unit
    batch norms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def convert_avsrcsep_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The seed's ``AVSrcSepUNet`` state dict (or ``AVSrcSep``'s ``avss_decoder.*`` entries) -> this module's."""
    prefix = "avss_decoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {k.replace("double_conv.", ""): v for k, v in state.items()}


def seed_target_masks(sources: torch.Tensor, mixture: torch.Tensor, binary: bool) -> torch.Tensor:
    """The seed's targets (``faithful``) from magnitudes ``sources (B, K, F, T)`` and ``mixture (B, F, T)``, on power
    as the seed's ``10 ** log_mel``: binary ``|S|^2 > |X|^2`` (almost never true: the mixture holds the source), else
    ``|S|^2 / (|S|^2 + |X|^2 + 1e-5)``, at most about 0.5."""
    power, mix = sources**2, mixture[:, None] ** 2  # (B, K, F, T), (B, 1, F, T)
    if binary:
        return (power > mix).float()
    return (power / (power + mix + 1e-5)).clamp(0.0, 1.0)


class MelToStft(nn.Module):
    """Decoded per-segment logits ``(B, S, 1, H, W)`` on the tower's log-mel -> ``(B, F, T)`` on the task's STFT.

    Args:
        n_mels: Mel bands of the method's log-mel (Slaney scale, 0 Hz to ``mel_rate / 2``, as the pipeline's).
        mel_rate: Sampling rate of the method's audio, Hz.
        n_fft: The task's FFT size; bin ``k`` at ``k * sample_rate / n_fft`` Hz.
        sample_rate: The task's rate, Hz.
        rows: Rows ``H`` of the decoded map (they span the ``n_mels`` bands evenly).
    """

    def __init__(self, n_mels: int, mel_rate: int, n_fft: int, sample_rate: int, rows: int) -> None:
        super().__init__()
        hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (F,)
        top = hz_to_mel(torch.tensor(mel_rate / 2, dtype=torch.float64))
        band = hz_to_mel(hz) / top * (n_mels + 1) - 1  # fractional band index (band k's centre at k + 1 of n + 1)
        row = ((band + 0.5) * rows / n_mels - 0.5).clamp(0, rows - 1)  # (F,) fractional row of the decoded map
        low = row.floor().long().clamp(max=rows - 2) if rows > 1 else row.long()
        weights = torch.zeros(hz.numel(), rows, dtype=torch.float64)  # (F, H) linear interpolation
        frac = row - low
        weights[torch.arange(hz.numel()), low] = 1 - frac
        if rows > 1:
            weights[torch.arange(hz.numel()), low + 1] += frac
        self.register_buffer("weights", weights.float(), persistent=False)

    def forward(self, logits: torch.Tensor, kept: int, frames: int) -> torch.Tensor:
        """``logits (B, S, 1, H, W)``: the first ``kept`` columns of each segment are one second of it; ``frames``:
        the STFT's frame count over the ``S`` seconds."""
        b, s, _, h, _ = logits.shape
        seconds = logits[:, :, 0, :, :kept].permute(0, 2, 1, 3).reshape(b, h, s * kept)  # (B, H, S * kept)
        timed = F.interpolate(seconds, size=frames, mode="linear", align_corners=False)  # (B, H, T)
        return torch.einsum("fh,bht->bft", self.weights.to(timed.dtype), timed)  # (B, F, T)


class AVSrcSepHead(nn.Module):
    """The decoder on a method's per-layer tokens, its logits on the separate task's STFT.

    Args:
        dim: The encoder's width.
        layers: Five audio layers, deepest first (:func:`check_layers`).
        grid: The audio tower's patch grid ``(h, w)``.
        tower_frames: Time frames of the audio tower's input (the pipeline's one-second log-mel is tiled to it).
        n_mels, mel_rate, n_fft, sample_rate: See :class:`MelToStft`.
    """

    def __init__(self, dim: int, layers: list[int], grid: tuple[int, int], tower_frames: int, n_mels: int,
                 mel_rate: int, n_fft: int, sample_rate: int) -> None:  # fmt: skip
        super().__init__()
        self.layers, self.grid, self.tower_frames = list(layers), tuple(grid), tower_frames
        self.decoder = AVSrcSepUNet(dim)
        self.to_stft = MelToStft(n_mels, mel_rate, n_fft, sample_rate, grid[0] * 2 ** (LEVELS - 1))

    def forward(self, tokens: dict[str, tuple[torch.Tensor, ...]], segment_frames: int, frames: int) -> torch.Tensor:
        """``tokens``: ``AVFeatures.layers`` (per-layer ``(N, S, Na, C)`` audio, ``(N, S, Nv, C)`` visual tokens);
        ``segment_frames``: frames of one segment's log-mel; ``frames``: the STFT's -> logits ``(N, F, T)``."""
        visual = tokens["visual"][-1]  # (N, S, Nv, C): the last layer's image tokens
        n, s = visual.shape[:2]
        audio = [tokens["audio"][i].flatten(0, 1) for i in self.layers]  # 5 x (N * S, Na, C)
        logits = self.decoder(audio, visual.flatten(0, 1), self.grid)  # (N * S, 1, 16 h, 16 w)
        kept = max(1, round(logits.shape[-1] * min(segment_frames, self.tower_frames) / self.tower_frames))
        return self.to_stft(logits.unflatten(0, (n, s)), kept, frames)  # (N, F, T)

"""AudioCLIP's audio tower: ESResNeXt-fbsp, a ResNeXt with attention on a learned complex frequency front end.

Guzhov, Raue, Hees, Dengel, "ESResNe(X)t-fbsp: Learning Robust Time-Frequency Transformation of Audio", IJCNN 2021,
and "AudioCLIP: Extending CLIP to Image, Text and Audio", ICASSP 2022; the audio tower that Cross-Modal Adaptation's
ImageNet-ESC protocol (Lin et al., CVPR 2023) takes its audio features from. Written here from the seed's semantics:

* input: waveforms (B, L) in the 16-bit integer range, scaled to [-1, 1];
* framing: frames of ``win_length`` samples every ``hop_length`` (the signal zero-padded on both sides to cover
  whole frames), each multiplied by the window and zero-padded to ``n_fft`` on both sides;
* ``LinearFBSP``: a learned complex linear map from a frame to ``n_fft / 2 + 1`` frequencies. Each output frequency
  k has a centre ``fc_k``, a bandwidth ``fb_k`` and a window exponent ``m_k``; over t = pi * linspace(-1, 1, n_fft)
  its complex weights are ``sqrt(fb) * sinc(fb t / m)^m * exp(-i fc t)`` (the power of a negative real taken on
  the principal branch), divided by sqrt(n_fft) when ``normalized``;
* the power spectrogram (B, F, T) cut into 3 bands of F // 3 frequencies, stacked as the 3 input channels of an
  image, in decibels (10 log10, zero power read as 1e-18);
* a ResNeXt (7x7 stem with max pool, four stages of grouped bottleneck blocks, torchvision's layout) where each
  stage's output is gated by an attention map of the stage's input (``Attention2d``: adaptive max pool to the
  output's size, a depthwise and a pointwise convolution, batch norm, sigmoid), and a gated global average pool;
* a linear layer to the output width (AudioCLIP's 1024-d joint space).

``ESResNeXtConfig.audioclip()`` is AudioCLIP's setting; ``convert_esresnext_state_dict`` maps AudioCLIP's
``audio.*`` checkpoint names to this module's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.renames import rename_tower
from avlearn.errors import DataError

EXPANSION = 4  # a bottleneck block's output is 4x its planes
BANDS = 3  # the spectrogram's frequency bands, the ResNeXt's input channels
LOG_FLOOR = 1e-18  # power read as this where it is not positive, before the log
EPS = 1e-8  # the FBSP layer's guard against division by zero and sinc at 0
# Periodic generalised cosine windows, w[n] = sum_k (-1)^k a_k cos(2 pi k n / N), by scipy.signal.get_window's names
# (the seed's default and AudioCLIP's): their coefficients a_k
WINDOWS = {"boxcar": (1.0,), "hann": (0.5, 0.5), "blackmanharris": (0.35875, 0.48829, 0.14128, 0.01168)}


@dataclass(frozen=True)
class ESResNeXtConfig:
    """Front end (``n_fft``, ``hop_length``, ``win_length``, the window: one of ``WINDOWS``, ``normalized``), ResNeXt
    geometry (blocks per stage, groups, width per group; stage i has 64 * 2^i planes) and the output width."""

    n_fft: int = 2048
    hop_length: int = 561
    win_length: int = 1654
    window: str = "blackmanharris"
    normalized: bool = True
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    groups: int = 32
    width_per_group: int = 4
    output_dim: int = 1024

    @classmethod
    def audioclip(cls) -> ESResNeXtConfig:
        """AudioCLIP's audio tower (44.1 kHz input)."""
        return cls()


def periodic_window(name: str, length: int) -> torch.Tensor:
    """The periodic window ``name`` (``WINDOWS``) of ``length`` samples, float64 (scipy's ``get_window(name,
    length, fftbins=True)``)."""
    if name not in WINDOWS:
        raise DataError(f"esresnext: window={name!r}; expected one of {', '.join(WINDOWS)}")
    n = torch.arange(length, dtype=torch.float64)
    return sum((-1) ** k * a * torch.cos(2 * math.pi * k * n / length) for k, a in enumerate(WINDOWS[name]))


class LinearFBSP(nn.Module):
    """A frame (..., n_fft) -> complex frequencies (..., F, 2) with Fourier-basis weights shaped by learned
    centres ``fc``, bandwidths ``fb`` and window exponents ``m`` (module docstring)."""

    def __init__(self, out_features: int, normalized: bool) -> None:
        super().__init__()
        self.normalized = normalized
        self.m = nn.Parameter(torch.zeros(out_features))
        self.fb = nn.Parameter(torch.ones(out_features))
        self.fc = nn.Parameter(torch.arange(out_features, dtype=torch.get_default_dtype()))

    def weights(self, in_features: int, like: torch.Tensor) -> torch.Tensor:
        """The complex weights (F, in_features, 2) as (real, imaginary)."""
        t = math.pi * torch.linspace(-1.0, 1.0, in_features, dtype=like.dtype, device=like.device) + EPS  # (n,)
        m, fb, fc = (p.unsqueeze(1) for p in (self.m, self.fb, self.fc))  # (F, 1) each
        x = fb * t / (m + EPS)  # (F, n)
        sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)
        # sinc^m of a real base: |sinc|^m = (sinc^2)^(m / 2), at angle m * pi where the base is negative
        magnitude, angle = (sinc * sinc) ** (0.5 * m), m * torch.where(sinc < 0, math.pi, 0.0)  # (F, n)
        window = torch.stack([magnitude * torch.cos(angle), magnitude * torch.sin(angle)], dim=-1)  # (F, n, 2)
        kernel = torch.stack([torch.cos(fc * t), -torch.sin(fc * t)], dim=-1)  # (F, n, 2): exp(-i fc t)
        real = window[..., 0] * kernel[..., 0] - window[..., 1] * kernel[..., 1]
        imag = window[..., 0] * kernel[..., 1] + window[..., 1] * kernel[..., 0]
        weights = fb.sqrt().unsqueeze(-1) * torch.stack([real, imag], dim=-1)  # (F, n, 2)
        return weights / in_features**0.5 if self.normalized else weights

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Real frames (..., n) -> (..., F, 2)."""
        w = self.weights(frames.shape[-1], frames)
        return torch.stack([F.linear(frames, w[..., 0]), F.linear(frames, w[..., 1])], dim=-1)


class Attention2d(nn.Module):
    """A gate for a stage's output from its input: max pool to the output's size, depthwise and pointwise
    convolutions, batch norm, sigmoid."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        padding = (kernel[0] // 2, kernel[1] // 2)
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, padding=padding, groups=c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, *size) in (0, 1)."""
        return torch.sigmoid(self.norm(self.pointwise(self.depthwise(F.adaptive_max_pool2d(x, size)))))


class Block(nn.Module):
    """ResNeXt bottleneck (torchvision's layout: the 3x3 grouped convolution strides), shortcut projected when the
    shape changes."""

    def __init__(self, c_in: int, planes: int, stride: int, groups: int, width_per_group: int) -> None:
        super().__init__()
        width = planes * width_per_group // 64 * groups
        self.reduce = nn.Conv2d(c_in, width, 1, bias=False)
        self.reduce_norm = nn.BatchNorm2d(width)
        self.spatial = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.spatial_norm = nn.BatchNorm2d(width)
        self.expand = nn.Conv2d(width, planes * EXPANSION, 1, bias=False)
        self.expand_norm = nn.BatchNorm2d(planes * EXPANSION)
        self.shortcut = None
        if stride != 1 or c_in != planes * EXPANSION:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, planes * EXPANSION, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes * EXPANSION))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.reduce_norm(self.reduce(x)))
        out = F.relu(self.spatial_norm(self.spatial(out)))  # (B, width, H / stride, W / stride)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.expand_norm(self.expand(out)) + identity)


# Each stage's gate kernel (frequency x time), and the final pool's.
GATE_KERNELS = ((3, 1), (1, 5), (3, 1), (1, 5))
POOL_GATE_KERNEL = (3, 5)


class ESResNeXt(nn.Module):
    """AudioCLIP's audio tower (module docstring): ``forward`` waveforms (B, L) -> (B, output_dim); ``spectrogram``
    gives the decibel input image (B, 3, F // 3, T)."""

    def __init__(self, cfg: ESResNeXtConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.win_length > cfg.n_fft:
            raise DataError(f"esresnext: win_length={cfg.win_length} is longer than n_fft={cfg.n_fft}")
        self.register_buffer("window", periodic_window(cfg.window, cfg.win_length).to(torch.get_default_dtype()))
        self.fbsp = LinearFBSP(cfg.n_fft // 2 + 1, cfg.normalized)
        self.stem = nn.Conv2d(BANDS, 64, 7, stride=2, padding=3, bias=False)
        self.stem_norm = nn.BatchNorm2d(64)
        stages, gates, c_in = [], [], 64
        for i, blocks in enumerate(cfg.layers):
            planes = 64 * 2**i
            stage = [Block(c_in, planes, 1 if i == 0 else 2, cfg.groups, cfg.width_per_group)]
            stage += [Block(planes * EXPANSION, planes, 1, cfg.groups, cfg.width_per_group) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            gates.append(Attention2d(c_in, planes * EXPANSION, GATE_KERNELS[i]))
            c_in = planes * EXPANSION
        self.stages, self.gates = nn.ModuleList(stages), nn.ModuleList(gates)
        self.pool_gate = Attention2d(c_in, c_in, POOL_GATE_KERNEL)
        self.out = nn.Linear(c_in, cfg.output_dim)

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, L) in [-1, 1] -> windowed frames (B, T, n_fft)."""
        length, hop, size = wave.shape[-1], self.cfg.hop_length, self.cfg.win_length
        count = 1 if length <= size else 1 + math.ceil((length - size) / hop)
        missing = max((count - 1) * hop + size - length, 0)
        wave = F.pad(wave, (missing // 2, missing - missing // 2))  # zeros on both sides to whole frames
        frames = wave.unfold(-1, size, hop)[:, :count] * self.window  # (B, T, win_length)
        extra = self.cfg.n_fft - size
        return F.pad(frames, (extra // 2, extra - extra // 2))  # (B, T, n_fft)

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, L) in the 16-bit range -> the decibel image (B, 3, F // 3, T)."""
        wave = (wave.to(self.window.dtype) + 32768.0) * 2.0 / 65535.0 - 1.0  # [-32768, 32767] -> [-1, 1]
        spec = self.fbsp(self.frames(wave)).transpose(1, 2)  # (B, T, F, 2) -> (B, F, T, 2)
        band = spec.shape[1] // BANDS
        power = spec[:, : BANDS * band].pow(2).sum(dim=-1)  # (B, 3 * band, T)
        power = torch.where(power > 0, power, torch.full_like(power, LOG_FLOOR))
        return 10.0 * torch.log10(power.view(power.shape[0], BANDS, band, power.shape[-1]))  # (B, 3, band, T)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The decibel image (B, 3, H, W) -> the gated final grid (B, 2048, H / 32, W / 32)."""
        x = F.max_pool2d(F.relu(self.stem_norm(self.stem(image))), 3, stride=2, padding=1)  # (B, 64, H / 4, W / 4)
        for stage, gate in zip(self.stages, self.gates, strict=True):
            out = stage(x)
            x = out * gate(x, out.shape[-2:])
        return x

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        grid = self.features(self.spectrogram(wave))
        pooled = F.adaptive_avg_pool2d(grid, 1) * self.pool_gate(grid, (1, 1))  # (B, C, 1, 1)
        return self.out(pooled.flatten(1))  # (B, output_dim)


# AudioCLIP's names (below ``audio.``) -> ours.
_STAGE_PARTS = {"conv1": "reduce", "bn1": "reduce_norm", "conv2": "spatial", "bn2": "spatial_norm",
                "conv3": "expand", "bn3": "expand_norm"}  # fmt: skip
_GATE_PARTS = {"conv_depth": "depthwise", "conv_point": "pointwise", "bn": "norm"}
_RENAMES = [
    (re.compile(r"^conv1\.(.+)$"), lambda m: f"stem.{m[1]}"),
    (re.compile(r"^bn1\.(.+)$"), lambda m: f"stem_norm.{m[1]}"),
    (re.compile(r"^layer(\d)\.(\d+)\.(conv[123]|bn[123])\.(.+)$"),
     lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.{_STAGE_PARTS[m[3]]}.{m[4]}"),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$"),
     lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}.{m[4]}"),
    (re.compile(r"^att([1234])\.(conv_depth|conv_point|bn)\.(.+)$"),
     lambda m: f"gates.{int(m[1]) - 1}.{_GATE_PARTS[m[2]]}.{m[3]}"),
    (re.compile(r"^att5\.(conv_depth|conv_point|bn)\.(.+)$"), lambda m: f"pool_gate.{_GATE_PARTS[m[1]]}.{m[2]}"),
    (re.compile(r"^fc\.(weight|bias)$"), lambda m: f"out.{m[1]}"),
    (re.compile(r"^fbsp\.(m|fb|fc)$"), lambda m: f"fbsp.{m[1]}"),
    (re.compile(r"^window$"), lambda m: "window"),
]  # fmt: skip


def convert_esresnext_state_dict(state: dict[str, torch.Tensor], prefix: str = "audio.") -> dict[str, torch.Tensor]:
    """An AudioCLIP checkpoint's audio tower (its keys under ``prefix``; the image and text towers, anything else and
    the FBSP layer's empty bias left out) in ``ESResNeXt``'s names. A key under ``prefix`` that is not part of the
    tower is a one-line ``DataError``."""
    return rename_tower(state, prefix, _RENAMES, "AudioCLIP's ESResNeXt-fbsp", skip=("fbsp.bias",))

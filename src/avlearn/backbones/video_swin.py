"""Video Swin Transformer, the vision tower of VALOR-B, in plain PyTorch (``transformers`` has none).

Paper: Liu et al., "Video Swin Transformer", CVPR 2022 (arXiv:2106.13230). As VALOR uses it (seed
``model/videoswin.py``, spec ``valor.md`` section 2.2): a (2, 4, 4) patch embedding whose temporal stride is 1, one
zero frame padded at the end, so T frames give T temporal tokens; four stages of pre-norm 3-D shifted-window blocks
(window (8, 7, 7), clipped to the token grid where the grid is not larger, with no shift along a clipped axis) with a
learned 3-D relative position bias; patch merging (2 x 2 spatial tokens -> 1, width doubled) after stages 1-3;
a final LayerNorm. Swin-B: width 128, depths 2-2-18-2, heads 4-8-16-32, drop path 0.2 (88 M parameters).

Weights: ``pretrained=`` a folder with ``config.json`` and ``model.safetensors``, written by ``avlearn convert
video_swin`` (the official Kinetics ``.pth``: ``backbone.*`` keys, ``cls_head`` dropped) or taken from a VALOR-B
checkpoint (``avlearn.convert.convert_valor_state_dict``).
Differs: where the window is clipped along H or W (inputs under 193 px), the seed reads the first N x N entries of
the full window's relative-position index, which belong to other offsets; here the bias table is indexed by the
clipped window's own offsets. Clipping along time only (VALOR's 224 px input) gives the same index on both sides.
Tokens are ordered (time, height, width); ``forward_frames`` gives them per frame ``(B, T, h*w, C)``, as VALOR
permutes the seed's output. Pooled: the token mean.
Stage loop: every block runs on ``hidden.grid`` ``(T, h, w)``; ``end_stage`` is the patch merging.
Parity: ``tests/reference/test_video_swin_parity.py`` (the seed's ``SwinTransformer3D``, converted random weights).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.base import Backbone, Hidden, WeightsNotFoundError
from avlearn.backbones.droppath import drop_path
from avlearn.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from avlearn.errors import ConfigError
from avlearn.registry import BACKBONES

Grid = tuple[int, int, int]  # (T, H, W) token grid
PATCH = (2, 4, 4)  # kernel of the patch embedding (time, height, width); stride (1, 4, 4)
MASKED = -100.0  # attention logit added between tokens of different regions of a shifted window (Swin's value)


@dataclass(frozen=True)
class VideoSwinConfig:
    """The architecture (``config.json`` of a weight folder); ``image_size`` and ``num_frames`` are the input the
    preprocessing and ``dummy_inputs`` produce (the network takes any)."""

    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window: tuple[int, int, int] = (8, 7, 7)
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    image_size: int = 224
    num_frames: int = 4

    def __post_init__(self) -> None:
        for key in ("depths", "num_heads", "window"):  # lists from yaml or json -> tuples (hashable)
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if len(self.depths) != len(self.num_heads) or len(self.window) != 3:
            raise ConfigError(f"video_swin: depths {self.depths} and num_heads {self.num_heads} must have one entry "
                              f"per stage and window {self.window} three (T, H, W)")  # fmt: skip
        widths = [self.embed_dim * 2**i for i in range(len(self.depths))]
        if any(w % h for w, h in zip(widths, self.num_heads, strict=True)):
            raise ConfigError(f"video_swin: stage widths {widths} must be multiples of num_heads {self.num_heads}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"video_swin: drop_path={self.drop_path}: expected a rate in [0, 1)")


def _windows(x: torch.Tensor, window: Grid) -> torch.Tensor:
    """(B, D, H, W, C), each of D, H, W a multiple of the window -> (B * nW, N, C) with N = wd*wh*ww; windows in
    (time, height, width) order."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)  # (B, D/wd, wd, H/wh, wh, W/ww, ww, C)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)  # (B * nW, N, C)


def _unwindows(windows: torch.Tensor, window: Grid, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """The inverse of ``_windows``: (B * nW, N, C) -> (B, D, H, W, C) for ``shape`` (B, D, H, W)."""
    b, d, h, w = shape
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, -1)  # (B, D/wd, H/wh, W/ww, wd, wh, ww, C)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)  # (B, D, H, W, C)


def window_and_shift(grid: Grid, window: Grid) -> tuple[Grid, Grid]:
    """The window a stage uses on ``grid`` (clipped to the grid where the grid is not larger) and its shift (half
    the configured window; 0 along a clipped axis)."""
    used = tuple(min(g, w) for g, w in zip(grid, window, strict=True))
    shift = tuple(0 if g <= w else w // 2 for g, w in zip(grid, window, strict=True))
    return used, shift


@lru_cache(maxsize=64)
def relative_position_index(window: Grid, table_window: Grid, device: torch.device) -> torch.Tensor:
    """``(N, N)`` rows of the bias table of a ``table_window`` for every pair of tokens of a ``window`` (at most as
    large): the table holds one row per relative offset (dt, dh, dw), offsets made non-negative, row-major."""
    axes = [torch.arange(s, device=device) for s in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1)  # (3, N)
    offsets = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    offsets = offsets + torch.tensor([s - 1 for s in table_window], device=device)[:, None, None]
    _, span_h, span_w = (2 * s - 1 for s in table_window)
    return (offsets[0] * span_h + offsets[1]) * span_w + offsets[2]  # (N, N)


@lru_cache(maxsize=64)
def shift_mask(padded: Grid, window: Grid, shift: Grid, device: torch.device) -> torch.Tensor:
    """``(nW, N, N)`` logits added in the windows of a shifted block on the ``padded`` grid: 0 between tokens of
    the same region (tokens that were neighbours before the cyclic shift), ``MASKED`` otherwise."""
    labels = torch.zeros(padded, device=device)
    for axis, (size, w, s) in enumerate(zip(padded, window, shift, strict=True)):
        index = torch.arange(size, device=device)
        region = (index >= size - w).long() + (index >= size - s).long() if s else torch.zeros_like(index)  # 0, 1, 2
        shape = [1, 1, 1]
        shape[axis] = size
        labels = labels * 3 + region.view(shape)  # (D, H, W): one label per region of the three axes
    labels = _windows(labels[None, ..., None], window).squeeze(-1)  # (nW, N)
    return torch.where(labels[:, :, None] == labels[:, None, :], 0.0, MASKED)  # (nW, N, N)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside each window, with the learned relative position bias (one row per relative
    offset of the configured window, one column per head)."""

    def __init__(self, dim: int, heads: int, window: Grid) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.position_bias = nn.Parameter(nn.init.trunc_normal_(torch.empty(rows, heads), std=0.02))

    def forward(self, x: torch.Tensor, batch: int, window: Grid, mask: torch.Tensor | None) -> torch.Tensor:
        """``x (B * nW, N, C)`` windows of ``batch`` clips, ``window`` their size, ``mask (nW, N, N)`` or None."""
        n = x.shape[1]
        qkv = self.qkv(x).view(batch, -1, n, 3, self.heads, x.shape[-1] // self.heads)  # (B, nW, N, 3, h, C/h)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (B, nW, h, N, C/h)
        index = relative_position_index(window, self.window, x.device)  # (N, N)
        bias = self.position_bias[index].permute(2, 0, 1)  # (h, N, N)
        bias = bias if mask is None else bias + mask[:, None]  # (h, N, N) or (nW, h, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # (B, nW, h, N, C/h)
        return self.proj(out.transpose(2, 3).flatten(3).flatten(0, 1))  # (B * nW, N, C)


class Block3D(nn.Module):
    """A pre-norm Swin block on a ``(B, D, H, W, C)`` volume: (shifted) window attention, then an MLP, each a
    residual branch with drop path."""

    def __init__(self, dim: int, heads: int, window: Grid, shifted: bool, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.shifted, self.drop_path = shifted, drop_path
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, heads, window)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> the same shape."""
        x = x + self._dropped(self._attend(self.norm1(x)))
        return x + self._dropped(self.mlp(self.norm2(x)))

    def _dropped(self, branch: torch.Tensor) -> torch.Tensor:
        """Drop path (:func:`avlearn.backbones.droppath.drop_path`) of a ``(B, D, H, W, C)`` residual branch."""
        return drop_path(branch, self.drop_path, self.training)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Window attention on the normalised volume: zero-padded to whole windows, rolled back by the shift in a
        shifted block (masked across the wrapped-around regions), then un-rolled and cropped."""
        b, d, h, w, _ = x.shape
        window, shift = window_and_shift((d, h, w), self.attn.window)
        shift = shift if self.shifted else (0, 0, 0)
        pad = [(-size) % size_w for size, size_w in zip((d, h, w), window, strict=True)]
        x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))  # (B, Dp, Hp, Wp, C)
        padded = tuple(x.shape[1:4])
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            mask = shift_mask(padded, window, shift, x.device)
        out = _unwindows(self.attn(_windows(x, window), b, window, mask), window, (b, *padded))  # (B, Dp, Hp, Wp, C)
        if any(shift):
            out = torch.roll(out, shifts=shift, dims=(1, 2, 3))
        return out[:, :d, :h, :w]


class PatchMerging3D(nn.Module):
    """2 x 2 neighbouring tokens of every frame -> one token of twice the width (LayerNorm, then a bias-free
    linear map); an odd height or width is zero-padded first."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> ``(B, D, ceil(H/2), ceil(W/2), 2C)``."""
        h, w = x.shape[2:4]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # (B, D, H + H%2, W + W%2, C)
        parts = [x[:, :, i::2, j::2] for j in (0, 1) for i in (0, 1)]  # the seed's order: (0,0), (1,0), (0,1), (1,1)
        return self.reduction(self.norm(torch.cat(parts, dim=-1)))  # (B, D, H/2, W/2, 4C) -> (..., 2C)


class PatchEmbed3D(nn.Module):
    """Frames -> tokens: height and width zero-padded to multiples of 4, one zero frame appended, a (2, 4, 4)
    convolution at stride (1, 4, 4) (T frames -> T temporal tokens), LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(3, dim, kernel_size=PATCH, stride=(1, *PATCH[1:]))
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, T, H/4, W/4, C)``."""
        x = pixel_values.transpose(1, 2)  # (B, 3, T, H, W)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % PATCH[2], 0, (-h) % PATCH[1], 0, 1))  # (B, 3, T + 1, H', W')
        x = self.proj(x)  # (B, C, T, H'/4, W'/4)
        return self.norm(x.permute(0, 2, 3, 4, 1))  # (B, T, h, w, C)


class Stage(nn.Module):
    """The blocks of one stage (every second one shifted) and the patch merging that ends it (None in the last)."""

    def __init__(self, cfg: VideoSwinConfig, i: int, drop_paths: Sequence[float]) -> None:
        super().__init__()
        dim, last = cfg.embed_dim * 2**i, i == len(cfg.depths) - 1
        self.blocks = nn.ModuleList(
            Block3D(dim, cfg.num_heads[i], cfg.window, j % 2 == 1, cfg.mlp_ratio, rate)
            for j, rate in enumerate(drop_paths)
        )
        self.downsample = None if last else PatchMerging3D(dim)


class VideoSwinModel(nn.Module):
    """The network: patch embedding, stages, final LayerNorm; ``save_pretrained`` / ``from_folder`` for weight
    folders (``config.json`` + ``model.safetensors``)."""

    def __init__(self, cfg: VideoSwinConfig) -> None:
        super().__init__()
        self.config = cfg
        n = sum(cfg.depths)
        rates = [cfg.drop_path * k / max(n - 1, 1) for k in range(n)]  # drop path rising block by block, 0 to max
        starts = [sum(cfg.depths[:i]) for i in range(len(cfg.depths) + 1)]
        self.patch_embed = PatchEmbed3D(cfg.embed_dim)
        self.stages = nn.ModuleList(Stage(cfg, i, rates[starts[i] : starts[i + 1]]) for i in range(len(cfg.depths)))
        self.num_features = cfg.embed_dim * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)

    def save_pretrained(self, folder: str) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created if needed)."""
        from safetensors.torch import save_file

        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))

    def load_folder(self, folder: str) -> None:
        """Load a folder written by ``save_pretrained``; its architecture must be this model's, every tensor there.

        Raises:
            WeightsNotFoundError: no such folder, another architecture, or missing / unexpected / mis-shaped tensors.
        """
        from safetensors.torch import load_file

        path = Path(folder).expanduser()
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise WeightsNotFoundError(f"pretrained={folder}: expected a folder with config.json and model.safetensors "
                                       f"(avlearn convert video_swin <file.pth> <folder>)")  # fmt: skip
        saved = json.loads((path / "config.json").read_text(encoding="utf-8"))
        arch = {k: v for k, v in asdict(self.config).items() if k not in ("drop_path", "image_size", "num_frames")}
        wrong = {k: saved.get(k) for k, v in arch.items() if _as_tuple(saved.get(k)) != _as_tuple(v)}
        if wrong:
            raise WeightsNotFoundError(f"pretrained={folder}: a different Video Swin ({wrong}); expected {arch}")
        state, own = load_file(str(path / "model.safetensors")), self.state_dict()
        bad = sorted(set(state) ^ set(own)) + [k for k in state if k in own and state[k].shape != own[k].shape]
        if bad:
            raise WeightsNotFoundError(f"pretrained={folder}: {len(bad)} tensors missing, unexpected or mis-shaped, "
                                       f"e.g. {bad[:3]}")  # fmt: skip
        self.load_state_dict(state)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


class VideoSwin(Backbone):
    """Video Swin: ``pixel_values (B, T, 3, H, W)`` -> tokens ``(B, T * H/32 * W/32, C)`` ordered (time, height,
    width); pooled: token mean.

    Args:
        cfg: The architecture and input size.
        pretrained: ``None`` (random init) or a folder written by ``avlearn convert video_swin``.
    """

    def __init__(self, cfg: VideoSwinConfig, pretrained: str | None = None) -> None:
        model = VideoSwinModel(cfg)
        if pretrained is not None:
            model.load_folder(pretrained)
        size = (cfg.image_size, cfg.image_size)
        preprocess = ImagePreprocess(size, IMAGENET_MEAN, IMAGENET_STD, "exact", "bilinear", cfg.num_frames)
        super().__init__(model, "video", model.num_features, preprocess)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, N, C)``, N = T * ceil(H/32) * ceil(W/32)."""
        return self.forward_stages(pixel_values=pixel_values)

    def forward_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> every frame's tokens ``(B, T, h*w, C)`` (VALOR's layout)."""
        return self.forward_features(pixel_values).unflatten(1, (pixel_values.shape[1], -1))  # (B, T, h*w, C)

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean over tokens ``(B, C)``."""
        return tokens.mean(dim=1)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ``pixel_values`` ``(B, T, 3, H, W)``."""
        shape = (batch_size, self.preprocess.num_frames, 3, *self.preprocess.size)
        return {"pixel_values": torch.randn(*shape, device=self._device())}

    def embed(self, pixel_values: torch.Tensor) -> Hidden:
        """Patch embedding -> tokens ``(B, T*h*w, C)`` and their grid ``(T, h, w)``."""
        x = self.model.patch_embed(pixel_values)  # (B, T, h, w, C)
        return Hidden(x.flatten(1, 3), tuple(x.shape[1:4]))  # (B, T*h*w, C)

    def stage_blocks(self, i: int) -> Sequence[nn.Module]:
        """The ``Block3D`` blocks of stage ``i``."""
        return self.model.stages[i].blocks

    def run_block(self, i: int, j: int, hidden: Hidden) -> Hidden:
        """One (shifted) window block on the ``(T, h, w)`` grid."""
        volume = hidden.tokens.unflatten(1, hidden.grid)  # (B, T*h*w, C) -> (B, T, h, w, C)
        tokens = self.stage_blocks(i)[j](volume).flatten(1, 3)  # (B, T*h*w, C)
        return Hidden(tokens, hidden.grid, hidden.attention_mask, hidden.extra)

    def end_stage(self, i: int, hidden: Hidden) -> Hidden:
        """Patch merging (stages 1 to 3): 2 x 2 tokens -> 1, width doubled."""
        merge = self.model.stages[i].downsample
        if merge is None:
            return hidden
        x = merge(hidden.tokens.unflatten(1, hidden.grid))  # (B, T, h, w, C) -> (B, T, h/2, w/2, 2C)
        return Hidden(x.flatten(1, 3), tuple(x.shape[1:4]), hidden.attention_mask, hidden.extra)  # (B, T*h*w/4, 2C)

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm."""
        return self.model.norm(hidden.tokens)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.model.norm]

    def _layers(self) -> nn.ModuleList:
        return self.model.stages


def _config(values: dict[str, Any]) -> VideoSwinConfig:
    """``VideoSwinConfig(**values)``; a field it does not have is a one-line error, not a TypeError."""
    known = [f.name for f in fields(VideoSwinConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"video_swin: unknown fields {', '.join(unknown)}; expected some of {', '.join(known)}")
    return VideoSwinConfig(**values)


@BACKBONES.register("video_swin_b")
def video_swin_b(pretrained: str | None = None, **overrides: Any) -> VideoSwin:
    """Video Swin-B as VALOR-B's vision tower: width 128, depths 2-2-18-2, heads 4-8-16-32, window (8, 7, 7),
    drop path 0.2, 4 frames of 224 px (88 M); weights: ``avlearn convert video_swin`` of
    ``swin_base_patch244_window877_kinetics600_22k.pth``, or a converted VALOR-B checkpoint."""
    return VideoSwin(_config(overrides), pretrained)


@BACKBONES.register("video_swin_tiny")
def video_swin_tiny(pretrained: str | None = None, size: int = 32, **overrides: Any) -> VideoSwin:
    """Test-size Video Swin: 4 frames of ``size`` px (default 32), width 16, depths 1-2-1-2, heads 1-2-2-4, window
    (2, 2, 2), no drop path (random init, CPU-fast)."""
    base = {"embed_dim": 16, "depths": (1, 2, 1, 2), "num_heads": (1, 2, 2, 4), "window": (2, 2, 2),
            "drop_path": 0.0, "image_size": size}  # fmt: skip
    return VideoSwin(_config({**base, **overrides}), pretrained)

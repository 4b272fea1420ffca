"""Backbone features per one-second segment of each clip: the model side of ``avlearn extract --features``.

A clip is cut into ``S`` one-second segments from ``start``. For segment ``s`` the visual backbone sees the frame
nearest to the segment's centre (a video backbone: its ``preprocess.num_frames`` frames spread evenly over the
segment), through the backbone's own ``preprocess``; the audio backbone sees that segment's waveform, turned into its
input by the backbone's front end (``inputs_from_wave``: AST's Kaldi fbank, CLAP / HTS-AT log-mel) or, for avlearn's
CNNs, the normalised log-mel of the whole clip cut into ``S`` pieces (``avlearn.data.segments.segment_log_mel``, the
input the demo trains them on). Each clip's inputs are made on their own, so a feature does not depend on which clips
share its batch; then a batch of clips goes through each backbone under ``torch.inference_mode`` and every clip gets
the pooled embedding ``(S, C)`` (default) or the tokens ``(S, N, C)``, as float32 or float16.

Per-second features are the unit of the AVE benchmark's released features (Tian et al., ECCV 2018: VGG-19 maps of
each second's frames, a VGGish embedding of its audio). What differs here: any visual, video or audio backbone of
the zoo can be used, and an image backbone sees one frame per second, at the segment's centre (as
``avlearn.data.segments`` decodes for the demo), not an average over several frames. What a store records
(``FeatureExtractor.settings``): the segments and output, the decoding settings, and per backbone its name, the
weights' source, a fingerprint of its weights and its preprocess settings. ``avlearn.data.store`` refuses to
continue a store, or to read it for a caller that expects other values. A backbone without ``pretrained`` weights is
built under a fixed seed, so that a resumed run has the same random weights (the fingerprint checks it).
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from avlearn.errors import ConfigError

if TYPE_CHECKING:
    from avlearn.backbones import Backbone
    from avlearn.io import Clip

SEED = 0  # random-init backbones are built under this seed
DTYPES = {"float32": torch.float32, "float16": torch.float16}
_SLOTS = {"visual": ("visual", "video"), "audio": ("audio",)}  # backbone modalities each slot takes


@dataclass(frozen=True)
class FeatureSpec:
    """Which backbones to run and on what: the settings of a feature store.

    Attributes:
        visual: a registered visual (one frame per segment) or video backbone, or None.
        audio: a registered audio backbone, or None. At least one of the two.
        visual_pretrained: its weights (a local folder or a Hugging Face id in the local cache); None: random init.
        audio_pretrained: the same for the audio backbone.
        segments: one-second segments ``S`` per clip, from ``start``.
        tokens: store tokens ``(S, N, C)`` instead of the pooled embedding ``(S, C)``.
        dtype: ``"float32"`` or ``"float16"``, the stored precision (the backbones run in float32).
        size: frames are decoded at this size (as ``read_clip``), then resized by the backbone's preprocess;
            None: the decoded size (what the backbone's preprocess expects; a smaller size decodes faster).
        start: seconds into each file where the first segment starts.
        missing_audio: ``read_clip``'s policy for files without audio (always ``"silence"`` without an audio
            backbone).
        short: ``read_clip``'s policy for files shorter than ``start + segments`` seconds.
    """

    visual: str | None = None
    audio: str | None = None
    visual_pretrained: str | None = None
    audio_pretrained: str | None = None
    segments: int = 10
    tokens: bool = False
    dtype: str = "float32"
    size: int | tuple[int, int] | None = None
    start: float = 0.0
    missing_audio: str = "error"
    short: str = "error"


def build_backbone(name: str, pretrained: str | None = None) -> Backbone:
    """The registered backbone ``name`` in eval mode without gradients; random init under ``SEED`` if no weights.

    Raises:
        ConfigError: unknown name, or ``pretrained`` given to a backbone that takes no weights.
        WeightsNotFoundError: the weights are not on this machine or do not fit.
    """
    import avlearn.backbones  # noqa: F401 - registers the zoo
    from avlearn.registry import BACKBONES

    builder = BACKBONES.get(name)
    kwargs = {}
    if pretrained is not None:
        if "pretrained" not in inspect.signature(builder).parameters:
            raise ConfigError(f"backbone {name!r} takes no pretrained weights (it is always built at random)")
        kwargs["pretrained"] = pretrained
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = builder(**kwargs)
    return model.eval().requires_grad_(False)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of every tensor in ``model.state_dict()`` (names, dtypes, shapes and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)  # (numel,)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return "blake2b:" + digest.hexdigest()


def _source(pretrained: str | None) -> str | None:
    """Folders as absolute paths (the same weights from another working folder); ids as given."""
    if pretrained is None:
        return None
    path = Path(pretrained).expanduser()
    return str(path.resolve()) if path.exists() else pretrained


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine; use cpu")
    return device


class FeatureExtractor:
    """The backbones of a ``FeatureSpec`` on ``device``: decoding arguments, store settings, clips -> features.

    Args:
        spec: what to compute.
        device: where the backbones run.

    Raises:
        ConfigError: a bad spec, a backbone in the wrong slot (``visual=`` an audio backbone), or an audio backbone
            without a waveform front end.
    """

    def __init__(self, spec: FeatureSpec, device: str = "cpu") -> None:
        _check_spec(spec)
        self.spec, self.device = spec, _device(device)
        self.backbones: dict[str, Backbone] = {}
        self._records: dict[str, dict[str, Any]] = {}
        for slot, name, pretrained in _slots(spec):
            if name is not None:
                backbone = build_backbone(name, pretrained)
                _check_slot(slot, name, backbone)
                self._records[slot] = {
                    "backbone": name,
                    "pretrained": _source(pretrained),
                    "weights": weights_fingerprint(backbone),
                    "num_features": backbone.num_features,
                    "preprocess": backbone.preprocess.to_dict(),
                }
                self.backbones[slot] = backbone.to(self.device)

    @property
    def frames_per_segment(self) -> int:
        """1 for an image backbone; ``preprocess.num_frames`` for a video backbone (0 without a visual one)."""
        visual = self.backbones.get("visual")
        return 0 if visual is None else (visual.preprocess.num_frames or 1)

    @property
    def sample_rate(self) -> int:
        """The audio backbone's rate (clips are decoded at it), or 16 kHz when there is none."""
        audio = self.backbones.get("audio")
        return 16000 if audio is None else audio.preprocess.sample_rate

    def read_args(self) -> dict[str, Any]:
        """``read_clip`` arguments: the segments' frame times, the window, size, rate and policies."""
        spec, per = self.spec, max(1, self.frames_per_segment)
        times = spec.start + (np.arange(spec.segments * per) + 0.5) / per  # (S * T,) T frames evenly in each second
        return {
            "timestamps": times.tolist(),
            "size": spec.size,
            "sample_rate": self.sample_rate,
            "duration": float(spec.segments),
            "start": spec.start,
            "missing_audio": spec.missing_audio if "audio" in self.backbones else "silence",
            "short": spec.short,
        }

    def settings(self) -> dict[str, Any]:
        """What the store's index records, and what a reader compares: output, decoding and each backbone."""
        decode = {k: v for k, v in self.read_args().items() if k != "timestamps"}
        decode["frames_per_segment"] = self.frames_per_segment
        output = "tokens" if self.spec.tokens else "pooled"
        return {
            "segments": self.spec.segments,
            "output": output,
            "dtype": self.spec.dtype,
            "decode": decode,
            **self._records,
        }

    def encode(self, clips: list[Clip]) -> list[dict[str, np.ndarray]]:
        """Features of each clip: ``{"visual": ..., "audio": ...}`` arrays ``(S, C)`` pooled or ``(S, N, C)`` tokens."""
        out: list[dict[str, np.ndarray]] = [{} for _ in clips]
        with torch.inference_mode():
            for slot, backbone in self.backbones.items():
                per_clip = [self._inputs(slot, backbone, clip) for clip in clips]
                inputs = {name: torch.cat([x[name] for x in per_clip]) for name in per_clip[0]}  # (B * S, ...)
                features = backbone.forward_features(**inputs)  # (B * S, N, C)
                if not self.spec.tokens:
                    features = backbone.pool(features, **inputs)  # (B * S, C)
                features = features.to(DTYPES[self.spec.dtype]).cpu()
                for item, array in zip(out, features.unflatten(0, (len(clips), -1)).numpy(), strict=True):
                    item[slot] = array  # (S, C) or (S, N, C)
        return out

    def _inputs(self, slot: str, backbone: Backbone, clip: Clip) -> dict[str, torch.Tensor]:
        """One clip's inputs, ``S`` items each."""
        segments = self.spec.segments
        if slot == "visual":
            frames = torch.from_numpy(clip.frames).to(self.device)  # (S * T, H, W, 3) uint8
            if backbone.modality == "video":
                frames = frames.unflatten(0, (segments, -1))  # (S, T, H, W, 3)
            return {"pixel_values": backbone.preprocess(frames)}  # (S, 3, h, w) or (S, T, 3, h, w)
        wave = torch.from_numpy(clip.wave).to(self.device)  # (S * rate,) float32
        if hasattr(backbone, "inputs_from_wave"):
            return backbone.inputs_from_wave(wave.unflatten(0, (segments, -1)), clip.sample_rate)  # from (S, rate)
        from avlearn.data.segments import segment_log_mel

        return {"input_features": segment_log_mel(wave, segments, backbone.preprocess)}  # (S, F, T)


def _slots(spec: FeatureSpec) -> list[tuple[str, str | None, str | None]]:
    """(slot, backbone name, pretrained source) for the visual and the audio slot."""
    return [("visual", spec.visual, spec.visual_pretrained), ("audio", spec.audio, spec.audio_pretrained)]


def _check_spec(spec: FeatureSpec) -> None:
    if spec.visual is None and spec.audio is None:
        raise ConfigError("features: name a visual and/or an audio backbone (visual=NAME, audio=NAME)")
    for slot, name, pretrained in _slots(spec):
        if name is None and pretrained is not None:
            raise ConfigError(f"features: pretrained weights for {slot}= ({pretrained}) but no {slot} backbone")
    if spec.segments < 1:
        raise ConfigError(f"features: segments must be >= 1, got {spec.segments}")
    if spec.dtype not in DTYPES:
        raise ConfigError(f"features: dtype {spec.dtype!r} is not one of {', '.join(DTYPES)}")


def _check_slot(slot: str, name: str, backbone: Backbone) -> None:
    from avlearn.backbones.cnn import CNNBackbone

    if backbone.modality not in _SLOTS[slot]:
        expected = " or ".join(_SLOTS[slot])
        raise ConfigError(f"features: {slot}={name} is a backbone for {backbone.modality}; {slot}= takes {expected}")
    if slot == "audio" and not (hasattr(backbone, "inputs_from_wave") or isinstance(backbone, CNNBackbone)):
        raise ConfigError(f"features: audio={name} has no waveform front end (inputs_from_wave) to extract from")

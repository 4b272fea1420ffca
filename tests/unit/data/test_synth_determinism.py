"""AVSynth's media are a function of the seed: the same frames encode to the same bytes whatever ran before."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import avlearn.io.write
from avlearn.data.synth import SynthConfig, clip_id
from avlearn.data.synth.classes import class_table
from avlearn.data.synth.render import render_frame
from avlearn.data.synth.scene import FLAVOURS, sample_scene
from avlearn.io import read_clip, write_video


def _frames(cfg: SynthConfig, index: int, flavour: str = "events") -> np.ndarray:
    """(T, H, W, 3) uint8: clip ``index`` of ``flavour`` (events or avqa) as AVSynth renders it."""
    rng = np.random.default_rng([cfg.seed, FLAVOURS.index(flavour), index])
    scene = sample_scene(flavour, clip_id(flavour, index), rng, cfg.seconds, cfg.num_classes, index)
    classes = class_table(cfg.num_classes)
    return np.stack([render_frame(scene, classes, t, cfg.size) for t in np.arange(cfg.seconds * cfg.fps) / cfg.fps])


def test_the_same_frames_encode_to_the_same_bytes_whatever_the_heap_holds(tmp_path: Path) -> None:
    """Encoding once depended on the process's history (x264 given RGB frames that PyAV converted): the same clip
    gave 2-3 different files over 15 encodes, so AVSynth of one seed differed between ``workers=1`` and ``2``."""
    cfg = SynthConfig(seed=3, num_classes=5, size=32, seconds=10, fps=2)
    clips = [_frames(cfg, i) for i in range(6)]
    churn, held = np.random.default_rng(0), []
    digests: list[set[str]] = [set() for _ in clips]
    for _ in range(6):
        for i, frames in enumerate(clips):
            held.append(bytearray(churn.bytes(int(churn.integers(1, 20000)))))  # reshape the heap between encodes
            if len(held) > 50:
                held.pop(int(churn.integers(50)))
            write_video(tmp_path / "clip.mp4", frames, cfg.fps)
            digests[i].add(hashlib.md5((tmp_path / "clip.mp4").read_bytes()).hexdigest())
    assert [len(d) for d in digests] == [1] * len(clips)
    decoded = read_clip(tmp_path / "clip.mp4", missing_audio="silence").frames  # the last clip, as written
    assert decoded.shape == clips[-1].shape and np.abs(decoded.astype(int) - clips[-1]).mean() < 6  # crf 18: close


def _md5_of_encoding(path: Path, frames: np.ndarray, fps: int) -> str:
    write_video(path, frames, fps)
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_on_an_avx512_cpu_x264_runs_its_avx2_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With its AVX-512 code x264 encoded the same frames to different bytes in different processes (11 of 1000
    AVSynth AVQA videos between two generations), so ``write_video`` caps it at AVX2 there. AVQA clip 24 (seed 0,
    32 px) is one whose AVX-512 and AVX2 encodings differ, so this fails without the cap."""
    if not avlearn.io.write.x264_cpu_cap():
        pytest.skip("no AVX-512 here: x264 picks AVX2 at most by itself")
    frames = _frames(SynthConfig(seed=0, size=32), 24, "avqa")
    written = _md5_of_encoding(tmp_path / "clip.mp4", frames, 4)
    encodings = {}
    for asm in ("AVX2", "AVX512"):
        monkeypatch.setattr(avlearn.io.write, "x264_cpu_cap", lambda asm=asm: {"x264-params": f"asm={asm}"})
        encodings[asm] = _md5_of_encoding(tmp_path / f"{asm}.mp4", frames, 4)
    assert encodings["AVX2"] != encodings["AVX512"]  # the clip tells the two apart
    assert written == encodings["AVX2"]

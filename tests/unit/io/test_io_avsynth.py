"""A real-file round trip: an AVSynth mp4 decodes to the frames and the audio AVSynth rendered.

AVSBench-style clips ship lossless copies next to the mp4 (a PNG per second, rendered at t = k + 0.5 s, and a
16-bit wav), which serve as the reference without re-rendering anything here.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from io_media import best_lag, correlation

from avlearn.io import read_clip


@pytest.fixture(scope="module")
def avsynth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from avlearn.data.synth import SynthConfig, generate

    return generate(tmp_path_factory.mktemp("avsynth") / "synth", SynthConfig(clips=4, size=64, seconds=5), workers=1)


def _reference(root: Path, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
    pngs = sorted(root.glob(f"AVSBench/*/*/visual_frames/**/{clip_id}_*.png"))
    from PIL import Image

    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pngs])  # (5, H, W, 3)
    (wav_path,) = root.glob(f"AVSBench/*/*/audio_wav/**/{clip_id}.wav")
    with wave.open(str(wav_path)) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    return frames, audio


def test_avsynth_mp4_decodes_to_what_was_rendered(avsynth: Path) -> None:
    reference_frames, reference_audio = _reference(avsynth, "s4000000")
    clip = read_clip(avsynth / "videos" / "s4000000.mp4", timestamps=np.arange(5) + 0.5)
    assert clip.frames.shape == reference_frames.shape == (5, 64, 64, 3)
    errors = ((clip.frames[:, None].astype(float) - reference_frames[None]) ** 2).mean(axis=(2, 3, 4))  # (5, 5) MSE
    np.testing.assert_array_equal(errors.argmin(axis=1), np.arange(5))  # each decoded frame is its own second
    assert (10 * np.log10(255**2 / np.diag(errors))).min() > 28  # PSNR in dB: H.264 at crf 18
    assert clip.wave.shape == reference_audio.shape == (80000,)
    assert correlation(clip.wave, reference_audio) >= 0.99 and best_lag(clip.wave, reference_audio) == 0


def test_dropping_unneeded_frames_changes_nothing(avsynth: Path) -> None:
    # threads=1 lets the decoder drop non-reference frames far from the requested times; threads=2 decodes all
    path = avsynth / "videos" / "ev000000.mp4"
    times = [0.0, 0.3, 0.31, 1.7, 2.2, 4.9]
    dropping, full = read_clip(path, timestamps=times, threads=1), read_clip(path, timestamps=times, threads=2)
    np.testing.assert_array_equal(dropping.frames, full.frames)
    np.testing.assert_array_equal(dropping.wave, full.wave)


def test_a_dropped_frame_nearer_than_the_chosen_one_spoils_the_result() -> None:
    from types import SimpleNamespace

    from avlearn.io.frames import NonRefSkipper

    skipper = NonRefSkipper(np.array([1.0]), step=0.1, time_base=0.5, origin=0.0)
    assert not skipper.may_skip(2) and skipper.may_skip(6)  # 1.0 s is near the target; 3.0 s is not
    picker = SimpleNamespace(times=np.array([1.0]), chosen_times=lambda: np.array([1.0]))
    assert not skipper.spoiled(picker)  # 3.0 s was dropped, but 1.0 s was chosen: nearer
    picker = SimpleNamespace(times=np.array([1.0]), chosen_times=lambda: np.array([4.0]))
    assert skipper.spoiled(picker)  # a variable-rate gap: the dropped 3.0 s frame was the nearest
    skipper.saw(6)
    assert not skipper.spoiled(picker)  # it came out after all (a reference frame)

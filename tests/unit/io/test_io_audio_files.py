"""``read_audio`` on audio-only files (wav, flac, mp3, ogg/opus, m4a) at assorted rates and layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from io_media import best_lag, chirp, correlation, mux

from avlearn.io import MediaError, read_audio, read_clip

# (file name, container format, codec, rate, layout, lag tolerance in samples at 16 kHz)
CASES = [
    ("pcm.wav", "wav", "pcm_s16le", 22050, "stereo", 0),
    ("lossless.flac", "flac", "flac", 44100, "mono", 0),
    ("lame.mp3", "mp3", "libmp3lame", 44100, "stereo", 1),
    ("opus.ogg", "ogg", "libopus", 48000, "stereo", 1),
    ("aac.m4a", "mp4", "aac", 8000, "mono", 0),
    ("float51.wav", "wav", "pcm_f32le", 11025, "5.1", 0),
]


@pytest.mark.parametrize(("name", "fmt", "codec", "rate", "layout", "max_lag"), CASES, ids=[c[0] for c in CASES])
def test_audio_file_decodes_to_mono_at_16k(
    tmp_path: Path, name: str, fmt: str, codec: str, rate: int, layout: str, max_lag: int
) -> None:
    channels = {"mono": 1, "stereo": 2, "5.1": 6}[layout]
    signal = np.repeat(chirp(3.0, rate)[None], channels, axis=0)  # (C, N): the same chirp on every channel
    path = mux(tmp_path / name, audio=signal, rate=rate, layout=layout, codec=codec, fmt=fmt)
    audio = read_audio(path, duration=2.9)
    reference = chirp(3.0, 16000)
    assert audio.wave.shape == (46400,) and audio.wave.dtype == np.float32 and audio.sample_rate == 16000
    assert correlation(audio.wave, reference) >= 0.99
    assert abs(best_lag(audio.wave, reference)) <= max_lag


def test_default_duration_and_other_target_rate(tmp_path: Path) -> None:
    path = mux(tmp_path / "a.flac", audio=chirp(2.0, 32000)[None], rate=32000, codec="flac", fmt="flac")
    audio = read_audio(path, sample_rate=22050)
    assert audio.duration == pytest.approx(2.0) and audio.wave.shape == (44100,) and audio.notes == ()


def test_audio_file_given_to_read_clip_points_to_read_audio(tmp_path: Path) -> None:
    path = mux(tmp_path / "a.wav", audio=chirp(1.0, 16000)[None], codec="pcm_s16le", fmt="wav")
    with pytest.raises(MediaError, match="no video stream.*read_audio"):
        read_clip(path, fps=1)


def test_read_audio_of_a_video_reads_its_track(plain_mp4: Path) -> None:
    audio = read_audio(plain_mp4, sample_rate=16000)
    assert audio.wave.shape == (80000,) and correlation(audio.wave, chirp(5.0, 16000)) >= 0.99


def test_short_audio_file_policy(tmp_path: Path) -> None:
    path = mux(tmp_path / "a.wav", audio=chirp(1.0, 16000)[None], codec="pcm_s16le", fmt="wav")
    with pytest.raises(MediaError, match="audio ends at 1.000 s"):
        read_audio(path, duration=1.5)
    audio = read_audio(path, duration=1.5, short="pad")
    assert audio.wave.shape == (24000,) and not audio.wave[16000:].any() and audio.notes == ("padded audio 0.500 s",)

"""``read_clip`` on well-formed and odd video files: frame choice, geometry, audio, and the policies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from io_media import best_lag, chirp, correlation, frame_indices, index_frames, mux

from avlearn.io import Clip, MediaError, read_clip


def test_round_trip_recovers_every_frame_and_the_audio(plain_mp4: Path) -> None:
    clip = read_clip(plain_mp4, fps=8)
    assert isinstance(clip, Clip) and clip.has_audio and clip.notes == ()
    assert clip.frames.shape == (40, 32, 32, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(frame_indices(clip.frames), np.arange(40))
    np.testing.assert_allclose(clip.frame_times, np.arange(40) / 8)
    assert clip.wave.shape == (80000,) and clip.wave.dtype == np.float32 and clip.duration == 5.0
    reference = chirp(5.0, 16000)
    assert correlation(clip.wave, reference) >= 0.99
    assert best_lag(clip.wave, reference) == 0


def test_timestamps_get_the_nearest_frame_in_the_order_asked(plain_mp4: Path) -> None:
    # frames at 0, 0.125, 0.25 ...: 0.06 is nearer frame 0, 0.07 nearer frame 1; the order of the request is kept
    clip = read_clip(plain_mp4, timestamps=[2.0, 0.06, 0.07, 1.0, 4.99, 0.06])
    np.testing.assert_array_equal(frame_indices(clip.frames), [16, 0, 1, 8, 39, 0])
    np.testing.assert_array_equal(clip.frame_times, [2.0, 0.06, 0.07, 1.0, 4.99, 0.06])


def test_window_with_start_and_duration_cuts_frames_and_audio(plain_mp4: Path) -> None:
    clip = read_clip(plain_mp4, fps=4, start=2.0, duration=1.5, sample_rate=8000)
    np.testing.assert_array_equal(frame_indices(clip.frames), [16, 18, 20, 22, 24, 26])
    assert clip.wave.shape == (12000,)
    reference = chirp(5.0, 8000)[16000:28000]
    assert correlation(clip.wave, reference) >= 0.99 and best_lag(clip.wave, reference) == 0


def test_without_fps_or_timestamps_every_frame_comes_at_its_own_time(plain_mp4: Path) -> None:
    clip = read_clip(plain_mp4, duration=1.0)
    np.testing.assert_array_equal(frame_indices(clip.frames), np.arange(8))
    np.testing.assert_allclose(clip.frame_times, np.arange(8) / 8)


def test_a_file_object_reads_like_its_path(plain_mp4: Path) -> None:
    from_bytes = read_clip(io.BytesIO(plain_mp4.read_bytes()), fps=2)
    from_path = read_clip(plain_mp4, fps=2)
    np.testing.assert_array_equal(from_bytes.frames, from_path.frames)
    np.testing.assert_array_equal(from_bytes.wave, from_path.wave)


def test_size_int_scales_the_short_side_and_centre_crops(tmp_path: Path) -> None:
    frames = np.full((4, 32, 64, 3), 128, np.uint8)
    frames[:, :, :8] = (0, 255, 0)  # left and right eighths green and blue: both cropped away
    frames[:, :, 56:] = (0, 0, 255)
    path = mux(tmp_path / "wide.mp4", frames=frames, fps=4)
    square = read_clip(path, fps=4, size=16, missing_audio="silence")
    assert square.frames.shape == (4, 16, 16, 3)
    assert np.abs(square.frames.astype(int) - 128).max() <= 12
    exact = read_clip(path, fps=4, size=(8, 24), missing_audio="silence")
    assert exact.frames.shape == (4, 8, 24, 3)
    assert exact.frames[0, 4, 1, 1] > 200 and exact.frames[0, 4, -2, 2] > 200  # green left, blue right kept


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    frames = np.zeros((2, 32, 64, 3), np.uint8)
    frames[:, :, :32, 0] = 255  # left half red as stored
    path = mux(tmp_path / "rotated.mp4", frames=frames, fps=2, rotation=90)
    clip = read_clip(path, fps=2, missing_audio="silence")
    assert clip.frames.shape == (2, 64, 32, 3)  # portrait, as a player shows it
    red = clip.frames[0, :, :, 0].astype(int)
    assert red[40:].mean() > 200 and red[:24].mean() < 50  # 90 degrees counter-clockwise: left went to the bottom
    resized = read_clip(path, fps=2, size=(32, 16), missing_audio="silence")
    assert resized.frames.shape == (2, 32, 16, 3) and resized.frames[0, 24:, :, 0].mean() > 200


def test_variable_frame_rate_is_sampled_by_time(tmp_path: Path) -> None:
    times_ms = [0, 100, 150, 400, 1000, 1050, 2000]
    path = mux(tmp_path / "vfr.mp4", frames=index_frames(7), fps=30, times_ms=times_ms)
    clip = read_clip(path, timestamps=[0.0, 0.12, 0.13, 0.3, 0.75, 1.9], missing_audio="silence")
    np.testing.assert_array_equal(frame_indices(clip.frames), [0, 1, 2, 3, 4, 6])
    every = read_clip(path, duration=2.05, missing_audio="silence")
    np.testing.assert_allclose(every.frame_times, np.array(times_ms) / 1000)


def test_one_frame_video(tmp_path: Path) -> None:
    path = mux(tmp_path / "one.mp4", frames=index_frames(1), fps=25)
    clip = read_clip(path, fps=4, missing_audio="silence")
    assert clip.frames.shape == (1, 32, 32, 3) and clip.duration == pytest.approx(0.04)
    assert clip.wave.shape == (640,)
    with pytest.raises(MediaError, match="--short pad"):
        read_clip(path, timestamps=[0.0, 0.5], missing_audio="silence")
    padded = read_clip(path, timestamps=[0.0, 0.5], missing_audio="silence", short="pad")
    np.testing.assert_array_equal(padded.frames[0], padded.frames[1])
    assert any(note.startswith("padded video") for note in padded.notes)


def test_missing_audio_policy(tmp_path: Path) -> None:
    path = mux(tmp_path / "silent.mp4", frames=index_frames(8), fps=8)
    with pytest.raises(MediaError, match="no audio track"):
        read_clip(path, fps=1)
    clip = read_clip(path, fps=1, missing_audio="silence", sample_rate=22050)
    assert not clip.has_audio and clip.notes == ("no audio track: silence",)
    assert clip.wave.shape == (22050,) and not clip.wave.any()


def test_short_clip_policy_pads_and_records_it(plain_mp4: Path) -> None:
    with pytest.raises(MediaError, match=r"ends at 5\.\d+ s, before the requested end 6\.000 s"):
        read_clip(plain_mp4, fps=2, duration=6.0)
    clip = read_clip(plain_mp4, fps=2, duration=6.0, short="pad")
    assert clip.frames.shape[0] == 12 and clip.wave.shape == (96000,)
    np.testing.assert_array_equal(frame_indices(clip.frames)[-2:], [39, 39])
    assert not clip.wave[81000:].any() and clip.wave[:79000].std() > 0.1
    assert "padded audio 1.000 s" in clip.notes and any(n.startswith("padded video") for n in clip.notes)


def test_stereo_44k_is_averaged_and_resampled(tmp_path: Path) -> None:
    left = chirp(3.0, 44100)
    path = mux(tmp_path / "stereo.mp4", frames=index_frames(12), fps=4, audio=np.stack([left, 0 * left]),
               rate=44100, layout="stereo")  # fmt: skip
    clip = read_clip(path, fps=4)
    reference = chirp(3.0, 16000)
    assert clip.wave.shape == (48000,)
    assert correlation(clip.wave, reference) >= 0.99 and best_lag(clip.wave, reference) == 0
    assert clip.wave.std() / reference.std() == pytest.approx(0.5, abs=0.03)  # mean of L and R, not a sum


def test_five_point_one_is_averaged_over_six_channels(tmp_path: Path) -> None:
    front_left = chirp(2.0, 48000)
    channels = np.zeros((6, front_left.size), np.float32)
    channels[0] = front_left
    path = mux(tmp_path / "surround.mp4", frames=index_frames(8), fps=4, audio=channels, rate=48000, layout="5.1")
    clip = read_clip(path, fps=1, sample_rate=24000)
    reference = chirp(2.0, 24000)
    assert clip.wave.shape == (48000,) and correlation(clip.wave, reference) >= 0.99
    assert clip.wave.std() / reference.std() == pytest.approx(1 / 6, abs=0.02)


def test_frame_dropping_never_changes_the_choice_across_a_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avlearn.io.frames import NonRefSkipper

    times_ms = [i * 40 for i in range(11)] + [1400 + i * 40 for i in range(12)]  # a 1 s gap after 400 ms
    frames = np.repeat(np.random.default_rng(0).integers(60, 180, (1, 64, 64, 3), np.uint8), len(times_ms), axis=0)
    for i in range(len(times_ms)):
        frames[i, 20:36, 2 * i : 2 * i + 16] = (255, 0, 0)  # a red block moving 2 px a frame: x264 uses B-frames
    path = mux(tmp_path / "gap.mp4", frames=frames, fps=25, times_ms=times_ms)
    verdicts = []
    spoiled = NonRefSkipper.spoiled
    monkeypatch.setattr(
        NonRefSkipper, "spoiled", lambda self, picker: verdicts.append(spoiled(self, picker)) or verdicts[-1]
    )
    clip = read_clip(path, timestamps=[0.95], missing_audio="silence")  # nearest: the non-reference frame at 1.4 s
    assert verdicts == [True]  # dropped on the first pass, so the clip was decoded again in full
    red_columns = np.flatnonzero(clip.frames[0, 28, :, 0] > 220)
    assert round(red_columns.mean() - 7.5) // 2 == 11  # frame 11, at 1.4 s (block centre 2 * 11 + 7.5)
    np.testing.assert_array_equal(
        clip.frames, read_clip(path, timestamps=[0.95], missing_audio="silence", threads=2).frames
    )

"""Model inputs against the models' own reference pipelines.

- CLAP: transformers' ``ClapFeatureExtractor(frequency_min=50, frequency_max=14000)`` (numpy, float64 inside, a
  complex64 spectrum). Given float64 waveforms ours agree to 1e-5 dB in every mode; given float32 waveforms, to
  5e-4 dB: float32 FFT rounding is ~1e-7 of a frame's peak, which moves bands 60 dB below it by up to 3e-4 dB
  (measured 2.6e-4 dB in the 50 Hz band of a 10 s clip, 5e-5 elsewhere). Random crops are checked by recomputing
  the reference on every admissible crop of a clip a few samples or frames too long.
- AST: ``ASTFeatureExtractor`` (transformers' numpy Kaldi path, float64 mel banks) to 5e-4 after normalisation,
  and torchaudio's own fbank (the fixture of ``test_audio_kaldi.py``) to 1e-5.
- HTS-AT: librosa with torchlibrosa's settings (reflect padding, Slaney mel, ``top_db=None``) to 1e-3 dB; DG-SCT's
  segment input: librosa on the one-second waveform tiled ten times (``np.tile``), as the seed's data loader does.
- VGGish: ``torchvggish.vggish_input.waveform_to_examples``, whose ``mel_features.py`` is Google's VGGish reference
  code, to 1e-4 in float32 and 1e-9 in float64 at 16 kHz. At other rates VGGish resamples with resampy; we check
  that ours resamples with :func:`avlearn.audio.resample` (tested on its own in ``test_audio_resample.py``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.audio import (
    ast_input,
    clap_input,
    deepavfusion_input,
    fbank,
    htsat_input,
    htsat_segment_input,
    resample,
    vggish_input,
)
from avlearn.audio.presets import AUDIOSET_FBANK_MEAN, AUDIOSET_FBANK_STD

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "audio" / "kaldi_fbank_reference.npz"


@pytest.fixture(scope="module")
def clap_extractor():
    transformers = pytest.importorskip("transformers")
    return transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14_000)


def clap_reference(extractor, wave: np.ndarray, **kwargs) -> np.ndarray:
    return extractor(wave, sampling_rate=48_000, return_tensors="np", **kwargs)["input_features"][0]


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_clap_short_clip_matches_transformers(clap_extractor, make_signal, truncation: str, padding: str) -> None:
    wave = make_signal(48_000, 3.7)
    expected = clap_reference(clap_extractor, wave, truncation=truncation, padding=padding)
    exact, is_longer = clap_input(torch.from_numpy(wave.astype(np.float64)), 48_000, truncation, padding)
    assert exact.shape == expected.shape == ((1 if truncation == "rand_trunc" else 4), 1001, 64)
    assert not is_longer
    assert np.abs(exact.numpy() - expected).max() < 1e-5
    single, _ = clap_input(torch.from_numpy(wave), 48_000, truncation, padding)
    assert single.dtype == torch.float32
    assert np.abs(single.numpy() - expected).max() < 5e-4


def test_clap_rand_trunc_takes_a_uniform_crop(clap_extractor, make_signal) -> None:
    wave = make_signal(48_000, 10.0 + 5 / 48_000)  # 6 possible crops
    crops = [clap_reference(clap_extractor, wave[s : s + 480_000], truncation="rand_trunc") for s in range(6)]
    starts = set()
    for seed in range(4):
        ours, is_longer = clap_input(
            torch.from_numpy(wave.astype(np.float64)), 48_000, generator=torch.Generator().manual_seed(seed)
        )
        errors = [np.abs(ours.numpy() - crop).max() for crop in crops]
        assert is_longer and min(errors) < 1e-5
        starts.add(int(np.argmin(errors)))
    assert len(starts) > 1


def test_clap_fusion_views_of_a_long_clip(clap_extractor, make_signal) -> None:
    """Channel 0 squeezes the whole log-mel in float32 arithmetic, as the reference does (its sampling grid is then
    float32, so it is compared from a float32 waveform); channels 1-3 are crops from the thirds of the offsets."""
    wave = make_signal(48_000, 10.0 + 7 * 480 / 48_000)  # 1008 frames: crop offsets 0..7 in thirds 3, 3, 2
    expected = clap_reference(clap_extractor, wave, truncation="fusion")  # random crops, deterministic channel 0
    full = clap_extractor._np_extract_fbank_features(wave.astype(np.float64), clap_extractor.mel_filters)  # (T', F)
    squeezed, is_longer = clap_input(torch.from_numpy(wave)[None], 48_000, "fusion")
    assert squeezed.shape == (1, 4, 1001, 64) and is_longer.tolist() == [True]
    assert np.abs(squeezed[0, 0].numpy() - expected[0]).max() < 5e-4
    ours, _ = clap_input(torch.from_numpy(wave.astype(np.float64)), 48_000, "fusion", generator=torch.Generator())
    for view, offsets in zip(ours[1:], [range(0, 3), range(3, 6), range(6, 8)], strict=True):
        assert min(np.abs(view.numpy() - full[s : s + 1001]).max() for s in offsets) < 1e-5


def test_clap_exact_length_and_resampling(clap_extractor, make_signal) -> None:
    wave = make_signal(48_000, 10.0)
    ours, is_longer = clap_input(torch.from_numpy(wave.astype(np.float64)), 48_000, "fusion")
    assert not is_longer and torch.equal(ours[0], ours[3])
    assert np.abs(ours.numpy() - clap_reference(clap_extractor, wave, truncation="fusion")).max() < 1e-5
    wave_16k = torch.from_numpy(make_signal(16_000, 2.0))
    batch = torch.stack([wave_16k, -wave_16k])  # (2, N)
    upsampled, _ = clap_input(batch, 16_000)
    torch.testing.assert_close(upsampled, clap_input(resample(batch, 16_000, 48_000), 48_000)[0])


def test_htsat_input_matches_librosa_with_torchlibrosa_settings(make_signal) -> None:
    librosa = pytest.importorskip("librosa")
    wave = make_signal(32_000, 2.0)
    mel = librosa.feature.melspectrogram(
        y=wave, sr=32_000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0, fmax=14_000.0, pad_mode="reflect"
    )
    expected = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T  # (T, F)
    ours = htsat_input(torch.from_numpy(wave)[None], 32_000)
    assert ours.shape == (1, 201, 64) == (1, *expected.shape)
    assert np.abs(ours[0].numpy() - expected).max() < 1e-3


def test_htsat_segment_input_is_librosa_on_the_tiled_segment(make_signal) -> None:
    librosa = pytest.importorskip("librosa")
    segments = np.stack([make_signal(32_000, 1.0, seed=k) for k in range(2)])  # (2, 32000), one second each
    expected = []
    for segment in segments:
        filters = librosa.filters.mel(sr=32_000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14_000.0)  # torchlibrosa's
        power = np.abs(librosa.stft(np.tile(segment, 10), n_fft=1024, hop_length=320, pad_mode="reflect")) ** 2
        expected.append(librosa.power_to_db(filters @ power, ref=1.0, amin=1e-10, top_db=None).T)  # (T, F)
    ours = htsat_segment_input(torch.from_numpy(segments), 32_000)
    assert ours.shape == (2, 1001, 64)
    assert np.abs(ours.numpy() - np.stack(expected)).max() < 1e-3
    five = htsat_segment_input(torch.from_numpy(segments[:1]), 32_000, tile=5)  # the seed's AVS tiling
    assert five.shape == (1, 501, 64)


def test_ast_input_matches_transformers_and_torchaudio(make_signal) -> None:
    transformers = pytest.importorskip("transformers")
    wave = make_signal(16_000, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers warns about the empty 4th mel band, as Kaldi has it
        expected = transformers.ASTFeatureExtractor()(wave, sampling_rate=16_000, return_tensors="np")
    ours = ast_input(torch.from_numpy(wave), 16_000, subtract_wave_mean=False)
    assert ours.shape == (1024, 128)
    assert np.abs(ours.numpy() - expected["input_values"][0]).max() < 5e-4
    assert torch.all(ours[198:] == -AUDIOSET_FBANK_MEAN / (2 * AUDIOSET_FBANK_STD))  # zero fbank padding

    reference = np.load(REFERENCE)
    assert json.loads(str(reference["ast/kwargs"]))["num_mel_bins"] == 128
    normalised = (reference["ast/fbank"] - AUDIOSET_FBANK_MEAN) / (2 * AUDIOSET_FBANK_STD)
    ours = ast_input(torch.from_numpy(reference["wave"]), 16_000, target_frames=40, subtract_wave_mean=False)
    assert np.abs(ours.numpy() - normalised[:40]).max() < 1e-5


def test_ast_input_subtracts_the_wave_mean_and_resamples(make_signal) -> None:
    wave = torch.from_numpy(make_signal(22_050, 1.0)) + 0.1
    ours = ast_input(wave, 22_050, num_mel_bins=64, target_frames=80)
    at_16k = resample(wave, 22_050, 16_000)
    expected = (fbank(at_16k - at_16k.mean(), 16_000, 64, window_type="hanning")[:80] - AUDIOSET_FBANK_MEAN) / (
        2 * AUDIOSET_FBANK_STD
    )
    torch.testing.assert_close(ours, expected)


def test_vggish_input_matches_reference_pipeline(make_signal) -> None:
    vggish_input_ref = pytest.importorskip("torchvggish.vggish_input")
    wave = make_signal(16_000, 3.5)
    expected = vggish_input_ref.waveform_to_examples(wave.astype(np.float64), 16_000, return_tensor=False)
    assert expected.shape == (3, 96, 64)
    ours = vggish_input(torch.from_numpy(wave), 16_000)
    assert ours.shape == expected.shape and ours.dtype == torch.float32
    assert np.abs(ours.numpy() - expected).max() < 1e-4
    exact = vggish_input(torch.from_numpy(wave.astype(np.float64)), 16_000)
    assert np.abs(exact.numpy() - expected).max() < 1e-9


def test_vggish_input_batches_resamples_and_handles_short_clips(make_signal) -> None:
    wave = torch.from_numpy(make_signal(44_100, 2.0))
    batch = torch.stack([wave, 0.5 * wave]).reshape(1, 2, -1)  # (1, 2, N)
    ours = vggish_input(batch, 44_100)
    assert ours.shape == (1, 2, 2, 96, 64)
    torch.testing.assert_close(ours[0, 1], vggish_input(resample(0.5 * wave, 44_100, 16_000), 16_000))
    assert vggish_input(torch.zeros(3, 15_599), 16_000).shape == (3, 0, 96, 64)
    assert vggish_input(torch.zeros(15_600), 16_000).shape == (1, 96, 64)


def test_clap_input_rejects_unknown_modes_and_empty_clips() -> None:
    with pytest.raises(ValueError, match="truncation"):
        clap_input(torch.zeros(480), 48_000, "fusion_v2")
    with pytest.raises(ValueError, match="padding"):
        clap_input(torch.zeros(480), 48_000, padding="loop")
    with pytest.raises(ValueError, match="at least one sample"):
        clap_input(torch.zeros(2, 0), 48_000)


def _deepavfusion_reference(librosa, wave: np.ndarray) -> np.ndarray:
    """torchaudio's ``MelSpectrogram(16000, n_fft=800, hop_length=250, n_mels=128)`` defaults, in librosa terms."""
    mel = librosa.feature.melspectrogram(
        y=wave, sr=16_000, n_fft=800, hop_length=250, n_mels=128, fmin=0.0, fmax=8_000.0, htk=True, norm=None,
        pad_mode="reflect", power=2.0,
    )  # fmt: skip
    return np.log10(mel + 1e-7)[:, :-1]  # (128, 192)


def test_deepavfusion_input_is_the_seeds_torchaudio_front_end(make_signal) -> None:
    librosa = pytest.importorskip("librosa")
    wave = make_signal(16_000, 3.0)
    ours = deepavfusion_input(torch.from_numpy(wave)[None], 16_000)
    expected = _deepavfusion_reference(librosa, wave)
    assert ours.shape == (1, 128, 192) == (1, *expected.shape)
    assert np.abs(ours[0].numpy() - expected).max() < 1e-3
    silence = deepavfusion_input(torch.zeros(1, 48_000), 16_000)
    assert torch.allclose(silence, torch.full_like(silence, -7.0))  # log10(0 + 1e-7), no normalisation


def test_deepavfusion_input_extends_short_clips_by_their_reversal(make_signal) -> None:
    librosa = pytest.importorskip("librosa")
    short = make_signal(16_000, 1.25)  # 20000 samples -> w, reversed w, w cut at 48000
    extended = np.concatenate([short, short[::-1], short])[:48_000]
    ours = deepavfusion_input(torch.from_numpy(short)[None], 16_000)
    assert np.abs(ours[0].numpy() - _deepavfusion_reference(librosa, extended)).max() < 1e-3

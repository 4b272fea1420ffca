"""Every audio feature on a CUDA device equals its CPU result (opt-in: ``pytest -m gpu``).

cuFFT and pocketfft round differently, by ~1e-7 of a frame's peak, so bands far below the peak may move by up to
~1e-3 dB (log-mel, CLAP) or 1e-3 log units (fbank, AST after normalisation is 10x smaller, VGGish); the resampler
is a convolution and agrees to 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.audio import ast_input, clap_input, fbank, htsat_input, log_mel_spectrogram, resample, vggish_input

CASES = {
    "log_mel": (lambda w: log_mel_spectrogram(w, 16_000), 2e-3),
    "fbank": (lambda w: fbank(w, 16_000, 128, window_type="hanning"), 1e-3),
    "ast_from_44k": (lambda w: ast_input(w, 44_100), 1e-3),
    "clap_from_16k": (lambda w: clap_input(w, 16_000, "fusion")[0], 2e-3),
    "htsat_from_16k": (lambda w: htsat_input(w, 16_000), 2e-3),
    "vggish": (lambda w: vggish_input(w, 16_000), 1e-3),
    "resample_polyphase": (lambda w: resample(w, 44_100, 16_000), 1e-5),
    "resample_direct": (lambda w: resample(w, 44_100, 16_001), 1e-5),
}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_matches_cpu(name: str, make_signal) -> None:
    compute, atol = CASES[name]
    wave = torch.from_numpy(np.stack([make_signal(16_000, 3.0, seed) for seed in range(2)]))  # (2, N)
    on_cpu = compute(wave)
    on_gpu = compute(wave.cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=atol, rtol=0)

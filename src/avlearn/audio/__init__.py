"""Audio features in torch, batched ``(..., N)``, on CPU or GPU: log-mel, Kaldi fbank, model inputs, resampling.

Filterbanks, windows and resampling kernels are cached per (settings, device, dtype).
"""

from avlearn.audio.kaldi import fbank
from avlearn.audio.mel import log_mel_spectrogram, mel_filterbank, mel_spectrogram, power_spectrogram, power_to_db
from avlearn.audio.presets import (
    ast_input,
    clap_input,
    deepavfusion_input,
    htsat_input,
    htsat_segment_input,
    vggish_input,
)
from avlearn.audio.resample import resample
from avlearn.audio.specaugment import SpecAugment

__all__ = [
    "ast_input",
    "clap_input",
    "deepavfusion_input",
    "fbank",
    "htsat_input",
    "htsat_segment_input",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_spectrogram",
    "power_spectrogram",
    "power_to_db",
    "resample",
    "SpecAugment",
    "vggish_input",
]

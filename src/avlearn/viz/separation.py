"""Source separation examples: spectrograms of the mixture, the true sources and the estimates, one row a mixture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from avlearn.files import atomic_write_bytes

COLUMNS = ("mixture", "source 1", "source 2", "estimate 1", "estimate 2")


def log_spectrogram(wave: np.ndarray, n_fft: int = 512) -> np.ndarray:
    """``(F, T)`` magnitude in dB (Hann window, hop ``n_fft // 4``) of a waveform ``(N,)``, floored at -100 dB."""
    signal = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    spec = torch.stft(signal, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True)  # (F, T)
    return 20 * np.log10(np.maximum(spec.abs().numpy(), 1e-5))


def plot_separation(
    path: str | Path,
    sources: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int,
    titles: Sequence[str],
    scores: Sequence[Sequence[float]] | None = None,
) -> Path:
    """Write a PNG with one row per mixture: its spectrogram, those of its two sources and of the two estimates.

    Args:
        path: The PNG to write.
        sources: ``(M, 2, N)`` true sources (the mixture is their sum).
        estimates: ``(M, 2, N)`` separated sources.
        sample_rate: Hz, for the axes.
        titles: M row labels (the mixture's id).
        scores: Optional ``(M, 2)`` SDRs (dB) of the estimates, shown above them.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, seconds = len(sources), sources.shape[-1] / sample_rate
    fig, axes = plt.subplots(m, len(COLUMNS), figsize=(2.6 * len(COLUMNS), 1.9 * m + 0.4), squeeze=False)
    for row in range(m):
        waves = [sources[row].sum(axis=0), *sources[row], *estimates[row]]
        specs = [log_spectrogram(w) for w in waves]  # each (F, T) dB
        top = max(s.max() for s in specs)
        for col, (ax, spec) in enumerate(zip(axes[row], specs, strict=True)):
            ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                      extent=(0, seconds, 0, sample_rate / 2000))  # fmt: skip
            if row == 0:
                ax.set_title(COLUMNS[col], fontsize=9)
            if scores is not None and col >= 3:
                ax.set_title(f"{COLUMNS[col] if row == 0 else ''} SDR {scores[row][col - 3]:.1f} dB", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[row, 0].set_ylabel(f"{titles[row]}\nkHz", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("seconds", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())

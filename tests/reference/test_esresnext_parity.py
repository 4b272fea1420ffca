"""AudioCLIP's audio tower: the Cross-Modal Adaptation seed's own ``ESResNeXtFBSP`` (``audioclip/model/esresnet``)
against ``avlearn.backbones.esresnext.ESResNeXt``. The seed's module (AudioCLIP's settings: attention on, no resizing
of the spectrogram) gets random weights and batch-norm statistics (its window kept), its state dict under
``audio.`` is moved by ``convert_esresnext_state_dict`` into ours; both run in eval mode on the same 16-bit-range
waveforms: the decibel spectrogram and the embedding agree within 1e-5 of their scale, for a small front end and for
AudioCLIP's own (2048-point FBSP, 44.1 kHz)."""

from __future__ import annotations

import types

import oracles
import pytest
import torch
from oracles import assert_parity, randomise
from torch import nn

from avlearn.backbones.esresnext import ESResNeXt, ESResNeXtConfig, convert_esresnext_state_dict


def _seed_fbsp_module() -> types.ModuleType:
    """The seed's ``model.esresnet.fbsp``, imported with empty ``model`` / ``model.esresnet`` / ``utils`` packages
    (their real ``__init__`` pull in CLIP and the datasets), ``ignite_trainer``'s abstract bases (its training
    interface) as plain classes and ``termcolor`` (messages only) stubbed; ``scipy`` gives the window, torchvision
    is stubbed by the oracles."""
    root = oracles.CMA / "audioclip"
    if not (root / "model" / "esresnet" / "fbsp.py").is_file():
        pytest.skip(f"reference code not found at {root} (the reference tier needs ../shared/reference)")
    ignite = types.ModuleType("ignite_trainer")
    ignite.AbstractNet, ignite.AbstractTransform = nn.Module, object
    termcolor = types.ModuleType("termcolor")
    termcolor.colored = lambda text, *args, **kwargs: text
    packages = {}
    for name, folder in (("model", root / "model"), ("model.esresnet", root / "model" / "esresnet"),
                         ("utils", root / "utils")):  # fmt: skip
        packages[name] = types.ModuleType(name)
        packages[name].__path__ = [str(folder)]
    stubs = {"ignite_trainer": ignite, "termcolor": termcolor, **packages}
    return oracles._import_isolated(root, ["model.esresnet.fbsp"], [], stubs)[0]


@pytest.mark.parametrize(
    ("cfg", "samples"),
    [(ESResNeXtConfig(n_fft=256, hop_length=64, win_length=200, output_dim=32), 6000),
     (ESResNeXtConfig.audioclip(), 44100)],
    ids=["small", "audioclip"],
)  # fmt: skip
def test_forward_matches_the_seeds_esresnext_fbsp(cfg: ESResNeXtConfig, samples: int) -> None:
    torch.manual_seed(0)
    seed = _seed_fbsp_module().ESResNeXtFBSP(
        n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=cfg.window,
        normalized=cfg.normalized, onesided=True, spec_height=-1, spec_width=-1, num_classes=cfg.output_dim,
        apply_attention=True, pretrained=False,
    )  # fmt: skip
    randomise(seed, seed=1, keep=("window",))
    with torch.no_grad():  # residual branches scaled down, so that 16 blocks of random weights stay finite
        for name, p in seed.named_parameters():
            if name.endswith(("bn3.weight", "downsample.1.weight")):
                p.mul_(0.1)
    seed.eval()
    ours = ESResNeXt(cfg).eval()
    ours.load_state_dict(convert_esresnext_state_dict({f"audio.{k}": v for k, v in seed.state_dict().items()}))
    wave = 8000 * torch.randn(2, samples, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference_db = seed._forward_pre_processing(wave)  # (B, 1, 3, F // 3, T)
        assert_parity(ours.spectrogram(wave), reference_db[:, 0], f"{cfg.n_fft}-point spectrogram (dB)")
        assert_parity(ours(wave), seed(wave), f"{cfg.n_fft}-point embedding")

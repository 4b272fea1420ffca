"""AudioCLIP's ESResNeXt-fbsp (``avlearn.backbones.esresnext``) on tiny configurations: the FBSP weights against
complex arithmetic (at initialisation the plain Fourier basis), the framing against a hand-built frame list, the
band split and decibels, a gate against plain ops, shapes, and the converter from AudioCLIP's key layout (every
tensor, a strict load, the empty FBSP bias dropped, one-line errors). Parity with the seed's module:
tests/reference/test_esresnext_parity.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avlearn.backbones.esresnext import (
    Attention2d,
    ESResNeXt,
    ESResNeXtConfig,
    LinearFBSP,
    convert_esresnext_state_dict,
    periodic_window,
)
from avlearn.errors import DataError

TINY = ESResNeXtConfig(n_fft=64, hop_length=16, win_length=48, window="hann", normalized=True, layers=(1, 1, 1, 1),
                       groups=2, width_per_group=4, output_dim=8)  # fmt: skip


def test_fbsp_starts_as_the_fourier_basis_and_follows_complex_arithmetic() -> None:
    layer = LinearFBSP(5, normalized=True)
    n = 16
    t = math.pi * torch.linspace(-1, 1, n, dtype=torch.float64) + 1e-8  # (n,)
    k = torch.arange(5, dtype=torch.float64).unsqueeze(1)  # (F, 1)
    w = layer.double().weights(n, torch.zeros((), dtype=torch.float64))  # (F, n, 2)
    torch.testing.assert_close(w[..., 0], torch.cos(k * t) / n**0.5)  # m = 0: window 1; fb = 1; fc = k
    torch.testing.assert_close(w[..., 1], -torch.sin(k * t) / n**0.5)
    with torch.no_grad():
        layer.m.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0, 0.3]))
        layer.fb.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0]))
        layer.fc.add_(0.25)
    m, fb, fc = (p.detach().unsqueeze(1) for p in (layer.m, layer.fb, layer.fc))
    x = fb * t / (m + 1e-8)
    sinc = (torch.sin(x) / x).to(torch.complex128)
    expected = fb.sqrt() * sinc**m * torch.exp(-1j * fc * t) / n**0.5  # principal branch for negative bases
    w = layer.weights(n, torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(torch.complex(w[..., 0], w[..., 1]), expected)
    frames = torch.randn(3, n, dtype=torch.float64)
    out = layer(frames)  # (3, F, 2)
    torch.testing.assert_close(torch.complex(out[..., 0], out[..., 1]), frames.to(torch.complex128) @ expected.T)


@pytest.mark.parametrize("name", ["boxcar", "hann", "blackmanharris"])
def test_windows_are_scipys_periodic_windows(name: str) -> None:
    from scipy.signal import get_window

    expected = torch.from_numpy(get_window(name, 1654, fftbins=True))
    torch.testing.assert_close(periodic_window(name, 1654), expected, rtol=0, atol=1e-12)


def test_frames_cover_the_signal_with_centred_padding_and_the_window() -> None:
    model = ESResNeXt(TINY)
    wave = torch.randn(1, 100)
    frames = model.frames(wave)  # 1 + ceil((100 - 48) / 16) = 5 frames over 112 samples: 6 zeros on each side
    padded = F.pad(wave, (6, 6))
    expected = torch.stack([padded[0, 16 * i : 16 * i + 48] * model.window for i in range(5)])  # (5, 48)
    torch.testing.assert_close(frames[0], F.pad(expected, (8, 8)))  # centred in n_fft = 64


def test_spectrogram_is_three_bands_of_decibels() -> None:
    model = ESResNeXt(TINY)
    wave = 1000 * torch.randn(2, 200)
    spec = model.spectrogram(wave)
    scaled = (wave + 32768) * 2 / 65535 - 1
    complex_spec = model.fbsp(model.frames(scaled))  # (B, T, 33, 2)
    power = complex_spec.pow(2).sum(-1).transpose(1, 2)[:, :33]  # (B, 33, T): 3 bands of 11
    torch.testing.assert_close(spec, 10 * torch.log10(power.reshape(2, 3, 11, -1)))
    assert spec.shape == (2, 3, 11, 1 + math.ceil((200 - 48) / 16))


def test_gate_is_pool_depthwise_pointwise_norm_sigmoid() -> None:
    gate = Attention2d(4, 6, (3, 1)).eval()
    with torch.no_grad():
        for p in gate.parameters():
            p.normal_()
    x = torch.randn(2, 4, 8, 6)
    pooled = F.adaptive_max_pool2d(x, (4, 3))
    z = F.conv2d(pooled, gate.depthwise.weight, gate.depthwise.bias, padding=(1, 0), groups=4)
    z = F.conv2d(z, gate.pointwise.weight, gate.pointwise.bias)
    n = gate.norm
    z = (z - n.running_mean.view(1, -1, 1, 1)) / (n.running_var.view(1, -1, 1, 1) + n.eps).sqrt()
    expected = torch.sigmoid(z * n.weight.view(1, -1, 1, 1) + n.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(gate(x, (4, 3)), expected)


def test_shapes() -> None:
    model = ESResNeXt(TINY).eval()
    wave = 1000 * torch.randn(2, 1000)
    assert model.features(model.spectrogram(wave)).shape[1] == 2048
    assert model(wave).shape == (2, 8)
    assert model.stages[0][0].spatial.groups == 2 and model.stages[0][0].spatial.out_channels == 8  # 64 * 4 / 64 * 2


def _audioclip_keys(cfg: ESResNeXtConfig) -> list[str]:
    """The audio tower's tensor names in AudioCLIP's layout, listed from its naming scheme."""
    norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{n}" for n in norm), "fc.weight", "fc.bias", "window"]
    keys += ["fbsp.m", "fbsp.fb", "fbsp.fc"]
    for s, blocks in enumerate(cfg.layers, start=1):
        for b in range(blocks):
            keys += [f"layer{s}.{b}.conv{i}.weight" for i in (1, 2, 3)]
            keys += [f"layer{s}.{b}.bn{i}.{n}" for i in (1, 2, 3) for n in norm]
        keys += [f"layer{s}.0.downsample.0.weight", *(f"layer{s}.0.downsample.1.{n}" for n in norm)]
    for a in range(1, 6):
        keys += [f"att{a}.conv_depth.{p}" for p in ("weight", "bias")]
        keys += [f"att{a}.conv_point.{p}" for p in ("weight", "bias")] + [f"att{a}.bn.{n}" for n in norm]
    return ["audio." + k for k in keys]


def test_converter_maps_every_audioclip_tensor_and_loads_strictly() -> None:
    model = ESResNeXt(TINY)
    ours = model.state_dict()
    keys = _audioclip_keys(TINY)
    where = convert_esresnext_state_dict({k: k for k in keys})  # type: ignore[dict-item]  # ours -> AudioCLIP name
    assert len(where) == len(keys) == len(ours) and set(where) == set(ours)
    checkpoint = {where[name]: tensor for name, tensor in ours.items()}
    checkpoint.update({"audio.fbsp.bias": torch.empty(0), "visual.conv1.weight": torch.zeros(1)})  # dropped
    model.load_state_dict(convert_esresnext_state_dict(checkpoint), strict=True)


def test_converter_and_config_errors_are_one_line() -> None:
    with pytest.raises(DataError, match="ESResNeXt-fbsp checkpoint: key 'audio.fbsp.bias' is not part of the tower"):
        convert_esresnext_state_dict({"audio.fbsp.bias": torch.zeros(4)})  # a bias that would be used
    with pytest.raises(DataError, match="no key starts with 'audio.'"):
        convert_esresnext_state_dict({"visual.conv1.weight": torch.zeros(1)})
    with pytest.raises(DataError, match="window='hamming'; expected one of boxcar, hann, blackmanharris"):
        ESResNeXt(ESResNeXtConfig(window="hamming"))
    with pytest.raises(DataError, match="win_length=80 is longer than n_fft=64"):
        ESResNeXt(ESResNeXtConfig(n_fft=64, win_length=80, hop_length=16))

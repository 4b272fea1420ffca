"""Image preprocessing in torch (resize, crop, normalise) against PIL, and the declared audio settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import avlearn.backbones  # noqa: F401  (registers the zoo)
from avlearn.backbones.preprocess import CLIP_MEAN, CLIP_STD, AudioPreprocess, ImagePreprocess
from avlearn.registry import BACKBONES


def random_frames(*shape: int, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 frames (a low-resolution pattern upsampled), so resampling differences stay small."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(*shape[:-3], 3, shape[-3] // 8, shape[-2] // 8, generator=generator)
    fine = torch.nn.functional.interpolate(coarse.reshape(-1, 3, *coarse.shape[-2:]), size=shape[-3:-1])
    return (fine * 255).round().to(torch.uint8).permute(0, 2, 3, 1).reshape(shape)


def pil_reference(frame: torch.Tensor, size: tuple[int, int], mean: tuple, std: tuple) -> torch.Tensor:
    """CLIP's published pipeline: bicubic resize of the shorter side, centre crop, scale, normalise."""
    image = Image.fromarray(frame.numpy())
    scale = size[0] / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - size[1]) // 2, (image.height - size[0]) // 2
    image = image.crop((left, top, left + size[1], top + size[0]))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def test_resize_crop_normalise_matches_pil() -> None:
    frames = random_frames(2, 480, 640, 3)  # 2x down: antialiasing matters (without it: 0.15)
    ours = ImagePreprocess((224, 224), CLIP_MEAN, CLIP_STD)(frames)
    assert ours.shape == (2, 3, 224, 224) and ours.dtype == torch.float32
    for frame, out in zip(frames, ours, strict=True):
        reference = pil_reference(frame, (224, 224), CLIP_MEAN, CLIP_STD)
        assert (out - reference).abs().mean() < 0.01  # PIL rounds to uint8 after resizing; we stay in float


def test_centre_crop_keeps_the_middle_and_exact_resize_keeps_everything() -> None:
    frames = torch.zeros(1, 64, 192, 3, dtype=torch.uint8)
    frames[:, :, 64:128] = 255  # white middle third, black sides
    unit = ImagePreprocess((64, 64), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="shorter_then_crop")
    assert unit(frames).min() > 0.99  # the crop is the white middle
    squeezed = ImagePreprocess((64, 64), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="exact")(frames)
    assert squeezed[..., :10].max() < 0.01 and squeezed[..., 27:37].min() > 0.99


def test_leading_dims_are_kept_for_video() -> None:
    frames = random_frames(2, 4, 48, 48, 3)  # (B, T, H, W, 3)
    assert ImagePreprocess((32, 32), CLIP_MEAN, CLIP_STD, num_frames=4)(frames).shape == (2, 4, 3, 32, 32)


def test_integer_frames_other_than_uint8_are_refused_float_ones_read_on_the_uint8_scale() -> None:
    pre = ImagePreprocess((32, 32), CLIP_MEAN, CLIP_STD)
    with pytest.raises(ValueError, match="uint8"):
        pre(torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.int32))
    frames = random_frames(1, 32, 32, 3)  # float frames (task.mixup's mixed ones) are pixel values 0-255
    torch.testing.assert_close(pre(frames.float()), pre(frames))


def test_preprocess_output_feeds_the_backbone() -> None:
    model = BACKBONES.build("clip_vit_tiny").eval()
    pixels = model.preprocess(random_frames(2, 40, 50, 3))
    with torch.no_grad():
        assert model(pixel_values=pixels).shape == (2, model.num_features)


def test_audio_settings_match_the_published_front_ends() -> None:
    with torch.device("meta"):
        ast, clap, htsat = (BACKBONES.build(n).preprocess for n in ("ast_base", "clap_audio_htsat", "htsat_base"))
    assert isinstance(ast, AudioPreprocess) and ast.features == "kaldi_fbank"
    assert (ast.sample_rate, ast.num_mel_bins, ast.num_frames, ast.hop_length) == (16_000, 128, 1024, 160)
    assert ast.norm_shift == pytest.approx(-4.2677393) and ast.norm_scale == pytest.approx(2 * 4.5689974)
    assert (clap.sample_rate, clap.hop_length, clap.num_mel_bins, clap.num_frames) == (48_000, 480, 64, 1001)
    assert (htsat.sample_rate, htsat.hop_length, htsat.num_frames, htsat.f_max) == (32_000, 320, 1001, 14_000.0)


@pytest.mark.parametrize("name", ["ast_base", "htsat_base", "clap_audio_htsat", "clap_audio_htsat_fused"])
def test_waveforms_become_inputs_of_the_declared_shape(name: str) -> None:
    """``inputs_from_wave`` calls avlearn.audio's front end and gives exactly the shapes the model takes."""
    with torch.device("meta"):
        model = BACKBONES.build(name)
        expected = model.dummy_inputs(batch_size=2)["spectrogram"].shape
    wave = 0.1 * torch.randn(2, 22_050 * 10, generator=torch.Generator().manual_seed(0))  # 10 s at 22.05 kHz
    spectrogram = model.inputs_from_wave(wave, 22_050)["spectrogram"]
    single_channel = (expected[0], 1, *expected[1:])  # CLAP's (B, 1, T, F) and (B, T, F) are the same input
    assert spectrogram.shape in (expected, single_channel) and torch.isfinite(spectrogram).all()


def test_ast_inputs_from_wave_run_through_the_model() -> None:
    model = BACKBONES.build("ast_tiny").eval()
    inputs = model.inputs_from_wave(0.1 * torch.randn(2, 16_000), 16_000)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs)).all()

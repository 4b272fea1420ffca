"""The separate task's ``head=avsrcsep_seed`` (DeepAVFusion's decoder, ``avlearn.layers.avsrcsep``) on the tiny
DeepAVFusion: the seed's layer rule, the log-mel -> STFT resampling against the mel formula, a training step and
prediction, the frames reaching the masks, the seed's targets (``faithful``) and the one-line config errors. Parity
with the seed's decoder: ``tests/reference/test_deepavfusion_avsrcsep.py``."""

from __future__ import annotations

import pytest
import torch

from avlearn.audio.mel import hz_to_mel
from avlearn.build import build_task
from avlearn.config import compose_run
from avlearn.errors import ConfigError
from avlearn.layers.avsrcsep import MelToStft, seed_layers
from avlearn.tasks.base import DatasetInfo
from avlearn.tasks.separate import SeparateConfig, SeparateTask

TINY = ["task=separate", "method=deepavfusion_tiny", "backbone=deepavfusion_tiny", "data.n_mels=32", "data.size=32",
        "data.frame_size=32", "task.head=avsrcsep_seed", "task.train_seconds=0"]  # fmt: skip
SECONDS, RATE = 2, 8000


def _task(*overrides: str) -> SeparateTask:
    torch.manual_seed(0)
    return build_task(compose_run([*TINY, *overrides]), DatasetInfo(("a", "b")))


def _batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, b, SECONDS, 32, 32, 3), generator=g, dtype=torch.uint8)
    audio = torch.randn(b, SECONDS, 32, 50, generator=g)  # (B, S, F, T): 50 frames a second, as data.hop_ms=20
    sources = 0.1 * torch.randn(b, 2, SECONDS * RATE, generator=g)
    return {"frames": frames[0], "frames_other": frames[1], "audio": audio, "sources": sources,
            "hard": torch.zeros(b, dtype=torch.bool)}  # fmt: skip


def test_seed_layer_rule():
    assert seed_layers(12) == [11, 8, 5, 2, 0]  # the seed's comment in models/avsrcsep.py
    assert seed_layers(2) == [1, 0, 0, 0, 0]


def test_mel_rows_land_on_the_stft_bins_at_their_mel_position():
    """A decoded map whose rows hold their own mel centre (and a column per second holding the second) comes back
    on the STFT as the mel of each bin (within the band range; linear interpolation is exact for a linear map),
    constant over each second; the tiled columns past ``kept`` never show."""
    n_mels, rows, mel_rate, n_fft = 32, 64, 16000, 256
    top = hz_to_mel(torch.tensor(mel_rate / 2))
    band = (torch.arange(rows) + 0.5) * n_mels / rows - 0.5  # each row's fractional band
    row_mel = (band + 1) * top / (n_mels + 1)  # (H,) its mel centre
    kept, width, frames = 10, 16, 200
    logits = row_mel[None, None, None, :, None].repeat(1, 3, 1, 1, width)  # (1, S=3, 1, H, W)
    logits[..., kept:] = 1e4  # the tiled copy of the segment: must be dropped
    got = MelToStft(n_mels, mel_rate, n_fft, RATE, rows)(logits, kept, frames)  # (1, F, T)
    hz = torch.arange(n_fft // 2 + 1) * RATE / n_fft
    inside = (hz_to_mel(hz) >= row_mel[0]) & (hz_to_mel(hz) <= row_mel[-1])
    assert inside.sum() > 100
    torch.testing.assert_close(got[0, inside], hz_to_mel(hz)[inside, None].expand(-1, frames), rtol=1e-4, atol=1e-3)
    seconds = torch.arange(3.0)[None, :, None, None, None].expand(1, 3, 1, rows, width).clone()  # value = second
    timed = MelToStft(n_mels, mel_rate, n_fft, RATE, rows)(seconds, kept, 300)[0, 0]  # (T,) of one bin
    assert timed.max() <= 2 and torch.equal(timed[:90], torch.zeros(90))
    assert torch.equal(timed[-90:], torch.full((90,), 2.0))


def test_training_step_prediction_and_the_frames_matter():
    task = _task()
    assert not hasattr(task, "unet") and task.seed.layers == [1, 0, 0, 0, 0]
    batch = _batch()
    out = task(batch)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in task.seed.parameters())
    assert task.method.audio_backbone.model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    task.eval()
    logits, spec, _ = task.mask_logits(batch)
    assert logits.shape == (2, 2, 129, SECONDS * RATE // 128 + 1) and spec.shape == logits[:, 0].shape
    swapped = task.mask_logits({**batch, "frames": batch["frames_other"], "frames_other": batch["frames"]})[0]
    torch.testing.assert_close(swapped, logits.flip(1))  # each source's mask follows its own frames
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 1e-4
    assert task.predict(batch)["estimates"].shape == batch["sources"].shape


@pytest.mark.parametrize("mask", ["ratio", "binary"])
def test_faithful_targets_are_the_seeds_on_the_stft(mask):
    sources = _batch()["sources"]
    task = _task(f"task.mask={mask}", "task.faithful=true")
    mags, mix = task.stft(sources).abs(), task.stft(sources.sum(dim=1)).abs()  # (B, 2, F, T), (B, F, T)
    got = task.target_masks(sources)
    want = (mags**2 > mix[:, None] ** 2).float() if mask == "binary" else mags**2 / (mags**2 + mix[:, None] ** 2 + 1e-5)
    torch.testing.assert_close(got, want)
    assert not torch.equal(got, _task(f"task.mask={mask}").target_masks(sources))


@pytest.mark.parametrize(
    ("overrides", "says"),
    [(["task.head=mlp"], "task.head='mlp'"), (["task.seed_layers=[1,0]"], "task.seed_layers=[1, 0]"),
     (["task.seed_layers=[2,1,0,0,0]"], "task.seed_layers=[2, 1, 0, 0, 0]"),
     (["task.train_seconds=3"], "task.train_seconds=3"),
     (["task.condition=audio_visual"], "task.condition=audio_visual"), (["task.pool=max"], "task.pool=max"),
     (["task.condition_time=frame"], "task.condition_time=frame")],
)  # fmt: skip
def test_bad_config_values_are_one_line_errors(overrides, says):
    with pytest.raises(ConfigError) as err:
        _task(*overrides)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_method_without_per_layer_tokens_is_refused(tiny_method):
    with pytest.raises(ConfigError, match="task.head=avsrcsep_seed needs per-layer audio tokens"):
        SeparateTask(SeparateConfig(head="avsrcsep_seed", train_seconds=0), tiny_method(), DatasetInfo(("a", "b")))

"""The separate task: all-pass reconstruction, ideal masks, scores against BSS Eval, the U-Net, the mixture lists
and the pipeline's items, the wav writer and the plot."""

from __future__ import annotations

import dataclasses
import wave

import numpy as np
import pytest
import torch

from avlearn.errors import ConfigError, DataError
from avlearn.layers.unet import ConditionedUNet
from avlearn.metrics.separation import bss_eval_sources
from avlearn.tasks.base import DatasetInfo
from avlearn.tasks.separate import SeparateConfig, SeparateTask, write_separation

RATE = 8000


def _task(tiny_method, **cfg: object) -> SeparateTask:
    torch.manual_seed(0)
    return SeparateTask(SeparateConfig(**{"channels": [4, 8, 8], **cfg}), tiny_method(), DatasetInfo(("a", "b")))


def _sources(count: int = 2, seconds: float = 1.0) -> torch.Tensor:
    """``(count, 2, N)``: a gated 440 Hz tone with harmonics, and band-limited noise."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * RATE)) / RATE
    tone = sum(torch.sin(2 * torch.pi * 440 * h * t) / h for h in (1, 2, 3)) * (torch.sin(2 * torch.pi * 2 * t) > 0)
    noise = torch.randn(count, t.numel(), generator=g)
    noise = torch.fft.irfft(torch.fft.rfft(noise) * (torch.fft.rfftfreq(t.numel(), 1 / RATE) > 2000), n=t.numel())
    return torch.stack([tone.expand(count, -1), noise], dim=1) * 0.2


@pytest.mark.parametrize(("n_fft", "hop"), [(256, 128), (512, 128), (400, 100)])
def test_an_all_pass_mask_gives_back_the_mixture(tiny_method, n_fft, hop):
    task = _task(tiny_method, n_fft=n_fft, hop_length=hop)
    mixture = _sources(1).sum(dim=1)  # (1, N)
    spec = task.stft(mixture)
    back = task.istft(torch.ones_like(spec.real) * spec, mixture.shape[-1])
    sdr = bss_eval_sources(mixture[:, None].numpy(), back[:, None].numpy())["sdr"]
    assert sdr.min() >= 60.0


def test_ideal_masks_follow_their_definitions_and_separate(tiny_method):
    sources = _sources(1)
    ratio, binary = _task(tiny_method).target_masks(sources), _task(tiny_method, mask="binary").target_masks(sources)
    mags = torch.stft(sources[0], 256, 128, window=torch.hann_window(256), return_complex=True).abs()  # (2, F, T)
    torch.testing.assert_close(ratio[0], mags / (mags.sum(dim=0) + 1e-8))
    assert torch.equal(binary[0], (mags > mags.flip(0)).float())
    task = _task(tiny_method)
    spec = task.stft(sources.sum(dim=1))  # (1, F, T)
    oracle = task.istft(ratio * spec[:, None], sources.shape[-1])  # (1, 2, N)
    assert bss_eval_sources(sources.numpy(), oracle.numpy())["sdr"].min() > 15.0  # two disjoint bands: easy


def test_score_is_bss_eval_and_the_mixture_scores_zero_improvement(tiny_method):
    task, refs = _task(tiny_method), _sources(2, seconds=0.5).double()
    rng = np.random.default_rng(0)
    ests = refs + 0.05 * torch.from_numpy(rng.standard_normal(refs.shape))
    targets = {"sources": refs, "hard": torch.tensor([False, True])}
    got = task.score({"estimates": ests}, targets)
    want, mix = (
        bss_eval_sources(refs.numpy(), ests.numpy()),
        bss_eval_sources(refs.numpy(), refs.sum(1, True).repeat(1, 2, 1).numpy()),
    )
    assert got["sdr"] == pytest.approx(want["sdr"].mean()) and got["sir"] == pytest.approx(want["sir"].mean())
    assert got["sdri"] == pytest.approx((want["sdr"] - mix["sdr"]).mean())
    assert got["sdri_hard"] == pytest.approx((want["sdr"][1] - mix["sdr"][1]).mean())
    mixture = task.score({"estimates": refs.sum(1, True).repeat(1, 2, 1)}, targets)
    assert mixture["sdri"] == pytest.approx(0.0, abs=1e-9) and mixture["skipped"] == 0
    swapped = task.score({"estimates": refs.flip(1)}, targets)
    assert swapped["sdri"] < -5
    silent = ests.clone()
    silent[0, 1] = 0
    assert task.score({"estimates": silent}, targets)["skipped"] == 1


@pytest.mark.parametrize("fusion", ["concat", "output"])
def test_training_step_and_prediction_shapes(tiny_method, clip_batch, fusion):
    task = _task(tiny_method, condition="audio_visual", fusion=fusion)
    batch = clip_batch(torch.zeros(2), sources=_sources(2, seconds=0.5))
    batch["frames_other"] = batch["frames"].flip(0)
    out = task(batch)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.method.parameters())
    est = task.eval().predict(batch)["estimates"]
    assert est.shape == batch["sources"].shape


def _run_and_see_condition(task: SeparateTask, clip_batch, count: int, **extra: torch.Tensor) -> tuple[dict, ...]:
    """Train-mode forward of ``task`` on ``count`` mixtures (plus ``extra`` batch entries); the batch, the condition
    the U-Net saw (kept up to date by a hook) and the method's features of source 1's and source 2's frames (method
    without dropout)."""
    task.method.eval()  # no dropout: the method gives the same features again below
    batch = clip_batch(torch.zeros(count), sources=_sources(count, seconds=0.5), **extra)
    batch["frames_other"] = batch["frames"].flip(0)
    seen = {}
    task.unet.register_forward_hook(lambda _m, inputs, _o: seen.update(cond=inputs[1]))
    task(batch)
    return batch, seen, [task.method({**batch, "frames": f}) for f in (batch["frames"], batch["frames_other"])]


def test_batch_condition_norm_standardises_the_vectors_the_unet_sees(tiny_method, clip_batch):
    task = _task(tiny_method, condition_norm="batch", fusion="output")
    batch, seen, feats = _run_and_see_condition(task, clip_batch, 4)
    raw = torch.cat([f.visual_pooled.mean(dim=1) for f in feats])  # (2B, C) as the task stacks them
    want = (raw - raw.mean(dim=0)) / torch.sqrt(raw.var(dim=0, unbiased=False) + 1e-5)
    torch.testing.assert_close(seen["cond"], want, atol=1e-4, rtol=1e-4)
    task.eval().predict(batch)  # evaluation: the running statistics, so one mixture alone is separable
    running = task.norm.running_mean, task.norm.running_var
    torch.testing.assert_close(seen["cond"], (raw - running[0]) / torch.sqrt(running[1] + 1e-5), atol=1e-4, rtol=1e-4)


def test_max_pool_conditions_on_the_largest_visual_token_value_of_each_channel(tiny_method, clip_batch):
    task = _task(tiny_method, pool="max", fusion="output")
    _, seen, feats = _run_and_see_condition(task, clip_batch, 2)
    tokens = torch.cat([f.visual for f in feats])  # (2B, S_v, Nv, Cv)
    want = torch.stack([torch.stack([tokens[b, :, :, c].max() for c in range(tokens.shape[-1])])
                        for b in range(tokens.shape[0])])  # fmt: skip  # (2B, Cv), one maximum at a time
    torch.testing.assert_close(seen["cond"], want)
    assert task.unet.condition.proj.in_features == task.method.dims["visual"]


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_frame_condition_gives_each_stft_frame_the_vector_of_its_own_second(tiny_method, clip_batch, pool):
    task = _task(tiny_method, condition_time="frame", fusion="output", pool=pool)
    offset = torch.tensor([3 * RATE - 1000, 0])  # source crops starting 1000 samples before second 3, and at 0
    batch, seen, feats = _run_and_see_condition(task, clip_batch, 2, offset=offset)
    per_second = [f.visual.amax(dim=2) if pool == "max" else f.visual_pooled for f in feats]
    segments = torch.cat(per_second)  # (2B, 10, Cv), source 1's rows first
    frames = batch["sources"].shape[-1] // 128 + 1  # torch.stft centres frame t on sample t * hop
    assert seen["cond"].shape == (4, segments.shape[-1], frames)
    for row, start in enumerate(offset.repeat(2).tolist()):
        for t in range(frames):
            torch.testing.assert_close(seen["cond"][row, :, t], segments[row, (start + 128 * t) // RATE])


def test_max_pool_needs_visual_tokens(tiny_method):
    method = tiny_method()
    method.produces = tuple(f for f in method.produces if f != "visual")
    with pytest.raises(ConfigError, match=r"task.pool=max needs AVFeatures.visual, .*use task.pool=mean"):
        SeparateTask(SeparateConfig(channels=[4, 8], pool="max"), method, DatasetInfo(("a", "b")))


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [("mask", "soft", "task.mask='soft'"), ("hop_length", 200, "task.hop_length=200"),
     ("fusion", "add", "task.fusion='add'"), ("channels", [8], "task.channels=[8]"),
     ("condition_norm", "layer", "task.condition_norm='layer'"), ("pool", "min", "task.pool='min'"),
     ("condition_time", "segment", "task.condition_time='segment'")],
)  # fmt: skip
def test_bad_config_values_are_one_line_errors(tiny_method, key, value, says):
    with pytest.raises(ConfigError) as err:
        _task(tiny_method, **{key: value})
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fusion", ["film", "concat", "output"])
def test_unet_keeps_any_size_and_uses_its_condition(fusion):
    torch.manual_seed(0)
    net = ConditionedUNet((4, 8, 16), cond_dim=3, fusion=fusion).eval()
    for p in net.condition.parameters():  # FiLM starts as the identity; give it a non-zero map
        torch.nn.init.normal_(p)
    x = torch.randn(2, 1, 37, 50)
    out = net(x, torch.randn(2, 3))
    assert out.shape == (2, 1, 37, 50)
    assert not torch.allclose(out, net(x, torch.randn(2, 3)))


@pytest.mark.parametrize("fusion", ["film", "concat", "output"])
def test_unet_per_column_condition(fusion):
    torch.manual_seed(0)
    net = ConditionedUNet((4, 8, 16), cond_dim=3, fusion=fusion).eval()
    for p in net.condition.parameters():
        torch.nn.init.normal_(p)
    x, cond = torch.randn(2, 1, 37, 50), torch.randn(2, 3)
    same = net(x, cond[:, :, None].expand(-1, -1, 50))  # (B, Cc, W): the same vector in every column
    torch.testing.assert_close(same, net(x, cond))
    moved = cond[:, :, None].repeat(1, 1, 50)
    moved[:, :, -10:] = torch.randn(2, 3, 1)  # another vector in the last 10 columns only
    changed = (net(x, moved) - same).abs().amax(dim=(0, 1, 2)) > 1e-6  # (W,) columns whose output moved
    assert changed[-10:].all()
    if fusion == "output":  # the vector of a column weights that column's maps only
        assert not changed[:-10].any()
    with pytest.raises(ValueError, match="needs the input's width 50"):
        net(x, moved[..., :49])


def test_output_fusion_weights_the_last_decoder_maps_by_the_condition():
    torch.manual_seed(0)
    net = ConditionedUNet((4, 8), cond_dim=3, fusion="output", out_channels=2).eval()
    maps = {}
    net.merge[-1].register_forward_hook(lambda _m, _i, out: maps.update(last=out))  # (B, 4, H', W')
    x, cond = torch.randn(2, 1, 9, 12), torch.randn(2, 3)
    out = net(x, cond)  # (2, 2, 9, 12)
    weights = (cond @ net.condition.proj.weight.T + net.condition.proj.bias).view(2, 2, 5)  # (B, C_out, K + 1)
    for b in range(2):
        for o in range(2):
            want = sum(weights[b, o, k] * maps["last"][b, k] for k in range(4)) + weights[b, o, 4]  # (H', W')
            torch.testing.assert_close(out[b, o], want[:9, :12])


def test_mixture_lists_and_pipeline_items(tmp_path):
    from avlearn.build import audio_preprocess
    from avlearn.config import compose_run
    from avlearn.data.pipelines.separation import read_mixture_list, read_train_list, separation_splits
    from avlearn.data.segments import segment_log_mel
    from avlearn.data.synth import SynthConfig, generate, write_mixtures

    root = generate(
        tmp_path / "synth",
        SynthConfig(
            clips=20, seed=1, num_classes=3, size=32, fps=1, avs_clips=0, avqa_clips=0, sound_clips=0, image_clips=0
        ),  # only the event clips, as the separate task renders them
        workers=1,
    )
    folder = write_mixtures(root)
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    for p in folder.iterdir():
        p.unlink()
    assert {p.name: p.read_bytes() for p in write_mixtures(root).iterdir()} == first  # the same lists again
    splits = {s: [line.split("&") for line in (root / "AVE" / f"{s}Set.txt").read_text().splitlines()]
              for s in ("train", "val", "test")}  # fmt: skip
    for split, name in (("val", "vggmusic_val_ss.csv"), ("test", "vggmusic_eval_ss.csv")):
        classes = {clip: cls for cls, clip, *_ in splits[split]}
        rows = read_mixture_list(folder / name)
        assert [r[1] for r in rows] == [f"{c}_000000" for c in classes]  # every clip first once, in order
        for _, s1, s2, c1, c2, hard in rows:
            assert s1 != s2 and s2[:-7] in classes and (c1, c2) == (classes[s1[:-7]], classes[s2[:-7]])
            assert hard == (c1 == c2)
    assert [r[1] for r in read_train_list(folder / "vggmusic_train.txt")] == [
        f"{c}_000000" for _, c, *_ in splits["train"]
    ]

    synth = ["data.clips=20", "data.synth_seed=1", "data.num_classes=3", "data.size=32", "data.fps=1"]
    cfg = compose_run(["task=separate", *synth, "data.frame_size=32", "data.workers=1", "task.train_seconds=2",
                       f"data.root={root}"])  # fmt: skip
    pre = audio_preprocess(cfg)
    data = separation_splits(cfg, pre)
    assert len(data.train) == len(splits["train"]) and len(data.test) == len(splits["test"])
    item = data.test[0]
    c = data.test.clips
    i, j, _ = data.test.pairs[0]
    torch.testing.assert_close(item["sources"], torch.stack([c.waves[i], c.waves[j]]))
    torch.testing.assert_close(item["audio"], segment_log_mel(c.feature_waves[i] + c.feature_waves[j], 10, pre))
    assert item["sources"].shape == (2, 10 * 8000) and torch.equal(item["frames_other"], c.frames[j])
    assert item["offset"] == 0
    torch.manual_seed(0)
    train = data.train[3]
    assert train["sources"].shape == (2, 2 * 8000) and train["id"].split("+")[0] == data.train.clips.ids[3]
    start = int(train["offset"])
    torch.testing.assert_close(train["sources"][0], data.train.clips.waves[3][start : start + 2 * 8000])
    assert train["id"].split("+")[1] != data.train.clips.ids[3]
    assert data.test.sample_rate == cfg.task.sample_rate


def test_mixture_lists_need_two_clips_a_split(small_synth, tmp_path):
    import shutil

    from avlearn.data.synth import write_mixtures

    root = shutil.copytree(small_synth, tmp_path / "copy")  # 12 clips: one validation clip
    with pytest.raises(DataError, match="raise data.clips"):
        write_mixtures(root)


def test_wav_writer_and_separation_plot(tmp_path):
    from avlearn.io import write_wav
    from avlearn.viz.separation import plot_separation

    sources = _sources(2).numpy()
    path = write_wav(tmp_path / "s.wav", sources[0, 0], RATE)
    with wave.open(str(path)) as w:
        back = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32767
        assert w.getframerate() == RATE and w.getnchannels() == 1
    np.testing.assert_allclose(back, sources[0, 0], atol=1 / 32767)
    png = plot_separation(tmp_path / "sep.png", sources, sources[:, ::-1], RATE, ["m0", "m1"], [[1.0, 2.0]] * 2)
    assert png.stat().st_size > 10_000
    estimates = 0.9 * sources[0] + 0.1 * sources[0, ::-1]
    written = write_separation(tmp_path / "a+b", sources[0], estimates, RATE)
    assert [p.name for p in written["files"]] == [
        "a+b.mixture.wav",
        "a+b.estimate1.wav",
        "a+b.estimate2.wav",
        "a+b.png",
    ]
    np.testing.assert_allclose(written["sdr"], bss_eval_sources(sources[0], estimates)["sdr"][0])


def test_config_dataclass_matches_the_yaml():
    from avlearn.config import compose_run

    cfg = compose_run(["task=separate"])
    assert dataclasses.asdict(SeparateConfig()) == dict(cfg.task)

"""Feature stores: stored features equal a direct forward; resume; refusals; failures; pretrained folders; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from io_media import chirp, index_frames, mux

from avlearn.cli.main import main
from avlearn.data.extract import extract_features
from avlearn.data.features import FeatureExtractor, FeatureSpec, build_backbone, weights_fingerprint
from avlearn.data.segments import segment_log_mel
from avlearn.data.store import ClipStore
from avlearn.errors import ConfigError, DataError
from avlearn.io import read_clip, write_video
from avlearn.registry import BACKBONES

SEGMENTS = 2
GOOD = ["c0", "c1", "c2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 3 s clips (24 x 32 frames at 4 fps, 16 kHz chirps), one corrupt file and one without audio."""
    root = tmp_path_factory.mktemp("feature_videos")
    for i, key in enumerate(GOOD):
        frames = index_frames(12, 24, 32) // (i + 1)
        frames[:, :, : 8 * (i + 1)] = 255 - frames[:, :, : 8 * (i + 1)]  # a different picture per clip
        write_video(root / f"{key}.mp4", frames, 4, chirp(3.0, 16000) * (i + 1) / 3, 16000)
    (root / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    mux(root / "mute.mp4", frames=index_frames(12, 24, 32), fps=4)
    return root


def _direct(name: str, video: Path, tokens: bool = False, pretrained: str | None = None) -> torch.Tensor:
    """Features computed by hand, one segment at a time: (S, C) pooled or (S, N, C) tokens."""
    model = build_backbone(name, pretrained)
    pre = model.preprocess
    per = (pre.num_frames or 1) if model.modality == "video" else 1
    times = (np.arange(SEGMENTS * per) + 0.5) / per
    rate = pre.sample_rate if model.modality == "audio" else 16000
    clip = read_clip(video, timestamps=times, duration=SEGMENTS, sample_rate=rate)
    wave = torch.from_numpy(clip.wave)
    if name.startswith("cnn_audio"):
        mel = segment_log_mel(wave, SEGMENTS, pre)  # (S, F, T): the whole clip's log-mel, cut
        inputs = [{"input_features": mel[s : s + 1]} for s in range(SEGMENTS)]
    elif model.modality == "audio":
        inputs = [model.inputs_from_wave(wave[None, s * rate : (s + 1) * rate], rate) for s in range(SEGMENTS)]
    else:
        frames = torch.from_numpy(clip.frames).unflatten(0, (SEGMENTS, per))  # (S, T, H, W, 3)
        frames = frames if model.modality == "video" else frames[:, 0]  # image backbones: (S, H, W, 3)
        inputs = [{"pixel_values": pre(frames[s : s + 1])} for s in range(SEGMENTS)]
    with torch.inference_mode():
        outs = [model.forward_features(**x) if tokens else model(**x) for x in inputs]
    return torch.cat(outs)


@pytest.mark.parametrize("visual, audio", [("cnn_visual_tiny", "cnn_audio_tiny"), ("vit_tiny", "ast_tiny")])
def test_pooled_features_equal_a_direct_forward(videos: Path, tmp_path: Path, visual: str, audio: str) -> None:
    spec = FeatureSpec(visual, audio, segments=SEGMENTS)
    report = extract_features([videos], tmp_path, spec, batch_size=2)  # batches of 2 clips, then 1
    assert (report.total, report.written) == (5, 3)
    reasons = {row["key"]: row["reason"] for row in report.failures}
    assert sorted(reasons) == ["bad", "mute"] and "no audio track" in reasons["mute"]
    store = ClipStore(tmp_path, kind="features")
    assert sorted(store.keys()) == GOOD
    for key in GOOD:
        sample = store[key]
        assert sample["visual"].shape == (SEGMENTS, 16 if visual.startswith("cnn") else 32)
        assert sample["visual"].dtype == np.float32 and sample["meta"]["frame_times"] == [0.5, 1.5]
        for slot, name in (("visual", visual), ("audio", audio)):
            expected = _direct(name, videos / f"{key}.mp4")
            torch.testing.assert_close(torch.from_numpy(sample[slot].copy()), expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(store["c0"]["visual"], store["c1"]["visual"])  # each key holds its own clip
    with pytest.raises(DataError, match=r"no sample 'bad'.*not a readable media file"):
        store["bad"]


def test_tokens_in_float16_and_a_video_backbone(videos: Path, tmp_path: Path) -> None:
    spec = FeatureSpec("videomae_tiny", "ast_tiny", segments=SEGMENTS, tokens=True, dtype="float16")
    extract_features([videos / "c1.mp4", videos / "c2.mp4"], tmp_path, spec, batch_size=2)
    store = ClipStore(tmp_path)
    sample = store["c2"]
    assert sample["meta"]["frame_times"] == [0.125, 0.375, 0.625, 0.875, 1.125, 1.375, 1.625, 1.875]
    assert store.settings["decode"]["frames_per_segment"] == 4 and store.settings["output"] == "tokens"
    for slot, name in (("visual", "videomae_tiny"), ("audio", "ast_tiny")):
        stored = torch.from_numpy(sample[slot].copy())
        assert stored.dtype == torch.float16 and stored.ndim == 3  # (S, N, C)
        torch.testing.assert_close(stored, _direct(name, videos / "c2.mp4", tokens=True).half(), rtol=2e-3, atol=2e-3)


def test_visual_only_stores_a_mute_video_and_resume_skips_done_clips(videos: Path, tmp_path: Path) -> None:
    spec = FeatureSpec("cnn_visual_tiny", segments=SEGMENTS)
    first = extract_features({k: videos / f"{k}.mp4" for k in ("c0", "mute")}, tmp_path, spec, shard_size=1)
    assert (first.written, first.failures) == (2, [])
    shards = {p.name: p.read_bytes() for p in tmp_path.glob("shard-*.tar")}
    again = extract_features([videos], tmp_path, spec, workers=2)
    assert (again.written, again.skipped, [row["key"] for row in again.failures]) == (2, 2, ["bad"])
    assert all((tmp_path / name).read_bytes() == data for name, data in shards.items())  # done shards untouched
    store = ClipStore(tmp_path)
    assert sorted(store.keys()) == ["c0", "c1", "c2", "mute"] and "audio" not in store["mute"]
    assert store["mute"]["meta"]["has_audio"] is False
    torch.testing.assert_close(
        torch.from_numpy(store["c2"]["visual"].copy()), _direct("cnn_visual_tiny", videos / "c2.mp4")
    )
    assert json.loads((tmp_path / "failures.jsonl").read_text())["key"] == "bad"


def test_other_settings_are_refused_by_the_writer_and_by_readers(videos: Path, tmp_path: Path) -> None:
    spec = FeatureSpec("cnn_visual_tiny", "cnn_audio_tiny", segments=SEGMENTS)
    extract_features([videos / "c0.mp4"], tmp_path, spec)
    for other, field in [
        (
            FeatureSpec("vit_tiny", "cnn_audio_tiny", segments=SEGMENTS),
            "'visual.backbone': ('cnn_visual_tiny', 'vit_tiny')",
        ),
        (
            FeatureSpec("cnn_visual_tiny", "cnn_audio_tiny", segments=SEGMENTS, tokens=True),
            "'output': ('pooled', 'tokens')",
        ),
        (FeatureSpec("cnn_visual_tiny", "cnn_audio_tiny", segments=3), "'segments': (2, 3)"),
        (FeatureSpec("cnn_visual_tiny", None, segments=SEGMENTS), "'audio.backbone': ('cnn_audio_tiny', None)"),
    ]:
        with pytest.raises(ConfigError, match="other settings") as err:
            extract_features([videos / "c1.mp4"], tmp_path, other)
        assert field in str(err.value)
    assert ClipStore(tmp_path).keys() == ["c0"]

    ClipStore(tmp_path, kind="features", settings=FeatureExtractor(spec).settings())  # the same settings: accepted
    ClipStore(tmp_path, settings={"visual": {"backbone": "cnn_visual_tiny"}, "segments": SEGMENTS})  # a subset
    with pytest.raises(DataError, match=r"'audio.preprocess.num_mel_bins': \(32, 16\)"):
        ClipStore(tmp_path, settings={"audio": {"preprocess": {"num_mel_bins": 16}}})
    with pytest.raises(DataError, match=r"'visual.weights': \('blake2b:"):
        ClipStore(tmp_path, settings={"visual": {"weights": weights_fingerprint(build_backbone("cnn_visual_small"))}})
    with pytest.raises(DataError, match="a store of features, not of clips"):
        ClipStore(tmp_path, kind="clips")
    with pytest.raises(DataError, match="not of clips"):
        ClipStore(tmp_path).clip("c0")


def test_pretrained_folders_are_recorded_and_used(videos: Path, tmp_path: Path) -> None:
    torch.manual_seed(123)
    BACKBONES.build("vit_tiny").model.save_pretrained(tmp_path / "weights")  # other weights than the seeded init
    spec = FeatureSpec("vit_tiny", visual_pretrained=str(tmp_path / "weights"), segments=SEGMENTS)
    extract_features([videos / "c0.mp4"], tmp_path / "store", spec)
    store = ClipStore(tmp_path / "store")
    loaded = build_backbone("vit_tiny", str(tmp_path / "weights"))
    assert store.settings["visual"]["pretrained"] == str((tmp_path / "weights").resolve())
    assert (
        store.settings["visual"]["weights"]
        == weights_fingerprint(loaded)
        != weights_fingerprint(build_backbone("vit_tiny"))
    )
    expected = _direct("vit_tiny", videos / "c0.mp4", pretrained=str(tmp_path / "weights"))
    torch.testing.assert_close(torch.from_numpy(store["c0"]["visual"].copy()), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(expected, _direct("vit_tiny", videos / "c0.mp4"), atol=1e-3)
    with pytest.raises(ConfigError, match="other settings"):  # the same backbone at random: refused
        extract_features([videos / "c1.mp4"], tmp_path / "store", FeatureSpec("vit_tiny", segments=SEGMENTS))


@pytest.mark.parametrize(
    "spec, message",
    [
        (FeatureSpec(), "name a visual and/or an audio backbone"),
        (FeatureSpec("ast_tiny"), "visual=ast_tiny is a backbone for audio"),
        (FeatureSpec(audio="clap_text_tiny"), "audio=clap_text_tiny is a backbone for text"),
        (FeatureSpec("cnn_visual_tiny", visual_pretrained="/nowhere"), "takes no pretrained weights"),
        (FeatureSpec("cnn_visual_tiny", segments=0), "segments must be >= 1"),
        (FeatureSpec("cnn_visual_tiny", audio_pretrained="/x"), r"weights for audio= \(/x\) but no audio backbone"),
        (FeatureSpec("cnn_visual_tiny", dtype="int8"), "dtype 'int8'"),
        (FeatureSpec("cnn_visual_tiny", audio="nope"), "unknown backbone 'nope'"),
    ],
)
def test_bad_specs_are_refused_before_anything_is_written(tmp_path: Path, spec: FeatureSpec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FeatureExtractor(spec)


def test_cli_writes_a_feature_store(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "store"
    args = ["extract", str(videos), "--out", str(out), "--features", "visual=cnn_visual_tiny,audio=cnn_audio_tiny"]
    status = main(
        [*args, "--segments", "2", "--batch-size", "2", "--workers", "2", "--dtype", "float16", "--no-progress"]
    )
    printed = capsys.readouterr().out
    assert status == 1 and "3 written, 0 already there, 2 failed" in printed and "bad.mp4: not a readable" in printed
    store = ClipStore(out, settings={"dtype": "float16", "segments": 2, "output": "pooled"})
    assert sorted(store.keys()) == GOOD and store["c1"]["audio"].shape == (2, 16)
    assert main([*args, "--segments", "2", "--dtype", "float16", "--no-progress"]) == 1  # resumed: nothing to do
    assert "0 written, 3 already there, 2 failed" in capsys.readouterr().out
    for extra, error in [
        (["--fps", "2"], "--fps: only for clip stores"),
        (["--tokens", "--pretrained", "visual"], "--pretrained 'visual': expected visual=NAME"),
    ]:
        assert main([*args, *extra]) == 2
        assert error in capsys.readouterr().err
    assert main(["extract", str(videos), "--out", str(tmp_path / "clips"), "--tokens"]) == 2
    assert "--tokens/--pooled: only for --features" in capsys.readouterr().err

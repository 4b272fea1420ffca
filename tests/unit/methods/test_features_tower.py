"""The ``features`` tower: a method trains on an ``avlearn extract --features`` store without running a backbone, and
sees exactly the features its backbones compute on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avlearn import register_all
from avlearn.build import build_task
from avlearn.config import compose_run
from avlearn.data.extract import extract_features
from avlearn.data.features import FeatureExtractor, FeatureSpec, build_backbone, weights_fingerprint
from avlearn.data.segments import segment_log_mel
from avlearn.data.store import ClipStore
from avlearn.errors import ConfigError
from avlearn.io import read_clip
from avlearn.methods.baseline import Baseline, BaselineConfig
from avlearn.tasks.base import DatasetInfo

register_all()
SEGMENTS, CLIPS = 4, 3
SPEC = FeatureSpec(visual="cnn_visual_tiny", audio="cnn_audio_tiny", segments=SEGMENTS, tokens=True)
INFO = DatasetInfo(("a", "b", "c"))


@pytest.fixture(scope="module")
def store(small_synth, tmp_path_factory):
    """Tokens of the tiny CNN towers for three AVSynth event clips, and the clips' video files."""
    videos = {path.stem: path for path in sorted((small_synth / "videos").glob("*.mp4"))[:CLIPS]}
    out = tmp_path_factory.mktemp("features") / "store"
    report = extract_features(videos, out, SPEC, workers=1, batch_size=2)
    assert report.written == CLIPS and not report.failures
    return out, videos


def _cached_batch(root) -> dict[str, torch.Tensor]:
    """The store's features as a batch: ``visual_features`` / ``audio_features`` (B, S, N, C), and labels."""
    data = ClipStore(root, kind="features")
    samples = [data[key] for key in data.keys()]
    batch = {f"{m}_features": torch.stack([torch.tensor(s[m]) for s in samples]) for m in ("visual", "audio")}
    return {**batch, "labels": torch.arange(len(samples) * SEGMENTS).remainder(4).view(len(samples), SEGMENTS)}


def _media_batch(videos) -> dict[str, torch.Tensor]:
    """The same clips decoded as the extractor decodes them: ``frames (B, S, H, W, 3)``, ``audio (B, S, F, T)``."""
    extractor = FeatureExtractor(SPEC)
    clips = [read_clip(path, **extractor.read_args()) for path in videos.values()]
    pre = extractor.backbones["audio"].preprocess
    frames = torch.stack([torch.from_numpy(c.frames) for c in clips])  # (B, S, H, W, 3): one frame per segment
    audio = torch.stack([segment_log_mel(torch.from_numpy(c.wave), SEGMENTS, pre) for c in clips])  # (B, S, F, T)
    return {"frames": frames, "audio": audio}


def _config(root):  # noqa: ANN202 (DictConfig)
    return compose_run(["task=ave", "method.dim=16", "backbone.visual=features", "backbone.audio=features",
                        f"backbone.store={root}"])  # fmt: skip


def test_a_method_trains_on_cached_features_equal_to_the_backbones_on_the_fly(store):
    root, videos = store
    torch.manual_seed(0)
    task = build_task(_config(root), INFO)
    settings = ClipStore(root).settings
    assert task.method.dims["visual"] == settings["visual"]["num_features"] == 16
    assert not any(p.requires_grad for p in task.method.visual_backbone.parameters())  # runs no network
    cached = _cached_batch(root)

    # The towers the store was made with (same seed, same weights), run on the decoded clips.
    towers = {m: build_backbone(SPEC.visual if m == "visual" else SPEC.audio) for m in ("visual", "audio")}
    assert all(weights_fingerprint(towers[m]) == settings[m]["weights"] for m in towers)
    live = Baseline(BaselineConfig(dim=16), towers["visual"], towers["audio"])
    live.load_state_dict(task.method.state_dict(), strict=False)  # the same temporal mixers
    task.eval(), live.eval()
    from_cache, on_the_fly = task.method(cached), live(_media_batch(videos))
    for name in ("visual", "audio", "visual_pooled", "audio_pooled"):
        torch.testing.assert_close(getattr(from_cache, name), getattr(on_the_fly, name), rtol=1e-5, atol=1e-5)

    task.train()
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    out = task(cached)
    out["loss"].backward()
    torch.optim.AdamW(task.parameters(), lr=1e-2).step()
    assert torch.isfinite(out["loss"])
    changed = {n for n, p in task.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("method.visual_time") for n in changed) and any(n.startswith("head.") for n in changed)


def test_features_towers_refuse_a_missing_store_and_methods_inside_the_towers(store, tmp_path):
    root, _ = store
    with pytest.raises(ConfigError, match=r"backbone.visual=features reads cached features: set backbone.store"):
        build_task(compose_run(["task=ave", "backbone.visual=features"]), INFO)
    with pytest.raises(ConfigError, match=r"backbone.store=.*not a store \(no index.json\)"):
        build_task(_config(tmp_path), INFO)
    dgsct = _config(root)
    dgsct.method = compose_run(["method=dgsct_tiny"]).method
    with pytest.raises(ConfigError, match="backbone.visual: DG-SCT puts adapters between a tower's blocks"):
        build_task(dgsct, INFO)
    pooled = _cached_batch(root)
    pooled["visual_features"] = pooled["visual_features"].mean(dim=2)  # (B, S, C): not the store's token layout
    with pytest.raises(ConfigError, match=r"visual_features: shape \(3, 4, 16\), expected \(B, S, N, C\)"):
        build_task(_config(root), INFO)(pooled)


def test_avlearn_train_runs_on_a_feature_store(small_synth, tmp_path):
    """`avlearn train backbone.visual=features backbone.audio=features backbone.store=...` on AVE: the pipeline
    reads the store instead of the media, the run trains and scores; a task whose pipeline cannot is refused."""
    from avlearn.engine.run import run_supervised
    from avlearn.registry import DATASETS

    splits = [DATASETS.get("ave")(small_synth, split) for split in ("train", "val", "test")]
    videos = {Path(path).stem: Path(path) for split in splits for _, path, _ in split.items}  # the AVE clips
    spec = FeatureSpec(visual="cnn_visual_tiny", audio="cnn_audio_tiny", segments=10, tokens=False)
    store = tmp_path / "store"
    assert extract_features(videos, store, spec, workers=1, batch_size=4).written == len(videos)
    towers = ["backbone.visual=features", "backbone.audio=features", f"backbone.store={store}"]
    run = ["data.name=ave", f"data.root={small_synth}", "train.epochs=2", "train.batch_size=4", "train.threads=1",
           f"out={tmp_path / 'runs'}", "method.dim=16"]  # fmt: skip
    result = run_supervised(compose_run(["task=ave", *towers, *run]))
    assert 0.0 <= result["test"]["segment_accuracy"] <= 100.0 and result["best_epoch"] >= 1
    losses = [row["train_loss"] for row in result_history(tmp_path / "runs")]
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # trained two epochs, finite losses
    with pytest.raises(ConfigError, match=r"^backbone.visual=features: task=avs_s4's pipeline decodes media"):
        run_supervised(compose_run(["task=avs_s4", *towers, *run]))


def result_history(runs) -> list[dict]:
    """The epoch records of the one run under ``runs``."""
    import json

    (log,) = runs.glob("*/*/metrics.jsonl")
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == "epoch"]

"""DG-SCT learns AVE and AVVP on AVSynth from random initialisation (tiny backbones, trainable, on CPU).

The issue's acceptance runs: AVE segment accuracy >= 90 % with avlearn's CMBS variant (``task.head=gated_events``;
400 clips, 60 epochs); AVVP segment-level F1 >= 70 for audio, visual and Type@AV with avlearn's grouping head
(``task.head=class_grouping``; 400 clips, 40 epochs), scored by
``avlearn.metrics.avvp.avvp_scores`` (the official AVVP semantics). Both are slow (10-35 minutes each on two
loaded cores): ``pytest -m slow tests/integration/test_dgsct_learning.py -s``. The AVVP data is AVSynth's ``LLP/``
folder through ``avlearn.data.pipelines.avvp`` (the LLP reader; the pipeline ``avlearn train task=avvp`` uses).
Each test is parametrised by head: avlearn's variants (``gated_events``, ``class_grouping``) and the seed heads the
tasks and recipes choose (``cmbs``; ``mgn`` has no case yet), each with its own threshold (below). ``seed`` of
``run_ave`` / ``run_avvp`` is the torch seed (the data stays fixed); measurements per head and seed:
docs/methods/dgsct.md, "Seeds per head".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

SYNTH = {"seed": 11, "num_classes": 5, "fps": 2}


def _tiny_method(size: int):  # noqa: ANN202
    import avlearn.backbones  # noqa: F401  (registers the backbones)
    from avlearn.methods.dgsct import DGSCT, DGSCTConfig
    from avlearn.registry import BACKBONES

    visual = BACKBONES.build("swinv2_tiny", image_size=size, window_size=size // 16)  # 4 stages down to 1x1
    audio = BACKBONES.build("htsat_tiny")
    return DGSCT(DGSCTConfig(num_latents=8, audio_tile=2), visual, audio)


def _audio_input():  # noqa: ANN202
    from avlearn.backbones.cnn import log_mel_input

    return log_mel_input(sample_rate=16000, n_mels=32, hop_ms=20)  # (32 mel bins = htsat_tiny's, 50 frames/s)


def _synth(root: Path, clips: int, size: int) -> Path:
    from avlearn.data.synth import SynthConfig, generate

    cfg = SynthConfig(**SYNTH, clips=clips, size=size, avs_clips=0, avqa_clips=0)
    return generate(root / "avsynth", cfg, workers=2)


def _predict(task, data, batch_size: int = 16) -> dict:  # noqa: ANN001
    """``task.predict`` over ``data``; predictions and targets concatenated over batches."""
    task.eval()
    preds, targets = {}, {}
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=batch_size):
            for key, value in task.predict(batch).items():
                preds.setdefault(key, []).append(value)
            for key, value in batch.items():
                if torch.is_tensor(value):  # ids stay out
                    targets.setdefault(key, []).append(value)
    return {k: torch.cat(v) for k, v in preds.items()}, {k: torch.cat(v) for k, v in targets.items()}


def _fit_and_test(task, data: dict, epochs: int, lr: float, seed: int) -> dict[str, float]:  # noqa: ANN001
    """AdamW with a cosine schedule, the best epoch on the validation split, its test scores.

    A loop of its own (not ``avlearn.engine``) so that this acceptance run measures the method and heads only;
    ``seed`` orders the training batches.
    """
    loader = DataLoader(data["train"], batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * len(loader), pct_start=0.1)
    best, state = -1.0, None
    for epoch in range(epochs):
        task.train()
        for batch in loader:
            task(batch)["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
        scores = task.score(*_predict(task, data["val"]))
        val = scores[task.primary_metric]
        print(f"epoch {epoch + 1}/{epochs}  val " + "  ".join(f"{k} {v:.1f}" for k, v in scores.items()), flush=True)
        if val > best:
            best, state = val, {k: v.detach().clone() for k, v in task.state_dict().items()}
    task.load_state_dict(state)
    return task.score(*_predict(task, data["test"]))


def run_ave(tmp: Path, epochs: int = 60, lr: float = 3e-4, clips: int = 400, size: int = 32,
            head: str = "gated_events", seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Train DG-SCT tiny + a CMBS head (``head``: ``gated_events`` or the seed's ``cmbs``) on AVSynth AVE; returns
    the test scores.

    lr 3e-4: at 1e-3 and above the random-init Swin-V2 tiny stays on a plateau (a linear probe of the pooled visual
    features is at chance), so the head learns from audio alone and the test accuracy stalls near 80 %.
    """
    from avlearn.data.datasets.ave import AVEDataset
    from avlearn.data.segments import decode_segments
    from avlearn.tasks.ave import AVEConfig, AVETask

    torch.manual_seed(seed)
    root = _synth(tmp, clips, size)
    splits = {s: AVEDataset(root, s) for s in ("train", "val", "test")}
    data = {s: decode_segments(d.items, size, _audio_input(), workers=2) for s, d in splits.items()}
    task = AVETask(AVEConfig(head=head, dropout=0.1, d_model=64, ffn=128, audio_dim=64, visual_dim=64),
                   _tiny_method(size), splits["train"].info)  # fmt: skip
    return _fit_and_test(task, data, epochs, lr, seed)


def run_avvp(tmp: Path, epochs: int = 40, lr: float = 3e-4, clips: int = 400, size: int = 32,
             head: str = "class_grouping", seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Train DG-SCT tiny + an AVVP head (``head``: ``class_grouping`` or the seed's ``mgn``) on AVSynth's LLP files
    (weak labels only); returns the test scores.

    As for AVE, lr 3e-4: faster rates leave the random-init Swin-V2 tiny unable to see, and the visual stream then
    reads the audio through the audio-guided visual features. 400 clips at 32 px rather than 160 at 64: with 128
    training videos the visual stream learned in some seeds only (docs/methods/dgsct.md).
    """
    from avlearn.data.pipelines.avvp import avvp_splits
    from avlearn.tasks.avvp import AVVPConfig, AVVPTask
    from avlearn.tasks.base import DatasetInfo

    torch.manual_seed(seed)
    data = avvp_splits(_synth(tmp, clips, size), size, _audio_input(), workers=2)  # LLP reader + scorer's labels
    classes = data.pop("classes")
    cfg = AVVPConfig(head=head, dim=64, temporal_dim=32, heads=4, depth_audio=1, depth_visual=1, depth_av=2)
    task = AVVPTask(cfg, _tiny_method(size), DatasetInfo(classes))
    return _fit_and_test(task, data, epochs, lr, seed)


SEED = 0  # the torch seed the tests run (``run_ave``/``run_avvp``'s ``seed``); the data (SYNTH) stays fixed
# Test segment accuracy each head must reach: gated_events (avlearn's variant) measured 91.5 (pytest), 91.75 and
# 93.25 (seeds 0 and 1 by scripts). cmbs (the seed's head): 90.50 / 89.75 / 91.75 (seeds 0 / 1 / 2 by scripts: the
# test split at the best validation epoch so far of runs stopped by time at epoch 34 / 33 / 33 of 60, best val 95.25
# / 95.0 / 94.5), so its threshold rests on 3 stopped runs: their lowest minus 5 (no finished run measured yet).
AVE_REQUIRED = {"gated_events": 90.0, "cmbs": 84.0}
# Test segment F1 (audio, visual, Type@AV) each head must reach: class_grouping measured 74.1 / 70.9 / 72.4 (pytest),
# 74.3 / 71.4 / 73.5 and 73.4 / 72.0 / 74.1 (seeds 0 and 1 by scripts). The seed's mgn has no case: no run of it has
# finished (one seed, stopped at epoch 31 of 40: validation visual F1 0.0, audio 57.2, Type@AV 19.1), so there is no
# number to set a threshold from (docs/methods/dgsct.md, "Why `mgn` never predicts a visual event").
AVVP_REQUIRED = {"class_grouping": {"segment_audio": 70.0, "segment_visual": 70.0, "segment_type_at_av": 70.0}}


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(AVE_REQUIRED))
def test_dgsct_learns_ave(tmp_path, head: str):
    """400 clips x 60 epochs. Runs (test segment accuracy): docs/methods/dgsct.md, "The seed heads on AVSynth"."""
    scores = run_ave(tmp_path, head=head, seed=SEED)
    print("AVE", head, scores)
    assert scores["segment_accuracy"] >= AVE_REQUIRED[head], scores


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(AVVP_REQUIRED))
def test_dgsct_learns_avvp(tmp_path, head: str):
    """400 clips x 40 epochs. Runs (test segment F1): docs/methods/dgsct.md, "The seed heads on AVSynth"."""
    scores = run_avvp(tmp_path, head=head, seed=SEED)
    print("AVVP", head, scores)
    for key, required in AVVP_REQUIRED[head].items():
        assert scores[key] >= required, scores

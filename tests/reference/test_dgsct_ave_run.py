"""A trained DG-SCT AVE checkpoint into an avlearn run folder: the seed's own ``MMIL_Net`` (``DG-SCT/AVE/nets/
net_trans.py``) at test size, random weights, saved as the seed saves it (a plain state dict) and converted by
``avlearn convert dgsct_ave``; ``avlearn eval`` of the run folder on a tiny AVSynth AVE test split against the seed
module applied to the same inputs, and ``avlearn predict`` of a test clip's video.

Test size: the seed's Swin-V2 and HTS-AT built as ``swinv2_tiny`` (64 px, window 4; at 32 px its last grid is 1x1,
where timm 0.6.13's Swin-V2 divides by window - 1 = 0) and ``htsat_tiny`` (16 wide, depths 1-2-1-1, 64x64
spectrogram image of 32 mel bins), 8 latent tokens, the generic front end (``method=dgsct_tiny``: the
pipeline's one-second log-mel tiled twice; the seed's torchlibrosa front end is handed that log-mel instead, its
own parity is ``test_htsat.py``). The seed head's input widths and class count are written for the paper's
backbones and AVE's 28 events; they are rebuilt here for 128-wide features and the split's classes (sizes as the
seed's: BiLSTMs 128/256 per direction, d_model 256, 4 heads, FFN 1024). Compared: every test segment's predicted
class (the seed's rule: the clip's argmax class where ``sigmoid(is_event) > 0.5``, else background) and the segment
accuracy ``avlearn eval`` prints, in float32 as the pipeline runs; the raw event and class scores in float64 (in
float32 they differ by 1.7e-5 of their scale: the adapters' unscaled latent softmaxes amplify rounding, see
``test_dgsct_method.py``)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import oracles
import torch
from oracles import assert_parity, randomise

from avlearn.build import audio_preprocess, build_splits
from avlearn.cli.main import main
from avlearn.config import compose_run
from avlearn.engine.trained import build_trained

CLASSES = 3
WIDTH, DEPTHS, HEADS = 16, (1, 2, 1, 1), (1, 2, 2, 4)
OPT = SimpleNamespace(Adapter_downsample=8, is_audio_adapter_p1=1, is_audio_adapter_p2=1, is_bn=1, is_gate=1,
                      is_before_layernorm=1, is_post_layernorm=1, is_multimodal=1, num_conv_group=2, num_tokens=8,
                      backbone_type="audioset")  # fmt: skip
# After ``recipe=dgsct_ave_paper task.head=cmbs``: the test size and a tiny AVSynth of 10 one-second segments.
OVERRIDES = ["method=dgsct_tiny", "backbone=dgsct_tiny", "method.audio_frontend=generic", "method.spec_augment=false",
             "data.name=avsynth", "data.clips=30", f"data.num_classes={CLASSES}", "data.synth_seed=5", "data.fps=1",
             "data.size=64", "data.frame_size=64", "data.sample_rate=16000", "data.hop_ms=20", "data.workers=1",
             "train.batch_size=4", "train.device=cpu"]  # fmt: skip


class _GivenLogMel(torch.nn.Module):
    """Stands in for the seed's torchlibrosa front end: the log-mel ``(B*S, T, F)`` as ``(B*S, 1, T, F)``."""

    def __init__(self) -> None:
        super().__init__()
        self.mel = torch.empty(0)

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.mel[:, None]


def _seed_model() -> torch.nn.Module:
    """The seed's ``MMIL_Net`` with ``swinv2_tiny``'s and ``htsat_tiny``'s architectures, its head rebuilt for
    128-wide features and ``CLASSES`` events."""
    swin = {"img_size": 64, "window_size": 4, "embed_dim": WIDTH, "depths": DEPTHS, "num_heads": HEADS}
    htsat = {"htsat_dim": WIDTH, "htsat_depth": list(DEPTHS), "htsat_num_head": list(HEADS), "htsat_window_size": 2,
             "htsat_spec_size": 64, "mel_bins": 32}  # fmt: skip
    model = oracles.seed_ave_model(OPT, swin, htsat)
    features = WIDTH * 8  # both towers' final width
    model.temporal_attn.v_fc, model.temporal_attn.a_fc = torch.nn.Linear(features, 512), torch.nn.Linear(features, 128)
    model.CMBS.audio_cas, model.CMBS.video_cas = torch.nn.Linear(256, CLASSES), torch.nn.Linear(256, CLASSES)
    model.CMBS.localize_module.event_classifier = torch.nn.Linear(256, CLASSES)
    randomise(model, keep=("htsat.spectrogram_extractor", "htsat.logmel_extractor"))
    model.htsat.spectrogram_extractor, model.htsat.logmel_extractor = torch.nn.Identity(), _GivenLogMel()
    return model.eval()


def _seed_outputs(model: torch.nn.Module, batch: dict[str, torch.Tensor], tile: int, pre) -> dict:  # noqa: ANN001
    """The seed on a decoded batch: ``frames (B, S, H, W, 3)``, ``audio (B, S, F, T)`` log-mel per segment (its dtype
    is the pixels')."""
    b, s = batch["frames"].shape[:2]
    pixels = pre(batch["frames"].flatten(0, 1)).unflatten(0, (b, s)).to(batch["audio"].dtype)  # (B, S, 3, h, w)
    model.htsat.logmel_extractor.mel = batch["audio"].flatten(0, 1).repeat(1, 1, tile).transpose(1, 2)  # (B*S, T', F)
    with torch.no_grad():
        is_event, event, _, _ = model([torch.zeros(b, s, 1)], pixels)  # (S, B, 1), (B, K)
    is_event = is_event[..., 0].transpose(0, 1)  # (B, S)
    labels = torch.where(is_event.sigmoid() > 0.5, event.argmax(dim=-1)[:, None], CLASSES)  # the seed's rule
    return {"is_event": is_event, "event": event, "segment_labels": labels}


def test_seed_ave_checkpoint_converts_to_a_run_that_evaluates_as_the_seed(tmp_path: Path) -> None:
    reference = _seed_model()
    torch.save(reference.state_dict(), tmp_path / "best_00.00.pt")
    overrides = [*OVERRIDES, f"data.root={tmp_path / 'avsynth'}"]
    cfg = compose_run(["recipe=dgsct_ave_paper", "task.head=cmbs", *overrides])
    test = build_splits(cfg, audio_preprocess(cfg)).test
    names = ",".join(f"class{i}" for i in range(CLASSES))
    run = tmp_path / "run"
    assert main(["convert", "dgsct_ave", str(tmp_path / "best_00.00.pt"), str(run), "--classes", names,
                 *overrides]) == 0  # fmt: skip

    _, task, _ = build_trained(run)
    tile, preprocess = cfg.method.audio_tile, task.method.visual_backbone.preprocess
    batches = list(torch.utils.data.DataLoader(test, batch_size=4))
    ours = torch.cat([task.predict(batch)["segment_labels"] for batch in batches])  # (N, S)
    seed = torch.cat([_seed_outputs(reference, batch, tile, preprocess)["segment_labels"] for batch in batches])
    labels = torch.cat([batch["labels"] for batch in batches])
    assert torch.equal(ours, seed)
    assert len(seed.unique()) > 1  # not one class everywhere

    task.double(), reference.double()
    task.method.visual_backbone.preprocess = lambda frames: preprocess(frames).double()  # (N, 3, h, w) float64
    batch = {**batches[0], "audio": batches[0]["audio"].double()}
    with torch.no_grad():
        got = task.outputs(batch)
    expected = _seed_outputs(reference, batch, tile, preprocess)
    assert_parity(got["is_event"], expected["is_event"], "is_event scores")
    assert_parity(got["event"], expected["event"], "clip class scores")

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["eval", str(run), "--split", "test", "--json"]) == 0
    accuracy = 100 * (seed == labels).double().mean().item()
    assert abs(json.loads(printed.getvalue().strip().splitlines()[-1])["segment_accuracy"] - accuracy) < 1e-9

    (video,) = (tmp_path / "avsynth").rglob(f"{test[0]['id']}.mp4")  # the first test clip, decoded by predict
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["predict", str(run), str(video), "--json"]) == 0
    timeline = json.loads(printed.getvalue()[printed.getvalue().index("{") :])
    assert [segment["class"] for segment in timeline["segments"]] == seed[0].tolist()

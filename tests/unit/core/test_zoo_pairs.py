"""Method x task zoo: every registered method (its tiny variant, with its matching backbone config) on every registered
task either builds, trains one step and predicts (and scores) on a tiny AVSynth batch, or is refused at build time
with a one-line ConfigError naming both. No accepted pair may fail later.

The batches come from the tasks' own data pipelines on a tiny AVSynth, decoded once per batch family (segment
labels, video labels, AVS masks, AVQA questions); tasks of a family share its batch. Every method is also checked
against its own contract: ``dims`` (declared at construction) equal the widths of the fields a forward produces.

Speed: one torch thread (many small steps), configs composed once per task and per method, and the prompt tasks'
frozen text tower built once per module, each token batch embedded once (it is only read).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from avlearn import register_all
from avlearn.build import audio_preprocess, build_splits, build_task
from avlearn.config import compose_run
from avlearn.errors import ConfigError
from avlearn.methods.base import Method
from avlearn.registry import BACKBONES, METHODS, TASKS
from avlearn.tasks.base import Task

register_all()

# Tiny method configs (method yaml -> its backbone yaml). One entry per registered method class.
ZOO = {
    "baseline": "small_cnn",
    "dgsct_tiny": "dgsct_tiny",
    "dgsct_fewshot_tiny": "dgsct_fewshot_tiny",
    "valor_tiny": "valor_tiny",
    "cmg_tiny": "small_cnn",
    "deepavfusion_tiny": "deepavfusion_tiny",
}
# 32 px frames and 32-bin log-mels: the inputs every tiny tower takes (htsat_tiny has 32 mel bins).
TINY = ["data.size=32", "data.frame_size=32", "data.n_mels=32", "data.num_classes=4", "data.workers=1",
        "data.clips=8", "data.avs_clips=4", "data.avqa_clips=4"]  # fmt: skip
# task -> the task whose pipeline makes its batch (tasks of one family read the same batch layout).
FAMILY = {
    **dict.fromkeys(
        [
            "ave",
            "ave_cls",
            "fewshot",
            "fewshot_ave_cls",
            "pretrain_segments",
            "zeroshot",
            "zeroshot_cls",
            "zeroshot_ave",
            "zeroshot_ave_cls",
            "pretrain_captions",
            "retrieve",
        ],
        "ave",
    ),  # fmt: skip
    **dict.fromkeys(["avvp", "fewshot_llp_cls", "zeroshot_llp_cls"], "avvp"),
    **dict.fromkeys(["avs_s4", "avs_ms3"], "avs_s4"),
    "avqa": "avqa",
    "classify": "classify",
    "separate": "separate",
    **dict.fromkeys(["caption", "pretrain"], "caption"),  # the clips with their tokenised captions
    "qa_open": "qa_open",  # the AVQA questions, with the decoder's training vocabulary in the info
}
# Per-task additions to TINY: separation mixes two clips of one split (its validation and test splits need two), on
# a small U-Net at 4 kHz.
TINY_EXTRA = {"separate": ["data.clips=20", "task.channels=[4,8]", "task.sample_rate=4000"]}
CAPTION_WIDTH = 384  # pretrain_captions, retrieve: the caption embedding of its default text tower (minilm_l6)
# Pairs the pairing rule refuses: CLIP's tokens (DG-SCT few-shot, VALOR) have no grid (no visual_pyramid for AVS, no
# grid for AVQA); CMG gives one code vector per segment (no grid or pyramid); DeepAVFusion gives no visual_pyramid
# (AVS). task=pretrain trains on a method's own loss terms: methods without any are refused (deepavfusion_tiny has its
# masked-autoencoding terms only with method.pretrain=true: tests/unit/methods/test_deepavfusion.py).
SUPERVISED = ("baseline", "dgsct_tiny", "dgsct_fewshot_tiny", "deepavfusion_tiny")
NO_GRID = ("dgsct_fewshot_tiny", "valor_tiny", "cmg_tiny")
REFUSED = {*((task, method) for task in ("avs_s4", "avs_ms3", "avqa") for method in NO_GRID),
           ("avs_s4", "deepavfusion_tiny"), ("avs_ms3", "deepavfusion_tiny"),
           *(("pretrain", method) for method in SUPERVISED)}  # fmt: skip
MEDIA = ("frames", "audio")
# Tasks that are not a model over a method: task=cma runs Cross-Modal Adaptation's protocol on a frozen encoder's
# embeddings (avlearn.cli.cma; tests/unit/methods/test_cma_protocol.py, tests/integration/test_cma_cli.py).
PROTOCOL_TASKS = {"cma"}


def test_the_zoo_covers_every_registered_method_and_task():
    assert {METHODS.get(name) for name in ZOO} == {METHODS.get(name) for name in METHODS.names()}
    assert set(FAMILY) | PROTOCOL_TASKS == set(TASKS.names())


@functools.cache
def _composed(task: str, method: str):  # noqa: ANN202 (DictConfig)
    return compose_run(
        [f"task={task}", f"method={method}", f"backbone={ZOO[method]}", *TINY, *TINY_EXTRA.get(task, [])]
    )


def _config(task: str, method: str):  # noqa: ANN202 (DictConfig)
    """The run config of ``task=task method=method backbone=<its tiny backbone>``: the task's groups composed with the
    baseline and the method's with task=ave (the groups are independent; this composes 19 configs, not 48).

    METEOR starts a Java process at every caption score (about 9 CPU-seconds): the baseline's caption pair keeps it
    (the task's METEOR wiring), the other methods' caption pairs score without it (METEOR's value against
    pycocoevalcap: tests/unit/metrics/test_separation_captioning.py, slow)."""
    cfg = _composed(task, "baseline").copy()
    cfg.method, cfg.backbone = _composed("ave", method).method, _composed("ave", method).backbone
    if task == "caption" and method != "baseline":
        cfg.task.meteor = False
    return cfg


def _memoised(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
    """``builder`` of the prompt tasks' frozen text tower, building it once and embedding each token batch once."""

    @functools.cache
    def build(**kwargs: object) -> torch.nn.Module:
        tower, embedded = builder(**kwargs), {}
        real = tower.forward

        def forward(**inputs: torch.Tensor) -> torch.Tensor:
            ids = inputs["input_ids"]
            key = (tuple(ids.shape), ids.numpy().tobytes())
            if key not in embedded:
                embedded[key] = real(**inputs)
            return embedded[key]

        tower.forward = forward
        return tower

    return build


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these many small steps run several times faster on shared cores without OpenMP waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> Callable[[str], tuple[dict, dict, object]]:
    """``get(task)``: a training batch, an evaluation batch (2 rows each, or fewer) and the DatasetInfo, decoded by
    the pipeline of the task's family from a tiny AVSynth (one cache for the module)."""
    cache: dict[str, tuple[dict, dict, object]] = {}
    pre = {repr(audio_preprocess(_config("ave", method))) for method in ZOO}
    assert len(pre) == 1, f"the tiny methods take different audio inputs: {pre}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AVLEARN_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setitem(BACKBONES._entries, "minilm_l6", _memoised(BACKBONES.get("minilm_l6")))

        def get(task: str) -> tuple[dict, dict, object]:
            family = FAMILY[task]
            if family not in cache:
                cfg = _config(family, "baseline")
                splits = build_splits(cfg, audio_preprocess(cfg))
                rows = lambda data: default_collate([data[i] for i in range(min(2, len(data)))])  # noqa: E731
                cache[family] = rows(splits.train), rows(splits.test), splits.info
            train, test, info = cache[family]
            if task in ("pretrain_captions", "retrieve"):  # their pipeline adds each clip's caption embedding
                text = lambda rows: F.normalize(torch.randn(len(rows["frames"]), CAPTION_WIDTH), dim=-1)  # noqa: E731
                train, test = {**train, "text": text(train)}, {**test, "text": text(test)}
            return train, test, info

        yield get


def _rows(value: object) -> int:
    return value.shape[0] if torch.is_tensor(value) else len(value)


@pytest.mark.parametrize("method", list(ZOO))
@pytest.mark.parametrize("task", sorted(FAMILY))
def test_pair_builds_trains_and_predicts_or_is_refused_at_build(task, method, batches):
    train, test, info = batches(task)
    cfg = _config(task, method)
    torch.manual_seed(0)
    if (task, method) in REFUSED:
        with pytest.raises(ConfigError) as refused:
            build_task(cfg, info)
        assert "\n" not in str(refused.value) and task in str(refused.value) and method in str(refused.value)
        return
    model = build_task(cfg, info).train()
    assert isinstance(model, Task) and isinstance(model.method, Method)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    try:
        out = model(train)
    except ConfigError as err:  # evaluation-only tasks (zero-shot) say how to run them instead of training
        assert "train.epochs=0" in str(err) and "\n" not in str(err)
    else:
        assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
        out["loss"].backward()
        assert any(p.grad is not None for p in model.method.parameters())  # the head's loss reaches the method
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
        after = [p for p in model.parameters() if p.requires_grad]
        assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    preds = model.eval().predict(test)
    rows = len(test["frames"]) if task != "avqa" else len(test["answer"])
    assert preds and all(_rows(value) == rows for value in preds.values())
    targets = {k: v for k, v in test.items() if k not in MEDIA}
    scores = model.score(preds, targets)
    assert model.primary_metric in scores


@pytest.mark.parametrize("method", list(ZOO))
def test_declared_widths_are_the_produced_widths(method, batches):
    """``method.dims``, known before any forward, equals the width of every field the method produces."""
    train, _, info = batches("ave")
    model = build_task(_config("ave", method), info).eval()
    feats = model.method(train)
    dims = model.method.dims
    assert set(feats.produced()) <= set(model.method.produces) and "losses" not in dims
    for name in set(feats.produced()) - {"grid"}:
        value = getattr(feats, name)
        if name == "codes":  # modality -> (B, S) indices into a codebook of dims["codes"][modality] entries
            assert all(0 <= int(value[m].min()) and int(value[m].max()) < dims[name][m] for m in value), name
            continue
        width = tuple(level.shape[2] for level in value) if name == "visual_pyramid" else value.shape[-1]
        assert dims[name] == width, name
    if "grid" in feats.produced():
        assert feats.grid[0] * feats.grid[1] == feats.visual.shape[2]


# zero-shot: no training; pretrain: the method's terms are its whole loss (tests/unit/tasks/test_pretrain.py)
@pytest.mark.parametrize("task", [t for t in sorted(FAMILY) if not t.startswith("zeroshot") and t != "pretrain"])
def test_every_task_adds_the_method_losses_to_its_loss_and_reports_each(task, batches):
    train, _, info = batches(task)
    model = build_task(_config(task, "baseline"), info).train()
    torch.manual_seed(1)
    plain = model(train)
    term, real = torch.tensor(1.25, requires_grad=True), model.method.forward
    model.method.forward = lambda batch, **request: dataclasses.replace(real(batch, **request), losses={"probe": term})
    torch.manual_seed(1)
    probed = model(train)
    assert probed["loss_probe"] == 1.25 and not probed["loss_probe"].requires_grad
    torch.testing.assert_close(probed["loss"], plain["loss"] + 1.25)
    probed["loss"].backward()
    assert term.grad == 1.0

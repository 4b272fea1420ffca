"""Cross-Modal Adaptation's few-shot protocol (``avlearn.methods.cma.protocol``) and its run settings
(``avlearn.tasks.cma``): the few-shot split (K train, min(K, 4) val per class, the whole test split), the extra pool
(prompts, another modality's own draw), a zero-shot head's first validation point against a hand-computed zero-shot
accuracy, the per-shots summary against independent grid runs, the table, and the one-line config errors."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from avlearn.errors import ConfigError, DataError
from avlearn.methods.cma import GridConfig, HeadConfig, ScheduleConfig, train_grid
from avlearn.methods.cma.protocol import (
    EXTRA_SEED,
    ProtocolConfig,
    ProtocolFeatures,
    SplitFeatures,
    extra_pool,
    few_shot_features,
    format_table,
    run_protocol,
    zero_shot_accuracy,
)
from avlearn.tasks.cma import CMAConfig, protocol_settings

C, D = 4, 12  # classes, embedding width
GRID = GridConfig((1e-2, 1e-3), (0.0, 1e-2), (2, 8))
SCHED = ScheduleConfig(iters=60, warmup=5, eval_every=20)


def _modality(g: torch.Generator, proto: torch.Tensor, noise: float) -> SplitFeatures:
    """30 train, 10 val and 20 test clips per class around the class prototypes."""
    parts = []
    for per_class in (30, 10, 20):
        y = torch.arange(C).repeat_interleave(per_class)  # (n,) class-sorted
        parts += [proto[y] + noise * torch.randn(len(y), D, generator=g, dtype=torch.float64), y]
    return SplitFeatures(*parts)


def _features(seed: int = 0) -> ProtocolFeatures:
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(C, D, generator=g, dtype=torch.float64)
    text = proto + 0.8 * torch.randn(C, D, generator=g, dtype=torch.float64)
    visual, audio = _modality(g, proto, 2.0), _modality(g, proto, 2.5)
    return ProtocolFeatures({"visual": visual, "audio": audio}, text, torch.arange(C), ("a", "b", "c", "d"))


@pytest.mark.parametrize("shots", [1, 2, 8])
def test_few_shot_split_takes_k_train_and_min_k_4_val_per_class_and_the_whole_test(shots: int) -> None:
    feats = _features()
    data = few_shot_features(feats, ProtocolConfig(shots=[shots]), shots, seed=3)
    assert torch.bincount(data.image_labels, minlength=C).tolist() == [shots] * C
    assert torch.bincount(data.val_labels, minlength=C).tolist() == [min(shots, 4)] * C
    pool = feats.modalities["visual"]
    assert torch.equal(data.test, pool.test) and torch.equal(data.test_labels, pool.test_labels)
    rows = {tuple(r.tolist()) for r in pool.train}
    assert all(tuple(r.tolist()) in rows for r in data.image)  # drawn from the train split, without repetition
    assert len({tuple(r.tolist()) for r in data.image}) == len(data.image)
    assert torch.equal(data.text, feats.text)  # the prompts are the extra stream
    other = few_shot_features(feats, ProtocolConfig(shots=[shots]), shots, seed=4)
    assert shots == 8 or not torch.equal(other.image, data.image)  # another seed, another draw (8 of 30: also)


def test_extra_pool_of_another_modality_is_its_own_draw_and_text_follows_in_order() -> None:
    feats = _features()
    cfg = ProtocolConfig(target="audio", extra=["visual", "text"], extra_shots=2)
    x, y = extra_pool(feats, cfg, seed=1)
    assert torch.bincount(y[: 2 * C], minlength=C).tolist() == [2] * C and torch.equal(y[2 * C :], torch.arange(C))
    assert torch.equal(x[2 * C :], feats.text)
    visual = feats.modalities["visual"]
    draws = {tuple(r.tolist()) for r in visual.train}
    assert all(tuple(r.tolist()) in draws for r in x[: 2 * C])
    target = few_shot_features(feats, ProtocolConfig(target="audio"), 2, seed=1)
    visual_of_target = {tuple(visual.train[i].tolist()) for i in range(len(visual.train))
                        if any(torch.equal(feats.modalities["audio"].train[i], r) for r in target.image)}  # fmt: skip
    drawn = {tuple(r.tolist()) for r in x[: 2 * C]}
    assert drawn != visual_of_target  # not the paired clips of the target's draw (seed + EXTRA_SEED)
    assert EXTRA_SEED > 0
    uni = extra_pool(feats, ProtocolConfig(extra=[]), seed=1)  # no extra samples: the prompts, for the init only
    assert torch.equal(uni[0], feats.text)


def test_zero_shot_head_first_point_is_the_zero_shot_accuracy_of_the_val_samples() -> None:
    feats = _features(1)
    cfg = ProtocolConfig(shots=[2], seeds=[5])
    rows = run_protocol(feats, cfg, HeadConfig(init="zeroshot"), SCHED, GRID)
    data = few_shot_features(feats, cfg, 2, 5)
    prompts = F.normalize(feats.text, dim=-1)  # one prompt per class: the zero-shot classifier
    by_hand = float((F.normalize(data.val, dim=-1) @ prompts.T).argmax(1).eq(data.val_labels).double().mean())
    first = rows[0].results[0].val_acc[:, 0]
    assert rows[0].results[0].steps[0] == 0 and torch.allclose(first, torch.full_like(first, by_hand))
    test_by_hand = (F.normalize(feats.modalities["visual"].test, dim=-1) @ prompts.T).argmax(1)
    expected = float(test_by_hand.eq(feats.modalities["visual"].test_labels).double().mean())
    assert zero_shot_accuracy(feats, "visual") == pytest.approx(expected)


def test_protocol_summary_is_mean_and_population_std_of_independent_grid_runs() -> None:
    feats = _features(2)
    cfg = ProtocolConfig(shots=[1, 4], seeds=[1, 2, 3])
    head = HeadConfig(init="random", modality="uni_modal")
    rows = run_protocol(feats, cfg, head, SCHED, GRID)
    assert [r.shots for r in rows] == [1, 4]
    for row in rows:
        tests = []
        for seed, got in zip(cfg.seeds, row.results, strict=True):
            alone = train_grid(few_shot_features(feats, cfg, row.shots, seed), head, SCHED, GRID, seed)
            assert alone.selected == got.selected and torch.equal(alone.best_acc, got.best_acc)
            tests.append(float(alone.test_acc[alone.selected]))
        assert row.summary["test_acc"][0] == pytest.approx(statistics.fmean(tests))
        assert row.summary["test_acc"][1] == pytest.approx(statistics.pstdev(tests))
    table = format_table(rows, "title", zero_shot=0.25)
    mean, std = rows[1].summary["test_acc"]
    assert "| 0 (zero-shot) | 25.00 |" in table and f"| 4 | {100 * mean:.2f} +- {100 * std:.2f} |" in table


@pytest.mark.parametrize(("build", "message"), [
    (lambda: ProtocolConfig(target="text"), r"^task\.target='text': expected one of visual, audio$"),
    (lambda: ProtocolConfig(target="audio", extra=["audio"]), r"^task\.extra=\['audio'\]: expected distinct"),
    (lambda: ProtocolConfig(extra=["text", "text"]), r"^task\.extra=\['text', 'text'\]"),
    (lambda: ProtocolConfig(shots=[]), r"^task\.shots=\[\] / task\.seeds"),
    (lambda: ProtocolConfig(shots=[0]), r"^task\.shots=\[0\]"),
    (lambda: ProtocolConfig(extra_shots=0), r"^task\.extra_shots=0"),
    (lambda: protocol_settings(CMAConfig(patience=-1)), r"^task\.patience=-1"),
    (lambda: protocol_settings(CMAConfig(lrs=[-1.0])), r"^cma grid\.lrs=\[-1\.0\]"),
])  # fmt: skip
def test_bad_protocol_config_is_a_one_line_error(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message) as err:
        build()
    assert "\n" not in str(err.value)


def test_cross_modal_without_extra_and_missing_modalities_are_refused() -> None:
    feats = _features()
    with pytest.raises(ConfigError, match=r"^task\.extra=\[\]: a cross_modal head needs extra samples"):
        run_protocol(feats, ProtocolConfig(extra=[]), HeadConfig(), SCHED, GRID)
    only_visual = ProtocolFeatures({"visual": feats.modalities["visual"]}, feats.text, feats.text_labels, ("a",) * C)
    with pytest.raises(DataError, match="the features hold visual; task.target='audio'"):
        run_protocol(only_visual, ProtocolConfig(target="audio", extra=["text"]), HeadConfig(), SCHED, GRID)


def test_task_settings_take_the_named_grid_unless_lists_replace_it() -> None:
    _, head, sched, grid = protocol_settings(CMAConfig(grid="adapter", head="adapter", iters=100, patience=2))
    got = (grid.lrs, grid.batch_sizes, head.head, sched.iters, sched.patience)
    assert got == ((1e-4, 1e-5, 1e-6, 1e-7), (8,), "adapter", 100, 2)
    _, _, sched, grid = protocol_settings(CMAConfig(lrs=[0.5], batch_sizes=[2]))
    assert (grid.lrs, grid.wds, grid.batch_sizes, sched.patience) == ((0.5,), (0.0, 1e-2, 1e-4), (2,), None)

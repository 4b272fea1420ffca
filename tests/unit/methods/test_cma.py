"""Cross-Modal Adaptation (``avlearn.methods.cma``): the heads against hand computations, the zero-shot weights and
WiSE-FT, the schedules (the seed's against torch's own schedulers, the fixed one's ends), the evaluation points, the
cross-/uni-modal batch split and the cyclic streams, one run (a zero-shot head's first point is zero-shot accuracy;
early stopping), the batched grid against the configurations run one by one, the summary over seeds, and the config
errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avlearn.convert import convert_cma_state_dict
from avlearn.errors import ConfigError, DataError
from avlearn.methods.cma import (
    CMAHead,
    FewShotFeatures,
    GridConfig,
    GridResult,
    HeadConfig,
    ScheduleConfig,
    initial_state,
    seed_summary,
    train_grid,
    train_grids,
    train_run,
    wiseft,
    zero_shot_weights,
)
from avlearn.methods.cma.training import (
    CyclicBatches,
    batch_split,
    batch_streams,
    eval_points,
    learning_rates,
    score_test,
    valid_batch_sizes,
)

C, D = 5, 16  # classes, feature width


def _features(
    seed: int = 0, templates: int = 2, dtype: torch.dtype = torch.float64, images: int = 40, val: int = 20
) -> FewShotFeatures:
    """A noisy few-shot split around C random class prototypes: ``images`` images, C x ``templates`` texts, ``val``
    val, 60 test."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(C, D, generator=g, dtype=dtype)

    def split(n: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % C  # (n,)
        return proto[y] + noise * torch.randn(n, D, generator=g, dtype=dtype), y

    return FewShotFeatures(*split(images, 3.0), *split(C * templates, 1.5), *split(val, 3.0), C, *split(60, 3.0))


# ---- heads


def test_linear_head_is_scaled_normalised_features_times_w() -> None:
    cfg = HeadConfig(head="linear", init="random")
    state = initial_state(cfg, torch.randn(C, D), seed=3)
    x = torch.randn(7, D)  # (B, d)
    expected = 100.0 * (x / x.norm(dim=1, keepdim=True)) @ state["weight"].T  # (B, C)
    torch.testing.assert_close(CMAHead(cfg, state)(x), expected, rtol=1e-5, atol=1e-4)


def test_adapter_head_is_a_residual_mix_before_the_linear_layer() -> None:
    cfg = HeadConfig(head="adapter", init="zeroshot", reduction=4, residual=0.2)
    state = initial_state(cfg, F.normalize(torch.randn(C, D), dim=1), seed=0)
    assert state["down"].shape == (D // 4, D) and state["up"].shape == (D, D // 4)
    x = torch.randn(6, D)
    z = x / x.norm(dim=1, keepdim=True)  # (B, d)
    mixed = 0.2 * torch.clamp(torch.clamp(z @ state["down"].T, min=0) @ state["up"].T, min=0) + 0.8 * z
    torch.testing.assert_close(CMAHead(cfg, state)(x), math.exp(4.60517) * mixed @ state["weight"].T)


def test_random_init_is_uniform_within_one_over_sqrt_d_and_seeded() -> None:
    cfg = HeadConfig(init="random")
    a, b = initial_state(cfg, torch.zeros(C, 400), 1), initial_state(cfg, torch.zeros(C, 400), 1)
    assert torch.equal(a["weight"], b["weight"])
    assert a["weight"].abs().max() <= 1 / 20 and a["weight"].abs().max() > 0.9 / 20
    assert not torch.equal(a["weight"], initial_state(cfg, torch.zeros(C, 400), 2)["weight"])


@pytest.mark.parametrize("normalize_templates", [False, True])
def test_zero_shot_weights_average_each_class_then_normalise(normalize_templates: bool) -> None:
    text, labels = torch.randn(3 * C, D), torch.arange(3 * C) % C
    expected = torch.zeros(C, D)
    for c in range(C):
        rows = [text[i] / (text[i].norm() if normalize_templates else 1) for i in range(len(labels)) if labels[i] == c]
        mean = sum(rows) / len(rows)
        expected[c] = mean / mean.norm()
    torch.testing.assert_close(zero_shot_weights(text, labels, C, normalize_templates), expected)


def test_zero_shot_weights_need_a_text_per_class() -> None:
    with pytest.raises(DataError, match="cover classes 0..4"):
        zero_shot_weights(torch.randn(3, D), torch.tensor([0, 1, 2]), C)


def test_wiseft_interpolates_with_the_normalised_zero_shot_head() -> None:
    w, zs = torch.randn(C, D), torch.randn(C, D) * 3
    torch.testing.assert_close(wiseft(w, zs, 0.5), 0.5 * w + 0.5 * zs / zs.norm(dim=1, keepdim=True))
    torch.testing.assert_close(wiseft(w, zs, 0.0), w)


# ---- schedule, evaluation points, batches


def test_faithful_schedule_is_the_seeds_warmup_then_torch_cosine() -> None:
    sched = ScheduleConfig(iters=400, warmup=50, faithful=True)
    rates = learning_rates(sched, [1e-3, 1e-4])  # (iters, G)
    assert rates.shape == (400, 2) and rates[0].tolist() == [1e-5, 1e-5]  # the first step ignores the base rate
    torch.testing.assert_close(rates[1:50, 1], 1e-4 * torch.arange(1, 50, dtype=torch.float64) / 50)
    # From step 50 on: torch's CosineAnnealingLR with T_max = iters, started at step 50.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=400)
    reference = []
    for _ in range(350):
        reference.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        cosine.step()
    torch.testing.assert_close(rates[50:, 0], torch.tensor(reference, dtype=torch.float64))
    assert rates[-1, 0] > 0.03 * 1e-3  # never completes: (1 - cos(pi 51 / 400)) / 2 = 0.04 of the base at the end


def test_fixed_schedule_warms_up_from_the_base_rate_and_completes_the_cosine() -> None:
    rates = learning_rates(ScheduleConfig(iters=1000, warmup=10), [2e-3])[:, 0]
    torch.testing.assert_close(rates[:10], 2e-3 * torch.arange(1, 11, dtype=torch.float64) / 10)
    assert rates[10] == 2e-3 and rates[-1] < 2e-3 * 1e-4
    assert bool((rates[10:].diff() <= 0).all())


def test_evaluation_points() -> None:
    assert eval_points(ScheduleConfig(iters=12800, faithful=True)) == [i + 1 for i in range(0, 12800, 100)]
    assert eval_points(ScheduleConfig(iters=12800)) == list(range(0, 12801, 100))
    assert eval_points(ScheduleConfig(iters=250, warmup=5))[-2:] == [200, 250]  # the last step is evaluated


def test_batch_split_and_the_seeds_strict_batch_size_filter() -> None:
    assert batch_split("cross_modal", 8) == (4, 4) and batch_split("cross_modal", 9) == (5, 4)
    assert batch_split("uni_modal", 32) == (32, 0)
    assert valid_batch_sizes((8, 32), "cross_modal", 20, 10) == (8,)  # EuroSAT: 10 texts; 16 of them do not fit
    assert valid_batch_sizes((8, 32), "uni_modal", 40, 10) == (8, 32)
    with pytest.raises(ConfigError, match="no batch size"):
        valid_batch_sizes((8,), "cross_modal", 4, 10)


def test_cyclic_batches_are_shuffled_passes_dropping_the_last_partial_batch() -> None:
    stream = CyclicBatches(10, 3, seed=5)
    batches = stream.take(7)  # (7, 3): 3 per pass
    first, second = torch.randperm(10, generator=torch.Generator().manual_seed(5)), None
    assert torch.equal(batches[:3].flatten(), first[:9])
    generator = torch.Generator().manual_seed(5)
    first, second, third = (torch.randperm(10, generator=generator) for _ in range(3))
    assert torch.equal(batches[3:6].flatten(), second[:9]) and torch.equal(batches[6], third[:3])


def test_cross_modal_streams_take_half_text_uni_modal_none() -> None:
    data = _features()
    image, text = batch_streams("cross_modal", 8, data, seed=1)
    assert image.size == 4 and text.size == 4 and image.n == 40 and text.n == 2 * C
    assert batch_streams("uni_modal", 8, data, seed=1)[1] is None


# ---- runs and the grid


def test_zero_shot_head_starts_at_zero_shot_accuracy() -> None:
    data = _features(templates=1)
    run = train_run(data, HeadConfig(init="zeroshot"), ScheduleConfig(iters=20, warmup=2, eval_every=10), 1e-3, 0.0,
                    8, seed=1)  # fmt: skip
    zs = F.normalize(data.val, dim=1) @ data.zero_shot().T  # (V, C)
    assert run.steps == [0, 10, 20]
    assert run.val_acc[0] == (zs.argmax(dim=1) == data.val_labels).double().mean().item()


def test_early_stopping_ends_a_run_after_patience_evaluations_without_gain() -> None:
    data = _features()
    full = train_run(data, HeadConfig(), ScheduleConfig(iters=300, warmup=5, eval_every=10), 1e-2, 0.0, 8, seed=2)
    stopped = train_run(data, HeadConfig(), ScheduleConfig(iters=300, warmup=5, eval_every=10, patience=2), 1e-2,
                        0.0, 8, seed=2)  # fmt: skip
    # Where the full curve first fails to improve twice in a row, the stopped run ends.
    best, stale, end = -1.0, 0, len(full.val_acc)
    for k, acc in enumerate(full.val_acc):
        best, stale = (acc, 0) if acc > best else (best, stale + 1)
        if stale == 2:
            end = k + 1
            break
    assert end < len(full.val_acc) and stopped.val_acc == full.val_acc[:end]


CASES = [
    ("linear", "zeroshot", "cross_modal", False, None),
    ("linear", "random", "uni_modal", True, None),
    ("adapter", "zeroshot", "cross_modal", True, None),
    ("adapter", "random", "cross_modal", False, 3),
    ("linear", "random", "cross_modal", False, 2),
]


@pytest.mark.parametrize(("head", "init", "modality", "faithful", "patience"), CASES)
def test_batched_grid_equals_the_configurations_run_one_by_one(
    head: str, init: str, modality: str, faithful: bool, patience: int | None
) -> None:
    data = _features()
    head_cfg = HeadConfig(head=head, init=init, modality=modality)
    sched = ScheduleConfig(iters=120, warmup=10, eval_every=20, patience=patience, faithful=faithful)
    grid = GridConfig(lrs=(3e-2, 1e-3), wds=(0.0, 1e-1), batch_sizes=(4, 8))
    result = train_grid(data, head_cfg, sched, grid, seed=3)
    assert len(result.configs) == 8 and result.val_acc.shape[0] == 8
    _assert_equals_runs(result, data, head_cfg, sched, seed=3)


def _assert_equals_runs(
    result: GridResult, data: FewShotFeatures, head_cfg: HeadConfig, sched: ScheduleConfig, seed: int
) -> None:
    """Each configuration of ``result`` against ``train_run`` alone: curve, best accuracy, step and state, test and
    WiSE-FT accuracy; the selection is the first maximum."""
    for k, (lr, wd, bs) in enumerate(result.configs):
        run = train_run(data, head_cfg, sched, lr, wd, bs, seed=seed)
        curve = result.val_acc[k][~result.val_acc[k].isnan()]
        assert curve.tolist() == pytest.approx(run.val_acc, abs=1e-5), (lr, wd, bs)
        assert abs(result.best_acc[k].item() - run.best_acc) <= 1e-5 and result.best_step[k] == run.best_step
        for name, tensor in run.state.items():
            torch.testing.assert_close(result.state[name][k], tensor, rtol=1e-6, atol=1e-7)
        assert abs(result.test_acc[k].item() - score_test(run.state, head_cfg, data)) <= 1e-5
        assert abs(result.wise_acc[k].item() - score_test(run.state, head_cfg, data, wise=True)) <= 1e-5
    first_best = max(range(len(result.configs)), key=lambda k: (result.best_acc[k].item(), -k))
    assert result.selected == first_best
    assert result.steps == eval_points(sched)[: result.val_acc.shape[1]]


@pytest.mark.parametrize(
    ("head", "init", "modality", "faithful", "patience"),
    [("linear", "zeroshot", "cross_modal", False, 2), ("linear", "random", "uni_modal", True, None),
     ("adapter", "random", "uni_modal", False, 3)],
)  # fmt: skip
def test_grids_of_several_splits_at_once_equal_the_configurations_run_one_by_one(
    head: str, init: str, modality: str, faithful: bool, patience: int | None
) -> None:
    """Several splits (as shots x seeds) in one stack: different pools, validation sets, seeds and valid batch sizes
    (6 images leave batch size 12 out), each configuration equal to its run alone."""
    splits = [(_features(seed=0), 3), (_features(seed=1, images=6, val=10), 5), (_features(seed=2, images=15), 3)]
    head_cfg = HeadConfig(head=head, init=init, modality=modality)
    sched = ScheduleConfig(iters=120, warmup=10, eval_every=20, patience=patience, faithful=faithful)
    grid = GridConfig(lrs=(3e-2, 1e-3), wds=(0.0, 1e-1), batch_sizes=(4, 12))
    results = train_grids(splits, head_cfg, sched, grid)
    assert [len(r.configs) for r in results] == [8, 4, 8]
    assert {bs for _, _, bs in results[1].configs} == {4}
    for result, (data, seed) in zip(results, splits, strict=True):
        _assert_equals_runs(result, data, head_cfg, sched, seed)


def test_splits_that_cannot_share_a_stack_are_a_data_error() -> None:
    grid, sched = GridConfig(), ScheduleConfig(iters=10, warmup=2)
    with pytest.raises(DataError, match="split 1 has 5 classes, 16-d torch.float32"):
        train_grids([(_features(), 1), (_features(dtype=torch.float32), 1)], HeadConfig(), sched, grid)
    with pytest.raises(DataError, match="no split to train"):
        train_grids([], HeadConfig(), sched, grid)


def test_grid_configurations_differ() -> None:
    """The equality above is not vacuous: the configurations reach different curves."""
    result = train_grid(_features(), HeadConfig(init="random"), ScheduleConfig(iters=100, warmup=5, eval_every=20),
                        GridConfig(lrs=(3e-2, 1e-4), wds=(0.0,), batch_sizes=(8,)), seed=0)  # fmt: skip
    assert not torch.equal(result.val_acc[0], result.val_acc[1])
    assert not torch.equal(result.state["weight"][0], result.state["weight"][1])


# ---- config errors


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: HeadConfig(head="mlp"), "cma.head='mlp' is not valid"),
        (lambda: HeadConfig(init="text"), "cma.init='text' is not valid"),
        (lambda: HeadConfig(modality="both"), "cma.modality='both' is not valid"),
        (lambda: HeadConfig(wiseft=1.5), r"cma.wiseft=1.5: expected a ratio"),
        (lambda: HeadConfig(reduction=0), "cma.reduction=0"),
        (lambda: ScheduleConfig(iters=10, warmup=10), "warmup=10"),
        (lambda: ScheduleConfig(patience=0), "patience=0"),
        (lambda: GridConfig(lrs=()), "grid.lrs"),
        (lambda: GridConfig(batch_sizes=(0, 8)), "grid.batch_sizes"),
    ],
)
def test_bad_config_is_a_one_line_error(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message):
        build()


def test_mismatched_features_are_a_data_error() -> None:
    data = _features()
    with pytest.raises(DataError, match="val must be"):
        FewShotFeatures(data.image, data.image_labels, data.text, data.text_labels, data.val[:, :4], data.val_labels,
                        C)  # fmt: skip
    with pytest.raises(DataError, match="image_labels must lie in 0..4"):
        FewShotFeatures(data.image, data.image_labels + 5, data.text, data.text_labels, data.val, data.val_labels, C)


def test_seed_summary_is_mean_and_population_std_of_each_seeds_selection() -> None:
    sched, grid = ScheduleConfig(iters=60, warmup=5, eval_every=20), GridConfig(lrs=(3e-2, 1e-3), wds=(0.0,))
    results = [train_grid(_features(seed=s), HeadConfig(), sched, grid, seed=s) for s in (1, 2, 3)]
    summary = seed_summary(results)
    tests = torch.tensor([r.test_acc[r.selected].item() for r in results], dtype=torch.float64)
    assert summary["test_acc"] == pytest.approx((tests.mean().item(), tests.std(correction=0).item()))
    assert set(summary) == {"val_acc", "test_acc", "wise_acc", "best_step"}
    with pytest.raises(DataError, match="one grid result per seed"):
        seed_summary([])


def test_seed_head_state_converts_to_avlearn_names() -> None:
    w, down, up = torch.randn(C, D), torch.randn(D // 4, D), torch.randn(D, D // 4)
    linear = convert_cma_state_dict({"head.weight": w})
    adapter = convert_cma_state_dict({"head.0.fc.0.weight": down, "head.0.fc.2.weight": up, "head.1.weight": w})
    assert torch.equal(linear["weight"], w) and set(linear) == {"weight"}
    assert torch.equal(adapter["down"], down) and torch.equal(adapter["up"], up) and torch.equal(adapter["weight"], w)
    with pytest.raises(DataError, match="unexpected key 'head.bias'"):
        convert_cma_state_dict({"head.weight": w, "head.bias": torch.zeros(C)})

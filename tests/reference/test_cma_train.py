"""Cross-Modal Adaptation: one head training run of the seed's own loop (``train.py`` ``train`` / ``validate``, its
``LogitHead`` / ``make_classifier_head`` / ``get_zero_shot_weights`` heads, ``build_optimizer`` AdamW and
``build_lr_scheduler`` warm-up + cosine) against ``avlearn.methods.cma.train_run`` with ``faithful`` on, on the same
random cached features, the same starting weights (the seed's, moved by ``convert_cma_state_dict``) and the same
sample order (the seed's DataLoaders draw each pass's permutation from avlearn's streams): the validation curves
agree (1e-5), as do the best step and the best weights. The seed's zero-shot weights, WiSE-FT heads and batch-size
filter equal avlearn's."""

from __future__ import annotations

import copy

import oracles
import pytest
import torch
from oracles import assert_parity
from torch.utils.data import DataLoader, Sampler

from avlearn.convert import convert_cma_state_dict
from avlearn.methods.cma import (
    FewShotFeatures,
    HeadConfig,
    ScheduleConfig,
    train_run,
    wiseft,
)
from avlearn.methods.cma.training import CyclicBatches, batch_streams, valid_batch_sizes

C, D = 6, 512  # classes; ViT-B/16's width, which the seed's make_classifier_head hard-codes


class _Rows(torch.utils.data.Dataset):
    """Rows of feature tensors, as the seed's ``TensorDataset`` / ``TextTensorDataset`` give them."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.input_tensor, self.label_tensor = tensors[:2]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[i] for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


class _Passes(Sampler):
    """Each pass (each ``iter`` of the DataLoader) is the next permutation of an avlearn stream."""

    def __init__(self, stream: CyclicBatches) -> None:
        self.stream = stream

    def __iter__(self):  # noqa: ANN204
        return iter(self.stream.permutation().tolist())

    def __len__(self) -> int:
        return self.stream.n


class _Text(torch.nn.Module):
    """The seed's text encoder at layer 0 on cached features: ``(features, eot_indices) -> features``."""

    def forward(self, text: torch.Tensor, eot_indices: torch.Tensor) -> torch.Tensor:
        return text


def _features() -> FewShotFeatures:
    g = torch.Generator().manual_seed(0)
    proto = torch.randn(C, D, generator=g)

    def split(n: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % C
        return proto[y] + noise * torch.randn(n, D, generator=g), y

    return FewShotFeatures(*split(48, 7.0), *split(2 * C, 12.0), *split(120, 7.0), C)


def _seed_head(seed_train, head: str, init: str, data: FewShotFeatures) -> torch.nn.Module:  # noqa: ANN001
    """The seed's LogitHead: its random init (global RNG), or its zero-shot weights (computed on the CPU)."""
    text = _Rows(data.text, data.text_labels, torch.zeros(len(data.text), dtype=torch.long))
    torch.manual_seed(7)
    module, _, _ = seed_train.make_classifier_head(head, "ViT-B/16", "random", text, _Text())
    if init == "zeroshot":
        linear = module if head == "linear" else module[1]
        linear.weight.data = seed_train.get_zero_shot_weights(text, C, D, _Text(), device="cpu")
    return seed_train.LogitHead(module, logit_scale=4.60517)


@pytest.fixture
def seed_train(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    module = oracles.cma_train()
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)  # LogitHead puts its scale on the GPU
    return module


def test_zero_shot_weights_match_the_seed(seed_train) -> None:  # noqa: ANN001
    data = _features()
    text = _Rows(data.text, data.text_labels, torch.zeros(len(data.text), dtype=torch.long))
    reference = seed_train.get_zero_shot_weights(text, C, D, _Text(), device="cpu")
    assert_parity(data.zero_shot(), reference, "zero-shot weights")


@pytest.mark.parametrize(
    ("head", "init", "modality", "lr", "wd", "bs"),
    [
        ("linear", "zeroshot", "cross_modal", 1e-3, 1e-2, 8),
        ("linear", "random", "uni_modal", 1e-3, 1e-4, 8),
        ("adapter", "zeroshot", "cross_modal", 1e-4, 1e-3, 8),
    ],
)
def test_one_training_run_follows_the_seeds_validation_curve(
    seed_train,
    head: str,
    init: str,
    modality: str,
    lr: float,
    wd: float,
    bs: int,  # noqa: ANN001
) -> None:
    data, iters, every = _features(), 400, 50
    logit_head = _seed_head(seed_train, head, init, data)
    start = convert_cma_state_dict(logit_head.state_dict())
    sched = ScheduleConfig(iters=iters, warmup=50, eval_every=every, faithful=True)
    ours = train_run(data, HeadConfig(head=head, init=init, modality=modality), sched, lr, wd, bs, seed=1,
                     state=copy.deepcopy(start))  # fmt: skip

    # The seed's loop on the same features, starting weights and sample order.
    image_stream, text_stream = batch_streams(modality, bs, data, seed=1)
    image_loader = DataLoader(_Rows(data.image, data.image_labels), batch_size=image_stream.size,
                              sampler=_Passes(image_stream), drop_last=True)  # fmt: skip
    text_loader = None
    if text_stream is not None:
        eot = torch.zeros(len(data.text), dtype=torch.long)
        text_loader = DataLoader(_Rows(data.text, data.text_labels, eot), batch_size=text_stream.size,
                                 sampler=_Passes(text_stream), drop_last=True)  # fmt: skip
    val_loader = DataLoader(_Rows(data.val, data.val_labels), batch_size=bs, shuffle=False)
    optimizer = seed_train.build_optimizer([{"params": logit_head.parameters()}], "adamw", lr, wd)
    scheduler = seed_train.build_lr_scheduler(optimizer, "cosine", 50, iters, warmup_type="linear", warmup_lr=1e-5)
    curve, validate = [], seed_train.validate

    def recorded(*args, **kwargs) -> float:  # noqa: ANN002, ANN003
        curve.append(validate(*args, **kwargs))
        return curve[-1]

    seed_train.validate = recorded
    try:
        result = seed_train.train(logit_head, torch.nn.Identity(), _Text(), image_loader, val_loader, text_loader,
                                  optimizer, scheduler, torch.nn.CrossEntropyLoss(), iters, eval_freq=every,
                                  device="cpu")  # fmt: skip
    finally:
        seed_train.validate = validate
    curve = curve[:-1]  # the seed validates the reloaded best state once more at the end

    assert len(curve) == len(ours.val_acc) == iters // every
    assert max(abs(a - b) for a, b in zip(curve, ours.val_acc, strict=True)) <= 1e-5, (curve, ours.val_acc)
    assert len(set(curve)) > 1  # the curve moves: the comparison is not of constants
    assert ours.best_step == result["iter"] + 1  # avlearn counts steps done, the seed the index of the last step
    best = convert_cma_state_dict({k: v for k, v in result["logit_head"].items() if k != "logit_scale"})
    for name, tensor in best.items():
        assert_parity(ours.state[name], tensor, f"{head} best {name}")


@pytest.mark.parametrize("head", ["linear", "adapter"])
def test_wiseft_matches_the_seed(seed_train, head: str) -> None:  # noqa: ANN001
    data = _features()
    module = _seed_head(seed_train, head, "random", data).head
    zero_shot = torch.randn(C, D)
    ours = convert_cma_state_dict(module.state_dict())
    reference = convert_cma_state_dict(seed_train.get_wiseft(copy.deepcopy(module), zero_shot, 0.5).state_dict())
    assert_parity(wiseft(ours["weight"], zero_shot, 0.5), reference["weight"], f"{head} WiSE-FT weight")
    for name in set(ours) - {"weight"}:  # the adapter is kept as trained
        assert torch.equal(ours[name], reference[name])


SIZES = [("cross_modal", 40, 10), ("cross_modal", 40, 16), ("uni_modal", 20, 4), ("cross_modal", 16, 40)]


@pytest.mark.parametrize(("modality", "num_image", "num_text"), SIZES)
def test_valid_batch_sizes_match_the_seed(seed_train, modality: str, num_image: int, num_text: int) -> None:  # noqa: ANN001
    hyper = {"batch_size": [8, 16, 32]}
    image = _Rows(torch.zeros(num_image, 1), torch.zeros(num_image))
    text = _Rows(torch.zeros(num_text, 1), torch.zeros(num_text))
    expected = seed_train.get_valid_batch_sizes(hyper, text, image, modality=modality)
    assert list(valid_batch_sizes((8, 16, 32), modality, num_image, num_text)) == expected

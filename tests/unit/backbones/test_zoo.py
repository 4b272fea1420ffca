"""Every registered ``*_tiny`` backbone: builds, trains, freezes as asked, and its stage loop equals its forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import avlearn.backbones  # noqa: F401  (registers the zoo)
from avlearn.backbones.base import Backbone, Hidden
from avlearn.registry import BACKBONES

TINY = [name for name in BACKBONES.names() if name.endswith("_tiny")]
FAMILIES = ("ast", "bert", "clap", "clip", "swinv2", "video_swin", "videomae", "vit", "vit_mae")


def build(name: str) -> Backbone:
    torch.manual_seed(0)
    return BACKBONES.build(name)


def training_loss(model: Backbone, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokens, pooled and (when there is one) projected outputs all feed the loss, so every part gets a gradient."""
    tokens = model.forward_features(**inputs)
    pooled = model.pool(tokens, **inputs)
    loss = tokens.square().mean() + pooled.square().mean()
    return loss + model.project(pooled).square().mean() if model.proj_dim else loss


def family(name: str) -> str:
    return BACKBONES.get(name).__module__.rsplit(".", 1)[-1]


def test_every_family_registers_a_tiny_size() -> None:
    with_tiny = {family(name) for name in TINY}
    networks = [name for name in BACKBONES.names() if name != "features"]  # features: cached inputs, no network
    assert with_tiny == {family(name) for name in networks}
    assert set(FAMILIES) <= with_tiny


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_backward(name: str) -> None:
    model = build(name).train()
    inputs = model.dummy_inputs(batch_size=2)
    tokens = model.forward_features(**inputs)
    pooled = model(**inputs)

    assert model.modality in ("audio", "visual", "video", "text")
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[-1] == model.num_features
    assert pooled.shape == (2, model.num_features)
    assert torch.isfinite(tokens).all() and torch.isfinite(pooled).all()
    assert model.preprocess.to_dict()["kind"] in ("image", "audio", "text")

    training_loss(model, inputs).backward()
    trainable = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    assert trainable
    no_grad = [n for n, p in trainable.items() if p.grad is None]
    assert not no_grad, f"trainable parameters without a gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in trainable.values())


@pytest.mark.parametrize("name", TINY)
def test_stage_loop_reproduces_forward_features(name: str) -> None:
    model = build(name).eval()
    inputs = model.dummy_inputs(batch_size=2)
    with torch.no_grad():
        expected = model.forward_features(**inputs)
        hidden = model.embed(**inputs)
        for i in range(model.num_stages):
            for j in range(len(model.stage_blocks(i))):
                hidden = model.run_block(i, j, hidden)
            hidden = model.end_stage(i, hidden)
        looped = model.head(hidden)
    assert len(model.stages()) == model.num_stages >= 2
    torch.testing.assert_close(looped, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", TINY)
def test_tokens_changed_between_blocks_change_the_output(name: str) -> None:
    """The loop really carries ``hidden.tokens``: what a method adds after the first block reaches the output."""
    model = build(name).eval()
    inputs = model.dummy_inputs(batch_size=2)
    with torch.no_grad():
        hidden = model.run_block(0, 0, model.embed(**inputs))
        nudged = Hidden(hidden.tokens + 1.0, hidden.grid, hidden.attention_mask, hidden.extra)
        for j in range(1, len(model.stage_blocks(0))):
            nudged = model.run_block(0, j, nudged)
        nudged = model.end_stage(0, nudged)
        for i in range(1, model.num_stages):
            nudged = model.run_stage(i, nudged)
        assert not torch.allclose(model.head(nudged), model.forward_features(**inputs))


@pytest.mark.parametrize("name", TINY)
def test_freeze_all_leaves_nothing_trainable(name: str) -> None:
    model = build(name).freeze("all").train()
    stats_before = {n: b.clone() for n, b in model.named_buffers() if n.endswith("running_mean")}
    tokens = model.forward_features(**model.dummy_inputs(batch_size=2))

    assert model.trainable_parameters() == []
    assert not tokens.requires_grad  # no graph reaches any parameter, so no gradient can
    assert all(p.grad is None for p in model.parameters())
    for buffer_name, before in stats_before.items():  # HTS-AT's batch norm: frozen means frozen statistics too
        assert torch.equal(dict(model.named_buffers())[buffer_name], before)


@pytest.mark.parametrize("name", TINY)
def test_freeze_all_but_norm_trains_exactly_the_norms(name: str) -> None:
    model = build(name).freeze("all_but_norm").train()
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    norm_params = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters()}
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable and trainable == norm_params

    training_loss(model, model.dummy_inputs(batch_size=2)).backward()
    assert all((p.grad is not None) == (id(p) in norm_params) for p in model.parameters())


@pytest.mark.parametrize("name", TINY)
def test_freeze_all_but_last_stage_and_back_to_none(name: str) -> None:
    model = build(name)
    fixed = {n for n, p in model.named_parameters() if not p.requires_grad}  # e.g. MAE's sin-cos table

    model.freeze("all_but_last_stage")
    last = {id(p) for p in model.stages()[-1].parameters()}
    head = {id(p) for m in model.head_modules() for p in m.parameters()}
    assert {id(p) for p in model.trainable_parameters()} == last | head
    assert not any(p.requires_grad for p in model.stages()[0].parameters())

    model.freeze("none")
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == fixed


def test_main_inputs_can_be_passed_by_position() -> None:
    vit, bert = build("vit_tiny").eval(), build("bert_tiny").eval()
    image, text = vit.dummy_inputs(batch_size=2), bert.dummy_inputs(batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(vit(image["pixel_values"]), vit(**image), rtol=0, atol=0)
        by_position = bert(text["input_ids"], attention_mask=text["attention_mask"])
        torch.testing.assert_close(by_position, bert(**text), rtol=0, atol=0)


def test_unknown_freeze_policy_is_a_clear_error() -> None:
    with pytest.raises(avlearn.backbones.base.AvlearnError, match="all_but_norm"):
        build("vit_tiny").freeze("some")


def zero_adapter(width: int) -> nn.Sequential:
    """A bottleneck whose output layer starts at zero, so adding it changes nothing until it trains."""
    adapter = nn.Sequential(nn.Linear(width, 4), nn.GELU(), nn.Linear(4, width))
    nn.init.zeros_(adapter[2].weight)
    nn.init.zeros_(adapter[2].bias)
    return adapter


@pytest.mark.parametrize("name", TINY)
def test_zero_adapters_between_blocks_of_a_frozen_backbone(name: str) -> None:
    """The use the stage loop exists for: adapters start as the identity, and only they (through the frozen
    blocks) receive gradients."""
    model = build(name).freeze("all").eval()
    inputs = model.dummy_inputs(batch_size=2)
    adapters = nn.ModuleDict()
    hidden = model.embed(**inputs)
    for i in range(model.num_stages):
        for j in range(len(model.stage_blocks(i))):
            hidden = model.run_block(i, j, hidden)
            adapter = adapters[f"{i}_{j}"] = zero_adapter(hidden.tokens.shape[-1])
            hidden.tokens = hidden.tokens + adapter(hidden.tokens)
        hidden = model.end_stage(i, hidden)
    tokens = model.head(hidden)

    torch.testing.assert_close(tokens, model.forward_features(**inputs), rtol=0, atol=0)
    tokens.square().mean().backward()
    assert all(p.grad is not None for p in adapters.parameters())
    assert all(p.grad is None for p in model.parameters())

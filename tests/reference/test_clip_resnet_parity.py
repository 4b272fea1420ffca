"""CLIP's modified ResNet: the Cross-Modal Adaptation seed's own ``ModifiedResNet`` (``engine/clip/model.py``, CLIP's
code as the seed ships it) against ``avlearn.backbones.clip_resnet.CLIPResNet``. The seed's module gets random
weights and batch-norm statistics, its state dict (under ``visual.``, as in OpenAI's checkpoints) is moved by
``convert_clip_resnet_state_dict`` into ours, whose geometry ``config_from_state_dict`` reads off the same state
dict; both run in eval mode on the same images: the embeddings and the final grids agree within 1e-5 of their
scale, for a small geometry and for RN50's own."""

from __future__ import annotations

import oracles
import pytest
import torch
from oracles import assert_parity, randomise

from avlearn.backbones.clip_resnet import CLIPResNet, config_from_state_dict, convert_clip_resnet_state_dict


def _seed_model_module():  # noqa: ANN202 (the seed's module)
    """The seed's ``engine/clip/model.py`` (it imports only numpy and torch), loaded from its file."""
    return oracles.file_module(oracles.CMA / "engine" / "clip" / "model.py", "cma_seed_clip_model")


@pytest.mark.parametrize(
    ("layers", "width", "output_dim", "resolution", "batch"),
    [((2, 1, 2, 1), 16, 24, 64, 3), ((3, 4, 6, 3), 64, 1024, 224, 2)],  # small; RN50
    ids=["small", "rn50"],
)
def test_forward_matches_the_seeds_modified_resnet(layers, width, output_dim, resolution, batch) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    seed = _seed_model_module().ModifiedResNet(layers, output_dim, width * 32 // 64, resolution, width)
    randomise(seed, seed=1)
    with torch.no_grad():  # residual branches scaled down, so that 16 blocks of random weights stay finite
        for name, p in seed.named_parameters():
            if name.endswith(("bn3.weight", "downsample.1.weight")):
                p.mul_(0.1)
    seed.eval()
    state = {f"visual.{k}": v for k, v in seed.state_dict().items()}
    ours = CLIPResNet(config_from_state_dict(state)).eval()
    ours.load_state_dict(convert_clip_resnet_state_dict(state), strict=True)
    images = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(2))
    grids = []  # the seed's final grid: its attention pool's input
    seed.attnpool.register_forward_pre_hook(lambda module, args: grids.append(args[0]))
    with torch.no_grad():
        embedding = seed(images)
        assert_parity(ours.features(images), grids[0], f"{layers} grid")
        assert_parity(ours(images), embedding, f"{layers} embedding")

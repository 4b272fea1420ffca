"""``task.head=avsegm_seed`` (DeepAVFusion's simple segmentation decoder, ``avlearn.layers.avsegm``): the seed's
layer choice, the logit size, frames decoded one by one, the learning-rate layers, the background-inclusive score
and the refusals. Parity with the seed's module: tests/reference/test_avsegm_seed_parity.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from avlearn.config.schema import TrainConfig
from avlearn.engine.optim import param_groups
from avlearn.errors import ConfigError
from avlearn.layers.avsegm import AVSegmSeedDecoder, seed_layers
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig
from avlearn.metrics.avs import miou_with_background
from avlearn.registry import BACKBONES
from avlearn.tasks.avs import AVSConfig, AVSTask
from avlearn.tasks.base import DatasetInfo

SIZE = 64  # frames; the tiny towers see 32 px (a 4 x 4 grid), the decoder gives 16 x 4 = 64 px logits


def _method() -> DeepAVFusion:
    torch.manual_seed(0)
    cfg = DeepAVFusionConfig(fusion_tokens=[4, 2, 2], fusion_heads=2)
    return DeepAVFusion(cfg, BACKBONES.build("vit_mae_tiny"), BACKBONES.build("vit_mae_audio_tiny"))


def _task(**cfg) -> AVSTask:
    return AVSTask(AVSConfig(head="avsegm_seed", avsegm_min_channels=8, **cfg), _method(), DatasetInfo(()))


def _batch(clips: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    masks = torch.zeros(clips, 5, SIZE, SIZE, dtype=torch.bool)
    masks[:, :, 8:40, 10:30] = True
    return {
        "frames": torch.randint(0, 256, (clips, 5, SIZE, SIZE, 3), dtype=torch.uint8, generator=g),
        "audio": torch.randn(clips, 5, 32, 16, generator=g),
        "masks": masks.flatten(2),
        "mask_valid": torch.tensor([[True, False, False, False, False]] * clips),  # S4 training: the first frame
    }


@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
def test_seed_layers_are_numpys_linspace_truncated(levels):
    for depth in range(1, 25):
        expected = np.linspace(0, depth - 1, levels, endpoint=True).astype(int).tolist()  # the seed's expression
        assert seed_layers(depth, levels) == expected, depth
    assert seed_layers(12) == [0, 3, 7, 11]


def test_decoder_logits_are_sixteen_times_the_grid_and_the_widths_are_the_seeds():
    decoder = AVSegmSeedDecoder(visual_dim=768, audio_dim=768).eval()
    assert [proj.out_features for proj in decoder.audio_proj] == [768, 384, 192, 128]  # max(128, 768 / 2^d)
    tokens = [torch.randn(2, 3 * 5, 768) for _ in range(4)]  # (K, N, C) on a 3 x 5 grid
    with torch.no_grad():
        assert decoder(tokens, torch.randn(2, 7, 768), (3, 5)).shape == (2, 48, 80)
    tiny = AVSegmSeedDecoder(visual_dim=32, audio_dim=16, levels=2, min_channels=8).eval()
    with torch.no_grad():
        assert tiny([torch.randn(1, 4, 32)] * 2, torch.randn(1, 3, 16), (2, 2)).shape == (1, 8, 8)


def test_training_decodes_the_annotated_frames_and_trains_method_and_decoder():
    task = _task()
    assert task.layers == [0, 0, 0, 1]  # the seed's rule at depth 2
    seen = []
    task.method.register_forward_hook(lambda _m, args, _kw, out: seen.append(args[0]["frames"].shape), with_kwargs=True)
    out = task.train()(_batch())
    out["loss"].backward()
    assert seen == [(2, 1, SIZE, SIZE, 3)]  # one annotated frame per clip, each a one-segment clip
    assert task.decoder.predictor[2].weight.grad.abs().sum() > 0
    assert task.method.fusion_tokens.grad.abs().sum() > 0
    assert task.eval().predict(_batch())["probs"].shape == (2, 5, SIZE, SIZE)


def test_each_frame_is_decoded_alone_with_its_own_second_of_audio():
    task = _task().eval()
    batch = _batch()
    other = {k: v.clone() for k, v in batch.items()}
    other["frames"][:, 1:] = 255 - other["frames"][:, 1:]  # the other frames and their audio changed
    other["audio"][:, 1:] = other["audio"][:, 1:].flip(-1)
    probs, probs_other = task.predict(batch)["probs"], task.predict(other)["probs"]
    torch.testing.assert_close(probs[:, 0], probs_other[:, 0])  # frame 0 does not see them
    assert not torch.allclose(probs[:, 1:], probs_other[:, 1:])


def test_the_decoder_trains_at_the_full_rate_and_the_method_at_the_seeds_layer_decay():
    task = _task()
    groups = param_groups(task, TrainConfig(lr=1.0, layer_decay=0.5, no_decay=False))
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    depth = task.method.num_layers()
    assert all(scale[id(p)] == 1.0 for p in task.decoder.parameters())
    assert scale[id(task.method.fusion_tokens)] == 0.5 ** (depth + 1)  # layer 0: the seed's fusion-token id
    for name, param in task.method.named_parameters():
        if param.requires_grad and id(param) in scale:
            assert scale[id(param)] == 0.5 ** (depth + 1 - task.method.layer_id(name)), name


def test_the_background_inclusive_miou_is_reported_on_request():
    task = _task(with_background=True)
    g = torch.Generator().manual_seed(2)
    probs = torch.rand(3, 5, 8, 8, generator=g)
    masks = torch.rand(3, 5, 64, generator=g) > 0.6
    valid = torch.ones(3, 5, dtype=torch.bool)
    scores = task.score({"probs": probs}, {"masks": masks, "mask_valid": valid})
    expected = miou_with_background(probs.flatten(0, 1).numpy(), masks.unflatten(-1, (8, 8)).flatten(0, 1).numpy())
    assert scores["miou_with_background"] == pytest.approx(expected)
    assert "miou_with_background" not in _task().score({"probs": probs}, {"masks": masks, "mask_valid": valid})


class _NoLayers(nn.Module):
    """A method with a pyramid and no per-layer tokens."""

    produces = ("audio_pooled", "visual_pyramid")
    dims = {"audio_pooled": 8, "visual_pyramid": (8,)}


def test_refusals_name_the_head_and_the_key():
    with pytest.raises(ConfigError, match=r"task.head='avsegm_seed' needs AVFeatures.layers"):
        AVSTask(AVSConfig(head="avsegm_seed"), _NoLayers(), DatasetInfo(()))
    with pytest.raises(ConfigError, match=r"task.head='avsbench' needs AVFeatures.visual_pyramid"):
        AVSTask(AVSConfig(), _method(), DatasetInfo(()))
    with pytest.raises(ConfigError, match=r"task.avsegm_layers=\[0, 2\].*\[0, 1\]"):
        _task(avsegm_layers=[0, 2])
    with pytest.raises(ConfigError, match="task.kl_weight=0"):
        _task(kl_weight=0.5)
    with pytest.raises(ConfigError, match="task.avsegm_min_channels=0: expected >= 1"):
        AVSTask(AVSConfig(head="avsegm_seed", avsegm_min_channels=0), _method(), DatasetInfo(()))

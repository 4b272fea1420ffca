"""DeepAVFusion's segmentation decoder (``task.head=avsegm_seed``) against the seed's ``AVSegmSimple``
(``models/avsegm.py``, with ``Up`` / ``DoubleConv`` of ``models/avsrcsep.py``) around the seed's ``DeepAVFusion``
encoder: same random weights (every tensor and batch-norm statistic randomised, the encoder moved by
``convert_deepavfusion_state_dict``, the decoder renamed one to one), the same pixels and log-mels, eval mode, fp32 ->
the same mask logits. Test size: the seed's ViT class at width 128 (the decoder's channel floor, below which the seed's
decoder does not run), depth 4 (the seed's layer choice: 0, 1, 2, 3), 32 px images (a 4 x 4 grid: 64 px logits),
32 x 48 audio, fusion tokens (4, 2, 2)."""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from functools import partial

import oracles
import pytest
import torch
from oracles import assert_parity, randomise
from torch import nn

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.convert import convert_deepavfusion_state_dict
from avlearn.methods.deepavfusion import DeepAVFusion, DeepAVFusionConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.avs import AVSConfig, AVSTask
from avlearn.tasks.base import DatasetInfo

WIDTH, DEPTH, HEADS, PATCH = 128, 4, 2, 8
IMAGE, AUDIO = (32, 32), (32, 48)
TOKENS = (4, 2, 2)


def _seed_file(name: str) -> types.ModuleType:
    """``models/<name>.py`` of the seed, imported as ``models.<name>``."""
    spec = importlib.util.spec_from_file_location(f"models.{name}", oracles.DEEPAVFUSION / "models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"models.{name}"] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def _seed_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """The seed's ``models.vits``, ``models.deepavfusion`` (oracles) and ``models.avsegm``; the seed's module names
    are set aside while ``avsegm`` imports ``models.avsrcsep``, and put back afterwards."""
    vits, deepavfusion, _ = oracles.deepavfusion_modules()
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "models"}
    try:
        sys.modules["models"] = types.ModuleType("models")
        _seed_file("avsrcsep")
        return vits, deepavfusion, _seed_file("avsegm")
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == "models"]:
            del sys.modules[k]
        sys.modules.update(saved)


def _seed() -> nn.Module:
    """The seed's AVSegmSimple (one logit: S4 / MS3) around its DeepAVFusion with the seed's ViT at test size."""
    vits, deepavfusion, avsegm = _seed_modules()

    def test_vit(pretrained: bool, **kwargs) -> nn.Module:  # noqa: ARG001 (the seed passes it)
        norm = partial(nn.LayerNorm, eps=1e-6)
        return vits.ViT(patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_ratio=2.0,
                        norm_layer=norm, **kwargs)  # fmt: skip

    vits.vit_segm_test = test_vit
    encoder = deepavfusion.DeepAVFusion(
        image_arch="vit_segm_test", image_pretrained=False, image_size=IMAGE, audio_arch="vit_segm_test",
        audio_pretrained=False, audio_size=AUDIO, fusion_layers="all", num_fusion_tkns=TOKENS,
        fusion_mlp_ratio=1.0, fusion_attn_ratio=0.25, fusion_num_heads=HEADS,
    )  # fmt: skip
    model = avsegm.AVSegmSimple(encoder, num_classes=1)
    randomise(model, seed=3, keep=("encoder.image.pos_embed", "encoder.audio.pos_embed"))
    return model.eval()


def _decoder_name(seed_name: str) -> str:
    """A seed decoder tensor name -> ``task.decoder``'s (``AVSegmSeedDecoder``)."""
    name = seed_name.replace("double_conv.", "")  # DoubleConv's Sequential is ours directly
    for theirs, ours in (("normv.", "visual_norms."), ("proja.", "audio_proj."), ("norma.", "audio_norms."),
                         ("lat.", "lateral.")):  # fmt: skip
        if name.startswith(theirs):
            return ours + name.removeprefix(theirs)
    return name  # top.*, up.*, predictor.*


def _ours(seed: nn.Module) -> AVSTask:
    cfg = DeepAVFusionConfig(fusion_tokens=list(TOKENS), fusion_heads=HEADS, attn_ratio=0.25, mlp_ratio=1.0)
    overrides = {"hidden_size": WIDTH, "num_hidden_layers": DEPTH, "num_attention_heads": HEADS,
                 "intermediate_size": 2 * WIDTH}  # fmt: skip
    method = DeepAVFusion(cfg, BACKBONES.build("vit_mae_tiny", **overrides),
                          BACKBONES.build("vit_mae_audio_tiny", **overrides))  # fmt: skip
    task = AVSTask(AVSConfig(head="avsegm_seed"), method, DatasetInfo(()))
    conversion = convert_deepavfusion_state_dict(seed.state_dict())
    decoder = {_decoder_name(name): seed.state_dict()[name] for name in conversion.dropped}
    task.method.load_state_dict(conversion.tensors)  # strict
    task.decoder.load_state_dict(decoder)  # strict: every decoder tensor of ours, none of the seed's left over
    return task.eval()


def _batch() -> dict[str, torch.Tensor]:
    """Two clips of 3 frames: 64 px frames (the towers' preprocess resizes them to 32 px), one-second log-mels."""
    generator = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8, generator=generator)
    return {"frames": frames, "audio": torch.randn(2, 3, AUDIO[0], 16, generator=generator) - 3.0}


def test_the_decoder_chooses_the_seeds_layers_and_has_its_parameters():
    seed = _seed()
    task = _ours(seed)
    assert task.layers == [0, 1, 2, 3]  # the seed's linspace(0, depth - 1, 4)
    seed_decoder = sum(p.numel() for n, p in seed.named_parameters() if not n.startswith("encoder."))
    assert sum(p.numel() for p in task.decoder.parameters()) == seed_decoder


@pytest.mark.parametrize("mask", ["all frames", "one frame per clip"])
def test_mask_logits_equal_the_seeds(mask):
    seed = _seed()
    task = _ours(seed)
    batch = _batch()
    keep = torch.ones(2, 3, dtype=torch.bool)
    if mask != "all frames":
        keep = torch.tensor([[True, False, False], [False, False, True]])  # S4 training: the annotated frames
    with torch.no_grad():
        frames = {k: v[keep][:, None] for k, v in batch.items()}  # (K, 1, ...): each frame a one-segment clip
        pixels, spec = task.method.inputs(frames)  # (K, 3, 32, 32), (K, 1, F, T)
        _, reference = seed(pixels, spec)  # (K, 1, 64, 64)
        logits = task.outputs(batch, keep)[0]  # (K, 64, 64)
    assert_parity(logits, reference[:, 0], f"avsegm_seed logits ({mask})")

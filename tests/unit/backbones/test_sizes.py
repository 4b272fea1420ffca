"""The real sizes, built on the meta device (no memory), have the published parameter counts."""

from __future__ import annotations

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the zoo)
from avlearn.registry import BACKBONES

M = 1_000_000
# (registry names built together, published count, parameters the publication counts that the backbones lack,
#  rounding of the published count, source)
PUBLISHED = [
    (("vit_base_patch16",), 86_567_656, 768 * 1000 + 1000, 1, "ViT-B/16 with its 1000-class head (torchvision/timm)"),
    (("vit_mae_base",), 86_567_656, 768 * 1000 + 1000, 1, "MAE fine-tunes the same ViT-B/16 with a 1000-class head"),
    (
        ("vit_mae_audio_base",),
        85.33 * M,
        -2 * 768,
        0.01 * M,
        "DeepAVFusion's one-channel audio ViT-B (spec 7.1); ours adds MAE's unused CLS token and its position row",
    ),
    (
        ("swinv2_large_192",),
        228.77 * M,
        1536 * 21841 + 21841,
        0.01 * M,
        "timm swinv2_large_window12_192.ms_in22k, 21841-way head (DG-SCT spec)",
    ),
    (("ast_base",), 86.6 * M, 2 * 768 + 768 * 527 + 527, 0.1 * M, "MIT/ast-finetuned-audioset-10-10-0.4593 + head"),
    (
        ("ast_valor",),
        86.6 * M,
        2 * 768 + 768 * 527 + 527 + (1212 - 128) * 768,
        0.1 * M,
        "the same AST with 4 x 32 patch positions instead of 12 x 101 (VALOR re-grids it)",
    ),  # fmt: skip
    (("video_swin_b",), 88 * M, 1024 * 400 + 400, 1 * M, "Video Swin-B with its Kinetics-400 head (Liu et al. 2022)"),
    (("videomae_base",), 87 * M, 2 * 768 + 768 * 400 + 400, 1 * M, "VideoMAE paper, ViT-B with fc_norm + K400 head"),
    (("clip_vit_b16", "clip_text_b16"), 149_620_737, 1, 1, "openai/clip-vit-base-patch16 (+ logit_scale)"),
    (("clip_vit_b32", "clip_text_b16"), 151_277_313, 1, 1, "openai/clip-vit-base-patch32 (+ logit_scale)"),
    (("clip_vit_l14", "clip_text_l14"), 427_616_513, 1, 1, "openai/clip-vit-large-patch14 (+ logit_scale)"),
    (("clap_audio_htsat", "clap_text_roberta"), 153.5 * M, 2, 0.1 * M, "laion/clap-htsat-unfused (+ 2 logit scales)"),
    (
        ("htsat_base",),
        31.33 * M,
        768 * 527 * 6 + 527 + 527 * 527 + 527 + 2 * 513 * 1024 + 513 * 64,
        0.01 * M,
        "DG-SCT's HTS-AT with its token-semantic head, 527-way head, STFT and mel weights (DG-SCT spec)",
    ),
]


def meta_parameter_count(name: str, **kwargs: object) -> int:
    with torch.device("meta"):
        model = BACKBONES.build(name, **kwargs)
    assert all(p.device.type == "meta" for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("names", "published", "extra", "rounding", "source"), PUBLISHED, ids=["+".join(p[0]) for p in PUBLISHED]
)
def test_real_size_matches_published_count(
    names: tuple[str, ...], published: float, extra: int, rounding: float, source: str
) -> None:
    ours = sum(meta_parameter_count(name) for name in names)
    assert abs(ours + extra - published) <= rounding / 2, f"{names}: {ours + extra:,} vs {published:,.0f} ({source})"


def test_bert_base_with_pooler_is_bert_base_uncased() -> None:
    assert meta_parameter_count("bert_base", pooling="pooler") == 109_482_240  # bert-base-uncased BertModel


def test_every_published_size_is_covered() -> None:
    """Every real size of a ``transformers`` family (not avlearn's own CNNs) is checked above or in test_minilm."""
    hf_families = ("ast", "bert", "clap", "clip", "swinv2", "video_swin", "videomae", "vit", "vit_mae")
    real = {n for n in BACKBONES.names() if BACKBONES.get(n).__module__.rsplit(".", 1)[-1] in hf_families}
    covered = {name for names, *_ in PUBLISHED for name in names} | {"bert_base", "minilm_l6"}
    tiny = {n for n in real if n.endswith("_tiny")}
    assert real - tiny - covered == {
        "clap_audio_htsat_fused"
    }  # clap_audio_htsat + the fusion block: no published count

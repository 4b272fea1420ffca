"""VALOR-B (the Video Swin tower) against the seed's own ``VALOR`` with ``video_encoder_type`` videoswin, fp32, eval.

``oracles.valor_seed`` assembles the seed's VALOR at tiny widths (tests/reference/test_valor_method.py); here its
CLIP is replaced by the seed's ``SwinTransformer3D`` (time stride 1, width 16, depths 1-2-1-2, window 2 x 2 x 2),
with the video contrastive head and the video-to-decoder projection at the Swin's width, as the seed's
``load_videoswin_model`` path builds them. Random weights move through ``convert_valor_state_dict`` (the
``video_encoder.*`` keys included) into avlearn's ``VALOR`` with ``video_swin_tiny`` (``faithful: true``).
Compared, for the groups with video (t-v, t-va), on 4 frames of 64 px and one caption mask draw: the MGA score
matrix (the seed mean-pools each frame's Swin tokens, ``pool_video_for_contra``), the MGA loss at the seed's own
``contra_temp`` and the MGC loss of ``forward_pt``.
"""

from __future__ import annotations

import oracles
import pytest
import torch
from oracles import assert_parity
from torch import nn

from avlearn.convert import convert_valor_state_dict
from avlearn.methods.valor import VALOR, contrastive_loss, mask_tokens

B, S, PX = 3, 4, 64
SWIN = {"embed_dim": 16, "depths": (1, 2, 1, 2), "num_heads": (1, 2, 2, 4), "window": (2, 2, 2)}
IDS = torch.tensor([[101, 1037, 3899, 102, 0, 0], [101, 2158, 2003, 5870, 102, 0], [101, 1037, 2450, 7585, 2006, 102]])
MASK = (IDS != 0).long()  # (B, L) 1 = real token


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, VALOR, object]:
    torch.manual_seed(0)
    size = oracles.ValorSize()
    seed, pretrain = oracles.valor_seed(size)
    (videoswin,) = oracles.valor_modules("model.videoswin")
    swin = videoswin.SwinTransformer3D(time_stride=1, embed_dim=SWIN["embed_dim"], depths=list(SWIN["depths"]),
                                       num_heads=list(SWIN["num_heads"]), window_size=SWIN["window"])  # fmt: skip
    del seed.clip_model
    seed.video_encoder, seed.video_encoder_type, seed.video_dim = swin, "videoswin_base_k600_22k", swin.num_features
    seed.contra_head_v = pretrain.Contra_head(swin.num_features, size.contra)
    seed.hidden_trans_video_multimodal = nn.Sequential(nn.Linear(swin.num_features, size.width),
                                                       nn.LayerNorm(size.width, eps=1e-12))  # fmt: skip
    oracles.randomise(seed, seed=1)
    ours = _ours(size)
    ours.load_state_dict(convert_valor_state_dict(seed.state_dict()).tensors)
    return seed.eval(), ours, pretrain


def _ours(size: oracles.ValorSize) -> VALOR:
    """avlearn's VALOR-B at the oracle's widths: ``video_swin_tiny`` at 64 px, the AST and BERT of ``valor_ours``."""
    from avlearn.methods.valor import VALORConfig
    from avlearn.registry import BACKBONES

    base = oracles.valor_ours(size, faithful=True)
    visual = BACKBONES.build("video_swin_tiny", size=PX, **SWIN)
    config = VALORConfig(contra_dim=size.contra, faithful=True)
    return VALOR(config, visual, base.audio_backbone, base.text_backbone).eval()


@pytest.mark.parametrize("group", ["tv", "tva"])
def test_mga_and_mgc_with_the_video_swin_match_the_seed(models: tuple, group: str, monkeypatch: pytest.MonkeyPatch):
    seed, ours, pretrain = models
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(pretrain, "ddp_allgather_with_grads", type("Gather", (), {"apply": staticmethod(lambda x: x)}))
    monkeypatch.setattr(pretrain, "ddp_allgather", lambda x: x)
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 255, (B, S, PX, PX, 3), dtype=torch.uint8, generator=g)
    audio = torch.randn(B, 1, 32, 160, generator=g)
    pixels = ours.visual_backbone.preprocess(frames)  # (B, S, 3, 64, 64)
    seed_batch = {"txt_tokens": {"bert_tokens": IDS}, "video_pixels": pixels, "audio_spectrograms": audio}
    inputs, labels = mask_tokens(IDS, MASK, 0.6, 30522, torch.Generator().manual_seed(2))
    monkeypatch.setattr(seed.text_masker, "forward", lambda tokens, prob: (inputs, labels.masked_fill(labels < 0, -1)))
    scores = []
    compute = seed.compute_fine_matrix
    monkeypatch.setattr(seed, "compute_fine_matrix", lambda *args: scores.append(compute(*args)) or scores[-1])
    with torch.no_grad():
        reference = seed.forward_pt(seed_batch, f"pt_contra%{group}_caption%{group}")
        visual, encoded_audio = ours.encode_visual(frames), ours.encode_audio(audio)
        text, _ = ours.encode_text(IDS, MASK)
        score = ours.mga_scores(ours.contrast_features(visual, encoded_audio, text, MASK))[group]
        mga = contrastive_loss(score, ours.temperature_value()) * ours.cfg.contra_weight
        mgc = ours.mgc_loss(inputs, MASK, labels, ours.memory(visual, encoded_audio)[group])
    assert visual.shape == (B, S, 2 * 2, 128)
    assert_parity(score, scores[0], f"VALOR-B MGA score {group}")
    assert_parity(mga, reference["contra_loss"], f"VALOR-B MGA loss {group}")
    assert_parity(mgc, reference["caption_loss"], f"VALOR-B MGC loss {group}")

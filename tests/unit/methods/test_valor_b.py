"""VALOR with the Video Swin tower (VALOR-B) at test size: the frames are encoded together, each frame's tokens and
its MGA token (the mean of its grid, as the seed's ``pool_video_for_contra``), the pretraining losses and their
gradients, the configs (``method=valor_b backbone=valor_b``) and the tower check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.config import compose_run
from avlearn.errors import ConfigError
from avlearn.methods.valor import CLS, SEP, VALOR, VALORConfig
from avlearn.registry import BACKBONES

B, S, PX = 2, 4, 64
IDS = torch.tensor([[CLS, 2000, 2001, SEP, 0], [CLS, 3000, 3001, 3002, SEP]])


def _model(**cfg) -> VALOR:
    torch.manual_seed(0)
    visual = BACKBONES.build("video_swin_tiny", size=PX)
    audio, text = BACKBONES.build("ast_valor_tiny"), BACKBONES.build("minilm_tiny")
    return VALOR(VALORConfig(**{"contra_dim": 16, **cfg}), visual, audio, text)


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 255, (B, S, PX, PX, 3), dtype=torch.uint8, generator=g)
    audio = torch.randn(B, S, 32, 50, generator=g)
    return {"frames": frames, "audio": audio, "text_ids": IDS, "text_mask": (IDS != 0).long()}


def test_frame_grids_mean_pooled_tokens_losses_and_gradients():
    model = _model(frames=3, audio_clips=2)
    batch = _batch()
    feats = model(batch)
    assert feats.visual.shape == (B, 3, 2 * 2, 128)  # (B, n, 64/32 * 64/32, 8 * 16)
    torch.testing.assert_close(feats.visual_pooled, feats.visual.mean(dim=2), rtol=0, atol=0)
    contrast = model.contrast_features(feats.visual, feats.audio, feats.text, batch["text_mask"])
    expected = F.normalize(model.contra_video(feats.visual.mean(dim=2)), dim=-1)  # (B, n, D)
    torch.testing.assert_close(contrast.video, expected, rtol=0, atol=0)
    assert set(feats.losses) == {"mga", "mgc"} and all(torch.isfinite(v) for v in feats.losses.values())
    sum(feats.losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == [], f"parameters without a gradient: {missing}"


def test_frames_see_each_other_through_the_video_tower():
    """A video tower, not a per-frame one: changing the first frame changes the last frame's tokens."""
    model = _model(frames=0).eval()
    frames = _batch()["frames"]
    changed = frames.clone()
    changed[:, 0] = 255 - changed[:, 0]
    with torch.no_grad():
        before, after = model.encode_visual(frames), model.encode_visual(changed)
    assert before.shape == (B, S, 4, 128) and not torch.allclose(before[:, -1], after[:, -1])


def test_valor_b_configs_compose_with_the_seeds_settings():
    cfg = compose_run(["task=pretrain", "method=valor_b", "backbone=valor_b"])
    assert (cfg.method.name, cfg.method.frames, cfg.method.audio_clips) == ("valor_b", 4, 1)
    assert (cfg.backbone.visual, cfg.backbone.audio, cfg.backbone.text) == ("video_swin_b", "ast_valor", "bert_base")
    recipe = compose_run(["recipe=valor_pretrain_b"])
    t = recipe.train
    assert (t.optimizer, t.eps, t.lr, t.weight_decay, t.schedule) == ("adamw", 1e-6, 1e-4, 0.01, "linear")
    assert (t.warmup_epochs / t.epochs, t.batch_size, t.grad_clip, recipe.task.max_words) == (0.1, 512, 5.0, 42)


def test_a_visual_tower_of_another_family_is_refused():
    audio, text = BACKBONES.build("ast_valor_tiny"), BACKBONES.build("minilm_tiny")
    with pytest.raises(ConfigError, match=r"backbone.visual must be a CLIPVision or VideoSwin tower.*got VideoMAE"):
        VALOR(VALORConfig(), BACKBONES.build("videomae_tiny"), audio, text)

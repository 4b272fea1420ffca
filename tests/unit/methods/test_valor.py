"""VALOR (``avlearn.methods.valor``) at test size: shapes and the dims contract with different frame and audio-clip
counts, MGA's score and loss against loop computations, the masking rule, the causal decoder and its key/value
cache, the re-gridded AST, and one-line errors for bad configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.backbones.ast import regrid
from avlearn.errors import ConfigError
from avlearn.methods.valor import CLS, MASK, SEP, VALOR, VALORConfig, contrastive_loss, mask_tokens, mga_score
from avlearn.registry import BACKBONES

B, S = 3, 4
IDS = torch.tensor([[CLS, 2000, 2001, 2002, SEP, 0], [CLS, 3000, SEP, 0, 0, 0], [CLS, 4000, 4001, 4002, 4003, SEP]])


def _model(**cfg) -> VALOR:
    torch.manual_seed(0)
    towers = [BACKBONES.build(n) for n in ("clip_vit_tiny", "ast_valor_tiny", "minilm_tiny")]
    return VALOR(VALORConfig(**{"contra_dim": 16, **cfg}), *towers)


def _batch(text: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    batch = {"frames": torch.randint(0, 255, (B, S, 32, 32, 3), dtype=torch.uint8, generator=g),
             "audio": torch.randn(B, S, 32, 50, generator=g)}  # fmt: skip
    if text:
        batch.update(text_ids=IDS, text_mask=(IDS != 0).long())
    return batch


def test_shapes_dims_and_losses_with_different_frame_and_clip_counts():
    model = _model(frames=2, audio_clips=3)
    feats = model(_batch())
    assert feats.visual.shape == (B, 2, 1 + 16, 32)  # (B, n, 1 + 4x4 patches, Cv)
    assert feats.audio.shape == (B, 3, 1 + 20, 32)  # (B, n_a, 1 + 2x10 patches, Ca)
    assert feats.visual_pooled.shape == (B, 2, 32) and feats.audio_pooled.shape == (B, 3, 32)
    assert feats.text.shape == (B, 6, 32) and feats.text_pooled.shape == (B, 32)
    for name in feats.produced():
        assert getattr(feats, name).shape[-1] == model.dims[name], name
    assert set(feats.losses) == {"mga", "mgc"} and all(torch.isfinite(v) for v in feats.losses.values())
    sum(feats.losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == [], f"parameters without a gradient: {missing}"


def test_without_text_no_losses_and_one_frame_and_clip_per_segment():
    feats = _model()(_batch(text=False))
    assert feats.losses == {} and feats.text is None
    assert feats.visual.shape[1] == S and feats.audio.shape[1] == S


def _loop_score(t, wt, mask, g, wg, faithful):  # noqa: ANN001, ANN202 (test helper)
    """MGA's score for one text and one group, by loops."""
    real = [i for i in range(len(t)) if mask[i]]
    w_t = torch.softmax(torch.stack([wt[i] for i in real]), 0)
    w_g = torch.softmax(wg, 0)
    sims = [[float(t[i] @ g[j]) for j in range(len(g))] for i in range(len(t))]
    t2g = sum(w_t[k] * max(sims[i]) for k, i in enumerate(real))
    rows = range(len(t)) if faithful else real
    g2t = sum(w_g[j] * max(sims[i][j] if mask[i] else 0.0 for i in rows) for j in range(len(g)))
    return float(t2g + g2t) / 2


@pytest.mark.parametrize("faithful", [False, True])
def test_mga_score_equals_loops(faithful: bool):
    g = torch.Generator().manual_seed(2)
    text = F.normalize(torch.randn(3, 5, 8, generator=g), dim=-1)
    group = F.normalize(torch.randn(4, 3, 8, generator=g), dim=-1)
    wt, wg = torch.randn(3, 5, generator=g), torch.randn(4, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    score = mga_score(text, wt, mask, group, wg, faithful)
    expected = torch.tensor([[_loop_score(text[a], wt[a], mask[a], group[b], wg[b], faithful) for b in range(4)]
                             for a in range(3)])  # fmt: skip
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-6)


def test_padding_scores_zero_only_when_faithful():
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2): the second token is padding
    group = torch.tensor([[[-1.0, 0.0]]])  # (1, 1, 2): similarity -1 with the real token
    args = (torch.zeros(1, 2), torch.tensor([[1, 0]]), group, torch.zeros(1, 1))
    assert float(mga_score(text, *args, faithful=False)) == pytest.approx(-1.0)  # both directions: -1
    assert float(mga_score(text, *args, faithful=True)) == pytest.approx(-0.5)  # group->text picks the pad's 0


@pytest.mark.parametrize("mga_time", [False, True])
def test_mga_reads_the_order_of_frames_and_clips_only_with_the_time_option(mga_time: bool):
    """The seed's MGA scores the frames and audio clips as a set (reversing the segments changes no score); the
    ``mga_time`` option adds index embeddings (absent from the weights when off), so the order counts."""
    model = _model(mga_time=mga_time).eval()
    batch = _batch()
    flipped = {**batch, "frames": batch["frames"].flip(1), "audio": batch["audio"].flip(1)}
    with torch.no_grad():
        text = model.encode_text(IDS, batch["text_mask"])[0]  # (B, L, Ct)
        scores = [model.mga_scores(model.contrast_features(model.encode_visual(b["frames"]),
                                                           model.encode_audio(b["audio"]), text, b["text_mask"]))
                  for b in (batch, flipped)]  # fmt: skip
    same = [torch.allclose(scores[0][g], scores[1][g], atol=1e-6) for g in ("tv", "ta", "tva")]
    assert same == [not mga_time] * 3
    assert any("mga_" in name for name in model.state_dict()) == mga_time


def test_contrastive_loss_is_the_mean_of_both_directions_diagonals():
    score = torch.randn(5, 5, generator=torch.Generator().manual_seed(3))
    logits = score / 0.1
    by_row = [-torch.log_softmax(logits[i], 0)[i] for i in range(5)]
    by_col = [-torch.log_softmax(logits[:, i], 0)[i] for i in range(5)]
    expected = sum(by_row + by_col) / 10
    torch.testing.assert_close(contrastive_loss(score, torch.tensor(0.1)), expected)


def test_masking_rule():
    ids = torch.randint(2000, 3000, (400, 12), generator=torch.Generator().manual_seed(4))
    ids[:, 0] = CLS
    mask = torch.ones_like(ids)
    mask[::2, 6:] = 0
    ids = ids * mask
    inputs, labels = mask_tokens(ids, mask, 0.6, 30522, torch.Generator().manual_seed(5))
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[mask == 0].any()  # never [CLS], never padding
    assert chosen.any(dim=1).all()  # every row predicts something
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    share = chosen.sum() / (mask[:, 1:].sum())
    assert abs(float(share) - 0.6) < 0.03
    masked = (inputs[chosen] == MASK).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    assert abs(float(masked) - 0.8) < 0.03 and abs(float(kept) - 0.1) < 0.03
    replaced = chosen & (inputs != MASK) & (inputs != ids)
    assert (inputs[replaced] >= 106).all() and (inputs[replaced] < 30522).all()


def test_decoder_is_causal_and_the_cache_changes_nothing():
    model = _model().eval()
    with torch.no_grad():
        feats = model(_batch(text=False))
        memory = model.memory(feats.visual, feats.audio)["tva"]  # (B, M, Cd)
        ids = torch.randint(2000, 3000, (B, 6))
        hidden = model.decode(ids, None, model.start_cache(memory))
        later = ids.clone()
        later[:, 4:] = 7
        changed = model.decode(later, None, model.start_cache(memory))
        torch.testing.assert_close(hidden[:, :4], changed[:, :4])  # positions 0..3 do not see 4..5
        assert not torch.allclose(hidden[:, 4:], changed[:, 4:])
        cache = model.start_cache(memory)
        for t in range(2, 7):  # step by step, as in decoding
            cached = model.next_token_logits(ids[:, :t], memory, cache)
            torch.testing.assert_close(cached, model.next_token_logits(ids[:, :t], memory), rtol=1e-5, atol=1e-5)
        assert model.generate(memory, 6) == model.generate(memory, 6, use_cache=False)
        beams = model.generate(memory, 6, beam_size=3)
        assert beams == model.generate(memory, 6, beam_size=3, use_cache=False)
        assert len(beams) == B and all(len(row) <= 6 and SEP not in row for row in beams)


def test_cache_over_memory_rows_equals_the_gathered_memory():
    """QA's several questions of one video: keys and values computed per video, then picked per question."""
    model = _model().eval()
    with torch.no_grad():
        feats = model(_batch(text=False))
        memory = model.memory(feats.visual, feats.audio)["tva"]  # (B, M, Cd)
        rows = torch.tensor([2, 0, 0, 1, 2])  # (N,) the memory row of each decoding
        ids = torch.randint(2000, 3000, (len(rows), 5))
        prompt = (torch.randint(2000, 3000, (len(rows), 4)), torch.ones(len(rows), 4, dtype=torch.long))
        by_rows = model.decode(ids, None, model.start_cache(memory, prompt, rows))
        gathered = model.decode(ids, None, model.start_cache(memory[rows], prompt))
        torch.testing.assert_close(by_rows, gathered)


def test_temperature_is_clamped_unless_faithful():
    model = _model()
    with torch.no_grad():
        model.temperature.fill_(5.0)
    assert model.temperature_value().item() == 1.0
    model.cfg.faithful = True
    assert model.temperature_value().item() == 5.0


def test_regrid_keeps_the_weights_and_interpolates_positions():
    torch.manual_seed(0)
    ast = BACKBONES.build("ast_tiny").eval()  # 32 bins x 64 frames, stride 8: a 3 x 7 patch grid
    same = regrid(ast, 32, 64, 8).eval()
    x = torch.randn(2, 64, 32)
    torch.testing.assert_close(same.forward_features(spectrogram=x), ast.forward_features(spectrogram=x))
    coarse = regrid(ast, 32, 64, 16)  # a 2 x 4 grid
    position = coarse.model.embeddings.position_embeddings
    assert position.shape == (1, 2 + 8, 32)
    grid = ast.model.embeddings.position_embeddings[0, 2:].T.reshape(1, 32, 3, 7)
    expected = F.interpolate(grid, size=(2, 4), mode="bilinear").flatten(2).transpose(1, 2)
    torch.testing.assert_close(position[:, 2:], expected)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"groups": ["tv", "vt"]}, "method.groups"),
        ({"groups": []}, "method.groups"),
        ({"mask_prob": 0.0}, "method.mask_prob"),
        ({"temperature": 2.0}, "method.temperature"),
        ({"frames": 40}, "method.frames"),
        ({"audio_clips": -1}, "method.audio_clips"),
    ],
)
def test_bad_config_is_a_one_line_error(cfg: dict, message: str):
    with pytest.raises(ConfigError, match=message) as err:
        _model(**cfg)
    assert "\n" not in str(err.value)


def test_wrong_towers_are_refused():
    visual, audio = BACKBONES.build("clip_vit_tiny"), BACKBONES.build("ast_valor_tiny")
    with pytest.raises(ConfigError, match="backbone.text"):
        VALOR(VALORConfig(), visual, audio, None)
    with pytest.raises(ConfigError, match="WordPiece"):
        VALOR(VALORConfig(), visual, audio, BACKBONES.build("bert_tiny"))


def test_converter_refuses_unknown_tensors():
    from avlearn.convert import convert_valor_state_dict
    from avlearn.errors import DataError

    with pytest.raises(DataError, match="no avlearn counterpart"):
        convert_valor_state_dict({"contra_head_t.linear.weight": torch.ones(2, 2), "mystery.weight": torch.ones(2)})
    converted = convert_valor_state_dict(
        {"contra_temp": torch.tensor(0.05), "txt_encoder.pooler.dense.bias": torch.ones(2)}
    )
    assert converted.tensors == {"temperature": torch.tensor(0.05)} and converted.dropped == [
        "txt_encoder.pooler.dense.bias"
    ]

"""CMG (avlearn.methods.cmg): output shapes and widths of the three variants, each objective against a hand
computation, the EMA codebook update and dead-code reset against the formulas, the CLUB auxiliary hook, config
errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.features import FeatureTower
from avlearn.config import compose_run
from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError
from avlearn.methods.cmg import CMG, Club, CMGConfig, CrossCPC, MultimodalCodebook, VideoSemantic
from avlearn.tasks.pretrain import Pretrain, PretrainConfig

B, T, GRID, C_V, C_A, C_TEXT, L = 3, 6, 4, 8, 5, 7, 4


class _Text(nn.Module):
    """A text tower stand-in: token embeddings (B, L, C_TEXT) from the ids."""

    num_features = C_TEXT

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(50, C_TEXT)

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.table(input_ids)


def _cfg(**overrides: object) -> CMGConfig:
    small = {"dim": 8, "codes": 6, "heads": 2, "layers": 1, "ff_dim": 16, "video_hidden": 8, "video_padding": 1,
             "se_reduction": 2, "audio_hidden": 4, "text_hidden": 4, "text_lstm": 3, "club_hidden": 8}  # fmt: skip
    return CMGConfig(**{**small, **overrides})


def _model(modalities: str = "avt", **overrides: object) -> CMG:
    torch.manual_seed(0)
    text = _Text() if "t" in modalities else None
    return CMG(_cfg(modalities=modalities, **overrides), FeatureTower("visual", C_V, True),
               FeatureTower("audio", C_A, False), text)  # fmt: skip


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"visual_features": torch.randn(B, T, GRID * GRID, C_V, generator=generator),  # (B, T, N, C)
            "audio_features": torch.randn(B, T, C_A, generator=generator),  # (B, T, C)
            "text_ids": torch.randint(0, 50, (B, L), generator=generator)}  # (B, L)  # fmt: skip


@pytest.mark.parametrize(("modalities", "names"), [("avt", ("audio", "visual", "text")), ("av", ("audio", "visual")),
                                                   ("at", ("audio", "text"))])  # fmt: skip
def test_each_variant_gives_its_fields_at_the_declared_widths_and_its_losses(modalities, names):
    model = _model(modalities)
    feats = model(_batch())
    assert set(feats.produced()) == set(model.produces)
    for name in feats.produced():
        value = getattr(feats, name)
        if name == "codes":
            assert set(value) == set(names) and all(v.shape == (B, T) for v in value.values())  # (B, T) indices
            assert all(int(v.max()) < model.dims["codes"][m] for m, v in value.items())
        else:
            assert value.shape[-1] == model.dims[name], name
    if "audio" in names:
        assert feats.audio.shape == (B, T, 1, 8) and feats.audio_pooled.shape == (B, T, 8)  # one token per segment
    if "text" in names:
        assert feats.text.shape == (B, T, 8) and feats.text_pooled.shape == (B, 8)  # text cut / padded to T
    expected = {f"{k}_{m}" for k in ("recon", "commit", "mi") for m in names} | {"cpc", "cmcm"}
    assert set(feats.losses) == expected == set(model.loss_terms) and all(
        torch.isfinite(v) for v in feats.losses.values()
    )
    sum(feats.losses.values()).backward()
    assert model.semantic["audio"].proj.weight.grad is not None


def test_training_forward_updates_the_codebook_and_eval_does_not():
    model = _model("av")
    before = model.codebook.embedding.clone()
    model.eval()(_batch())
    assert torch.equal(model.codebook.embedding, before) and int(model.codebook.step) == 0
    model.train()(_batch())
    assert not torch.equal(model.codebook.embedding, before) and int(model.codebook.step) == 1


def test_ema_update_follows_the_sequential_formula():
    cfg = _cfg(codes=3, dim=2, decay=0.9, epsilon=1e-5, reset_after=1000)
    book = MultimodalCodebook(cfg)
    book.ema_count.fill_(1.0)
    z = {"audio": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), "visual": torch.tensor([[[3.0, 0.0], [0.0, 3.0]]])}
    idx = {"audio": torch.tensor([[0, 1]]), "visual": torch.tensor([[0, 0]])}
    count, weight = book.ema_count.clone(), book.ema_weight.clone()
    for m, o in (("audio", "visual"), ("visual", "audio")):  # the seed's order; each mixes 1/2 own + 1/2 other
        onehot = F.one_hot(idx[m].reshape(-1), 3).float()  # (B*T, K)
        count = 0.9 * count + 0.1 * onehot.sum(0)
        n = count.sum()
        count = (count + 1e-5) / (n + 3e-5) * n
        mix = 0.5 * z[m].reshape(-1, 2) + 0.5 * z[o].reshape(-1, 2)
        weight = 0.9 * weight + 0.1 * onehot.t() @ mix
    book.update(z, idx, torch.Generator().manual_seed(0))
    torch.testing.assert_close(book.ema_count, count)
    torch.testing.assert_close(book.embedding, weight / count[:, None])
    assert book.unused.tolist() == [0, 0, 0]  # codes 0, 1 used; code 2 went from -1 to 0


@pytest.mark.parametrize("faithful", [False, True])
def test_dead_codes_are_reseeded_near_an_active_code(faithful):
    book = MultimodalCodebook(_cfg(codes=4, dim=4, reset_after=5, active_within=2, faithful=faithful))
    book.ema_count.fill_(2.0)
    book.unused.copy_(
        torch.tensor([0.0, 5.0, 3.0, 1.0])
    )  # code 1 becomes dead (6 > 5); code 0 (used now) is the only active one
    z = {"audio": torch.zeros(1, 1, 4), "visual": torch.zeros(1, 1, 4)}
    idx = {"audio": torch.tensor([[0]]), "visual": torch.tensor([[0]])}
    book.update(z, idx, torch.Generator().manual_seed(0))
    assert book.unused.tolist() == [0, 0, 4, 2]
    assert 0 < (book.embedding[1] - book.embedding[0]).abs().max() <= 1 / 1024  # a noisy copy of code 0
    refreshed = torch.allclose(book.ema_weight[1] / book.ema_count[1], book.embedding[1])
    assert refreshed != faithful  # the fix keeps the EMA statistics consistent with the re-seeded code


def test_commitment_weights_own_and_other_codes():
    book = MultimodalCodebook(_cfg())
    z = {m: torch.randn(B, T, 8) for m in ("audio", "visual", "text")}
    q = {m: torch.randn(B, T, 8) for m in z}
    got = book.commitment(z, q)
    mse = F.mse_loss
    expected = 0.5 * mse(z["audio"], q["audio"]) + 0.125 * (mse(z["audio"], q["visual"]) + mse(z["audio"], q["text"]))
    torch.testing.assert_close(got["audio"], expected)


@pytest.mark.parametrize("faithful", [False, True])
def test_cmcm_is_the_row_wise_nce_of_the_code_distributions(faithful):
    book = MultimodalCodebook(_cfg(faithful=faithful))
    z = {"audio": torch.randn(B, T, 8), "visual": torch.randn(B, T, 8)}
    p = {}
    for m, v in z.items():
        d = ((v[:, :, None] - book.embedding) ** 2).sum(-1)  # (B, T, K)
        p[m] = torch.softmax(-d.sqrt(), dim=-1).mean(dim=1)  # (B, K)
    s = p["audio"] @ torch.log(p["visual"].t() + 1e-10) + p["visual"] @ torch.log(p["audio"].t() + 1e-10)  # (B, B)
    if faithful:
        e = torch.exp(s - s.min())
        expected = -torch.log(e.diag() / (e.sum(dim=1) + 1e-5)).mean()
    else:
        expected = -torch.log_softmax(s, dim=1).diag().mean()
    torch.testing.assert_close(book.cmcm(z), 0.5 * expected, rtol=1e-5, atol=1e-6)


def test_cross_cpc_is_the_weighted_nce_of_every_pair():
    cpc = CrossCPC(("audio", "visual"), 8, self_weight=0.1)
    z = {m: torch.randn(B, T, 8) for m in ("audio", "visual")}
    t = 2
    pred = {m: cpc.predict[m](cpc.lstm[m](v[:, : t + 1])[0][:, t]) for m, v in z.items()}
    expected = 0
    for target in z:
        for source in z:
            scores = z[target][:, t + 1] @ pred[source].t()  # (B, B)
            nce = -torch.log_softmax(scores, dim=1).diag().mean()
            expected = expected + (0.1 if target == source else 1.0) * nce
    torch.testing.assert_close(cpc(z, t), expected)


def test_club_bound_and_log_likelihood_follow_the_formulas():
    club = Club(8, 4, 8)
    x, y = torch.randn(B, T, 8), torch.randn(B, T, 4)
    perm = torch.tensor([2, 0, 1])
    mu, logvar = club.mu(x), club.logvar(x)
    pos = (-((mu - y) ** 2).mean(1) / logvar.mean(1).exp()).sum(-1)
    neg = (-((mu - y[perm]) ** 2).mean(1) / logvar.mean(1).exp()).sum(-1)
    torch.testing.assert_close(club.mi_upper_bound(x, y, y, perm), (pos - neg).mean() / 2)
    loglik = ((-((mu - y) ** 2) / logvar.exp() - logvar).sum(-1)).mean() / 2
    torch.testing.assert_close(club.log_likelihood(x, y), loglik)


@pytest.mark.parametrize("faithful", [False, True])
def test_video_semantic_pools_by_attention_or_sums_when_faithful(faithful):
    pool = VideoSemantic(C_V, 2, faithful)
    grid = torch.randn(B, T, GRID, GRID, C_V)  # (B, T, H, W, C)
    x = grid.reshape(B * T, GRID * GRID, C_V)  # (B*T, N, C)
    attended = x * (1 + pool.se(x.mean(1))).unsqueeze(1)  # (B*T, N, C)
    out = pool(grid).reshape(B * T, C_V)
    if faithful:
        torch.testing.assert_close(out, attended.sum(dim=1))  # the seed's softmax over one element: weights 1
    else:  # a convex combination: between the per-channel minimum and maximum over the positions
        assert torch.all(out <= attended.max(dim=1).values + 1e-5) and torch.all(
            out >= attended.min(dim=1).values - 1e-5
        )


def test_auxiliary_trains_only_the_club_estimators_on_detached_inputs():
    model = _model("av")
    spec = model.auxiliary()
    assert {id(p) for p in spec.params} == {id(p) for p in model.club.parameters()}
    assert spec.steps == 5 and spec.lr == 1e-3 and spec.optimizer == "adam"
    with torch.no_grad():
        pairs = spec.prepare(_batch())
    optimizer = torch.optim.Adam(spec.params, lr=spec.lr)
    first = spec.loss(pairs).item()
    for _ in range(20):
        optimizer.zero_grad()
        spec.loss(pairs).backward()
        optimizer.step()
    assert spec.loss(pairs).item() < first
    assert all(p.grad is None for p in model.semantic.parameters())  # the encoders are not in the CLUB graph
    assert _model("av", objectives=False).auxiliary() is None


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="method.dim=10 is not divisible by method.heads=4"):
        CMGConfig(dim=10, heads=4)
    with pytest.raises(ConfigError, match="video_padding=2"):
        CMGConfig(video_padding=2)
    with pytest.raises(ConfigError, match="decay"):
        CMGConfig(decay=1.0)
    with pytest.raises(ConfigError, match="needs a text tower"):
        CMG(_cfg(modalities="avt"), FeatureTower("visual", C_V, True), FeatureTower("audio", C_A, False))
    with pytest.raises(ConfigError, match="modalities"):
        compose_run(["method=cmg", "method.modalities=va"])


def test_transfer_shows_the_source_codes_in_training_and_the_target_codes_in_evaluation():
    frozen = _model("avt", objectives=False)
    transfer = _model("avt", objectives=False, transfer="text_to_visual")  # the same weights (seeded)
    batch = _batch()
    reference = frozen.eval()(batch)
    codebook = transfer.codebook.embedding.clone()
    trained = transfer.train()(batch)
    assert transfer.training and not transfer.semantic.training  # no dropout in the frozen encoders
    torch.testing.assert_close(trained.audio_pooled, reference.text)  # both slots: the source (text)
    torch.testing.assert_close(trained.visual.squeeze(2), reference.text)
    assert torch.equal(transfer.codebook.embedding, codebook) and trained.losses == {}  # nothing pretrains
    tested = transfer.eval()(batch)
    torch.testing.assert_close(tested.audio_pooled, reference.visual_pooled)  # both slots: the target (visual)
    torch.testing.assert_close(tested.visual_pooled, reference.visual_pooled)
    at = _model("at", objectives=False, transfer="audio_to_text")
    assert {"visual", "visual_pooled"} <= set(at.produces) and at.dims["visual_pooled"] == 8  # the slots it fills
    assert at.train()(batch).visual_pooled.shape == (B, T, 8)


def test_transfer_needs_frozen_codes_of_both_modalities():
    with pytest.raises(ConfigError, match="method.transfer=audio_to_text"):
        _model("av", objectives=False, transfer="audio_to_text")
    with pytest.raises(ConfigError, match="objectives=false"):
        _model("av", transfer="audio_to_visual")


def test_the_mi_bound_trains_the_encoders_not_its_estimator():
    club = Club(8, 4, 8)
    x, y = torch.randn(B, T, 8, requires_grad=True), torch.randn(B, T, 4, requires_grad=True)
    club.mi_upper_bound(x, y, y, torch.tensor([1, 2, 0])).backward()
    assert x.grad is not None and y.grad is not None
    assert all(p.grad is None for p in club.parameters())


@pytest.mark.parametrize("clamp", [True, False])
def test_the_club_term_is_the_estimate_floored_at_zero_unless_unclamped(clamp):
    model = _model("av", club_clamp=clamp).train()
    sign = {"audio": 1.0, "visual": -1.0}  # a positive and a negative estimate, both depending on the codes
    for m, s in sign.items():
        model.club[m].mi_upper_bound = lambda x, y, y_all, perm, _s=s: _s * (x**2).mean()
    enc = model.encode(model.inputs(_batch()))
    losses = model.objectives(enc)
    for m, s in sign.items():
        estimate = s * (enc.q[m] ** 2).mean()
        torch.testing.assert_close(losses[f"mi_{m}"], estimate.clamp_min(0) if clamp else estimate)
    losses["mi_visual"].backward()  # below zero: no gradient reaches the encoders when clamped
    grads = [p.grad for p in model.semantic["visual"].parameters()]
    assert all(g is None or not g.any() for g in grads) == clamp


def test_a_bf16_autocast_step_keeps_an_fp32_codebook():
    model = _model("avt").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model(_batch())
    assert all(torch.isfinite(v.float()) for v in feats.losses.values())
    assert model.codebook.embedding.dtype == torch.float32 and torch.isfinite(model.codebook.embedding).all()
    sum(feats.losses.values()).backward()


def test_task_pretrain_hands_the_clubs_auxiliary_request_to_the_engine():
    model = _model("avt")
    task = Pretrain(PretrainConfig(), model, DatasetInfo(("a", "b"), 10))
    batch = _batch()
    batch["caption_ids"], batch["caption_mask"] = batch.pop("text_ids"), torch.ones(B, L, dtype=torch.long)
    spec = task.auxiliary()
    assert {id(p) for p in spec.params} == {id(p) for p in model.club.parameters()}
    pairs = spec.prepare(batch)  # reads the captions as the method's text_ids
    assert set(pairs) == {"audio", "visual", "text"} and pairs["text"][0].shape == (B, T, 8)
    assert task(batch)["loss"].requires_grad

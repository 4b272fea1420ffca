"""CMG parity with the seed's AVT model (haihuangcode/CMG ``main_model_2``, ``CPC``, ``CLUB``; float64, random weights
moved by ``convert_cmg_state_dict``, dropout off, the seed's bugs kept: ``faithful=True``).

* the forward: each modality's code vectors and every loss term (reconstruction, commitment, CLUB MI, Cross-CPC,
  CMCM) equal the seed's, with the seed's random draws (CLUB permutations, the CPC step) replayed;
* one pretraining step, as the seed's ``pretrain.py`` runs it (5 Adam steps of the CLUB estimators through avlearn's
  auxiliary-optimizer hook, the main loss, per-module gradient clipping at 0.5, Adam 4e-4, the EMA codebook update)
  leaves the same parameters and codebook buffers.

Widths are small except where the seed fixes them (D = 256, 4 heads, 1024 feed-forward).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import oracles
import pytest
import torch
from torch import nn

from avlearn.backbones.features import FeatureTower
from avlearn.convert import convert_cmg_state_dict
from avlearn.engine.auxiliary import auxiliary_steps, build_auxiliary
from avlearn.methods.cmg import CMG, CMGConfig

B, T, GRID, C_V, C_A, C_TOKEN, LSTM, HIDDEN, CODES, CLUB_HIDDEN = 6, 10, 7, 32, 16, 24, 8, 16, 40, 32
SEED_NAMES_BACK = {"audio": "audio", "video": "visual", "text": "text"}
BUFFERS = ("codebook.embedding", "codebook.ema_count", "codebook.ema_weight", "codebook.unused")


class _TextTokens(nn.Module):
    """A stand-in text tower (the test hands CMG its token embeddings directly)."""

    num_features = C_TOKEN


def _seed_model() -> SimpleNamespace:
    """The seed's AVT modules (float64, random weights, random codebook statistics, dropout off)."""
    mods = oracles.cmg_modules()
    main, club = mods["main"], mods["club"].CLUBSample_group
    seed = SimpleNamespace(
        encoder=main.AVT_VQVAE_Encoder(C_A, C_V, 2 * LSTM, HIDDEN, C_V, HIDDEN, CODES, 256),
        decoder=main.AVT_VQVAE_Decoder(C_A, C_V, 2 * LSTM, HIDDEN, C_V, HIDDEN),
        cpc=mods["cpc"].Cross_CPC_AVT(256, hidden_dim=256, context_dim=256, num_layers=2),
        lstm=nn.LSTM(C_TOKEN, LSTM, num_layers=2, batch_first=True, bidirectional=True),
        club={"video": club(256, C_V, CLUB_HIDDEN), "text": club(256, HIDDEN, CLUB_HIDDEN),
              "audio": club(256, HIDDEN, CLUB_HIDDEN)},
    )  # fmt: skip
    for i, module in enumerate(_seed_parts(seed)):
        module.double()
        oracles.randomise(module, seed=i)
        for sub in module.modules():
            if isinstance(sub, nn.Dropout):
                sub.p = 0.0
            if isinstance(sub, nn.MultiheadAttention):
                sub.dropout = 0.0
    return seed


def _codebook_near_the_data(seed: SimpleNamespace, inputs: dict[str, torch.Tensor]) -> None:
    """Codes drawn near the semantic vectors of ``inputs`` (all modalities), random EMA statistics: every modality
    then uses several codes."""
    generator = torch.Generator().manual_seed(7)
    text = seed.lstm(inputs["text"])[0]
    with torch.no_grad():
        z = torch.cat([v.reshape(-1, 256) for v in seed.encoder(inputs["audio"], inputs["visual"], text, 0)[:3]])
    quantizer = seed.encoder.Cross_quantizer
    picked = z[torch.randperm(z.shape[0], generator=generator)[:CODES]]  # (K, D)
    quantizer.embedding = picked + 0.1 * torch.randn(CODES, 256, generator=generator, dtype=torch.float64)
    quantizer.ema_count = torch.rand(CODES, generator=generator, dtype=torch.float64) + 0.5
    quantizer.ema_weight = quantizer.embedding * quantizer.ema_count[:, None]
    quantizer.unactivated_count = torch.randint(0, 50, (CODES,), generator=generator).double()


def _seed_parts(seed: SimpleNamespace) -> list[nn.Module]:
    return [seed.encoder, seed.decoder, seed.cpc, seed.lstm, *seed.club.values()]


def _checkpoint(seed: SimpleNamespace) -> dict[str, dict[str, torch.Tensor]]:
    """The seed's checkpoint layout (``pretrain.py:save_models``)."""
    parts = {"Encoder_parameters": seed.encoder, "Decoder_parameters": seed.decoder, "CPC_parameters": seed.cpc,
             "Text_ar_lstm_parameters": seed.lstm,
             **{f"{m.capitalize()}_mi_net_parameters": net for m, net in seed.club.items()}}  # fmt: skip
    return {part: {k: v.detach().clone() for k, v in module.state_dict().items()} for part, module in parts.items()}


def _ours(seed: SimpleNamespace, inputs: dict[str, torch.Tensor]) -> CMG:
    """avlearn's CMG with the seed's weights (float64), reading ``inputs`` instead of towers."""
    cfg = CMGConfig(modalities="avt", codes=CODES, dropout=0.0, video_hidden=C_V, audio_hidden=HIDDEN,
                    text_hidden=HIDDEN, text_lstm=LSTM, club_hidden=CLUB_HIDDEN, faithful=True)  # fmt: skip
    model = CMG(cfg, FeatureTower("visual", C_V, True), FeatureTower("audio", C_A, False), _TextTokens())
    conversion = convert_cmg_state_dict(_checkpoint(seed))
    model.double()  # before loading: float64 weights kept exactly
    missing, unexpected = model.load_state_dict(conversion.tensors, strict=False)
    assert missing == ["codebook.step"] and unexpected == []
    assert all(".encoder_layer." in name or "_semantic_decoder." in name for name in conversion.dropped)
    model.inputs = lambda batch: inputs
    return model


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)  # the seed moves every input
    generator = torch.Generator().manual_seed(3)
    inputs = {"audio": torch.randn(B, T, C_A, generator=generator, dtype=torch.float64),
              "visual": torch.randn(B, T, GRID, GRID, C_V, generator=generator, dtype=torch.float64).relu(),
              "text": torch.randn(B, T, C_TOKEN, generator=generator, dtype=torch.float64)}  # fmt: skip
    seed = _seed_model()
    _codebook_near_the_data(seed, inputs)
    return SimpleNamespace(seed=seed, ours=_ours(seed, inputs), inputs=inputs)


def _recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[torch.Tensor]]:
    """Record the seed's ``torch.randperm`` / ``torch.randint`` draws (CLUB negatives, CPC step)."""
    draws: dict[str, list[torch.Tensor]] = {"randperm": [], "randint": []}
    for name in draws:
        real = getattr(torch, name)

        def record(*args, _real=real, _name=name, **kwargs):  # noqa: ANN002, ANN003, ANN202
            out = _real(*args, **kwargs)
            draws[_name].append(out.clone())
            return out

        monkeypatch.setattr(torch, name, record)
    return draws


def _seed_forward(seed: SimpleNamespace, inputs: dict[str, torch.Tensor], clubs: dict | None = None) -> tuple:
    """The seed's ``pretrain.py`` step up to its loss: the encoder forward (which updates the codebook in training),
    with ``clubs`` (optimizers) 5 Adam steps of the CLUB nets on its detached outputs (video, text, audio), then the
    loss terms. Returns the code vectors and the loss terms, by avlearn's names."""
    text = seed.lstm(inputs["text"], (torch.zeros(4, B, LSTM, dtype=torch.float64),) * 2)[0]
    (sem_a, sem_v, sem_t, spec_a, map_v, spec_v, spec_t, q_a, q_v, q_t, com_a, com_v, com_t, cmcm, _) = seed.encoder(
        inputs["audio"], inputs["visual"], text, 0
    )
    pairs = {"video": (q_v, spec_v), "text": (q_t, spec_t), "audio": (q_a, spec_a)}
    for _ in range(5 if clubs else 0):
        for m, (x, y) in pairs.items():
            clubs[m].zero_grad()
            (-seed.club[m].loglikeli(x.detach(), y.detach())).backward()
            clubs[m].step()
    mi = {f"mi_{SEED_NAMES_BACK[m]}": seed.club[m].mi_est(x, y) for m, (x, y) in pairs.items()}
    cpc = seed.cpc(sem_a, sem_v, sem_t)[-1]
    rec_a, rec_v, rec_t = seed.decoder(inputs["audio"], inputs["visual"], text, spec_a, map_v, spec_t, q_a, q_v, q_t)[
        :3
    ]
    losses = {"recon_audio": rec_a, "recon_visual": rec_v, "recon_text": rec_t, "commit_audio": com_a,
              "commit_visual": com_v, "commit_text": com_t, **mi, "cpc": cpc, "cmcm": cmcm}  # fmt: skip
    return {"audio": q_a, "visual": q_v, "text": q_t}, losses


def _replay(ours: CMG, draws: dict[str, list[torch.Tensor]]) -> None:
    """Give our model the seed's draws: CLUB permutations in the seed's order (video, text, audio), the CPC step."""
    perms = dict(zip(("visual", "text", "audio"), draws["randperm"], strict=True))
    ours.club_permutation = lambda size, modality: perms[modality]
    ours.cpc_step = lambda steps: int(draws["randint"][0]) + 1


def test_forward_matches_the_seed(setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    draws = _recorded(monkeypatch)
    for module in [*_seed_parts(setup.seed), setup.ours]:
        module.eval()
    with torch.no_grad():
        codes, expected = _seed_forward(setup.seed, setup.inputs)
        _replay(setup.ours, draws)
        enc = setup.ours.encode(setup.inputs)
        losses = setup.ours.objectives(enc)
    for m, q in codes.items():
        oracles.assert_parity(enc.q[m], q, f"code vectors {m}")
        assert torch.allclose(setup.ours.codebook.embedding[enc.idx[m]], q, rtol=0, atol=1e-12), m  # the codes
    assert set(losses) == set(expected)
    for name, value in expected.items():
        oracles.assert_parity(losses[name], value, name)


def _clip_and_step(groups: list[list[nn.Parameter]], optimizer: torch.optim.Optimizer) -> None:
    """The seed's update: each module's gradient norm clipped at 0.5 separately, then Adam."""
    for params in groups:
        nn.utils.clip_grad_norm_(params, 0.5)
    optimizer.step()


def _seed_step(seed: SimpleNamespace, inputs: dict[str, torch.Tensor]) -> None:
    """One step of the seed's ``pretrain.py:train_epoch``."""
    clubs = {m: torch.optim.Adam(net.parameters(), lr=1e-3) for m, net in seed.club.items()}
    main = [seed.lstm, seed.encoder, seed.cpc, seed.decoder]
    optimizer = torch.optim.Adam([p for module in main for p in module.parameters()], lr=4e-4)
    sum(_seed_forward(seed, inputs, clubs)[1].values()).backward()
    _clip_and_step([list(module.parameters()) for module in main], optimizer)


def test_one_pretraining_step_matches_the_seed(setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    draws = _recorded(monkeypatch)
    for module in [*_seed_parts(setup.seed), setup.ours]:
        module.train()
    _seed_step(setup.seed, setup.inputs)
    ours = setup.ours
    before = {name: ours.state_dict()[name].clone() for name in BUFFERS}
    _replay(ours, draws)
    aux = build_auxiliary(ours.auxiliary(), lambda: None)
    auxiliary_steps(aux, [({}, 1.0)], contextlib.nullcontext)
    club = {id(p) for p in ours.club.parameters()}
    main = [p for p in ours.parameters() if id(p) not in club]
    optimizer = torch.optim.Adam(main, lr=4e-4)
    sum(ours({}).losses.values()).backward()
    groups = [ours.text_lstm, nn.ModuleList([ours.semantic, ours.specific, ours.visual_pool]), ours.cpc, ours.decoder]
    _clip_and_step([list(g.parameters()) for g in groups], optimizer)

    expected = convert_cmg_state_dict(_checkpoint(setup.seed)).tensors
    state = ours.state_dict()
    for name, value in expected.items():
        scale = max(1.0, value.abs().max().item())
        error = (state[name] - value).abs().max().item() / scale
        assert error <= 1e-6, f"{name}: max difference {error:.2e} of scale {scale:.3g} after one step"
    assert int(ours.codebook.step) == 1
    assert all(not torch.equal(state[name], before[name]) for name in BUFFERS)  # the step did update the codebook

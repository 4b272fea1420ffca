"""CMG parity with the seed's AVT model (haihuangcode/CMG ``main_model_2``, ``CPC``, ``CLUB``; float64, random weights
moved by ``convert_cmg_state_dict``, dropout off, the seed's bugs kept: ``faithful=True``, and its unclamped CLUB
estimate: ``club_clamp=False``).

* the forward: each modality's code vectors and every loss term (reconstruction, commitment, CLUB MI, Cross-CPC,
  CMCM) equal the seed's, with the seed's random draws (CLUB permutations, the CPC step) replayed;
* one pretraining step, as the seed's ``pretrain.py`` runs it (``cmg_seed.step``: 5 Adam steps of the CLUB
  estimators, the main loss, per-module gradient clipping at 0.5, Adam 4e-4, the EMA codebook update) and as avlearn
  runs it (``cmg_seed.avlearn_step``: the CLUB steps through the engine's auxiliary-optimizer hook), leaves the same
  parameters and codebook buffers.

Widths are small except where the seed fixes them (D = 256, 4 heads, 1024 feed-forward).
"""

from __future__ import annotations

from types import SimpleNamespace

import cmg_seed
import oracles
import pytest
import torch
from torch import nn

from avlearn.backbones.features import FeatureTower
from avlearn.convert import convert_cmg_state_dict
from avlearn.methods.cmg import CMG, CMGConfig

B, T, GRID, C_V, C_A, C_TOKEN, LSTM, HIDDEN, CODES, CLUB_HIDDEN = 6, 10, 7, 32, 16, 24, 8, 16, 40, 32
SIZES = cmg_seed.sizes(audio=C_A, video=C_V, token=C_TOKEN, lstm=LSTM, hidden=HIDDEN, video_hidden=C_V, codes=CODES,
                       club_hidden=CLUB_HIDDEN)  # fmt: skip
BUFFERS = ("codebook.embedding", "codebook.ema_count", "codebook.ema_weight", "codebook.unused")


class _TextTokens(nn.Module):
    """A stand-in text tower (the test hands CMG its token embeddings directly)."""

    num_features = C_TOKEN


def _seed_model() -> SimpleNamespace:
    """The seed's AVT modules (float64, random weights, dropout off)."""
    seed = cmg_seed.build(SIZES)
    for i, module in enumerate(cmg_seed.parts(seed)):
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


def _checkpoint(seed: SimpleNamespace) -> dict[str, dict[str, torch.Tensor]]:
    """The seed's checkpoint layout (``pretrain.py:save_models``)."""
    parts = {"Encoder_parameters": seed.encoder, "Decoder_parameters": seed.decoder, "CPC_parameters": seed.cpc,
             "Text_ar_lstm_parameters": seed.lstm,
             **{f"{m.capitalize()}_mi_net_parameters": net for m, net in seed.club.items()}}  # fmt: skip
    return {part: {k: v.detach().clone() for k, v in module.state_dict().items()} for part, module in parts.items()}


def _ours(seed: SimpleNamespace, inputs: dict[str, torch.Tensor]) -> CMG:
    """avlearn's CMG with the seed's weights (float64), reading ``inputs`` instead of towers."""
    cfg = CMGConfig(modalities="avt", codes=CODES, dropout=0.0, video_hidden=C_V, audio_hidden=HIDDEN,
                    text_hidden=HIDDEN, text_lstm=LSTM, club_hidden=CLUB_HIDDEN, club_clamp=False,
                    faithful=True)  # fmt: skip
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


def _replay(ours: CMG, draws: dict[str, list[torch.Tensor]]) -> None:
    """Give our model the seed's draws: CLUB permutations in the seed's order (video, text, audio), the CPC step."""
    perms = dict(zip(("visual", "text", "audio"), draws["randperm"], strict=True))
    ours.club_permutation = lambda size, modality: perms[modality]
    ours.cpc_step = lambda steps: int(draws["randint"][0]) + 1


def test_forward_matches_the_seed(setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    draws = _recorded(monkeypatch)
    for module in [*cmg_seed.parts(setup.seed), setup.ours]:
        module.eval()
    with torch.no_grad():
        codes, expected = cmg_seed.forward(setup.seed, setup.inputs)
        _replay(setup.ours, draws)
        enc = setup.ours.encode(setup.inputs)
        losses = setup.ours.objectives(enc)
    for m, q in codes.items():
        oracles.assert_parity(enc.q[m], q, f"code vectors {m}")
        assert torch.allclose(setup.ours.codebook.embedding[enc.idx[m]], q, rtol=0, atol=1e-12), m  # the codes
    assert set(losses) == set(expected)
    for name, value in expected.items():
        oracles.assert_parity(losses[name], value, name)


def test_one_pretraining_step_matches_the_seed(setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    draws = _recorded(monkeypatch)
    for module in [*cmg_seed.parts(setup.seed), setup.ours]:
        module.train()
    cmg_seed.step(setup.seed, setup.inputs, cmg_seed.optimizers(setup.seed))
    ours = setup.ours
    before = {name: ours.state_dict()[name].clone() for name in BUFFERS}
    _replay(ours, draws)
    cmg_seed.avlearn_step(ours, {}, cmg_seed.avlearn_training(ours))

    expected = convert_cmg_state_dict(_checkpoint(setup.seed)).tensors
    state = ours.state_dict()
    for name, value in expected.items():
        scale = max(1.0, value.abs().max().item())
        error = (state[name] - value).abs().max().item() / scale
        assert error <= 1e-6, f"{name}: max difference {error:.2e} of scale {scale:.3g} after one step"
    assert int(ours.codebook.step) == 1
    assert all(not torch.equal(state[name], before[name]) for name in BUFFERS)  # the step did update the codebook

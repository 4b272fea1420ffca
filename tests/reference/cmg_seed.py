"""The CMG seed's AVT pretraining step as its ``pretrain.py`` runs it (modules from ``oracles.cmg_modules``), for the
reference tier (``test_cmg_method.py``) and ``benchmarks/cmg_step.py``."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import oracles
import torch
from torch import nn

AVLEARN_NAME = {"audio": "audio", "video": "visual", "text": "text"}


# The seed model's widths (D = 256, 4 heads and 1024 feed-forward are fixed in its code): the paper's. ``hidden``:
# the audio / text specific width.
PAPER = {"audio": 128, "video": 512, "token": 768, "lstm": 128, "hidden": 256, "video_hidden": 2048, "codes": 400,
         "club_hidden": 256}  # fmt: skip


def sizes(**overrides: int) -> SimpleNamespace:
    """The seed's widths, the paper's except ``overrides``."""
    return SimpleNamespace(**{**PAPER, **overrides})


def build(z: SimpleNamespace) -> SimpleNamespace:
    """The seed's AVT modules: encoder, decoder, Cross-CPC, text LSTM, CLUB nets (video, text, audio); float32."""
    mods = oracles.cmg_modules()
    main, club = mods["main"], mods["club"].CLUBSample_group
    return SimpleNamespace(
        encoder=main.AVT_VQVAE_Encoder(z.audio, z.video, 2 * z.lstm, z.hidden, z.video_hidden, z.hidden, z.codes, 256),
        decoder=main.AVT_VQVAE_Decoder(z.audio, z.video, 2 * z.lstm, z.hidden, z.video_hidden, z.hidden),
        cpc=mods["cpc"].Cross_CPC_AVT(256, hidden_dim=256, context_dim=256, num_layers=2),
        lstm=nn.LSTM(z.token, z.lstm, num_layers=2, batch_first=True, bidirectional=True),
        club={"video": club(256, z.video, z.club_hidden), "text": club(256, z.hidden, z.club_hidden),
              "audio": club(256, z.hidden, z.club_hidden)},
    )  # fmt: skip


def parts(seed: SimpleNamespace) -> list[nn.Module]:
    """Every module of the seed model."""
    return [seed.encoder, seed.decoder, seed.cpc, seed.lstm, *seed.club.values()]


def main_modules(seed: SimpleNamespace) -> list[nn.Module]:
    """The modules of the seed's main optimizer, each clipped on its own."""
    return [seed.lstm, seed.encoder, seed.cpc, seed.decoder]


def optimizers(seed: SimpleNamespace) -> SimpleNamespace:
    """The seed's optimizers: Adam 4e-4 over the main modules, Adam 1e-3 per CLUB net."""
    params = [p for module in main_modules(seed) for p in module.parameters()]
    clubs = {m: torch.optim.Adam(net.parameters(), lr=1e-3) for m, net in seed.club.items()}
    return SimpleNamespace(main=torch.optim.Adam(params, lr=4e-4), clubs=clubs)


def forward(seed: SimpleNamespace, inputs: dict[str, torch.Tensor], clubs: dict | None = None) -> tuple:
    """The seed's step up to its loss: the encoder forward (which updates the codebook in training), with ``clubs``
    (CLUB optimizers) 5 Adam steps of the CLUB nets on its detached outputs (video, text, audio), then the loss
    terms. Returns the code vectors and the loss terms, by avlearn's names."""
    tokens = inputs["text"]
    zeros = tokens.new_zeros(4, tokens.shape[0], seed.lstm.hidden_size)
    text = seed.lstm(tokens, (zeros, zeros))[0]
    (sem_a, sem_v, sem_t, spec_a, map_v, spec_v, spec_t, q_a, q_v, q_t, com_a, com_v, com_t, cmcm, _) = seed.encoder(
        inputs["audio"], inputs["visual"], text, 0
    )
    pairs = {"video": (q_v, spec_v), "text": (q_t, spec_t), "audio": (q_a, spec_a)}
    for _ in range(5 if clubs else 0):
        for m, (x, y) in pairs.items():
            clubs[m].zero_grad()
            (-seed.club[m].loglikeli(x.detach(), y.detach())).backward()
            clubs[m].step()
    mi = {f"mi_{AVLEARN_NAME[m]}": seed.club[m].mi_est(x, y) for m, (x, y) in pairs.items()}
    cpc = seed.cpc(sem_a, sem_v, sem_t)[-1]
    rec_a, rec_v, rec_t = seed.decoder(inputs["audio"], inputs["visual"], text, spec_a, map_v, spec_t, q_a, q_v, q_t)[
        :3
    ]
    losses = {"recon_audio": rec_a, "recon_visual": rec_v, "recon_text": rec_t, "commit_audio": com_a,
              "commit_visual": com_v, "commit_text": com_t, **mi, "cpc": cpc, "cmcm": cmcm}  # fmt: skip
    return {"audio": q_a, "visual": q_v, "text": q_t}, losses


def clip_and_step(groups: list[list[nn.Parameter]], optimizer: torch.optim.Optimizer) -> None:
    """The seed's update: each module's gradient norm clipped at 0.5 separately, then the optimizer step."""
    for params in groups:
        nn.utils.clip_grad_norm_(params, 0.5)
    optimizer.step()


def step(seed: SimpleNamespace, inputs: dict[str, torch.Tensor], opt: SimpleNamespace) -> None:
    """One step of the seed's ``pretrain.py:train_epoch`` with the optimizers ``opt`` (``optimizers(seed)``)."""
    opt.main.zero_grad()
    sum(forward(seed, inputs, opt.clubs)[1].values()).backward()
    clip_and_step([list(module.parameters()) for module in main_modules(seed)], opt.main)


def avlearn_training(model: nn.Module) -> SimpleNamespace:
    """What the seed's step is compared with, for avlearn's CMG: the engine's auxiliary optimizer (CLUB), Adam 4e-4
    over the other parameters, and the seed's clipping groups (text LSTM, encoders, Cross-CPC, decoders)."""
    from avlearn.engine.auxiliary import build_auxiliary

    club = {id(p) for p in model.club.parameters()}
    groups = [model.text_lstm, nn.ModuleList([model.semantic, model.specific, model.visual_pool]), model.cpc,
              model.decoder]  # fmt: skip
    return SimpleNamespace(aux=build_auxiliary(model.auxiliary(), lambda: None),
                           main=torch.optim.Adam([p for p in model.parameters() if id(p) not in club], lr=4e-4),
                           groups=[list(g.parameters()) for g in groups])  # fmt: skip


def avlearn_step(model: nn.Module, batch: dict, training: SimpleNamespace, autocast=contextlib.nullcontext) -> None:  # noqa: ANN001
    """One avlearn CMG pretraining step as the engine runs it (CLUB inner steps first), with the seed's clipping."""
    from avlearn.engine.auxiliary import auxiliary_steps

    auxiliary_steps(training.aux, [(batch, 1.0)], autocast)
    training.main.zero_grad()
    with autocast():
        loss = sum(model(batch).losses.values())
    loss.backward()
    clip_and_step(training.groups, training.main)

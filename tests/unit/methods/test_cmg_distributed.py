"""CMG under two gloo processes keeps one codebook: 5 training steps on halves of each global batch (the CLUB
estimators' inner steps through the engine's ``auxiliary_steps``, the main gradients averaged over ranks as DDP
does, the EMA codebook update and dead-code resets inside the forward) leave both ranks with the codebook and
parameters of one process that ran the same steps on the whole batches."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from avlearn.backbones.features import FeatureTower
from avlearn.distributed import all_reduce_mean_, world_size
from avlearn.engine.auxiliary import auxiliary_steps, build_auxiliary
from avlearn.methods.cmg import CMG, CMGConfig
from two_processes import spawn_two

B, T, GRID, C_V, C_A, STEPS = 8, 6, 3, 8, 5, 5


def _batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(4)
    return [{"visual_features": torch.randn(B, T, GRID * GRID, C_V, generator=generator),  # (B, T, N, C)
             "audio_features": torch.randn(B, T, C_A, generator=generator)}  # (B, T, C)
            for _ in range(STEPS)]  # fmt: skip


def _model() -> CMG:
    torch.manual_seed(0)
    # reset_after=1: six codes are re-seeded at step 3
    cfg = CMGConfig(modalities="av", dim=8, codes=12, heads=2, layers=1, ff_dim=16, dropout=0.0, video_hidden=8,
                    video_padding=1, se_reduction=2, audio_hidden=4, club_hidden=8, club_steps=2, reset_after=1,
                    active_within=2)  # fmt: skip
    return CMG(cfg, FeatureTower("visual", C_V, True), FeatureTower("audio", C_A, False))


def _train(rows: slice) -> dict[str, torch.Tensor]:
    """STEPS steps on ``rows`` of each global batch; each rank's loss is weighted by its share of it (x world size)
    and the main gradients averaged over the ranks, as the engine does (DDP); the CLUB estimators take their Adam
    inner steps through the engine's own ``auxiliary_steps``."""
    model = _model().train()
    aux = build_auxiliary(model.auxiliary(), lambda: None)
    club = {id(p) for p in model.club.parameters()}
    main = [p for p in model.parameters() if id(p) not in club]
    optimizer = torch.optim.SGD(main, lr=0.1)  # Adam would blow up float noise in gradients that are 0 analytically
    for batch in _batches():
        local = {k: v[rows] for k, v in batch.items()}
        weight = local["audio_features"].shape[0] * world_size() / B
        auxiliary_steps(aux, [(local, weight)], contextlib.nullcontext)
        optimizer.zero_grad()
        (sum(model(local).losses.values()) * weight).backward()
        for p in main:
            if p.grad is not None:
                all_reduce_mean_(p.grad)
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.save(_train(slice(rank * B // 2, (rank + 1) * B // 2)), f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_processes_keep_the_codebook_and_parameters_of_one(tmp_path):
    spawn_two(_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = _train(slice(None))
    assert int(single["codebook.step"]) == STEPS
    assert not torch.equal(single["codebook.embedding"], _model().codebook.embedding)
    for name, value in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-5, msg=name)

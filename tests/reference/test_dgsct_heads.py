"""DG-SCT's seed heads against avlearn's options, at the paper's widths: the AVE ``TemporalAttention`` + ``CMBS``
(``DG-SCT/AVE/nets/net_trans.py``; 1536-wide visual and 768-wide audio segment embeddings, 28 events) against
``task.head=cmbs_seed``, random weights moved by ``avlearn.convert.convert_dgsct_ave_state_dict``; fp32, eval mode,
10 segments. Compared: the per-segment event score, the clip class logits, the top-k class scores and the gate."""

from __future__ import annotations

import oracles
import torch
from oracles import assert_parity, randomise

from avlearn.convert import convert_dgsct_ave_state_dict
from avlearn.tasks.ave import AVEConfig, CMBSHead


def test_cmbs_seed_head_matches_the_seed() -> None:
    net_trans = oracles.seed_module("AVE", "nets.net_trans")
    torch.manual_seed(0)  # the seed modules' default initialisation, which randomise perturbs
    seed = torch.nn.ModuleDict({"temporal_attn": net_trans.TemporalAttention(), "CMBS": net_trans.CMBS(None)})
    randomise(seed)
    seed.eval()
    head = CMBSHead(768, 1536, 28, AVEConfig(head="cmbs_seed"), seed=True).eval()
    done = convert_dgsct_ave_state_dict(seed.state_dict())
    head.load_state_dict({k.removeprefix("head."): v for k, v in done.tensors.items()})  # strict: every tensor
    assert all(n.startswith(("CMBS.AVInter", "CMBS.VAInter", "CMBS.audio_norm", "CMBS.video_norm"))
               or "_layer." in n or ".self_attn." in n for n in done.dropped)  # fmt: skip

    generator = torch.Generator().manual_seed(0)
    visual, audio = torch.randn(2, 10, 1536, generator=generator), torch.randn(2, 10, 768, generator=generator)
    with torch.no_grad():
        video_feature, audio_feature, gate = seed["temporal_attn"](visual, audio)  # (S, B, d), (S, B, 1)
        is_event, event, av_score = seed["CMBS"](video_feature, audio_feature)
        ours = head(audio, visual)
    assert_parity(ours["is_event"], is_event[..., 0].transpose(0, 1), "is_event")
    assert_parity(ours["event"], event, "clip class logits")
    assert_parity(ours["av_score"], av_score, "top-k class scores")
    assert_parity(ours["gate"], gate[..., 0].transpose(0, 1), "gate")

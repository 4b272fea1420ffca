"""DG-SCT's AVE adapter (``DG-SCT/AVE/nets/net_trans.py`` ``VisualAdapter``) against avlearn's ``DGSCTAdapter``:
random weights moved by ``avlearn.convert.convert_adapter_state_dict``, fp32, eval mode; the residual and the
spatial pooling map, with the output gate (visual adapters, AVE audio adapters) and without it."""

from __future__ import annotations

from types import SimpleNamespace

import oracles
import pytest
import torch
from oracles import assert_parity, randomise

from avlearn.convert import convert_adapter_state_dict
from avlearn.methods.dgsct import DGSCTAdapter, DGSCTConfig


@pytest.mark.parametrize("gate", [True, False])
def test_ave_adapter_matches_the_seed(gate: bool) -> None:
    net = oracles.seed_module("AVE", "nets.net_trans")
    dim, tokens, other_dim, other_tokens = 96, 64, 48, 36  # an audio adapter guided by a narrower visual side
    opt = SimpleNamespace(is_multimodal=1, num_conv_group=2, is_before_layernorm=1, is_post_layernorm=1)
    reference = net.VisualAdapter(input_dim=dim, output_dim=dim, adapter_kind="bottleneck", reduction_factor=8,
                                  opt=opt, use_bn=True, use_gate=gate, num_tk=32, conv_dim_in=other_tokens,
                                  conv_dim_out=tokens, linear_in=other_dim, linear_out=dim)  # fmt: skip
    randomise(reference)
    ours = DGSCTAdapter(dim, tokens, other_dim, other_tokens, DGSCTConfig(), gate=gate)
    ours.load_state_dict(convert_adapter_state_dict(reference.state_dict()))
    reference.eval(), ours.eval()
    generator = torch.Generator().manual_seed(1)
    x, y = (
        torch.randn(4, tokens, dim, generator=generator),
        torch.randn(4, other_tokens, other_dim, generator=generator),
    )
    with torch.no_grad():
        expected, expected_pool = reference(x.transpose(1, 2)[..., None], y.transpose(1, 2)[..., None])
        residual, pool = ours(x, y)
    assert_parity(residual, expected[..., 0].transpose(1, 2), "adapter residual")
    assert_parity(pool, expected_pool, "adapter pooling map")

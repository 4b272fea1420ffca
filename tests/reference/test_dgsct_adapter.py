"""DG-SCT's per-task adapters (the seed's ``VisualAdapter`` of AVE ``nets/net_trans.py``, AVS-S4 and AVS-MS3
``model/PVT_AVSModel.py``, AVQA ``net_grd_avst/net_avst.py``) against avlearn's ``DGSCTAdapter`` with the matching
``method.adapter_variant`` and the seed task's settings: random weights moved by
``avlearn.convert.convert_adapter_state_dict``, fp32, eval mode; the residual and the spatial pooling map, with the
output gate (visual adapters; AVE's audio ones) and without it (AVS and AVQA audio adapters)."""

from __future__ import annotations

from types import SimpleNamespace

import oracles
import pytest
import torch
from oracles import assert_parity, randomise

from avlearn.convert import convert_adapter_state_dict
from avlearn.methods.dgsct import DGSCTAdapter, DGSCTConfig

# variant -> (seed folder, module, seed options, avlearn settings); the seed's train.sh / base_options values.
SEEDS = {
    "ave": ("AVE", "nets.net_trans", {"num_tokens": 32, "num_conv_group": 2, "use_bn": True},
            {"num_latents": 32, "reduction": 8}),
    "avs_s4": ("AVS/avs_scripts/avs_s4", "model.PVT_AVSModel",
               {"num_tokens": 32, "num_conv_group": 2, "use_bn": False},
               {"num_latents": 32, "reduction": 8, "batch_norm": False}),
    "avs_ms3": ("AVS/avs_scripts/avs_ms3", "model.PVT_AVSModel",
                {"num_tokens": 32, "num_conv_group": 2, "use_bn": False},
                {"num_latents": 32, "reduction": 2, "batch_norm": False, "alpha": 0.2, "beta": 0.1}),
    "avqa": ("AVQA/net_grd_avst", "net_avst", {"num_tokens": 2, "num_conv_group": 4, "use_bn": False},
             {"num_latents": 2, "reduction": 8, "groups": 4, "batch_norm": False}),
}  # fmt: skip


def _seed_adapter(variant: str, gate: bool, dims: tuple[int, int, int, int]) -> torch.nn.Module:
    folder, module, options, settings = SEEDS[variant]
    dim, tokens, other_dim, other_tokens = dims
    opt = SimpleNamespace(is_multimodal=1, num_conv_group=options["num_conv_group"], is_before_layernorm=1,
                          is_post_layernorm=1, num_tokens=options["num_tokens"])  # fmt: skip
    kwargs = {"num_tk": options["num_tokens"]} if variant == "ave" else {}  # only AVE's takes the count directly
    return oracles.seed_module(folder, module).VisualAdapter(
        input_dim=dim,
        output_dim=dim,
        adapter_kind="bottleneck",
        reduction_factor=settings["reduction"],
        opt=opt,
        use_bn=options["use_bn"],
        use_gate=gate,
        conv_dim_in=other_tokens,
        conv_dim_out=tokens,
        linear_in=other_dim,
        linear_out=dim,
        **kwargs,
    )


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("variant", list(SEEDS))
def test_adapter_variant_matches_the_seed(variant: str, gate: bool) -> None:
    dims = dim, tokens, other_dim, other_tokens = 96, 64, 48, 36  # square grids (8x8, 6x6) for AVS-S4's re-gridding
    reference = _seed_adapter(variant, gate, dims)
    randomise(reference)
    cfg = DGSCTConfig(adapter_variant=variant, **SEEDS[variant][3])
    ours = DGSCTAdapter(dim, tokens, other_dim, other_tokens, cfg, gate=gate)
    ours.load_state_dict(convert_adapter_state_dict(reference.state_dict(), variant))
    reference.eval(), ours.eval()
    generator = torch.Generator().manual_seed(1)
    batch = 5  # the AVS adapters view their guide as (B, 5 frames, C)
    x = torch.randn(batch, tokens, dim, generator=generator)
    y = torch.randn(batch, other_tokens, other_dim, generator=generator)
    with torch.no_grad():
        expected, expected_pool = reference(x.transpose(1, 2)[..., None], y.transpose(1, 2)[..., None])
        residual, pool = ours(x, y)
    assert_parity(residual, expected[..., 0].transpose(1, 2), f"{variant} adapter residual")
    assert_parity(pool, expected_pool, f"{variant} adapter pooling map")

"""``avlearn convert`` mechanics without the seeds' code (the reference tier checks real timm / HTS-AT modules):
the fused qkv split by rows, checkpoint unwrapping, the errors for unknown formats, unmapped, missing and mis-shaped
tensors, and a CLI round trip: a tiny HTS-AT written in the original layout (renamed by this test's own table, qkv
fused) converts back into a folder that ``htsat_tiny`` loads with equal weights."""

from __future__ import annotations

import re

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.cli import convert as convert_cli
from avlearn.cli.main import main
from avlearn.convert import FORMATS, RUN_FORMATS, convert_state_dict, load_converted, read_state_dict
from avlearn.errors import DataError
from avlearn.registry import BACKBONES

# avlearn (ClapAudioLayer) name below a block -> the original HTS-AT's; q/k/v are fused separately.
_HTSAT_BLOCK_NAMES = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
                      "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
                      "attention.self.relative_position_bias_table": "attn.relative_position_bias_table"}  # fmt: skip
_HTSAT_TOP = {"audio_encoder.batch_norm": "bn0", "audio_encoder.patch_embed": "patch_embed",
              "audio_encoder.norm": "norm", "audio_encoder.layers": "layers"}  # fmt: skip


def _original_htsat_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An avlearn HTS-AT state dict written as the original checkpoint (``sed_model.`` keys, fused qkv)."""
    out = {}
    for name, tensor in state.items():
        block = re.match(r"audio_encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)$", name)
        if block is None:
            top = next(k for k in _HTSAT_TOP if name.startswith(k + "."))
            out[_HTSAT_TOP[top] + name[len(top) :]] = tensor
            continue
        prefix, rest = f"layers.{block[1]}.blocks.{block[2]}.", block[3]
        if rest.startswith("attention.self.query."):
            kind = rest.rsplit(".", 1)[1]
            parts = [state[name.replace(".query.", f".{p}.")] for p in ("query", "key", "value")]
            out[f"{prefix}attn.qkv.{kind}"] = torch.cat(parts)
        elif rest.endswith("relative_position_index"):
            out[prefix + "attn.relative_position_index"] = tensor
        elif not rest.startswith(("attention.self.key.", "attention.self.value.")):
            old = next(k for k in _HTSAT_BLOCK_NAMES if rest == k or rest.startswith(k + "."))
            out[prefix + _HTSAT_BLOCK_NAMES[old] + rest[len(old) :]] = tensor
    out["head.weight"] = torch.zeros(3, 3)  # dropped: the classification head
    return {"sed_model." + k: v for k, v in out.items()}


def test_cli_lists_the_converter_formats():
    assert tuple(sorted((*FORMATS, *RUN_FORMATS))) == convert_cli.FORMATS


def test_qkv_is_split_by_rows_and_heads_are_dropped():
    qkv = torch.arange(24.0).reshape(6, 4)
    done = convert_state_dict("timm_swinv2", {"layers.1.blocks.0.attn.qkv.weight": qkv, "head.weight": qkv,
                                              "layers.1.blocks.0.attn_mask": qkv})  # fmt: skip
    prefix = "encoder.layers.1.blocks.0.attention.self."
    assert torch.equal(done.tensors[prefix + "query.weight"], qkv[:2])
    assert torch.equal(done.tensors[prefix + "key.weight"], qkv[2:4])
    assert torch.equal(done.tensors[prefix + "value.weight"], qkv[4:])
    assert sorted(done.dropped) == ["head.weight", "layers.1.blocks.0.attn_mask"]


def test_unknown_format_and_unmapped_tensors_are_errors():
    with pytest.raises(DataError, match="unknown weight format 'keras'"):
        convert_state_dict("keras", {})
    with pytest.raises(DataError, match="1 tensors have no avlearn counterpart"):
        convert_state_dict("htsat", {"fc_extra.weight": torch.zeros(1)})


def test_missing_and_mis_shaped_tensors_are_errors():
    model = BACKBONES.build("htsat_tiny").model
    source = {k.removeprefix("sed_model."): v for k, v in _original_htsat_layout(model.state_dict()).items()}
    done = convert_state_dict("htsat", source)
    done.tensors.pop("audio_encoder.norm.weight")
    with pytest.raises(DataError, match=r"missing \['audio_encoder.norm.weight'\] \(1\)"):
        load_converted(model, done, "ckpt")
    done.tensors["audio_encoder.norm.weight"] = torch.zeros(5)
    with pytest.raises(DataError, match=r"shapes \['audio_encoder.norm.weight \(5,\) vs \(128,\)'\]"):
        load_converted(model, done, "ckpt")


def test_checkpoint_is_unwrapped_and_its_prefix_checked(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": {"sed_model.norm.weight": torch.ones(2)}, "epoch": 3}, path)
    assert list(read_state_dict(path, "htsat")) == ["norm.weight"]
    with pytest.raises(DataError, match="no 'sed_model.' keys"):
        torch.save({"norm.weight": torch.ones(2)}, path)
        read_state_dict(path, "htsat")
    with pytest.raises(DataError, match="no such weight file"):
        read_state_dict(tmp_path / "absent.pth", "htsat")


def test_cli_round_trip_gives_a_folder_the_backbone_loads(tmp_path, capsys):
    torch.manual_seed(0)
    original = BACKBONES.build("htsat_tiny")
    source = tmp_path / "HTSAT_tiny.ckpt"
    torch.save({"state_dict": _original_htsat_layout(original.model.state_dict())}, source)
    assert main(["convert", "htsat", str(source), str(tmp_path / "out"), "--backbone", "htsat_tiny"]) == 0
    assert "tensors written" in capsys.readouterr().out
    loaded = BACKBONES.build("htsat_tiny", pretrained=str(tmp_path / "out"))
    for name, tensor in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_converted_folder_loads_into_one_tower_by_backbone_audio_pretrained(tmp_path):
    from avlearn.build import build_task
    from avlearn.config.compose import compose_run
    from avlearn.tasks.base import DatasetInfo

    torch.manual_seed(0)
    original = BACKBONES.build("htsat_tiny")
    source = tmp_path / "HTSAT_tiny.ckpt"
    torch.save({"state_dict": _original_htsat_layout(original.model.state_dict())}, source)
    main(["convert", "htsat", str(source), str(tmp_path / "audio"), "--backbone", "htsat_tiny"])
    cfg = compose_run(["task=ave", "method=dgsct_tiny", "backbone=dgsct_tiny", "data.frame_size=32",
                       f"backbone.audio_pretrained={tmp_path / 'audio'}"])  # fmt: skip
    task = build_task(cfg, DatasetInfo(tuple("abc")))
    audio = task.method.audio_backbone.state_dict()
    assert all(torch.equal(audio[k], v) for k, v in original.state_dict().items())
    with pytest.raises(Exception, match="does not exist"):  # the shared key still reaches both towers
        build_task(compose_run(["task=ave", "method=dgsct_tiny", "backbone=dgsct_tiny",
                                f"backbone.pretrained={tmp_path / 'absent'}"]), DatasetInfo(tuple("abc")))  # fmt: skip


def test_seed_adapter_names_conv_kernels_and_unused_tensors():
    from avlearn.convert import convert_adapter_state_dict

    kernel = torch.randn(8, 4, 1, 1)
    state = {"down_sampler.weight": kernel, "gate_av": torch.ones(1), "conv_adapter.weight": kernel,
             "ln_before.weight": torch.ones(4), "temporal_gated.0.weight": torch.ones(1, 4)}  # fmt: skip
    s4 = convert_adapter_state_dict(state, "avs_s4")
    assert sorted(s4) == ["down.weight", "latent_gate"] and torch.equal(s4["down.weight"], kernel[..., 0])
    assert "token_align.weight" in convert_adapter_state_dict({"conv_adapter.weight": kernel}, "avs_ms3")
    with pytest.raises(DataError, match="seed adapter tensor 'temporal_gated.0.weight' has no avlearn counterpart"):
        convert_adapter_state_dict(state, "ave")
    with pytest.raises(DataError, match="unknown DG-SCT adapter variant 'avvp'"):
        convert_adapter_state_dict(state, "avvp")


def test_seed_ave_head_names_unused_modules_and_unknown_tensors():
    from avlearn.convert import convert_dgsct_ave_state_dict

    t = torch.randn(4, 2)
    state = {"temporal_attn.audio_visual_rnn_layer.audio_rnn.weight_ih_l0": t,
             "temporal_attn.video_decoder.decoder.layers.0.linear2.weight": t,
             "temporal_attn.video_encoder.encoder.layers.1.self_attn.in_proj_weight": t,
             "CMBS.localize_module.event_classifier.bias": t, "CMBS.video_cas.weight": t,
             "CMBS.AVInter.norm1.weight": t, "temporal_attn.audio_encoder.encoder_layer.linear1.weight": t,
             "temporal_attn.audio_decoder.decoder.layers.0.self_attn.in_proj_bias": t,
             "adapter_token_downsampler.0.weight": t}  # fmt: skip
    done = convert_dgsct_ave_state_dict(state)
    assert sorted(done.tensors) == ["head.event.bias", "head.temporal.audio_rnn.weight_ih_l0",
                                    "head.temporal.visual_decoder.ffn.3.weight",
                                    "head.temporal.visual_key.1.layers.1.self_attn.in_proj_weight",
                                    "head.visual_cas.weight"]  # fmt: skip
    assert sorted(done.dropped) == sorted(
        set(state)
        - {k for k in state if "rnn" in k or "linear2" in k or "layers.1" in k or "classifier" in k or "cas" in k}
    )
    with pytest.raises(DataError, match="seed AVE head: 1 tensors have no avlearn counterpart"):
        convert_dgsct_ave_state_dict({**state, "CMBS.extra.weight": t})


def test_run_formats_need_classes_and_backbone_formats_refuse_overrides(tmp_path):
    from avlearn.cli.main import main

    assert main(["convert", "dgsct_ave", str(tmp_path / "seed.pt"), str(tmp_path / "run")]) == 2
    assert main(["convert", "htsat", str(tmp_path / "a.ckpt"), str(tmp_path / "out"), "data.clips=4"]) == 2

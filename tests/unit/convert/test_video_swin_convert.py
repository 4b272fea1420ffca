"""The Video Swin converters on synthetic state dicts: the official Kinetics layout (``avlearn convert video_swin``,
``backbone.`` keys, ``cls_head``, per-block ``relative_position_index``) and VALOR-B's ``video_encoder.*`` inside
``convert_valor_state_dict``: every tensor mapped with its shape, the head and derived buffers dropped, unknown or
mis-shaped tensors one-line errors."""

from __future__ import annotations

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.backbones.base import WeightsNotFoundError
from avlearn.cli.main import main
from avlearn.convert import convert, convert_state_dict, convert_valor_state_dict, load_converted
from avlearn.errors import DataError
from avlearn.registry import BACKBONES

# avlearn name fragment -> the official (and VALOR seed) one, written out independently of the converter
OFFICIAL = (("stages.", "layers."), ("attn.position_bias", "attn.relative_position_bias_table"),
            (".mlp.0.", ".mlp.fc1."), (".mlp.2.", ".mlp.fc2."))  # fmt: skip


def official_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """avlearn Video Swin tensors -> the official names, with the seed's index buffer in every block."""
    out = {}
    for name, tensor in state.items():
        for ours, theirs in OFFICIAL:
            name = name.replace(ours, theirs)
        out[name] = tensor
        if name.endswith("relative_position_bias_table"):
            out[name.replace("bias_table", "index")] = torch.zeros(4, 4, dtype=torch.long)
    return out


@pytest.fixture
def tiny() -> avlearn.backbones.video_swin.VideoSwin:
    torch.manual_seed(0)
    return BACKBONES.build("video_swin_tiny")


def test_official_checkpoint_round_trips_through_the_cli(tmp_path, capsys, tiny):
    state = {f"backbone.{k}": v for k, v in official_layout(tiny.model.state_dict()).items()}
    state |= {"cls_head.fc_cls.weight": torch.ones(600, 128), "cls_head.fc_cls.bias": torch.ones(600)}
    source = tmp_path / "swin_tiny_kinetics.pth"
    torch.save({"meta": {}, "state_dict": state}, source)
    assert main(["convert", "video_swin", str(source), str(tmp_path / "out"), "--backbone", "video_swin_tiny"]) == 0
    assert "tensors written" in capsys.readouterr().out
    loaded = BACKBONES.build("video_swin_tiny", pretrained=str(tmp_path / "out"))
    assert loaded.state_dict().keys() == tiny.state_dict().keys()
    for name, tensor in tiny.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_bare_state_dict_of_valors_weight_bundle_converts(tmp_path, tiny):
    source = tmp_path / "videoswin_tiny.pth"
    torch.save(official_layout(tiny.model.state_dict()), source)
    with pytest.raises(DataError, match="no 'backbone.' keys"):
        convert("video_swin", source, tmp_path / "official", "video_swin_tiny")
    convert("video_swin_bare", source, tmp_path / "out", "video_swin_tiny")
    loaded = BACKBONES.build("video_swin_tiny", pretrained=str(tmp_path / "out"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tiny.state_dict().items())


def test_head_and_index_buffers_are_dropped_and_listed(tiny):
    state = official_layout(tiny.model.state_dict()) | {"cls_head.fc_cls.bias": torch.ones(600)}
    done = convert_state_dict("video_swin", state)
    blocks = sum(len(stage.blocks) for stage in tiny.model.stages)
    assert sorted(done.dropped)[0] == "cls_head.fc_cls.bias" and len(done.dropped) == 1 + blocks
    assert done.tensors.keys() == tiny.model.state_dict().keys()


def test_unknown_and_mis_shaped_tensors_are_one_line_errors(tiny):
    state = official_layout(tiny.model.state_dict())
    for extra in ("layers.0.blocks.0.extra.weight", "layers.3.downsample.norm.weight", "fc.weight"):
        with pytest.raises(DataError, match=rf"video_swin: 1 tensors have no avlearn counterpart.*{extra}"):
            convert_state_dict("video_swin", {**state, extra: torch.ones(2)})
    state["norm.weight"] = torch.ones(3)
    with pytest.raises(DataError, match=r"shapes \['norm.weight \(3,\) vs \(128,\)'\]"):
        load_converted(tiny.model, convert_state_dict("video_swin", state), "swin.pth")


def test_folder_of_another_architecture_is_refused(tmp_path, tiny):
    tiny.model.save_pretrained(str(tmp_path / "tiny"))
    with pytest.raises(WeightsNotFoundError, match="a different Video Swin.*embed_dim"):
        BACKBONES.build("video_swin_tiny", pretrained=str(tmp_path / "tiny"), embed_dim=32, num_heads=(2, 4, 4, 8))
    with pytest.raises(WeightsNotFoundError, match="config.json and model.safetensors"):
        BACKBONES.build("video_swin_tiny", pretrained=str(tmp_path / "absent"))


def test_valor_b_video_encoder_keys_map_onto_the_tower(tiny):
    seed = {f"video_encoder.{k}": v for k, v in official_layout(tiny.model.state_dict()).items()}
    done = convert_valor_state_dict({**seed, "contra_temp": torch.tensor(0.05)})
    tower = {f"visual_backbone.model.{k}": v for k, v in tiny.model.state_dict().items()}
    assert done.tensors.keys() == {*tower, "temperature"}
    assert all(torch.equal(done.tensors[k], v) for k, v in tower.items())
    assert all(name.endswith("relative_position_index") for name in done.dropped)
    with pytest.raises(DataError, match="no avlearn counterpart"):
        convert_valor_state_dict({**seed, "video_encoder.layers.0.blocks.1.mystery": torch.ones(2)})

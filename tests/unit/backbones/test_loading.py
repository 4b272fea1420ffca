"""Pretrained loading never downloads, never falls back to random weights, and says how to get what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import ClapConfig, ClapModel, CLIPConfig, CLIPModel

import avlearn.backbones  # noqa: F401  (registers the zoo)
from avlearn.backbones.base import WeightsNotFoundError, load_tokenizer
from avlearn.registry import BACKBONES


def saved_tiny(name: str, folder: Path) -> torch.nn.Module:
    torch.manual_seed(1)
    model = BACKBONES.build(name).eval()
    model.model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("name", ["vit_tiny", "htsat_tiny", "swinv2_tiny"])
def test_local_folder_round_trip(name: str, tmp_path: Path) -> None:
    original = saved_tiny(name, tmp_path)
    loaded = BACKBONES.build(name, pretrained=str(tmp_path)).eval()
    inputs = original.dummy_inputs(batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs), original(**inputs), rtol=0, atol=0)


def test_towers_load_from_a_full_clip_folder(tmp_path: Path) -> None:
    """Published CLIP folders hold both towers: the image tower takes its half and matches CLIPModel."""
    vision, text = BACKBONES.build("clip_vit_tiny"), BACKBONES.build("clip_text_tiny")
    configs = {"vision_config": vision.model.config.to_dict(), "text_config": text.model.config.to_dict()}
    torch.manual_seed(2)
    full = CLIPModel(CLIPConfig(**configs, projection_dim=vision.proj_dim)).eval()
    full.save_pretrained(tmp_path)
    tower = BACKBONES.build("clip_vit_tiny", pretrained=str(tmp_path)).eval()
    inputs = tower.dummy_inputs(batch_size=2)
    with torch.no_grad():
        expected = full.get_image_features(**inputs).pooler_output
        torch.testing.assert_close(tower.project(tower(**inputs)), expected, rtol=0, atol=0)


def test_audio_tower_loads_from_a_full_clap_folder(tmp_path: Path) -> None:
    audio, text = BACKBONES.build("clap_audio_fused_tiny"), BACKBONES.build("clap_text_tiny")
    configs = {"audio_config": audio.model.config.to_dict(), "text_config": text.model.config.to_dict()}
    torch.manual_seed(3)
    full = ClapModel(ClapConfig(**configs, projection_dim=audio.proj_dim)).eval()
    full.save_pretrained(tmp_path)
    tower = BACKBONES.build("clap_audio_fused_tiny", pretrained=str(tmp_path)).eval()
    inputs = tower.dummy_inputs(batch_size=2)
    with torch.no_grad():
        expected = full.get_audio_features(input_features=inputs["spectrogram"], is_longer=inputs["is_longer"])
        ours = F.normalize(tower.project(tower(**inputs)), dim=-1)  # CLAP returns unit-length audio embeddings
        torch.testing.assert_close(ours, expected.pooler_output, rtol=0, atol=0)


def test_missing_folder_says_what_to_pass(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_weights"
    with pytest.raises(WeightsNotFoundError, match=f"{missing} does not exist.*pretrained="):
        BACKBONES.build("vit_tiny", pretrained=str(missing))


def test_folder_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="without downloading"):
        BACKBONES.build("vit_tiny", pretrained=str(tmp_path))


def test_uncached_hub_id_is_refused_offline_with_the_download_command() -> None:
    with pytest.raises(WeightsNotFoundError, match="hf download avlearn-tests/not-a-model"):
        BACKBONES.build("vit_tiny", pretrained="avlearn-tests/not-a-model")


def test_checkpoint_of_another_size_is_refused(tmp_path: Path) -> None:
    saved_tiny("vit_tiny", tmp_path)
    with pytest.raises(WeightsNotFoundError, match="num_hidden_layers is 2, expected 3"):
        BACKBONES.build("vit_tiny", pretrained=str(tmp_path), num_hidden_layers=3)


def test_checkpoint_missing_tensors_is_refused_not_randomly_filled(tmp_path: Path) -> None:
    saved_tiny("vit_tiny", tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = next(k for k in weights if "layernorm" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsNotFoundError, match="lacks 1 tensors"):
        BACKBONES.build("vit_tiny", pretrained=str(tmp_path))


def test_text_weights_without_tokenizer_are_refused(tmp_path: Path) -> None:
    saved_tiny("clip_text_tiny", tmp_path)
    with pytest.raises(WeightsNotFoundError, match="needs its tokenizer files"):
        BACKBONES.build("clip_text_tiny", pretrained=str(tmp_path))


def test_placeholder_tokenizer_is_refused(tmp_path: Path) -> None:
    """The HF_HUB_OFFLINE pitfall: a 5-token vocabulary must never pass for a real tokenizer."""
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    with pytest.raises(WeightsNotFoundError, match="only 5 tokens"):
        load_tokenizer(str(tmp_path))


def test_random_init_text_backbone_has_no_tokenizer() -> None:
    model = BACKBONES.build("bert_tiny")
    with pytest.raises(avlearn.backbones.base.AvlearnError, match="no tokenizer"):
        model.tokenize(["a sentence"])

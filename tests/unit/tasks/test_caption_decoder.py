"""``task=caption`` with ``task.decoder=method``: VALOR's own decoder (MGC loss, mask-append beam search) through the
``caption_loss`` / ``caption_generate`` hooks; the shared TextDecoder path with the same method; one-line errors for
a method without the hooks and for decoding keys the method's decoder does not read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.errors import ConfigError
from avlearn.layers.text_decoder import TextDecoder, detokenize
from avlearn.methods.valor import VALOR, VALORConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.caption import Caption, CaptionConfig

IDS = torch.tensor([[101, 2000, 2001, 2002, 102, 0], [101, 3000, 102, 0, 0, 0], [101, 4000, 4001, 4002, 4003, 102]])
INFO = SimpleNamespace(vocab=sorted({*range(103), *IDS.flatten().tolist()}), references={})


def _valor() -> VALOR:
    torch.manual_seed(0)
    towers = [BACKBONES.build(n) for n in ("clip_vit_tiny", "ast_valor_tiny", "minilm_tiny")]
    return VALOR(VALORConfig(contra_dim=16), *towers)


@pytest.fixture
def batch(clip_batch):
    return clip_batch(torch.tensor([0, 1, 0]), caption_ids=IDS, caption_mask=(IDS != 0).long())


def _caption(method: torch.nn.Module, **cfg: object) -> Caption:
    return Caption(CaptionConfig(**{"decoder": "method", "meteor": False, **cfg}), method, INFO)


def test_method_decoder_loss_is_valor_mgc_and_a_step_lowers_it(batch):
    task = _caption(_valor()).eval()  # no dropout: both passes below see the same states
    assert task.decoder is None and not any(n.startswith(("decoder.", "memory.")) for n, _ in task.named_parameters())
    torch.manual_seed(5)
    loss = task(batch)["loss"]
    torch.manual_seed(5)  # the same masking draw: the caption loss is the pretraining MGC term on the captions
    mgc = task.method({**batch, "text_ids": IDS, "text_mask": batch["caption_mask"]}).losses["mgc"]
    torch.testing.assert_close(loss, mgc)
    optimizer = torch.optim.SGD(task.parameters(), lr=0.5)
    loss.backward()
    assert task.method.lm_bias.grad is not None and task.method.cross[0].query.weight.grad is not None
    optimizer.step()
    torch.manual_seed(5)
    assert task(batch)["loss"].item() < loss.item()


@pytest.mark.parametrize(("beam_size", "max_length"), [(3, 30), (1, 4)])
def test_method_decoder_predicts_valor_generate_strings(batch, beam_size: int, max_length: int):
    task = _caption(_valor(), beam_size=beam_size, max_length=max_length).eval()
    captions = task.predict(batch)["caption"]
    feats = task.method(batch)
    memory = task.method.memory(feats.visual, feats.audio)["tva"]  # the first configured group
    tokens = task.method.generate(memory, max_length, beam_size)
    assert captions == detokenize(tokens) and len(captions) == 3
    assert all(isinstance(c, str) for c in captions) and all(len(t) <= max_length for t in tokens)


def test_task_decoder_is_still_the_default_with_valor(batch):
    task = Caption(CaptionConfig(meteor=False, hidden_size=32, intermediate_size=64), _valor(), INFO)
    assert isinstance(task.decoder, TextDecoder)
    out = task(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert task.decoder.model.cls.predictions.decoder.weight.grad is not None and task.method.lm_bias.grad is None
    captions = task.eval().predict(batch)["caption"]
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)


def test_a_method_without_the_hooks_is_refused_in_one_line(tiny_method):
    with pytest.raises(ConfigError) as refused:
        _caption(tiny_method())
    message = str(refused.value)
    assert "task.decoder=method" in message and "'baseline'" in message and "caption_loss" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("cfg", "message"),
    [({"decoder": "valor"}, "task.decoder='valor'"), ({"length_penalty": 0.5}, "task.length_penalty=0.5"),
     ({"no_repeat_ngram": 2}, "task.no_repeat_ngram=2"), ({"beam_size": 0}, "task.beam_size=0")],
)  # fmt: skip
def test_bad_decoder_settings_are_one_line_errors(cfg: dict, message: str):
    with pytest.raises(ConfigError, match=message) as refused:
        _caption(_valor(), **cfg)
    assert "\n" not in str(refused.value)

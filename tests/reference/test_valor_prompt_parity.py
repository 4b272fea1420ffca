"""VALOR-L's task prompts (``method.task_prompt``, the seed's ``use_task_prompt``) against the seed's own model
(``oracles.valor_seed`` with ``use_task_prompt`` on, its ``get_task_prompt`` tokenising with the same uncased
WordPiece vocabulary): random weights converted by ``convert_valor_state_dict`` (the seed's ``prompt_embedding`` row
becomes BERT's second token type), fp32, eval mode. The checks of ``test_valor_method`` with the prompts: per group
the MGA score and loss (text encoded together with 'project language in common space') and the MGC loss (decoder
prompt 'describe the video with natural language'); the next-token distribution at every step of the seed's greedy
caption decoding with its prompt. And the MLM branch (``method.mlm_groups``, the seed's ``mlm%...`` with its
always-on prompts): the loss of ``forward_pt(..., "pt_mlm%<group>")`` per group for the same 15 % masks."""

from __future__ import annotations

import oracles
import pytest
import torch
from oracles import assert_parity
from test_valor_method import IDS, MASK, STEPS, _inputs, check_greedy_steps, check_pretraining_losses, seed_on_cpu  # noqa: F401
from torch import nn

from avlearn.convert import convert_valor_state_dict
from avlearn.layers.text_decoder import wordpiece
from avlearn.methods.valor import MLM_MASK_PROB, SEP, VALOR, mask_tokens


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, VALOR, object]:
    """The seed's VALOR with its task prompts on and avlearn's with ``task_prompt``, the same weights (``seed_on_cpu``
    of ``test_valor_method`` reads this fixture here)."""
    torch.manual_seed(0)
    size = oracles.ValorSize()
    seed, pretrain = oracles.valor_seed(size)
    seed.max_generation_len, seed.use_task_prompt, seed.tokenizer = STEPS, True, wordpiece()
    ours = oracles.valor_ours(size, faithful=True, task_prompt=True, mlm_groups=["tva", "tv", "ta"])
    ours.load_state_dict(convert_valor_state_dict(seed.state_dict()).tensors)
    return seed, ours, pretrain


@pytest.mark.parametrize("group", ["tv", "ta", "tva"])
def test_prompted_mga_and_mgc_match_the_seed(seed_on_cpu: nn.Module, models: tuple, group: str, monkeypatch):  # noqa: F811
    assert models[1].cfg.task_prompt
    check_pretraining_losses(seed_on_cpu, models[1], group, monkeypatch)


def test_prompted_greedy_decoding_matches_the_seed_at_every_step(seed_on_cpu: nn.Module, models: tuple, monkeypatch):  # noqa: F811
    sentences, _ = check_greedy_steps(seed_on_cpu, models[1], monkeypatch)
    assert not (sentences[:, 0] == SEP).all()  # a decoding, not [SEP] from the first step


@pytest.mark.parametrize("group", ["tv", "ta", "tva"])
def test_mlm_loss_matches_the_seed(seed_on_cpu: nn.Module, models: tuple, group: str, monkeypatch):  # noqa: F811
    ours = models[1]
    monkeypatch.setattr(ours.cfg, "mlm_groups", [group])
    batch, seed_batch = _inputs(ours)
    inputs, labels = mask_tokens(IDS, MASK, MLM_MASK_PROB, 30522, torch.Generator().manual_seed(3))
    probs = []
    masked = (inputs, labels.masked_fill(labels == -100, -1))
    monkeypatch.setattr(seed_on_cpu.text_masker, "forward", lambda tokens, prob: probs.append(prob) or masked)
    with torch.no_grad():
        reference = seed_on_cpu.forward_pt(seed_batch, f"pt_mlm%{group}")["mlm_loss"]
        visual, audio = ours.encode_visual(batch["frames"]), ours.encode_audio(batch["audio"])
        mlm = ours.mlm(visual, audio, (inputs, labels), MASK)
    assert probs == [MLM_MASK_PROB]
    assert_parity(mlm, reference, f"MLM loss {group}")

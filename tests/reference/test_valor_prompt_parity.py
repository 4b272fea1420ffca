"""VALOR-L's task prompts (``method.task_prompt``, the seed's ``use_task_prompt``) against the seed's own model
(``oracles.valor_seed`` with ``use_task_prompt`` on, its ``get_task_prompt`` tokenising with the same uncased
WordPiece vocabulary): random weights converted by ``convert_valor_state_dict`` (the seed's ``prompt_embedding`` row
becomes BERT's second token type), fp32, eval mode. Compared per group, on the batch and caption masks of
``test_valor_method``: the MGA score and loss (text encoded together with 'project language in common space') and
the MGC loss (decoder prompt 'describe the video with natural language'); and the next-token distribution at every
step of the seed's greedy caption decoding with its prompt."""

from __future__ import annotations

import oracles
import pytest
import torch
from oracles import assert_parity
from test_valor_method import IDS, MASK, SEP, STEPS, _inputs, seed_on_cpu  # noqa: F401  (a fixture)
from torch import nn

from avlearn.convert import convert_valor_state_dict
from avlearn.layers.text_decoder import wordpiece
from avlearn.methods.valor import VALOR, contrastive_loss, mask_tokens


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, VALOR, object]:
    """The seed's VALOR with its task prompts on and avlearn's with ``task_prompt``, the same weights."""
    torch.manual_seed(0)
    size = oracles.ValorSize()
    seed, pretrain = oracles.valor_seed(size)
    seed.max_generation_len, seed.use_task_prompt, seed.tokenizer = STEPS, True, wordpiece()
    ours = oracles.valor_ours(size, faithful=True, task_prompt=True)
    ours.load_state_dict(convert_valor_state_dict(seed.state_dict()).tensors)
    return seed, ours, pretrain


@pytest.mark.parametrize("group", ["tv", "ta", "tva"])
def test_prompted_mga_and_mgc_match_the_seed(seed_on_cpu: nn.Module, models: tuple, group: str, monkeypatch):  # noqa: F811
    _, ours, _ = models
    batch, seed_batch = _inputs(ours)
    inputs, labels = mask_tokens(IDS, MASK, 0.6, 30522, torch.Generator().manual_seed(2))
    seed_labels = labels.masked_fill(labels == -100, -1)
    monkeypatch.setattr(seed_on_cpu.text_masker, "forward", lambda tokens, prob: (inputs, seed_labels))
    scores = []
    compute = seed_on_cpu.compute_fine_matrix
    seed_on_cpu.compute_fine_matrix = lambda *args: scores.append(compute(*args)) or scores[-1]
    with torch.no_grad():
        reference = seed_on_cpu.forward_pt(seed_batch, f"pt_contra%{group}_caption%{group}")
        visual, audio = ours.encode_visual(batch["frames"]), ours.encode_audio(batch["audio"])
        text, _ = ours.encode_text(IDS, MASK)
        score = ours.mga_scores(ours.contrast_features(visual, audio, text, MASK))[group]
        mga = contrastive_loss(score, ours.temperature_value()) * ours.cfg.contra_weight
        prompt = ours.task_prompts("caption", len(IDS))
        mgc = ours.mgc_loss(inputs, MASK, labels, ours.memory(visual, audio)[group], prompt)
    assert_parity(score, scores[0], f"prompted MGA score {group}")
    assert_parity(mga, reference["contra_loss"], f"prompted MGA loss {group}")
    assert_parity(mgc, reference["caption_loss"], f"prompted MGC loss {group}")


def test_prompted_greedy_decoding_matches_the_seed_at_every_step(seed_on_cpu: nn.Module, models: tuple):  # noqa: F811
    _, ours, _ = models
    batch, seed_batch = _inputs(ours)
    steps = []
    get_logits = seed_on_cpu.get_logits
    seed_on_cpu.get_logits = lambda *args, **kwargs: steps.append(get_logits(*args, **kwargs)) or steps[-1]
    with torch.no_grad():
        sentences = seed_on_cpu.generate_cap(seed_batch, ["tva"])["generated_sequences_t_va"]  # (B, STEPS)
        memory = ours.memory(ours.encode_visual(batch["frames"]), ours.encode_audio(batch["audio"]))["tva"]
        cache = ours.start_cache(memory, ours.task_prompts("caption", len(memory)))
        prefix = torch.full((len(memory), 1), 101)
        for t, (logits, _) in enumerate(steps):  # the seed's tokens so far, one step at a time
            mine = ours.next_token_logits(prefix, memory, cache)
            assert_parity(mine.softmax(-1), logits.softmax(-1), f"prompted next-token distribution, step {t}")
            prefix = torch.cat([prefix, sentences[:, t : t + 1]], dim=1)
    assert len(steps) == STEPS and not (sentences[:, :-1] == SEP).all()

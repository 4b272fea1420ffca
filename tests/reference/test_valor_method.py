"""VALOR against the seed's own model (``model/pretrain.py`` ``VALOR``) at tiny widths, fp32, eval mode.

The seed's ``VALOR.__init__`` loads every backbone checkpoint from ``./pretrained_weights``; ``oracles.valor_seed``
assembles the same object from the seed's own modules instead (its CLIP ``VisionTransformer`` 48 wide, AST
``AudioEmbeddings`` + pre-norm ``TransformerEncoder`` 32 wide on 32 bins x 160 frames at stride 16, its
cross-attention ``BertModel`` 32 wide over the 30522 WordPiece ids shared as text encoder and decoder,
``BERTPredictionHead``, ``Contra_head`` and the weight MLPs) with random weights; the test moves them with
``avlearn.convert.convert_valor_state_dict`` into ``VALOR`` (``faithful: true``: the seed's padded-position
scores). Compared, per group t-v, t-a, t-va, on one batch and one draw of the caption masks: the MGA score matrix,
the MGA loss and the MGC loss of ``forward_pt``; the next-token distribution at every step of the seed's greedy
decoding (``generate_cap``, beam 1), which avlearn computes with its key/value cache; and beam search (3 beams)
while no beam has finished.
"""

from __future__ import annotations

from types import SimpleNamespace

import oracles
import pytest
import torch
from oracles import assert_parity
from torch import nn

from avlearn.convert import convert_valor_state_dict
from avlearn.methods.valor import SEP, VALOR, contrastive_loss, mask_tokens

B, S, STEPS = 3, 2, 8
IDS = torch.tensor([[101, 2023, 2003, 1037, 3899, 102, 0, 0], [101, 2158, 102, 0, 0, 0, 0, 0],
                    [101, 1037, 2450, 7585, 2006, 1037, 3902, 102]])  # fmt: skip
MASK = (IDS != 0).long()


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, VALOR, object]:
    torch.manual_seed(0)
    size = oracles.ValorSize()
    seed, pretrain = oracles.valor_seed(size)
    seed.max_generation_len = STEPS
    ours = oracles.valor_ours(size, faithful=True)
    ours.load_state_dict(convert_valor_state_dict(seed.state_dict()).tensors)
    return seed, ours, pretrain


@pytest.fixture
def seed_on_cpu(monkeypatch: pytest.MonkeyPatch, models: tuple) -> nn.Module:
    """The seed model with its ``.cuda()`` calls and one-process all-gathers made no-ops."""
    seed, _, pretrain = models
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
    monkeypatch.setattr(pretrain, "ddp_allgather_with_grads", SimpleNamespace(apply=lambda x: x))
    monkeypatch.setattr(pretrain, "ddp_allgather", lambda x: x)
    return seed


def _inputs(ours: VALOR) -> tuple[dict, dict]:
    """One batch for each model: avlearn's (uint8 frames, per-segment log-mels) and the seed's (the same pixels
    after avlearn's CLIP preprocessing, the same spectrograms)."""
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 255, (B, S, 32, 32, 3), dtype=torch.uint8, generator=g)
    audio = torch.randn(B, 1, 32, 160, generator=g)
    pixels = ours.visual_backbone.preprocess(frames.flatten(0, 1)).unflatten(0, (B, S))  # (B, n, 3, 32, 32)
    seed_batch = {"txt_tokens": {"bert_tokens": IDS}, "video_pixels": pixels, "audio_spectrograms": audio}
    return {"frames": frames, "audio": audio, "text_ids": IDS, "text_mask": MASK}, seed_batch


def check_pretraining_losses(seed: nn.Module, ours: VALOR, group: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The MGA score, MGA loss and MGC loss of ``group`` from avlearn's model and the seed's ``forward_pt`` on the
    same batch and caption masks (with ``ours.cfg.task_prompt``, the caption decoder's prompt too)."""
    batch, seed_batch = _inputs(ours)
    inputs, labels = mask_tokens(IDS, MASK, 0.6, 30522, torch.Generator().manual_seed(2))
    seed_labels = labels.masked_fill(labels == -100, -1)
    monkeypatch.setattr(seed.text_masker, "forward", lambda tokens, prob: (inputs, seed_labels))
    scores = []
    compute = seed.compute_fine_matrix
    monkeypatch.setattr(seed, "compute_fine_matrix", lambda *args: scores.append(compute(*args)) or scores[-1])
    with torch.no_grad():
        reference = seed.forward_pt(seed_batch, f"pt_contra%{group}_caption%{group}")
        visual, audio = ours.encode_visual(batch["frames"]), ours.encode_audio(batch["audio"])
        text, _ = ours.encode_text(IDS, MASK)
        score = ours.mga_scores(ours.contrast_features(visual, audio, text, MASK))[group]
        mga = contrastive_loss(score, ours.temperature_value()) * ours.cfg.contra_weight
        prompt = ours.task_prompts("caption", len(IDS))
        mgc = ours.mgc_loss(inputs, MASK, labels, ours.memory(visual, audio)[group], prompt)
    assert_parity(score, scores[0], f"MGA score {group}")
    assert_parity(mga, reference["contra_loss"], f"MGA loss {group}")
    assert_parity(mgc, reference["caption_loss"], f"MGC loss {group}")


def check_greedy_steps(
    seed: nn.Module, ours: VALOR, monkeypatch: pytest.MonkeyPatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token distribution of avlearn's cached decoder at every step of the seed's greedy caption decoding
    over t-va (with ``ours.cfg.task_prompt``, both with the caption prompt); returns the seed's tokens (B, STEPS)
    and avlearn's t-va memory (B, M, Cd)."""
    batch, seed_batch = _inputs(ours)
    steps = []
    get_logits = seed.get_logits
    monkeypatch.setattr(seed, "get_logits", lambda *a, **k: steps.append(get_logits(*a, **k)) or steps[-1])
    with torch.no_grad():
        sentences = seed.generate_cap(seed_batch, ["tva"])["generated_sequences_t_va"]  # (B, STEPS)
        memory = ours.memory(ours.encode_visual(batch["frames"]), ours.encode_audio(batch["audio"]))["tva"]
        cache = ours.start_cache(memory, ours.task_prompts("caption", B))
        prefix = torch.full((B, 1), 101)
        for t, (logits, _) in enumerate(steps):  # the seed's tokens so far, one step at a time
            mine = ours.next_token_logits(prefix, memory, cache)
            assert_parity(mine.softmax(-1), logits.softmax(-1), f"next-token distribution, step {t}")
            prefix = torch.cat([prefix, sentences[:, t : t + 1]], dim=1)
    assert len(steps) == STEPS
    return sentences, memory


@pytest.mark.parametrize("group", ["tv", "ta", "tva"])
def test_mga_scores_and_losses_and_mgc_loss_match_the_seed(
    seed_on_cpu: nn.Module, models: tuple, group: str, monkeypatch: pytest.MonkeyPatch
):
    check_pretraining_losses(seed_on_cpu, models[1], group, monkeypatch)


def test_greedy_decoding_matches_the_seed_at_every_step(seed_on_cpu: nn.Module, models: tuple, monkeypatch):
    ours = models[1]
    sentences, memory = check_greedy_steps(seed_on_cpu, ours, monkeypatch)
    with torch.no_grad():
        generated = ours.generate(memory, STEPS)
    expected = [row[: row.index(SEP)] if SEP in row else row for row in sentences.tolist()]
    assert generated == expected


def test_beam_search_matches_the_seed_while_no_beam_finishes(seed_on_cpu: nn.Module, models: tuple):
    """Beam 3: the seed's decode_beam and avlearn's agree (they differ only once a beam has finished: the seed lets
    a finished beam fill several beams)."""
    _, ours, _ = models
    batch, seed_batch = _inputs(ours)
    seed_on_cpu.beam_size = 3
    try:
        with torch.no_grad():
            best = seed_on_cpu.generate_cap(seed_batch, ["tva"])["generated_sequences_t_va"]  # (B, STEPS)
            memory = ours.memory(ours.encode_visual(batch["frames"]), ours.encode_audio(batch["audio"]))["tva"]
            generated = ours.generate(memory, STEPS, beam_size=3)
    finally:
        seed_on_cpu.beam_size = 1
    assert not (best == SEP).any(), "a beam finished: outside the regime where the two searches agree"
    assert generated == best.tolist()

"""``task=qa_open`` with ``task.decoder=method``: VALOR's decoder with the question as its bidirectional prompt
(the seed's one joint pass recomputed here: text causal, text -> prompt allowed, prompt -> text not), left padding of
the question, cached = uncached decoding, the task's loss and answers through the ``answer_loss`` /
``answer_generate`` hooks (one-line refusals: test_method_hook_refusals.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.layers.text_decoder import detokenize
from avlearn.methods.valor import MASK, VALOR, VALORConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.qa_open import QAOpen, QAOpenConfig

ANSWERS = ("yes", "two", "left guitar")
# (B=2, Q=2, L=6) questions, right-padded; the second question of video 1 is padding
QUESTIONS = torch.tensor([[[101, 2003, 2045, 1037, 102, 0], [101, 2129, 2116, 102, 0, 0]],
                          [[101, 2029, 2217, 2003, 2045, 102], [0, 0, 0, 0, 0, 0]]])  # fmt: skip
INFO = SimpleNamespace(class_names=ANSWERS, segments=10, vocab=tuple(range(30522)))


def _valor(**cfg: object) -> VALOR:
    torch.manual_seed(0)
    towers = [BACKBONES.build(n) for n in ("clip_vit_tiny", "ast_valor_tiny", "minilm_tiny")]
    return VALOR(VALORConfig(contra_dim=16, **cfg), *towers).eval()


def _task(method: torch.nn.Module, **cfg: object) -> QAOpen:
    return QAOpen(QAOpenConfig(**{"decoder": "method", "beam_size": 1, "max_length": 5, **cfg}), method, INFO)


@pytest.fixture
def batch(clip_batch):
    answer = torch.tensor([[0, 1], [2, 0]])
    return clip_batch(torch.tensor([0, 1]), input_ids=QUESTIONS, attention_mask=(QUESTIONS != 0).long(), answer=answer)


def _joint_pass(model: VALOR, text: torch.Tensor, prompt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The seed's one pass over ``[text ++ prompt]`` (unpadded rows): text -> text causal, text -> prompt allowed,
    prompt -> prompt allowed, prompt -> text not; the prompt's positions from 0 and BERT's second token type.
    Returns the text's states (B, T, Cd)."""
    bert = model.text_backbone.model
    t, q = text.shape[1], prompt.shape[1]
    second = bert.embeddings(input_ids=prompt, token_type_ids=torch.ones_like(prompt))  # (B, Q, Cd)
    hidden = torch.cat([bert.embeddings(input_ids=text), second], dim=1)  # (B, T + Q, Cd)
    allowed = torch.ones(t + q, t + q, dtype=torch.bool)
    allowed[:t, :t] = torch.ones(t, t).tril().bool()
    allowed[t:, :t] = False
    cache = model.start_cache(memory)
    return model._layers(hidden, allowed[None, None].expand(len(text), 1, -1, -1), cache, t + q)[:, :t]


def test_prompted_decoding_is_the_seeds_joint_pass_and_ignores_left_padding():
    model = _valor()
    memory = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
    text = torch.tensor([[101, 2748, MASK], [101, 2048, MASK]])  # (B, T)
    prompt = QUESTIONS[0]  # (2, 6): right-padded
    left = torch.stack([QUESTIONS[0, 0], torch.cat([QUESTIONS[0, 1, -2:], QUESTIONS[0, 1, :-2]])])  # left-padded
    ours = model.decode(text, None, model.start_cache(memory, (left, (left != 0).long())))
    full = _joint_pass(model, text[:1], prompt[:1, :5], memory[:1])  # its real tokens only
    short = _joint_pass(model, text[1:], prompt[1:, :4], memory[1:])
    torch.testing.assert_close(ours, torch.cat([full, short]), rtol=1e-5, atol=1e-5)
    other = model.decode(text, None, model.start_cache(memory, (QUESTIONS[1, :1].expand(2, -1), torch.ones(2, 6))))
    assert not torch.allclose(ours, other, atol=1e-3)  # the text does read the prompt


def test_prompted_generation_cached_equals_uncached():
    model = _valor()
    memory = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(2))
    prompt = (QUESTIONS[0], (QUESTIONS[0] != 0).long())
    for beam in (1, 3):
        assert model.generate(memory, 5, beam, prompt=prompt) == model.generate(
            memory, 5, beam, use_cache=False, prompt=prompt
        )


def test_task_loss_and_answers_are_the_hooks(batch):
    task = _task(_valor())
    assert task.decoder is None and not any(n.startswith(("decoder.", "memory.")) for n, _ in task.named_parameters())
    assert task.answer_ids[:, 0].eq(101).all()  # [CLS] answer [SEP]: VALOR's answer sequence
    row, ids, mask, answer = task._questions(batch)
    assert row.tolist() == [0, 0, 1]
    torch.manual_seed(5)
    loss = task(batch)["loss"]
    torch.manual_seed(5)  # the same masking draw
    feats = task.method(batch)
    answers = (task.answer_ids[answer], task.answer_mask[answer])
    torch.testing.assert_close(loss, task.method.answer_loss(feats, row, (ids, mask), answers))
    tokens = task.method.generate(task.method.memory(feats.visual, feats.audio)["tva"][row], 5, prompt=(ids, mask))
    assert task.predict(batch)["answer_text"] == detokenize(tokens)
    loss.backward()
    assert task.method.cross[0].query.weight.grad is not None and task.method.lm_bias.grad is not None


def test_answers_are_masked_at_answer_mask_prob(batch, monkeypatch):
    import avlearn.methods.valor as valor

    seen = []

    def recording(ids: torch.Tensor, mask: torch.Tensor, prob: float, vocab: int) -> tuple:
        seen.append((ids.clone(), prob))
        return valor.mask_tokens.__wrapped__(ids, mask, prob, vocab)

    recording.__wrapped__ = valor.mask_tokens
    monkeypatch.setattr(valor, "mask_tokens", recording)
    task = _task(_valor(answer_mask_prob=0.9))
    task(batch)
    (ids, prob), *_ = seen
    assert prob == 0.9 and ids.tolist() == task.answer_ids[torch.tensor([0, 1, 2])].tolist()

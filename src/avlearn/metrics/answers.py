"""Open-ended answers: the usual answer normalisation and exact match, per question type.

Follows the normalisation of the VQA evaluation (Antol et al., ICCV 2015; the ``vqaEval.py`` of the VQA API) and
SQuAD's exact match (Rajpurkar et al., EMNLP 2016) as open-ended audio-visual QA reports it (VALOR, Chen et al.
2023): lower case; punctuation removed (a period between digits is kept, "3.5"); the articles "a", "an", "the"
dropped; number words "zero" ... "ten" (and "none") written as digits; whitespace collapsed. An answer is correct when
its normalised form equals the normalised reference.

What differs: VQA scores each answer against ten human answers (min(#matches / 3, 1)); the datasets here have one
reference answer per question, so the score is plain exact match.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from avlearn.metrics.avqa import avqa_accuracy

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w\s]")  # any punctuation but a decimal point


def normalize_answer(text: str) -> str:
    """The normalised form of an answer: ``"The Two  violins!"`` -> ``"2 violins"``."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(NUMBER_WORDS.get(w, w) for w in words if w not in ARTICLES)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N,) bool: prediction n equals reference n after ``normalize_answer``."""
    if len(predictions) != len(references):
        raise ValueError(f"exact_match: {len(predictions)} predictions for {len(references)} references")
    return np.array([normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references, strict=True)])


def exact_match_by_type(
    predictions: Sequence[str], references: Sequence[str], question_types: Sequence[str]
) -> dict[str, float]:
    """Exact match (percent) per ``"Group/Type"`` question type, per group and ``overall``."""
    return avqa_accuracy(exact_match(predictions, references), question_types)


def majority_by_type(
    train_answers: Sequence[str], train_types: Sequence[str], answers: Sequence[str], question_types: Sequence[str]
) -> dict[str, float]:
    """Exact match (percent, as ``exact_match_by_type``) of answering every question with the most frequent
    normalised training answer of its type (the most frequent overall for a type unseen in training)."""
    overall = Counter(normalize_answer(a) for a in train_answers).most_common(1)[0][0]
    per_type: dict[str, Counter] = {}
    for answer, qtype in zip(train_answers, train_types, strict=True):
        per_type.setdefault(qtype, Counter())[normalize_answer(answer)] += 1
    guess = [per_type[t].most_common(1)[0][0] if t in per_type else overall for t in question_types]
    return exact_match_by_type(guess, answers, question_types)

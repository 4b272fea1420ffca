"""Open-ended audio-visual question answering: the answer is generated as text, scored by exact match per type.

Follows VALOR's open-ended QA (Chen et al., "VALOR: Vision-Audio-Language Omni-Perception Pretraining Model and
Dataset", 2023): the answer is decoded by the captioning decoder (``avlearn.layers.text_decoder``), cross-attending to
the clip's audio-visual tokens, instead of being picked from a fixed answer list; scored by exact match after the
usual answer normalisation (``avlearn.metrics.answers``: lower case, punctuation, articles, number words -> digits),
per question type, per modality group and overall.

The question is the decoder's prefix: ``[CLS] question [SEP] answer [SEP]``, the loss on the answer tokens only. So
the question's words attend to each other and to the clip through the same self- and cross-attention as the answer
(VALOR instead feeds the question into its text encoder and the decoder attends to the fused tokens); no second text
encoder is needed. Questions are left-padded, so every row's answer starts at the same place (positions count the
real tokens).

``task.decoder=method`` trains and decodes with the method's own decoder instead (VALOR: the question as its
decoder's bidirectional prompt, the answer ``[CLS] answer [SEP]`` masked and predicted, mask-append decoding): the
method's optional ``answer_loss(feats, row, question, answer)`` and ``answer_generate(feats, row, question,
settings)`` hooks (docs/architecture.md, "Contract"); the ``TextDecoder`` is not built.

Data: the QA benchmark ``data.benchmark`` names (``clips.QA_BENCHMARKS``: MSRVTT-QA, MSVD-QA, TGIF-QA,
ActivityNet-QA, MUSIC-AVQA and VALOR QA in VALOR's layout; ``caption_text.benchmark_question_splits``: one item per
question, its type the benchmark's name, so only ``overall`` is scored), or with the default (``vggsound``) the
MUSIC-AVQA layout (``avlearn.data.pipelines.avqa``; AVSynth writes one); another benchmark is a one-line ConfigError.
The answer list is read here only as each answer's text: the head has no answer classifier and can generate any
string.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from avlearn.data.pipelines import Splits
from avlearn.data.pipelines.avqa import avqa_pipeline
from avlearn.data.pipelines.caption_text import TextInfo, benchmark_question_splits, text_vocab
from avlearn.data.pipelines.clips import QA_BENCHMARKS, clip_splits, text_benchmark
from avlearn.layers.text_decoder import (
    TextDecoderConfig,
    TextHead,
    check_method_decoder,
    decoding,
    detokenize,
    left_pad,
    tokenize,
)
from avlearn.metrics.answers import exact_match_by_type, majority_by_type
from avlearn.registry import TASKS
from avlearn.tasks.base import DatasetInfo, add_method_losses
from avlearn.viz.reports import Report

ANSWER_WORDS = 8  # WordPiece tokens of an answer, its [SEP] included
METHOD_ANSWER = ("answer_loss", "answer_generate")  # the method hooks that task.decoder=method calls


@dataclass
class QAOpenConfig(TextDecoderConfig):
    """Schema of ``task/qa_open.yaml`` (the decoder keys: ``avlearn.layers.text_decoder.TextDecoderConfig``)."""

    name: str = "qa_open"
    decoder: str = "task"  # task: the shared TextDecoder; method: the method's own (METHOD_ANSWER hooks)


def qa_open_splits(cfg: Any, audio_pre: Any) -> Splits:
    """The QA benchmark ``data.benchmark`` (``benchmark_question_splits``) or by default the MUSIC-AVQA pipeline
    (``avqa_pipeline``), its info with the WordPiece ids of the training questions and of the answers (the decoder's
    vocabulary with ``task.vocab=train``: MUSIC-AVQA's closed answer list; a VALOR QA set's training answers)."""
    if text_benchmark(cfg, QA_BENCHMARKS, "the MUSIC-AVQA layout (AVSynth's AVQA part)"):
        splits = benchmark_question_splits(cfg, clip_splits(cfg, audio_pre))
        questions = splits.train.input_ids
        answers = [splits.info.class_names[a] for a in sorted(set(splits.train.answers.tolist()))]
    else:
        splits = avqa_pipeline(cfg, audio_pre)
        questions, answers = splits.train.questions.input_ids, list(splits.info.class_names)
    vocab = text_vocab(questions, tokenize(answers, ANSWER_WORDS + 1)["input_ids"])
    return dataclasses.replace(splits, info=TextInfo(splits.info.class_names, splits.info.segments, vocab=vocab))


def _majority_chance(splits: Any, task: nn.Module, out: dict) -> dict[str, float]:
    """Exact match of the most frequent training answer of each question type (per type and overall)."""
    names, train = task.info.class_names, splits.train
    scores = majority_by_type([names[a] for a in train.answers.tolist()], train.question_types,
                              [names[a] for a in out["targets"]["answer"].tolist()],
                              out["targets"]["question_type"])  # fmt: skip
    return {f"majority/{k}": v for k, v in scores.items()}


QA_OPEN = Report(_majority_chance)


@TASKS.register("qa_open", pipeline=qa_open_splits, synth_part="avqa", report=QA_OPEN)
class QAOpen(TextHead):
    """Open-ended QA: the question as a BERT decoder prefix over the method's tokens, the answer generated."""

    Config = QAOpenConfig
    needs = ("audio_pooled", "visual_pooled")  # plus the fields of task.memory, checked at construction
    primary_metric = "overall"

    def __init__(self, cfg: QAOpenConfig, method: nn.Module, info: DatasetInfo) -> None:
        if cfg.decoder == "task":
            super().__init__(cfg, method, info)
        else:
            check_method_decoder(cfg, method, METHOD_ANSWER, "answer_settings")
            nn.Module.__init__(self)
            self.cfg, self.info, self.method = cfg, info, method
            self.settings, self.memory, self.decoder = decoding(cfg), None, None
        answers = tokenize(list(info.class_names), ANSWER_WORDS + 1)  # [CLS] answer [SEP]
        start = 1 if self.decoder is not None else 0  # the method's decoder starts the answer with [CLS]
        self.register_buffer("answer_ids", answers["input_ids"][:, start:], persistent=False)  # (A, La)
        self.register_buffer("answer_mask", answers["attention_mask"][:, start:], persistent=False)

    @staticmethod
    def _questions(batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """The batch's questions: video row ``(N,)``, left-padded ids and mask ``(N, L)``, answers ``(N,)``. Rows of
        ``input_ids (B, Q, L)`` (a video with its questions) are flattened, the padding questions dropped."""
        ids, mask, answer = batch["input_ids"], batch["attention_mask"], batch["answer"]
        if ids.dim() == 2:
            row = torch.arange(len(ids), device=ids.device)
        else:
            b, q = ids.shape[:2]
            real = mask.flatten(0, 1).sum(dim=1) > 0  # (B*Q,)
            row = torch.arange(b, device=ids.device).repeat_interleave(q)[real]
            ids, mask, answer = ids.flatten(0, 1)[real], mask.flatten(0, 1)[real], answer.flatten()[real]
        return row, *left_pad(ids, mask), answer

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats = self.method(batch)
        row, ids, mask, answer = self._questions(batch)
        if self.decoder is None:
            loss = self.method.answer_loss(feats, row, (ids, mask), (self.answer_ids[answer], self.answer_mask[answer]))
            return add_method_losses({"loss": loss}, feats.losses)
        seq = torch.cat([ids, self.answer_ids[answer]], dim=1)  # (N, L + La): question, answer, [SEP], padding
        seq_mask = torch.cat([mask, self.answer_mask[answer]], dim=1)
        targets = torch.cat([torch.zeros_like(mask), self.answer_mask[answer]], dim=1)  # loss on the answer only
        keep = seq_mask.any(dim=0)  # (L + La,): the columns that are padding in every row (at both ends) go
        loss = self.decoder.loss(seq[:, keep], seq_mask[:, keep], self.memory(feats)[row], targets=targets[:, keep])
        return add_method_losses({"loss": loss}, feats.losses)

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        """``answer_text``: the generated answer of each question."""
        row, ids, mask, _ = self._questions(batch)
        if self.decoder is None:
            tokens = self.method.answer_generate(self.method(batch), row, (ids, mask), self.settings)
            return {"answer_text": detokenize(tokens)}
        memory = self.memory(self.method(batch))[row]  # (N, M, C): each question's video
        keep = mask.any(dim=0)  # (L,): the leading columns that are padding in every row go
        tokens = self.decoder.generate(memory, self.settings, prefix=(ids[:, keep], mask[:, keep]))
        return {"answer_text": detokenize(tokens)}

    def score(self, preds: dict[str, Any], targets: dict[str, Any]) -> dict[str, float]:
        """Exact match (percent, normalised answers) per question type, per group and overall."""
        truth = [self.info.class_names[a] for a in targets["answer"].tolist()]
        return exact_match_by_type(preds["answer_text"], truth, targets["question_type"])

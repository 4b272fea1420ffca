"""A transformer text decoder with cross-attention to a method's tokens: teacher forcing, greedy and beam search.

The decoder is ``transformers.BertLMHeadModel`` (``is_decoder=True``, ``add_cross_attention=True``) built from a
BERT-family config, so BERT or MiniLM weights load into it (Devlin et al., NAACL 2019; its cross-attention and the
LM head's transform start at random). The memory it attends to is the method's tokens, projected from their width
to the decoder width (``TextDecoder.memory_proj``). VALOR (Chen et al., 2023) decodes captions and open answers
the same way: a BERT decoder cross-attending to the audio-visual tokens.

Generation (``TextDecoder.generate``) runs greedy search or beam search (beam size, length penalty, no-repeat
n-gram, max length) in two ways that give the same tokens: with a key/value cache (each step feeds only the new
token; every layer's self-attention keys/values are kept and reordered with the beams, the cross-attention
keys/values are computed once from the memory) or without one (each step runs the whole sequence again).

Sequences are ``[CLS] prefix... text [SEP]`` in the BERT WordPiece vocabulary: [CLS] starts, [SEP] ends. A prefix
(e.g. a question) is left-padded, so that every row's next token sits at the same place; positions count the real
tokens only. Beam search: a hypothesis' score is its summed log-probability divided by ``length ** length_penalty``
(length = generated tokens, [SEP] included); it stops for a row once it holds ``beam_size`` finished hypotheses and
no running beam can beat the worst of them at its present length (Hugging Face's default ``early_stopping=False``
rule), or at ``max_length`` generated tokens, where running beams count as finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.base import load_hf_model
from avlearn.errors import ConfigError

_ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
PAD, UNK, CLS, SEP = 0, 100, 101, 102  # BERT's uncased WordPiece ids (bert-base-uncased, all-MiniLM-L6-v2)
NEVER = [PAD, *range(1, UNK), CLS]  # never generated: padding, [unused*] and [CLS]


@lru_cache(maxsize=1)
def wordpiece() -> Any:
    """The decoder vocabulary's tokenizer: all-MiniLM-L6-v2's uncased WordPiece (BERT's 30522 tokens), offline."""
    from avlearn.backbones.base import load_tokenizer
    from avlearn.backbones.bert import minilm_folder

    return load_tokenizer(str(minilm_folder()))


def tokenize(texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Texts -> ``input_ids`` and ``attention_mask`` ``(N, max_length)``: ``[CLS] words [SEP]``, right-padded."""
    batch = wordpiece()(list(texts), padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt")  # fmt: skip
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def detokenize(tokens: Sequence[Sequence[int]]) -> list[str]:
    """Generated ids -> texts (WordPiece pieces joined, special tokens dropped)."""
    return [wordpiece().decode(list(t), skip_special_tokens=True).strip() for t in tokens]


@dataclass(frozen=True)
class Decoding:
    """How to generate: ``beam_size`` 1 is greedy search; ``no_repeat_ngram`` 0 allows repeats."""

    beam_size: int = 1
    max_length: int = 30
    length_penalty: float = 1.0
    no_repeat_ngram: int = 0


@dataclass
class TextDecoderConfig:
    """The ``task.*`` keys of the tasks that generate text with ``TextDecoder`` (caption, qa_open).

    The decoder is a BERT of ``hidden_size`` / ``layers`` / ``heads`` / ``intermediate_size`` over the 30522-token
    WordPiece vocabulary; ``pretrained``: empty (random init), ``minilm_l6`` (the installed all-MiniLM-L6-v2, which
    needs 384 / 6 / 12 / 1536) or a BERT folder of the same size. ``vocab``: ``train`` (the output layer covers the
    WordPiece ids of the training texts, as captioning vocabularies are built from the training captions; far fewer
    rows than the full table, random init only) or ``full`` (all 30522). ``memory``: the ``AVFeatures`` fields it
    attends to. Generation: ``beam_size`` (1 = greedy), ``max_length`` tokens, ``length_penalty``, ``no_repeat_ngram``.
    """

    hidden_size: int = 256
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 1024
    pretrained: str = ""
    vocab: str = "train"
    dropout: float = 0.1
    label_smoothing: float = 0.1
    memory: list[str] = field(default_factory=lambda: ["audio_pooled", "visual_pooled", "visual"])
    max_segments: int = 64
    max_tokens: int = 256
    beam_size: int = 3
    max_length: int = 30
    length_penalty: float = 1.0
    no_repeat_ngram: int = 0


MEMORY_FIELDS = ("audio", "audio_pooled", "visual", "visual_pooled", "fused")


def decoding(cfg: TextDecoderConfig) -> Decoding:
    """The generation settings of ``cfg``, checked (one-line ConfigError naming the key)."""
    checks = {"beam_size": cfg.beam_size >= 1, "max_length": cfg.max_length >= 1,
              "no_repeat_ngram": cfg.no_repeat_ngram >= 0, "length_penalty": cfg.length_penalty >= 0}  # fmt: skip
    for key, ok in checks.items():
        if not ok:
            least = 1 if key in ("beam_size", "max_length") else 0
            raise ConfigError(f"task.{key}={getattr(cfg, key)}: expected a number >= {least}")
    return Decoding(cfg.beam_size, cfg.max_length, cfg.length_penalty, cfg.no_repeat_ngram)


def check_method_decoder(cfg: Any, method: nn.Module, hooks: tuple[str, ...], settings: str) -> None:
    """``task.decoder`` of a text-generating task (caption, qa_open): 'task' or 'method'; with 'method', the method
    must have the ``hooks`` (its own decoder), and the decoding keys it does not read (not in its ``settings``
    attribute) must keep their defaults. One-line ConfigErrors."""
    name = getattr(getattr(method, "cfg", None), "name", type(method).__name__)
    if cfg.decoder != "method":
        raise ConfigError(f"task.decoder={cfg.decoder!r}: expected 'task' (the shared TextDecoder) or 'method'")
    missing = [hook for hook in hooks if not callable(getattr(method, hook, None))]
    if missing:
        raise ConfigError(f"task.decoder=method: method '{name}' has no {' / '.join(missing)} (its own "
                          "decoder); use task.decoder=task")  # fmt: skip
    read = getattr(method, settings, ())
    for key in (f.name for f in dataclasses.fields(Decoding)):
        default = getattr(type(cfg), key)
        if key not in read and getattr(cfg, key) != default:
            raise ConfigError(f"task.{key}={getattr(cfg, key)}: method '{name}'s own decoder (task.decoder=method) "
                              f"reads only {', '.join(read) or 'no settings'}; leave it at {default}")  # fmt: skip


def build_text_decoder(
    cfg: TextDecoderConfig, method: nn.Module, task: str, vocab: Sequence[int]
) -> tuple[MemoryTokens, TextDecoder]:
    """The memory builder and decoder of a text-generating task, sized from ``method.dims``; ``vocab``: the WordPiece
    ids of the training texts (used with ``vocab=train``). A memory field that the method does not produce is a
    one-line ConfigError."""
    if cfg.vocab not in ("train", "full") or (cfg.vocab == "train" and cfg.pretrained):
        raise ConfigError(
            f"task.vocab={cfg.vocab!r}: expected 'train' (random init only) or 'full'"
            + (f" (task.pretrained={cfg.pretrained!r} needs 'full')" if cfg.pretrained else "")
        )
    unknown = [f for f in cfg.memory if f not in MEMORY_FIELDS]
    missing = [f for f in cfg.memory if f in MEMORY_FIELDS and f not in method.produces]
    if not cfg.memory or unknown:
        raise ConfigError(f"task.memory={list(cfg.memory)}: expected a non-empty list of {', '.join(MEMORY_FIELDS)}")
    if missing:
        raise ConfigError(f"task '{task}': task.memory reads AVFeatures.{', '.join(missing)}, which the method does "
                          f"not produce (it produces: {', '.join(method.produces)}); set task.memory")  # fmt: skip
    memory = MemoryTokens(cfg.memory, method.dims, cfg.hidden_size, cfg.max_segments, cfg.max_tokens)
    fields = {"hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads,
              "intermediate_size": cfg.intermediate_size, "vocab_size": 30522, "hidden_dropout_prob": cfg.dropout,
              "attention_probs_dropout_prob": cfg.dropout}  # fmt: skip
    pretrained = cfg.pretrained or None
    if pretrained == "minilm_l6":
        from avlearn.backbones.bert import minilm_folder

        pretrained = str(minilm_folder())
    kept = vocab if cfg.vocab == "train" else None
    return memory, TextDecoder(cfg.hidden_size, fields, pretrained, cfg.label_smoothing, kept)


class TextHead(nn.Module):
    """Base of the task heads that generate text: the method, its memory builder, the decoder and the generation
    settings, built from a ``TextDecoderConfig`` and the dataset info (``vocab``: the training texts' WordPiece ids)."""

    def __init__(self, cfg: TextDecoderConfig, method: nn.Module, info: Any) -> None:
        super().__init__()
        self.cfg, self.info, self.method = cfg, info, method
        self.settings = decoding(cfg)
        self.memory, self.decoder = build_text_decoder(cfg, method, cfg.name, getattr(info, "vocab", ()))


def left_pad(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(B, L)`` ids and mask -> the same rows left-padded (real tokens at the end)."""
    shift = mask.shape[1] - mask.sum(dim=1, keepdim=True)  # (B, 1) padding per row
    order = (torch.arange(mask.shape[1], device=ids.device)[None] - shift) % mask.shape[1]  # (B, L)
    return ids.gather(1, order), mask.gather(1, order)


class TextDecoder(nn.Module):
    """BERT decoder over memory tokens ``(B, M, C_mem)``: loss by teacher forcing, text by greedy or beam search.

    Args:
        memory_width: Width of the memory tokens (the method's, from ``method.dims``).
        config: ``BertConfig`` fields (hidden_size, num_hidden_layers, ...); ignored fields are refused.
        pretrained: ``None`` (random init) or a BERT-family folder / id whose weights fill the self-attention,
            feed-forward and embedding layers; they must match ``config``'s architecture fields.
        label_smoothing: Of the teacher-forced cross-entropy.
    """

    def __init__(
        self,
        memory_width: int,
        config: dict[str, Any],
        pretrained: str | None = None,
        label_smoothing: float = 0.0,
        vocab: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        from transformers import BertConfig, BertLMHeadModel

        decoder = {"is_decoder": True, "add_cross_attention": True}
        layers = int(config.get("num_hidden_layers", 12))
        new = tuple(f"bert.encoder.layer.{i}.crossattention" for i in range(layers)) + ("cls.",)
        full = int(config.get("vocab_size", 30522))
        kept = None if vocab is None else torch.tensor(sorted(set(range(SEP + 1)) | set(vocab)))  # (V',)
        if kept is not None and pretrained:
            raise ValueError("a reduced vocabulary needs a random-init decoder (the weights are per WordPiece id)")
        sized = config if kept is None else {**config, "vocab_size": len(kept)}
        fields = dict(sized) if pretrained else {**sized, **decoder}
        self.model = load_hf_model(BertLMHeadModel, BertConfig, fields, pretrained, _ARCH_FIELDS, new,
                                   model_kwargs=decoder if pretrained else None)  # fmt: skip
        self.width = self.model.config.hidden_size
        self.memory_proj = nn.Sequential(nn.Linear(memory_width, self.width), nn.LayerNorm(self.width))
        self.label_smoothing = label_smoothing
        # WordPiece id <-> the model's row; ids 0..[SEP] are always kept, so [PAD], [UNK], [CLS], [SEP] keep their ids
        self.register_buffer("to_local", torch.arange(full), persistent=False)
        self.register_buffer("to_global", torch.arange(full))  # saved: a trained decoder knows its vocabulary
        if kept is not None:
            self._set_vocab(kept)

    def _set_vocab(self, kept: torch.Tensor) -> None:
        """Rows of the model = the WordPiece ids ``kept`` (sorted); other ids read as [UNK]."""
        to_local = torch.full_like(self.to_local, UNK)
        to_local[kept] = torch.arange(len(kept), device=to_local.device)
        self.to_local, self.to_global = to_local, kept.to(self.to_global.device)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        """A checkpoint whose vocabulary differs from this decoder's (a trained run rebuilt without its data) resizes
        the embedding and output rows before they are loaded."""
        kept = state_dict.get(prefix + "to_global")
        if kept is not None and not torch.equal(kept.to(self.to_global.device), self.to_global):
            self.model.resize_token_embeddings(len(kept))
            self._set_vocab(kept)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def logits(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        cache: Any = None,
        past: int = 0,
    ) -> tuple[torch.Tensor, Any]:
        """Next-token logits ``(B, T, V)`` of ``ids (B, T)`` (the new tokens; ``mask (B, past + T)`` covers the cached
        ones too) over projected ``memory (B, M, C)``; and the updated cache (None without one)."""
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, past:]  # (B, T): real tokens counted
        out = self.model(input_ids=self.to_local[ids], attention_mask=mask, position_ids=positions,
                         encoder_hidden_states=memory, encoder_attention_mask=memory_mask, cache=cache,
                         use_cache=cache is not None)  # fmt: skip
        return out.logits, out.cache if cache is not None else None  # logits over the model's rows

    def loss(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced cross-entropy of ``ids (B, T)`` ([CLS] ... [SEP], ``mask`` 1 = real) given raw memory
        tokens ``(B, M, C_mem)``; ``targets (B, T)`` (bool) selects the predicted tokens (default: all real ones
        after the first)."""
        keep = mask.bool() if targets is None else targets.bool()
        logits, _ = self.logits(ids[:, :-1], mask[:, :-1], self.memory_proj(memory), memory_mask)  # (B, T-1, V)
        labels = self.to_local[ids[:, 1:]].masked_fill(~keep[:, 1:], -100)  # (B, T-1) model rows
        logits = logits.flatten(0, 1)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        return F.cross_entropy(logits, labels.flatten(), label_smoothing=self.label_smoothing)

    @torch.no_grad()
    def generate(
        self,
        memory: torch.Tensor,
        settings: Decoding,
        memory_mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_cache: bool = True,
    ) -> list[list[int]]:
        """Generated token ids per row (without [CLS], prefix and [SEP]) given raw memory tokens ``(B, M, C_mem)``.

        ``prefix``: left-padded ids and mask ``(B, P)`` that start every sequence (default ``[CLS]``).
        """
        b = memory.shape[0]
        if prefix is None:
            ones = torch.ones(b, 1, dtype=torch.long, device=memory.device)
            prefix = (ones * CLS, ones)
        k = settings.beam_size
        memory = self.memory_proj(memory).repeat_interleave(k, dim=0)  # (B*K, M, C)
        memory_mask = None if memory_mask is None else memory_mask.repeat_interleave(k, dim=0)
        ids, mask = (x.repeat_interleave(k, dim=0) for x in prefix)  # (B*K, P)
        stepper = _Stepper(self, memory, memory_mask, use_cache)
        search = _greedy if k == 1 else _beam
        rows = search(stepper, self.to_local[ids], mask, settings, b)  # in model rows
        return [self.to_global[torch.tensor(r, dtype=torch.long)].tolist() for r in rows]


class _Stepper:
    """Next-token log-probabilities of growing sequences, with or without a key/value cache."""

    def __init__(self, decoder: TextDecoder, memory: torch.Tensor, memory_mask: torch.Tensor | None, cached: bool):
        from transformers import DynamicCache, EncoderDecoderCache

        self.decoder, self.memory, self.memory_mask = decoder, memory, memory_mask
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache()) if cached else None
        self.seen = 0  # tokens already in the cache

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(R, T)`` sequences so far (model rows) -> ``(R, V)`` log-probabilities of their next token."""
        ids = self.decoder.to_global[ids]  # the decoder maps WordPiece ids to its rows
        if self.cache is None:
            logits, _ = self.decoder.logits(ids, mask, self.memory, self.memory_mask)
        else:
            new = ids[:, self.seen :]  # (R, T - seen): only what the cache lacks
            logits, self.cache = self.decoder.logits(new, mask, self.memory, self.memory_mask, self.cache, self.seen)
            self.seen = ids.shape[1]
        log_probs = logits[:, -1].float().log_softmax(dim=-1)
        log_probs[:, NEVER] = float("-inf")
        return log_probs

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep cache row ``rows[r]`` as row r (beams picked from other beams)."""
        if self.cache is not None:
            self.cache.self_attention_cache.reorder_cache(rows)


def _ban_repeats(log_probs: torch.Tensor, generated: torch.Tensor, n: int) -> torch.Tensor:
    """Set to -inf every token that would repeat an n-gram already in a row of ``generated (R, T)``."""
    if n <= 0 or generated.shape[1] < n - 1:
        return log_probs
    rows = generated.tolist()
    for r, seq in enumerate(rows):
        tail = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
        banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == tail}
        if banned:
            log_probs[r, list(banned)] = float("-inf")
    return log_probs


def _greedy(step: _Stepper, ids: torch.Tensor, mask: torch.Tensor, settings: Decoding, batch: int) -> list[list[int]]:
    """The most likely next token until [SEP] or ``max_length`` tokens."""
    start, done = ids.shape[1], torch.zeros(batch, dtype=torch.bool, device=ids.device)
    for _ in range(settings.max_length):
        log_probs = _ban_repeats(step(ids, mask), ids[:, start:], settings.no_repeat_ngram)  # (B, V)
        token = log_probs.argmax(dim=-1).masked_fill(done, PAD)  # (B,)
        ids, mask = torch.cat([ids, token[:, None]], 1), torch.cat([mask, (~done).long()[:, None]], 1)
        done |= token == SEP
        if done.all():
            break
    return [_strip(row) for row in ids[:, start:].tolist()]


def _strip(tokens: Sequence[int]) -> list[int]:
    """Generated ids up to the first [SEP], padding dropped."""
    out = []
    for t in tokens:
        if t == SEP:
            break
        if t != PAD:
            out.append(t)
    return out


@dataclass
class _Finished:
    """The finished hypotheses of one batch row: (score, tokens), best first, at most ``size``."""

    size: int
    items: list

    def add(self, score: float, tokens: list[int]) -> None:
        self.items = sorted([*self.items, (score, tokens)], key=lambda x: -x[0])[: self.size]

    def closed(self, best_running: float) -> bool:
        return len(self.items) == self.size and best_running <= self.items[-1][0]


def _beam(step: _Stepper, ids: torch.Tensor, mask: torch.Tensor, settings: Decoding, batch: int) -> list[list[int]]:
    """Beam search over ``batch * K`` rows (K beams a batch row, beam-major within a row)."""
    k, start, lp = settings.beam_size, ids.shape[1], settings.length_penalty
    scores = torch.full((batch, k), float("-inf"), device=ids.device)
    scores[:, 0] = 0.0  # one live beam at first: the K copies of the prefix are the same hypothesis
    finished = [_Finished(k, []) for _ in range(batch)]
    open_rows = [True] * batch
    for length in range(1, settings.max_length + 1):
        log_probs = _ban_repeats(step(ids, mask), ids[:, start:], settings.no_repeat_ngram)  # (B*K, V)
        vocab = log_probs.shape[-1]
        total = (scores[:, :, None] + log_probs.view(batch, k, vocab)).flatten(1)  # (B, K*V)
        top, index = total.topk(2 * k, dim=1)  # (B, 2K)
        beam, token = index // vocab, index % vocab
        rows, next_scores, next_tokens = [], [], []
        for b in range(batch):
            keep = _advance(b, top[b].tolist(), beam[b].tolist(), token[b].tolist(), ids, start, k, length, lp,
                            finished[b], open_rows[b])  # fmt: skip
            rows += [b * k + j for j, _, _ in keep]
            next_scores += [s for _, s, _ in keep]
            next_tokens += [t for _, _, t in keep]
            best_running = keep[0][1] / length**lp if keep else float("-inf")
            open_rows[b] = open_rows[b] and not finished[b].closed(best_running)
        picked = torch.tensor(rows, device=ids.device)
        step.reorder(picked)
        ids = torch.cat([ids[picked], torch.tensor(next_tokens, device=ids.device)[:, None]], 1)
        mask = torch.cat([mask[picked], torch.ones_like(mask[:, :1])], 1)
        scores = torch.tensor(next_scores, device=ids.device).view(batch, k)
        if not any(open_rows):
            break
    for b in range(batch):  # at max_length the running beams count as finished
        if open_rows[b]:
            for j in range(k):
                if scores[b, j] > float("-inf"):
                    finished[b].add(
                        float(scores[b, j]) / settings.max_length**lp, _strip(ids[b * k + j, start:].tolist())
                    )
    return [finished[b].items[0][1] for b in range(batch)]


def _advance(
    b: int, top: list, beam: list, token: list, ids: torch.Tensor, start: int, k: int, length: int, lp: float,
    finished: _Finished, is_open: bool,
) -> list[tuple[int, float, int]]:  # fmt: skip
    """The K beams row ``b`` continues with, ``(beam, score, token)``; [SEP] candidates among the best K go to
    ``finished``. A closed row keeps padding its beams (their scores no longer matter)."""
    if not is_open:
        return [(j, 0.0, PAD) for j in range(k)]
    keep = []
    for rank, (score, j, t) in enumerate(zip(top, beam, token, strict=True)):
        if score == float("-inf"):
            break
        if t == SEP:
            if rank < k:
                finished.add(score / length**lp, _strip(ids[b * k + j, start:].tolist()))
            continue
        keep.append((j, score, t))
        if len(keep) == k:
            break
    while len(keep) < k:  # fewer than K live candidates (tiny vocabularies): dead beams
        keep.append((0, float("-inf"), PAD))
    return keep


class MemoryTokens(nn.Module):
    """Chosen ``AVFeatures`` fields -> one token sequence ``(B, M, width)`` for the decoder to attend to.

    A pooled field ``(B, S, C)`` gives one token a segment, a token field ``(B, S, N, C)`` N tokens a segment; each is
    projected to ``width`` and gets learned embeddings of its field, its segment and (token fields) its index in the
    segment, so that the decoder can tell what, when and where.

    Args:
        fields: ``AVFeatures`` field names (``audio``, ``audio_pooled``, ``visual``, ``visual_pooled``, ``fused``).
        dims: The method's ``dims`` (each field's width).
        width: Output width.
        max_segments: Most segments a clip may have; ``max_tokens``: most tokens a segment may have.
    """

    def __init__(self, fields: Sequence[str], dims: dict, width: int, max_segments: int, max_tokens: int) -> None:
        super().__init__()
        self.fields = tuple(fields)
        self.proj = nn.ModuleDict({f: nn.Linear(dims[f], width) for f in self.fields})
        self.field_embed = nn.Parameter(torch.zeros(len(self.fields), width))
        self.segment_embed = nn.Parameter(torch.zeros(max_segments, width))
        self.token_embed = nn.Parameter(torch.zeros(max_tokens, width))
        for p in (self.field_embed, self.segment_embed, self.token_embed):
            nn.init.normal_(p, std=0.02)

    def forward(self, feats: Any) -> torch.Tensor:
        """``feats`` (``AVFeatures``) -> ``(B, M, width)``."""
        parts = []
        for k, name in enumerate(self.fields):
            x = getattr(feats, name)
            if x.dim() == 3:
                x = x[:, :, None]  # (B, S, C) -> (B, S, 1, C)
            s, n = x.shape[1:3]
            if s > len(self.segment_embed) or n > len(self.token_embed):
                raise ValueError(f"{name}: {s} segments of {n} tokens, more than max_segments / max_tokens")
            pos = self.segment_embed[:s, None] + self.token_embed[None, :n] + self.field_embed[k]  # (S, N, width)
            parts.append((self.proj[name](x) + pos).flatten(1, 2))  # (B, S, N, width) -> (B, S*N, width)
        return torch.cat(parts, dim=1)

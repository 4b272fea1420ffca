"""VALOR (Chen et al., "VALOR: Vision-Audio-Language Omni-Perception Pretraining Model and Dataset", TPAMI 2024;
arXiv:2304.08345; github.com/TXH-mercury/VALOR): vision, audio and text towers pretrained by multimodal grouping
alignment (MGA) and multimodal grouping captioning (MGC).

* Towers: a CLIP ViT encodes every frame on its own (all tokens after the final LayerNorm, per-frame CLS; VALOR-L)
  or a Video Swin the frames together (every frame's token grid, its mean as the frame's token; VALOR-B), an AST
  every audio clip (CLS + patch tokens, no distillation token, per-clip CLS), and one BERT is both the bidirectional
  text encoder and, with a cross-attention block added after every self-attention, the causal decoder over the
  concatenated video and audio tokens (the seed's ``share_txt_and_multimodal`` and ``va_concate``).
* MGA: text tokens, frame CLS and clip CLS tokens are projected (no bias) and L2-normalised; a small MLP per
  modality gives every token a weight (softmax over the tokens). The score of a text and a group (``tv``: the
  frames, ``ta``: the audio clips, ``tva``: both, one softmax over all of them) is the mean of the weighted
  text-to-group and group-to-text maxima of the token similarities; a symmetric InfoNCE over the batch gathered
  from every process (``avlearn.distributed.all_gather_with_grad``) at a learned temperature. All groups on every
  batch, averaged, times ``contra_weight``.
* MGC: ``mask_prob`` of the caption tokens after [CLS] are chosen (BERT's 80 % [MASK] / 10 % random / 10 % kept)
  and predicted under a causal mask, one decoder pass per group, the cross-entropies averaged. Generation appends
  [MASK] to the prefix and reads its prediction, step by step (``generate``), with a key/value cache.

What we changed, and why (``faithful: true`` restores the seed where it changes numbers; docs/methods/valor.md):

* Padded text positions are left out of the group-to-text maximum (the seed multiplies the similarities by the mask,
  so a padded position scores 0 and wins against negative similarities).
* The temperature is clamped to ``[min_temperature, max_temperature]`` (the seed's is unclamped).
* The masking runs on the device, vectorised (the seed loops in Python on the CPU every step); rows are re-drawn
  until one token is chosen, as in the seed.
* Frames and audio clips come from the batch's one-second segments: ``frames`` evenly spaced segments (the middle
  of each of ``frames`` equal parts, the seed's test-time choice; 0: every segment) and ``audio_clips`` clips made
  by cutting the concatenated segments into equal parts (0: one clip per segment), each cropped or zero-padded to
  the AST's input length. The two counts may differ.
* Task prompts (VALOR-L's ``use_task_prompt``; ``task_prompt: true`` in the VALOR-L recipes, off by default as in
  VALOR-B): the seed's sentences, ``[CLS] words [SEP]`` (``PROMPTS``). The text encoder reads the caption followed by
  'project language in common space' (its own positions from 0, the prompt embedding row, bidirectional over both)
  and keeps the caption's positions; the caption decoder gets 'describe the video with natural language' as its
  prompt segment; QA's question gets 'answer the question' after its [CLS]. The prompt embedding row is BERT's
  second token type (the seed adds a one-row ``prompt_embedding`` and never uses that token type; the converter
  puts the seed's row there).
* MLM (``mlm_groups``, empty by default; the seed's ``mlm%tv`` on its image / video-only pretraining datasets):
  15 % of the caption tokens chosen by MGC's masking rule and predicted by the decoder run bidirectionally over the
  caption followed by an always-on prompt ('predict masked tokens with visual cues', ... per group, ``MLM_PROMPTS``),
  cross-attending to the group's memory; the groups' mean cross-entropy is the ``mlm`` loss term.
* No CLIP text tower (built but unused by the seed).

An option beyond the seed, off by default (``mga_time: true``): time-indexed MGA tokens, a learned embedding per
frame index and per audio-clip index added to the projected frame and clip tokens before they are normalised, so
that MGA's token-level maxima can tell which second a token comes from (the seed's score is a function of the set of
tokens; its frame embeddings reach the decoder's memory only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from avlearn.backbones.base import Hidden
from avlearn.distributed import all_gather_with_grad
from avlearn.errors import ConfigError
from avlearn.layers.text_decoder import Decoding, wordpiece
from avlearn.methods.base import AVFeatures
from avlearn.registry import METHODS

GROUPS = ("tv", "ta", "tva")
# VALOR-L's task prompts (the seed's get_task_prompt sentences): text encoder, caption decoder, QA question prefix
PROMPTS = {"text": "project language in common space", "caption": "describe the video with natural language",
           "answer": "answer the question"}  # fmt: skip
# MLM's prompts per group (the seed's, always on), and its masking probability (the seed's fixed 0.15)
MLM_PROMPTS = {"tva": "predict masked tokens with visual and audio cues",
               "tv": "predict masked tokens with visual cues",
               "ta": "predict masked tokens with audio cues"}  # fmt: skip
MLM_MASK_PROB = 0.15
PAD, CLS, SEP, MASK = 0, 101, 102, 103  # BERT's uncased WordPiece ids
FIRST_RANDOM = 106  # random replacement ids start after the special tokens, as in the seed


@dataclass
class VALORConfig:
    """Schema of ``method/valor*.yaml``."""

    name: str = "valor"
    contra_dim: int = 512  # width of the MGA space
    groups: list[str] = field(default_factory=lambda: ["tva", "tv", "ta"])  # modality groups of MGA and MGC
    mask_prob: float = 0.6  # share of caption tokens predicted by MGC
    answer_mask_prob: float = 0.99  # share of answer tokens predicted in open-ended QA (the seed's 0.99)
    contra_weight: float = 1.5  # MGA loss weight (the seed's contra_loss_ratio)
    temperature: float = 0.07  # initial MGA temperature
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    frames: int = 0  # frames per clip, evenly spaced over the segments; 0: every segment
    audio_clips: int = 0  # audio clips per clip, cut from the concatenated segments; 0: one per segment
    max_frames: int = 32  # rows of the frame and audio-clip embedding tables (the seed's 32)
    faithful: bool = False  # the seed's padded-position scoring and unclamped temperature
    retrieval_group: str = "tva"  # the group whose MGA score ranks clips in task=retrieve task.similarity=method
    task_prompt: bool = False  # VALOR-L's use_task_prompt: the seed's task prompts (``PROMPTS``)
    mlm_groups: list[str] = field(default_factory=list)  # MLM's groups (the seed's mlm%tv); empty: no MLM
    mga_time: bool = False  # avlearn option: a learned frame / clip index embedding in the MGA tokens (not the seed's)


def _check_config(cfg: VALORConfig) -> None:
    """One-line ConfigErrors for invalid values."""
    for key in ("groups", "mlm_groups"):
        groups = list(getattr(cfg, key))
        if (key == "groups" and not groups) or any(g not in GROUPS for g in groups) or len(set(groups)) < len(groups):
            raise ConfigError(f"method.{key}={groups}: expected distinct groups among {', '.join(GROUPS)}"
                              f"{'' if key == 'groups' else ' (or none)'}")  # fmt: skip
    if cfg.retrieval_group not in GROUPS:
        raise ConfigError(f"method.retrieval_group={cfg.retrieval_group!r}: expected one of {', '.join(GROUPS)}")
    for key in ("mask_prob", "answer_mask_prob"):
        if not 0.0 < getattr(cfg, key) <= 1.0:
            raise ConfigError(f"method.{key}={getattr(cfg, key)}: expected 0 < {key} <= 1")
    if not 0.0 < cfg.min_temperature <= cfg.temperature <= cfg.max_temperature:
        raise ConfigError(f"method.temperature={cfg.temperature}: expected 0 < min_temperature "
                          f"({cfg.min_temperature}) <= temperature <= max_temperature "
                          f"({cfg.max_temperature})")  # fmt: skip
    for key in ("frames", "audio_clips"):
        if not 0 <= getattr(cfg, key) <= cfg.max_frames:
            raise ConfigError(f"method.{key}={getattr(cfg, key)}: expected 0 (every segment) to max_frames "
                              f"({cfg.max_frames})")  # fmt: skip
    if cfg.contra_dim < 1 or cfg.contra_weight < 0:
        raise ConfigError(f"method.contra_dim={cfg.contra_dim}, contra_weight={cfg.contra_weight}: expected >= 1, >= 0")


def _check_towers(visual: nn.Module, audio: nn.Module, text: nn.Module | None) -> None:
    """VALOR runs a CLIP image tower (VALOR-L) or a Video Swin (VALOR-B), an AST and a BERT-family text tower with the
    WordPiece vocabulary."""
    from avlearn.backbones.ast import AST
    from avlearn.backbones.bert import Bert
    from avlearn.backbones.clip import CLIPVision
    from avlearn.backbones.video_swin import VideoSwin

    expected = (("visual", visual, (CLIPVision, VideoSwin), "clip_vit_l14 or video_swin_b"),
                ("audio", audio, (AST,), "ast_valor"), ("text", text, (Bert,), "minilm_l6"))  # fmt: skip
    for slot, tower, classes, example in expected:
        if not isinstance(tower, classes):
            names = " or ".join(c.__name__ for c in classes)
            raise ConfigError(f"method valor: backbone.{slot} must be a {names} tower (e.g. {example}), "
                              f"got {type(tower).__name__}")  # fmt: skip
    vocab = text.model.config.vocab_size
    if vocab <= FIRST_RANDOM:
        raise ConfigError(f"method valor: backbone.text has {vocab} token ids; MGC needs BERT's WordPiece vocabulary "
                          f"([MASK] = {MASK}), e.g. minilm_l6 or minilm_tiny")  # fmt: skip


def mask_tokens(
    ids: torch.Tensor, mask: torch.Tensor, prob: float, vocab: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MGC's masking of ``ids (B, L)`` (``mask`` 1 = real token), on the ids' device: each real token after [CLS]
    is chosen with ``prob`` (a row without a chosen token is drawn again); a chosen token becomes [MASK] (80 %), a
    random id in ``[106, vocab)`` (10 %) or stays (10 %). Returns the inputs and the labels ``(B, L)``: the
    original id where chosen, -100 elsewhere."""
    candidates = mask.bool().clone()
    candidates[:, 0] = False
    chosen = torch.zeros_like(candidates)
    todo = candidates.any(dim=1)  # (B,) rows still without a chosen token
    while bool(todo.any()):
        draw = (torch.rand(ids.shape, device=ids.device, generator=generator) < prob) & candidates
        chosen = torch.where(todo[:, None], draw, chosen)
        todo = todo & ~chosen.any(dim=1)
    kind = torch.rand(ids.shape, device=ids.device, generator=generator)  # (B, L): < 0.8 mask, < 0.9 random
    random_ids = torch.randint(FIRST_RANDOM, vocab, ids.shape, device=ids.device, generator=generator)
    inputs = torch.where(chosen & (kind < 0.8), MASK, ids)
    inputs = torch.where(chosen & (kind >= 0.8) & (kind < 0.9), random_ids, inputs)
    return inputs, torch.where(chosen, ids, -100)


def mga_score(
    text: torch.Tensor,
    text_weight: torch.Tensor,
    text_mask: torch.Tensor,
    group: torch.Tensor,
    group_weight: torch.Tensor,
    faithful: bool = False,
) -> torch.Tensor:
    """MGA's (A, B) scores of A texts against B groups.

    Args:
        text: (A, L, D) normalised text tokens; ``text_weight`` (A, L) their logits; ``text_mask`` (A, L) 1 = real.
        group: (B, G, D) normalised group tokens (frames and/or audio clips); ``group_weight`` (B, G) their logits.
        faithful: padded text positions score 0 in the group-to-text maximum (the seed) instead of being left out.
    """
    real = text_mask.bool()
    w_text = text_weight.masked_fill(~real, float("-inf")).softmax(dim=-1)  # (A, L)
    w_group = group_weight.softmax(dim=-1)  # (B, G)
    sim = torch.einsum("ald,bgd->ablg", text, group)  # (A, B, L, G)
    pad = ~real[:, None, :, None]  # (A, 1, L, 1)
    sim = sim.masked_fill(pad, 0.0) if faithful else sim.masked_fill(pad, float("-inf"))
    text_to_group = sim.max(dim=-1).values.masked_fill(~real[:, None], 0.0)  # (A, B, L)
    group_to_text = sim.max(dim=-2).values  # (A, B, G)
    t2g = (text_to_group * w_text[:, None]).sum(dim=-1)  # (A, B)
    g2t = (group_to_text * w_group[None]).sum(dim=-1)  # (A, B)
    return (t2g + g2t) / 2


def contrastive_loss(score: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of an (N, N) score matrix whose diagonal holds the pairs: the mean of both directions'
    per-item losses."""
    logits = score / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _prompt_ids(sentence: str) -> torch.Tensor:
    """``[CLS] sentence [SEP]`` in BERT's uncased WordPiece ids ``(P,)``."""
    return torch.tensor(wordpiece()(sentence)["input_ids"], dtype=torch.long)


def _weight_mlp(dim: int) -> nn.Sequential:
    """A token's MGA weight logit: Linear-ReLU-Linear, (..., D) -> (..., 1)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))


@dataclass
class ContrastFeatures:
    """MGA's inputs: normalised tokens and their weight logits. A: texts, n frames, n_a audio clips, D width.

    Attributes:
        text: (A, L, D); text_weight: (A, L); text_mask: (A, L) 1 = real token.
        video: (B, n, D); video_weight: (B, n). audio: (B, n_a, D); audio_weight: (B, n_a).
    """

    text: torch.Tensor
    text_weight: torch.Tensor
    text_mask: torch.Tensor
    video: torch.Tensor
    video_weight: torch.Tensor
    audio: torch.Tensor
    audio_weight: torch.Tensor

    def gathered(self) -> ContrastFeatures:
        """The same fields over the global batch (every process's rows, differentiable)."""
        return ContrastFeatures(**{k: all_gather_with_grad(v) for k, v in vars(self).items()})

    def group(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A group's tokens (B, G, D) and weight logits (B, G): frames, audio clips or both."""
        parts = {"tv": [(self.video, self.video_weight)], "ta": [(self.audio, self.audio_weight)]}
        parts["tva"] = parts["tv"] + parts["ta"]
        tokens, weights = zip(*parts[name], strict=True)
        return torch.cat(tokens, dim=1), torch.cat(weights, dim=1)


class CrossAttention(nn.Module):
    """The decoder's cross-attention block after a BERT layer's self-attention: attention from the text to the
    memory tokens, then dense, dropout, residual and LayerNorm (post-norm, as BERT)."""

    def __init__(self, width: int, heads: int, dropout: float, attention_dropout: float, eps: float) -> None:
        super().__init__()
        self.heads, self.attention_dropout = heads, attention_dropout
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.dense, self.norm, self.dropout = nn.Linear(width, width), nn.LayerNorm(width, eps=eps), nn.Dropout(dropout)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, C) memory -> keys and values (B, H, M, C/H), computed once per memory."""
        return _heads(self.key(memory), self.heads), _heads(self.value(memory), self.heads)

    def forward(self, hidden: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, T, C) text states attending to the memory ``kv`` -> (B, T, C)."""
        p = self.attention_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(_heads(self.query(hidden), self.heads), *kv, dropout_p=p)
        return self.norm(hidden + self.dropout(self.dense(_merge(context))))


def _until_sep(tokens: torch.Tensor) -> list[list[int]]:
    """Generated ids ``(B, T)`` -> per row the ids before the first [SEP]."""
    rows = tokens.tolist()
    return [row[: row.index(SEP)] if SEP in row else row for row in rows]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, C/H)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, C/H) -> (B, T, C)."""
    return x.transpose(1, 2).flatten(2)


@dataclass
class DecoderCache:
    """Key/value cache of a decoding: per BERT layer, the self-attention keys and values of the tokens so far
    ``(B, H, P, C/H)`` (empty at first) and the cross-attention keys and values of the memory (computed once); with a
    prompt (QA's question), its keys and values per layer ``(B, H, Q, C/H)`` and its ``prompt_mask (B, Q)``, which
    every text token attends to."""

    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]
    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None]
    prompt_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    prompt_mask: torch.Tensor | None = None

    def fresh(self) -> DecoderCache:
        """The same memory and prompt, no text tokens yet (decoding without the cache reruns the prefix)."""
        return DecoderCache(self.memory_kv, [None] * len(self.self_kv), self.prompt_kv, self.prompt_mask)

    @property
    def length(self) -> int:
        """Tokens already in the cache."""
        return 0 if self.self_kv[0] is None else self.self_kv[0][0].shape[2]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep row ``rows[r]`` as row r (beams that continue other beams of the same clip, whose memory is the
        same: the memory's keys and values stay)."""
        self.self_kv = [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in self.self_kv]


@METHODS.register("valor")
@METHODS.register("valor_tiny")  # the same class; method/valor_tiny.yaml holds the test-size settings
@METHODS.register("valor_b")  # the same class; method/valor_b.yaml holds VALOR-B's settings (Video Swin tower)
class VALOR(nn.Module):
    """VALOR: CLIP ViT or Video Swin frames, AST audio clips, one BERT as text encoder and cross-attending decoder;
    MGA + MGC.

    Input ``frames (B, S_v, H, W, 3)`` uint8, ``audio (B, S_a, F, T)`` log-mels and, for the pretraining losses,
    ``text_ids`` / ``text_mask (B, L)`` in BERT's WordPiece ids ([CLS] ... [SEP], right-padded). Output AVFeatures:
    ``visual (B, n, 1 + N, Cv)`` every frame's tokens and ``visual_pooled`` its CLS (Video Swin: ``(B, n, N, Cv)``
    and the mean of the N), ``audio (B, n_a, 1 + Na, Ca)`` and ``audio_pooled`` likewise, ``text (B, L, Ct)`` /
    ``text_pooled`` ([CLS]) and ``losses`` ``mga`` / ``mgc`` (and ``mlm`` with ``mlm_groups``) when the batch
    carries text.
    """

    Config = VALORConfig
    produces = ("audio", "audio_pooled", "visual", "visual_pooled", "text", "text_pooled")
    loss_terms = ("mga", "mgc", "mlm")  # in AVFeatures.losses with text (task=pretrain); mlm with mlm_groups
    caption_settings = ("beam_size", "max_length")  # the task.* decoding keys caption_generate reads
    answer_settings = ("beam_size", "max_length")  # the task.* decoding keys answer_generate reads

    def __init__(self, cfg: VALORConfig, visual: nn.Module, audio: nn.Module, text: nn.Module | None = None) -> None:
        super().__init__()
        _check_config(cfg)
        _check_towers(visual, audio, text)
        self.cfg = cfg
        self.visual_backbone, self.audio_backbone, self.text_backbone = visual, audio, text
        # Never used: VALOR drops AST's distillation token and CLIP's projection (they would get no gradient).
        audio.model.embeddings.distillation_token.requires_grad_(False)
        self.video_swin = visual.modality == "video"  # VALOR-B's tower: every frame's tokens, no CLS
        if not self.video_swin:
            visual.model.visual_projection.requires_grad_(False)
        bert = text.model.config
        cv, ca, cd, dim = visual.num_features, audio.num_features, bert.hidden_size, cfg.contra_dim
        self.dims = {"audio": ca, "audio_pooled": ca, "visual": cv, "visual_pooled": cv, "text": cd, "text_pooled": cd}
        # MGA
        self.contra_text, self.contra_video, self.contra_audio = (nn.Linear(c, dim, bias=False) for c in (cd, cv, ca))
        self.weight_text, self.weight_video, self.weight_audio = (_weight_mlp(dim) for _ in range(3))
        self.temperature = nn.Parameter(torch.tensor(cfg.temperature))
        # option: index embeddings of the MGA tokens, about half the norm of a fresh projected token (sqrt(D / 3))
        self.mga_frame_time = nn.Parameter(0.3 * torch.randn(cfg.max_frames, dim)) if cfg.mga_time else None
        self.mga_clip_time = nn.Parameter(0.3 * torch.randn(cfg.max_frames, dim)) if cfg.mga_time else None
        # MGC: memory tokens, the decoder's cross-attention and the tied-embedding prediction head
        eps = bert.layer_norm_eps
        self.video_proj = None if cv == cd else nn.Sequential(nn.Linear(cv, cd), nn.LayerNorm(cd, eps=eps))
        self.audio_proj = None if ca == cd else nn.Sequential(nn.Linear(ca, cd), nn.LayerNorm(cd, eps=eps))
        self.video_frame_embedding = nn.Parameter(0.02 * torch.randn(cfg.max_frames, cd))
        self.audio_clip_embedding = nn.Parameter(0.02 * torch.randn(cfg.max_frames, cd))
        self.video_type_embedding = nn.Parameter(0.02 * torch.randn(cd))
        self.audio_type_embedding = nn.Parameter(0.02 * torch.randn(cd))
        self.cross = nn.ModuleList(
            CrossAttention(
                cd, bert.num_attention_heads, bert.hidden_dropout_prob, bert.attention_probs_dropout_prob, eps
            )  # fmt: skip
            for _ in range(bert.num_hidden_layers)
        )
        self.lm_transform = nn.Sequential(nn.Linear(cd, cd), nn.GELU(), nn.LayerNorm(cd, eps=eps))
        self.lm_bias = nn.Parameter(torch.zeros(bert.vocab_size))
        prompts = {**(PROMPTS if cfg.task_prompt else {}), **{f"mlm_{g}": MLM_PROMPTS[g] for g in cfg.mlm_groups}}
        for kind, sentence in prompts.items():
            self.register_buffer(f"prompt_{kind}", _prompt_ids(sentence), persistent=False)  # (P,)

    # ---- towers

    def encode_visual(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (B, S_v, H, W, 3)`` uint8 -> every chosen frame's tokens ``(B, n, 1 + N, Cv)`` (CLIP: CLS first),
        or ``(B, n, N, Cv)`` from the Video Swin, which encodes the n frames together."""
        s = frames.shape[1]
        n = self.cfg.frames or s
        index = ((torch.arange(n, device=frames.device) + 0.5) * s / n).long()  # the middle of n equal parts
        frames = frames[:, index]  # (B, n, H, W, 3)
        if self.video_swin:
            return self.visual_backbone.forward_frames(self.visual_backbone.preprocess(frames))  # (B, n, N, Cv)
        pixels = self.visual_backbone.preprocess(frames.flatten(0, 1))  # (B*n, 3, h, w)
        tokens = self.visual_backbone.forward_features(pixel_values=pixels)  # (B*n, 1 + N, Cv)
        return tokens.unflatten(0, (frames.shape[0], n))  # (B, n, 1 + N, Cv)

    def frame_pooled(self, visual: torch.Tensor) -> torch.Tensor:
        """Every frame's MGA token ``(B, n, Cv)``: the CLS (CLIP), or the mean of its tokens (Video Swin, as the
        seed's ``pool_video_for_contra``)."""
        return visual.mean(dim=2) if self.video_swin else visual[:, :, 0]

    def audio_clips(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio (B, S_a, F, T)`` one-second log-mels -> ``(B, n_a, F, T_in)`` AST inputs: one clip a segment, or
        the concatenated segments cut into ``audio_clips`` equal parts; each cropped or zero-padded to T_in."""
        config = self.audio_backbone.model.config
        if audio.shape[2] != config.num_mel_bins:
            raise ValueError(f"VALOR: audio has {audio.shape[2]} mel bins, the AST takes {config.num_mel_bins}")
        if self.cfg.audio_clips:
            audio = self._cut(audio.transpose(1, 2).flatten(2))  # (B, F, S_a*T) -> (B, n_a, F, T')
        length = config.max_length
        audio = audio[..., :length]
        return F.pad(audio, (0, length - audio.shape[-1]))  # (B, n_a, F, T_in)

    def _cut(self, joined: torch.Tensor) -> torch.Tensor:
        """(B, F, T_total) -> (B, n_a, F, T_total // n_a): equal consecutive parts (the remainder dropped)."""
        part = joined.shape[-1] // self.cfg.audio_clips
        return joined[..., : part * self.cfg.audio_clips].unflatten(-1, (self.cfg.audio_clips, part)).transpose(1, 2)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio (B, S_a, F, T)`` -> every clip's AST tokens ``(B, n_a, 1 + Na, Ca)``: CLS + patches (the
        distillation token and its position left out, as the seed)."""
        tower = self.audio_backbone
        clips = self.audio_clips(audio)  # (B, n_a, F, T_in)
        b, n = clips.shape[:2]
        embed = tower.model.embeddings
        patches = embed.patch_embeddings(clips.flatten(0, 1).transpose(1, 2))  # (B*n_a, T_in, F) -> (B*n_a, Na, Ca)
        position = embed.position_embeddings  # (1, 2 + Na, Ca): CLS, distillation, patches
        cls = (embed.cls_token + position[:, :1]).expand(len(patches), -1, -1)  # (B*n_a, 1, Ca)
        hidden = Hidden(embed.dropout(torch.cat([cls, patches + position[:, 2:]], dim=1)))  # (B*n_a, 1 + Na, Ca)
        for i in range(tower.num_stages):
            hidden = tower.run_stage(i, hidden)
        return tower.head(hidden).unflatten(0, (b, n))  # (B, n_a, 1 + Na, Ca)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The BERT as bidirectional text encoder: ``(B, L)`` ids -> tokens ``(B, L, Ct)`` and [CLS] ``(B, Ct)``
        (with ``task_prompt``: read together with the text prompt, ``encode_prompted``)."""
        if self.cfg.task_prompt:
            tokens = self.encode_prompted(input_ids, attention_mask, self.task_prompts("text", len(input_ids)))
        else:
            tokens = self.text_backbone.forward_features(input_ids=input_ids, attention_mask=attention_mask)
        return tokens, tokens[:, 0]

    def task_prompts(self, kind: str, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``PROMPTS[kind]`` ids and mask ``(rows, P)`` with ``task_prompt`` (MLM's ``mlm_<group>`` always),
        else None."""
        if not (self.cfg.task_prompt or kind.startswith("mlm_")):
            return None
        ids = getattr(self, f"prompt_{kind}").expand(rows, -1)  # (rows, P)
        return ids, torch.ones_like(ids)

    def encode_prompted(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt: tuple[torch.Tensor, torch.Tensor],
        memory: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The seed's BERT run bidirectionally over ``(B, L)`` ids followed by a ``prompt`` (ids, mask ``(B, P)``; its
        own positions from 0, the prompt row), every real token seeing every other, cross-attending to ``memory
        (B, M, Cd)`` when given (MLM; without: the text encoder); the L text positions' states ``(B, L, Ct)``."""
        bert = self.text_backbone.model
        ids, mask = prompt
        text = bert.embeddings(input_ids=input_ids)  # (B, L, Ct)
        extra = bert.embeddings(input_ids=ids, token_type_ids=torch.ones_like(ids))  # (B, P, Ct)
        keys = torch.cat([attention_mask, mask], dim=1).bool()  # (B, L + P)
        allowed = keys[:, None, None].expand(-1, 1, keys.shape[1], -1)  # (B, 1, L + P, L + P)
        cache = DecoderCache([], [None] * len(self.cross)) if memory is None else self.start_cache(memory)
        hidden = self._layers(torch.cat([text, extra], dim=1), allowed, cache, 0)
        return hidden[:, : input_ids.shape[1]]  # (B, L, Ct)

    def forward(self, batch: dict[str, torch.Tensor]) -> AVFeatures:
        """AVFeatures of ``batch``; with ``text_ids``, also the text tokens and the ``mga`` / ``mgc`` losses."""
        visual, audio = self.encode_visual(batch["frames"]), self.encode_audio(batch["audio"])
        feats = AVFeatures(audio=audio, audio_pooled=audio[:, :, 0], visual=visual,
                           visual_pooled=self.frame_pooled(visual))  # fmt: skip
        if "text_ids" in batch:
            ids, mask = batch["text_ids"], batch["text_mask"]
            feats.text, feats.text_pooled = self.encode_text(ids, mask)
            feats.losses = self.pretraining_losses(visual, audio, feats.text, ids, mask)
        return feats

    # ---- MGA

    def temperature_value(self) -> torch.Tensor:
        """The MGA temperature, clamped to ``[min_temperature, max_temperature]`` (as learned, with ``faithful``)."""
        if self.cfg.faithful:
            return self.temperature
        return self.temperature.clamp(self.cfg.min_temperature, self.cfg.max_temperature)

    def contrast_features(
        self, visual: torch.Tensor, audio: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor
    ) -> ContrastFeatures:
        """Tower tokens -> MGA's normalised text tokens ``(B, L, D)``, frame CLS ``(B, n, D)``, clip CLS
        ``(B, n_a, D)`` and their weight logits."""
        t = F.normalize(self.contra_text(text), dim=-1)  # (B, L, D)
        v = F.normalize(self._time_indexed(self.contra_video(self.frame_pooled(visual)), self.mga_frame_time), dim=-1)
        a = F.normalize(self._time_indexed(self.contra_audio(audio[:, :, 0]), self.mga_clip_time), dim=-1)
        return ContrastFeatures(t, self.weight_text(t).squeeze(-1), text_mask.long(), v,
                                self.weight_video(v).squeeze(-1), a, self.weight_audio(a).squeeze(-1))  # fmt: skip

    def _time_indexed(self, tokens: torch.Tensor, table: nn.Parameter | None) -> torch.Tensor:
        """``tokens (B, n, D)`` plus the row of their index in ``table (max_frames, D)`` (option ``mga_time``;
        unchanged without it)."""
        if table is None:
            return tokens
        if tokens.shape[1] > len(table):
            raise ValueError(f"VALOR: {tokens.shape[1]} frames or audio clips, more than method.max_frames")
        return tokens + table[: tokens.shape[1]]

    def mga_scores(self, feats: ContrastFeatures) -> dict[str, torch.Tensor]:
        """(A, B) text x clip scores of every configured group."""
        return {g: mga_score(feats.text, feats.text_weight, feats.text_mask, *feats.group(g), self.cfg.faithful)
                for g in self.cfg.groups}  # fmt: skip

    # ---- MGC

    def memory(self, visual: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each group's decoder memory ``(B, M, Cd)``: frame tokens (projected when Cv != Cd) plus a frame and a
        type embedding, clip tokens plus a clip and a type embedding, concatenated for ``tva``."""
        v = visual if self.video_proj is None else self.video_proj(visual)  # (B, n, 1 + N, Cd)
        a = audio if self.audio_proj is None else self.audio_proj(audio)  # (B, n_a, 1 + Na, Cd)
        if max(v.shape[1], a.shape[1]) > self.cfg.max_frames:
            raise ValueError(f"VALOR: {v.shape[1]} frames / {a.shape[1]} audio clips, more than method.max_frames")
        v = (v + self.video_frame_embedding[: v.shape[1], None]).flatten(1, 2) + self.video_type_embedding
        a = (a + self.audio_clip_embedding[: a.shape[1], None]).flatten(1, 2) + self.audio_type_embedding
        return {"tv": v, "ta": a, "tva": torch.cat([v, a], dim=1)}  # (B, n*(1+N), Cd), (B, n_a*(1+Na), Cd), both

    def start_cache(
        self,
        memory: torch.Tensor,
        prompt: tuple[torch.Tensor, torch.Tensor] | None = None,
        rows: torch.Tensor | None = None,
    ) -> DecoderCache:
        """An empty decoding cache over ``memory (B, M, Cd)`` (its cross-attention keys and values computed); with a
        ``prompt`` (ids, mask ``(B, Q)``, padding anywhere), its keys and values too (``encode_prompt``). With
        ``rows (N,)`` the cache holds N decodings, the n-th over memory row ``rows[n]`` (QA: several questions of one
        video), the keys and values computed once per memory row."""
        memory_kv = [block.memory_kv(memory) for block in self.cross]  # per layer (B, H, M, C/H) twice
        if rows is not None:
            memory_kv = [(k[rows], v[rows]) for k, v in memory_kv]  # (N, H, M, C/H)
        cache = DecoderCache(memory_kv, [None] * len(self.cross))
        if prompt is not None:
            cache.prompt_kv, cache.prompt_mask = self.encode_prompt(*prompt, cache), prompt[1].bool()
        return cache

    def encode_prompt(
        self, ids: torch.Tensor, mask: torch.Tensor, cache: DecoderCache
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The seed's prompt segment (QA's question): ``ids (B, Q)`` at positions counting its real tokens from 0,
        BERT's second token type, bidirectional among themselves and cross-attending to the memory, never seeing
        the text; the text attends to them. Returns each layer's prompt keys and values ``(B, H, Q, C/H)``."""
        bert = self.text_backbone.model
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, Q): left padding allowed
        hidden = bert.embeddings(input_ids=ids, position_ids=positions, token_type_ids=torch.ones_like(ids))
        allowed = mask.bool()[:, None, None].expand(-1, 1, ids.shape[1], -1)  # (B, 1, Q, Q)
        own = DecoderCache(cache.memory_kv, [None] * len(self.cross))
        self._layers(hidden, allowed, own, ids.shape[1])
        return own.self_kv

    def decode(
        self, ids: torch.Tensor, mask: torch.Tensor | None, cache: DecoderCache, keep: int | None = None
    ) -> torch.Tensor:
        """The causal decoder: states ``(B, T, Cd)`` of ``ids (B, T)`` placed after the ``cache.length`` cached
        tokens (``mask (B, T)`` 1 = real, None: all real). The keys and values of the first ``keep`` new tokens
        (default all) are added to the cache."""
        bert = self.text_backbone.model
        b, t = ids.shape
        past = cache.length
        positions = torch.arange(past, past + t, device=ids.device)  # (T,)
        hidden = bert.embeddings(input_ids=ids, position_ids=positions.expand(b, -1))  # (B, T, Cd)
        causal = torch.arange(past + t, device=ids.device)[None] <= positions[:, None]  # (T, P + T)
        allowed = causal[None, None].expand(b, 1, t, past + t)  # (B, 1, T, P + T)
        if mask is not None:
            keys = torch.cat([mask.new_ones(b, past), mask], dim=1).bool()  # (B, P + T)
            allowed = allowed & keys[:, None, None]
        if cache.prompt_mask is not None:  # every text token sees the prompt's real tokens
            prompt = cache.prompt_mask[:, None, None].expand(-1, 1, t, -1)  # (B, 1, T, Q)
            allowed = torch.cat([allowed, prompt], dim=-1)  # (B, 1, T, P + T + Q)
        return self._layers(hidden, allowed, cache, t if keep is None else keep)

    def _layers(self, hidden: torch.Tensor, allowed: torch.Tensor, cache: DecoderCache, keep: int) -> torch.Tensor:
        """The BERT layers with cross-attention over ``hidden (B, T, Cd)``, ``allowed (B, 1, T, keys)`` (none
        without ``cache.memory_kv``: the text encoder)."""
        for i, layer in enumerate(self.text_backbone.model.encoder.layer):
            hidden = self._self_attention(layer, hidden, allowed, cache, i, keep)
            if cache.memory_kv:
                hidden = self.cross[i](hidden, cache.memory_kv[i])
            hidden = layer.output(layer.intermediate(hidden), hidden)
        return hidden

    def _self_attention(
        self, layer: nn.Module, hidden: torch.Tensor, allowed: torch.Tensor, cache: DecoderCache, i: int, keep: int
    ) -> torch.Tensor:
        """One BERT layer's self-attention over the cached and new tokens, with its output block; caches the keys
        and values of the first ``keep`` new tokens."""
        attention = layer.attention.self
        heads = attention.num_attention_heads
        q, k, v = (_heads(f(hidden), heads) for f in (attention.query, attention.key, attention.value))  # (B,H,T,d)
        past = cache.self_kv[i]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, P + T, d)
        past_len = 0 if past is None else past[0].shape[2]
        cache.self_kv[i] = (k[:, :, : past_len + keep], v[:, :, : past_len + keep])
        if cache.prompt_kv is not None:
            k, v = torch.cat([k, cache.prompt_kv[i][0]], dim=2), torch.cat([v, cache.prompt_kv[i][1]], dim=2)
        drop = attention.dropout.p if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=drop)  # (B, H, T, d)
        return layer.attention.output(_merge(context), hidden)

    def token_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states ``(..., Cd)`` -> vocabulary logits ``(..., V)`` (output weights tied to the word
        embeddings)."""
        weight = self.text_backbone.model.embeddings.word_embeddings.weight
        return F.linear(self.lm_transform(hidden), weight, self.lm_bias)

    def mgc_loss(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        memory: torch.Tensor,
        prompt: tuple[torch.Tensor, torch.Tensor] | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of the chosen tokens (``labels (B, L)``, -100 elsewhere) from one causal decoder pass of the
        masked ``inputs (B, L)`` over ``memory (B, M, Cd)`` (and a ``prompt`` and memory ``rows``: ``start_cache``)."""
        hidden = self.decode(inputs, mask, self.start_cache(memory, prompt, rows))  # (B, L, Cd)
        chosen = labels != -100
        return F.cross_entropy(self.token_logits(hidden[chosen]).float(), labels[chosen])

    def next_token_logits(self, prefix: torch.Tensor, memory: torch.Tensor, cache: DecoderCache | None = None):
        """VALOR's mask-append step: ``[MASK]`` is appended to ``prefix (R, T)`` ([CLS] w_1 ... w_{T-1}) and its
        vocabulary logits ``(R, V)`` returned. Without ``cache`` the whole sequence runs; with one only the tokens it
        lacks and the [MASK] run, and the prefix's keys and values are kept (never the [MASK]'s)."""
        new = prefix if cache is None else prefix[:, cache.length :]  # (R, T - cached)
        cache = self.start_cache(memory) if cache is None else cache
        masks = torch.full_like(prefix[:, :1], MASK)  # (R, 1)
        hidden = self.decode(torch.cat([new, masks], dim=1), None, cache, keep=new.shape[1])  # (R, T' + 1, Cd)
        return self.token_logits(hidden[:, -1])

    @torch.no_grad()
    def generate(
        self,
        memory: torch.Tensor,
        max_length: int = 30,
        beam_size: int = 1,
        use_cache: bool = True,
        prompt: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> list[list[int]]:
        """Mask-append decoding over ``memory (B, M, Cd)`` (a group of ``memory``; ``prompt``: QA's question ids
        and mask ``(B, Q)``): per row the generated ids up to [SEP], at most ``max_length``. ``beam_size`` 1: greedy
        (as in the seed, a finished row keeps feeding [SEP]); more: beam search (``_beam``)."""
        if beam_size > 1:
            return self._beam(memory, max_length, beam_size, use_cache, prompt)
        prefix = torch.full((memory.shape[0], 1), CLS, dtype=torch.long, device=memory.device)  # (B, 1)
        cache = self.start_cache(memory, prompt)
        done = torch.zeros(memory.shape[0], dtype=torch.bool, device=memory.device)
        for _ in range(max_length):
            step = cache if use_cache else cache.fresh()
            token = self.next_token_logits(prefix, memory, step).argmax(dim=-1).masked_fill(done, SEP)  # (B,)
            prefix, done = torch.cat([prefix, token[:, None]], dim=1), done | (token == SEP)
            if bool(done.all()):
                break
        return _until_sep(prefix[:, 1:])

    def _beam(
        self,
        memory: torch.Tensor,
        max_length: int,
        k: int,
        use_cache: bool,
        prompt: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> list[list[int]]:
        """Beam search of ``k`` beams a row, scored by the summed log-probability, no length penalty (the seed's):
        a finished beam keeps its score and continues by [SEP] only (the seed lets it take every token at an
        unchanged score, so one finished hypothesis may fill several beams); stops when every beam has finished or
        after ``max_length`` tokens; the best beam wins."""
        b = memory.shape[0]
        memory = memory.repeat_interleave(k, dim=0)  # (B*K, M, Cd), beam-major within a row
        prompt = None if prompt is None else tuple(x.repeat_interleave(k, dim=0) for x in prompt)  # (B*K, Q) each
        prefix = torch.full((b * k, 1), CLS, dtype=torch.long, device=memory.device)  # (B*K, 1)
        scores = torch.full((b, k), float("-inf"), device=memory.device)
        scores[:, 0] = 0.0  # one live beam at first: the K copies of [CLS] are the same hypothesis
        done = torch.zeros(b, k, dtype=torch.bool, device=memory.device)
        cache = self.start_cache(memory, prompt)  # the prompt is the same for the K beams of a row: never reordered
        for _ in range(max_length):
            step = cache if use_cache else cache.fresh()
            log_probs = self.next_token_logits(prefix, memory, step).float().log_softmax(dim=-1)  # (B*K, V)
            vocab = log_probs.shape[-1]
            only_sep = torch.full_like(log_probs[0], float("-inf")).index_fill(
                0, torch.tensor([SEP], device=memory.device), 0.0
            )
            log_probs = torch.where(done.flatten()[:, None], only_sep, log_probs).view(b, k, vocab)
            scores, index = (scores[..., None] + log_probs).flatten(1).topk(k, dim=1)  # (B, K*V) -> (B, K)
            beam, token = index // vocab, index % vocab  # (B, K)
            rows = (torch.arange(b, device=memory.device)[:, None] * k + beam).flatten()  # (B*K,)
            prefix = torch.cat([prefix[rows], token.flatten()[:, None]], dim=1)
            cache.reorder(rows)
            done = done.gather(1, beam) | (token == SEP)
            if bool(done.all()):
                break
        best = scores.argmax(dim=1) + torch.arange(b, device=memory.device) * k  # (B,)
        return _until_sep(prefix[best, 1:])

    # ---- both

    def pretraining_losses(
        self,
        visual: torch.Tensor,
        audio: torch.Tensor,
        text: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        masked: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``mga``: the groups' mean InfoNCE over the global batch times ``contra_weight``; ``mgc``: the groups'
        mean masked-caption cross-entropy (``masked``: given inputs and labels instead of a fresh draw); ``mlm`` with
        ``mlm_groups``."""
        scores = self.mga_scores(self.contrast_features(visual, audio, text, mask).gathered())
        temperature = self.temperature_value()
        mga = torch.stack([contrastive_loss(s, temperature) for s in scores.values()]).mean()
        losses = {"mga": mga * self.cfg.contra_weight, "mgc": self.mgc(visual, audio, ids, mask, masked)}
        if self.cfg.mlm_groups:
            vocab = self.text_backbone.model.config.vocab_size
            losses["mlm"] = self.mlm(visual, audio, mask_tokens(ids, mask, MLM_MASK_PROB, vocab), mask)
        return losses

    def mlm(
        self, visual: torch.Tensor, audio: torch.Tensor, masked: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        """MLM: the ``masked`` caption (inputs and labels ``(B, L)``: ``mask_tokens`` at ``MLM_MASK_PROB``; ``mask``
        1 = real token) predicted bidirectionally over each of ``mlm_groups``' memory with its prompt; the mean CE."""
        inputs, labels = masked
        memory, chosen = self.memory(visual, audio), labels != -100
        losses = []
        for g in self.cfg.mlm_groups:
            hidden = self.encode_prompted(inputs, mask, self.task_prompts(f"mlm_{g}", len(inputs)), memory[g])
            losses.append(F.cross_entropy(self.token_logits(hidden[chosen]).float(), labels[chosen]))  # (L,) chosen
        return torch.stack(losses).mean()

    def mgc(
        self,
        visual: torch.Tensor,
        audio: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        masked: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """MGC: the configured groups' mean masked-caption cross-entropy of ``ids`` / ``mask (B, L)`` over the tower
        tokens (``masked``: given inputs and labels instead of a fresh draw)."""
        vocab = self.text_backbone.model.config.vocab_size
        inputs, labels = masked or mask_tokens(ids, mask, self.cfg.mask_prob, vocab)
        memory, prompt = self.memory(visual, audio), self.task_prompts("caption", len(ids))
        return torch.stack([self.mgc_loss(inputs, mask, labels, memory[g], prompt) for g in self.cfg.groups]).mean()

    def question_prompt(self, question: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """QA's prompt segment: the question ids / mask ``(N, Q)``, with ``task_prompt`` the words of 'answer the
        question' put after its [CLS] (the seed's ``cat(question[:, :1], prompt[1:-1], question[:, 1:])``)."""
        if not self.cfg.task_prompt:
            return question
        ids, mask = question
        words = self.prompt_answer[1:-1].expand(len(ids), -1)  # (N, P - 2)
        return (torch.cat([ids[:, :1], words, ids[:, 1:]], dim=1),
                torch.cat([mask[:, :1], torch.ones_like(words), mask[:, 1:]], dim=1))  # fmt: skip

    # ---- the open-ended QA task's method-decoder hooks (task=qa_open task.decoder=method; docs/architecture.md)

    def answer_loss(
        self,
        feats: AVFeatures,
        row: torch.Tensor,
        question: tuple[torch.Tensor, torch.Tensor],
        answer: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Open-ended QA fine-tuning (the seed's ``qa%...``): ``answer`` ids / mask ``(N, La)`` ([CLS] answer [SEP])
        masked at ``answer_mask_prob`` and predicted under the causal mask, with ``question`` ids / mask ``(N, Q)``
        as the bidirectional prompt, over the memory of video ``row (N,)``; the configured groups' mean."""
        vocab = self.text_backbone.model.config.vocab_size
        inputs, labels = mask_tokens(*answer, self.cfg.answer_mask_prob, vocab)
        memory, prompt = self.memory(feats.visual, feats.audio), self.question_prompt(question)
        losses = [self.mgc_loss(inputs, answer[1], labels, memory[g], prompt, row) for g in self.cfg.groups]
        return torch.stack(losses).mean()

    @torch.no_grad()
    def answer_generate(
        self, feats: AVFeatures, row: torch.Tensor, question: tuple[torch.Tensor, torch.Tensor], settings: Decoding
    ) -> list[list[int]]:
        """Mask-append decoding of each question's answer (``question`` ids / mask ``(N, Q)`` as the prompt, video
        ``row (N,)``) over the first configured group's memory: WordPiece ids per question."""
        memory = self.memory(feats.visual, feats.audio)[self.cfg.groups[0]][row]  # (N, M, Cd)
        return self.generate(memory, settings.max_length, settings.beam_size, prompt=self.question_prompt(question))

    # ---- the caption task's method-decoder hook (task=caption task.decoder=method; docs/architecture.md)

    def caption_loss(self, feats: AVFeatures, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Caption fine-tuning (the seed's ``cap%...``): MGC alone on the caption ``ids`` / ``mask (B, L)``
        ([CLS] ... [SEP], right-padded WordPiece ids), over every configured group."""
        return self.mgc(feats.visual, feats.audio, ids, mask)

    @torch.no_grad()
    def caption_generate(self, feats: AVFeatures, settings: Decoding) -> list[list[int]]:
        """Mask-append decoding (``generate``, key/value cache) over the first configured group's memory, with
        ``settings.beam_size`` and ``settings.max_length`` (the seed's beam 3, 30 tokens): WordPiece ids per clip."""
        memory = self.memory(feats.visual, feats.audio)[self.cfg.groups[0]]  # (B, M, Cd)
        prompt = self.task_prompts("caption", len(memory))
        return self.generate(memory, settings.max_length, settings.beam_size, prompt=prompt)

    # ---- the retrieve task's method-similarity hooks (task=retrieve task.similarity=method; docs/architecture.md)

    def retrieval_features(self, feats: AVFeatures, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """MGA's inputs per clip and its caption ``ids`` / ``mask (B, L)``: ``text (B, L, D)``, ``text_weight`` /
        ``text_mask (B, L)``, and the ``method.retrieval_group`` group's ``clip (B, G, D)`` / ``clip_weight (B, G)``."""
        text, _ = self.encode_text(ids, mask)
        contrast = self.contrast_features(feats.visual, feats.audio, text, mask)
        clip, clip_weight = contrast.group(self.cfg.retrieval_group)
        return {"text": contrast.text, "text_weight": contrast.text_weight, "text_mask": contrast.text_mask,
                "clip": clip, "clip_weight": clip_weight}  # fmt: skip

    def retrieval_similarity(self, features: dict[str, torch.Tensor], chunk: int = 256) -> torch.Tensor:
        """``(T, V)`` MGA scores of every text against every clip of ``features`` (``retrieval_features`` rows),
        ``chunk`` texts at a time (the token similarities are (chunk, V, L, G))."""
        clip, clip_weight = features["clip"], features["clip_weight"]
        rows = [mga_score(t, w, m, clip, clip_weight, self.cfg.faithful)
                for t, w, m in zip(*(features[k].split(chunk) for k in ("text", "text_weight", "text_mask")),
                                   strict=True)]  # fmt: skip
        return torch.cat(rows)

    def retrieval_loss(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Retrieval fine-tuning (the seed's ``ret%...``: contrastive only): the InfoNCE of the retrieval group's MGA
        scores over the global batch, at the learned temperature."""
        gathered = {key: all_gather_with_grad(value) for key, value in features.items()}
        return contrastive_loss(self.retrieval_similarity(gathered), self.temperature_value())

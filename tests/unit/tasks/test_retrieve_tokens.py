"""The retrieve task's token-level options: a text tower trained in the task (its top ``text_layers`` only),
attention pooling of the caption's tokens (against a hand-written single-head attention) and of the method's tokens
(where a token lies reaches the clip embedding), the caption pipeline's token ids (the same caption as its
embedding), and their one-line config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avlearn.data.pipelines.captions import CaptionSegments, _tokenize_captions
from avlearn.data.schema import DatasetInfo
from avlearn.data.segments import SegmentTensors
from avlearn.errors import ConfigError, DataError
from avlearn.tasks.retrieve import AttentionPool, RetrieveConfig, RetrieveTask, index_encoding

TEXT = 32  # bert_tiny's width
VOCAB = 100  # bert_tiny's vocabulary


def _task(method, **cfg) -> RetrieveTask:
    torch.manual_seed(0)
    config = RetrieveConfig(text="bert_tiny", dim=16, heads=2, dropout=0.0, **cfg)
    return RetrieveTask(config, method, DatasetInfo(("a", "b"), 10))


def _batch(clip_batch, n: int, length: int = 6) -> dict:
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, VOCAB, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, length // 2 :] = 0  # the first caption is padded after half its length
    text = F.normalize(torch.randn(n, TEXT, generator=g), dim=-1)
    return clip_batch(torch.zeros(n, 10, dtype=torch.long), text=text, input_ids=ids, attention_mask=mask)


def test_only_the_top_text_layers_and_the_heads_train(tiny_method, clip_batch):
    task = _task(tiny_method(), text_layers=1)
    trained = {n for n, p in task.text_tower.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("model.encoder.layer.1.") for n in trained)
    task(_batch(clip_batch, 4))["loss"].backward()
    grads = {n for n, p in task.text_tower.named_parameters() if p.grad is not None}
    assert grads == trained
    assert all(p.grad is not None for p in task.text.parameters())


def test_sentence_pooling_in_the_task_is_what_the_cached_embedding_would_be(tiny_method, clip_batch):
    """With sentence pooling the text head reads the tower's L2-normalised pooled embedding, as ``embed_prompts``
    caches it for a frozen tower."""
    task = _task(tiny_method(), text_layers=1).eval()
    batch = _batch(clip_batch, 3)
    cached = F.normalize(task.text_tower(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]), dim=-1)
    torch.testing.assert_close(task.text_embedding(batch), F.normalize(task.text(cached), dim=-1))


def test_attention_pool_is_single_head_attention_by_hand():
    torch.manual_seed(0)
    pool = AttentionPool(6, 8, heads=1, indexed=True).eval()
    tokens, mask = torch.randn(2, 5, 6), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    h = pool.proj(tokens) + index_encoding(5, 8)  # (B, L, D)
    wq, wk, wv = pool.attend.in_proj_weight.chunk(3)
    bq, bk, bv = pool.attend.in_proj_bias.chunk(3)
    q, k, v = pool.query[0] @ wq.T + bq, h @ wk.T + bk, h @ wv.T + bv  # (1, D), (B, L, D), (B, L, D)
    logits = (q @ k.transpose(1, 2)).squeeze(1) / math.sqrt(8)  # (B, L)
    weights = logits.masked_fill(mask == 0, float("-inf")).softmax(dim=-1)
    by_hand = (weights.unsqueeze(-1) * v).sum(dim=1) @ pool.attend.out_proj.weight.T + pool.attend.out_proj.bias
    torch.testing.assert_close(pool(tokens, mask), by_hand)


def test_index_encoding_is_the_sinusoid_formula():
    enc = index_encoding(7, 6)
    for pos in range(7):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert enc[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert enc[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_where_a_token_lies_reaches_the_pooled_vector_only_when_indexed():
    torch.manual_seed(0)
    tokens = torch.randn(1, 4, 6)
    flipped = tokens.flip(1)
    plain, indexed = AttentionPool(6, 8, 2, indexed=False).eval(), AttentionPool(6, 8, 2, indexed=True).eval()
    torch.testing.assert_close(plain(flipped), plain(tokens))
    assert (indexed(flipped) - indexed(tokens)).abs().max() > 1e-3


def test_text_attention_pooling_ignores_padded_tokens(tiny_method, clip_batch):
    task = _task(tiny_method(), text_pool="attention").eval()
    batch = _batch(clip_batch, 3)
    before = task.text_embedding(batch)
    batch["input_ids"][0, 3:] = 7  # the padded positions of caption 0 hold other ids
    torch.testing.assert_close(task.text_embedding(batch), before)
    assert not any(p.requires_grad for p in task.text_tower.parameters())  # text_layers=0: the tower is frozen


@pytest.mark.parametrize(
    ("features", "pools"), [("audio", {"audio"}), ("visual", {"visual"}), ("av", {"audio", "visual"})]
)
def test_clip_attention_pooling_reads_the_tokens_of_each_modality(tiny_method, clip_batch, features, pools):
    task = _task(tiny_method(), features=features, clip_pool="attention")
    assert set(task.clip_pools) == pools
    assert task.clip.proj.in_features == 16 * len(pools)
    loss = task(_batch(clip_batch, 3))["loss"]
    loss.backward()
    assert all(p.grad is not None for p in task.clip_pools.parameters())


def test_pipeline_tokens_are_those_of_the_drawn_caption():
    from avlearn.registry import BACKBONES

    captions = [["a dog barks", "a red circle on the left"], ["the whistle from second 5 to 7"]]
    tokens = _tokenize_captions("minilm_l6", None, captions)
    assert tokens["input_ids"].shape[:2] == (2, 2) and tokens["attention_mask"][1, 1].sum() == 0
    tower = BACKBONES.build("minilm_l6")
    for row, caps in enumerate(captions):
        for col, caption in enumerate(caps):
            alone = tower.tokenize([caption])["input_ids"][0]  # (L_c,)
            assert tokens["input_ids"][row, col, : len(alone)].tolist() == alone.tolist()
    clips = SegmentTensors(["x", "y"], torch.zeros(2, 1, 2, 2, 3, dtype=torch.uint8), torch.zeros(2, 1, 2, 2),
                           torch.zeros(2, 1, dtype=torch.long))  # fmt: skip
    texts = torch.arange(4.0).reshape(2, 2, 1)  # caption (row, col) embedded as 2 * row + col
    data = CaptionSegments(clips, texts, torch.tensor([2, 1]), draw=True, tokens=tokens)
    torch.manual_seed(0)
    for _ in range(8):
        item = data[0]
        col = int(item["text"].item())
        assert item["input_ids"].tolist() == tokens["input_ids"][0, col].tolist()


class _PooledOnly(nn.Module):
    """A method producing pooled features only."""

    produces = ("audio_pooled", "visual_pooled")
    dims = {"audio_pooled": 16, "visual_pooled": 16}


@pytest.mark.parametrize(
    ("make", "cfg", "match"),
    [
        (None, {"text_pool": "cls"}, "task.text_pool"),
        (None, {"clip_pool": "max"}, "task.clip_pool"),
        (None, {"text_layers": 3}, "task.text_layers"),
        (None, {"temporal_pool": "max"}, "task.temporal_pool"),
        (_PooledOnly, {"clip_pool": "attention"}, "task.clip_pool=attention"),
    ],
)
def test_invalid_token_options_are_one_line_errors(tiny_method, make, cfg, match):
    with pytest.raises(ConfigError, match=match) as err:
        _task(make() if make else tiny_method(), **cfg)
    assert "\n" not in str(err.value)


def test_temporal_flatten_projects_each_normalised_segment_output_with_its_own_weights():
    from avlearn.tasks.retrieve import ClipEncoder

    torch.manual_seed(0)
    enc = ClipEncoder(6, 8, segments=4, heads=2, dropout=0.0, temporal="flatten").eval()
    x = torch.randn(3, 4, 6)
    h = enc.mix(enc.proj(x) + enc.position)  # (B, S, D)
    norm, linear = enc.out[0], enc.out[2]
    by_hand = F.normalize(torch.cat([norm(h[:, s]) for s in range(4)], dim=1) @ linear.weight.T + linear.bias, dim=-1)
    torch.testing.assert_close(enc(x), by_hand)
    with pytest.raises(DataError, match="4 segments"):
        enc(x[:, :3])

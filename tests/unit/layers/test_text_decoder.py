"""The text decoder (avlearn.layers.text_decoder): decoding with the key/value cache gives exactly the tokens of
decoding without it; greedy search is the argmax of the teacher-forced logits; left-padded prefixes decode as if
alone; no-repeat n-gram bans; the teacher-forced loss against a hand-written cross-entropy; BERT weights load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avlearn.layers.text_decoder import CLS, NEVER, SEP, Decoding, TextDecoder, _Stepper, left_pad

TINY = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64}  # fmt: skip


def _decoder(sep_bias: float = 0.0, seed: int = 0) -> TextDecoder:
    """A random tiny decoder in float64 (cache and no-cache round differently in float32); ``sep_bias`` makes
    [SEP] likelier, so that hypotheses end at different lengths."""
    torch.manual_seed(seed)
    decoder = TextDecoder(16, TINY).double().eval()
    with torch.no_grad():
        decoder.model.cls.predictions.bias[SEP] += sep_bias
    return decoder


def _memory(rows: int = 3, tokens: int = 7) -> torch.Tensor:
    return torch.randn(rows, tokens, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


SETTINGS = [
    Decoding(1, 12),
    Decoding(1, 9, no_repeat_ngram=2),
    Decoding(2, 10),
    Decoding(3, 12, length_penalty=1.0, no_repeat_ngram=2),
    Decoding(4, 15, length_penalty=0.6),
    Decoding(5, 8, length_penalty=1.5, no_repeat_ngram=3),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
@pytest.mark.parametrize("sep_bias", [0.0, 3.0])
def test_decoding_with_the_cache_gives_the_tokens_of_decoding_without_it(settings, sep_bias):
    decoder, memory = _decoder(sep_bias), _memory()
    cached = decoder.generate(memory, settings, use_cache=True)
    plain = decoder.generate(memory, settings, use_cache=False)
    assert cached == plain
    assert all(len(t) <= settings.max_length for t in cached)
    if sep_bias:  # some hypotheses end before max_length: the finished-hypothesis path is exercised
        assert any(len(t) < settings.max_length for t in cached)


def test_cached_decoding_with_a_left_padded_prefix_matches_without_cache_and_each_row_alone():
    decoder, memory = _decoder(2.0), _memory(2)
    ids = torch.tensor([[CLS, 105, 106, 107, SEP], [CLS, 109, SEP, 0, 0]])
    prefix = left_pad(ids, (ids > 0).long())
    assert prefix[0].tolist() == [[CLS, 105, 106, 107, SEP], [0, 0, CLS, 109, SEP]]
    for settings in (Decoding(1, 10), Decoding(3, 10)):
        together = decoder.generate(memory, settings, prefix=prefix)
        assert together == decoder.generate(memory, settings, prefix=prefix, use_cache=False)
        alone = decoder.generate(memory[1:], settings, prefix=(ids[1:, :3], torch.ones(1, 3, dtype=torch.long)))
        assert together[1] == alone[0]


def test_greedy_tokens_are_the_argmax_of_the_teacher_forced_logits():
    decoder, memory = _decoder(), _memory(1)
    tokens = decoder.generate(memory, Decoding(1, 10))[0]
    seq = torch.tensor([[CLS, *tokens]])
    logits, _ = decoder.logits(seq, torch.ones_like(seq), decoder.memory_proj(memory))  # one pass, no cache
    logits[..., NEVER] = float("-inf")  # padding, [unused*] and [CLS] are never generated
    assert logits[0].argmax(dim=-1)[:-1].tolist() == tokens and len(tokens) == 10
    assert not set(tokens) & set(NEVER)


def test_teacher_forced_log_probs_after_a_left_padded_prefix_are_those_decoding_scores():
    """What training sees (one pass over prefix + answer, as qa_open's loss) is what generation scores step by step
    (the key/value cache, a token at a time): same positions, masks and first-token handling, with or without the
    cache."""
    decoder, memory = _decoder(), _memory(2)
    question = torch.tensor([[CLS, 105, 106, 107, SEP], [CLS, 109, SEP, 0, 0]])
    prefix, prefix_mask = left_pad(question, (question > 0).long())  # (2, 5)
    answer = torch.tensor([[111, 112, SEP], [113, SEP, 0]])  # (2, 3): right-padded, as qa_open's answers
    ids, mask = torch.cat([prefix, answer], 1), torch.cat([prefix_mask, (answer > 0).long()], 1)  # (2, 8)
    logits, _ = decoder.logits(ids[:, :-1], mask[:, :-1], decoder.memory_proj(memory))  # (2, 7, V)
    taught = logits[:, 4:].log_softmax(-1)  # (2, 3, V): the predictions of the answer tokens
    for cached in (True, False):
        step = _Stepper(decoder, decoder.memory_proj(memory), None, cached)
        scored = torch.stack([step(ids[:, : 5 + t], mask[:, : 5 + t]) for t in range(3)], 1)  # (2, 3, V)
        real = answer > 0  # (2, 3): row 1's last step follows its [SEP] and is not compared
        allowed = torch.isfinite(scored[real])  # decoding never scores NEVER's tokens
        torch.testing.assert_close(scored[real][allowed], taught[real][allowed].float())  # decoding scores in fp32


def test_no_repeat_ngram_bans_repeated_ngrams():
    decoder, memory = _decoder(), _memory(2)
    with torch.no_grad():
        decoder.model.cls.predictions.bias[110] += 50.0  # without the ban the decoder says token 110 forever
    assert set(decoder.generate(memory, Decoding(1, 6))[0]) == {110}
    for n, k in ((1, 1), (2, 1), (2, 3)):
        for tokens in decoder.generate(memory, Decoding(k, 8, no_repeat_ngram=n)):
            grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
            assert len(grams) == len(set(grams))


def test_teacher_forced_loss_is_the_cross_entropy_of_the_selected_next_tokens():
    decoder, memory = _decoder(), _memory(2)
    ids = torch.tensor([[CLS, 105, 106, SEP, 0], [CLS, 108, 109, 110, SEP]])
    mask = (ids > 0).long()
    targets = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]])  # predict only the last tokens
    logits, _ = decoder.logits(ids[:, :-1], mask[:, :-1], decoder.memory_proj(memory))  # (2, 4, V)
    picked = [(0, 1, 106), (0, 2, SEP), (1, 2, 110), (1, 3, SEP)]  # (row, position, next token)
    expected = torch.stack([-logits[r, t].log_softmax(-1)[y] for r, t, y in picked]).mean()
    torch.testing.assert_close(decoder.loss(ids, mask, memory, targets=targets), expected)
    decoder.label_smoothing = 0.2
    smooth = torch.stack([F.cross_entropy(logits[r, t][None], torch.tensor([y]), label_smoothing=0.2)
                          for r, t, y in picked]).mean()  # fmt: skip
    torch.testing.assert_close(decoder.loss(ids, mask, memory, targets=targets), smooth)


def test_a_training_vocabulary_maps_wordpiece_ids_to_rows_and_back():
    torch.manual_seed(0)
    full = TextDecoder(16, {**TINY, "vocab_size": 30522}, vocab=[2000, 2003, 7000])
    assert full.model.config.vocab_size == SEP + 1 + 3  # ids 0..[SEP] are always kept
    assert full.to_local[torch.tensor([SEP, 2003, 7000, 5000])].tolist() == [SEP, SEP + 2, SEP + 3, 100]  # 100: [UNK]
    with torch.no_grad():
        full.model.cls.predictions.bias[SEP + 3] += 30.0  # row of WordPiece 7000
    assert set(full.eval().generate(_memory(1).float(), Decoding(2, 4))[0]) == {7000}


def test_minilm_weights_load_into_the_decoder():
    from transformers import BertModel

    from avlearn.backbones.bert import minilm_folder

    config = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
              "vocab_size": 30522}  # fmt: skip
    decoder = TextDecoder(16, config, pretrained=str(minilm_folder()))
    encoder = BertModel.from_pretrained(str(minilm_folder()))
    ours, theirs = decoder.model.bert.state_dict(), encoder.state_dict()
    shared = [k for k in theirs if not k.startswith("pooler")]
    assert shared and all(torch.equal(ours[k], theirs[k]) for k in shared)
    assert decoder.model.config.is_decoder and decoder.model.config.add_cross_attention
    assert torch.equal(decoder.model.cls.predictions.decoder.weight, theirs["embeddings.word_embeddings.weight"])

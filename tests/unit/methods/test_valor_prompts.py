"""VALOR-L's task prompts (``method.task_prompt``; the seed's ``use_task_prompt``, spec 2.2, 2.5, 3.3): the seed's
sentences as ``[CLS] words [SEP]`` (7 and 8 tokens for the text encoder and the caption decoder, as the spec's
shapes), the text encoder's states independent of the caption's padding, QA's question with 'answer the question'
after its [CLS], the converter's prompt row, and the recipes that turn it on; the MLM branch (``method.mlm_groups``:
its loss term, bidirectional decoding, one-line errors). Parity with the seed's prompted model and MLM:
tests/reference/test_valor_prompt_parity.py."""

from __future__ import annotations

import pytest
import torch

import avlearn.backbones  # noqa: F401  (registers the backbones)
from avlearn.errors import ConfigError
from avlearn.layers.text_decoder import Decoding, tokenize
from avlearn.methods.valor import CLS, MASK, PROMPTS, SEP, VALOR, VALORConfig
from avlearn.registry import BACKBONES

CAPTION = torch.tensor([[CLS, 2000, 2001, 2002, SEP], [CLS, 3000, SEP, 0, 0]])


def _model(**cfg) -> VALOR:
    torch.manual_seed(0)
    towers = [BACKBONES.build(n) for n in ("clip_vit_tiny", "ast_valor_tiny", "minilm_tiny")]
    return VALOR(VALORConfig(contra_dim=16, **cfg), *towers).eval()


def test_the_prompts_are_the_seeds_sentences():
    model = _model(task_prompt=True)
    lengths = {kind: len(model.task_prompts(kind, 2)[0][0]) for kind in PROMPTS}
    assert lengths == {"text": 7, "caption": 8, "answer": 5}  # [CLS] words [SEP]
    for kind, sentence in PROMPTS.items():
        ids, mask = model.task_prompts(kind, 3)
        expected = tokenize([sentence], lengths[kind])["input_ids"]
        assert torch.equal(ids, expected.expand(3, -1)) and bool(mask.all())
    assert _model().task_prompts("caption", 2) is None


def test_prompted_text_states_ignore_the_captions_padding_and_differ_from_unprompted():
    prompted, plain = _model(task_prompt=True), _model()
    padded = torch.cat([CAPTION, torch.zeros(2, 4, dtype=torch.long)], dim=1)  # (2, 9): four more pads
    with torch.no_grad():
        short, _ = prompted.encode_text(CAPTION, (CAPTION != 0).long())
        long, _ = prompted.encode_text(padded, (padded != 0).long())
        unprompted, _ = plain.encode_text(CAPTION, (CAPTION != 0).long())
    real = CAPTION != 0
    assert short.shape == (2, 5, 32) and torch.allclose(short[real], long[:, :5][real], atol=1e-5)
    assert not torch.allclose(short[real], unprompted[real], atol=1e-3)


def test_the_question_gets_the_answer_prompt_after_its_cls():
    question = (torch.tensor([[CLS, 2054, 3609, SEP, 0]]), torch.tensor([[1, 1, 1, 1, 0]]))
    ids, mask = _model(task_prompt=True).question_prompt(question)
    words = tokenize([PROMPTS["answer"]], 5)["input_ids"][0, 1:-1].tolist()
    assert ids.tolist() == [[CLS, *words, 2054, 3609, SEP, 0]] and mask.tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]
    assert _model().question_prompt(question) is question


def test_the_converter_puts_the_seeds_prompt_row_into_the_second_token_type():
    from avlearn.convert import convert_valor_state_dict

    types, prompt = torch.randn(2, 4), torch.randn(1, 4)
    embeddings = "multimodal_encoder.embeddings."
    out = convert_valor_state_dict({f"{embeddings}token_type_embeddings.weight": types,
                                    f"{embeddings}prompt_embedding.weight": prompt}).tensors  # fmt: skip
    row = out["text_backbone.model.embeddings.token_type_embeddings.weight"]
    assert torch.equal(row, torch.cat([types[:1], prompt])) and set(out) == {
        "text_backbone.model.embeddings.token_type_embeddings.weight"}  # fmt: skip


@pytest.mark.parametrize(("recipe", "on"), [("valor_ret_msrvtt", True), ("valor_qa_msrvttqa", True),
                                            ("valor_pretrain_b", False), ("valor_ret_tiny", False)])  # fmt: skip
def test_valor_l_recipes_turn_the_prompts_on(recipe, on):
    from avlearn.config import compose_run

    assert compose_run([f"recipe={recipe}"]).method.task_prompt is on


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"frames": torch.randint(0, 255, (2, 2, 32, 32, 3), dtype=torch.uint8, generator=g),
            "audio": torch.randn(2, 2, 32, 50, generator=g), "text_ids": CAPTION,
            "text_mask": (CAPTION != 0).long()}  # fmt: skip


def test_mlm_adds_its_loss_term_only_when_configured():
    with torch.no_grad():
        on, off = _model(mlm_groups=["tv"])(_batch()).losses, _model()(_batch()).losses
    assert set(on) == {"mga", "mgc", "mlm"} and set(off) == {"mga", "mgc"} and float(on["mlm"]) > 0
    with pytest.raises(ConfigError, match=r"method.mlm_groups=\['tv', 'tv'\]: expected distinct groups"):
        _model(mlm_groups=["tv", "tv"])


def test_mlm_reads_the_caption_bidirectionally_with_its_prompt():
    """A masked position's state depends on a later token (MGC's causal decoder does not), and on the prompt."""
    model = _model(mlm_groups=["tv"])
    batch = _batch()
    inputs = CAPTION.clone()
    inputs[0, 1] = MASK
    later = inputs.clone()
    later[0, 3] = 2500  # a token after the masked one
    mask = (CAPTION != 0).long()
    with torch.no_grad():
        memory = model.memory(model.encode_visual(batch["frames"]), model.encode_audio(batch["audio"]))["tv"]
        prompt = model.task_prompts("mlm_tv", 2)
        states = [model.encode_prompted(x, mask, prompt, memory)[0, 1] for x in (inputs, later)]
        causal = [model.decode(x, mask, model.start_cache(memory))[0, 1] for x in (inputs, later)]
        cut = prompt[0][:, :3]  # (2, 3): a shorter prompt
        other = model.encode_prompted(inputs, mask, (cut, torch.ones_like(cut)), memory)
    assert not torch.allclose(*states, atol=1e-4) and torch.allclose(*causal, atol=1e-6)
    assert not torch.allclose(other[0, 1], states[0], atol=1e-4)


def test_prompted_qa_and_captioning_run_with_several_questions_a_video():
    """The prompted hooks keep their shapes: two questions of video 0 and one of video 1 (the QA prompt 3 tokens
    longer than the question), beam-2 captions; the prompt changes the answer loss."""
    prompted, plain = _model(task_prompt=True), _model()
    row = torch.tensor([0, 0, 1])
    question = (torch.tensor([[CLS, 2054, SEP, 0]] * 3), torch.tensor([[1, 1, 1, 0]] * 3))
    answer = (torch.tensor([[CLS, 2417, SEP]] * 3), torch.ones(3, 3, dtype=torch.long))
    settings = Decoding(beam_size=2, max_length=3)
    with torch.no_grad():
        feats = prompted(_batch())
        losses = []
        for model in (prompted, plain):
            torch.manual_seed(5)  # the same answer masks
            losses.append(model.answer_loss(feats, row, question, answer))
        answers = prompted.answer_generate(feats, row, question, settings)
        captions = prompted.caption_generate(feats, settings)
    assert len(answers) == 3 and len(captions) == 2 and all(len(c) <= 3 for c in captions)
    assert torch.isfinite(losses[0]) and not torch.allclose(*losses)

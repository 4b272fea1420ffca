"""AVQA (MUSIC-AVQA) head: negatives from other videos, training, temporal weights, per-type scores, the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avlearn.errors import ConfigError
from avlearn.methods.baseline import Baseline, BaselineConfig
from avlearn.registry import BACKBONES
from avlearn.tasks.avqa import AVQAConfig, AVQATask, AVSTSeedHead, other_video, split_batch
from avlearn.tasks.base import DatasetInfo

ANSWERS = DatasetInfo(("yes", "no", "left", "right"))


def _task(head: str = "grounded_qa") -> AVQATask:
    torch.manual_seed(0)
    method = Baseline(
        BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=32), BACKBONES.build("cnn_audio_tiny")
    )
    return AVQATask(AVQAConfig(head=head, dim=16, heads=2, vocab_size=50), method, ANSWERS)


def _batch(videos: list[int]) -> dict:
    g = torch.Generator().manual_seed(2)
    b = len(videos)
    mask = torch.ones(b, 6, dtype=torch.long)
    mask[0, 4:] = 0
    return {
        "frames": torch.randint(0, 256, (b, 10, 32, 32, 3), dtype=torch.uint8, generator=g),
        "audio": torch.randn(b, 10, 32, 50, generator=g),
        "input_ids": torch.randint(1, 50, (b, 6), generator=g) * mask,
        "attention_mask": mask,
        "answer": torch.arange(b) % 4,
        "video": torch.tensor(videos),
        "question_type": ["Audio/Counting", "Visual/Location"] * (b // 2),
    }


def test_negatives_always_come_from_another_video():
    video = torch.tensor([3, 3, 3, 7, 7, 9])
    index, found = other_video(video)
    assert found.all()
    assert (video[index] != video).all()
    _, found = other_video(torch.tensor([4, 4, 4]))
    assert not found.any()


def test_avqa_task_trains_with_the_grounding_loss():
    task = _task()
    out = task(_batch([0, 0, 1, 2]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss_grounding"] > 0
    assert task.match[0].weight.grad is not None and task.question.embed[0].weight.grad is not None
    assert task.method.audio_backbone.model["stem"][0].weight.grad is not None


def test_contrastive_loss_trains_both_encoders():
    task = _task()
    out = task.outputs(_batch([0, 1, 2, 3]))
    loss = task.contrastive_loss(out)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    for backbone in (task.method.audio_backbone, task.method.visual_backbone):
        assert backbone.model["stem"][0].weight.grad.abs().sum() > 0
    assert task.contrastive_loss(task.outputs(_batch([5, 5]))) == 0  # one video: nothing to contrast


def test_a_batch_of_one_video_has_no_grounding_loss_but_still_trains():
    task = _task()
    out = task(_batch([5, 5]))
    out["loss"].backward()
    assert out["loss_grounding"] == 0 and task.answer.weight.grad is not None


def test_predict_gives_answers_and_temporal_weights():
    task = _task().eval()
    pred = task.predict(_batch([0, 1, 2, 3]))
    assert pred["answer"].shape == (4,) and pred["probs"].shape == (4, 4)
    for key in ("visual_weights", "audio_weights"):
        assert pred[key].shape == (4, 10)
        assert torch.allclose(pred[key].sum(dim=1), torch.ones(4), atol=1e-5)


def test_questions_of_one_video_share_one_encoding():
    batch = _batch([4, 9, 4, 4])
    media, videos, questions = split_batch(batch)
    assert videos.tolist() == [4, 9] and questions.row.tolist() == [0, 1, 0, 0]
    assert media["frames"].shape[0] == 2 and torch.equal(media["frames"][1], batch["frames"][1])


def test_a_video_per_row_answers_like_a_question_per_row():
    task = _task().eval()
    batch = _batch([0, 1, 2, 3])
    batch["frames"][2:], batch["audio"][2:] = batch["frames"][:2], batch["audio"][:2]  # rows 2, 3: videos 0, 1 again
    batch["video"] = torch.tensor([0, 1, 0, 1])
    by_question = task.outputs(batch)["logits"]  # (4, K)
    videos = {k: batch[k][:2] for k in ("frames", "audio")}
    pad = torch.zeros_like(batch["input_ids"][:1])
    ids = torch.stack([batch["input_ids"][[0, 2]], torch.cat([batch["input_ids"][[1]], pad])])  # (2, 2, L)
    mask = torch.stack([batch["attention_mask"][[0, 2]], torch.cat([batch["attention_mask"][[1]], pad])])
    answer = torch.tensor([[0, 2], [1, -100]])
    by_video = task.outputs({**videos, "input_ids": ids, "attention_mask": mask, "answer": answer,
                             "video": torch.tensor([0, 1])})  # fmt: skip
    assert torch.allclose(by_video["logits"], by_question[[0, 2, 1]], atol=1e-5)
    assert by_video["answer"].tolist() == [0, 2, 1]  # the padding question is dropped


def test_score_is_per_question_type():
    task = _task()
    targets = {
        "answer": torch.tensor([0, 1, 2, 3]),
        "question_type": ["Audio/Counting", "Audio/Counting", "Visual/Location", "Visual/Location"],
    }
    scores = task.score({"answer": torch.tensor([0, 0, 2, 2])}, targets)
    assert scores["Audio/Counting"] == 50.0 and scores["Visual/Location"] == 50.0 and scores["overall"] == 50.0


def test_segment_windows_are_the_seconds_of_a_ten_second_clip():
    from avlearn.data.pipelines.avqa import segment_windows

    wave = np.arange(10 * 100, dtype=np.float32)
    windows = segment_windows(wave, 100, 10)
    assert windows.shape == (10, 100) and (windows[:, 0] == np.arange(10) * 100).all()
    long = segment_windows(np.arange(60 * 100, dtype=np.float32), 100, 10)
    assert long[0, 0] == 250 and long[-1, 0] == 5650  # one second around 3 s, ..., 57 s


def test_pipeline_decodes_each_video_once(small_synth):
    from avlearn.data.pipelines.avqa import avqa_splits

    splits = avqa_splits(small_synth, 32, BACKBONES.build("cnn_audio_tiny").preprocess)
    train = splits["train"]
    assert train.frames.shape[1:] == (10, 32, 32, 3) and train.audio.shape[1:] == (10, 32, 50)
    assert len(train.video_ids) == len(train.frames) < len(train)  # several questions per video
    assert train.input_ids.shape == train.attention_mask.shape == (len(train), 24)
    assert set(train.question_types) <= {
        "Audio/Counting",
        "Audio-Visual/Counting",
        "Audio-Visual/Temporal",
        "Visual/Location",
        "Audio-Visual/Existential",
    }
    item = train[3]
    assert torch.equal(item["frames"], train.frames[int(train.video[3])])
    assert splits["answers"][:2] == ("yes", "no") and 0 <= int(item["answer"]) < len(splits["answers"])


def test_videos_view_holds_every_question_of_a_video(small_synth):
    from avlearn.data.pipelines.avqa import avqa_splits

    train = avqa_splits(small_synth, 32, BACKBONES.build("cnn_audio_tiny").preprocess)["train"]
    videos = train.by_video()
    assert len(videos) == len(train.video_ids)
    item = videos[1]
    real = item["attention_mask"].sum(dim=1) > 0  # (Q,)
    asked = (train.video == 1).nonzero()[:, 0]
    assert int(real.sum()) == len(asked) and (item["answer"][~real] == -100).all()
    assert torch.equal(item["input_ids"][real], train.input_ids[asked]) and torch.equal(item["frames"], train.frames[1])
    assert torch.equal(videos.answers, train.answers) and videos.question_types == train.question_types  # chance


def test_questions_are_tokenised_offline():
    from avlearn.data.pipelines.avqa import tokenize_questions

    tokens = tokenize_questions(["Is there a drum sound?"])
    assert tokens["input_ids"].shape == (1, 24) and tokens["attention_mask"][0].sum() == 8  # [CLS] 6 words ? [SEP]


@pytest.mark.slow  # builds DG-SCT's transformer backbones: tens of seconds on a loaded two-core machine
def test_runs_on_dgsct_features():
    from avlearn.methods.dgsct import DGSCT, DGSCTConfig

    visual = BACKBONES.build("swinv2_tiny", image_size=32, window_size=2)
    method = DGSCT(DGSCTConfig(num_latents=4, audio_tile=2), visual, BACKBONES.build("htsat_tiny"))
    task = AVQATask(AVQAConfig(dim=16, heads=2, vocab_size=50), method, ANSWERS)
    batch = _batch([0, 1])
    batch["frames"], batch["audio"] = batch["frames"][:, :4, :24, :24], torch.randn(2, 4, 32, 20)  # 4 segments
    out = task(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and task.predict(batch)["audio_weights"].shape == (2, 4)


def test_config_composes():
    from avlearn.config.compose import compose_run

    task = compose_run(["task=avqa", "task.dim=32"]).task
    assert task.name == "avqa" and task.dim == 32 and task.grounding_weight == 0.5


def test_avst_trains_the_seed_head_and_the_method_without_a_contrastive_term():
    task = _task("avst")
    assert not hasattr(task, "names") and not hasattr(task, "grounding")  # nothing of avlearn's head is built
    out = task(_batch([0, 0, 1, 2]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss_grounding"] > 0 and "loss_contrast" not in out
    assert torch.allclose(out["loss"], out["loss_answer"] + 0.5 * out["loss_grounding"])
    head = task.seed_head
    assert head.match[0].weight.grad is not None and head.question.embed.weight.grad is not None
    assert task.method.audio_backbone.model["stem"][0].weight.grad is not None


@pytest.mark.parametrize(("head", "reaches"), [("avst", False), ("grounded_qa", True)])
def test_avst_negatives_carry_no_gradient(head: str, reaches: bool):
    """The seed grounds its negative frames under ``no_grad`` (avlearn's head trains through them): with the
    positives' path cut, the grounding loss reaches the visual tokens only through the negatives."""
    task = _task(head)
    out = task.outputs(_batch([0, 1]))
    out["tokens"].retain_grad()
    out["visual"] = out["visual"].detach()  # the positive grounded features, cut from the tokens
    task.grounding_loss(out).backward()
    grad = out["tokens"].grad
    assert (grad is not None and grad.abs().sum() > 0) == reaches


def test_avst_grounding_attends_the_normalised_tokens():
    """``ground`` by hand for one row: softmax of the cosine between audio and tokens, weighting the unit tokens."""
    torch.manual_seed(1)
    head = AVSTSeedHead(8, 6, 20, 3, heads=2, dropout=0.0)
    tokens, audio = torch.randn(2, 5, 6), torch.randn(2, 6)
    for row in range(2):
        unit = [t / t.norm() for t in tokens[row]]
        cosine = torch.stack([u @ audio[row] / audio[row].norm() for u in unit])  # (5,)
        weights = cosine.exp() / cosine.exp().sum()
        attended = sum(w * u for w, u in zip(weights, unit, strict=True))
        expected = head.fc_gl(torch.tanh(torch.cat([tokens[row].mean(dim=0), attended])))
        assert torch.allclose(head.ground(tokens, audio)[row], expected, atol=1e-6)


def test_avst_answers_a_video_per_row_like_a_question_per_row():
    task = _task("avst").eval()
    batch = _batch([0, 1, 0, 1])
    batch["frames"][2:], batch["audio"][2:] = batch["frames"][:2], batch["audio"][:2]
    by_question = task.outputs(batch)["logits"]  # (4, K)
    ids = batch["input_ids"].view(2, 2, -1).transpose(0, 1)  # (B=2 videos, Q=2, L): rows 0, 2 and 1, 3
    mask = batch["attention_mask"].view(2, 2, -1).transpose(0, 1)
    by_video = task.outputs({"frames": batch["frames"][:2], "audio": batch["audio"][:2], "input_ids": ids,
                             "attention_mask": mask, "answer": torch.tensor([[0, 2], [1, 3]]),
                             "video": torch.tensor([0, 1])})  # fmt: skip
    assert torch.allclose(by_video["logits"], by_question[[0, 2, 1, 3]], atol=1e-5)
    pred = task.predict(batch)
    assert pred["probs"].shape == (4, 4) and torch.allclose(pred["visual_weights"].sum(dim=1), torch.ones(4))


def test_avqa_head_errors_name_the_key():
    method = Baseline(
        BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=32), BACKBONES.build("cnn_audio_tiny")
    )
    with pytest.raises(ConfigError, match="task.head 'avst_seed'.*avst, grounded_qa"):
        AVQATask(AVQAConfig(head="avst_seed"), method, ANSWERS)
    with pytest.raises(ConfigError, match="visual width 16.*task.heads=3"):
        AVQATask(AVQAConfig(head="avst", heads=3), method, ANSWERS)

"""AVS (AVSBench S4 / MS3) head: TPAVI's factorised form, the losses, predictions and scores, and the pipeline."""

from __future__ import annotations

import pytest
import torch

from avlearn.errors import ConfigError, DataError
from avlearn.methods.baseline import Baseline, BaselineConfig
from avlearn.registry import BACKBONES, TASKS
from avlearn.tasks.avs import HEAD_NEEDS, TPAVI, AVSConfig, AVSTask, FrameFiLM, SeedAVSDecoder, masked_av_kl
from avlearn.tasks.base import DatasetInfo

SIZE = 32


def _task(**cfg) -> AVSTask:
    torch.manual_seed(0)
    method = Baseline(
        BaselineConfig(dim=16), BACKBONES.build("cnn_visual_tiny", size=SIZE), BACKBONES.build("cnn_audio_tiny")
    )
    return AVSTask(AVSConfig(dim=16, **cfg), method, DatasetInfo(()))


def _batch(valid_frames: int = 5) -> dict:
    g = torch.Generator().manual_seed(1)
    masks = torch.zeros(2, 5, SIZE, SIZE, dtype=torch.bool)
    masks[:, :, 8:20, 10:24] = True
    valid = torch.zeros(2, 5, dtype=torch.bool)
    valid[:, :valid_frames] = True
    return {
        "frames": torch.randint(0, 256, (2, 5, SIZE, SIZE, 3), dtype=torch.uint8, generator=g),
        "audio": torch.randn(2, 5, 32, 50, generator=g),
        "masks": masks.flatten(2),
        "mask_valid": valid,
    }


def test_tpavi_factorised_equals_the_full_non_local_block():
    torch.manual_seed(0)
    block = TPAVI(8, 6).eval()
    torch.nn.init.normal_(block.w_z[1].weight)  # the zero-initialised batch norm would hide y
    x, audio = torch.randn(2, 8, 3, 4, 5), torch.randn(2, 3, 6)
    z, aligned = block(x, audio)
    b, c, t, h, w = x.shape
    audio_map = aligned.transpose(1, 2)[..., None, None].expand(-1, -1, -1, h, w)  # (B, C, T, H, W)
    theta = block.theta(x).flatten(2).transpose(1, 2)  # (B, N, C/2)
    phi = block.phi(audio_map).flatten(2)  # (B, C/2, N)
    g = block.g(x).flatten(2).transpose(1, 2)  # (B, N, C/2)
    y = (theta @ phi / (t * h * w)) @ g  # the seed's (N, N) affinity
    expected = block.w_z(y.transpose(1, 2).reshape(b, -1, t, h, w)) + x
    expected = block.norm(expected.movedim(1, -1)).movedim(-1, 1)
    assert torch.allclose(z, expected, atol=1e-5)


def test_frame_film_starts_as_identity_and_reads_each_frame_own_audio():
    torch.manual_seed(0)
    film = FrameFiLM(6, 8)
    x, audio = torch.randn(3, 8, 4, 4), torch.randn(3, 6)
    assert torch.equal(film(x, audio), x)
    torch.nn.init.normal_(film.proj.weight)
    changed = audio.clone()
    changed[1] = torch.randn(6)  # only frame 1's audio differs
    same = (film(x, audio) == film(x, changed)).flatten(1).all(dim=1)  # (K,)
    assert same.tolist() == [True, False, True]


def test_avs_task_trains_and_predicts_probabilities():
    task = _task(kl_weight=0.5, audio_film=True)
    out = task(_batch())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and {"loss_bce", "loss_kl"} <= set(out)
    assert task.decoder.project[0][0].weight.grad is not None
    assert task.decoder.film[0].proj.weight.grad.abs().sum() > 0
    assert task.method.visual_backbone.model["stem"][0].weight.grad is not None
    task.eval()
    probs = task.predict(_batch())["probs"]
    assert probs.shape == (2, 5, SIZE, SIZE) and 0 <= probs.min() and probs.max() <= 1


def test_s4_loss_reads_only_the_annotated_frames():
    task = _task().eval()
    batch = _batch(valid_frames=1)
    before = task(batch)["loss"]
    batch["masks"][:, 1:] = ~batch["masks"][:, 1:]  # unannotated frames: their masks must not matter
    assert torch.equal(task(batch)["loss"], before)
    batch["masks"][:, 0] = ~batch["masks"][:, 0]
    assert not torch.equal(task(batch)["loss"], before)


def test_kl_term_is_zero_when_audio_matches_the_masked_visual_feature():
    audio = torch.randn(4, 8)
    maps = [audio[:, :, None, None].expand(-1, -1, 3, 3).clone()]  # constant map = the audio feature
    logits = torch.full((4, 6, 6), 20.0)  # everything foreground: the masked mean is the map itself
    assert masked_av_kl(logits, maps, [audio]).item() == pytest.approx(0.0, abs=1e-5)
    assert masked_av_kl(logits, maps, [torch.randn(4, 8)]).item() > 0


def test_score_is_per_annotated_frame():
    task = _task()
    masks = _batch()["masks"]
    valid = torch.ones(2, 5, dtype=torch.bool)
    perfect = {"probs": masks.unflatten(-1, (SIZE, SIZE)).float()}
    assert task.score(perfect, {"masks": masks, "mask_valid": valid}) == {
        "miou": pytest.approx(100.0),
        "fscore": pytest.approx(100.0),
    }
    valid[:, 1:] = False
    wrong = {"probs": perfect["probs"].clone()}
    wrong["probs"][:, 1:] = 1 - wrong["probs"][:, 1:]  # wrong only on frames without ground truth
    assert task.score(wrong, {"masks": masks, "mask_valid": valid})["miou"] == pytest.approx(100.0)


def test_both_flavours_are_registered_and_refuse_a_method_without_a_pyramid():
    from avlearn.errors import ConfigError
    from avlearn.methods.base import check_pairing
    from avlearn.methods.dgsct import DGSCT

    assert TASKS.get("avs_s4") is TASKS.get("avs_ms3") is AVSTask
    check_pairing("baseline", _task().method.produces, "avs_s4", HEAD_NEEDS["avsbench"])  # CNN towers: a token grid
    with pytest.raises(ConfigError, match="visual_pyramid"):
        check_pairing("dgsct", DGSCT.produces, "avs_ms3", HEAD_NEEDS["avsbench"])


def test_pipeline_decodes_avsynth(small_synth):
    from avlearn.data.pipelines.avs import avs_splits

    pre = BACKBONES.build("cnn_audio_tiny").preprocess
    s4 = avs_splits(small_synth, "s4", SIZE, pre)
    train, test = s4["train"], s4["test"]
    assert train.frames.shape[1:] == (5, SIZE, SIZE, 3) and train.audio.shape[1:] == (5, 32, 50)
    assert train.masks.shape[1:] == (5, SIZE * SIZE)
    assert train.mask_valid.sum(dim=1).tolist() == [1] * len(train)  # S4 training: first frame only
    assert test.mask_valid.all() and test.masks.any()
    assert not train.masks[:, 1:].any()  # frames without ground truth stay empty
    ms3 = avs_splits(small_synth, "ms3", SIZE, pre)["train"]
    assert ms3.mask_valid.all()
    item = ms3[0]
    assert set(item) == {"frames", "audio", "masks", "mask_valid", "id"}


def test_flip_mirrors_frames_and_masks_together():
    from avlearn.data.pipelines.avs import AVSTensors

    frames = torch.arange(5 * 4 * 6 * 3, dtype=torch.uint8).reshape(1, 5, 4, 6, 3)
    masks = torch.zeros(1, 5, 4, 6, dtype=torch.bool)
    masks[..., :2] = True  # left third
    data = AVSTensors(["a"], frames, torch.zeros(1, 5, 2, 2), masks.flatten(2), torch.ones(1, 5, dtype=torch.bool))
    data.flip = True
    torch.manual_seed(0)
    items = [data[0] for _ in range(8)]
    mirrored = [torch.equal(it["frames"], frames[0].flip(-2)) for it in items]
    assert any(mirrored) and not all(mirrored)
    for item, flipped in zip(items, mirrored, strict=True):
        expected = masks[0].flip(-1) if flipped else masks[0]
        assert torch.equal(item["masks"], expected.flatten(1))


@pytest.mark.parametrize(("option", "kl_weight", "film"), [("avs_s4", 0.0, False), ("avs_ms3", 0.5, True)])
def test_configs_compose(option, kl_weight, film):
    from avlearn.config.compose import compose_run

    cfg = compose_run([f"task={option}"])
    assert cfg.task.name == option and cfg.task.kl_weight == kl_weight and cfg.task.audio_film == film
    assert cfg.task.head == "avsbench"
    assert compose_run([f"task={option}", "task.head=tpavi"]).task.head == "tpavi"


def _seed_decoder(gamma: float = 0.05) -> SeedAVSDecoder:
    torch.manual_seed(0)
    cfg = AVSConfig(head="tpavi", dim=16, seed_audio_dim=8, seed_ffn=32, temporal_gamma=gamma)
    return SeedAVSDecoder((4, 6, 8, 10), 12, cfg).eval()


def _seed_inputs(b: int = 2, t: int = 5, size: int = 64) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    pyramid = [torch.randn(b * t, c, n, n, generator=g) for c, n in ((4, 12), (6, 6), (8, 3), (10, 2))]
    return pyramid, torch.randn(b, t, 12, generator=g)


def test_tpavi_head_trains_and_predicts_at_the_frame_size():
    task = _task(head="tpavi", kl_weight=0.5, seed_audio_dim=8, seed_ffn=32)
    assert isinstance(task.decoder, SeedAVSDecoder)
    out = task(_batch())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and {"loss_bce", "loss_kl"} <= set(out)
    assert task.decoder.gates[0].visual_rnn.weight_ih_l0.grad.abs().sum() > 0
    assert task.method.visual_backbone.model["stem"][0].weight.grad is not None
    task.eval()
    assert task.predict(_batch())["probs"].shape == (2, 5, SIZE, SIZE)


def test_tpavi_head_decodes_from_quarter_size_maps_whatever_the_pyramid():
    """Stage i is resized to 1/2^(i+2) of the frame (the seed's 56..7 at 224 px), the logits come back at the frame
    size; frames not divisible by 1/32 of it are refused."""
    decoder = _seed_decoder()
    pyramid, audio = _seed_inputs()
    logits, maps, audio_feats = decoder(pyramid, audio, (64, 96), torch.tensor([0, 7]))
    assert logits.shape == (2, 64, 96) and [m.shape[-2:] for m in maps] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert all(m.min() >= 0 for m in maps) and audio_feats[0].shape == (2, 16)  # the seed's ReLU'd stage maps
    with pytest.raises(DataError, match="tpavi decodes.*48x64"):
        decoder(pyramid, audio, (48, 64), torch.tensor([0]))


def test_tpavi_head_gates_act_only_through_gamma():
    """With gamma 0 the stage gates change nothing; with gamma > 0 they do."""
    pyramid, audio = _seed_inputs()
    keep = torch.arange(10)
    for gamma, changes in ((0.0, False), (0.5, True)):
        decoder = _seed_decoder(gamma)
        before = decoder(pyramid, audio, (64, 64), keep)[0]
        with torch.no_grad():
            for gate in decoder.gates:
                gate.audio_gate.bias += 3.0
                gate.visual_gate.bias -= 3.0
        after = decoder(pyramid, audio, (64, 64), keep)[0]
        assert torch.allclose(before, after) != changes


def test_seed_kl_pools_the_logits_then_takes_the_sigmoid():
    """``pool_logits``: per stage the mask is sigmoid(average-pooled logits), by hand here for one 2x2 stage."""
    g = torch.Generator().manual_seed(4)
    logits, v_map, audio = (
        4 * torch.randn(3, 4, 4, generator=g),
        torch.randn(3, 5, 2, 2, generator=g),
        torch.randn(3, 5),
    )
    mask = logits.unflatten(1, (2, 2)).unflatten(3, (2, 2)).mean(dim=(2, 4)).sigmoid()  # (3, 4, 4) -> (3, 2, 2)
    visual = torch.nn.functional.normalize((v_map * mask[:, None]).mean(dim=(-2, -1)), dim=-1)  # (3, 5)
    target = torch.nn.functional.normalize(audio, dim=-1).softmax(dim=-1)
    expected = (target * (target.log() - visual.log_softmax(dim=-1))).sum()
    assert masked_av_kl(logits, [v_map], [audio], pool_logits=True).item() == pytest.approx(expected.item(), rel=1e-5)
    assert masked_av_kl(logits, [v_map], [audio]).item() != pytest.approx(expected.item(), rel=1e-4)


def test_avs_head_must_be_known():
    with pytest.raises(ConfigError, match="task.head 'tpavi_seed'.*avsbench, tpavi, avsegm_seed"):  # no alias
        _task(head="tpavi_seed")

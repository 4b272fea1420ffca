"""VALOR's paper recipes (config/recipe/valor_*, not the _tiny ones): the seed's fine-tuning and pretraining numbers
(its config/*.json and scripts/*.sh, spec sections 2.8 and 3.4, written out here), each header naming the seed's
config, ``--dry-run`` of every recipe (on AVSynth's classes: the real datasets cannot be sized), the QA recipes'
task built on the meta device, each recipe's dataset registered with a reader, and each fine-tuning recipe's task
reading that reader (``data.benchmark``): on a folder without the dataset, a one-line error naming its files. The
recipes of the other VALOR-layout datasets (``MORE``) are checked on their resolved config and reader only."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from avlearn.cli.main import main
from avlearn.config import compose_run
from avlearn.config.compose import group_options

RECIPE_DIR = Path(__file__).parents[3] / "src" / "avlearn" / "config" / "recipe"
CLIP_LR = 5e-7  # the seed's default --clip_lr / --clip_lr_text (train_utils.py), which no fine-tuning script sets

# recipe -> the seed's config, task, groups, frames (train), audio clips (train), epochs, lr, warmup ratio, batch
# (global), caption tokens, dataset; lr / epochs / frames as the scripts override them (spec 3.4).
SEED = {
    "valor_ret_msrvtt": ("fast-retrieval-msrvtt", "retrieve", ["tva", "tv"], 4, 2, 70, 2e-5, 0.1, 64, None, "msrvtt"),
    "valor_ret_valor32k": ("fast-retrieval-valor32k", "retrieve", ["tva"], 4, 2, 10, 2e-5, 0.1, 64, None,
                           "valor32k"),
    "valor_ret_audiocaps": ("fast-retrieval-audiocaps", "retrieve", ["ta"], 1, 2, 10, 1e-4, 0.1, 64, None,
                            "audiocaps"),
    "valor_cap_msrvtt": ("caption-msrvtt", "caption", ["tva", "tv"], 6, 2, 100, 9e-6, 0.05, 64, 30, "msrvtt"),
    "valor_cap_valor32k": ("caption-valor32k", "caption", ["tva", "tv", "ta"], 4, 2, 10, 2e-5, 0.1, 64, 30,
                           "valor32k"),
    "valor_cap_audiocaps": ("caption-audiocaps", "caption", ["ta"], 1, 2, 10, 2e-5, 0.1, 64, 30, "audiocaps"),
    "valor_qa_msrvttqa": ("VQA-msrvtt", "qa_open", ["tva", "tv"], 4, 2, 100, 2e-5, 0.1, 64, None, "msrvtt_qa"),
    "valor_qa_music_avqa": ("VQA-music", "qa_open", ["tva", "tv"], 4, 4, 25, 2e-5, 0.1, 64, None, "music_avqa"),
    "valor_pretrain_l": ("pretrain-VALOR-large", "pretrain", ["tva", "tv", "ta"], 2, 1, 32, 5e-5, 0.1, 512, 40,
                         "valor1m"),
}  # fmt: skip
# The recipes of the other datasets with VALOR-layout readers, pinned by their resolved config only (no dry run:
# each would build the 530 M-parameter model; the SEED recipes' dry runs cover the same method and towers).
MORE = {
    "valor_ret_didemo": ("fast-retrieval-didemo", "retrieve", ["tva", "tv"], 8, 4, 30, 9e-6, 0.1, 64, None, "didemo"),
    "valor_ret_activitynet": ("fast-retrieval-activitynet", "retrieve", ["tva", "tv"], 8, 4, 40, 2e-5, 0.1, 64, None,
                              "activitynet"),
    "valor_ret_lsmdc": ("fast-retrieval-lsmdc", "retrieve", ["tva", "tv"], 4, 2, 5, 2e-5, 0.1, 64, None, "lsmdc"),
    "valor_ret_vatex": ("fast-retrieval-vatex", "retrieve", ["tva", "tv"], 4, 2, 50, 2e-5, 0.1, 64, None, "vatex"),
    "valor_ret_msvd": ("fast-retrieval-msvd", "retrieve", ["tv"], 4, 1, 140, 2e-5, 0.1, 64, None, "msvd"),
    "valor_cap_msvd": ("caption-msvd", "caption", ["tv"], 8, 1, 100, 9e-6, 0.1, 64, 30, "msvd"),
    "valor_cap_vatex": ("caption-vatex", "caption", ["tva", "tv"], 8, 2, 100, 2e-5, 0.1, 64, 30, "vatex"),
    "valor_cap_clotho": ("caption-clotho", "caption", ["ta"], 1, 6, 50, 2e-5, 0.1, 64, 30, "clotho"),
    "valor_qa_msvdqa": ("VQA-msvd", "qa_open", ["tv"], 4, 1, 250, 1e-5, 0.1, 64, None, "msvd_qa"),
    "valor_qa_tgifqa": ("VQA-tgif-frame", "qa_open", ["tv"], 4, 1, 10, 2e-5, 0.1, 64, None, "tgif_qa"),
    "valor_qa_activitynetqa": ("VQA-activitynet", "qa_open", ["tv"], 8, 4, 100, 2e-5, 0.1, 64, None,
                               "activitynet_qa"),
}  # fmt: skip
ALL = {**SEED, **MORE}
QA = ("valor_qa_msrvttqa", "valor_qa_music_avqa")
VISUAL_LR = {"valor_pretrain_l": 8e-6}  # VALOR-L pretraining's clip_lr; the fine-tuning runs keep the default


def test_the_issues_recipes_exist():
    assert set(ALL) <= set(group_options("recipe"))


@pytest.mark.parametrize("recipe", sorted(ALL))
def test_recipes_are_the_seeds_runs(recipe):
    config, task, groups, frames, clips, epochs, lr, warmup, batch, words, data = ALL[recipe]
    cfg = compose_run([f"recipe={recipe}"])
    t, m = cfg.train, cfg.method
    assert f"config/{config}.json" in (RECIPE_DIR / f"{recipe}.yaml").read_text()  # the header names it
    assert (cfg.task.name, list(m.groups), m.frames, m.audio_clips) == (task, groups, frames, clips)
    assert (m.name, cfg.backbone.name, cfg.backbone.visual) == ("valor", "valor", "clip_vit_l14")  # VALOR-L's
    assert m.task_prompt  # VALOR-L's use_task_prompt (its fine-tuning reads it from the pretraining's hps.json)
    assert (t.epochs, t.lr, t.batch_size, cfg.data.name, cfg.data.frame_size) == (epochs, lr, batch, data, 224)
    assert t.warmup_epochs == pytest.approx(warmup * epochs) and t.schedule == "linear"  # warmup_linear
    assert (t.optimizer, list(t.betas), t.eps, t.weight_decay, t.precision, cfg.seed) == (
        "adamw", [0.9, 0.98], 1e-6, 0.01, "fp16", 50)  # fmt: skip
    assert t.grad_clip == (2.0 if recipe == "valor_pretrain_l" else 5.0)
    mult = OmegaConf.to_container(t.lr_mult)
    assert mult["method.temperature"] * lr == pytest.approx(CLIP_LR, rel=1e-3)  # VALOR-L's logit_scale
    if "ta" not in groups or len(groups) > 1:  # a video group: the CLIP tower at clip_lr
        assert mult["method.visual_backbone"] * lr == pytest.approx(VISUAL_LR.get(recipe, CLIP_LR), rel=1e-3)
    if words is not None:
        assert cfg.task.max_words == words
    if task in ("caption", "qa_open"):  # beam 3 for captions, greedy for answers; 30 steps
        assert cfg.task.decoder == "method" and (cfg.task.beam_size, cfg.task.max_length) == (
            3 if task == "caption" else 1, 30)  # fmt: skip
    if task == "retrieve":
        assert cfg.task.similarity == "method" and m.retrieval_group == groups[0]
    if recipe in MORE:  # data.benchmark reads the reader data.name names
        from avlearn.data.pipelines.clips import BENCHMARKS

        assert BENCHMARKS[cfg.data.benchmark].reader == cfg.data.name


@pytest.mark.parametrize("recipe", sorted(SEED))  # MORE's: in test_recipes_are_the_seeds_runs (one compose each)
def test_each_recipe_reads_a_registered_reader(recipe):
    """The recipe's data.name is a reader; a clip-pipeline benchmark it names reads that reader."""
    import avlearn
    from avlearn.data.pipelines.clips import BENCHMARKS
    from avlearn.registry import DATASETS

    avlearn.register_all()
    cfg = compose_run([f"recipe={recipe}"])
    assert cfg.data.name in DATASETS
    text = (RECIPE_DIR / f"{recipe}.yaml").read_text()
    if "benchmark:" in text:
        assert BENCHMARKS[cfg.data.benchmark].reader == cfg.data.name


@pytest.mark.parametrize("recipe", sorted(SEED))
def test_every_recipe_dry_runs(recipe, tmp_path, monkeypatch, capsys):
    """On its real data a one-line error (its classes or answers cannot be read without the data); on AVSynth's
    classes the config and the parameter groups, the CLIP tower at its own rate (QA: still one line)."""
    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    assert main(["train", f"recipe={recipe}", "--dry-run"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    code = main(["train", f"recipe={recipe}", "data.name=avsynth", f"out={tmp_path / 'runs'}", "--dry-run"])
    captured = capsys.readouterr()
    if recipe in QA:
        assert code == 2 and "answer vocabulary" in captured.err and len(captured.err.strip().splitlines()) == 1
        return
    assert code == 0 and f"name: {recipe}" in captured.out and "method=valor backbone=valor" in captured.out
    rates = {float(line.split()[-2]) for line in captured.out.splitlines() if " lr x" in line}  # the groups' lr
    assert rates == {CLIP_LR, *([VISUAL_LR[recipe]] if recipe in VISUAL_LR else [])}  # temperature, CLIP tower
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("recipe", QA)
def test_qa_recipes_build_their_task(recipe):
    """What --dry-run cannot do for QA (the answer vocabulary comes from the data): the task of the recipe built on
    the meta device with a stand-in vocabulary, VALOR's own decoder hooks in place."""
    import torch

    from avlearn.build import build_task
    from avlearn.data.pipelines.caption_text import TextInfo

    cfg = compose_run([f"recipe={recipe}"])
    with torch.device("meta"):
        task = build_task(cfg, TextInfo(("yes", "no"), 10, vocab=tuple(range(1000, 1100))))
    assert callable(task.method.answer_loss) and callable(task.method.answer_generate)
    assert sum(p.numel() for p in task.parameters()) > 400e6  # VALOR-L's towers (CLIP ViT-L/14, AST, BERT-base)


@pytest.mark.parametrize("recipe", sorted(SEED))
def test_each_recipe_reads_its_dataset(recipe, tmp_path, capsys):
    """pretrain / retrieve / caption / qa_open read the recipe's reader (data.benchmark; MUSIC-AVQA its own
    layout): without the dataset the run stops in one line naming that reader's files, before any model is built."""
    from avlearn.data.pipelines.clips import BENCHMARKS

    cfg = compose_run([f"recipe={recipe}"])
    (tmp_path / "data").mkdir()
    assert main(["train", f"recipe={recipe}", f"data.root={tmp_path / 'data'}", f"out={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip()
    if "benchmark:" in (RECIPE_DIR / f"{recipe}.yaml").read_text():
        bench = BENCHMARKS[cfg.data.benchmark]
        split = bench.plan(cfg.data)["train"][0][0].removeprefix("holdout:")  # the reader's training list
        expected = f"no {bench.reader} {split} id list found"
    else:  # valor_qa_music_avqa: the MUSIC-AVQA release's layout
        expected = "no answer vocabulary"
    assert len(err.splitlines()) == 1 and expected in err

"""Recipes (config/recipe/): the DG-SCT paper runs, the tiny AVSynth acceptance runs, and ``train --dry-run``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from avlearn.cli.main import main
from avlearn.config import compose_run
from avlearn.config.compose import group_options

RECIPES = group_options("recipe")
ACCEPTANCE = Path(__file__).parents[2] / "integration" / "test_dgsct_learning.py"


def test_every_recipe_composes_and_names_its_runs():
    runs = ("ave", "avvp", "avs_s4", "avs_ms3", "avqa", "fewshot", "zeroshot", "pretrain")  # the seed README's runs
    assert {f"dgsct_{run}_{size}" for run in runs for size in ("paper", "tiny")} <= set(RECIPES)
    for recipe in RECIPES:
        cfg = compose_run([f"recipe={recipe}"])
        assert cfg.name == recipe and cfg.train.name == recipe


def test_ave_paper_recipe_is_the_seeds_run():
    """DG-SCT/AVE/train.sh: Adam (no weight decay), lr 5e-4, StepLR(3, 0.35), batch 8, 50 epochs, early stop 20."""
    cfg = compose_run(["recipe=dgsct_ave_paper"])
    t = cfg.train
    assert (t.optimizer, t.lr, t.weight_decay) == ("adam", 5e-4, 0)
    assert (t.schedule, t.step_every, t.step_gamma) == ("step", 3, 0.35)
    assert (t.batch_size, t.epochs, t.patience, t.warmup_epochs, t.grad_clip, t.select) == (8, 50, 20, 0, 0, "best")
    assert (cfg.task.name, cfg.task.head, cfg.method.name, cfg.backbone.name) == ("ave", "cmbs", "dgsct", "dgsct")
    assert (cfg.backbone.freeze, cfg.data.frame_size, cfg.data.sample_rate, cfg.seed) == ("all", 192, 32000, 43)


def test_avvp_paper_recipe_is_the_seeds_run():
    """DG-SCT/AVVP/main.py: Adam(lr 3e-4, wd 0), StepLR(10, 0.1), 40 epochs, batch 8, no early stop."""
    cfg = compose_run(["recipe=dgsct_avvp_paper"])
    t = cfg.train
    assert (t.optimizer, t.lr, t.weight_decay) == ("adam", 3e-4, 0)
    assert (t.schedule, t.step_every, t.step_gamma) == ("step", 10, 0.1)
    assert (t.batch_size, t.epochs, t.patience) == (8, 40, 0)
    assert (cfg.task.name, cfg.method.name, cfg.backbone.name, cfg.task.depth_av) == ("avvp", "dgsct", "dgsct", 6)


# The seed's numbers of each paper recipe, read from its scripts and argparsers (the file is named in each yaml):
# optimizer, lr, schedule, epochs, batch, early stop, seed, frame size, task, method and adapter settings.
_BACKBONES = {"dgsct": "swinv2_large_192+htsat_base", "dgsct_fewshot": "clip_vit_b32+clap_audio_htsat"}
_SUPERVISED = {"method.name": "dgsct", "backbone.name": "dgsct", "method.audio_frontend": "seed",
               "method.spec_augment": True, "data.frame_size": 192, "data.sample_rate": 32000,
               "train.optimizer": "adam", "train.weight_decay": 0.0, "train.warmup_epochs": 0.0}  # fmt: skip
_PROMPTED = {"method.name": "dgsct_fewshot", "backbone.name": "dgsct_fewshot", "method.num_latents": 2,
             "method.reduction": 8, "method.groups": 2, "method.batch_norm": True, "method.audio_gate": True,
             "data.frame_size": 224, "data.sample_rate": 48000, "seed": 43}  # fmt: skip
_MULTISTEP = {"train.optimizer": "adam", "train.lr": 3e-4, "train.weight_decay": 0.0, "train.schedule": "step",
              "train.step_every": 10, "train.step_gamma": 0.5, "train.batch_size": 2, "train.epochs": 200,
              "train.patience": 50}  # fmt: skip
PAPER = {
    "dgsct_avs_s4_paper": {**_SUPERVISED, "task.name": "avs_s4", "method.adapter_variant": "avs_s4",
                           "method.num_latents": 32, "method.reduction": 8, "method.groups": 2, "method.alpha": 0.3,
                           "method.beta": 0.05, "method.batch_norm": False, "method.audio_gate": False,
                           "task.kl_weight": 0.0, "train.lr": 3e-4, "train.schedule": "constant",
                           "train.batch_size": 8, "train.epochs": 15, "train.patience": 0, "seed": 123},
    "dgsct_avs_ms3_paper": {**_SUPERVISED, "task.name": "avs_ms3", "method.adapter_variant": "avs_ms3",
                            "method.num_latents": 32, "method.reduction": 2, "method.groups": 2, "method.alpha": 0.2,
                            "method.beta": 0.1, "method.batch_norm": False, "method.audio_gate": False,
                            "task.kl_weight": 0.5, "task.audio_film": False, "train.lr": 1.5e-4,
                            "train.schedule": "constant", "train.batch_size": 2, "train.epochs": 30,
                            "train.patience": 0, "seed": 123},
    "dgsct_avqa_paper": {**_SUPERVISED, "task.name": "avqa", "method.adapter_variant": "avqa", "method.num_latents": 2,
                         "method.reduction": 8, "method.groups": 4, "method.alpha": 0.3, "method.beta": 0.05,
                         "method.batch_norm": False, "method.audio_gate": False, "train.lr": 1e-4,
                         "train.schedule": "step", "train.step_every": 8, "train.step_gamma": 0.1,
                         "train.batch_size": 8, "train.epochs": 80, "train.patience": 3, "seed": 1},
    "dgsct_fewshot_paper": {**_PROMPTED, **_MULTISTEP, "task.name": "fewshot", "shots": 16, "method.alpha": 0.2,
                            "method.beta": 0.05, "method.gamma": 0.01},
    "dgsct_pretrain_paper": {**_PROMPTED, **_MULTISTEP, "task.name": "pretrain_segments", "method.alpha": 0.3,
                             "method.beta": 0.01, "method.gamma": 0.05},
    "dgsct_zeroshot_paper": {**_PROMPTED, "task.name": "zeroshot_ave", "method.alpha": 0.3, "method.beta": 0.01,
                             "method.gamma": 0.05, "train.epochs": 0, "train.checkpoint": False},
}  # fmt: skip


@pytest.mark.parametrize("recipe", sorted(PAPER))
def test_paper_recipes_are_the_seeds_runs(recipe):
    from omegaconf import OmegaConf

    cfg = compose_run([f"recipe={recipe}"])
    assert f"{cfg.backbone.visual}+{cfg.backbone.audio}" == _BACKBONES[cfg.backbone.name]
    assert cfg.backbone.freeze == "all"
    for key, value in PAPER[recipe].items():
        assert OmegaConf.select(cfg, key) == value, key


def _calls(function: ast.FunctionDef) -> dict[str, dict]:
    """Callee name -> its constant keyword arguments (and ``_args``: constant positional ones), in ``function``."""
    out = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            kwargs = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            out[name] = {**kwargs, "_args": [a.value for a in node.args if isinstance(a, ast.Constant)]}
    return out


def _acceptance() -> tuple[dict, dict]:
    """The acceptance test's functions (by name) and its module-level ``SYNTH``, read from its source."""
    tree = ast.parse(ACCEPTANCE.read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    synth = next(
        ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "SYNTH"
    )
    return functions, synth


@pytest.mark.parametrize(("recipe", "run", "head"), [("dgsct_ave_tiny", "run_ave", "AVEConfig"),
                                                      ("dgsct_avvp_tiny", "run_avvp", "AVVPConfig")])  # fmt: skip
def test_tiny_recipes_are_the_acceptance_runs(recipe, run, head):
    """Every setting the acceptance run of tests/integration/test_dgsct_learning.py fixes, read from its source."""
    functions, synth = _acceptance()
    args = functions[run].args
    defaults = {a.arg: d.value for a, d in zip(args.args[-len(args.defaults) :], args.defaults, strict=True)}
    loop, model = _calls(functions["_fit_and_test"]), _calls(functions["_tiny_method"])
    cfg = compose_run([f"recipe={recipe}"])
    d, t = cfg.data, cfg.train
    assert (d.name, d.synth_seed, d.num_classes, d.fps) == (
        "avsynth",
        synth["seed"],
        synth["num_classes"],
        synth["fps"],
    )
    assert (d.clips, d.size, d.frame_size) == (defaults["clips"], defaults["size"], defaults["size"])
    assert (t.epochs, t.lr, t.optimizer) == (defaults["epochs"], defaults["lr"], "adamw")
    assert t.weight_decay == loop["AdamW"]["weight_decay"] and t.no_decay is False  # AdamW decays every parameter
    assert (t.batch_size, t.grad_clip) == (loop["DataLoader"]["batch_size"], loop["clip_grad_norm_"]["_args"][0])
    assert t.warmup_epochs == pytest.approx(loop["OneCycleLR"]["pct_start"] * t.epochs) and t.schedule == "cosine"
    assert (cfg.method.name, cfg.backbone.visual, cfg.backbone.audio) == ("dgsct_tiny", "swinv2_tiny", "htsat_tiny")
    fixed = {**model["DGSCTConfig"], **_calls(functions[run])[head]}  # the method's and the head's settings
    for key, value in fixed.items():
        if key != "_args":
            assert cfg[("method" if key in model["DGSCTConfig"] else "task")][key] == value, key


def test_command_line_overrides_win_over_the_recipe():
    for overrides in (["recipe=dgsct_ave_paper", "train.lr=1e-3", "task=ave_cls", "method=dgsct_tiny"],
                      ["train.lr=1e-3", "task=ave_cls", "method=dgsct_tiny", "recipe=dgsct_ave_paper"]):  # fmt: skip
        cfg = compose_run(overrides)
        assert (cfg.train.lr, cfg.task.name, cfg.method.name, cfg.train.epochs) == (1e-3, "ave_cls", "dgsct_tiny", 50)


def test_recipe_key_missing_from_the_chosen_option_is_one_line():
    from avlearn.errors import ConfigError

    # (task avvp has ``head`` and ``dim`` keys; AVS's seed_audio_dim, the recipe's next one, is one it lacks)
    with pytest.raises(ConfigError, match=r"^recipe/dgsct_avs_s4_paper sets 'task.seed_audio_dim', which task avvp "
                                          r"does not have;.*depth_av") as err:  # fmt: skip
        compose_run(["recipe=dgsct_avs_s4_paper", "task=avvp"])
    assert "\n" not in str(err.value)


# Recipes --dry-run cannot size: AVQA's answer vocabulary is read from the data; VGGSound-AVEL40K's, VGGSound's and
# AudioSet's classes from their files, VALOR's datasets' likewise (the recipes' dry runs on data=avsynth work: also
# tests/unit/methods/test_deepavfusion_recipes.py, test_valor_recipes.py).
REFUSED = {"dgsct_avqa_paper": "answer vocabulary", "dgsct_avqa_tiny": "answer vocabulary",
           "valor_qa_tiny": "answer vocabulary",
           **{f"valor_qa_{data}": "answer vocabulary" for data in ("msrvttqa", "music_avqa", "msvdqa", "tgifqa",
                                                                   "activitynetqa")},
           **{f"valor_{run}": "use data=avsynth" for run in ("ret_msrvtt", "ret_valor32k", "ret_audiocaps",
                                                             "cap_msrvtt", "cap_valor32k", "cap_audiocaps",
                                                             "pretrain_l", "ret_didemo", "ret_activitynet",
                                                             "ret_lsmdc", "ret_vatex", "ret_msvd", "cap_msvd",
                                                             "cap_vatex", "cap_clotho")},
           "dgsct_pretrain_paper": "task=pretrain_segments", "deepavfusion_avsrcsep": "task=separate",
           **{f"deepavfusion_{run}_{data}": f"task={'pretrain' if run == 'pretrain' else 'classify'}"
              for run in ("pretrain", "linprobe", "finetune") for data in ("vggsound", "audioset")}}  # fmt: skip


@pytest.mark.parametrize("recipe", sorted(REFUSED))
def test_dry_run_of_a_recipe_it_cannot_size_is_one_line(recipe, capsys):
    assert main(["train", f"recipe={recipe}", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and REFUSED[recipe] in err


def test_dry_run_of_the_pretrain_paper_recipe_on_avsynth(capsys):
    assert main(["train", "recipe=dgsct_pretrain_paper", "data.name=avsynth", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "optimizer: adam" in out and "name: dgsct_pretrain_paper" in out


# task=cma builds no model: its dry run prints the protocol's plan instead (tests/integration/test_cma_cli.py).
PROTOCOL_RECIPES = ("cma_avsynth_tiny", "cma_avsynth_esc_tiny", "cma_coop", "cma_imagenet_esc")


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r not in REFUSED and r not in PROTOCOL_RECIPES])
def test_dry_run_prints_config_and_parameter_groups_and_builds_nothing_heavy(recipe, tmp_path,
                                                                              monkeypatch, capsys):  # fmt: skip
    from avlearn.cli.dry_run import build_cheaply, dataset_info
    from avlearn.engine import optim

    monkeypatch.setenv("AVLEARN_CACHE", str(tmp_path / "cache"))
    assert main(["train", f"recipe={recipe}", f"out={tmp_path / 'runs'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    cfg = compose_run([f"recipe={recipe}"])
    t = cfg.train
    for line in (f"optimizer: {t.optimizer}", f"schedule: {t.schedule}", f"lr: {t.lr}", f"epochs: {t.epochs}",
                 f"batch_size: {t.batch_size}", f"patience: {t.patience}", f"name: {recipe}"):  # fmt: skip
        assert line in out, line
    task = build_cheaply(cfg, dataset_info(cfg))
    trained = sum(p.numel() for p in task.parameters() if p.requires_grad)
    assert f"{trained / 1e6:.2f} M trained" in out
    assert all(group["name"] in out for group in optim.param_groups(task, t))
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()  # no AVSynth, no run folder


def test_dry_run_of_the_ave_paper_recipe_states_the_seeds_numbers(capsys):
    assert main(["train", "recipe=dgsct_ave_paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("training: adam lr 0.0005 weight decay 0, 0 warmup epochs then step decay every 3 epochs x 0.35, 50 epochs"
            " of batch 8, early stop after 20 validations without improvement") in out  # fmt: skip
    assert "28 classes" in out  # AVE's own classes: no data.root needed


def test_dry_run_reads_the_classes_of_a_real_root(tmp_path, capsys):
    (tmp_path / "categories.txt").write_text("Bark\nCat\nGoat\n")
    assert main(["train", "recipe=dgsct_ave_tiny", "data.name=ave", f"data.root={tmp_path}", "--dry-run"]) == 0
    assert "3 classes" in capsys.readouterr().out


def test_dry_run_of_avqa_is_a_one_line_error(capsys):
    assert main(["train", "task=avqa", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task=avqa" in err and "answer vocabulary" in err


def test_a_key_given_twice_warns_once_and_the_last_wins(capsys):
    overrides = ["recipe=dgsct_ave_tiny", "train.lr=1e-3", "train.epochs=2", "train.lr=2e-3", "--dry-run"]
    assert main(["train", *overrides]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "avlearn: warning: train.lr is given 2 times on the command line (1e-3, then 2e-3); the last one wins: "
        "train.lr=2e-3"
    ]  # train.lr and train.epochs set by the recipe and again on the command line: no warning for that
    assert "  lr: 0.002\n" in captured.out and "  epochs: 2\n" in captured.out


# The seed's head of each DG-SCT task (issue #18): a head named after a seed is that seed's, and every DG-SCT recipe
# selects it; fewshot / pretrain / zeroshot tasks have no head choice (their prompt classifier is the seed's).
SEED_HEADS = {"ave": "cmbs", "avvp": "mgn", "avqa": "avst", "avs_s4": "tpavi", "avs_ms3": "tpavi"}
DGSCT_RECIPES = sorted(r for r in RECIPES if r.startswith("dgsct_"))


def _seed_head_module(task: object) -> object:
    """The module of ``task`` that a seed head is: the AVE / AVVP head, AVS's decoder, AVQA's seed head."""
    return getattr(task, "head", None) or getattr(task, "decoder", None) or task.seed_head


@pytest.mark.parametrize("recipe", DGSCT_RECIPES)
def test_every_dgsct_recipe_selects_the_seeds_head(recipe):
    from avlearn.cli.dry_run import build_cheaply, dataset_info
    from avlearn.tasks.ave import CMBSHead
    from avlearn.tasks.avqa import AVSTSeedHead
    from avlearn.tasks.avs import SeedAVSDecoder
    from avlearn.tasks.avvp import MGNHead
    from avlearn.tasks.base import DatasetInfo

    cfg = compose_run([f"recipe={recipe}"])
    if cfg.task.name not in SEED_HEADS:
        assert cfg.task.name in ("fewshot", "pretrain_segments", "zeroshot_ave") and "head" not in cfg.task
        return
    assert cfg.task.head == SEED_HEADS[cfg.task.name]
    info = DatasetInfo(("yes", "no", "two")) if cfg.task.name == "avqa" else dataset_info(cfg)  # AVQA: no dry run
    head = _seed_head_module(build_cheaply(cfg, info))
    expected = {"ave": CMBSHead, "avvp": MGNHead, "avqa": AVSTSeedHead, "avs_s4": SeedAVSDecoder}
    assert type(head) is expected.get(cfg.task.name, SeedAVSDecoder)
    if cfg.task.name == "ave":  # the seed's BiLSTMs: hidden d_model / 2 (audio) and d_model (video)
        rnn = head.temporal
        assert (rnn.audio_rnn.hidden_size, rnn.visual_rnn.hidden_size) == (cfg.task.d_model // 2, cfg.task.d_model)


# The seed's head sizes in the paper recipes (AVE/nets/net_trans.py, AVVP/nets/mgn.py, AVS model/PVT_AVSModel.py).
SEED_HEAD_SIZES = {
    "dgsct_ave_paper": {"audio_dim": 128, "visual_dim": 512, "d_model": 256, "ffn": 1024, "heads": 4,
                        "encoder_layers": 2},
    "dgsct_avvp_paper": {"dim": 128, "temporal_dim": 64, "heads": 8, "depth_audio": 3, "depth_visual": 3,
                         "depth_av": 6, "segments": 10, "seed_ffn": 1024},
    "dgsct_avs_s4_paper": {"dim": 256, "seed_audio_dim": 128, "seed_ffn": 1024, "temporal_gamma": 0.05},
    "dgsct_avs_ms3_paper": {"dim": 256, "seed_audio_dim": 128, "seed_ffn": 1024, "temporal_gamma": 0.1},
}  # fmt: skip


@pytest.mark.parametrize("recipe", sorted(SEED_HEAD_SIZES))
def test_paper_recipes_give_the_seed_heads_their_sizes(recipe, capsys):
    task = compose_run([f"recipe={recipe}"]).task
    assert {key: task[key] for key in SEED_HEAD_SIZES[recipe]} == SEED_HEAD_SIZES[recipe]
    assert main(["train", f"recipe={recipe}", "--dry-run"]) == 0
    assert f"  head: {task.head}\n" in capsys.readouterr().out  # the dry run states the head it builds

"""The run config: groups, overrides, sweeps, schemas, and errors that list what would be valid."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from avlearn.config import compose_run, expand_sweep, save_config
from avlearn.errors import ConfigError


def test_defaults_compose_with_every_group():
    cfg = compose_run()
    assert (cfg.task.name, cfg.method.name, cfg.backbone.name, cfg.data.name, cfg.train.name) == (
        "ave", "baseline", "small_cnn", "avsynth", "default",
    )  # fmt: skip


def test_overrides_are_typed():
    cfg = compose_run(["train=demo", "train.epochs=3", "method.dim=64", "seed=7", "data.clips=100"])
    assert cfg.train.name == "demo" and cfg.train.epochs == 3 and cfg.method.dim == 64
    assert cfg.seed == 7 and cfg.data.clips == 100 and isinstance(cfg.train.lr, float)


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'train.epochz'.*valid keys of train: .*epochs"):
        compose_run(["train.epochz=3"])


def test_unknown_key_of_a_method_lists_its_schema_fields():
    with pytest.raises(ConfigError, match=r"unknown key 'method.width'.*dim"):
        compose_run(["method.width=3"])


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown key 'epochs'.*seed"):
        compose_run(["epochs=3"])


def test_unknown_option_lists_the_options():
    with pytest.raises(ConfigError, match=r"unknown method 'dgsct2'; valid method options: baseline"):
        compose_run(["method=dgsct2"])


def test_wrongly_typed_value_is_named():
    with pytest.raises(ConfigError, match=r"bad value 'many' for train.epochs: expected integer"):
        compose_run(["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"bad value 'maybe' for train.deterministic: expected bool"):
        compose_run(["train.deterministic=maybe"])


def test_sweep_expands_to_every_combination():
    runs = expand_sweep(["shots=1,2,4", "seed=1,2,3", "train.epochs=2"], multirun=True)
    assert len(runs) == 9 and ["shots=4", "seed=3", "train.epochs=2"] in runs


def test_sweep_without_multirun_is_refused():
    with pytest.raises(ConfigError, match="add -m"):
        expand_sweep(["seed=1,2"], multirun=False)


def test_malformed_override_is_one_line():
    with pytest.raises(ConfigError, match="bad override"):
        expand_sweep(["seed=[1,"], multirun=False)


def test_resolved_config_is_saved(tmp_path):
    cfg = compose_run(["seed=5"])
    path = save_config(cfg, tmp_path)
    assert OmegaConf.load(path).seed == 5 and OmegaConf.load(path).train.epochs == cfg.train.epochs


def test_every_shipped_option_composes():
    from avlearn.config.compose import GROUPS, group_options

    for group in GROUPS:
        for option in group_options(group):
            assert compose_run([f"{group}={option}"])[group].name == option


@pytest.mark.parametrize(
    ("key", "bad"),
    [("train.device", "gpu"), ("train.precision", "fp8"), ("train.strategy", "zero3"), ("train.select", "first"),
     ("train.optimizer", "adagrad"), ("train.schedule", "cyclic"), ("backbone.freeze", "some")],
)  # fmt: skip
def test_invalid_choice_is_one_line_listing_the_valid_values(key, bad):
    from dataclasses import fields

    from avlearn.config.schema import BackboneConfig, TrainConfig

    schema = TrainConfig if key.startswith("train.") else BackboneConfig
    valid = next(f.metadata["choices"] for f in fields(schema) if f.name == key.split(".")[1])
    with pytest.raises(ConfigError) as err:
        compose_run([f"{key}={bad}"])
    assert str(err.value) == f"{key}='{bad}' is not valid; expected one of: {', '.join(valid)}"
    group, name = key.split(".")
    for value in valid:
        if value != "cuda:N":
            assert compose_run([f"{key}={value}"])[group][name] == value  # every listed value is accepted


def test_cuda_device_index_is_a_valid_device():
    assert compose_run(["train.device=cuda:3"]).train.device == "cuda:3"


@pytest.mark.parametrize("group", ["task", "method"])
def test_choice_fields_of_task_and_method_schemas_are_checked(group, monkeypatch):
    """compose_run checks the ``choice`` fields of the chosen task's and method's own schema too."""
    from dataclasses import dataclass

    from avlearn.config import compose
    from avlearn.config.schema import choice

    real = compose._schema(group, "ave" if group == "task" else "baseline")

    @dataclass
    class WithChoice(real):
        mode: str = choice("a", ("a", "b"))

    original = compose._schema
    monkeypatch.setattr(compose, "_schema", lambda g, o: WithChoice if g == group else original(g, o))
    assert compose_run([f"{group}.mode=b"])[group].mode == "b"
    with pytest.raises(ConfigError, match=rf"^{group}.mode='c' is not valid; expected one of: a, b$"):
        compose_run([f"{group}.mode=c"])


def test_a_key_given_twice_is_named_with_both_values():
    from avlearn.config.compose import repeated_keys

    lines = repeated_keys(["train.lr=1e-3", "seed=1", "train.lr=2e-3", "task=ave", "task=avvp", "data.clips=9"])
    assert lines == [
        "train.lr is given 2 times on the command line (1e-3, then 2e-3); the last one wins: train.lr=2e-3",
        "task is given 2 times on the command line (ave, then avvp); the last one wins: task=avvp",
    ]
    assert compose_run(["train.lr=1e-3", "train.lr=2e-3"]).train.lr == 2e-3  # Hydra keeps the last, as the line says
    assert repeated_keys(["recipe=dgsct_ave_paper", "train.lr=1e-3", "train=demo"]) == []  # recipe/option + key


def test_recipes_compose():
    from avlearn.config.compose import group_options

    for recipe in group_options("recipe"):
        assert compose_run([f"recipe={recipe}"]).name == recipe


def test_unknown_recipe_lists_the_recipes():
    with pytest.raises(ConfigError, match=r"unknown recipe 'dgsct'; valid recipe options: .*\bdgsct_ave_paper\b"):
        compose_run(["recipe=dgsct"])

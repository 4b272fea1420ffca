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

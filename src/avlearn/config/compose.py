"""Composing the run config with Hydra: groups, ``key=value`` overrides, ``-m`` sweeps, clear errors.

We use Hydra's compose API (not ``@hydra.main``) so that the CLI keeps its subcommands and so that errors can be
rewritten into one line that lists the valid options or keys. Schemas: ``schema.py`` for the shared groups, and the
``Config`` dataclass of each registered task and method for its own group option. The ``recipe`` group (Hydra's
experiment pattern: ``# @package _global_`` files that pick task, method, backbone and set data and train keys) is
applied after the other groups; command-line overrides still win over it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from avlearn.config.schema import BackboneConfig, DataConfig, RunConfig, TrainConfig, check_choices
from avlearn.errors import ConfigError
from avlearn.registry import METHODS, TASKS

GROUPS = ("task", "method", "backbone", "data", "train")  # the groups with a schema; ``recipe`` has none
CONFIG_DIR = Path(__file__).parent
_SHARED = {"backbone": BackboneConfig, "data": DataConfig, "train": TrainConfig}


def group_options(group: str) -> list[str]:
    """The options of config group ``group``: its yaml files' names, sorted."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def describe_option(group: str, option: str) -> str:
    """The first sentence of the leading comment of ``<group>/<option>.yaml``, on one line (for ``avlearn info``)."""
    lines = (CONFIG_DIR / group / f"{option}.yaml").read_text().splitlines()
    comment = " ".join(line.lstrip("# ").strip() for line in itertools.takewhile(lambda x: x.startswith("#"), lines)
                       if not line.startswith("# @package"))  # fmt: skip
    end = re.search(r"(?<!e\.g)(?<!i\.e)(?<!\bal)\.(\s|$)", comment)  # not after "e.g.", "i.e.", "et al."
    return comment[: end.start() + 1] if end else comment


def _schema(group: str, option: str) -> type | None:
    if group in _SHARED:
        return _SHARED[group]
    registry = TASKS if group == "task" else METHODS
    return getattr(registry.get(option), "Config", None) if option in registry else None


_stored: tuple | None = None  # what ``_store_schemas`` put into Hydra's ConfigStore last


def _store_schemas() -> None:
    """Put the run, shared-group and registered task/method schemas into Hydra's ConfigStore.

    Storing converts every dataclass (about 40 % of a compose); it is skipped when the set of (group, option, schema)
    is the one stored last, so a task or method registered later is still picked up.
    """
    global _stored
    from hydra.core.config_store import ConfigStore

    from avlearn import register_all

    register_all()  # the task and method schemas come from the registered classes
    plan = tuple((group, option, _schema(group, option)) for group in GROUPS for option in group_options(group))
    if plan == _stored:
        return
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for group, option, schema in plan:
        name = f"{group}_schema" if group in _SHARED else f"{option}_schema"
        if schema is not None:
            store.store(group=group, name=name, node=schema)
    _stored = plan


def _valid_keys(key: str, overrides: Sequence[str]) -> list[str]:
    """The keys allowed beside dotted ``key`` (for the error message), from the schemas."""
    group, _, rest = key.partition(".")
    if not rest:
        return [f.name for f in fields(RunConfig)]
    if group in _SHARED:
        return [f.name for f in fields(_SHARED[group])]
    if group in ("task", "method"):
        schema = _schema(group, _chosen(group, overrides))
        return [f.name for f in fields(schema)] if schema is not None else []
    return []


def _chosen(group: str, overrides: Sequence[str]) -> str:
    """The ``task`` or ``method`` option that ``overrides`` pick (the last one), else the default."""
    picked = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{group}=")]
    return picked[-1] if picked else {"task": "ave", "method": "baseline"}[group]


def _rewrite(err: Exception, overrides: Sequence[str]) -> ConfigError:
    """One line that says what is wrong and what would be valid (Hydra's own text is spread over its causes)."""
    text = "\n".join(str(e) for e in (err, err.__cause__, err.__context__) if e is not None)
    missing = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        return ConfigError(f"unknown {group} '{option}'; valid {group} options: {', '.join(group_options(group))}")
    bad_key = re.search(r"Could not override '([^']+)'", text)
    if bad_key:
        key = bad_key.group(1)
        where = key.rsplit(".", 1)[0] if "." in key else "the run config"
        return ConfigError(f"unknown key '{key}'; valid keys of {where}: {', '.join(_valid_keys(key, overrides))}")
    in_file = re.search(r"In '([\w/]+)'.*?Key '\w+' not in '\w+'\s+full_key: (\S+)", text, re.S)
    if in_file:  # a key that a config file (a recipe) sets but the group option chosen on the command line lacks
        source, key = in_file.groups()
        group = key.split(".")[0]
        option = f"{group} {_chosen(group, overrides)}" if group in ("task", "method") else group
        return ConfigError(f"{source} sets '{key}', which {option} does not have; its keys: "
                           f"{', '.join(_valid_keys(key, overrides))}")  # fmt: skip
    value = re.search(r"Value '([^']*)' (?:(?:of type '\w+' )?could not be converted to|is not a valid) (\w+)", text)
    merging = re.search(r"Error merging override ([^=\s]+)=", text)
    if value and merging:
        return ConfigError(f"bad value '{value.group(1)}' for {merging.group(1)}: expected {value.group(2).lower()}")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return ConfigError(f"{first} (overrides: {' '.join(overrides) or 'none'})")


def compose_run(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The resolved run config for ``overrides`` (``key=value`` strings), validated against the schemas."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _store_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except Exception as err:  # Hydra and OmegaConf raise many types; all become one readable line
        raise _rewrite(err, overrides) from None
    OmegaConf.resolve(cfg)
    for group in GROUPS:
        schema = _schema(group, cfg[group].name) if group in ("task", "method") else _SHARED[group]
        if schema is not None:
            check_choices(schema, cfg[group], group)
    return cfg


def repeated_keys(overrides: Sequence[str]) -> list[str]:
    """One warning line per key that ``overrides`` set more than once, naming the values; the last one wins.

    Only the command line's own overrides are compared: a key that a recipe or a group option sets and the command
    line sets again is an ordinary override.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        values.setdefault(override.key_or_group, []).append(override.get_value_string())
    return [
        f"{key} is given {len(given)} times on the command line ({', then '.join(given)}); the last one wins: "
        f"{key}={given[-1]}"
        for key, given in values.items()
        if len(given) > 1
    ]


def expand_sweep(overrides: Sequence[str], multirun: bool) -> list[list[str]]:
    """Overrides for each run: ``-m a=1,2 b=x,y`` gives the 4 combinations; without ``-m`` exactly one run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as err:
        raise ConfigError(f"bad override: {str(err).strip().splitlines()[0]}") from None
    choices = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not multirun:
                raise ConfigError(f"'{override.input_line}' sweeps several values; add -m to run them all")
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combo) for combo in itertools.product(*choices)]


def save_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write the resolved config to ``run_dir/config.yaml`` atomically and return its path."""
    from avlearn.files import atomic_write_text

    return atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

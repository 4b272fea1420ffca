"""``avlearn info``: versions, devices and everything registered."""

from __future__ import annotations

import argparse

HELP = "show versions, devices and the registered methods, tasks, backbones, datasets and scorers"
DESCRIPTION = (
    "Prints the versions of avlearn and its main dependencies, the compute devices, and every registered\n"
    "component with its description (the first paragraph of its docstring; for variants of one class, such as\n"
    "dgsct / dgsct_tiny, the first sentence of the variant's config file), and the recipes (recipe=NAME)\n"
    "(--json for machine-readable output)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("avlearn", "torch", "transformers", "av", "hydra-core", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def descriptions() -> dict[str, dict[str, str]]:
    """Kind -> name -> description of everything registered, and of the recipes; task and method variants (several
    names of one class) are described by their config files."""
    import avlearn
    from avlearn.config.compose import describe_option, group_options
    from avlearn.registry import ALL

    avlearn.register_all()
    files = {kind: {o: describe_option(kind[:-1], o) for o in group_options(kind[:-1])}
             for kind in ("tasks", "methods", "recipes")}  # fmt: skip
    return {**{kind: registry.describe(files.get(kind)) for kind, registry in ALL.items()}, "recipes": files["recipes"]}


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    described = descriptions()
    info = {"versions": _versions(), "devices": devices, **described}
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("devices:  " + ", ".join(devices))
    for kind, entries in described.items():
        print(f"\n{kind} ({len(entries)}):")
        for name, doc in entries.items():
            print(f"  {name:<28} {doc}")
    return 0

"""``avlearn info``: versions, devices and everything registered."""

from __future__ import annotations

import argparse

HELP = "show versions, devices and the registered methods, tasks, backbones, datasets and scorers"
DESCRIPTION = (
    "Prints the versions of avlearn and its main dependencies, the compute devices, and every registered\n"
    "component with its one-line description (--json for machine-readable output)."
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


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    import avlearn
    from avlearn.registry import ALL

    avlearn.register_all()
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    info = {"versions": _versions(), "devices": devices, **{k: r.describe() for k, r in ALL.items()}}
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("devices:  " + ", ".join(devices))
    for kind, entries in ((k, info[k]) for k in ALL):
        print(f"\n{kind} ({len(entries)}):")
        for name, doc in entries.items():
            print(f"  {name:<28} {doc}")
    return 0

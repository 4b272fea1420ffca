"""Moving one tower out of a published checkpoint by regular-expression renames (the converters of
``avlearn.backbones.clip_resnet`` and ``avlearn.backbones.esresnext``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from avlearn.errors import DataError

Rename = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def rename_tower(
    state: dict[str, torch.Tensor], prefix: str, renames: Sequence[Rename], tower: str, skip: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """The keys of ``state`` under ``prefix`` renamed by the first matching pattern of ``renames`` (the prefix
    removed first); keys elsewhere are left out, and so are the names in ``skip`` when their tensor is empty. A key
    under ``prefix`` that no pattern matches, or no key under it, is a one-line ``DataError`` naming ``tower``."""
    out = {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name in skip and tensor.numel() == 0:
            continue
        for pattern, rename in renames:
            match = pattern.match(name)
            if match:
                out[rename(match)] = tensor
                break
        else:
            raise DataError(f"{tower} checkpoint: key {key!r} is not part of the tower")
    if not out:
        raise DataError(f"{tower} checkpoint: no key starts with {prefix!r}")
    return out

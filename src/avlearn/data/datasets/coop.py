"""The CoOp split and few-shot files that Cross-Modal Adaptation (Lin et al., CVPR 2023) trains from.

- ``split_zhou_<Name>.json``: ``{"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}``,
  ``relpath`` relative to the dataset's image folder (UCF101: ``UCF-101-midframes``).
- ``shot_{K}-seed_{S}.json``: ``{"train": {"data": [{"impath", "label", "classname"}, ...], "indices": [...]},
  "val": {...}}``; ``indices[i]`` is the position in the split's list; K per class in train, min(K, 4) in val.
  The published files hard-code a ``./data/`` prefix in ``impath``; only ``indices`` are used here.

The ``coop`` reader gives one split of a dataset folder holding its ``split_zhou_*.json`` (``shots=K`` keeps the
few-shot subset: from ``split_fewshot/shot_K-seed_S.json`` when present, else drawn by
``avlearn.data.samplers.few_shot_split`` and written there, so the same K and seed give the same subset).
Targets: ``label``; the media are images (``frames`` (1, H, W, 3)).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avlearn.data.datasets.base import ClipDataset, check_split
from avlearn.data.datasets.media import Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import read_json
from avlearn.errors import DataError
from avlearn.registry import DATASETS

SPLITS = ("train", "val", "test")
Item = tuple[str, int, str]  # (relpath, label, classname)


def read_coop_split(path: str | Path) -> dict[str, list[Item]]:
    """``split_zhou_*.json`` -> split -> ``(relpath, label, classname)`` items."""
    data = read_json(path)
    if not isinstance(data, dict) or not set(SPLITS) <= set(data):
        raise DataError(f"{path}: expected a JSON object with lists 'train', 'val' and 'test' (CoOp split format)")
    out = {}
    for split in SPLITS:
        items = []
        for position, item in enumerate(data[split]):
            ok = isinstance(item, list) and len(item) == 3 and isinstance(item[1], int)
            if not ok:
                raise DataError(f"{path}: {split} item {position}: expected [relpath, label, classname], got {item!r}")
            items.append((str(item[0]), item[1], str(item[2])))
        out[split] = items
    return out


def class_names(items: list[Item], where: str) -> tuple[str, ...]:
    """Class names by label (0..K-1); a label with two names or a gap raises."""
    names: dict[int, str] = {}
    for _, label, name in items:
        if names.setdefault(label, name) != name:
            raise DataError(f"{where}: label {label} is named {names[label]!r} and {name!r}")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{where}: labels are not 0..{len(names) - 1}")
    return tuple(names[k] for k in range(len(names)))


def read_fewshot_file(path: str | Path) -> dict[str, list[int]]:
    """``shot_K-seed_S.json`` -> ``{"train": indices, "val": indices}``."""
    data = read_json(path)
    try:
        return {s: [int(i) for i in data[s]["indices"]] for s in ("train", "val")}
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"{path}: expected {{'train': {{'indices': [...]}}, 'val': {{...}}}} (CoOp few-shot format)"
        ) from None


def write_fewshot_file(path: str | Path, split: dict[str, list[Item]], indices: dict[str, list[int]]) -> None:
    """Write a ``shot_K-seed_S.json`` in the CoOp format for ``indices`` into ``split``'s train and val lists."""
    out: dict[str, Any] = {}
    for name in ("train", "val"):
        data = [{"impath": split[name][i][0], "label": split[name][i][1], "classname": split[name][i][2]}
                for i in indices[name]]  # fmt: skip
        out[name] = {"data": data, "indices": indices[name]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out))


def fewshot_indices(folder: Path, split: dict[str, list[Item]], shots: int, seed: int) -> dict[str, list[int]]:
    """The few-shot subset for (shots, seed): read from ``split_fewshot/``, or drawn and written there."""
    from avlearn.data.samplers import few_shot_split

    path = folder / "split_fewshot" / f"shot_{shots}-seed_{seed}.json"
    if path.is_file():
        return read_fewshot_file(path)
    indices = few_shot_split([i[1] for i in split["train"]], [i[1] for i in split["val"]], shots, seed)
    write_fewshot_file(path, split, indices)
    return indices


def _image_folder(root: Path, first: str) -> Path:
    """The folder the relpaths are relative to: ``root`` or the subfolder of it holding the first item."""
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (folder / first).is_file():
            return folder
    return root


@DATASETS.register("coop")
class CoOpDataset(ClipDataset):
    """An image dataset in CoOp's split format (split_zhou_*.json), optionally K-shot (shots, seed)."""

    name = "coop"
    splits = SPLITS

    def __init__(
        self,
        root: str | Path,
        split: str,
        shots: int = 0,
        seed: int = 1,
        missing: str = "error",
        media: str | Path | None = None,
        decode: Decode | None = None,
    ) -> None:
        check_split(self.name, split, self.splits)
        root = Path(root)
        found = sorted(root.glob("split_zhou_*.json"))
        if not found:
            raise DataError(f"{root}: no split_zhou_*.json (CoOp split file)")
        lists = read_coop_split(found[0])
        classes = class_names(lists["train"], str(found[0]))
        positions = list(range(len(lists[split])))
        if shots > 0 and split != "test":
            positions = fewshot_indices(root, lists, shots, seed)[split]
        records = []
        for i in positions:
            relpath, label, _ = lists[split][i]
            where = f"{found[0]}: {split} item {i}"
            records.append(
                Record(relpath, Path(relpath).stem, split, {"label": label}, where, (label,), {"file": relpath})
            )
        base = _image_folder(root, lists[split][0][0]) if lists[split] else root
        super().__init__(root, split, records, classes, open_media(base, media, ("{file}",)),
                         decode or Decode(frames=1, seconds=None, audio=False), missing)  # fmt: skip

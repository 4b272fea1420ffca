"""ImageNet-ESC, the paired image/audio benchmark of Cross-Modal Adaptation (Lin et al., "Multimodality Helps
Unimodality: Cross-Modal Few-Shot Learning with Multimodal Models", CVPR 2023; ``imagenet_esc.py``).

27 ImageNet classes are paired one-to-one with ESC-50 categories (``PAIRS``, ImageNet index -> ESC category, as
in the reference code); ImageNet-ESC-19 drops the 8 loose matches (``LOOSE``). Labels are re-indexed by the sorted
ImageNet index and named with the ImageNet (CLIP) class names, for both modalities.

- ``modality="audio"``: the ESC-50 clips of the paired categories (``esc50.py`` layout under ``root``); splits as
  ESC-50 (``fold1`` ... ``fold5``, ``all``, ``train``/``test`` with ``fold``): 40 clips per class.
- ``modality="image"``: ImageNet in the CoOp layout under ``root``: ``imagenet/classnames.txt`` (``<wnid> <name>``,
  1000 lines in index order) and ``imagenet/images/<train|val>/<wnid>/*.JPEG``; splits ``train`` and ``val``.
  Every paired class needs its folder; an empty one is a class without images in that split (AVSynth's classes
  above its ``num_classes``).
"""

from __future__ import annotations

from pathlib import Path

from avlearn.data.datasets.base import ClipDataset, check_split, find_file
from avlearn.data.datasets.esc50 import ESC50Dataset
from avlearn.data.datasets.media import IMAGE_SUFFIXES, Decode, open_media
from avlearn.data.schema import Record
from avlearn.data.textfiles import text_lines
from avlearn.errors import DataError
from avlearn.registry import DATASETS

PAIRS: dict[int, tuple[str, str]] = {
    7: ("rooster", "rooster"), 8: ("hen", "hen"), 19: ("chickadee", "chirping_birds"), 31: ("tree frog", "frog"),
    175: ("Otterhound", "dog"), 285: ("Egyptian Mau", "cat"), 308: ("fly", "insects"),
    312: ("cricket insect", "crickets"), 341: ("pig", "pig"), 349: ("bighorn sheep", "sheep"),
    404: ("airliner", "airplane"), 466: ("high-speed train", "train"), 473: ("can opener", "can_opening"),
    491: ("chainsaw", "chainsaw"), 497: ("church", "church_bells"), 508: ("computer keyboard", "keyboard_typing"),
    530: ("digital clock", "clock_alarm"), 556: ("fire screen", "crackling_fire"),
    673: ("computer mouse", "mouse_click"), 861: ("toilet seat", "toilet_flush"),
    882: ("vacuum cleaner", "vacuum_cleaner"), 892: ("wall clock", "clock_tick"), 896: ("sink", "water_drops"),
    897: ("washing machine", "washing_machine"), 898: ("water bottle", "drinking_sipping"),
    899: ("water jug", "pouring_water"), 977: ("sandbar", "sea_waves"),
}  # fmt: skip
LOOSE = frozenset({"can_opening", "church_bells", "crackling_fire", "toilet_flush", "water_drops",
                   "drinking_sipping", "pouring_water", "sea_waves"})  # fmt: skip
VARIANTS = (27, 19)


def paired_classes(variant: int) -> list[int]:
    """The ImageNet indices of ImageNet-ESC-``variant``, sorted (the label order)."""
    if variant not in VARIANTS:
        raise DataError(f"ImageNet-ESC variant must be 27 or 19, got {variant}")
    return sorted(i for i, (_, esc) in PAIRS.items() if variant == 27 or esc not in LOOSE)


def read_wnids(path: Path) -> list[str]:
    """The WordNet ids of ``classnames.txt`` in ImageNet index order (1000 lines ``<wnid> <name>``)."""
    wnids = [line.split(maxsplit=1)[0] for _, line in text_lines(path)]
    if len(wnids) != 1000:
        raise DataError(f"{path}: expected 1000 lines '<wnid> <class name>', got {len(wnids)}")
    return wnids


@DATASETS.register("imagenet_esc")
class ImageNetESCDataset(ClipDataset):
    """ImageNet-ESC-27 / -19: ImageNet classes paired with ESC-50 categories, read as audio or as images."""

    name = "imagenet_esc"
    splits = (*ESC50Dataset.splits, "val")
    official_splits = ESC50Dataset.official_splits  # the five folds

    def __init__(
        self,
        root: str | Path,
        split: str,
        variant: int = 27,
        modality: str = "audio",
        fold: int = 1,
        missing: str = "error",
        media: str | Path | None = None,
        decode: Decode | None = None,
    ) -> None:
        check_split(self.name, split, self.splits)
        indices = paired_classes(variant)
        classes = tuple(PAIRS[i][0] for i in indices)
        root = Path(root)
        if modality == "audio":
            esc = ESC50Dataset(root, split, fold=fold, missing="keep", media=media, decode=decode)
            by_category = {PAIRS[i][1]: k for k, i in enumerate(indices)}
            records = [self._relabel(r, by_category[esc.classes[r.targets["label"]]]) for r in esc.records
                       if esc.classes[r.targets["label"]] in by_category]  # fmt: skip
            super().__init__(root, split, records, classes, esc.media, esc.decode, missing)
        elif modality == "image":
            records, source = self._images(root, split, indices, media)
            super().__init__(root, split, records, classes, source,
                             decode or Decode(frames=1, seconds=None, audio=False), missing)  # fmt: skip
        else:
            raise DataError(f"ImageNet-ESC modality must be audio or image, got {modality!r}")

    @staticmethod
    def _relabel(record: Record, label: int) -> Record:
        return Record(record.id, record.media, record.split, {"label": label}, record.source, (label,), record.fields)

    @staticmethod
    def _images(root: Path, split: str, indices: list[int], media: str | Path | None) -> tuple[list[Record], object]:
        if split not in ("train", "val"):
            raise DataError(f"ImageNet-ESC images have splits train and val, not {split!r}")
        names = find_file(root, ["imagenet/classnames.txt", "classnames.txt"], "ImageNet classnames.txt")
        wnids = read_wnids(names)
        images = names.parent / "images" / split
        records = []
        for label, index in enumerate(indices):
            if not (images / wnids[index]).is_dir():
                raise DataError(f"{images / wnids[index]}: no folder for class {index} ({PAIRS[index][0]})")
            files = sorted(p for p in (images / wnids[index]).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            for file in files:
                rel = file.relative_to(images).as_posix()  # <wnid>/<name>
                records.append(Record(rel, file.stem, split, {"label": label}, f"{names}:{index + 1}", (label,),
                                      {"file": f"{split}/{rel}"}))  # fmt: skip
        if not records:
            raise DataError(f"{images}: no images of the {len(indices)} paired classes")
        return records, open_media(images.parent, media, ("{file}",))  # both splits: a pipeline reads one media

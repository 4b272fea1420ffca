"""The inputs of the scorers: checks and readers for the files ``avlearn score`` accepts, and array conversion.

Every reader returns plain Python or NumPy data keyed by the sample id, and raises
:class:`avlearn.errors.DataError` naming the file, the line (or key) and the field when the input is
malformed. The formats themselves are documented, with examples, in ``docs/scoring.md``.
The scorers in the sibling modules call these readers, then the pure compute functions (which take NumPy
arrays or torch tensors through ``as_numpy``). Text, CSV/TSV and JSON files are read with
``avlearn.data.textfiles``, which the dataset readers share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from avlearn.errors import DataError

PathLike = str | Path


def as_numpy(x: object, dtype: type) -> np.ndarray:
    """A NumPy array of ``dtype`` from an array-like or a (possibly CUDA) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x).astype(dtype, copy=False)


def expect_files(paths: Sequence[PathLike], count: int | tuple[int, int], what: str) -> list[Path]:
    """Check the number of files given for ``what`` and that each one exists."""
    low, high = (count, count) if isinstance(count, int) else count
    if not low <= len(paths) <= high:
        wanted = f"{low}" if low == high else f"{low} to {high}"
        given = ", ".join(map(str, paths)) or "(none)"
        raise DataError(f"{what}: expected {wanted} file(s), got {len(paths)}: {given}")
    out = [Path(p) for p in paths]
    for path in out:
        if not path.exists():
            raise DataError(f"{what}: {path}: no such file or folder")
    return out


def check_ids(
    pred_ids: Iterable[str], gt_ids: Iterable[str], pred_path: PathLike, *, allow_missing: bool = False
) -> None:
    """Raise on the first prediction id absent from the ground truth, then on the first missing one."""
    gt_list = list(gt_ids)
    known = set(gt_list)
    pred_list = list(pred_ids)
    for key in pred_list:
        if key not in known:
            raise DataError(f"{pred_path}: unknown id '{key}' (not in the ground truth)")
    if allow_missing:
        return
    seen = set(pred_list)
    for key in gt_list:
        if key not in seen:
            missing = sum(k not in seen for k in gt_list)
            raise DataError(f"{pred_path}: missing id '{key}' ({missing} ground-truth id(s) have no prediction)")


def check_finite(values: np.ndarray, ids: Sequence[str], path: PathLike, field: str) -> None:
    """Raise naming the first id whose row of ``values`` (first axis = ids) holds a NaN or an infinity."""
    bad = ~np.isfinite(values.reshape(len(ids), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{path}: id '{ids[first]}': {field} holds NaN or infinite values")


def read_npz(path: PathLike) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file (never unpickles objects)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as err:
        raise DataError(f"{path}: not a plain numeric/string .npz archive ({err})") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read as .npz ({err})") from None


def read_mask_folder(folder: PathLike, *, as_probability: bool) -> dict[str, np.ndarray]:
    """PNG masks under ``folder`` keyed by their relative path without ``.png`` (``video/frame``).

    Ground truth (``as_probability=False``) is foreground wherever the pixel value is non-zero.
    Predictions in grey-level (``L``) mode are read as probabilities ``value / 255``; palette (``P``)
    and 1-bit images are read as hard masks.
    """
    from PIL import Image

    root = Path(folder)
    files = sorted(root.rglob("*.png"))
    if not files:
        raise DataError(f"{root}: no .png masks found")
    masks = {}
    for file in files:
        with Image.open(file) as image:
            mode = image.mode
            array = np.asarray(image.convert("L") if mode in ("RGB", "RGBA", "LA") else image)
        if array.ndim != 2:
            raise DataError(f"{file}: unsupported PNG mode {mode!r}; expected a single-channel mask")
        key = file.relative_to(root).with_suffix("").as_posix()
        if as_probability and mode in ("L", "RGB", "RGBA", "LA"):
            masks[key] = array.astype(np.float32) / np.float32(255.0)
        else:
            masks[key] = (array > 0).astype(np.float32) if as_probability else array > 0
    return masks

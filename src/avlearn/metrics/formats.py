"""Readers for the prediction and ground-truth files that ``avlearn score`` accepts.

Every reader returns plain Python or NumPy data keyed by the sample id, and raises
:class:`avlearn.errors.DataError` naming the file, the line (or key) and the field when the input is
malformed. The formats themselves are documented, with examples, in ``docs/scoring.md``.
The scorers in the sibling modules call these readers, then the pure compute functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avlearn.errors import DataError

PathLike = str | Path


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


def text_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a text file (1-based, newline stripped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text file ({err})") from None


def read_tsv(path: PathLike, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """A tab-separated file whose header names at least ``columns``; returns ``(line, row)`` pairs."""
    lines = text_lines(path)
    try:
        _, header_line = next(lines)
    except StopIteration:
        raise DataError(f"{path}: empty file; expected a tab-separated header {list(columns)}") from None
    header = header_line.split("\t")
    absent = [c for c in columns if c not in header]
    if absent:
        raise DataError(f"{path}: line 1: header {header} lacks column(s) {absent} (tab-separated expected)")
    rows = []
    for number, line in lines:
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(f"{path}: line {number}: expected {len(header)} tab-separated fields, got {len(cells)}")
        rows.append((number, dict(zip(header, cells, strict=True))))
    return rows


def read_json(path: PathLike) -> Any:
    """Parse a JSON file, reporting syntax errors with the file name and position."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None


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


def parse_int(text: str, path: PathLike, line: int, field: str, low: int, high: int) -> int:
    """An integer within ``[low, high]`` written as ``3`` or ``3.0``; anything else raises."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or not low <= value <= high:
        raise DataError(f"{path}: line {line}: field '{field}': expected an integer in {low}..{high}, got {text!r}")
    return int(value)

"""Readers for the text, CSV/TSV and JSON files that benchmarks annotate with and scorers are given.

One home for the helpers that both the dataset readers (``avlearn.data.datasets``) and the scorers
(``avlearn.metrics``) use, so that a malformed file fails the same way whichever reads it: a
:class:`avlearn.errors.DataError` whose message starts with ``file:line`` (``where``), then names the field and
what was expected. Lines are numbered from 1, as editors and ``grep -n`` number them. NumPy and torch are not
imported here, so scoring stays light.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from avlearn.errors import DataError

SEPARATOR_NAMES = {",": "comma", "\t": "tab"}


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for the non-blank lines of a UTF-8 text file, newline stripped (1-based)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text file ({err})") from None


def csv_rows(path: str | Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` per line of a delimited file.

    Quotes are honoured, spaces after a delimiter skipped and ``#`` comment lines left out.
    """
    for number, line in text_lines(path):
        if line.startswith("#"):
            continue
        yield number, next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))


def read_table(path: str | Path, columns: Sequence[str], delimiter: str = ",") -> list[tuple[str, dict[str, str]]]:
    """A delimited file whose header names at least ``columns``: ``(file:line, row)`` per data line.

    Args:
        path: The file.
        columns: Header names that must be present (others are kept in the rows too).
        delimiter: ``","`` (CSV) or ``"\\t"`` (TSV, as the LLP files).
    """
    kind = f"{SEPARATOR_NAMES.get(delimiter, repr(delimiter))}-separated"
    rows = csv_rows(path, delimiter)
    try:
        number, header = next(rows)
    except StopIteration:
        raise DataError(f"{path}: empty file; expected a {kind} header naming {', '.join(columns)}") from None
    absent = [c for c in columns if c not in header]
    if absent:
        raise DataError(f"{path}:{number}: header {header} lacks column(s) {absent} ({kind} expected)")
    out = []
    for number, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{path}:{number}: expected {len(header)} {kind} fields, got {len(cells)}")
        out.append((f"{path}:{number}", dict(zip(header, cells, strict=True))))
    return out


def parse_int(text: str, where: str, field: str, low: int, high: int) -> int:
    """An integer in ``[low, high]`` written as ``3`` or ``3.0``; anything else raises naming ``where``, ``field``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or not low <= value <= high:
        raise DataError(f"{where}: field '{field}': expected an integer in {low}..{high}, got {text!r}")
    return int(value)


def read_json(path: str | Path) -> Any:
    """A JSON file; a syntax error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def read_names(path: str | Path) -> tuple[str, ...]:
    """One name per non-blank line (a class list such as ``categories.txt``), surrounding spaces removed."""
    return tuple(line.strip() for _, line in text_lines(path))

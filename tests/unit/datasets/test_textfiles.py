"""The annotation-file helpers readers and scorers share: rows, headers, integers, JSON; errors name file:line."""

import subprocess
import sys
from pathlib import Path

import pytest

from avlearn.data.textfiles import parse_int, read_json, read_table, text_lines
from avlearn.errors import DataError


def test_read_table_csv_and_tsv(tmp_path: Path) -> None:
    csv_file = tmp_path / "a.csv"
    csv_file.write_text('# comment\n\nid,label,extra\nx1, "Dog, barking",1\n')
    assert read_table(csv_file, ("id", "label")) == [
        (f"{csv_file}:4", {"id": "x1", "label": "Dog, barking", "extra": "1"})
    ]
    tsv_file = tmp_path / "a.tsv"
    tsv_file.write_text("filename\tevent_labels\nv1\tSpeech,Dog\n")
    assert read_table(tsv_file, ("filename",), "\t") == [
        (f"{tsv_file}:2", {"filename": "v1", "event_labels": "Speech,Dog"})
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"a.tsv: empty file; expected a tab-separated header naming id, label"),
        ("# note\nid\tother\n", r"a.tsv:2: header \['id', 'other'\] lacks column\(s\) \['label'\] \(tab-separated"),
        ("id\tlabel\nx\n", r"a.tsv:2: expected 2 tab-separated fields, got 1"),
    ],
)
def test_read_table_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "a.tsv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_table(path, ("id", "label"), "\t")


def test_lines_integers_and_json(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffa\r\n\n  \nb\n".encode())
    assert list(text_lines(path)) == [(1, "a"), (4, "b")]
    assert parse_int("3.0", "f:1", "onset", 0, 10) == 3
    for bad in ("3.5", "11", "nan", "x"):
        with pytest.raises(DataError, match=f"f:1: field 'onset': expected an integer in 0..10, got '{bad}'"):
            parse_int(bad, "f:1", "onset", 0, 10)
    path.write_text('{\n  "a": 1,\n}\n')
    with pytest.raises(DataError, match=r"t.txt:3: invalid JSON"):
        read_json(path)
    with pytest.raises(DataError, match="absent.json: file not found"):
        read_json(tmp_path / "absent.json")


def test_scorers_and_readers_import_without_torch() -> None:
    code = "import sys, avlearn.metrics, avlearn.data.datasets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

"""The classify and retrieve reports and predict helpers: confusion plot, ranking page and plot, clip folder."""

from __future__ import annotations

import numpy as np
import pytest

from avlearn.engine.clips import clip_files
from avlearn.errors import DataError
from avlearn.viz.classification import plot_confusion
from avlearn.viz.retrieval import plot_ranking, write_ranking_html


def test_confusion_and_ranking_plots_are_pngs(tmp_path):
    path = plot_confusion(tmp_path / "c.png", np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), ["a", "b", "c"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    ranked = [[("x", frame, True), ("y", frame, False)], [("y", frame, True)]]
    assert plot_ranking(tmp_path / "r.png", ["q <1>", "q2"], ranked).read_bytes()[:4] == b"\x89PNG"


def test_ranking_page_lists_each_query_and_its_clips_with_inline_frames(tmp_path):
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    page = write_ranking_html(tmp_path / "r.html", ["a <b>"], [[("x.mp4", 0.5, frames), ("y.mp4", 0.25, frames)]])
    text = page.read_text()
    assert "a &lt;b&gt;" in text and text.index("x.mp4") < text.index("y.mp4")
    assert text.count("data:image/png;base64,") == 4 and "(0.250)" in text


def test_clip_files_are_the_folder_videos_sorted_and_none_is_an_error(tmp_path):
    for name in ("b.mp4", "a.MKV", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in clip_files(tmp_path)] == ["a.MKV", "b.mp4"]
    with pytest.raises(DataError, match="folder of video clips"):
        clip_files(tmp_path / "missing")

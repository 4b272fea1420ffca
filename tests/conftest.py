"""Shared fixtures: a small AVSynth folder (made once per session) and the path of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_synth_config():
    from avlearn.data.synth import SynthConfig

    return SynthConfig(clips=12, seed=3, num_classes=5, size=32, seconds=10, fps=2, avs_clips=4, avqa_clips=4)


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory, small_synth_config) -> Path:
    """AVSynth with every subset, tiny: 12 event clips, 4 S4, 4 MS3, 4 AVQA clips at 32x32."""
    from avlearn.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "avsynth", small_synth_config, workers=1)

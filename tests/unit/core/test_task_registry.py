"""A task registers with its pipeline, AVSynth part and report; a component package registers every file in it."""

from __future__ import annotations

import sys

import pytest

from avlearn.errors import ConfigError
from avlearn.registry import Registry, TaskRegistry, TaskSpec, register_package


def _pipeline(cfg, audio_pre):  # noqa: ANN001, ANN202
    return None


def test_spec_per_name_and_a_taken_name_keeps_its_spec():
    tasks = TaskRegistry("task")

    @tasks.register("seg_a", pipeline=_pipeline, synth_part="avs", report="A")
    @tasks.register("seg_b", pipeline=_pipeline)
    class Seg:
        """Segmentation."""

    assert tasks.get("seg_a") is tasks.get("seg_b") is Seg
    assert tasks.spec("seg_a") == TaskSpec(_pipeline, "avs", "A")
    assert tasks.spec("seg_b") == TaskSpec(_pipeline, "events", None)
    with pytest.raises(KeyError, match="already registered"):
        tasks.register("seg_a", synth_part="avqa")(type("Other", (), {}))
    assert tasks.spec("seg_a").synth_part == "avs"
    with pytest.raises(ConfigError, match="unknown task 'seg_c'.*Registered tasks: seg_a, seg_b"):
        tasks.spec("seg_c")


def test_register_package_imports_every_module_of_the_folder(tmp_path, monkeypatch):
    kinds = Registry("kind")
    package = tmp_path / "plugins_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("one", "two"):
        module = f"from {__name__} import KINDS\n\n@KINDS.register('{name}')\nclass X: ...\n"
        (package / f"{name}.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "KINDS", kinds, raising=False)
    import plugins_for_test

    register_package("plugins_for_test", plugins_for_test.__path__)
    assert kinds.names() == ["one", "two"]

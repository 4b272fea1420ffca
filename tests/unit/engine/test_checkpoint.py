"""Checkpoints never unpickle: tampered, truncated or pickled files are refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_toy import make_task, parameters
from torch.testing import assert_close

from avlearn.engine.checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from avlearn.files import atomic_write_bytes


class Payload:
    """An object whose unpickling runs code: it creates the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "ran"))


@pytest.fixture
def checkpoint(tmp_path):
    task = make_task()
    folder = save_checkpoint(tmp_path / "ckpt", {"epoch": 3}, {"model": task.state_dict()})
    return folder, task


def test_round_trip_keeps_tensors_and_meta(checkpoint):
    folder, task = checkpoint
    tensors, meta = load_checkpoint(folder)
    assert_close(tensors["model"], parameters(task))
    assert meta["epoch"] == 3 and set(meta["files"]) == {"model"}


def test_tied_weights_are_saved(tmp_path):
    linear = torch.nn.Linear(4, 4)
    tied = torch.nn.ModuleDict({"a": linear, "b": torch.nn.Linear(4, 4)})
    tied["b"].weight = linear.weight  # safetensors refuses shared storage unless we copy
    tensors, _ = load_checkpoint(save_checkpoint(tmp_path / "tied", {}, {"model": tied.state_dict()}))
    assert torch.equal(tensors["model"]["a.weight"], tensors["model"]["b.weight"])


def test_a_changed_weights_file_is_refused(checkpoint):
    folder, _ = checkpoint
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF  # one byte of the last tensor: still a valid safetensors file
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors: SHA-256 .* differs .* \(tampered or corrupted\)"):
        load_checkpoint(folder)


def test_a_pickle_in_place_of_the_weights_is_refused_without_running_it(checkpoint, tmp_path):
    folder, _ = checkpoint
    path = folder / "model.safetensors"
    torch.save({"x": Payload(tmp_path / "ran")}, path)
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["files"]["model"] = __import__("hashlib").sha256(path.read_bytes()).hexdigest()  # a consistent forgery
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(folder)
    assert not (tmp_path / "ran").exists()


def test_a_damaged_json_or_missing_file_is_a_clear_error(checkpoint, tmp_path):
    folder, _ = checkpoint
    with pytest.raises(CheckpointError, match="holds no 'optimizer' tensors"):
        load_checkpoint(folder, ("model", "optimizer"))
    (folder / "checkpoint.json").write_text('{"files": ')
    with pytest.raises(CheckpointError, match="checkpoint.json: not valid JSON"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path)


def test_pickled_pt_with_code_is_refused_and_never_runs(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Payload(tmp_path / "ran")}, path)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused: it holds pickled Python objects besides tensors"):
        load_weights(path)
    assert not (tmp_path / "ran").exists()
    torch.load(path, weights_only=False)  # what the refusal prevents: a plain unpickle runs the payload
    assert (tmp_path / "ran").read_text() == "ran"


def test_plain_pt_state_dicts_load_with_weights_only(tmp_path):
    task = make_task()
    path = tmp_path / "weights.pth"
    torch.save({"model": {f"module.{k}": v for k, v in task.state_dict().items()}, "epoch": 4}, path)
    assert_close(load_weights(path), parameters(task))  # nesting and the DDP prefix are undone


def test_weights_from_a_checkpoint_folder_or_safetensors_file(checkpoint, tmp_path):
    folder, task = checkpoint
    assert_close(load_weights(folder), parameters(task))
    atomic_write_bytes(tmp_path / "w.safetensors", (folder / "model.safetensors").read_bytes())
    assert_close(load_weights(tmp_path / "w.safetensors"), parameters(task))
    with pytest.raises(CheckpointError, match="unknown weights format"):
        (tmp_path / "w.npz").write_bytes(b"")
        load_weights(tmp_path / "w.npz")

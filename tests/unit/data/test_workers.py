"""Worker processes die with their parent: kill -9 of ``avlearn extract`` or of a training loader leaves none behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from avlearn.io import write_video

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")

SLOW_LOADER = textwrap.dedent(
    """
    import time
    from torch.utils.data import DataLoader, Dataset
    from avlearn.data.parallel import worker_init

    class Slow(Dataset):
        def __len__(self):
            return 10_000
        def __getitem__(self, i):
            time.sleep(0.05)
            return i

    for _ in DataLoader(Slow(), batch_size=4, num_workers=2, worker_init_fn=worker_init()):
        pass
    """
)


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, then the parent pid)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            state, parent = _stat(int(entry.name))[:2]
        except OSError:
            continue
        if int(parent) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def _kill_and_check(cmd: list[str], workers: int) -> None:
    """Start ``cmd``, wait for its ``workers`` children, SIGKILL it, and check that no child outlives it by 10 s."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, children = time.monotonic() + 120, []
    while time.monotonic() < deadline and len(children) < workers and proc.poll() is None:
        time.sleep(0.1)
        children = _children(proc.pid)
    assert len(children) >= workers and proc.poll() is None, "it finished or started no worker before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    survivors = [pid for pid in children if _alive(pid)]
    for pid in survivors:  # do not leave them running after a failure
        os.kill(pid, signal.SIGKILL)
    assert not survivors


def test_kill_9_of_extract_leaves_no_worker_behind(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (40, 64, 64, 3), dtype=np.uint8)
    write_video(videos / "v0.mp4", frames, 8, np.zeros(5 * 16000, np.float32), 16000)
    for i in range(1, 400):  # enough work to be caught mid-run
        (videos / f"v{i}.mp4").symlink_to(videos / "v0.mp4")
    _kill_and_check([sys.executable, "-m", "avlearn", "extract", str(videos), "--out", str(tmp_path / "store"),
                     "--workers", "2", "--no-progress", "--size", "32"], workers=2)  # fmt: skip


def test_kill_9_of_a_training_loader_leaves_no_worker_behind() -> None:
    _kill_and_check([sys.executable, "-c", SLOW_LOADER], workers=2)

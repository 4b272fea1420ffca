"""What a run reports, on rank 0 only: a progress bar, ``metrics.jsonl``, TensorBoard, a final summary table.

``metrics.jsonl`` (always) has one JSON object per line: ``{"kind": "step", "step", "epoch", "loss", "lr",
"grad_norm", "samples_per_s"}`` plus each ``"loss_<name>"`` term the task reports (its own and the method's, averaged
over the global batch like the loss; fp16: also ``"loss_scale", "skipped"``) every ``train.log_every`` steps,
``{"kind": "epoch", "epoch", "step", "train_loss", "lr", "seconds"}`` after each epoch (with ``"val_<metric>"``
and ``"best"`` when validated there, ``train.val_every=0``) and ``{"kind": "val", "step", "epoch",
"val_<metric>", "best"}`` for each validation every ``train.val_every`` steps. TensorBoard event files go to
``tensorboard/`` when the ``tensorboard`` package is importable (it is not a dependency; ``pip install
tensorboard`` to get them). A resumed run first drops the lines written after its checkpoint, so the file reads
as if the run had never stopped.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class MetricsLog:
    """Append-only JSONL (+ optional TensorBoard) in the run folder; does nothing when ``enabled`` is False."""

    path: Path
    enabled: bool = True
    writer: Any = None

    @classmethod
    def open(cls, run_dir: Path, enabled: bool, resume_step: int | None = None) -> MetricsLog:
        """The run's log; on resume, lines of steps after ``resume_step`` are removed first."""
        log = cls(Path(run_dir) / "metrics.jsonl", enabled)
        if enabled:
            log.path.parent.mkdir(parents=True, exist_ok=True)
        if enabled and resume_step is not None and log.path.is_file():
            kept = [line for line in log.path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
            log.path.write_text("".join(f"{line}\n" for line in kept))
        if enabled and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            log.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)
        return log

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (and its numbers to TensorBoard under ``<kind>/<key>``)."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("kind", "step"):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def progress(total: int, initial: int, desc: str, enabled: bool):  # noqa: ANN201 (tqdm, imported lazily)
    """A progress bar over optimizer steps (ETA from tqdm; the loop adds loss, lr and samples/s)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True,
                leave=False)  # fmt: skip


def summary_table(history: Iterable[dict[str, Any]], metric: str) -> str:
    """One row per epoch: train loss, validation score (``*`` = best so far), learning rate, seconds."""
    rows = [f"{'epoch':>5}  {'step':>7}  {'train loss':>10}  {'val ' + metric:>22}  {'lr':>8}  {'seconds':>7}"]
    for r in history:
        mark = " *" if r.get("best") else "  "
        score = f"{r['val_' + metric]:>20.2f}" if "val_" + metric in r else f"{'-':>20}"  # not validated then
        rows.append(
            f"{r['epoch']:>5}  {r['step']:>7}  {r['train_loss']:>10.4f}  {score}{mark}  {r['lr']:>8.1e}  "
            f"{r['seconds']:>7.1f}"
        )
    return "\n".join(rows)

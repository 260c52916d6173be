"""Callbacks that the runner adds to every run."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L


class TimeToQuality(L.Callback):
    """Write `curve.csv`: validation metrics against seconds spent training (validation time excluded).

    One row per validation: train_seconds, epoch, step (batches trained), then every logged `val/*` metric. The clock is
    kept in checkpoints, so a resumed run continues its curve where it stopped.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.train_seconds = 0.0
        self._started: float | None = None

    def on_train_epoch_start(self, trainer, module) -> None:
        self._started = time.perf_counter()

    def on_validation_start(self, trainer, module) -> None:
        self._pause()

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            self._started = time.perf_counter()
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["train_seconds", "epoch", "step", *sorted(metrics)])
            writer.writerow(
                [f"{self.train_seconds:.1f}", trainer.current_epoch, module.batch_index, *(f"{metrics[k]:.6f}" for k in sorted(metrics))]
            )
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._pause()

    def _pause(self) -> None:
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started
            self._started = None

    def state_dict(self) -> dict:
        return {"train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds = state.get("train_seconds", 0.0)

"""Callbacks that the runner adds to every run."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
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


class Preemption(L.Callback):
    """SLURM preemption (`#SBATCH --signal=SIGUSR1@90`): on SIGUSR1, checkpoint at the next batch boundary
    (so the checkpoint is consistent: no half-done step, `ResumableLoader` skips exactly the batches done),
    ask SLURM to requeue the job, and exit. The requeued job runs the same command and the runner resumes
    from the run folder's `hpc_ckpt_*.ckpt` without --resume. Replaces Lightning's own SIGUSR1 handler,
    which saves wherever the signal lands, mid-step included. Under DDP the ranks agree on the flag first."""

    def __init__(self, folder: Path, signum: int = signal.SIGUSR1):
        self.folder, self.signum, self.requested = Path(folder), signum, False

    def on_train_start(self, trainer, module) -> None:
        with contextlib.suppress(ValueError):  # not the main thread (fit called from a thread): no preemption handling
            signal.signal(self.signum, self._request)

    def _request(self, signum, frame) -> None:
        self.requested = True

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        trainer.save_checkpoint(self.folder / f"hpc_ckpt_{len(list(self.folder.glob('hpc_ckpt_*.ckpt'))) + 1}.ckpt")
        if trainer.is_global_zero:
            job = os.environ.get("SLURM_JOB_ID", "")
            if os.environ.get("SLURM_ARRAY_JOB_ID"):
                job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            if job:
                subprocess.run(["scontrol", "requeue", job], check=False)
            print(f"preempted: checkpoint saved in {self.folder}; requeue of SLURM job {job or '(none)'} requested", flush=True)
        raise SystemExit(0)

    def on_train_end(self, trainer, module) -> None:
        with contextlib.suppress(ValueError):
            signal.signal(self.signum, signal.SIG_DFL)

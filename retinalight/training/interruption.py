"""Stopping a command without changing its result: SIGUSR1 (SLURM's warning before preemption,
`#SBATCH --signal=SIGUSR1@90`), SIGTERM (a time limit, `docker stop`, `kill`) and SIGINT (Ctrl-C).

One handler stands from the start of `fit` to its end (`handling_signals`). A signal only raises a flag; the
work stops at the next safe point, so nothing is ever saved half-done:
- while training, at the next batch boundary: `Interruption` saves `hpc_ckpt_<n>.ckpt` in the run folder,
  from which the same command continues exactly (the loader skips the batches done, every step reseeds);
- while testing, before the next test image; between runs, before the next one starts (a run that had
  finished training tests again, from its checkpoint).
Under SLURM (SLURM_JOB_ID set), SIGUSR1 and SIGTERM also ask SLURM to requeue the job. The command then
raises `Interrupted`, which `retinalight.cli.run_main` turns into one line and exit status 128 + the signal
number. A second Ctrl-C stops at once (KeyboardInterrupt; the last epoch's checkpoint is kept).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import lightning as L

from retinalight.errors import Interrupted
from retinalight.rundirs import next_interruption_checkpoint

SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
_received: list[int] = []  # the first signal received by this process (at most one entry)
_handling: list[bool] = []  # non-empty inside `handling_signals`: only then are handlers (re)installed


def _flag(signum: int, frame) -> None:
    if signum == signal.SIGINT and signal.SIGINT in _received:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now
    if not _received:
        _received.append(signum)


def received() -> int | None:
    """The signal this command was asked to stop by, if any."""
    return _received[0] if _received else None


def install() -> None:
    """(Re)install the flag handler inside `handling_signals` (Lightning replaces the SIGTERM handler while it
    fits); outside it (retinalight used as a library) the process keeps its own handlers."""
    if _handling and threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _flag)


@contextlib.contextmanager
def handling_signals():
    """Flag SIGUSR1, SIGTERM and SIGINT for the duration (the whole command), then restore the handlers."""
    if threading.current_thread() is not threading.main_thread():  # fit called from a thread: no signal handling
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _received.clear()
    _handling.append(True)
    install()
    try:
        yield
    finally:
        _handling.pop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


def slurm_job() -> str | None:
    """This SLURM job's id as `scontrol requeue` takes it (array jobs: <array id>_<task id>)."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


def stop(stage: str, signum: int | None = None, rank: int = 0) -> None:
    """Raise `Interrupted` for the received signal, after asking SLURM to requeue (rank 0, SIGUSR1/SIGTERM)."""
    own = received()
    signum = signum or own or signal.SIGTERM
    job = slurm_job() if signum in (signal.SIGUSR1, signal.SIGTERM) else None
    if job and rank == 0:
        subprocess.run(["scontrol", "requeue", job], check=False)
    raise Interrupted(signum, stage, job if rank == 0 else None, rank=rank, received=own is not None, job=job)


def check(stage: str) -> None:
    """Stop here if a signal was received (a safe point outside training)."""
    if received():
        stop(stage)


def checked(items: Iterable, stage: str) -> Iterator:
    """`items`, checking for a signal before each one (e.g. test images)."""
    for item in items:
        check(stage)
        yield item


class Interruption(L.Callback):
    """Act on a flagged signal at the next training batch boundary: save `hpc_ckpt_<n>.ckpt` (consistent:
    no half-done step; `ResumableLoader` then skips exactly the batches done), then `stop`. Replaces
    Lightning's own handlers (its SIGUSR1 requeue saves wherever the signal lands, mid-step included; its
    SIGTERM ends the fit with exit status 0). Under DDP the ranks agree on the flag first."""

    def __init__(self, folder: Path, what: str):
        self.folder, self.what = Path(folder), what

    def on_train_start(self, trainer, module) -> None:
        install()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if not trainer.strategy.reduce_boolean_decision(received() is not None, all=False):
            return
        path = next_interruption_checkpoint(self.folder)
        partial = self.folder / ".checkpoint.partial"  # not hpc_ckpt_*: Lightning's "hpc" resume would count it
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, path)  # a kill during the save leaves no half checkpoint
        stop(f"while training {self.what} (batch {module.batch_index}, checkpoint {path.name})", rank=trainer.global_rank)

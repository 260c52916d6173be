"""Typed errors. Every command turns a `RetinalightError` into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable


class RetinalightError(Exception):
    """Base class: an input problem a user can fix (bad file, bad config, unknown name)."""


class DatasetNotFoundError(RetinalightError):
    """A dataset folder is missing under the data root."""


class DataFileError(RetinalightError):
    """One data file is missing, corrupt, of the wrong size or not binary where it must be."""


class ConfigError(RetinalightError):
    """An experiment file or override is invalid (unknown key, wrong type, bad value)."""


class UnknownNameError(RetinalightError, KeyError):
    """A name (model, experiment, dataset, arm) is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def close_matches(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix listing the nearest valid names, or '' when none is close."""
    near = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(near)}?)" if near else ""


class Interrupted(BaseException):
    """The command stopped at a safe point after a signal. A BaseException: the runner's per-run error
    handling (which keeps other runs going after a crash) must not swallow it."""

    def __init__(self, signum: int, stage: str, requeued: str | None = None, rank: int = 0, received: bool = True, job: str | None = None):
        super().__init__(signum, stage, requeued)
        self.signum, self.stage, self.requeued = signum, stage, requeued
        self.rank, self.received, self.job = rank, received, job

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        """What happened to this process: under DDP only rank 0 requeues, and a rank may stop for a signal
        that reached another one."""
        if self.requeued:
            then = f"SLURM job {self.requeued} requeued: it runs the same command and continues"
        elif self.job:
            then = f"rank 0 requeues SLURM job {self.job}; this rank asked nothing of SLURM"
        else:
            then = "run the same command again to continue (complete runs are reused, this one resumes where it stopped)"
        who = f"rank {self.rank}: " if self.rank else ""
        cause = (
            f"interrupted by {signal.Signals(self.signum).name}"
            if self.received
            else "stopped with the other ranks (a signal reached one of them)"
        )
        return f"{who}{cause} {self.stage}; {then}"

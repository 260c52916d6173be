"""Where a number came from: commit, device, versions, command; written next to every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from retinalight.hardware import hardware_info, hardware_label

COMMIT_ENV = "RETINALIGHT_COMMIT"


def git_commit(where: Path = Path(__file__).parent) -> str:
    """Short commit of the checkout at `where`, "+dirty" when tracked files differ from it. Changes under
    results/ do not count: completing a committed table (`--runs results`) rewrites its summaries there.
    $RETINALIGHT_COMMIT names it where there is no checkout (a copy of the tree on a cluster or GPU machine)."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    """Commit, hardware (class, CPU model and capability or GPU: `retinalight.hardware`), versions, command."""
    hardware = hardware_info()
    return {
        "commit": git_commit(),
        "device": hardware_label(hardware),
        "hardware": hardware,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": command_line(),
    }


def command_line() -> str:
    """The command as typed: `python -m retinalight.<entry point> args` when run as a module of this package."""
    script = Path(sys.argv[0]) if sys.argv else Path()
    package = Path(__file__).parent
    if script.suffix == ".py" and script.is_relative_to(package):  # a module, or a subpackage's __main__.py
        module = script.relative_to(package).with_suffix("").parts
        name = ".".join(["retinalight", *(module[:-1] if module[-1] == "__main__" else module)])
        return " ".join(["python", "-m", name, *sys.argv[1:]])
    return " ".join(sys.argv)

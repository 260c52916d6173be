"""Run folders: where a run lives, whether it is the config asked for, whether it is complete, who runs it.

runs/<exp>/<arm>/<profile>-<config hash>/seed<k>/ holds config.yaml, checkpoints/ (last.ckpt, best.ckpt),
logs/, curve.csv, predictions/, trained.json (training finished; testing may not have), metrics.json
(written last: the run is complete) and per_image.csv; further tests of the same weights in folders of
their own (`evaluation_name`: tta-flips/, on-chase_db1/, each with metrics.json, per_image.csv and
predictions/); hpc_ckpt_<n>.ckpt while a run stopped by a signal
waits to continue, and .lock while a process runs it. Light to import (no Lightning): summaries and
reports read run folders too.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import time
from pathlib import Path

import yaml

from retinalight.errors import RetinalightError
from retinalight.experiments import RunConfig, config_differences


def config_folder(experiment_root: Path, arm: str, profile: str, config_hash: str) -> Path:
    """runs/<exp>/<arm>/<profile>-<config hash>/: the seeds of one resolved config, and only of it."""
    return Path(experiment_root) / arm / f"{profile}-{config_hash}"


def config_dir(runs_root: Path, config: RunConfig) -> Path:
    return config_folder(Path(runs_root) / config.experiment, config.arm, config.profile, config.config_hash())


def run_dir(runs_root: Path, config: RunConfig) -> Path:
    return config_dir(runs_root, config) / f"seed{config.seed}"


def check_identity(folder: Path, config: RunConfig) -> None:
    """A folder's stored config must be this config: otherwise name the keys that differ (a folder renamed
    or edited by hand, or a hash collision) rather than reuse or resume it."""
    stored = folder / "config.yaml"
    if not stored.is_file():
        return
    try:
        old = RunConfig.identity_of(yaml.safe_load(stored.read_text()))
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        raise RetinalightError(f"{stored}: unreadable run config; move the folder away or pass --overwrite") from None
    differences = config_differences(old, config.identity())
    if differences:
        raise RetinalightError(f"{folder} holds a different config ({'; '.join(differences[:3])}); pass --overwrite to replace it")


def evaluation_name(tta: str = "none", dataset: str | None = None, scale: str = "fov") -> str:
    """The name of one test of a run's weights: '' for its plain test; tta-<mode> under test-time augmentation
    (`evaluation.tta`); on-<dataset> on another dataset's test split, scale-normalised, or on-<dataset>-native
    at that dataset's own scale (`evaluation.datasets`, `evaluation.scale`)."""
    parts = [f"on-{dataset}" + ("-native" if scale == "none" else "")] if dataset else []
    return "-".join(parts + ([f"tta-{tta}"] if tta != "none" else []))


def evaluation_dir(folder: Path, name: str = "") -> Path:
    """Where the test `name` (`evaluation_name`) of a run lives: the run folder itself for the plain test, a
    folder of that name in it otherwise, so no test overwrites another nor is read for it."""
    return Path(folder) / name if name else Path(folder)


def is_complete(folder: Path, name: str = "") -> bool:
    return (evaluation_dir(folder, name) / "metrics.json").is_file()


def write_json(path: Path, data: dict) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def write_per_image(path: Path, results: dict) -> None:
    """per_image.csv: protocol, id and every metric of each test image (pixel metrics, then the topology
    ones where the result has them), for each protocol's result."""
    from retinalight.metrics.segmentation import METRICS
    from retinalight.metrics.topology import TOPOLOGY

    rows = [(protocol, row) for protocol, result in results.items() for row in result["per_image"]]
    columns = [*METRICS, *(k for k in TOPOLOGY if rows and all(k in row for _, row in rows))]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["protocol", "id", *columns])
        for protocol, row in rows:
            writer.writerow([protocol, row["id"], *(f"{row[k]:.6f}" for k in columns)])


def interruption_checkpoints(folder: Path) -> list[Path]:
    """The run's `hpc_ckpt_<n>.ckpt` (saved at a batch boundary when a signal stopped it), by n; Lightning's
    name, so its own "hpc" lookup would find them too."""
    return sorted(folder.glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rpartition("_")[2] or 0))


def latest_interruption_checkpoint(folder: Path) -> Path | None:
    saved = interruption_checkpoints(folder)
    return saved[-1] if saved else None


def next_interruption_checkpoint(folder: Path) -> Path:
    latest = latest_interruption_checkpoint(folder)
    return folder / f"hpc_ckpt_{int(latest.stem.rpartition('_')[2]) + 1 if latest else 1}.ckpt"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def run_lock(folder: Path, rank: int = 0):
    """Hold `<folder>/.lock` (host and process id) while the run trains and tests: a second `fit` of the
    same run refuses in one line instead of training into the same folder. A lock whose process is gone
    (same host; a kill -9) is taken over. Only rank 0 locks: the other DDP ranks share its run."""
    if rank != 0:
        yield
        return
    lock, host = folder / ".lock", socket.gethostname()
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock.read_text().split() if lock.is_file() else []
            if len(holder) == 2 and holder[0] == host and holder[1].isdigit() and not process_alive(int(holder[1])):
                lock.unlink(missing_ok=True)  # stale: its process died without releasing it
                continue
            who = f"process {holder[1]} on {holder[0]}" if len(holder) == 2 else "another process"
            raise RetinalightError(
                f"{folder}: {who} is running this run (lock {lock.name}); wait for it to finish, or delete {lock} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{host} {os.getpid()}\n")
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # an unwritable folder: the lock goes stale, and the next fit takes it over
            lock.unlink(missing_ok=True)


def launch_id() -> str | None:
    """Names this multi-process launch when its ranks start together (srun, torchrun); None when they
    cannot race (one process, or Lightning's launcher, which starts ranks > 0 from inside rank 0's fit)."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        env = os.environ
        return f"slurm-{env['SLURM_JOB_ID']}-{env.get('SLURM_STEP_ID', '0')}-{env.get('SLURM_RESTART_COUNT', '0')}"
    return None


def clear_run(folder: Path, rank: int, launch: str | None = None, timeout: float = 600.0) -> None:
    """--overwrite without a race: rank 0 deletes the run folder and then leaves a marker; ranks started
    together with it (`launch_id`) wait for the marker before they look at the folder."""
    import shutil

    launch = launch if launch is not None else launch_id()
    marker = folder.parent / f".overwritten-{folder.name}-{launch}"
    if rank == 0:
        if folder.exists():
            shutil.rmtree(folder)
        if launch:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        return
    if not launch:
        return
    start = time.time()
    while not marker.exists():
        if time.time() - start > timeout:
            raise RetinalightError(f"{folder}: rank 0 did not clear the run within {timeout:.0f} s (--overwrite)")
        time.sleep(0.2)

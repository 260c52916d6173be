"""Cluster jobs: the command lines of the templates in cluster/ (preemption and signals: test_resume.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def _launched(template: Path, tmp_path: Path, extra_env: dict | None = None) -> list[list[str]]:
    """Run a template with srun/torchrun/wandb stubbed: the argument lists they were called with."""
    bin_dir = tmp_path / "stubs"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "launched.txt"
    for tool in ("srun", "torchrun", "wandb"):
        (bin_dir / tool).write_text(f'#!/bin/bash\n{{ echo "{tool}"; printf "%s\\n" "$@"; echo "--end--"; }} >> {log}\n')
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **(extra_env or {})}
    args = ["ENTITY/PROJECT/abc123"] if template.name == "wandb_agent.sbatch" else []
    result = subprocess.run(["bash", str(template), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = [block.strip("\n").split("\n") for block in log.read_text().split("--end--") if block.strip()]
    log.unlink()
    return calls


def _fit_args(call: list[str]) -> list[str]:
    """The arguments after `-m retinalight.fit` in a launcher's command line."""
    start = call.index("retinalight.fit")
    assert call[start - 1] == "-m"
    return call[start + 1 :]


def test_every_template_launches_a_valid_fit_command(tmp_path):
    from retinalight.fit import load_from_args, parse_args

    templates = sorted(p for p in CLUSTER.iterdir() if p.suffix in (".sbatch", ".sh"))
    assert {p.name for p in templates} >= {
        "slurm_1node.sbatch",
        "slurm_multinode.sbatch",
        "slurm_array.sbatch",
        "wandb_agent.sbatch",
        "torchrun.sh",
    }
    for template in templates:
        if template.name == "slurm_array.sbatch":
            continue
        (call,) = _launched(template, tmp_path)
        if call[0] == "wandb":
            assert call[1:] == ["agent", "--count", "1", "ENTITY/PROJECT/abc123"]
            continue
        args = parse_args(_fit_args(call))
        experiment = load_from_args(args)
        config = experiment.run_config(args.arm[0], args.seeds[0])
        if "--nodes=2" in template.read_text():
            assert config.trainer.num_nodes == 2 and config.trainer.devices == 4


def test_array_template_maps_task_ids_to_every_arm_and_seed(tmp_path):
    from retinalight.fit import load_from_args, parse_args

    seen = set()
    for task in range(15):
        (call,) = _launched(CLUSTER / "slurm_array.sbatch", tmp_path, {"SLURM_ARRAY_TASK_ID": str(task)})
        args = parse_args(_fit_args(call))
        load_from_args(args)
        seen.add((args.arm[0], args.seeds[0]))
    assert seen == {(arm, seed) for arm in ("unet", "unet_sa", "sd_unet", "backbone", "sa_unet") for seed in range(3)}


def test_overwrite_under_ddp_cannot_race(tmp_path):
    """Ranks started together (srun): rank 1 waits until rank 0 has deleted the old run, then finds it gone."""
    import threading

    from retinalight.rundirs import clear_run

    folder = tmp_path / "unet" / "paper-abc" / "seed0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    seen = {}

    def rank1():
        clear_run(folder, rank=1, launch="slurm-7-0-0", timeout=30)
        seen["complete_after_wait"] = (folder / "metrics.json").exists()

    waiter = threading.Thread(target=rank1)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # still waiting: rank 0 has not cleared the folder yet
    clear_run(folder, rank=0, launch="slurm-7-0-0")
    waiter.join(timeout=10)
    assert not waiter.is_alive() and seen["complete_after_wait"] is False

"""The GPU machine's preparation, checked on the CPU: the wheel bundle's completeness check, the run script's
scheduler and deadline, and the whole script rehearsed (cluster/gpu_bundle.py, cluster/gpu_run.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retinalight.experiments import load_experiment

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "cluster" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_bundle = load_script("gpu_bundle")
gpu_run = load_script("gpu_run")


def fake_wheels(folder: Path, wanted: dict[str, str], tag: str = "py3-none-any") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in wanted.items():
        (folder / f"{name.replace('-', '_')}-{version}-{tag}.whl").write_bytes(b"0" * 100)


def test_bundle_needs_what_the_gpu_machine_lacks():
    """Followed from retinalight's requirements at the installed versions, less the machine's packages and wandb."""
    wanted = gpu_bundle.needed("3.12", gpu_bundle.machine_packages())
    assert {"albumentations", "albucore", "pydantic", "pydantic-core", "segmentation-models-pytorch"} <= set(wanted)
    assert not {"torch", "lightning", "numpy", "opencv-python-headless", "wandb", "retinalight"} & set(wanted)
    assert wanted["albumentations"] == "2.0.8"


def test_bundle_check_names_what_is_missing_doubled_or_foreign(tmp_path):
    wanted = {"albumentations": "2.0.8", "pydantic": "2.13.4", "pydantic-core": "2.46.4"}
    fake_wheels(tmp_path / "ok", wanted)
    lines = gpu_bundle.check_bundle(tmp_path / "ok", "3.12", wanted)
    assert lines[-1].startswith("complete for CPython 3.12 manylinux x86_64: 3 distributions")
    fake_wheels(tmp_path / "short", {k: v for k, v in wanted.items() if k != "pydantic"})
    with pytest.raises(gpu_bundle.BundleError, match=r"missing pydantic==2\.13\.4 \(") as missing:
        gpu_bundle.check_bundle(tmp_path / "short", "3.12", wanted)
    assert "\n" not in str(missing.value)
    fake_wheels(tmp_path / "foreign", {"pydantic-core": "2.46.4"}, "cp311-cp311-manylinux_2_17_x86_64")
    with pytest.raises(gpu_bundle.BundleError, match="not installable on CPython 3.12"):
        gpu_bundle.check_bundle(tmp_path / "foreign", "3.12", wanted)
    fake_wheels(tmp_path / "twice", {**wanted})
    fake_wheels(tmp_path / "twice", {"pydantic": "2.12.0"})
    with pytest.raises(gpu_bundle.BundleError, match="pydantic: two wheels"):
        gpu_bundle.check_bundle(tmp_path / "twice", "3.12", wanted)


def test_bundle_command_is_one_line_on_an_incomplete_folder(tmp_path):
    """The CLI's --check on a folder that lacks the needed wheels: exit 2, one line naming them."""
    fake_wheels(tmp_path / "wheels", {"albumentations": "2.0.8"})
    out = subprocess.run(
        [sys.executable, str(REPO / "cluster" / "gpu_bundle.py"), str(tmp_path / "wheels"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "missing" in out.stderr and "pydantic==" in out.stderr


def test_run_script_refuses_wheels_for_another_python(tmp_path):
    """Not a rehearsal, wheels built for another Python than this one: one line, exit 2, before anything runs."""
    other = "cp39-cp39-manylinux_2_17_x86_64" if sys.version_info[:2] != (3, 9) else "cp310-cp310-manylinux_2_17_x86_64"
    fake_wheels(tmp_path / "wheels", {"pydantic-core": "2.46.4"}, other)
    code = gpu_run.main(["--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")])
    log = (tmp_path / "out" / "gpu-run.log").read_text().splitlines()
    assert code == 2 and len(log) == 1 and "does not install on this Python" in log[0]


def test_run_slots_runs_in_order_and_stops_at_the_deadline(tmp_path):
    """Two slots: the quick jobs finish, the long one gets SIGTERM at the deadline, one that ignores it is
    killed after the grace period, and the job still waiting is never started (the loop ends)."""
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)",
    ]
    quick = [sys.executable, "-c", "pass"]
    jobs = {"quick": quick, "long": sleep, "stubborn": stubborn, "never": quick}
    log = gpu_run.Log(tmp_path / "log.txt")
    started = time.monotonic()
    codes = gpu_run.run_slots(jobs, 2, deadline=4.0, log=log, env=None, logs=tmp_path, grace=2.0)
    assert time.monotonic() - started < 12
    assert codes == {"quick": 0, "long": -15, "stubborn": -9, "never": None}
    text = (tmp_path / "log.txt").read_text()
    assert "not started: never" in text and "stubborn still running 2 s after SIGTERM: killed" in text


def test_a_runs_identity_ignores_how_many_loader_processes_feed_it(monkeypatch):
    """A GPU machine's 8 workers and another's 3 train the same samples: one folder. 0 (a CPU's) keeps the
    hash every committed CPU run has."""
    hashes = {
        n: load_experiment("ablation_drive", "paper", [f"data.num_workers={n}"]).run_config("sa_unet", 0).config_hash() for n in (0, 3, 8)
    }
    assert hashes[3] == hashes[8] != hashes[0]
    monkeypatch.setenv("RETINALIGHT_HARDWARE", "cuda")
    on_gpu = load_experiment("ablation_drive", "paper").run_config("sa_unet", 0)
    assert on_gpu.data.num_workers >= 1 and on_gpu.config_hash() == "bd9087eb"  # results/ablation_drive/sa_unet/paper-bd9087eb


@pytest.mark.slow
def test_rehearsal_runs_every_step_and_writes_what_the_gpu_run_writes(data_root, tmp_path):
    """`cluster/gpu_run.py --rehearse` on this CPU: the five paper arms a few steps each, the five gpu-check
    parts, the summary and the packed outputs, the same files the GPU call returns."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    command = [
        sys.executable,
        str(REPO / "cluster" / "gpu_run.py"),
        "--rehearse",
        "--out",
        str(out),
        "--runs",
        str(runs),
        "--data-root",
        str(data_root),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    names = sorted(p.name for p in out.iterdir())
    label = f"summary-{load_experiment('ablation_drive', 'paper', gpu_run.REHEARSAL_OVERRIDES).label}"
    assert names == sorted(
        ["gpu-check.json", "gpu-run.log", "nvidia-smi.txt", "predictions.tar.gz", "runs.tar.gz", f"{label}.json", f"{label}.md"]
    )
    assert len(names) <= 8 and all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    check = json.loads((out / "gpu-check.json").read_text())
    assert sorted(check["parts"]) == sorted(["training", "ddp", "gan", "inference", "speed"])
    assert all(part["pass"] for part in check["parts"].values()), check["parts"]
    assert check["parts"]["speed"]["figures"]["side"] == 592
    summary = json.loads((out / f"{label}.json").read_text())
    assert sorted(summary["protocols"]["image"]["arms"]) == sorted(load_experiment("ablation_drive", "paper").run_arms)
    assert "every run and check passed" in (out / "gpu-run.log").read_text()


def test_run_script_without_drive_is_one_line(tmp_path):
    """A data root without DRIVE (the folder not carried): one line naming it, exit 2, nothing trained."""
    code = gpu_run.main(
        ["--rehearse", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")]
    )
    last = (tmp_path / "out" / "gpu-run.log").read_text().splitlines()[-1]
    assert code == 2 and "no DRIVE there" in last and str(tmp_path / "nowhere") in last
    assert not (tmp_path / "runs" / "ablation_drive").exists()

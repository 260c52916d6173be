"""An interrupted run ends with the uninterrupted result: preemption (SIGUSR1) at any batch, once or twice,
kill -9 then --resume, SIGTERM and Ctrl-C, a signal while testing or between runs, two `fit` of one run at
once, a runs folder that turns unwritable.

Real DRIVE with the `quick` profiles' warm-up + cosine schedule (the one that reads the training loader
before a checkpoint is restored), in fp32, a few dozen steps; the segmentation module and a GAN arm with
validation during training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from retinalight.errors import Interrupted, RetinalightError
from retinalight.experiments import load_experiment
from retinalight.rundirs import run_dir
from retinalight.training import interruption
from retinalight.training.runner import fit_experiment, fit_run, make_datamodule, train_run

FP32 = ["trainer.precision=32-true", "data.samples_per_epoch=32", "data.batch_size=4"]  # 8 batches per epoch
SEGMENTATION = ("ablation_drive", "quick", "unet", [*FP32, "trainer.max_epochs=3"])
GAN = (
    "retinagan_drive",
    "quick",
    "gan",
    [*FP32, "arms.gan.data.samples_per_epoch=8", "trainer.max_epochs=2", "data.val_count=1", "gan.adversarial_warmup=4"],
)  # 8 whole images an epoch


def config_of(spec):
    experiment, profile, arm, overrides = spec
    return load_experiment(experiment, profile, overrides).run_config(arm, 0)


class SignalAt(Callback):
    """Sends this process `signum` after the given training batches (once each), as SLURM or a user would."""

    def __init__(self, batches, signum=signal.SIGUSR1):
        self.batches, self.signum = set(batches), signum

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.batch_index in self.batches:
            self.batches.discard(module.batch_index)
            os.kill(os.getpid(), self.signum)


class KilledAt(Callback):
    """A kill -9 at a batch: the process ends there and saves nothing more."""

    def __init__(self, batch):
        self.batch = batch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if module.batch_index == self.batch:
            raise RuntimeError("killed")


def train(config, folder: Path, data_root, callbacks=(), resume=False) -> tuple[dict, int]:
    """Train as the same command run again after each stop would (a new process each time: no signal
    left over); returns the final weights and how many times it stopped."""
    stops = 0
    while True:
        with interruption.handling_signals():
            try:
                train_run(config, folder, make_datamodule(config, str(data_root)), resume, "none", list(callbacks))
                break
            except Interrupted:
                stops += 1
                callbacks = [c for c in callbacks if not isinstance(c, SignalAt) or c.batches]
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True), stops


def assert_same_weights(a: dict, b: dict) -> None:
    """Same step, weights, and optimizer states (the GAN's two optimizers and schedules included)."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert len(a["optimizer_states"]) == len(b["optimizer_states"]) and a["lr_schedulers"] == b["lr_schedulers"]
    for x, y in zip(a["optimizer_states"], b["optimizer_states"]):
        for index, state in x["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(y["state"][index][name])), (index, name)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_root):
    """Uninterrupted runs of both specs, trained once for the module."""
    cache = {}

    def get(spec):
        if spec[2] not in cache:
            folder = tmp_path_factory.mktemp(f"straight-{spec[2]}")
            cache[spec[2]] = train(config_of(spec), folder, data_root)[0]
        return cache[spec[2]]

    return get


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, batches",
    [(SEGMENTATION, [11]), (SEGMENTATION, [3, 19])],
    ids=["mid-epoch", "twice"],
)
def test_preemption_at_any_batch_resumes_to_the_uninterrupted_weights(tmp_path, data_root, straight, spec, batches):
    config = config_of(spec)
    resumed, stops = train(config, tmp_path / "run", data_root, [SignalAt(batches)])
    assert stops == len(batches)
    assert_same_weights(straight(spec), resumed)


@pytest.mark.slow
def test_a_gan_preempted_twice_then_killed_resumes_to_the_uninterrupted_weights(tmp_path, data_root, straight):
    """Two optimizers, two batch-stepped schedules, validation every epoch; the kill after the preemptions
    leaves last.ckpt newer than the preemption checkpoints, and --resume takes the newer."""
    config = config_of(GAN)
    with pytest.raises(RuntimeError, match="killed"):
        train(config, tmp_path / "run", data_root, [SignalAt([2, 5]), KilledAt(12)])
    assert len(list((tmp_path / "run").glob("hpc_ckpt_*.ckpt"))) == 2
    resumed, _ = train(config, tmp_path / "run", data_root, resume=True)
    assert_same_weights(straight(GAN), resumed)


@pytest.mark.slow
def test_kill_then_resume_gives_the_uninterrupted_weights_with_loader_workers(tmp_path, data_root):
    """Loader workers draw as soon as the loader is iterated: the resumed epoch must still be its own."""
    spec = (*SEGMENTATION[:3], [*SEGMENTATION[3], "data.num_workers=1"])
    config = config_of(spec)
    reference, _ = train(config, tmp_path / "straight", data_root)
    with pytest.raises(RuntimeError, match="killed"):
        train(config, tmp_path / "run", data_root, [KilledAt(20)])  # mid-epoch 2: last.ckpt is epoch 1's
    with pytest.raises(RetinalightError, match="--resume"):
        train(config, tmp_path / "run", data_root)
    resumed, _ = train(config, tmp_path / "run", data_root, resume=True)
    assert_same_weights(reference, resumed)


def test_sigterm_under_slurm_requeues_like_a_preemption(tmp_path, monkeypatch):
    slurm, calls = _slurm_env(tmp_path)
    monkeypatch.setenv("PATH", slurm["PATH"])
    monkeypatch.setenv("SLURM_JOB_ID", slurm["SLURM_JOB_ID"])
    with interruption.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted) as stop:
            interruption.check("while testing unet seed 0")
    assert stop.value.exit_code == 143 and stop.value.requeued == "4242"
    assert "SLURM job 4242 requeued" in str(stop.value)
    assert calls.read_text().split() == ["requeue", "4242"]
    monkeypatch.delenv("SLURM_JOB_ID")
    with interruption.handling_signals():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C is never a requeue
        with pytest.raises(Interrupted) as stop:
            interruption.check("before unet seed 1")
    assert stop.value.exit_code == 130 and stop.value.requeued is None and "run the same command again" in str(stop.value)


def test_each_ddp_rank_says_what_happened_to_it_under_slurm(tmp_path, monkeypatch):
    """Only rank 0 requeues; a rank that received no signal stops with the others and says so."""
    slurm, calls = _slurm_env(tmp_path)
    monkeypatch.setenv("PATH", slurm["PATH"])
    monkeypatch.setenv("SLURM_JOB_ID", slurm["SLURM_JOB_ID"])
    with interruption.handling_signals(), pytest.raises(Interrupted) as stop:  # rank 1, no signal of its own
        interruption.stop("while training unet seed 0 (batch 7, checkpoint hpc_ckpt_1.ckpt)", rank=1)
    line = str(stop.value)
    assert line.startswith("rank 1: stopped with the other ranks (a signal reached one of them) while training")
    assert "rank 0 requeues SLURM job 4242; this rank asked nothing of SLURM" in line and "requeued:" not in line
    assert stop.value.requeued is None and not calls.exists()
    with interruption.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted) as stop:  # rank 0, which received it
            interruption.stop("while training unet seed 0", rank=0)
    assert str(stop.value).startswith("interrupted by SIGTERM") and "SLURM job 4242 requeued" in str(stop.value)
    assert calls.read_text().split() == ["requeue", "4242"]


def test_a_signal_between_runs_stops_there_and_the_same_command_completes_the_job(tmp_path, data_root, monkeypatch):
    import retinalight.training.runner as runner

    experiment = load_experiment("ablation_drive", "quick", ["trainer.max_epochs=1", "data.samples_per_epoch=4", "data.crop_size=64"])
    real_fit_run, finished = runner.fit_run, []

    def fit_run_then_signal(config, folder, **kwargs):
        result = real_fit_run(config, folder, **kwargs)
        finished.append(config.arm)
        os.kill(os.getpid(), signal.SIGUSR1)  # lands after the first run, before the second starts
        return result

    monkeypatch.setattr(runner, "fit_run", fit_run_then_signal)
    with interruption.handling_signals(), pytest.raises(Interrupted, match="before unet_sa seed 0"):
        fit_experiment(experiment, tmp_path, ["unet", "unet_sa"], logger="none", data_root=str(data_root))
    assert finished == ["unet"] and not list(tmp_path.glob("ablation_drive/unet_sa/*/seed0"))
    monkeypatch.setattr(runner, "fit_run", real_fit_run)
    with interruption.handling_signals():
        summary = fit_experiment(experiment, tmp_path, ["unet", "unet_sa"], logger="none", data_root=str(data_root))
    assert not summary["failures"] and set(summary["protocols"]["fov"]["arms"]) == {"unet", "unet_sa"}


def test_a_second_fit_of_a_running_run_refuses_and_a_stale_lock_is_taken_over(tmp_path, data_root):
    config = config_of((*SEGMENTATION[:3], ["trainer.max_epochs=1", "data.samples_per_epoch=4", "data.crop_size=64"]))
    folder = run_dir(tmp_path, config)
    folder.mkdir(parents=True)
    (folder / ".lock").write_text(f"{os.uname().nodename} {os.getpid()}\n")  # a live process holds it
    with pytest.raises(RetinalightError, match=f"process {os.getpid()} .* is running this run"):
        fit_run(config, folder, logger="none", data_root=str(data_root))
    assert not (folder / "checkpoints").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / ".lock").write_text(f"{os.uname().nodename} {dead.pid}\n")  # left by a process that is gone
    handlers = [signal.getsignal(s) for s in interruption.SIGNALS]
    assert fit_run(config, folder, logger="none", data_root=str(data_root))
    assert not (folder / ".lock").exists()
    assert [signal.getsignal(s) for s in interruption.SIGNALS] == handlers  # a library call keeps the caller's handlers


@pytest.mark.slow
def test_a_runs_folder_that_turns_unwritable_stops_in_one_line_and_keeps_what_was_saved(tmp_path, data_root):
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(tmp_path)], capture_output=True).returncode:
        pytest.skip("needs chattr +i (an immutable folder; root ignores permissions)")
    subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
    config = config_of(SEGMENTATION)
    folder = run_dir(tmp_path, config)

    class LockedAt(Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:
                subprocess.run(["chattr", "-R", "+i", str(folder)], check=True)  # as a read-only or full disk would

    experiment = load_experiment(*SEGMENTATION[:2], SEGMENTATION[3])
    try:
        import retinalight.training.runner as runner

        original = runner.fit_run
        runner.fit_run = lambda config, folder, **kw: original(config, folder, **kw, callbacks=[LockedAt()])
        with pytest.raises(RetinalightError, match="cannot write") as error:
            fit_experiment(experiment, tmp_path, ["unet"], logger="none", data_root=str(data_root))
        assert "\n" not in str(error.value) and str(folder) in str(error.value)
    finally:
        runner.fit_run = original
        subprocess.run(["chattr", "-R", "-i", str(folder)], check=False)
    saved = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0 and saved["global_step"] == 8  # epoch 0's checkpoint, intact


FIT = [sys.executable, "-m", "retinalight.fit", "--exp", "ablation_drive", "--profile", "quick", "--arm", "unet", "--logger", "none"]
LONGER = ["--set", "trainer.precision=32-true", "trainer.max_epochs=4", "data.samples_per_epoch=96", "data.batch_size=4"]  # 4 x 24 steps


def _wait_for(condition, proc, timeout=300.0):
    start = time.time()
    while not condition():
        assert proc.poll() is None, "the run ended before the test could signal it"
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.05)


def _step(path: Path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


@pytest.fixture(scope="module")
def longer_reference(tmp_path_factory, data_root):
    """The uninterrupted run of LONGER (96 steps), trained and tested once in this process."""
    config = load_experiment("ablation_drive", "quick", LONGER[1:]).run_config("unet", 0)
    folder = run_dir(tmp_path_factory.mktemp("longer"), config)
    metrics = fit_run(config, folder, logger="none", data_root=str(data_root))
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True), metrics


def _slurm_env(tmp_path: Path) -> tuple[dict, Path]:
    """A simulated SLURM job: its variables and an `scontrol` first on PATH that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    job = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "retinalight", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **job, "SLURM_NODEID": "0"}, calls


@pytest.mark.slow
def test_sigterm_ctrl_c_a_second_fit_and_a_preemption_while_testing_never_change_the_result(tmp_path, data_root, longer_reference):
    """One run in real processes: SIGTERM mid-epoch 1 while a second fit of it is refused; the same command
    again, Ctrl-C mid-epoch 2; `--resume` under SLURM, SIGUSR1 while it tests (requeued); the same command
    again: the uninterrupted weights and test metrics."""
    env = {**os.environ, "RETINALIGHT_DATA": str(data_root)}
    command = [*FIT, "--runs", str(tmp_path / "runs"), *LONGER]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs" / "ablation_drive" / "unet"
    _wait_for(lambda: list(runs.glob("*/seed0/.lock")), job)
    (folder,) = runs.glob("*/seed0")
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # while the first trains
    assert second.returncode == 2 and "is running this run" in second.stderr
    assert second.stderr.count("\n") == 1, second.stderr
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted by SIGTERM while training unet seed 0")
    first_stop = _step(folder / "hpc_ckpt_1.ckpt")
    assert first_stop < 72 and not (folder / ".lock").exists()

    started = time.time()
    again = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # continues, no --resume
    last = folder / "checkpoints" / "last.ckpt"
    _wait_for(lambda: last.is_file() and last.stat().st_mtime > started and _step(last) > first_stop, again)  # an epoch ended here
    again.send_signal(signal.SIGINT)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 130 and "interrupted by SIGINT while training" in stderr.strip().splitlines()[-1], stderr[-2000:]
    assert first_stop < _step(folder / "hpc_ckpt_2.ckpt") < 96

    slurm, calls = _slurm_env(tmp_path)
    testing = subprocess.Popen([*command, "--resume"], env=slurm, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (folder / "trained.json").is_file(), testing)
    testing.send_signal(signal.SIGUSR1)
    _, stderr = testing.communicate(timeout=120)
    assert testing.returncode == 138, stderr[-2000:]
    assert "testing unet seed 0" in stderr.strip().splitlines()[-1] and "SLURM job 4242 requeued" in stderr
    assert calls.read_text().split() == ["requeue", "4242"] and not (folder / "metrics.json").exists()

    requeued = subprocess.run(command, env=slurm, capture_output=True, text=True, timeout=300)  # the requeued job: no --resume
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert "Restoring states" not in requeued.stderr  # only tested: training had finished
    reference, metrics = longer_reference
    assert_same_weights(reference, torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True))
    assert json.loads((folder / "metrics.json").read_text())["protocols"] == metrics["protocols"]
    assert not list(folder.glob("hpc_ckpt_*")) and not (folder / "trained.json").exists()

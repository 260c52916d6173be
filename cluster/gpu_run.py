"""One command on a lent GPU machine: install, check the GPU path, train Table II at the paper's schedule, pack.

On the GPU machine, from the repository root, with the wheels of `python cluster/gpu_bundle.py .gpu/wheels`
and DRIVE copied to .gpu/data/DRIVE (both git-ignored: the call carries `.gpu`):

    python3 cluster/gpu_run.py --commit <short commit>      # outputs to $OUT; the copy there has no .git to read it from

On any CPU, the same steps with a few training steps per run and the same output files (the test suite runs it):

    python cluster/gpu_run.py --rehearse --out /tmp/gpu-rehearsal

Steps, each timed in gpu-run.log:
1. install the wheels and the project into a target folder (pip --no-index --no-deps) and import every command;
   the rehearsal uses this environment. No CUDA, a wheel folder for another Python, no DRIVE: one line, exit 2.
2. `bench --gpu-check --parts speed` alone on the device (the paper's training step from memory and from its
   loader, TFLOP/s against the measured matrix rate, peak memory), then the other parts beside step 3.
3. the paper-schedule ablation: `fit --exp ablation_drive --profile paper --seeds 0 --arm <arm>` for each of the
   experiment's run_arms, --slots processes at a time on the one device (the cores shared by their loaders),
   every run's resolved config exactly a user's. An arm still running when --budget is spent gets SIGTERM: it
   saves an interruption checkpoint at a batch boundary, packed with its run folder, and `--resume-from` with
   that archive continues it (the same identity, no step lost).
4. `fit --summary-only`, then into the output folder (at most 8 files): gpu-run.log, nvidia-smi.txt
   (and the utilisation sampled every second inside runs.tar.gz), gpu-check.json, the summary .md and .json,
   runs.tar.gz (run folders without checkpoints but for SA-UNet's last.ckpt and interruption checkpoints,
   each process's log) and predictions.tar.gz.
Standard library only: it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "ablation_drive"
PROFILE = "paper"
OTHER_PARTS = ["training", "ddp", "gan", "inference"]
RESERVE = 80  # seconds kept after the arms for stopping them (30), the summary (imports alone took 17 s on the H200 machine) and packing
FIRST = ["sa_unet", "unet"]  # the headline arm and the reference start first: a budget cut leaves them complete
# the rehearsal: every path of the GPU run, a few steps per run on a CPU
REHEARSAL_OVERRIDES = ["trainer.max_epochs=1", "data.samples_per_epoch=4", "data.batch_size=2"]
COMMANDS = ["fit", "evaluate", "predict", "export", "report", "bench", "data", "sweep", "preprocess", "check_scores", "gpu_check"]


class RunError(Exception):
    """A reason the run cannot go on: one line."""


class Log:
    """Lines to the terminal and gpu-run.log, each with seconds since the start."""

    def __init__(self, path: Path):
        self.started, self.file = time.monotonic(), open(path, "a", buffering=1)  # noqa: SIM115  (open for the whole run)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, line: str) -> None:
        text = f"[{self.elapsed():6.1f} s] {line}"
        print(text, flush=True)
        self.file.write(text + "\n")


def sh(command: list[str], log: Log, env: dict, output: Path | None = None, check: bool = True) -> int:
    """Run `command` to the end, its output to `output` (else the log); a failure is a RunError naming it."""
    log("$ " + " ".join(command))
    with open(output or log.file.name, "a") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if code and check:
        tail = (output or Path(log.file.name)).read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise RunError(f"{' '.join(command[:4])} ... exited {code}: {tail[0]}")
    return code


def install(args: argparse.Namespace, log: Log, env: dict) -> dict:
    """The wheels and the project into --site (pip, no index, no dependency resolution); the environment
    that imports them. The rehearsal keeps this one."""
    if args.rehearse:
        log(f"rehearsal: this environment ({sys.executable}, Python {sys.version.split()[0]}); wheels not installed")
        return env
    sys.path.insert(0, str(REPO / "cluster"))
    from gpu_bundle import BundleError, check_bundle, target_tags  # noqa: E402  (stdlib + packaging)
    from packaging.utils import parse_wheel_filename

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        wheels = sorted(args.wheels.glob("*.whl"))
        foreign = [w.name for w in wheels if not parse_wheel_filename(w.name)[3] & target_tags(python)]
        if foreign:
            raise BundleError(f"{args.wheels}: {foreign[0]} does not install on this Python {python} (build the folder for {python})")
        check_bundle(args.wheels, python, {})  # what is needed was checked where the folder was built; here: doubles and size
    except BundleError as err:
        raise RunError(str(err)) from None
    site = args.site
    shutil.rmtree(site, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--target", str(site)]
    sh([*pip, *map(str, wheels)], log, env)
    env = {**env, "PYTHONPATH": str(site)}
    if sh([*pip, "--no-build-isolation", str(REPO)], log, env, check=False):
        log("the project did not install (no setuptools >= 68 there?): importing it from the checkout instead")
        env["PYTHONPATH"] = f"{site}{os.pathsep}{REPO}"
    return env


def check_imports(log: Log, env: dict) -> None:
    modules = ", ".join(f"retinalight.{name}" for name in COMMANDS)
    probe = (
        f"import {modules}, torch, lightning, albumentations, segmentation_models_pytorch; print(torch.__version__, lightning.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd="/")
    if out.returncode:
        raise RunError(f"importing retinalight's commands failed: {(out.stderr.strip().splitlines() or [''])[-1]}")
    log(f"every command imports (torch, lightning {out.stdout.strip()})")


def check_device(args: argparse.Namespace, log: Log, env: dict) -> None:
    if not args.rehearse:
        probe = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
        name = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout.strip()
        if not name:
            raise RunError("no CUDA GPU is visible to PyTorch here: run with --rehearse on a machine without one")
        log(f"device: {name}")
    drive = args.data_root / "DRIVE"
    if not (drive / "training" / "images").is_dir():
        raise RunError(f"{drive}: no DRIVE there (copy it: cp -r /path/to/data/DRIVE {args.data_root}/, and carry that folder)")


def device_report(args: argparse.Namespace, out: Path, log: Log) -> subprocess.Popen | None:
    """nvidia-smi.txt now, and the utilisation every second to gpu-util.csv until the returned sampler stops."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        (out / "nvidia-smi.txt").write_text("nvidia-smi: not on this machine (a rehearsal on a CPU)\n")
        return None
    (out / "nvidia-smi.txt").write_text(subprocess.run([smi], capture_output=True, text=True).stdout)
    query = "--query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw,clocks.sm"
    return subprocess.Popen(
        [smi, query, "--format=csv", "-l", "1"], stdout=open(args.runs / "gpu-util.csv", "w"), stderr=subprocess.DEVNULL
    )


def fit_command(args: argparse.Namespace, arm: str | None) -> list[str]:
    command = [sys.executable, "-m", "retinalight.fit", "--exp", EXPERIMENT, "--profile", PROFILE, "--seeds", "0"]
    command += ["--runs", str(args.runs), "--logger", "csv", "--data-root", str(args.data_root)]
    command += ["--summary-only"] if arm is None else ["--arm", arm]
    return command + (["--set", *REHEARSAL_OVERRIDES] if args.rehearse else [])


def run_slots(jobs: dict[str, list[str]], slots: int, deadline: float, log: Log, env: dict, logs: Path, grace: float = 30) -> dict:
    """Run `jobs` (name -> command), `slots` at a time, in order. At `deadline` (log.elapsed() seconds) the
    ones running get SIGTERM (a run saves an interruption checkpoint at a batch boundary or stops between test
    images) and no more start; `grace` seconds later any still running are killed. Returns each job's exit
    status (143: stopped by the signal, -9: killed), None for jobs never started."""
    waiting, running, codes = list(jobs), {}, dict.fromkeys(jobs)
    stopped_at = None
    while waiting or running:
        while waiting and len(running) < slots:
            name = waiting.pop(0)
            log(f"start {name}")
            with open(logs / f"{name}.log", "w") as sink:  # the child keeps its own handle
                running[name] = subprocess.Popen(
                    jobs[name], stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
                )
        for name, process in list(running.items()):
            if process.poll() is not None:
                codes[name] = process.returncode
                log(f"{name} exited {process.returncode}")
                del running[name]
        if stopped_at is None and log.elapsed() > deadline and (running or waiting):
            stopped_at = log.elapsed()
            log(f"budget spent: SIGTERM to {', '.join(running) or 'none'}; not started: {', '.join(waiting) or 'none'}")
            waiting.clear()
            for process in running.values():
                process.send_signal(signal.SIGTERM)
        if stopped_at is not None and log.elapsed() > stopped_at + grace:
            for name, process in running.items():
                log(f"{name} still running {grace:.0f} s after SIGTERM: killed")
                process.kill()
            stopped_at = float("inf")
        time.sleep(0.2)
    return codes


def take_runs(source: Path, runs: Path) -> list[str]:
    """Copy the `paper` run folders of EXPERIMENT from `source` (a runs.tar.gz of an earlier call, or a runs
    root such as results/) into `runs`: complete ones are reused, stopped ones continue from their
    interruption checkpoint. Returns the arms copied."""
    if source.is_file():
        unpacked = runs.parent / f"{runs.name}-resumed"
        with tarfile.open(source) as tar:
            tar.extractall(unpacked, filter="data")
        source = next(unpacked.glob(f"*/{EXPERIMENT}")).parent
    arms = []
    for folder in sorted((source / EXPERIMENT).glob(f"*/{PROFILE}-*")):
        shutil.copytree(folder, runs / EXPERIMENT / folder.parent.name / folder.name, dirs_exist_ok=True)
        arms.append(folder.parent.name)
    return arms


def pack(runs: Path, out: Path, log: Log) -> None:
    """runs.tar.gz: every file under `runs` but checkpoints (SA-UNet's last.ckpt and interruption checkpoints
    kept); predictions.tar.gz: the predictions/ folders."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        path = Path(info.name)
        if "predictions" in path.parts:
            return None
        if path.suffix == ".ckpt" and not (path.name.startswith("hpc_ckpt_") or (path.name == "last.ckpt" and "sa_unet" in path.parts)):
            return None
        return info

    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        tar.add(runs, arcname="runs", filter=keep)
    with tarfile.open(out / "predictions.tar.gz", "w:gz") as tar:
        for folder in sorted(runs.glob("**/predictions")):
            tar.add(folder, arcname=str(Path("runs") / folder.relative_to(runs)))
    for name in ("runs.tar.gz", "predictions.tar.gz"):
        log(f"{name}: {(out / name).stat().st_size / 2**20:.1f} MiB")


def gather_check(runs: Path, out: Path) -> dict:
    """gpu-check.json: the speed part's file and the other parts' file as one."""
    parts, merged = {}, {}
    for path in (runs / "gpu-check-speed.json", runs / "gpu-check-rest.json"):
        if path.is_file():
            data = json.loads(path.read_text())
            parts |= data.pop("parts")
            merged |= data
    merged["parts"] = parts
    (out / "gpu-check.json").write_text(json.dumps(merged, indent=2))
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 cluster/gpu_run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rehearse", action="store_true", help="on this CPU: a few steps per run, the same steps and output files")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: $OUT, else gpu-out)")
    parser.add_argument("--wheels", type=Path, default=REPO / ".gpu" / "wheels", help="the wheel folder (default .gpu/wheels)")
    parser.add_argument("--data-root", type=Path, default=None, help="holding DRIVE/ (default .gpu/data; the rehearsal: $RETINALIGHT_DATA)")
    parser.add_argument("--site", type=Path, default=Path("/tmp/retinalight-site"), help="where the wheels and the project install")
    parser.add_argument("--runs", type=Path, default=None, help="runs root (default: a fresh folder under /tmp)")
    parser.add_argument("--slots", type=int, default=3, help="arms trained at once on the one device (default 3)")
    parser.add_argument(
        "--budget", type=float, default=500, help="seconds from the start after which running arms are stopped (default 500)"
    )
    parser.add_argument(
        "--resume-from",
        type=Path,
        default=None,
        help="a runs.tar.gz of an earlier call, or a runs root (results/): its complete paper runs are reused, its stopped ones continue",
    )
    parser.add_argument("--commit", default=None, help="the commit of this tree, recorded with every result (no .git on the GPU machine)")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or "gpu-out")
    out.mkdir(parents=True, exist_ok=True)
    args.runs = (args.runs or Path(f"/tmp/retinalight-gpu-runs-{os.getpid()}")).resolve()
    args.data_root = (args.data_root or Path(os.environ.get("RETINALIGHT_DATA") if args.rehearse else REPO / ".gpu" / "data")).resolve()
    logs = args.runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu-run.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "TQDM_MININTERVAL": "30"}
    if args.rehearse:  # several processes share a few cores: one thread each instead of each taking them all
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if args.commit:
        env["RETINALIGHT_COMMIT"] = args.commit
    try:
        env = install(args, log, env)
        check_imports(log, env)
        check_device(args, log, env)
    except RunError as err:
        log(f"error: {err}")
        return 2
    if args.resume_from:
        log(f"continuing from {args.resume_from}: {', '.join(take_runs(args.resume_from, args.runs)) or 'no run folders of this profile'}")
    sampler = device_report(args, out, log)
    device = "cpu" if args.rehearse else "cuda"
    check = [sys.executable, "-m", "retinalight.bench", "--gpu-check", "--device", device, "--data-root", str(args.data_root)]
    sh([*check, "--parts", "speed", "--json", str(args.runs / "gpu-check-speed.json")], log, env, logs / "gpu-check-speed.log", check=False)
    arms = json.loads(
        subprocess.run(
            [sys.executable, "-c", f"import json; from retinalight.experiments import load_experiment as l; print(json.dumps(l('{EXPERIMENT}', '{PROFILE}').run_arms))"],
            capture_output=True, text=True, env=env, check=True,
        ).stdout
    )  # fmt: skip
    others = subprocess.Popen(  # the other parts beside the table, at a lower CPU priority than its loaders
        ["nice", "-n", "10", *check, "--parts", *OTHER_PARTS, "--json", str(args.runs / "gpu-check-rest.json")],
        stdout=open(logs / "gpu-check-rest.log", "w"), stderr=subprocess.STDOUT, cwd=REPO,  # noqa: SIM115
        env={**env, "TORCHINDUCTOR_COMPILE_THREADS": "4"},
    )  # fmt: skip
    log("started the other gpu-check parts: " + " ".join(OTHER_PARTS))
    arms = [a for a in FIRST if a in arms] + [a for a in arms if a not in FIRST]
    deadline = args.budget - RESERVE
    codes = run_slots({arm: fit_command(args, arm) for arm in arms}, args.slots, deadline, log, env, logs)
    try:
        others.wait(timeout=max(1.0, deadline - log.elapsed()))
    except subprocess.TimeoutExpired:
        others.kill()
        log("the other gpu-check parts outran the budget: stopped")
    if sampler is not None:
        sampler.terminate()
    sh(fit_command(args, None), log, env, logs / "summary.log", check=False)
    for path in (args.runs / EXPERIMENT).glob(f"summary-{PROFILE}*"):
        shutil.copy(path, out / path.name)
        if path.suffix == ".md":
            log(f"{path.name}:\n" + path.read_text())
    parts = gather_check(args.runs, out)
    pack(args.runs, out, log)
    failed = [f"{name} ({'not started' if code is None else f'exit {code}'})" for name, code in codes.items() if code != 0]
    failed += [f"gpu-check {name}" for name, part in parts.items() if not part["pass"]]
    missing = [name for name in [*OTHER_PARTS, "speed"] if name not in parts]
    log(
        f"done: {len(arms)} arms, {'failed or stopped: ' + ', '.join(failed + missing) if failed or missing else 'every run and check passed'}"
    )
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())

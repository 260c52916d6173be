"""Hardware-aware settings: `auto` precision and layout per speed class, per-class profile sizes, run identity,
provenance, light start-up, inference flags and the GPU check's CPU mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from retinalight.errors import ConfigError
from retinalight.experiments import load_experiment
from retinalight.hardware import HARDWARE_ENV, cpu_native_bf16, hardware_info, hardware_label, resolve_precision

REPO = Path(__file__).resolve().parent.parent


def test_auto_precision_per_class_and_explicit_values_win():
    assert resolve_precision("auto", "cpu-bf16") == "bf16-mixed"
    assert resolve_precision("auto", "cpu-fp32") == "32-true"
    assert resolve_precision("32-true", "cpu-bf16") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu-fp32") == "bf16-mixed"


@pytest.mark.parametrize("speed, precision", [("cpu-bf16", "bf16-mixed"), ("cpu-fp32", "32-true")])
def test_profiles_resolve_for_the_class_and_the_identity_follows(monkeypatch, speed, precision):
    monkeypatch.setenv(HARDWARE_ENV, speed)
    experiment = load_experiment("ablation_drive", "quick")
    config = experiment.run_config("sa_unet", 0)
    assert experiment.hardware == speed and experiment.label == f"quick@{speed}"
    assert config.trainer.precision == precision and config.trainer.channels_last is True
    resolved = config.to_dict()  # what config.yaml holds
    assert "auto" not in {resolved["trainer"]["precision"], resolved["trainer"]["channels_last"], resolved["data"]["num_workers"]}
    explicit = load_experiment("ablation_drive", "quick", ["trainer.precision=32-true"]).run_config("sa_unet", 0)
    assert explicit.trainer.precision == "32-true"


def test_a_bf16_run_is_never_reused_for_an_fp32_config(monkeypatch):
    hashes = {}
    for speed in ("cpu-bf16", "cpu-fp32"):
        monkeypatch.setenv(HARDWARE_ENV, speed)
        hashes[speed] = load_experiment("ablation_drive", "fast").run_config("sa_unet", 0).config_hash()
    assert hashes["cpu-bf16"] != hashes["cpu-fp32"]


@pytest.mark.parametrize("profile", ["fast"])
def test_profile_sizes_per_class(monkeypatch, profile):
    """ablation_drive's fast profile trains fewer steps where bf16 is not native; the step count is in the config."""
    steps = {}
    for speed in ("cpu-bf16", "cpu-fp32"):
        monkeypatch.setenv(HARDWARE_ENV, speed)
        config = load_experiment("ablation_drive", profile).run_config("sa_unet", 0)
        steps[speed] = config.trainer.max_epochs * config.data.samples_per_epoch // config.data.batch_size
    assert steps["cpu-fp32"] < steps["cpu-bf16"]
    override = load_experiment("ablation_drive", profile, ["trainer.max_epochs=3"]).run_config("sa_unet", 0)
    assert override.trainer.max_epochs == 3  # an explicit value wins over the class's size


def test_bad_hardware_class_and_sizes_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(HARDWARE_ENV, "tpu")
    with pytest.raises(ConfigError, match=r"RETINALIGHT_HARDWARE='tpu': choose from cuda, cpu-bf16, cpu-fp32"):
        load_experiment("smoke_synthetic")
    monkeypatch.delenv(HARDWARE_ENV)
    source = (REPO / "experiments" / "smoke_synthetic.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(source + "hardware:\n  cpu-avx2: {trainer: {max_epochs: 1}}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'hardware.cpu-avx2' .*; classes: cuda, cpu-bf16, cpu-fp32"):
        load_experiment(str(tmp_path / "bad.yaml"))


def test_an_isa_cap_below_bf16_is_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not cpu_native_bf16()
    info = hardware_info()
    assert info["class"] == "cpu-fp32" and info["isa_limit"] == "AVX2" and "capped to AVX2" in hardware_label(info)


def test_provenance_names_the_hardware():
    from retinalight.provenance import provenance

    record = provenance()
    assert record["hardware"]["class"] in ("cpu-bf16", "cpu-fp32", "cuda")
    assert record["hardware"]["cpu_capability"] in record["device"] and f"{record['hardware']['threads']} threads" in record["device"]


def test_committed_summaries_are_found_under_their_hashes(monkeypatch):
    """Every committed summary of a profile as it stands (no overrides) names run folders whose configs resolve,
    on the class that trained them, to the same hashes: the hardware-aware profiles reuse them."""
    summaries = sorted(REPO.glob("results/*/summary-*@*.json"))
    checked = 0
    for path in summaries:
        summary = json.loads(path.read_text())
        if summary["overrides"]:
            continue  # a trial of an older recipe; its folders hold their own config.yaml
        monkeypatch.setenv(HARDWARE_ENV, path.stem.rsplit("@", 1)[1])
        experiment = load_experiment(summary["experiment"], summary["profile"])
        for arm, row in next(iter(summary["protocols"].values()))["arms"].items():
            assert experiment.run_config(arm, 0).config_hash() == row["config_hash"], (path.name, arm)
            folder = path.parent / arm / f"{summary['profile']}-{row['config_hash']}"
            assert all((folder / f"seed{seed}" / "metrics.json").is_file() for seed in row["seeds"]), folder
            checked += 1
    assert checked >= 20


def test_help_and_config_loading_import_neither_lightning_nor_torchmetrics():
    """`--help` of every command that runs a network, then loading an experiment, in one fresh interpreter."""
    code = (
        "import sys, contextlib, io, importlib\n"
        "for command in ('fit', 'evaluate', 'predict', 'export', 'report', 'bench'):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        importlib.import_module(f'retinalight.{command}').main(['--help'])\n"
        "from retinalight.experiments import load_experiment\nload_experiment('ablation_drive', 'quick')\n"
        "print(sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_asking_for_cuda_without_one_is_one_line(data_root, tmp_path, capsys):
    import torch

    from retinalight.evaluate import main as evaluate_main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exited:
        from retinalight.cli import run_main

        run_main(evaluate_main, ["--ckpt", str(tmp_path / "x.ckpt"), "--device", "cuda", "--data-root", str(data_root)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --device cuda: no CUDA GPU is visible to PyTorch here (use --device cpu or auto)"


def test_gpu_check_without_cuda_is_one_line(data_root, capsys):
    """Asked for CUDA where there is none: one line, exit 0. Its five parts run on the CPU in the rehearsal
    of the GPU run (tests/test_gpu_run.py), the code path a GPU machine runs."""
    import torch

    from retinalight.gpu_check import gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    assert gpu_check("cuda", data_root) == 0
    assert capsys.readouterr().out.count("\n") == 1

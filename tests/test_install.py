"""The package as users install it: a wheel that works from any folder, and the `retinalight` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_finds_its_experiments_and_trains_from_an_empty_folder(tmp_path):
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("retinalight-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RETINALIGHT_EXPERIMENTS"} | {"PYTHONPATH": str(site)}
    command = [sys.executable, "-c", "from retinalight.__main__ import main; main()"]  # the console script's entry point
    listed = subprocess.run([*command, "fit", "--list-experiments"], cwd=empty, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    sources = dict(line.split() for line in listed.stdout.splitlines())
    assert {"ablation_drive", "ablation_chase", "retinagan_drive", "preprocessing_drive", "smoke_synthetic"} <= set(sources)
    assert all(Path(path).is_relative_to(site) for path in sources.values()), sources  # the wheel's copy, not this checkout
    fit = subprocess.run(
        [*command, "fit", "--exp", "smoke_synthetic", "--arm", "unet", "--logger", "none", "--set", "trainer.max_epochs=1"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert list((empty / "runs" / "smoke_synthetic" / "unet").glob("*/seed0/metrics.json"))
    script = site / "bin" / "retinalight"
    assert script.is_file() and "retinalight.__main__" in script.read_text()


def test_the_wheel_lists_every_subpackage():
    """pyproject lists the packages by hand (the experiments mapping needs it): a new subpackage must join it."""
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_packages

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert set(find_packages(str(REPO), include=["retinalight*"])) <= listed


def test_retinalight_command_runs_each_command_and_refuses_unknown_ones_in_one_line(capsys):
    from retinalight.__main__ import COMMANDS, main

    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit.value.code == 0 and all(name in out for name in COMMANDS)
    with pytest.raises(SystemExit) as exit:
        main(["fitt"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "did you mean fit" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit:
        main(["models"])
    assert exit.value.code == 0 and "sa_unet" in capsys.readouterr().out


def test_retinalight_experiments_folders_come_before_the_package_files(tmp_path, monkeypatch):
    from retinalight.experiments import experiment_sources

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my_ablation.yaml").write_text((REPO / "experiments" / "smoke_synthetic.yaml").read_text())
    (mine / "ablation_drive.yaml").write_text((REPO / "experiments" / "ablation_drive.yaml").read_text())
    monkeypatch.setenv("RETINALIGHT_EXPERIMENTS", str(mine))
    monkeypatch.chdir(tmp_path)
    sources = experiment_sources()
    assert sources["my_ablation"] == mine / "my_ablation.yaml" and sources["ablation_drive"] == mine / "ablation_drive.yaml"
    assert sources["retinagan_drive"] == REPO / "experiments" / "retinagan_drive.yaml"

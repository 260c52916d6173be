"""W&B sweep files: every run they expand to is a valid `fit` command; `sweep --local` runs them here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from retinalight.errors import ConfigError, RetinalightError
from retinalight.fit import load_from_args, parse_args
from retinalight.sweep import expand, fit_argv, load_sweep
from retinalight.sweep import main as sweep_main

SWEEPS = sorted((Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml"))
GRID_RUNS = {"ablation_drive": 15, "ablation_chase": 15, "retinagan_drive": 18, "preprocessing_drive": 21}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_run_of_every_sweep_loads_through_fit(path):
    sweep = load_sweep(path)
    runs = expand(sweep, count=8, seed=1)
    if path.stem in GRID_RUNS:
        assert len(runs) == GRID_RUNS[path.stem]
    experiments = {load_from_args(parse_args(fit_argv(sweep, run))).name for run in runs}
    assert len(experiments) == 1
    assert sweep["metric"]["name"] in ("test/fov/auc", "val/auc")


def _write_sweep(tmp_path, parameters: dict) -> Path:
    sweep = {
        "program": "retinalight.fit",
        "method": "grid",
        "metric": {"name": "test/fov/auc", "goal": "maximize"},
        "parameters": parameters,
        "command": ["${env}", "${interpreter}", "-m", "${program}", "${args_no_hyphens}"],
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_local_sweep_over_three_learning_rates_gives_three_runs(tmp_path, capsys):
    runs = tmp_path / "runs"
    path = _write_sweep(
        tmp_path,
        {
            "exp": {"value": "smoke_synthetic"},
            "arm": {"value": "unet"},
            "runs": {"value": str(runs)},
            "logger": {"value": "csv"},
            "trainer.max_epochs": {"value": 1},
            "optimizer.lr": {"values": [0.001, 0.003, 0.01]},
        },
    )
    assert sweep_main([str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("python -m retinalight.fit") == 3
    assert sweep_main([str(path), "--local"]) == 0
    assert "3 of 3 runs succeeded" in capsys.readouterr().out
    folders = sorted((runs / "smoke_synthetic" / "unet").glob("*/seed0"))
    assert len(folders) == 3
    aucs = {json.loads((f / "metrics.json").read_text())["protocols"]["fov"]["pooled"]["auc"] for f in folders}
    assert len(aucs) == 3
    # the sweep's metric is logged by every run, at the end
    for folder in folders:
        with open(folder / "logs" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert any(row.get("test/fov/auc") for row in rows)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"exp": {"value": "smoke_synthetic"}, "optimizer.lrr": {"values": [0.1]}}, "did you mean lr"),
        ({"exp": {"value": "smoke_synthetic"}, "arm": {"values": ["unett"]}}, "unknown arm 'unett'"),
    ],
)
def test_a_typo_fails_before_any_run(tmp_path, parameters, message, capsys):
    path = _write_sweep(tmp_path, parameters)
    with pytest.raises(RetinalightError, match=message):
        sweep_main([str(path), "--local"])
    assert "python -m retinalight.fit" not in capsys.readouterr().out


def test_a_program_the_agent_cannot_run_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"program": "-m retinalight.fit", "method": "grid", "parameters": {"exp": {"value": "x"}}}))
    with pytest.raises(ConfigError, match="program: retinalight.fit"):
        load_sweep(path)


def test_wandbs_default_args_form_is_accepted(tmp_path, capsys):
    """`${args}` (W&B's default) passes --key=value, dotted config keys included."""
    path = _write_sweep(tmp_path, {"exp": {"value": "smoke_synthetic"}, "optimizer.lr": {"values": [0.001, 0.01]}})
    sweep = yaml.safe_load(path.read_text())
    sweep["command"] = ["${env}", "${interpreter}", "-m", "${program}", "${args}"]
    path.write_text(yaml.safe_dump(sweep))
    assert sweep_main([str(path), "--dry-run"]) == 0
    assert "--optimizer.lr=0.01" in capsys.readouterr().out
    args = parse_args(fit_argv(load_sweep(path), {"exp": "smoke_synthetic", "optimizer.lr": 0.01}))
    assert load_from_args(args).run_config("unet", 0).optimizer.lr == 0.01


def test_sweep_and_array_arm_lists_are_the_experiments():
    """The arm lists written outside the experiment files (sweep grids, the SLURM array) are its profiles' run_arms."""
    import re

    from retinalight.experiments import load_experiment

    repo = Path(__file__).resolve().parent.parent
    for path in sorted((repo / "sweeps").glob("*.yaml")):
        parameters = yaml.safe_load(path.read_text())["parameters"]
        if "values" not in parameters.get("arm", {}):
            continue
        experiment = load_experiment(parameters["exp"]["value"], parameters.get("profile", {}).get("value", "paper"))
        assert parameters["arm"]["values"] == experiment.run_arms, path.name
    array = (repo / "cluster" / "slurm_array.sbatch").read_text()
    arms = re.search(r"^ARMS=\((.*)\)$", array, re.M).group(1).split()
    assert arms == load_experiment("ablation_drive", "quick").run_arms

"""Run a W&B sweep file's runs here, with no W&B server: the same `fit` arguments an agent would pass.

  python -m retinalight.sweep sweeps/ablation_drive.yaml --dry-run               # the runs a grid expands to
  python -m retinalight.sweep sweeps/ablation_drive.yaml --local --set profile=quick
  python -m retinalight.sweep sweeps/sa_unet_search.yaml --local --count 4      # random/bayes: sample runs

With a W&B server, use W&B's own engine instead: `wandb sweep sweeps/X.yaml`, then `wandb agent
ENTITY/PROJECT/ID` on each machine. Grid sweeps expand to the product of their `values`; random and bayes
sweeps are sampled here (`--count`, `--seed`), since Bayesian proposals need the W&B controller.
A parameter is a `fit` option (exp, profile, arm, seeds) or a dotted config key (optimizer.lr, trainer.devices).
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from retinalight.cli import run_main
from retinalight.errors import ConfigError

PROGRAM = "retinalight.fit"
METHODS = ("grid", "random", "bayes")


def load_sweep(path: str | Path) -> dict:
    """A W&B sweep file, checked for what `fit` needs: program, method, parameters, a command that keeps the interpreter."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file not found")
    try:
        sweep = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(sweep, dict) or sweep.get("program") != PROGRAM:
        raise ConfigError(f"{path}: a retinalight sweep has program: {PROGRAM}")
    if sweep.get("method") not in METHODS:
        raise ConfigError(f"{path}: method must be one of {', '.join(METHODS)}")
    command = sweep.get("command") or []
    if "${program}" not in command or "${interpreter}" not in command or "-m" not in command:
        raise ConfigError(f"{path}: command must run `${{interpreter}} -m ${{program}}` (W&B passes a bare `program` as one token)")
    if not isinstance(sweep.get("parameters"), dict) or not sweep["parameters"]:
        raise ConfigError(f"{path}: no parameters")
    return sweep


def expand(sweep: dict, count: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """The runs of a sweep: every combination of a grid, or `count` samples of a random/bayes search."""
    params = sweep["parameters"]
    fixed = {k: v["value"] for k, v in params.items() if "value" in v}
    varied = {k: v for k, v in params.items() if "value" not in v}
    if sweep["method"] == "grid":
        for key, spec in varied.items():
            if "values" not in spec:
                raise ConfigError(f"grid parameter {key!r} needs values: [...]")
        keys = list(varied)
        return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(varied[k]["values"] for k in keys))]
    rng = np.random.default_rng(seed)
    return [{**fixed, **{k: sample(k, spec, rng) for k, spec in varied.items()}} for _ in range(count)]


def sample(key: str, spec: dict, rng: np.random.Generator) -> Any:
    """One draw from a W&B parameter spec (values, uniform, log_uniform_values, q_uniform, int_uniform)."""
    if "values" in spec:
        return spec["values"][int(rng.integers(len(spec["values"])))]
    kind = spec.get("distribution", "uniform")
    low, high = spec.get("min"), spec.get("max")
    if low is None or high is None:
        raise ConfigError(f"parameter {key!r}: needs values, or min and max")
    if kind == "int_uniform":
        return int(rng.integers(low, high + 1))
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "log_uniform_values":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if kind == "q_uniform":
        q = spec.get("q", 1)
        return float(round(rng.uniform(low, high) / q) * q)
    raise ConfigError(f"parameter {key!r}: distribution {kind!r} is not supported here (use values, uniform, log_uniform_values, ...)")


def fit_argv(sweep: dict, run: dict[str, Any], extra: list[str] | None = None) -> list[str]:
    """The arguments `python -m retinalight.fit` receives from an agent for `run` (the command after
    `${program}`, `${args_no_hyphens}` as key=value, `${args}` as --key=value), then `extra` overrides."""
    command = sweep["command"]
    tail = command[command.index("${program}") + 1 :]
    out: list[str] = []
    for token in tail:
        if token == "${args_no_hyphens}":
            out += [f"{k}={format_value(v)}" for k, v in run.items()]
        elif token == "${args}":
            out += [f"--{k}={format_value(v)}" for k, v in run.items()]
        else:
            out.append(token)
    return out + list(extra or [])


def format_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() if not isinstance(value, str) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", help="a W&B sweep YAML (sweeps/*.yaml)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="print each run's fit arguments, check them, run nothing")
    mode.add_argument("--local", action="store_true", help="run them here one after another (no W&B server needed)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="extra overrides for every run, e.g. profile=quick")
    parser.add_argument("--count", type=int, default=5, help="runs to sample from a random/bayes sweep (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of a random/bayes sweep (default 0)")
    args = parser.parse_args(argv)
    from retinalight.fit import load_from_args
    from retinalight.fit import main as fit_main
    from retinalight.fit import parse_args as fit_parse_args

    sweep = load_sweep(args.sweep)
    runs = [fit_argv(sweep, run, args.set) for run in expand(sweep, args.count, args.seed)]
    for argv_ in runs:  # every run's arguments are checked before any trains
        load_from_args(fit_parse_args(argv_))
    failed = 0
    for i, argv_ in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] python -m retinalight.fit {' '.join(argv_)}", flush=True)
        if args.local:
            failed += fit_main(argv_) != 0
    if args.local:
        print(f"{len(runs) - failed} of {len(runs)} runs succeeded")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)

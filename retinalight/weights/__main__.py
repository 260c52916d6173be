"""Shipped weights: list them, or rebuild one from its recipe.

  python -m retinalight.weights list
  python -m retinalight.weights build sa_unet-drive [--runs DIR] [--data-root DIR] [--out DIR]

`build` runs `fit` for the recipe's experiment, profile, arm and seed (a complete run folder with a
checkpoint is reused), then writes the slim checkpoint and its manifest entry (into the package's weights
folder unless --out says otherwise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retinalight.cli import add_data_root, run_main
from retinalight.data.check import sha256
from retinalight.errors import DataFileError
from retinalight.weights import MANIFEST, folder, manifest


def build(name: str, runs: Path, data_root: str | None, out: Path) -> dict:
    """Train or reuse the recipe's run, then export its last checkpoint as `out/<name>.pt` (weights only)."""
    import torch

    from retinalight.experiments import load_experiment
    from retinalight.rundirs import run_dir
    from retinalight.training.runner import fit_experiment

    entries = manifest()
    recipe = entries[name]["recipe"]
    experiment = load_experiment(recipe["experiment"], recipe["profile"])
    fit_experiment(experiment, runs, [recipe["arm"]], [recipe["seed"]], data_root=data_root)
    config = experiment.run_config(recipe["arm"], recipe["seed"])
    run = run_dir(runs, config)
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise DataFileError(f"{run}: complete but without checkpoints/last.ckpt (a committed folder?); use another --runs")
    full = torch.load(ckpt, map_location="cpu", weights_only=True)
    slim = {
        "hyper_parameters": dict(full["hyper_parameters"]),
        "state_dict": {k: v for k, v in full["state_dict"].items() if k.startswith("model.")},
    }
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.pt"
    torch.save(slim, target)
    metrics = json.loads((run / "metrics.json").read_text())
    entry = {
        "file": target.name,
        "recipe": recipe,
        "sha256": sha256(target),
        "bytes": target.stat().st_size,
        "config_hash": config.config_hash(),
        "test": {p: {k: round(v["pooled"][k], 4) for k in ("auc", "f1")} for p, v in metrics["protocols"].items()},
        **{k: metrics.get(k) for k in ("commit", "device", "hardware", "train_seconds", "torch")},
        "command": f"python -m retinalight.weights build {name}",
    }
    entries[name] = entry
    (out / MANIFEST).write_text(json.dumps(entries, indent=2) + "\n")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the shipped weights, their recipes and test scores")
    builder = commands.add_parser("build", help="train (or reuse) a recipe's run and export its weights")
    builder.add_argument("name", choices=list(manifest()))
    builder.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR", help="root of run folders (default: ./runs)")
    builder.add_argument("--out", type=Path, default=None, metavar="DIR", help="default: the package's weights folder")
    add_data_root(builder)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, entry in manifest().items():
            recipe, test = entry["recipe"], entry.get("test", {}).get("fov", {})
            scores = f"FOV AUC {test['auc']:.4f}, F1 {test['f1']:.4f}" if test else "not built"
            print(f"{name}: {recipe['arm']} from {recipe['experiment']} --profile {recipe['profile']} seed {recipe['seed']}; {scores}")
            if test:
                print(f"    {entry['bytes'] / 1e6:.1f} MB, commit {entry['commit']}, {entry['device']}")
        return 0
    entry = build(args.name, args.runs, args.data_root, args.out or folder())
    print(f"{args.name}: {entry['bytes'] / 1e6:.1f} MB, FOV AUC {entry['test']['fov']['auc']:.4f}, sha256 {entry['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    run_main(main)
